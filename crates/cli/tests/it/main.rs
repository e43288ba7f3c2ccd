//! The real `keyway` binary against moto, the GCP emulator and the local store.
#![allow(missing_docs)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod agent;
mod backends;
mod canary;
mod completion;
mod deploy;
mod docs;
mod exec;
mod faults;
mod fuzz;
mod get;
mod git;
mod iam;
mod identity;
mod inject;
mod memory;
mod render;
mod selector;
mod serve;
mod serve_cache;
mod serve_config;
mod serve_systemd;
mod soak;
mod support;
mod webhook;

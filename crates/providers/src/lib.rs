//! Keyway's backends, each an implementation of [`keyway_core::Provider`]: [`aws::AwsProvider`] (the official
//! `aws-sdk-secretsmanager`), [`gcp::GcpProvider`] (the official `google-cloud-secretmanager-v1`),
//! [`local::LocalProvider`] (files, JSON/YAML, age) and [`vault::VaultProvider`] (Vault and OpenBao KV). Each classifies its SDK's errors into core's kinds with a
//! message that says what to do. [`config::ProvidersConfig`] is their part of `keyway.toml`
//! (`[providers.NAME]`, `[cache]`) and builds a [`keyway_core::Resolver`].
//!
//! This is the only crate that links cloud SDKs.

pub mod aws;
pub mod azure;
pub mod config;
pub mod gcp;
pub mod k8s;
pub mod local;
pub mod tls;
pub mod vault;

pub use config::{ConfigError, ProvidersConfig};

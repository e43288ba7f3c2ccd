//! keyway-config's integration tests: the whole file and the mapping spec against hostile input.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod fuzz;

//! Providers against real servers and emulators: moto for AWS, Keyway's emulator for GCP, OpenBao for Vault, a
//! temp directory for local.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod aws;
mod azure;
mod gcp;
mod k8s;
mod local;
mod ssm;
mod vault;

use std::sync::Arc;

use keyway_core::{Cache, CacheConfig, CachePolicy, Lookup, Provider, Resolved, Resolver};

/// A resolver with one provider registered under `instance`.
fn resolver(instance: &str, provider: Arc<dyn Provider>, policy: CachePolicy) -> Resolver {
    Resolver::builder()
        .provider(instance, provider, policy)
        .build(Cache::new(CacheConfig::default()))
        .unwrap()
}

async fn get(resolver: &Resolver, reference: &str) -> Result<Resolved, keyway_core::Error> {
    let r = resolver.parse(reference)?;
    resolver.resolve(&r, Lookup::default()).await
}

fn text(r: &Resolved) -> String {
    String::from_utf8(r.secret.value.expose().to_vec()).unwrap()
}

//! Keyway's core model: secret references, secret values, the [`Provider`] trait, the cache and the resolver.
//!
//! This crate does no network IO and links no cloud SDK or wire format; backends live in `keyway-providers`.
//! Main types: [`SecretRef`] (parsed `aws-sm://`, `gcp-sm://`, `local://` references), [`SecretValue`]
//! (zeroized on drop, never printed), [`Provider`], [`Cache`] (single-flight, refresh-ahead, stale-if-error),
//! and [`Resolver`] (instances + cache + JSON field selection).

mod error;

/// Cases per property test: `KEYWAY_FUZZ_CASES` for the long run (`docs/security.md`), else `default` (CI's).
#[cfg(test)]
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("KEYWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub mod cache;
pub mod mapping;
pub mod mode;
pub mod provider;
pub mod reference;
pub mod resolver;
pub mod selector;
pub mod template;
pub mod value;

pub use cache::{Cache, CacheConfig, CachePolicy, CacheStats, Key, Source, Ttl};
pub use error::{Answer, Error, ErrorKind, JsonProblem, ProviderError, Upstream};
pub use mode::FileMode;
pub use provider::{ListFilter, Provider, RateLimited};
pub use reference::{BackendKind, Field, Instances, SecretRef, Target};
pub use resolver::{Lookup, Resolved, Resolver};
pub use selector::{Selector, SelectorError};
pub use value::{Encoding, Rendering, Secret, SecretMeta, SecretValue};

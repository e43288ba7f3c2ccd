//! The resolver: references in, values out, through the cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cache::{Cache, CachePolicy, Cached, Fault, Source, Ttl};
use crate::reference::{BackendKind, Instances, SecretRef};
use crate::value::Secret;
use crate::{Error, Provider};

/// Per-request options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup {
    /// Overrides the instance's TTL for this request.
    pub ttl: Option<Ttl>,
    /// Ask the upstream now, as the AWS agent's `refreshNow=true` does.
    pub refresh_now: bool,
}

/// A resolved reference: the (field-selected) secret and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The secret, reduced to the field when the reference names one.
    pub secret: Secret,
    /// Wall-clock time of the upstream fetch.
    pub fetched_at: SystemTime,
    /// Time since the fetch.
    pub age: Duration,
    /// Hit, miss or stale.
    pub source: Source,
}

struct Backend {
    provider: Arc<dyn Provider>,
    policy: CachePolicy,
}

/// Holds the configured provider instances and the shared cache.
pub struct Resolver {
    instances: Instances,
    backends: BTreeMap<Arc<str>, Backend>,
    cache: Cache,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Resolver`].
#[derive(Default)]
pub struct ResolverBuilder {
    backends: BTreeMap<Arc<str>, Backend>,
}

impl ResolverBuilder {
    /// Registers a provider under an instance name (replacing one of the same name).
    #[must_use]
    pub fn provider(
        mut self,
        name: &str,
        provider: Arc<dyn Provider>,
        policy: CachePolicy,
    ) -> Self {
        self.backends
            .insert(Arc::from(name), Backend { provider, policy });
        self
    }

    /// Finishes with the given cache.
    pub fn build(self, cache: Cache) -> Result<Resolver, String> {
        // Instances start empty: only registered providers may be named.
        let mut instances = Instances::default();
        for name in ["aws-sm", "gcp-sm", "local"] {
            if !self.backends.contains_key(name) {
                instances.remove(name);
            }
        }
        for (name, backend) in &self.backends {
            instances.insert(name, backend.provider.kind())?;
        }
        Ok(Resolver {
            instances,
            backends: self.backends,
            cache,
        })
    }
}

impl Resolver {
    /// Starts a builder.
    pub fn builder() -> ResolverBuilder {
        ResolverBuilder::default()
    }

    /// The configured instances.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// The shared cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Parses a reference against the configured instances.
    pub fn parse(&self, input: &str) -> Result<SecretRef, Error> {
        SecretRef::parse_with(input, &self.instances)
    }

    /// Resolves one reference.
    pub async fn resolve(&self, reference: &SecretRef, lookup: Lookup) -> Result<Resolved, Error> {
        let backend = self.backend(reference.instance())?;
        let key = reference.key();
        let canonical = || reference.to_string();
        let cached: Cached = self
            .cache
            .get(
                &key,
                &backend.provider,
                &backend.policy,
                lookup.ttl,
                lookup.refresh_now,
            )
            .await
            .map_err(|fault| match fault {
                Fault::Upstream(source) => Error::Provider {
                    reference: canonical(),
                    source,
                },
                Fault::StaleExpired {
                    age,
                    max_stale,
                    source,
                } => Error::StaleExpired {
                    reference: canonical(),
                    age_secs: age.as_secs(),
                    max_stale_secs: max_stale.as_secs(),
                    source,
                },
            })?;
        let secret = match reference.field() {
            Some(field) => cached.secret.select(field, &canonical())?,
            None if cached.secret.encoding == crate::Encoding::Entries => {
                return Err(Error::EntryRequired {
                    reference: canonical(),
                    available: cached.secret.entry_names(),
                });
            }
            None => cached.secret,
        };
        Ok(Resolved {
            secret,
            fetched_at: cached.fetched_at,
            age: cached.age,
            source: cached.source,
        })
    }

    /// Resolves many references concurrently; one result per reference, in order.
    pub async fn resolve_all(
        &self,
        references: &[SecretRef],
        lookup: Lookup,
    ) -> Vec<Result<Resolved, Error>> {
        futures::future::join_all(references.iter().map(|r| self.resolve(r, lookup))).await
    }

    /// Lists the secret names of an instance, those starting with `prefix` when one is given.
    pub async fn list(&self, instance: &str, prefix: Option<&str>) -> Result<Vec<String>, Error> {
        let filter = prefix.map(|p| crate::ListFilter::Prefix(p.to_owned()));
        self.list_with(instance, filter.as_ref()).await
    }

    /// Lists the secret names of an instance, narrowed by `filter` (a prefix, or the backend's own filter).
    pub async fn list_with(
        &self,
        instance: &str,
        filter: Option<&crate::ListFilter>,
    ) -> Result<Vec<String>, Error> {
        let backend = self.backend(instance)?;
        backend
            .provider
            .list(filter)
            .await
            .map_err(|source| Error::Provider {
                reference: format!("{instance}://"),
                source,
            })
    }

    /// The kind of a configured instance.
    pub fn kind(&self, instance: &str) -> Option<BackendKind> {
        self.instances.kind(instance)
    }

    fn backend(&self, instance: &str) -> Result<&Backend, Error> {
        self.backends
            .get(instance)
            .ok_or_else(|| self.instances.unknown(instance))
    }
}

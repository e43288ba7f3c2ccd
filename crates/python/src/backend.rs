//! `keyway._keyway.Backend`: one provider instance with its own Rust cache, for the Ray drop-in's operators
//! (`keyway.ray`): fetch by secret name with the original's TTL semantics, fetch many concurrently, list every
//! page, purge, and report what is cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
use keyway_core::cache::Key;
use keyway_core::reference::Target;
use keyway_core::{Cache, CacheConfig, CachePolicy, ListFilter, Provider, Resolver, Ttl};
use keyway_providers::aws::{AwsProvider, AwsSettings, StaticKeys};
use keyway_providers::gcp::{GcpProvider, GcpSettings};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use secrecy::SecretString;

use crate::{InvalidReference, process, runtime, to_py};

const INSTANCE: &str = "backend";
/// Held while a backend used in a forked child builds its own resolver, so concurrent first calls build one.
static REBUILDING: Mutex<()> = Mutex::new(());

/// One AWS or GCP secret manager with its own cache.
///
/// In a process forked after it was built (`multiprocessing` with `fork`), its SDK client's connections belong to
/// the parent's runtime, whose threads the child does not have: a fetch there would wait for its timeout. So it
/// remembers the process generation it was built in ([`process::generation`]) and, used in a child, builds its
/// provider and cache again from its settings (the child starts with an empty cache); the parent's are forgotten,
/// never dropped, as the module state is (`process.rs`).
#[pyclass(frozen, module = "keyway")]
pub struct Backend {
    settings: Settings,
    resolver: ArcSwap<Resolver>,
    /// The process generation `resolver` was built in.
    built_in: AtomicU64,
    policy: CachePolicy,
}

/// What a [`Backend`]'s provider is built from (static keys included, zeroized when dropped).
#[derive(Clone)]
enum Settings {
    Aws(AwsSettings),
    Gcp(GcpSettings),
}

impl Settings {
    fn resolver(&self, policy: CachePolicy) -> PyResult<Resolver> {
        let provider: Arc<dyn Provider> = match self {
            Settings::Aws(s) => Arc::new(AwsProvider::new(s.clone())),
            Settings::Gcp(s) => Arc::new(GcpProvider::new(s.clone())),
        };
        let _guard = runtime()?.enter();
        Resolver::builder()
            .provider(INSTANCE, provider, policy)
            .build(Cache::new(CacheConfig::default()))
            .map_err(InvalidReference::new_err)
    }
}

/// Runs `future` to its end, holding the GIL for its first poll: a fresh cache hit is answered there.
///
/// Releasing and re-taking the GIL costs more than a hit (a few microseconds), and in a threaded Ray actor
/// the thread must then win the GIL back from Ray's own threads. A future that is not ready at once (a miss:
/// its fetch already started) is finished where it stands, with the GIL released, so the miss is looked up
/// and counted once.
fn resolve_holding_gil_for_hits<F>(
    py: Python<'_>,
    rt: &tokio::runtime::Runtime,
    future: F,
) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let mut future = std::pin::pin!(future);
    if let std::task::Poll::Ready(output) = process::poll_once(rt, future.as_mut()) {
        return output;
    }
    py.detach(|| rt.block_on(future))
}

/// The secret a cache entry is for, whatever version: its identity, with a GCP secret named as GCP names it
/// (`projects/P/secrets/S`, however it was spelled; a regional one's identity is already its resource name).
fn secret_name(target: &Target) -> String {
    match target {
        Target::Gcp {
            project: Some(project),
            location: None,
            secret,
            ..
        } => format!("projects/{project}/secrets/{secret}"),
        other => other.identity().into_owned(),
    }
}

impl Backend {
    /// The resolver of this process: the one built with the backend or, in a process forked since, its own.
    fn resolver(&self) -> PyResult<Arc<Resolver>> {
        let now = process::generation();
        if self.built_in.load(Ordering::SeqCst) == now {
            return Ok(self.resolver.load_full());
        }
        let _building = REBUILDING.lock().unwrap_or_else(PoisonError::into_inner);
        if self.built_in.load(Ordering::SeqCst) != now {
            let fresh = self.settings.resolver(self.policy)?;
            std::mem::forget(self.resolver.swap(Arc::new(fresh)));
            self.built_in.store(now, Ordering::SeqCst);
        }
        Ok(self.resolver.load_full())
    }

    fn reference(
        &self,
        name: &str,
        version_stage: Option<&str>,
        version_id: Option<&str>,
        version: Option<&str>,
    ) -> PyResult<keyway_core::SecretRef> {
        if name.contains(['#', '?']) {
            return Err(InvalidReference::new_err(format!(
                "secret name `{name}` holds `#` or `?`"
            )));
        }
        let text = match &self.settings {
            Settings::Aws(_) => match (version_id, version_stage) {
                // Both go to AWS, which refuses them when they name different versions (as boto3's call would).
                (Some(id), Some(stage)) => {
                    format!("{INSTANCE}://{name}?version-id={id}&version-stage={stage}")
                }
                (Some(id), None) => format!("{INSTANCE}://{name}?version-id={id}"),
                (None, Some(stage)) => format!("{INSTANCE}://{name}?version-stage={stage}"),
                (None, None) => format!("{INSTANCE}://{name}"),
            },
            Settings::Gcp(gcp) => {
                let base = match (&gcp.project, name.starts_with("projects/")) {
                    (Some(project), false) => format!("{INSTANCE}://{project}/{name}"),
                    _ => format!("{INSTANCE}://{name}"),
                };
                if name.contains("/versions/") {
                    base
                } else {
                    format!("{base}?version={}", version.unwrap_or("latest"))
                }
            }
        };
        // Parsing reads the instance names only: any process's resolver does.
        self.resolver.load().parse(&text).map_err(|e| to_py(&e))
    }
}

fn metadata<'py>(
    py: Python<'py>,
    resolved: &keyway_core::Resolved,
    gcp: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let meta = &resolved.secret.meta;
    let dict = PyDict::new(py);
    dict.set_item("Name", &meta.name)?;
    dict.set_item("VersionId", &meta.version_id)?;
    dict.set_item("VersionStages", &meta.stages)?;
    if let Some(created) = meta.created.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        dict.set_item("CreatedDate", created.as_secs_f64())?;
    }
    let fetched = resolved
        .fetched_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    dict.set_item("FetchedAt", fetched)?;
    if gcp {
        // What Secret Manager's payload carries beside the data (verified by the provider on every fetch).
        dict.set_item("DataCrc32c", crc32c::crc32c(resolved.secret.value.expose()))?;
    }
    Ok(dict)
}

#[pymethods]
impl Backend {
    /// `kind` is "aws" or "gcp". AWS: `region`, `endpoint`, `profile`, static `access_key`/`secret_key` and
    /// optionally `session_token` (the standard credential chain otherwise). GCP: `project`, `endpoint`,
    /// `anonymous`. `default_ttl` in seconds (0: never cached, negative: never expires).
    #[new]
    #[pyo3(signature = (kind, *, region=None, endpoint=None, profile=None, project=None, access_key=None, secret_key=None, session_token=None, anonymous=false, default_ttl=-1.0))]
    // Spelled out: PyO3's generated signature shows the negative default as `...`.
    #[pyo3(
        text_signature = "(kind, *, region=None, endpoint=None, profile=None, project=None, access_key=None, secret_key=None, session_token=None, anonymous=False, default_ttl=-1.0)"
    )]
    #[allow(clippy::too_many_arguments, reason = "keyword arguments from Python")]
    fn new(
        kind: &str,
        region: Option<String>,
        endpoint: Option<String>,
        profile: Option<String>,
        project: Option<String>,
        access_key: Option<String>,
        secret_key: Option<String>,
        session_token: Option<String>,
        anonymous: bool,
        default_ttl: f64,
    ) -> PyResult<Backend> {
        let timeout = Duration::from_secs(10);
        let settings = match kind {
            "aws" => Settings::Aws(AwsSettings {
                region,
                profile,
                endpoint,
                anonymous,
                timeout,
                static_keys: access_key.zip(secret_key).map(|(key, secret)| StaticKeys {
                    session_token: session_token.map(SecretString::from),
                    ..StaticKeys::new(key, secret)
                }),
                assume: None,
            }),
            "gcp" => Settings::Gcp(GcpSettings {
                project,
                endpoint,
                anonymous,
                timeout,
                ..GcpSettings::default()
            }),
            other => {
                return Err(InvalidReference::new_err(format!(
                    "backend kind `{other}`; use \"aws\" or \"gcp\""
                )));
            }
        };
        let defaults = CachePolicy::default();
        let ttl = Ttl::from_secs_f64(default_ttl);
        let policy = CachePolicy {
            ttl,
            // `default_ttl=0` caches nothing, as in the original: no value kept even as a stale fallback.
            max_stale: if ttl == Ttl::Bypass {
                Duration::ZERO
            } else {
                defaults.max_stale
            },
            ..defaults
        };
        let resolver = settings.resolver(policy)?;
        Ok(Backend {
            settings,
            resolver: ArcSwap::from_pointee(resolver),
            built_in: AtomicU64::new(process::generation()),
            policy,
        })
    }

    /// `(value bytes, metadata dict, reusable for)` of one secret, through the cache; `ttl` overrides the
    /// default. The third is how many seconds the answer may be handed out again without asking (until the
    /// read that would start a refresh-ahead; `None`: until purged; 0 for a bypassing read or a stale answer).
    #[pyo3(signature = (name, ttl=None, refresh=false, version_stage=None, version_id=None, version=None))]
    #[allow(clippy::too_many_arguments, reason = "keyword arguments from Python")]
    fn get<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        ttl: Option<f64>,
        refresh: bool,
        version_stage: Option<&str>,
        version_id: Option<&str>,
        version: Option<&str>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>, Option<f64>)> {
        let reference = self.reference(name, version_stage, version_id, version)?;
        let lookup = crate::lookup(ttl, refresh);
        let rt = runtime()?;
        let here = self.resolver()?;
        let resolved = resolve_holding_gil_for_hits(py, rt, here.resolve(&reference, lookup))
            .map_err(|e| to_py(&e))?;
        let reusable = if refresh {
            Some(Duration::ZERO)
        } else {
            self.policy.reusable_for(lookup.ttl, resolved.age)
        };
        Ok((
            PyBytes::new(py, resolved.secret.value.expose()),
            metadata(py, &resolved, matches!(self.settings, Settings::Gcp(_)))?,
            reusable.map(|d| d.as_secs_f64()),
        ))
    }

    /// Fetches many names concurrently into the cache; returns `(name, error message or None)` per name.
    #[pyo3(signature = (names, ttl=None))]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "PyO3 extracts a Python list into an owned Vec"
    )]
    fn warm(
        &self,
        py: Python<'_>,
        names: Vec<String>,
        ttl: Option<f64>,
    ) -> PyResult<Vec<(String, Option<String>)>> {
        let references = names
            .iter()
            .map(|n| self.reference(n, None, None, None))
            .collect::<PyResult<Vec<_>>>()?;
        let lookup = crate::lookup(ttl, false);
        let rt = runtime()?;
        let resolver = self.resolver()?;
        let results = py.detach(|| rt.block_on(resolver.resolve_all(&references, lookup)));
        Ok(names
            .into_iter()
            .zip(results)
            .map(|(n, r)| (n, r.err().map(|e| e.to_string())))
            .collect())
    }

    /// Every secret name (all pages): those starting with `prefix`, or those AWS's `Filters` (`aws_filters`, each
    /// a key and its values) or GCP's filter expression (`gcp_filter`) select, passed on unchanged.
    #[pyo3(signature = (prefix=None, *, aws_filters=None, gcp_filter=None))]
    fn list(
        &self,
        py: Python<'_>,
        prefix: Option<String>,
        aws_filters: Option<Vec<(String, Vec<String>)>>,
        gcp_filter: Option<String>,
    ) -> PyResult<Vec<String>> {
        let filter = match (prefix, aws_filters, gcp_filter) {
            (None, None, None) => None,
            (Some(prefix), None, None) => Some(ListFilter::Prefix(prefix)),
            (None, Some(filters), None) => Some(ListFilter::Aws(filters)),
            (None, None, Some(expression)) => Some(ListFilter::Gcp(expression)),
            _ => {
                return Err(InvalidReference::new_err(
                    "give one of prefix, aws_filters and gcp_filter",
                ));
            }
        };
        let rt = runtime()?;
        let resolver = self.resolver()?;
        py.detach(|| rt.block_on(resolver.list_with(INSTANCE, filter.as_ref())))
            .map_err(|e| to_py(&e))
    }

    /// The secret `name` is for, as `cached` names it (`projects/P/secrets/S` for every spelling of a GCP
    /// secret).
    fn secret_name(&self, name: &str) -> PyResult<String> {
        Ok(secret_name(
            self.reference(name, None, None, None)?.target(),
        ))
    }

    /// Names of the cached secrets, as `secret_name` gives them.
    fn cached(&self) -> PyResult<Vec<String>> {
        let mut names: Vec<String> = self
            .resolver()?
            .cache()
            .keys()
            .iter()
            .map(|k| secret_name(&k.target))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Drops one secret (every version of it, however its name was spelled) or, without a name, everything.
    #[pyo3(signature = (name=None))]
    fn purge(&self, py: Python<'_>, name: Option<&str>) -> PyResult<()> {
        let resolver = self.resolver()?;
        let cache = resolver.cache();
        let Some(name) = name else {
            cache.invalidate_all();
            return Ok(());
        };
        let doomed_name = self.secret_name(name)?;
        let doomed: Vec<Key> = cache
            .keys()
            .into_iter()
            .filter(|k| secret_name(&k.target) == doomed_name)
            .collect();
        let rt = runtime()?;
        py.detach(|| {
            rt.block_on(async {
                for key in &doomed {
                    cache.invalidate(key).await;
                }
            });
        });
        Ok(())
    }
}

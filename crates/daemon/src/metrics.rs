//! `/metrics` in the OpenMetrics text format (`prometheus-client`): requests by route and status, cache
//! counters and size, upstream calls and latency by provider instance and outcome. Secret names appear only
//! when `metrics_secret_names` is on; values never.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{CacheStats, Provider, ProviderError, Resolver, Secret};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecretLabels {
    secret: String,
}

type Latency = Family<ProviderLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_seconds: Latency,
    reads: Option<Family<SecretLabels, Counter>>,
    reloads: Family<ReloadLabels, Counter>,
    last_reload_ok: Gauge,
    /// The resolver whose cache the cache metrics describe: the running configuration's.
    cache: Arc<ArcSwapOption<Resolver>>,
    /// What the caches of resolvers replaced by reloads had counted, so the cache counters never go back.
    retired: Arc<Mutex<CacheStats>>,
}

impl Metrics {
    pub fn new(secret_names: bool) -> Metrics {
        let mut registry = Registry::with_prefix("keyway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_calls",
            "Calls to secret backends by provider instance and outcome",
            upstream_calls.clone(),
        );
        let upstream_seconds: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Latency of calls to secret backends",
            upstream_seconds.clone(),
        );
        let reads = secret_names.then(|| {
            let reads = Family::<SecretLabels, Counter>::default();
            registry.register(
                "secret_reads",
                "Secret reads by secret (metrics_secret_names = true)",
                reads.clone(),
            );
            reads
        });
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (ok, error)",
            reloads.clone(),
        );
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload (or the start) took effect, 0 when it was refused",
            last_reload_ok.clone(),
        );
        // As Prometheus' own exporters do: which build runs, and since when (a restart shows as a new value).
        registry.register(
            "build",
            "The keyway version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let started = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        registry.register(
            "start_time_seconds",
            "When the daemon started, in seconds since the Unix epoch",
            started,
        );
        let cache = Arc::new(ArcSwapOption::empty());
        let retired = Arc::new(Mutex::new(CacheStats::default()));
        registry.register_collector(Box::new(CacheCollector {
            resolver: cache.clone(),
            retired: retired.clone(),
        }));
        Metrics {
            registry: Mutex::new(registry),
            requests,
            upstream_calls,
            upstream_seconds,
            reads,
            reloads,
            last_reload_ok,
            cache,
            retired,
        }
    }

    /// From now on the cache metrics describe `resolver`'s cache (at start, and after a reload). The counts of a
    /// cache it replaces are kept and added to the new one's, so the counters stay monotonic across reloads (reads
    /// still finishing on the replaced cache after this are not counted).
    pub fn observe_cache(&self, resolver: &Arc<Resolver>) {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = self.cache.swap(Some(resolver.clone()));
        if let Some(replaced) = replaced.filter(|r| !Arc::ptr_eq(r, resolver)) {
            *retired = add(*retired, replaced.cache().stats());
        }
    }

    /// Counts a reload and its result.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// A decorator for [`keyway_providers::config::ProvidersConfig::resolver_with`] that counts and times upstream calls.
    pub fn upstream_observer(&self) -> Box<keyway_providers::config::WrapProvider> {
        let calls = self.upstream_calls.clone();
        let seconds = self.upstream_seconds.clone();
        Box::new(
            move |name: &str, inner: Arc<dyn Provider>| -> Arc<dyn Provider> {
                Arc::new(Observed {
                    inner,
                    name: name.to_owned(),
                    calls: calls.clone(),
                    seconds: seconds.clone(),
                })
            },
        )
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    pub fn read(&self, secret_path: impl FnOnce() -> String) {
        if let Some(reads) = &self.reads {
            reads
                .get_or_create(&SecretLabels {
                    secret: secret_path(),
                })
                .inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug)]
struct CacheCollector {
    resolver: Arc<ArcSwapOption<Resolver>>,
    retired: Arc<Mutex<CacheStats>>,
}

fn add(a: CacheStats, b: CacheStats) -> CacheStats {
    CacheStats {
        hits: a.hits + b.hits,
        misses: a.misses + b.misses,
        stale_served: a.stale_served + b.stale_served,
        negative_hits: a.negative_hits + b.negative_hits,
        upstream_calls: a.upstream_calls + b.upstream_calls,
        upstream_errors: a.upstream_errors + b.upstream_errors,
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        // Under the lock `observe_cache` swaps the resolver in, so a replaced cache is counted once.
        let (resolver, retired) = {
            let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            (self.resolver.load_full(), *retired)
        };
        let Some(resolver) = resolver else {
            return Ok(());
        };
        let cache = resolver.cache();
        let stats = add(retired, cache.stats());
        for (name, help, value) in [
            ("cache_hits", "Reads served fresh from memory", stats.hits),
            (
                "cache_misses",
                "Reads that waited for an upstream fetch",
                stats.misses,
            ),
            (
                "cache_stale_served",
                "Reads served past their TTL because the upstream failed",
                stats.stale_served,
            ),
            (
                "cache_negative_hits",
                "Reads answered from the not-found cache",
                stats.negative_hits,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let (entries, bytes) = cache.usage_estimate();
        for (name, help, value) in [
            ("cache_entries", "Cached secret versions", entries),
            ("cache_bytes", "Weighted size of the cache in bytes", bytes),
        ] {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// A provider decorator that counts and times every upstream call.
struct Observed {
    inner: Arc<dyn Provider>,
    name: String,
    calls: Family<UpstreamLabels, Counter>,
    seconds: Latency,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Observed {
    fn record<T>(&self, started: Instant, result: &Result<T, ProviderError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind().as_str(),
        };
        self.calls
            .get_or_create(&UpstreamLabels {
                provider: self.name.clone(),
                outcome,
            })
            .inc();
        self.seconds
            .get_or_create(&ProviderLabels {
                provider: self.name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl Provider for Observed {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let started = Instant::now();
        let result = self.inner.fetch(target).await;
        self.record(started, &result);
        result
    }

    async fn list(
        &self,
        filter: Option<&keyway_core::ListFilter>,
    ) -> Result<Vec<String>, ProviderError> {
        let started = Instant::now();
        let result = self.inner.list(filter).await;
        self.record(started, &result);
        result
    }
}

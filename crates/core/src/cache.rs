//! The cache: one upstream call per secret version, however many callers ask.
//!
//! Behaviour, each covered by a test:
//! - TTL per provider and per request: [`Ttl::Bypass`] (`ttl=0`) always asks the upstream, [`Ttl::Forever`]
//!   (a negative TTL) never expires.
//! - Single-flight: concurrent requests for a key share one upstream fetch. The fetch runs in its own task,
//!   so a caller that goes away does not cancel it for the others.
//! - Refresh-ahead: a read in the last part of an entry's TTL starts a background refresh, so hot entries
//!   never expire under their readers.
//! - Stale-if-error: when the upstream fails transiently, the last value is served, marked stale, until it is
//!   `max_stale` past its expiry; not to a read that forced a refresh (`refresh_now`), which gets the failure.
//! - Negative caching of not-found for a short time; a byte-bounded store whose evicted values are zeroized
//!   (the last reference to a [`crate::SecretValue`] zeroizes it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use crate::reference::Target;
use crate::value::Secret;
use crate::{ErrorKind, Provider, ProviderError};

/// How long a cached value is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Always ask the upstream (`ttl=0`); the answer still refreshes the cache, unless the policy keeps no
    /// stale fallback either (`max_stale` 0), when it goes to its callers only.
    Bypass,
    /// Fresh for this long.
    For(Duration),
    /// Never expires (a negative TTL, as the Ray Secret Proxy allowed).
    Forever,
}

impl std::str::FromStr for Ttl {
    type Err = String;

    /// `"5m"` or any humantime duration, `"300"` (seconds), `"0"` (bypass), `"-1"` or `"forever"` (never
    /// expires): every TTL Keyway reads, from a file, a flag or a request, is read here.
    fn from_str(text: &str) -> Result<Ttl, String> {
        let text = text.trim();
        if text == "forever" || text.starts_with('-') {
            return Ok(Ttl::Forever);
        }
        if let Ok(secs) = text.parse::<f64>() {
            return Ok(Ttl::from_secs_f64(secs));
        }
        humantime::parse_duration(text)
            .map(|d| if d.is_zero() { Ttl::Bypass } else { Ttl::For(d) })
            .map_err(|_| {
                format!(
                    "`{text}` is not a TTL; write seconds (300), a duration (\"5m\"), 0 to bypass or -1 for never"
                )
            })
    }
}

impl Ttl {
    /// Reads seconds the way the Ray Secret Proxy does: 0 bypasses, negative never expires.
    pub fn from_secs_f64(secs: f64) -> Ttl {
        if secs < 0.0 {
            Ttl::Forever
        } else if secs == 0.0 {
            Ttl::Bypass
        } else {
            Ttl::For(Duration::from_secs_f64(secs))
        }
    }

    fn is_fresh(self, age: Duration) -> bool {
        match self {
            Ttl::Bypass => false,
            Ttl::For(ttl) => age < ttl,
            Ttl::Forever => true,
        }
    }

    /// How long past `age` an entry may still be served stale.
    fn stale_for(self, age: Duration, max_stale: Duration) -> Option<Duration> {
        match self {
            Ttl::Bypass => Some(age),
            Ttl::For(ttl) => Some(age.saturating_sub(ttl)),
            Ttl::Forever => None,
        }
        .filter(|past| *past <= max_stale)
    }
}

/// Per-provider cache behaviour.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Default freshness.
    pub ttl: Ttl,
    /// How long past expiry a value may be served when the upstream fails transiently.
    pub max_stale: Duration,
    /// Fraction of the TTL after which a read starts a background refresh (0.8: the last fifth).
    pub refresh_ahead: f64,
    /// Upper bound on one upstream fetch, on top of the SDK's own timeouts.
    pub fetch_timeout: Duration,
    /// How long a read of an expired value (still within `max_stale`) waits for the upstream before it is
    /// answered with that value, marked stale; the fetch goes on and replaces the entry when it lands. This
    /// bounds read latency while the upstream hangs (an outage that times out instead of refusing).
    pub stale_wait: Duration,
}

impl CachePolicy {
    /// How long an answer of age `age`, read with `ttl` (the policy's when `None`), may be handed out again
    /// without asking the cache: until the read that would start its refresh-ahead, so a caller that keeps
    /// answers still lets hot entries be refreshed before they expire. `None`: it never expires (until purged);
    /// zero for a bypassing read and for a stale answer.
    pub fn reusable_for(&self, ttl: Option<Ttl>, age: Duration) -> Option<Duration> {
        match ttl.unwrap_or(self.ttl) {
            Ttl::Bypass => Some(Duration::ZERO),
            Ttl::For(ttl) => Some(self.refresh_ahead_at(ttl).saturating_sub(age)),
            Ttl::Forever => None,
        }
    }

    /// The age at which a read of a `ttl` entry starts its refresh-ahead (at most the TTL itself).
    fn refresh_ahead_at(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(self.refresh_ahead.clamp(0.0, 1.0))
    }
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl: Ttl::For(Duration::from_mins(5)),
            max_stale: Duration::from_hours(1),
            refresh_ahead: 0.8,
            fetch_timeout: Duration::from_secs(30),
            stale_wait: Duration::from_millis(500),
        }
    }
}

/// Cache-wide limits.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Bound on cached value bytes (plus a small per-entry overhead); least recently used entries go first.
    pub max_bytes: u64,
    /// How long a not-found answer is remembered.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 64 * 1024 * 1024,
            negative_ttl: Duration::from_secs(5),
        }
    }
}

/// A cache key: provider instance and target (version selector included, field excluded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Provider instance name.
    pub instance: Arc<str>,
    /// What is fetched.
    pub target: Arc<Target>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from memory, fresh.
    Hit,
    /// Fetched from the upstream for this request (or a concurrent one).
    Miss,
    /// Served from memory past its TTL because the upstream failed.
    Stale,
}

impl Source {
    /// `hit`, `miss` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Stale => "stale",
        }
    }
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The secret.
    pub secret: Secret,
    /// Wall-clock time of the upstream fetch.
    pub fetched_at: SystemTime,
    /// Time since the fetch.
    pub age: Duration,
    /// Where the answer came from.
    pub source: Source,
}

/// Why the cache gave no value.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The upstream failed and there was nothing servable.
    Upstream(ProviderError),
    /// The upstream failed and the cached value is past `max_stale`.
    StaleExpired {
        /// Age of the cached value.
        age: Duration,
        /// The bound it exceeded.
        max_stale: Duration,
        /// The upstream failure.
        source: ProviderError,
    },
}

/// Counters, read by the daemon's metrics and by tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Fresh answers from memory.
    pub hits: u64,
    /// Requests that waited for an upstream fetch.
    pub misses: u64,
    /// Stale answers served because the upstream failed.
    pub stale_served: u64,
    /// Not-found answers from the negative cache.
    pub negative_hits: u64,
    /// Upstream fetches started (foreground and refresh-ahead).
    pub upstream_calls: u64,
    /// Upstream fetches that failed.
    pub upstream_errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_served: AtomicU64,
    negative_hits: AtomicU64,
    upstream_calls: AtomicU64,
    upstream_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Entry {
    secret: Secret,
    fetched: Instant,
    fetched_at: SystemTime,
    retain: Option<Duration>,
}

type Flight = Shared<BoxFuture<'static, Result<Arc<Entry>, ProviderError>>>;

struct Inner {
    entries: moka::future::Cache<Key, Arc<Entry>>,
    negatives: moka::future::Cache<Key, ProviderError>,
    inflight: Mutex<HashMap<Key, Flight>>,
    counters: Counters,
}

/// The shared cache. Cloning is cheap and shares state.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.inner.entries.entry_count())
            .finish_non_exhaustive()
    }
}

struct RetainFor;

impl moka::Expiry<Key, Arc<Entry>> for RetainFor {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        value.retain
    }
}

/// Per-entry memory overhead counted against `max_bytes` besides the value itself.
const ENTRY_OVERHEAD: usize = 256;

impl Cache {
    /// A cache with the given limits.
    pub fn new(config: CacheConfig) -> Cache {
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &Key, entry: &Arc<Entry>| {
                let target = key.target.identity().len();
                let weight = entry.secret.value.len()
                    + entry.secret.meta.name.len()
                    + target
                    + ENTRY_OVERHEAD;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(RetainFor)
            .build();
        let negatives = moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(config.negative_ttl)
            .build();
        Cache {
            inner: Arc::new(Inner {
                entries,
                negatives,
                inflight: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// Answers from memory when fresh, otherwise from one shared upstream fetch. `ttl` overrides the policy's
    /// TTL for this request; `refresh_now` forces an upstream fetch whose failure is the answer (no stale value,
    /// where `ttl=0` would serve one).
    pub async fn get(
        &self,
        key: &Key,
        provider: &Arc<dyn Provider>,
        policy: &CachePolicy,
        ttl: Option<Ttl>,
        refresh_now: bool,
    ) -> Result<Cached, Fault> {
        let ttl = if refresh_now {
            Ttl::Bypass
        } else {
            ttl.unwrap_or(policy.ttl)
        };
        let existing = self.inner.entries.get(key).await;
        if let Some(entry) = &existing {
            let age = entry.fetched.elapsed();
            if ttl.is_fresh(age) {
                bump(&self.inner.counters.hits);
                if let Ttl::For(ttl) = ttl
                    && age >= policy.refresh_ahead_at(ttl)
                {
                    // Starting the flight is enough: it runs in its own task and replaces the entry.
                    drop(self.flight(key, provider, policy, Ttl::For(ttl)));
                }
                return Ok(cached(entry, Source::Hit));
            }
        }
        if ttl != Ttl::Bypass
            && let Some(err) = self.inner.negatives.get(key).await
        {
            bump(&self.inner.counters.negative_hits);
            return Err(Fault::Upstream(err));
        }
        bump(&self.inner.counters.misses);
        let flight = self.flight(key, provider, policy, ttl);
        // An expired value that may still be served stale bounds the wait; a forced refresh waits in full.
        let servable = existing.as_ref().filter(|entry| {
            ttl != Ttl::Bypass
                && ttl
                    .stale_for(entry.fetched.elapsed(), policy.max_stale)
                    .is_some()
        });
        let outcome = match servable {
            Some(entry) => {
                let Ok(outcome) = tokio::time::timeout(policy.stale_wait, flight).await else {
                    bump(&self.inner.counters.stale_served);
                    return Ok(cached(entry, Source::Stale));
                };
                outcome
            }
            None => flight.await,
        };
        match outcome {
            Ok(entry) => Ok(cached(&entry, Source::Miss)),
            // A forced refresh is fresh or fails, as the AWS agent's `refreshNow`: a caller who asked after a
            // rotation must not get the old value back as if it were new.
            Err(err) if err.kind().is_transient() && !refresh_now => {
                // Another flight may have stored a value meanwhile; prefer the newest.
                let Some(entry) = self.inner.entries.get(key).await.or(existing) else {
                    return Err(Fault::Upstream(err));
                };
                let age = entry.fetched.elapsed();
                let effective = if ttl == Ttl::Bypass { policy.ttl } else { ttl };
                if effective.stale_for(age, policy.max_stale).is_some() || effective.is_fresh(age) {
                    bump(&self.inner.counters.stale_served);
                    Ok(cached(&entry, Source::Stale))
                } else {
                    Err(Fault::StaleExpired {
                        age,
                        max_stale: policy.max_stale,
                        source: err,
                    })
                }
            }
            Err(err) => Err(Fault::Upstream(err)),
        }
    }

    /// Joins the fetch in flight for `key`, or starts one in its own task.
    fn flight(
        &self,
        key: &Key,
        provider: &Arc<dyn Provider>,
        policy: &CachePolicy,
        ttl: Ttl,
    ) -> Flight {
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = inflight.get(key) {
            return flight.clone();
        }
        let inner = Arc::clone(&self.inner);
        let provider = Arc::clone(provider);
        let task_key = key.clone();
        let retain = match ttl {
            Ttl::Forever => None,
            Ttl::Bypass => Some(policy.max_stale.max(match policy.ttl {
                Ttl::For(t) => t,
                _ => Duration::ZERO,
            })),
            Ttl::For(t) => Some(t + policy.max_stale),
        };
        let timeout = policy.fetch_timeout;
        let task = tokio::spawn(async move {
            let key = task_key;
            bump(&inner.counters.upstream_calls);
            let result = match tokio::time::timeout(timeout, provider.fetch(&key.target)).await {
                Ok(result) => result,
                Err(_) => Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the upstream did not answer within {}s; check the network path to the backend",
                        timeout.as_secs()
                    ),
                )
                .with_upstream(crate::Upstream::ReadTimeout)),
            };
            let result = match result {
                Ok(secret) => {
                    let entry = Arc::new(Entry {
                        secret,
                        fetched: Instant::now(),
                        fetched_at: SystemTime::now(),
                        retain,
                    });
                    // Kept for no time (ttl 0 and no stale fallback): the answer goes to its callers only.
                    if retain != Some(Duration::ZERO) {
                        inner.entries.insert(key.clone(), Arc::clone(&entry)).await;
                    }
                    inner.negatives.invalidate(&key).await;
                    Ok(entry)
                }
                Err(err) => {
                    bump(&inner.counters.upstream_errors);
                    if err.kind() == ErrorKind::NotFound {
                        inner.negatives.insert(key.clone(), err.clone()).await;
                    }
                    Err(err)
                }
            };
            inner
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            result
        });
        let flight = async move {
            task.await.unwrap_or_else(|_| {
                Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    "the upstream fetch task was cancelled; retry",
                ))
            })
        }
        .boxed()
        .shared();
        inflight.insert(key.clone(), flight.clone());
        flight
    }

    /// Drops one entry (and any remembered not-found).
    pub async fn invalidate(&self, key: &Key) {
        self.inner.entries.invalidate(key).await;
        self.inner.negatives.invalidate(key).await;
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.inner.entries.invalidate_all();
        self.inner.negatives.invalidate_all();
    }

    /// The keys of the cached entries.
    pub fn keys(&self) -> Vec<Key> {
        self.inner
            .entries
            .iter()
            .map(|(k, _)| (*k).clone())
            .collect()
    }

    /// Counters since start.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            upstream_calls: c.upstream_calls.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
        }
    }

    /// Entries and weighted bytes as last counted, without waiting for pending maintenance (for metrics).
    pub fn usage_estimate(&self) -> (u64, u64) {
        (
            self.inner.entries.entry_count(),
            self.inner.entries.weighted_size(),
        )
    }

    /// Entries and weighted bytes, after pending maintenance.
    pub async fn usage(&self) -> (u64, u64) {
        self.inner.entries.run_pending_tasks().await;
        (
            self.inner.entries.entry_count(),
            self.inner.entries.weighted_size(),
        )
    }
}

fn cached(entry: &Entry, source: Source) -> Cached {
    Cached {
        secret: entry.secret.clone(),
        fetched_at: entry.fetched_at,
        age: entry.fetched.elapsed(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;

    use super::*;

    #[test]
    fn ttl_text_forms() {
        let parse = |text: &str| text.parse::<Ttl>();
        assert_eq!(parse("5m"), Ok(Ttl::For(Duration::from_mins(5))));
        assert_eq!(parse("300"), Ok(Ttl::For(Duration::from_mins(5))));
        assert_eq!(parse("0"), Ok(Ttl::Bypass));
        assert_eq!(parse("-1"), Ok(Ttl::Forever));
        assert_eq!(parse("forever"), Ok(Ttl::Forever));
        assert!(parse("x").is_err());
    }
    use crate::reference::BackendKind;
    use crate::value::{Encoding, SecretMeta, SecretValue};

    /// A scripted upstream at the process edge: counts calls, can be slow, down or missing.
    #[derive(Debug, Default)]
    struct Upstream {
        calls: AtomicU64,
        delay_ms: AtomicU64,
        down: AtomicBool,
        missing: AtomicBool,
    }

    #[async_trait]
    impl Provider for Upstream {
        fn kind(&self) -> BackendKind {
            BackendKind::Local
        }
        async fn fetch(&self, _target: &Target) -> Result<Secret, ProviderError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(ProviderError::new(ErrorKind::Unavailable, "down"));
            }
            if self.missing.load(Ordering::SeqCst) {
                return Err(ProviderError::new(ErrorKind::NotFound, "missing"));
            }
            Ok(Secret {
                value: SecretValue::from(format!("value-{n}")),
                encoding: Encoding::Text,
                meta: SecretMeta {
                    version_id: n.to_string(),
                    ..SecretMeta::default()
                }
                .into(),
            })
        }
        async fn list(
            &self,
            _filter: Option<&crate::ListFilter>,
        ) -> Result<Vec<String>, ProviderError> {
            Ok(Vec::new())
        }
    }

    fn key(name: &str) -> Key {
        Key {
            instance: Arc::from("local"),
            target: Arc::new(Target::Local { name: name.into() }),
        }
    }

    fn setup() -> (Cache, Arc<Upstream>, Arc<dyn Provider>) {
        let upstream = Arc::new(Upstream::default());
        let provider: Arc<dyn Provider> = upstream.clone();
        (Cache::new(CacheConfig::default()), upstream, provider)
    }

    fn policy(ttl_secs: u64, max_stale_secs: u64) -> CachePolicy {
        CachePolicy {
            ttl: Ttl::For(Duration::from_secs(ttl_secs)),
            max_stale: Duration::from_secs(max_stale_secs),
            ..CachePolicy::default()
        }
    }

    fn text(c: &Cached) -> String {
        String::from_utf8(c.secret.value.expose().to_vec()).unwrap()
    }

    async fn get(
        cache: &Cache,
        p: &Arc<dyn Provider>,
        pol: &CachePolicy,
        ttl: Option<Ttl>,
    ) -> Result<Cached, Fault> {
        cache.get(&key("k"), p, pol, ttl, false).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hundred_concurrent_cold_requests_make_one_upstream_call() {
        let (cache, upstream, provider) = setup();
        upstream.delay_ms.store(50, Ordering::SeqCst);
        let pol = policy(60, 60);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (cache, provider) = (cache.clone(), provider.clone());
                tokio::spawn(
                    async move { text(&get(&cache, &provider, &pol, None).await.unwrap()) },
                )
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "value-1");
        }
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().upstream_calls, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_within_ttl_refetched_after() {
        let (cache, upstream, p) = setup();
        let pol = CachePolicy {
            refresh_ahead: 1.0,
            ..policy(10, 60)
        };
        assert_eq!(
            get(&cache, &p, &pol, None).await.unwrap().source,
            Source::Miss
        );
        tokio::time::advance(Duration::from_secs(9)).await;
        let hit = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!((hit.source, text(&hit)), (Source::Hit, "value-1".into()));
        tokio::time::advance(Duration::from_secs(2)).await;
        let miss = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!((miss.source, text(&miss)), (Source::Miss, "value-2".into()));
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
        // A per-request TTL shorter than the entry's age forces a fetch.
        tokio::time::advance(Duration::from_secs(5)).await;
        let short = get(&cache, &p, &pol, Some(Ttl::For(Duration::from_secs(1))))
            .await
            .unwrap();
        assert_eq!(text(&short), "value-3");
    }

    #[test]
    fn answers_are_reusable_until_refresh_ahead_would_start() {
        let pol = policy(10, 60);
        let secs = Duration::from_secs;
        // Refresh-ahead at 0.8 of the TTL: a read at 8 s would start it.
        assert_eq!(pol.reusable_for(None, secs(3)), Some(secs(5)));
        assert_eq!(pol.reusable_for(None, secs(9)), Some(Duration::ZERO));
        // Stale (past the TTL), a per-read TTL, bypass and never-expiring reads.
        assert_eq!(pol.reusable_for(None, secs(70)), Some(Duration::ZERO));
        assert_eq!(
            pol.reusable_for(Some(Ttl::For(secs(100))), secs(30)),
            Some(secs(50))
        );
        assert_eq!(
            pol.reusable_for(Some(Ttl::Bypass), Duration::ZERO),
            Some(Duration::ZERO)
        );
        assert_eq!(pol.reusable_for(Some(Ttl::Forever), secs(1_000)), None);
        // Without refresh-ahead (1.0, or a fraction past 1) an answer is reusable until it expires, no longer.
        for refresh_ahead in [1.0, 3.0] {
            let late = CachePolicy {
                refresh_ahead,
                ..pol
            };
            assert_eq!(late.reusable_for(None, secs(4)), Some(secs(6)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_zero_bypasses_and_negative_ttl_never_expires() {
        let (cache, upstream, p) = setup();
        let pol = policy(10, 60);
        get(&cache, &p, &pol, None).await.unwrap();
        let bypass = get(&cache, &p, &pol, Some(Ttl::Bypass)).await.unwrap();
        assert_eq!(
            (bypass.source, text(&bypass)),
            (Source::Miss, "value-2".into())
        );
        let forever = CachePolicy {
            ttl: Ttl::Forever,
            ..pol
        };
        tokio::time::advance(Duration::from_secs(1_000_000)).await;
        let hit = get(&cache, &p, &forever, None).await.unwrap();
        assert_eq!((hit.source, text(&hit)), (Source::Hit, "value-2".into()));
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_zero_without_stale_fallback_keeps_nothing() {
        let (cache, upstream, p) = setup();
        let pol = CachePolicy {
            ttl: Ttl::Bypass,
            max_stale: Duration::ZERO,
            ..policy(10, 60)
        };
        let first = get(&cache, &p, &pol, None).await.unwrap();
        let second = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!(
            (text(&first), text(&second)),
            ("value-1".into(), "value-2".into())
        );
        assert!(cache.keys().is_empty(), "no value kept in memory");
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hot_entry_is_refreshed_ahead_without_waiting() {
        let (cache, upstream, p) = setup();
        let pol = policy(10, 60); // refresh after 8 s
        get(&cache, &p, &pol, None).await.unwrap();
        upstream.delay_ms.store(1000, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(9)).await;
        let started = Instant::now();
        let hit = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!((hit.source, text(&hit)), (Source::Hit, "value-1".into()));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the reader waited on the refresh"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Past the original expiry the refreshed value is served, fresh, with no further upstream call.
        tokio::time::advance(Duration::from_secs(2)).await;
        let after = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!(
            (after.source, text(&after)),
            (Source::Hit, "value-2".into())
        );
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_value_served_while_upstream_down_until_max_stale() {
        let (cache, upstream, p) = setup();
        let pol = CachePolicy {
            refresh_ahead: 1.0,
            ..policy(10, 30)
        };
        get(&cache, &p, &pol, None).await.unwrap();
        upstream.down.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(25)).await;
        let stale = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!(
            (stale.source, text(&stale)),
            (Source::Stale, "value-1".into())
        );
        tokio::time::advance(Duration::from_secs(20)).await; // 45 s old: 35 s past expiry
        match get(&cache, &p, &pol, None).await {
            Err(Fault::StaleExpired { age, max_stale, .. }) => {
                assert_eq!((age.as_secs(), max_stale.as_secs()), (45, 30));
            }
            other => panic!("expected StaleExpired, got {other:?}"),
        }
        upstream.down.store(false, Ordering::SeqCst);
        let recovered = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!(recovered.source, Source::Miss);
        assert_eq!(cache.stats().stale_served, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn uncached_key_fails_fast_when_upstream_down() {
        let (cache, upstream, p) = setup();
        upstream.down.store(true, Ordering::SeqCst);
        match get(&cache, &p, &policy(10, 30), None).await {
            Err(Fault::Upstream(e)) => assert_eq!(e.kind(), ErrorKind::Unavailable),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn not_found_is_remembered_briefly() {
        let upstream = Arc::new(Upstream::default());
        let p: Arc<dyn Provider> = upstream.clone();
        let cache = Cache::new(CacheConfig {
            negative_ttl: Duration::from_millis(300),
            ..CacheConfig::default()
        });
        upstream.missing.store(true, Ordering::SeqCst);
        let pol = policy(10, 30);
        for _ in 0..5 {
            assert!(
                matches!(get(&cache, &p, &pol, None).await, Err(Fault::Upstream(e)) if e.kind() == ErrorKind::NotFound)
            );
        }
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().negative_hits, 4);
        upstream.missing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(get(&cache, &p, &pol, None).await.is_ok());
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn byte_bound_evicts_entries() {
        let upstream = Arc::new(Upstream::default());
        let p: Arc<dyn Provider> = upstream.clone();
        let cache = Cache::new(CacheConfig {
            max_bytes: 10 * 1024,
            ..CacheConfig::default()
        });
        let pol = policy(60, 60);
        for i in 0..200 {
            cache
                .get(&key(&format!("k{i}")), &p, &pol, None, false)
                .await
                .unwrap();
        }
        let (entries, bytes) = cache.usage().await;
        assert!(bytes <= 10 * 1024, "{bytes} bytes cached");
        assert!(entries < 200 && entries > 0, "{entries} entries");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_going_away_does_not_cancel_the_fetch() {
        let (cache, upstream, p) = setup();
        upstream.delay_ms.store(200, Ordering::SeqCst);
        let pol = policy(60, 60);
        let abandoned =
            tokio::time::timeout(Duration::from_millis(20), get(&cache, &p, &pol, None)).await;
        assert!(abandoned.is_err());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let hit = get(&cache, &p, &pol, None).await.unwrap();
        assert_eq!(hit.source, Source::Hit);
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn evicted_values_are_released() {
        // The cache holds the only reference to the value's buffer; once invalidated and dropped by readers,
        // the Arc count reaching zero is what zeroizes it (SecretBox's Drop).
        let (cache, _upstream, p) = setup();
        let pol = policy(60, 60);
        let got = get(&cache, &p, &pol, None).await.unwrap();
        let weak = Arc::downgrade(&got.secret.value.0);
        drop(got);
        cache.invalidate(&key("k")).await;
        cache.usage().await;
        assert!(weak.upgrade().is_none(), "the value outlived its eviction");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_limit_spaces_upstream_calls_of_distinct_keys() {
        let (cache, upstream, inner) = setup();
        let limited: Arc<dyn Provider> = Arc::new(crate::provider::RateLimited::new(
            inner,
            std::num::NonZeroU32::new(20).unwrap(),
        ));
        let pol = policy(60, 60);
        let started = std::time::Instant::now();
        // 40 distinct cold keys: a burst of 20, then 20 more at 50 ms intervals, so about a second.
        let reads = (0..40).map(|i| {
            let (cache, limited) = (cache.clone(), limited.clone());
            async move {
                cache
                    .get(&key(&format!("k{i}")), &limited, &pol, None, false)
                    .await
            }
        });
        let results = futures::future::join_all(reads).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 40);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900),
            "40 calls at 20/s took only {elapsed:?}"
        );
    }
}

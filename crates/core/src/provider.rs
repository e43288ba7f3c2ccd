//! The one trait every backend implements.

use std::fmt;

use async_trait::async_trait;

use crate::ProviderError;
use crate::reference::{BackendKind, Target};
use crate::value::Secret;

/// A secret backend: AWS Secrets Manager, GCP Secret Manager, the local store.
///
/// Implementations classify every failure into an [`crate::ErrorKind`] with a message that says what to do,
/// bound every outbound call with a timeout, and never put a value into an error or a log line.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The backend family, which decides how references are parsed for this instance.
    fn kind(&self) -> BackendKind;

    /// Fetches one version of one secret.
    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError>;

    /// Lists secret names, following every page; `filter` narrows the listing.
    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError>;
}

/// What a listing narrows to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// Names starting with this, on every backend (`keyway list --filter`, the daemon's `/v1/list`).
    Prefix(String),
    /// AWS `ListSecrets` `Filters`, each a key (`name`, `description`, `tag-key`, `tag-value`, `primary-region`,
    /// `owning-service`, `all`) and its values, passed to AWS unchanged (as raysecretsproxy passes boto3's).
    Aws(Vec<(String, Vec<String>)>),
    /// A GCP `ListSecrets` filter expression (`name:prod OR labels.team=ml`), passed to Google unchanged.
    Gcp(String),
}

impl ListFilter {
    /// The error of a backend handed another backend's filter.
    pub fn not_for(&self, kind: BackendKind) -> ProviderError {
        ProviderError::new(
            crate::ErrorKind::Invalid,
            format!(
                "a {} listing filter does not apply to a {} instance; give a name prefix",
                match self {
                    ListFilter::Aws(_) => "AWS",
                    ListFilter::Gcp(_) => "GCP",
                    ListFilter::Prefix(_) => "prefix",
                },
                kind.as_str()
            ),
        )
    }
}

/// Bounds the rate of upstream calls of one provider instance (a token bucket: `per_second` calls per
/// second, bursts of the same size). Callers over the rate wait for their turn, so a stampede of distinct
/// keys or a refresh storm never multiplies load on a throttling upstream; the cache's fetch timeout still
/// bounds the wait.
pub struct RateLimited {
    inner: std::sync::Arc<dyn Provider>,
    limiter: governor::DefaultDirectRateLimiter,
    per_second: std::num::NonZeroU32,
}

impl RateLimited {
    /// Wraps `inner` with a limit of `per_second` upstream calls per second.
    pub fn new(inner: std::sync::Arc<dyn Provider>, per_second: std::num::NonZeroU32) -> Self {
        RateLimited {
            inner,
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            per_second,
        }
    }
}

impl fmt::Debug for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimited")
            .field("inner", &self.inner)
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Provider for RateLimited {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        self.limiter.until_ready().await;
        self.inner.fetch(target).await
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        self.limiter.until_ready().await;
        self.inner.list(filter).await
    }
}

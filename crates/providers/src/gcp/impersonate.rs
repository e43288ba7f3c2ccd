//! GCP service account impersonation through the IAM Credentials API: `generateAccessToken` called with the
//! source credentials (Application Default Credentials), the token cached until shortly before its
//! `expireTime` and refreshed by one caller while the others wait.
//!
//! Hand-written on purpose: google-cloud-auth's `impersonated::Builder` makes the same call, but its IAM
//! endpoint can only be overridden from the crate's own tests, so it could never be pointed at an emulator
//! and proven. This is that one call (`docs/iam.md`), on the HTTP client google-cloud-auth already links.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use google_cloud_auth::errors::CredentialsError;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// The IAM Credentials API.
pub const DEFAULT_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The longest lifetime Google grants without an organization policy change.
const LIFETIME: &str = "3600s";
/// Refresh this long before expiry (or at half the lifetime, when that is shorter).
const REFRESH_MARGIN: Duration = Duration::from_mins(5);

/// Credentials that act as `service_account`, obtained with `source`'s.
pub struct Impersonated {
    source: Credentials,
    service_account: String,
    url: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
}

/// `generateAccessToken`'s answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    access_token: SecretString,
    expire_time: String,
}

struct Token {
    headers: HeaderMap,
    tag: EntityTag,
    refresh_at: Instant,
}

impl fmt::Debug for Impersonated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impersonated")
            .field("service_account", &self.service_account)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Impersonated {
    /// Impersonates `service_account` through the IAM Credentials API at `endpoint` (default
    /// [`DEFAULT_ENDPOINT`]); every call is bounded by `timeout`.
    pub fn new(
        source: Credentials,
        service_account: &str,
        endpoint: Option<&str>,
        timeout: Duration,
    ) -> Result<Impersonated, reqwest::Error> {
        crate::tls::install();
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/');
        Ok(Impersonated {
            source,
            service_account: service_account.to_owned(),
            url: format!(
                "{endpoint}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken"
            ),
            http: reqwest::Client::builder().timeout(timeout).build()?,
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn generate(&self) -> Result<Token, CredentialsError> {
        let sa = &self.service_account;
        let source = match self.source.headers(Extensions::new()).await? {
            CacheableResource::New { data, .. } => data,
            CacheableResource::NotModified => {
                return Err(CredentialsError::from_msg(
                    true,
                    "the source credentials answered NotModified to a request without an entity tag",
                ));
            }
        };
        let asked = SystemTime::now();
        let response = self
            .http
            .post(&self.url)
            .headers(source)
            .json(&serde_json::json!({"scope": [SCOPE], "lifetime": LIFETIME}))
            .send()
            .await
            .map_err(|e| {
                CredentialsError::new(
                    true,
                    format!("could not reach the IAM Credentials API to impersonate {sa}; check the network path"),
                    e,
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let detail: String = body["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .chars()
                .take(300)
                .collect();
            let message = match status {
                StatusCode::FORBIDDEN => format!(
                    "the daemon's Google credentials may not impersonate {sa}: grant them roles/iam.serviceAccountTokenCreator on that service account ({detail})"
                ),
                StatusCode::NOT_FOUND => format!(
                    "service account {sa} was not found; check the identity mapping's value ({detail})"
                ),
                StatusCode::UNAUTHORIZED => format!(
                    "Google rejected the source credentials while impersonating {sa}; run `gcloud auth application-default login` or check GOOGLE_APPLICATION_CREDENTIALS ({detail})"
                ),
                _ => format!(
                    "the IAM Credentials API answered {status} while impersonating {sa}; retry later ({detail})"
                ),
            };
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(CredentialsError::from_msg(transient, message));
        }
        let reply: Reply = response.json().await.map_err(|e| {
            CredentialsError::new(
                false,
                "the IAM Credentials API answered generateAccessToken with an unexpected body",
                e,
            )
        })?;
        let expires = humantime::parse_rfc3339_weak(&reply.expire_time).map_err(|e| {
            CredentialsError::new(
                false,
                format!(
                    "the IAM Credentials API gave an unreadable expireTime `{}`",
                    reply.expire_time
                ),
                e,
            )
        })?;
        let lifetime = expires.duration_since(asked).unwrap_or_default();
        let bearer = Zeroizing::new(format!("Bearer {}", reply.access_token.expose_secret()));
        let mut value = HeaderValue::from_str(&bearer).map_err(|e| {
            CredentialsError::new(
                false,
                "the IAM Credentials API gave an access token that is not a header value",
                e,
            )
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        tracing::info!(service_account = %sa, lifetime_s = lifetime.as_secs(), "impersonated GCP service account");
        Ok(Token {
            headers,
            tag: EntityTag::new(),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN.min(lifetime / 2)),
        })
    }
}

impl CredentialsProvider for Impersonated {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        // Held across the refresh: one generateAccessToken at a time, the other callers wait for its token.
        let mut token = self.token.lock().await;
        let current = match token.take() {
            Some(t) if Instant::now() < t.refresh_at => t,
            _ => self.generate().await?,
        };
        let answer = if extensions.get::<EntityTag>() == Some(&current.tag) {
            CacheableResource::NotModified
        } else {
            CacheableResource::New {
                entity_tag: current.tag.clone(),
                data: current.headers.clone(),
            }
        };
        *token = Some(current);
        Ok(answer)
    }

    async fn universe_domain(&self) -> Option<String> {
        self.source.universe_domain().await
    }
}

//! Google Cloud Secret Manager through the official Rust client, optionally as an impersonated service
//! account ([`impersonate`]).

pub mod impersonate;
pub mod project;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::paginator::ItemPaginator as _;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt as _};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{
    Answer, Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta,
    SecretValue, Upstream,
};
use serde::Deserialize;
use tokio::sync::OnceCell;

/// Settings of one GCP instance.
#[derive(Debug, Clone, Default)]
pub struct GcpSettings {
    /// Project used by references that name only a secret.
    pub project: Option<String>,
    /// Location of regional secrets for references that name none (global when `None`).
    pub location: Option<String>,
    /// Endpoint override for every location (`https://secretmanager.googleapis.com` by default, and
    /// `https://secretmanager.LOCATION.rep.googleapis.com` for a regional secret).
    pub endpoint: Option<String>,
    /// Anonymous credentials (for an emulator) instead of Application Default Credentials.
    pub anonymous: bool,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Act as this service account (impersonated with the instance's own credentials), as the identity
    /// mapping chose.
    pub impersonate: Option<String>,
    /// The IAM Credentials endpoint for impersonation (default [`impersonate::DEFAULT_ENDPOINT`]).
    pub iam_endpoint: Option<String>,
}

/// The GCP Secret Manager provider. Each location's client (and the ADC lookup) is built on first use.
#[derive(Debug)]
pub struct GcpProvider {
    settings: GcpSettings,
    /// By location (`None`: global): regional secrets are served by their region's endpoint only.
    clients: Mutex<HashMap<Option<String>, Arc<OnceCell<SecretManagerService>>>>,
    /// The project Google's libraries would name ([`project::default_project`]), looked up once, when a
    /// reference and the settings name none.
    found_project: OnceCell<Option<String>>,
}

/// How many locations' clients a provider keeps (Secret Manager has fewer locations than this).
const MAX_CLIENTS: usize = 48;

/// Where the secrets of `project` in `location` (`None`: global ones) live: `projects/P[/locations/L]`.
fn parent(project: &str, location: Option<&str>) -> String {
    match location {
        Some(location) => format!("projects/{project}/locations/{location}"),
        None => format!("projects/{project}"),
    }
}

/// The endpoint that serves secrets of `location` (`None`: global ones).
fn regional_endpoint(location: Option<&str>) -> Option<String> {
    location.map(|l| format!("https://secretmanager.{l}.rep.googleapis.com"))
}

impl GcpProvider {
    /// A provider with the given settings.
    pub fn new(settings: GcpSettings) -> Self {
        crate::tls::install();
        GcpProvider {
            settings,
            clients: Mutex::new(HashMap::new()),
            found_project: OnceCell::new(),
        }
    }

    async fn client(&self, location: Option<&str>) -> Result<SecretManagerService, ProviderError> {
        let cell = {
            let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
            let key = location.map(str::to_owned);
            match clients.get(&key) {
                Some(cell) => Arc::clone(cell),
                // Locations come from references, which a daemon's callers choose: past the bound, a client
                // serves its one request and is not kept, so memory stays bounded.
                None if clients.len() >= MAX_CLIENTS => Arc::new(OnceCell::new()),
                None => Arc::clone(clients.entry(key).or_default()),
            }
        };
        cell.get_or_try_init(|| self.new_client(location))
            .await
            .cloned()
    }

    /// A client for `location` (global when `None`): its endpoint, retries, timeout and credentials.
    async fn new_client(
        &self,
        location: Option<&str>,
    ) -> Result<SecretManagerService, ProviderError> {
        let s = &self.settings;
        let mut builder = SecretManagerService::builder()
            .with_retry_policy(Aip194Strict.with_attempt_limit(3))
            .with_attempt_timeout(s.timeout);
        if let Some(endpoint) = s.endpoint.clone().or_else(|| regional_endpoint(location)) {
            builder = builder.with_endpoint(endpoint);
        }
        if s.anonymous {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        } else if let Some(account) = &s.impersonate {
            builder = builder.with_credentials(self.impersonated(account)?);
        }
        builder.build().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::PermissionDenied,
                "could not set up Google credentials; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS",
            )
            .with_upstream(Some(Upstream::NoCredentials))
            .with_source(e)
        })
    }

    /// Application Default Credentials acting as `account`.
    fn impersonated(
        &self,
        account: &str,
    ) -> Result<google_cloud_auth::credentials::Credentials, ProviderError> {
        let source = google_cloud_auth::credentials::Builder::default()
            .build()
            .map_err(|e| {
                ProviderError::new(
                    ErrorKind::PermissionDenied,
                    format!("could not set up the Google credentials that impersonate {account}; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"),
                )
                .with_upstream(Some(Upstream::NoCredentials))
                .with_source(e)
            })?;
        let impersonated = impersonate::Impersonated::new(
            source,
            account,
            self.settings.iam_endpoint.as_deref(),
            self.settings.timeout,
        )
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Unavailable,
                "could not build the HTTP client for the IAM Credentials API",
            )
            .with_source(e)
        })?;
        Ok(impersonated.into())
    }

    /// The reference's project, else the instance's, else the one Google's libraries would name.
    async fn project<'a>(&'a self, project: Option<&'a String>) -> Result<&'a str, ProviderError> {
        if let Some(project) = project.or(self.settings.project.as_ref()) {
            return Ok(project);
        }
        self.found_project
            .get_or_init(project::default_project)
            .await
            .as_deref()
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Invalid,
                    "no GCP project: write gcp-sm://PROJECT/SECRET, set `project` in the provider's table of keyway.toml, or set GOOGLE_CLOUD_PROJECT",
                )
            })
    }
}

#[async_trait]
impl Provider for GcpProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Gcp
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Gcp {
            project,
            location,
            secret,
            version,
        } = target
        else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not a GCP reference",
            ));
        };
        let project = self.project(project.as_ref()).await?;
        let location = location.as_deref().or(self.settings.location.as_deref());
        let parent = parent(project, location);
        let name = format!("{parent}/secrets/{secret}/versions/{version}");
        let response = self
            .client(location)
            .await?
            .access_secret_version()
            .set_name(name.clone())
            .send()
            .await
            .map_err(|e| classify(e, &name))?;
        let payload = response.payload.unwrap_or_default();
        if let Some(expected) = payload.data_crc32c {
            let actual = crc32c::crc32c(&payload.data);
            if i64::from(actual) != expected {
                return Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "the payload of {name} failed its CRC32C check (corrupted in transit); retry"
                    ),
                ));
            }
        }
        // GCP stores bytes; report text when they are UTF-8, as `gcloud secrets versions access` prints them.
        let encoding = if std::str::from_utf8(&payload.data).is_ok() {
            Encoding::Text
        } else {
            Encoding::Binary
        };
        let version_id = response
            .name
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Secret {
            value: SecretValue::new(Vec::from(payload.data)),
            encoding,
            meta: SecretMeta {
                name: format!("{parent}/secrets/{secret}"),
                version_id,
                // AccessSecretVersion returns neither aliases nor the creation time, and fetching them needs
                // secretmanager.versions.get, which roles/secretmanager.secretAccessor does not grant.
                stages: Vec::new(),
                created: None,
                attributes: std::collections::BTreeMap::new(),
            }
            .into(),
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let project = self.project(None).await?;
        let location = self.settings.location.as_deref();
        let parent = parent(project, location);
        let mut request = self
            .client(location)
            .await?
            .list_secrets()
            .set_parent(parent.clone())
            .set_page_size(250);
        let expression = match filter {
            None => None,
            Some(ListFilter::Prefix(prefix)) => Some(format!("name:{prefix}")),
            Some(ListFilter::Gcp(expression)) => Some(expression.clone()),
            Some(other) => return Err(other.not_for(BackendKind::Gcp)),
        };
        if let Some(expression) = expression {
            request = request.set_filter(expression);
        }
        let mut items = request.by_item();
        let mut names = Vec::new();
        while let Some(item) = items.next().await {
            let secret = item.map_err(|e| classify(e, &format!("{parent}/secrets")))?;
            names.push(
                secret
                    .name
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(names)
    }
}

/// Whether Application Default Credentials come from the metadata server: the Google client falls back to it
/// when `GOOGLE_APPLICATION_CREDENTIALS` is unset and gcloud's file (`~/.config/gcloud/application_default_credentials.json`)
/// is missing (AIP-4110). Off GCE and GKE that ends in a timeout whose own message does not say what to do.
fn from_metadata_server() -> bool {
    std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none()
        && std::env::var_os("HOME").is_none_or(|home| {
            !std::path::Path::new(&home)
                .join(".config/gcloud/application_default_credentials.json")
                .exists()
        })
}

/// The innermost error of a chain: for the metadata server, the refused connection or the HTTP status under the
/// client's "transient errors".
fn root_cause<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    std::iter::successors(Some(err), |e| e.source())
        .last()
        .unwrap_or(err)
}

/// Whether the credentials failed because nothing answered at the metadata server's address: the innermost
/// error is the socket's (connection refused, address lookup failed), not an HTTP answer.
fn no_metadata_server(err: &google_cloud_gax::error::Error) -> bool {
    std::error::Error::source(err)
        .is_some_and(|cause| root_cause(cause).downcast_ref::<std::io::Error>().is_some())
}

fn classify(err: google_cloud_gax::error::Error, name: &str) -> ProviderError {
    let (kind, message) = match err.status().map(|s| s.code) {
        Some(Code::NotFound) => (ErrorKind::NotFound, format!("{name} was not found; check the project, secret id and version")),
        Some(Code::FailedPrecondition) => (
            ErrorKind::NotFound,
            format!("{name} is disabled or destroyed; enable it (gcloud secrets versions enable) or use another version"),
        ),
        Some(Code::PermissionDenied) => (
            ErrorKind::PermissionDenied,
            format!("permission denied on {name}: grant the caller roles/secretmanager.secretAccessor on the secret"),
        ),
        Some(Code::Unauthenticated) => (
            ErrorKind::PermissionDenied,
            "Google rejected the credentials; run `gcloud auth application-default login` or check GOOGLE_APPLICATION_CREDENTIALS"
                .to_owned(),
        ),
        Some(Code::ResourceExhausted) => (
            ErrorKind::Throttled,
            format!("Secret Manager quota exhausted while reading {name}; lower the request rate or raise the quota"),
        ),
        Some(Code::InvalidArgument | Code::OutOfRange) => (ErrorKind::Invalid, format!("Secret Manager rejected the request for {name} as invalid")),
        Some(_) => (ErrorKind::Unavailable, format!("Secret Manager failed on {name}; retry later")),
        // The credentials' own message says what failed and what to do (impersonation names the service
        // account and the missing role); it never holds a token.
        None if err.is_authentication() => (
            ErrorKind::PermissionDenied,
            match std::error::Error::source(&err) {
                Some(cause) if from_metadata_server() => format!(
                    "could not obtain Google credentials from the metadata server ({}), and there is no Application Default Credentials file; run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or on GCE/GKE check the instance's service account",
                    root_cause(cause)
                ),
                Some(cause) => format!("could not obtain Google credentials: {cause}"),
                None => "could not obtain Google credentials; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS".to_owned(),
            },
        ),
        None if err.is_timeout() => (ErrorKind::Unavailable, format!("Secret Manager timed out on {name}; check the network path")),
        None => (ErrorKind::Unavailable, format!("could not reach Secret Manager for {name}; check the endpoint and network")),
    };
    let upstream = match err.status() {
        Some(status) => Some(Upstream::Code(status.code.name().to_owned())),
        // No credentials file and no metadata server to ask (refused, no such host): where Google's Python
        // client raises `DefaultCredentialsError`. A metadata server that answered with an error is not that.
        None if err.is_authentication() && from_metadata_server() && no_metadata_server(&err) => {
            Some(Upstream::NoCredentials)
        }
        None if err.is_authentication() => None,
        None if err.is_timeout() => Some(Upstream::ReadTimeout),
        None if err.is_connect() => Some(Upstream::Unreachable),
        None => None,
    };
    // Google's own status and message, for the drop-ins that raise what Google's client raises.
    let answer = err.status().map(|status| Answer {
        status: err
            .http_status_code()
            .unwrap_or_else(|| http_status(status.code)),
        message: status.message.clone(),
    });
    ProviderError::new(kind, message)
        .with_upstream(upstream)
        .with_answer(answer)
        .with_source(err)
}

/// The HTTP status of a gRPC code (`google.rpc.Code`'s mapping), for an error that came without one.
fn http_status(code: Code) -> u16 {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::{GcpProvider, GcpSettings, MAX_CLIENTS, parent, regional_endpoint};

    #[tokio::test]
    async fn clients_kept_for_locations_are_bounded() {
        let provider = GcpProvider::new(GcpSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            anonymous: true,
            ..GcpSettings::default()
        });
        for i in 0..MAX_CLIENTS + 20 {
            provider.client(Some(&format!("l{i}"))).await.unwrap();
        }
        provider.client(None).await.unwrap();
        assert_eq!(provider.clients.lock().unwrap().len(), MAX_CLIENTS);
        assert!(
            provider
                .clients
                .lock()
                .unwrap()
                .contains_key(&Some("l0".to_owned()))
        );
    }

    #[test]
    fn regional_secrets_go_to_their_locations_endpoint() {
        // Google's regional endpoint form (cloud.google.com/secret-manager/docs/locations).
        assert_eq!(
            regional_endpoint(Some("me-central2")).as_deref(),
            Some("https://secretmanager.me-central2.rep.googleapis.com")
        );
        assert_eq!(
            regional_endpoint(None),
            None,
            "global: the client's default"
        );
        assert_eq!(
            parent("p", Some("europe-west1")),
            "projects/p/locations/europe-west1"
        );
        assert_eq!(parent("p", None), "projects/p");
    }
}

/// `type = "gcp"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Project of references that name only a secret.
    pub project: Option<String>,
    /// Location of regional secrets, for references that name none (`europe-west1`).
    pub location: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// IAM Credentials endpoint override for service account impersonation.
    pub iam_endpoint: Option<String>,
    /// `default` or `anonymous`.
    #[serde(default)]
    pub credentials: crate::config::Credentials,
}

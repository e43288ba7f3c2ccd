//! AWS Secrets Manager through the official SDK.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use keyway_core::reference::{AwsVersion, BackendKind, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
    Upstream,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::OnceCell;

mod assume;
mod errors;
pub mod ssm;

use assume::assume;
pub use assume::{AssumeRole, RoleSource};
use errors::{NoThrottlingRetry, SECRETS_MANAGER, aws_smithy_error_chain, classify};
pub use ssm::SsmProvider;

/// Settings of one AWS instance; `None` means the SDK's standard chain decides (environment, profile, IMDS).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Region (`AWS_REGION` and the profile otherwise).
    pub region: Option<String>,
    /// Named profile from `~/.aws/config`.
    pub profile: Option<String>,
    /// Endpoint override; the SDK also honours `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub endpoint: Option<String>,
    /// Send unsigned requests (for emulators that do not check signatures).
    pub anonymous: bool,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Fixed keys handed in by code (the Ray drop-in's boto3-style keywords, emulators in tests); never read
    /// from the config file, which should not hold AWS keys.
    pub static_keys: Option<StaticKeys>,
    /// A role to assume on top of the base credentials, chosen by the identity mapping.
    pub assume: Option<AssumeRole>,
}

/// An access key pair, and the session token of temporary credentials. Debug shows only the access key id.
#[derive(Clone)]
pub struct StaticKeys {
    /// The access key id (not secret: it names the key, as CloudTrail shows it).
    pub access_key: String,
    /// The secret access key.
    pub secret_key: SecretString,
    /// The session token of temporary (STS) credentials.
    pub session_token: Option<SecretString>,
}

impl StaticKeys {
    /// A long-term key pair.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> StaticKeys {
        StaticKeys {
            access_key: access_key.into(),
            secret_key: SecretString::from(secret_key.into()),
            session_token: None,
        }
    }
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The SDK's configuration of an instance: region, profile, endpoint, credentials and timeouts, with the mapped
/// role assumed. Shared by Secrets Manager and Parameter Store instances.
pub(crate) async fn load_sdk_config(
    s: &AwsSettings,
) -> Result<aws_config::SdkConfig, ProviderError> {
    let mut loader =
        crate::tls::with_aws_http_client(aws_config::defaults(BehaviorVersion::latest()))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(s.timeout)
                    .operation_timeout(s.timeout * 3)
                    .build(),
            );
    if let Some(region) = &s.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &s.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &s.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if s.anonymous {
        loader = loader.no_credentials();
    } else if let Some(keys) = &s.static_keys {
        loader = loader.credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            keys.access_key.clone(),
            keys.secret_key.expose_secret().to_owned(),
            keys.session_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            None,
            "keyway-static",
        ));
    }
    let mut config = loader.load().await;
    if let Some(role) = &s.assume {
        // STS is called in the configured region.
        if config.region().is_none() {
            return Err(no_region());
        }
        config = assume(config, role).await?;
    }
    Ok(config)
}

/// No region in the settings, the environment or the AWS config file.
pub(crate) fn no_region() -> ProviderError {
    ProviderError::new(
        ErrorKind::Misconfigured,
        "no AWS region configured; set AWS_REGION or `region` in the provider's table of keyway.toml (or name the secret by its ARN, which holds its region)",
    )
    .with_upstream(Some(Upstream::NoRegion))
}

/// The AWS Secrets Manager provider. The SDK client is built on first use, so an unused instance costs nothing.
#[derive(Debug)]
pub struct AwsProvider {
    settings: AwsSettings,
    sdk: OnceCell<aws_config::SdkConfig>,
    client: OnceCell<Client>,
    /// Clients for the other regions ARNs name: Secrets Manager serves a secret in its own region only.
    regional: Mutex<HashMap<String, Client>>,
}

/// How many other regions' clients a provider keeps (AWS has fewer regions than this).
const MAX_REGIONAL_CLIENTS: usize = 48;

/// The region an ARN names (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`), when `secret_id` is one and
/// the region is a plain host label (the reference parser refuses others; this keeps a request from being
/// signed for a host an odd region would name).
fn arn_region(secret_id: &str) -> Option<&str> {
    secret_id
        .strip_prefix("arn:")?
        .split(':')
        .nth(2)
        .filter(|region| keyway_core::reference::is_aws_region(region))
}

impl AwsProvider {
    /// A provider with the given settings.
    pub fn new(settings: AwsSettings) -> Self {
        crate::tls::install();
        AwsProvider {
            settings,
            sdk: OnceCell::new(),
            client: OnceCell::new(),
            regional: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `secret_id`: the instance's, or for an ARN of another region, the same client in that
    /// region (same credentials, endpoint and timeouts), as a cross-region read needs.
    async fn client_for(&self, secret_id: &str) -> Result<Client, ProviderError> {
        let Some(region) = arn_region(secret_id) else {
            return self.home_client().await.cloned();
        };
        let base = self.client().await?;
        if base.config().region().is_some_and(|r| r.as_ref() == region) {
            return Ok(base.clone());
        }
        let build = || {
            tracing::debug!(region, "a client for the region an ARN names");
            Client::from_conf(
                base.config()
                    .to_builder()
                    .region(Region::new(region.to_owned()))
                    .build(),
            )
        };
        let mut regional = self.regional.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = regional.get(region) {
            return Ok(client.clone());
        }
        // Regions come from references, which a daemon's callers choose: past the bound, a client serves its
        // one request and is not kept, so memory stays bounded.
        if regional.len() >= MAX_REGIONAL_CLIENTS {
            return Ok(build());
        }
        Ok(regional
            .entry(region.to_owned())
            .or_insert_with(build)
            .clone())
    }

    /// The client of the instance's own region; none configured is an error naming where to set one (an ARN,
    /// which names its region, needs none: [`AwsProvider::client_for`]).
    async fn home_client(&self) -> Result<&Client, ProviderError> {
        let client = self.client().await?;
        if client.config().region().is_none() {
            return Err(no_region());
        }
        Ok(client)
    }

    /// The instance's client, in its region if it has one.
    async fn client(&self) -> Result<&Client, ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let config =
                    aws_sdk_secretsmanager::config::Builder::from(self.sdk_config().await?)
                        .retry_classifier(NoThrottlingRetry)
                        .build();
                Ok(Client::from_conf(config))
            })
            .await
    }

    /// The SDK's configuration of this instance: region, profile, endpoint, credentials and timeouts, with the
    /// mapped role assumed.
    async fn sdk_config(&self) -> Result<&aws_config::SdkConfig, ProviderError> {
        self.sdk
            .get_or_try_init(|| load_sdk_config(&self.settings))
            .await
    }

    /// Who the instance's credentials are (STS `GetCallerIdentity`: the ARN), to refuse to start with
    /// credentials AWS does not take, as the AWS agent's `validate_credentials` does.
    pub async fn caller_identity(&self) -> Result<String, ProviderError> {
        let config = self.sdk_config().await?;
        let out = aws_sdk_sts::Client::new(config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or_default().to_owned();
                let (kind, message) = match &e {
                    SdkError::ServiceError(_) => (
                        ErrorKind::PermissionDenied,
                        format!("AWS refused the credentials ({code}); refresh them or check the profile"),
                    ),
                    SdkError::DispatchFailure(_) if format!("{:#}", aws_smithy_error_chain(&e)).contains("credentials") => (
                        ErrorKind::PermissionDenied,
                        "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run where an instance role exists".to_owned(),
                    ),
                    _ => (
                        ErrorKind::Unavailable,
                        "could not reach AWS STS to check the credentials; check the endpoint and network".to_owned(),
                    ),
                };
                ProviderError::new(kind, message).with_source(e)
            })?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Aws
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Aws { secret_id, version } = target else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not an AWS reference",
            ));
        };
        let request = self
            .client_for(secret_id)
            .await?
            .get_secret_value()
            .secret_id(secret_id);
        let request = match version {
            AwsVersion::Stage(stage) => request.version_stage(stage),
            AwsVersion::Id(id) => request.version_id(id),
            AwsVersion::IdAndStage { id, stage } => request.version_id(id).version_stage(stage),
        };
        let out = request
            .send()
            .await
            .map_err(|e| classify(&e, SECRETS_MANAGER, "GetSecretValue", secret_id))?;
        let (value, encoding) = match (out.secret_string, out.secret_binary) {
            // Moving the SDK's buffers in avoids leaving a second, unzeroized copy behind.
            (Some(text), _) => (SecretValue::from(text), Encoding::Text),
            (None, Some(blob)) => (SecretValue::new(blob.into_inner()), Encoding::Binary),
            (None, None) => {
                return Err(ProviderError::new(
                    ErrorKind::NotFound,
                    format!(
                        "secret `{secret_id}` has no SecretString or SecretBinary in this version"
                    ),
                ));
            }
        };
        Ok(Secret {
            value,
            encoding,
            meta: SecretMeta {
                name: out.arn.or(out.name).unwrap_or_else(|| secret_id.clone()),
                version_id: out.version_id.unwrap_or_default(),
                stages: out.version_stages.unwrap_or_default(),
                created: out.created_date.and_then(|d| SystemTime::try_from(d).ok()),
                attributes: std::collections::BTreeMap::new(),
            }
            .into(),
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let mut request = self.home_client().await?.list_secrets().max_results(100);
        match filter {
            None => {}
            Some(ListFilter::Prefix(prefix)) => {
                request = request.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(prefix)
                        .build(),
                );
            }
            Some(ListFilter::Aws(filters)) => {
                for (key, values) in filters {
                    request = request.filters(
                        Filter::builder()
                            .key(FilterNameStringType::from(key.as_str()))
                            .set_values(Some(values.clone()))
                            .build(),
                    );
                }
            }
            Some(other) => return Err(other.not_for(BackendKind::Aws)),
        }
        let mut pages = request.into_paginator().send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(&e, SECRETS_MANAGER, "ListSecrets", "*"))?;
            names.extend(
                page.secret_list
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| s.name),
            );
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clients_kept_for_other_regions_are_bounded() {
        let provider = AwsProvider::new(AwsSettings {
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            static_keys: Some(StaticKeys::new("testing", "testing")),
            timeout: Duration::from_secs(1),
            ..AwsSettings::default()
        });
        let arn = |region: &str| format!("arn:aws:secretsmanager:{region}:123456789012:secret:s");
        for i in 0..MAX_REGIONAL_CLIENTS + 20 {
            let client = provider.client_for(&arn(&format!("r{i}"))).await.unwrap();
            assert_eq!(
                client.config().region().map(AsRef::as_ref),
                Some(format!("r{i}").as_str())
            );
        }
        provider.client_for(&arn("us-east-1")).await.unwrap();
        assert_eq!(
            provider.regional.lock().unwrap().len(),
            MAX_REGIONAL_CLIENTS
        );
    }

    #[test]
    fn static_keys_debug_shows_only_the_key_id() {
        let mut keys = StaticKeys::new("AKIDEXAMPLE", "wJalr-secret-canary");
        keys.session_token = Some(SecretString::from("session-canary".to_owned()));
        let settings = AwsSettings {
            static_keys: Some(keys),
            ..AwsSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("canary"), "{shown}");
    }
}

/// `type = "aws"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region (`AWS_REGION` and the profile otherwise).
    pub region: Option<String>,
    /// Named profile from `~/.aws/config`.
    pub profile: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// `default` or `anonymous`.
    #[serde(default)]
    pub credentials: crate::config::Credentials,
}

impl AwsConfig {
    /// The SDK settings, with the mapped role unless the instance is anonymous.
    pub(crate) fn settings(
        &self,
        timeout: Duration,
        identity: &crate::config::MappedIdentity,
    ) -> AwsSettings {
        let anonymous = self.credentials == crate::config::Credentials::Anonymous;
        AwsSettings {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint: self.endpoint.clone(),
            anonymous,
            timeout,
            static_keys: None,
            assume: identity.aws_assume.clone().filter(|_| !anonymous),
        }
    }
}

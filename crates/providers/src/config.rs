//! The providers' part of `keyway.toml`: `[providers.NAME]` tables (one per backend instance, typed by
//! backend) and `[cache]`, built into a [`Resolver`].
//!
//! ```toml
//! [providers.aws-sm]            # the default AWS instance, overridden
//! type = "aws"
//! region = "us-east-1"
//! ttl = "5m"                    # or seconds: 300; 0 bypasses the cache; -1 never expires
//! max_stale = "1h"
//!
//! [providers.team-gcp]          # a second instance, addressed as team-gcp://SECRET
//! type = "gcp"
//! project = "my-project"
//!
//! [cache]
//! max_bytes = 67108864
//! negative_ttl = "5s"
//! ```
//!
//! Each table is one backend's settings ([`Backend`]) and the cache policy every backend shares ([`Policy`]);
//! a key of another backend is refused, naming the key and the backend's keys.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyway_core::{
    BackendKind, Cache, CacheConfig, CachePolicy, Instances, Provider, RateLimited, Resolver, Ttl,
};
use serde::Deserialize;

use crate::aws::{AssumeRole, AwsConfig, AwsProvider, SsmProvider};
use crate::azure::{AzureConfig, AzureProvider};
use crate::gcp::{GcpConfig, GcpProvider, GcpSettings};
use crate::k8s::{K8sConfig, K8sProvider};
use crate::local::{LocalProvider, LocalSettings};
use crate::vault::{VaultConfig, VaultProvider};

/// A decorator applied to each instance's provider by [`ProvidersConfig::resolver_with`].
pub type WrapProvider = dyn Fn(&str, Arc<dyn Provider>) -> Arc<dyn Provider>;

/// Upstream calls per second for cloud instances without a `rate_limit` of their own.
pub const DEFAULT_CLOUD_RATE_LIMIT: u32 = 100;

/// Per-attempt upstream timeout of an instance that sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration problem; the message names the key and what to write instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is valid TOML but not a valid setting.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The provider instances and the cache they share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvidersConfig {
    /// Instances by name (`[providers.NAME]`); `aws-sm`, `gcp-sm` and `local` exist unless overridden.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// `[cache]`.
    pub cache: CacheSection,
    /// The identity the identity mapping chose for this workload; never read from the file.
    pub identity: MappedIdentity,
}

/// The identity the mapping chose (`[iam]`), applied to the instances on the standard credential chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedIdentity {
    /// The role the AWS instances assume.
    pub aws_assume: Option<AssumeRole>,
    /// The service account the GCP instances impersonate.
    pub gcp_impersonate: Option<String>,
}

/// One `[providers.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// The backend and its settings (`type` and the keys of that type).
    pub backend: Backend,
    /// The cache policy and limits every backend shares.
    pub policy: Policy,
}

/// A backend's own settings, by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Backend {
    /// `type = "aws"`: AWS Secrets Manager.
    Aws(AwsConfig),
    /// `type = "gcp"`: GCP Secret Manager.
    Gcp(GcpConfig),
    /// `type = "local"`: the local store.
    Local(LocalConfig),
    /// `type = "vault"`: HashiCorp Vault or OpenBao, KV v1 and v2.
    Vault(VaultConfig),
    /// `type = "ssm"`: AWS Systems Manager Parameter Store, with an AWS instance's keys.
    Ssm(AwsConfig),
    /// `type = "azure"`: Azure Key Vault.
    Azure(AzureConfig),
    /// `type = "k8s"`: Kubernetes Secrets.
    K8s(K8sConfig),
}

/// How an instance authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Credentials {
    /// The cloud's standard chain (environment, profile, metadata server), with the mapped identity.
    #[default]
    Default,
    /// Unsigned requests, for emulators.
    Anonymous,
}

/// `type = "local"`: a directory, a JSON/YAML file, or both.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Store directory.
    pub dir: Option<PathBuf>,
    /// JSON/YAML file.
    pub file: Option<PathBuf>,
    /// age identity for `*.age` files.
    pub age_identity: Option<PathBuf>,
}

/// The keys every backend takes: how its answers are cached and how often its upstream may be called.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Cache TTL: a duration (`"5m"`), seconds, `0` (bypass) or negative (never expires).
    #[serde(default, deserialize_with = "ttl")]
    pub ttl: Option<Ttl>,
    /// How long past expiry a value may be served when the upstream fails.
    #[serde(default, with = "humantime_serde")]
    pub max_stale: Option<Duration>,
    /// How long a read of an expired value waits for the upstream before it gets that value, marked stale
    /// (default 500ms; `"0s"`: never wait, refresh in the background).
    #[serde(default, with = "humantime_serde")]
    pub stale_wait: Option<Duration>,
    /// Per-attempt upstream timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Upstream calls per second (bursts of the same size); 0 for no limit. Default: 100 for cloud backends,
    /// none for local.
    pub rate_limit: Option<u32>,
}

/// The keys of [`Policy`], which every table may hold beside its backend's.
const POLICY_KEYS: [&str; 5] = ["ttl", "max_stale", "stale_wait", "timeout", "rate_limit"];

/// A TTL written as seconds (`300`, `-1`) or text (`"5m"`, `"0"`, `"forever"`).
fn ttl<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Ttl>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(i64),
        Text(String),
    }
    let ttl = match Written::deserialize(deserializer)? {
        #[allow(clippy::cast_precision_loss, reason = "seconds, far below 2^52")]
        Written::Seconds(s) => Ttl::from_secs_f64(s as f64),
        // The text is not quoted back: a value pasted in the wrong place may be a secret.
        Written::Text(text) => text.parse().map_err(|_: String| {
            serde::de::Error::custom(
                "ttl is not a TTL; write seconds (300), a duration (\"5m\"), 0 to bypass or -1 for never",
            )
        })?,
    };
    Ok(Some(ttl))
}

/// A serde message without the value it quotes (`invalid type: string "ghp_...", expected a duration` keeps
/// `invalid type: string, expected a duration`): a value pasted in place of a reference is often a secret.
pub fn unquoted(message: &str) -> String {
    let message = message.trim_end().replace('\n', " ");
    for prefix in ["invalid type: ", "invalid value: "] {
        // serde's form: "invalid type: integer `1234`, expected a string" (strings in double quotes).
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let kind = found.split(['`', '"']).next().unwrap_or("").trim_end();
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message
}

impl<'de> Deserialize<'de> for ProviderConfig {
    /// The table's policy keys into [`Policy`], the rest into its `type`'s [`Backend`]: each refuses what is not
    /// its own, so a key of another backend is named with the keys this one takes.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        let (policy, backend): (toml::Table, toml::Table) = table
            .into_iter()
            .partition(|(key, _)| POLICY_KEYS.contains(&key.as_str()));
        let kind = backend
            .get("type")
            .and_then(toml::Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let backend = Backend::deserialize(toml::Value::Table(backend)).map_err(|e| {
            serde::de::Error::custom(format!(
                "of type {kind}: {} (it takes these, and {})",
                unquoted(e.message()),
                POLICY_KEYS.join(", ")
            ))
        })?;
        let policy = Policy::deserialize(toml::Value::Table(policy))
            .map_err(|e| serde::de::Error::custom(unquoted(e.message())))?;
        Ok(ProviderConfig { backend, policy })
    }
}

impl ProviderConfig {
    /// `[providers.NAME]` from its table; the error names the table, the key, and what the backend takes.
    pub fn from_table(name: &str, table: toml::Value) -> Result<ProviderConfig, ConfigError> {
        ProviderConfig::deserialize(table).map_err(|e| {
            ConfigError::Invalid(format!("[providers.{name}] {}", unquoted(e.message())))
        })
    }

    /// A table of `backend` with the default policy.
    pub fn new(backend: Backend) -> ProviderConfig {
        ProviderConfig {
            backend,
            policy: Policy::default(),
        }
    }

    /// The backend family.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Aws(_) => BackendKind::Aws,
            Backend::Gcp(_) => BackendKind::Gcp,
            Backend::Local(_) => BackendKind::Local,
            Backend::Vault(_) => BackendKind::Vault,
            Backend::Ssm(_) => BackendKind::Ssm,
            Backend::Azure(_) => BackendKind::Azure,
            Backend::K8s(_) => BackendKind::K8s,
        }
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        match &self.backend {
            Backend::Local(local) if local.dir.is_none() && local.file.is_none() => {
                Err(ConfigError::Invalid(format!(
                    "[providers.{name}] of type local needs `dir` or `file`"
                )))
            }
            Backend::Gcp(GcpConfig {
                location: Some(location),
                ..
            }) if !keyway_core::reference::is_gcp_location(location) => {
                Err(ConfigError::Invalid(format!(
                    "[providers.{name}] location = \"{location}\" is not a GCP location; write e.g. \"europe-west1\""
                )))
            }
            Backend::Vault(vault) => vault
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}] {e}"))),
            Backend::Azure(azure) => azure
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}] {e}"))),
            Backend::K8s(k8s) => k8s
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}] {e}"))),
            _ => Ok(()),
        }
    }

    /// The provider, with the mapped identity for instances on the standard credential chain (an anonymous
    /// instance is an emulator's), and its cache policy.
    fn build(&self, identity: &MappedIdentity) -> (Arc<dyn Provider>, CachePolicy) {
        let defaults = CachePolicy::default();
        let policy = CachePolicy {
            ttl: self.policy.ttl.unwrap_or(defaults.ttl),
            max_stale: self.policy.max_stale.unwrap_or(defaults.max_stale),
            stale_wait: self.policy.stale_wait.unwrap_or(defaults.stale_wait),
            ..defaults
        };
        let timeout = self.policy.timeout.unwrap_or(DEFAULT_TIMEOUT);
        let provider: Arc<dyn Provider> = match &self.backend {
            Backend::Aws(aws) => Arc::new(AwsProvider::new(aws.settings(timeout, identity))),
            Backend::Gcp(gcp) => {
                let anonymous = gcp.credentials == Credentials::Anonymous;
                Arc::new(GcpProvider::new(GcpSettings {
                    project: gcp.project.clone(),
                    location: gcp.location.clone(),
                    endpoint: gcp.endpoint.clone(),
                    anonymous,
                    timeout,
                    impersonate: identity.gcp_impersonate.clone().filter(|_| !anonymous),
                    iam_endpoint: gcp.iam_endpoint.clone(),
                }))
            }
            Backend::Local(local) => Arc::new(LocalProvider::new(LocalSettings {
                dir: local.dir.clone(),
                file: local.file.clone(),
                age_identity: local.age_identity.clone(),
            })),
            Backend::Vault(vault) => Arc::new(VaultProvider::new(vault.settings(timeout))),
            Backend::Ssm(aws) => Arc::new(SsmProvider::new(aws.settings(timeout, identity))),
            Backend::Azure(azure) => Arc::new(AzureProvider::new(azure.settings(timeout))),
            Backend::K8s(k8s) => Arc::new(K8sProvider::new(k8s.settings(timeout))),
        };
        (provider, policy)
    }

    /// Joins the table's relative paths to `base`.
    fn anchor_paths(&mut self, base: &Path) {
        let paths: Vec<&mut PathBuf> = match &mut self.backend {
            Backend::Local(local) => [&mut local.dir, &mut local.file, &mut local.age_identity]
                .into_iter()
                .flatten()
                .collect(),
            Backend::Vault(vault) => vault.paths_mut(),
            Backend::Azure(azure) => azure.paths_mut(),
            Backend::K8s(k8s) => k8s.paths_mut(),
            Backend::Aws(_) | Backend::Gcp(_) | Backend::Ssm(_) => Vec::new(),
        };
        for path in paths {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Bound on cached bytes.
    pub max_bytes: u64,
    /// How long not-found answers are remembered.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        let d = CacheConfig::default();
        CacheSection {
            max_bytes: d.max_bytes,
            negative_ttl: d.negative_ttl,
        }
    }
}

impl ProvidersConfig {
    /// Checks every table (what serde cannot: a local store with neither `dir` nor `file`, a GCP location's
    /// form, instance names).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.instances()?;
        for (name, provider) in &self.providers {
            provider.validate(name)?;
        }
        Ok(())
    }

    /// Joins every relative path of the tables to `base`, the config file's directory.
    pub fn anchor_paths(&mut self, base: &Path) {
        for provider in self.providers.values_mut() {
            provider.anchor_paths(base);
        }
    }

    /// The instance names references may use and their kinds: the three defaults, then the configured ones (as
    /// [`ProvidersConfig::resolver`] has them, without building a provider).
    pub fn instances(&self) -> Result<Instances, ConfigError> {
        let mut instances = Instances::default();
        for (name, provider) in &self.providers {
            instances
                .insert(name, provider.kind())
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}]: {e}")))?;
        }
        Ok(instances)
    }

    /// Whether the files the configured local instances name are there (see [`LocalSettings::check`]), for a
    /// daemon about to serve this configuration. Returns warnings, each naming its instance.
    pub fn check_files(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for (name, p) in &self.providers {
            let Backend::Local(local) = &p.backend else {
                continue;
            };
            let settings = LocalSettings {
                dir: local.dir.clone(),
                file: local.file.clone(),
                age_identity: local.age_identity.clone(),
            };
            let found = settings
                .check()
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}] {e}")))?;
            warnings.extend(found.into_iter().map(|w| format!("[providers.{name}] {w}")));
        }
        Ok(warnings)
    }

    /// Who an AWS instance's credentials are (STS `GetCallerIdentity`), to refuse to start with credentials AWS
    /// does not take; `None` when `instance` is not an AWS instance.
    pub async fn aws_caller_identity(
        &self,
        instance: &str,
    ) -> Option<Result<String, keyway_core::ProviderError>> {
        let settings = match self
            .providers
            .get(instance)
            .map(|p| (&p.backend, &p.policy))
        {
            Some((Backend::Aws(aws), policy)) => {
                aws.settings(policy.timeout.unwrap_or(DEFAULT_TIMEOUT), &self.identity)
            }
            None if instance == "aws-sm" => {
                AwsConfig::default().settings(DEFAULT_TIMEOUT, &self.identity)
            }
            _ => return None,
        };
        Some(AwsProvider::new(settings).caller_identity().await)
    }

    /// Builds the resolver: the three default instances from the standard environment, then the configured ones.
    /// `local_dir` is the default local store (`$KEYWAY_LOCAL_DIR` or `./secrets`).
    pub fn resolver(&self, local_dir: PathBuf) -> Result<Resolver, ConfigError> {
        self.resolver_with(local_dir, &|_, provider| provider)
    }

    /// As [`ProvidersConfig::resolver`], passing each instance's provider (already rate limited) through
    /// `wrap`, e.g. to count its upstream calls.
    pub fn resolver_with(
        &self,
        local_dir: PathBuf,
        wrap: &WrapProvider,
    ) -> Result<Resolver, ConfigError> {
        let mut local_dir = Some(local_dir);
        let defaults = BackendKind::ALL.map(|kind| {
            ProviderConfig::new(match kind {
                BackendKind::Aws => Backend::Aws(AwsConfig::default()),
                // No project: the provider looks it up as Google's libraries do (`gcp::project`).
                BackendKind::Gcp => Backend::Gcp(GcpConfig::default()),
                BackendKind::Local => Backend::Local(LocalConfig {
                    dir: local_dir.take(),
                    ..LocalConfig::default()
                }),
                BackendKind::Vault => Backend::Vault(VaultConfig::default()),
                BackendKind::Ssm => Backend::Ssm(AwsConfig::default()),
                BackendKind::Azure => Backend::Azure(AzureConfig::default()),
                BackendKind::K8s => Backend::K8s(K8sConfig::default()),
            })
        });
        let configured = self.providers.iter().map(|(n, p)| (n.as_str(), p));
        let unconfigured = BackendKind::ALL
            .map(BackendKind::default_instance)
            .into_iter()
            .zip(&defaults)
            .filter(|(name, _)| !self.providers.contains_key(*name));
        let mut builder = Resolver::builder();
        for (name, p) in unconfigured.chain(configured) {
            let (provider, policy) = p.build(&self.identity);
            let limit = match (p.policy.rate_limit, p.kind()) {
                (Some(n), _) => NonZeroU32::new(n),
                (None, BackendKind::Local) => None,
                (None, _) => NonZeroU32::new(DEFAULT_CLOUD_RATE_LIMIT),
            };
            let provider: Arc<dyn Provider> = match limit {
                Some(limit) => Arc::new(RateLimited::new(provider, limit)),
                None => provider,
            };
            builder = builder.provider(name, wrap(name, provider), policy);
        }
        let cache = Cache::new(CacheConfig {
            max_bytes: self.cache.max_bytes,
            negative_ttl: self.cache.negative_ttl,
        });
        builder.build(cache).map_err(ConfigError::Invalid)
    }
}

//! `keyway.toml`: provider instances, cache limits, git credential mappings.
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
//!
//! [[git.credentials]]
//! host = "github.com"
//! username = "x-access-token"
//! password = "aws-sm://ci/github#github_token"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyway_core::{Cache, CacheConfig, CachePolicy, Provider, Resolver, Ttl};
use serde::Deserialize;

use crate::aws::{AwsProvider, AwsSettings};
use crate::gcp::{GcpProvider, GcpSettings};
use crate::local::{LocalProvider, LocalSettings};

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

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Provider instances by name; `aws-sm`, `gcp-sm` and `local` exist unless overridden.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Cache-wide limits.
    #[serde(default)]
    pub cache: CacheSection,
    /// Git credential helper mappings.
    #[serde(default)]
    pub git: GitSection,
}

/// One `[providers.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `aws`, `gcp` or `local`.
    #[serde(rename = "type")]
    pub kind: KindName,
    /// AWS region.
    pub region: Option<String>,
    /// AWS profile.
    pub profile: Option<String>,
    /// Endpoint override (AWS or GCP).
    pub endpoint: Option<String>,
    /// `default` or `anonymous` (for emulators).
    pub credentials: Option<String>,
    /// GCP project for references that name only a secret.
    pub project: Option<String>,
    /// Local store directory.
    pub dir: Option<PathBuf>,
    /// Local store JSON/YAML file.
    pub file: Option<PathBuf>,
    /// age identity for `*.age` files in the local store.
    pub age_identity: Option<PathBuf>,
    /// Cache TTL: a duration (`"5m"`), seconds, `0` (bypass) or negative (never expires).
    pub ttl: Option<TtlSetting>,
    /// How long past expiry a value may be served when the upstream fails.
    #[serde(default, with = "humantime_serde")]
    pub max_stale: Option<Duration>,
    /// Per-attempt upstream timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// Backend type names in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// AWS Secrets Manager.
    Aws,
    /// GCP Secret Manager.
    Gcp,
    /// Local store.
    Local,
}

/// A TTL as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TtlSetting {
    /// Seconds; 0 bypasses, negative never expires.
    Seconds(i64),
    /// A humantime duration (`"90s"`, `"5m"`), `"0"`, or `"-1"`/`"forever"`.
    Text(String),
}

impl TtlSetting {
    /// Converts to the core's TTL.
    pub fn to_ttl(&self) -> Result<Ttl, String> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            TtlSetting::Seconds(s) => Ok(Ttl::from_secs_f64(*s as f64)),
            TtlSetting::Text(t) => parse_ttl(t),
        }
    }
}

/// Parses `"5m"`, `"300"`, `"0"`, `"-1"` or `"forever"`.
pub fn parse_ttl(text: &str) -> Result<Ttl, String> {
    let text = text.trim();
    if text == "forever" || text.starts_with('-') {
        return Ok(Ttl::Forever);
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Ok(Ttl::from_secs_f64(secs));
    }
    humantime::parse_duration(text)
        .map(|d| if d.is_zero() { Ttl::Bypass } else { Ttl::For(d) })
        .map_err(|_| format!("`{text}` is not a TTL; write seconds (300), a duration (\"5m\"), 0 to bypass or -1 for never"))
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
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

/// `[git]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSection {
    /// Host to credential mappings, first match wins.
    #[serde(default)]
    pub credentials: Vec<GitCredential>,
}

/// One `[[git.credentials]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitCredential {
    /// Host as git reports it (`github.com`, or `host:port`).
    pub host: String,
    /// Optional path prefix (needs `credential.useHttpPath`).
    pub path: Option<String>,
    /// Protocol; `https` by default.
    pub protocol: Option<String>,
    /// Username, literal (GitHub accepts `x-access-token` for tokens).
    #[serde(default = "default_git_user")]
    pub username: String,
    /// Reference that yields the password or token.
    pub password: String,
}

fn default_git_user() -> String {
    "x-access-token".to_owned()
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().replace('\n', " "),
        })?;
        for (name, provider) in &config.providers {
            keyway_core::Instances::default()
                .insert(name, keyway_core::BackendKind::Local)
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}]: {e}")))?;
            provider.validate(name)?;
        }
        Ok(config)
    }

    /// Builds the resolver: the three default instances from the standard environment, then the configured ones.
    /// `local_dir` is the default local store (`$KEYWAY_LOCAL_DIR` or `./secrets`).
    pub fn resolver(&self, local_dir: PathBuf) -> Result<Resolver, ConfigError> {
        let timeout = Duration::from_secs(10);
        let mut builder = Resolver::builder()
            .provider(
                "aws-sm",
                Arc::new(AwsProvider::new(AwsSettings {
                    timeout,
                    ..AwsSettings::default()
                })),
                CachePolicy::default(),
            )
            .provider(
                "gcp-sm",
                Arc::new(GcpProvider::new(GcpSettings {
                    project: std::env::var("GOOGLE_CLOUD_PROJECT").ok(),
                    timeout,
                    ..GcpSettings::default()
                })),
                CachePolicy::default(),
            )
            .provider(
                "local",
                Arc::new(LocalProvider::new(LocalSettings {
                    dir: Some(local_dir),
                    ..LocalSettings::default()
                })),
                CachePolicy::default(),
            );
        for (name, p) in &self.providers {
            let (provider, policy) = p.build()?;
            builder = builder.provider(name, provider, policy);
        }
        let cache = Cache::new(CacheConfig {
            max_bytes: self.cache.max_bytes,
            negative_ttl: self.cache.negative_ttl,
        });
        builder.build(cache).map_err(ConfigError::Invalid)
    }
}

impl ProviderConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let not_for = |key: &str, set: bool| {
            if set {
                Err(ConfigError::Invalid(format!(
                    "`{key}` does not apply to [providers.{name}] of type {:?}; remove it",
                    self.kind
                )))
            } else {
                Ok(())
            }
        };
        match self.kind {
            KindName::Aws => {
                not_for("project", self.project.is_some())?;
                not_for("dir", self.dir.is_some())?;
                not_for("file", self.file.is_some())?;
                not_for("age_identity", self.age_identity.is_some())?;
            }
            KindName::Gcp => {
                not_for("region", self.region.is_some())?;
                not_for("profile", self.profile.is_some())?;
                not_for("dir", self.dir.is_some())?;
                not_for("file", self.file.is_some())?;
                not_for("age_identity", self.age_identity.is_some())?;
            }
            KindName::Local => {
                for (key, set) in [
                    ("region", self.region.is_some()),
                    ("profile", self.profile.is_some()),
                    ("endpoint", self.endpoint.is_some()),
                    ("credentials", self.credentials.is_some()),
                    ("project", self.project.is_some()),
                ] {
                    not_for(key, set)?;
                }
                if self.dir.is_none() && self.file.is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "[providers.{name}] of type local needs `dir` or `file`"
                    )));
                }
            }
        }
        match self.credentials.as_deref() {
            None | Some("default" | "anonymous") => {}
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "[providers.{name}] credentials = \"{other}\": write \"default\" or \"anonymous\""
                )));
            }
        }
        if let Some(ttl) = &self.ttl {
            ttl.to_ttl()
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}] ttl: {e}")))?;
        }
        Ok(())
    }

    fn build(&self) -> Result<(Arc<dyn Provider>, CachePolicy), ConfigError> {
        let defaults = CachePolicy::default();
        let policy = CachePolicy {
            ttl: match &self.ttl {
                Some(ttl) => ttl.to_ttl().map_err(ConfigError::Invalid)?,
                None => defaults.ttl,
            },
            max_stale: self.max_stale.unwrap_or(defaults.max_stale),
            ..defaults
        };
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        let anonymous = self.credentials.as_deref() == Some("anonymous");
        let provider: Arc<dyn Provider> = match self.kind {
            KindName::Aws => Arc::new(AwsProvider::new(AwsSettings {
                region: self.region.clone(),
                profile: self.profile.clone(),
                endpoint: self.endpoint.clone(),
                anonymous,
                timeout,
                static_keys: None,
            })),
            KindName::Gcp => Arc::new(GcpProvider::new(GcpSettings {
                project: self.project.clone(),
                endpoint: self.endpoint.clone(),
                anonymous,
                timeout,
            })),
            KindName::Local => Arc::new(LocalProvider::new(LocalSettings {
                dir: self.dir.clone(),
                file: self.file.clone(),
                age_identity: self.age_identity.clone(),
            })),
        };
        Ok((provider, policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str, needle: &str) {
        let err = Config::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(needle), "`{err}` lacks `{needle}`");
    }

    #[test]
    fn reads_instances_ttls_and_git_mappings() {
        let config = Config::from_toml(
            r#"
            [providers.aws-sm]
            type = "aws"
            region = "eu-west-1"
            ttl = "90s"
            max_stale = "10m"
            [providers.forever]
            type = "local"
            dir = "/srv/secrets"
            ttl = -1
            [providers.bypass]
            type = "gcp"
            project = "p"
            ttl = 0
            [[git.credentials]]
            host = "github.com"
            password = "aws-sm://ci/github#github_token"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.providers["aws-sm"].ttl.as_ref().unwrap().to_ttl(),
            Ok(Ttl::For(Duration::from_secs(90)))
        );
        assert_eq!(
            config.providers["forever"].ttl.as_ref().unwrap().to_ttl(),
            Ok(Ttl::Forever)
        );
        assert_eq!(
            config.providers["bypass"].ttl.as_ref().unwrap().to_ttl(),
            Ok(Ttl::Bypass)
        );
        assert_eq!(config.git.credentials[0].username, "x-access-token");
        let resolver = config.resolver(PathBuf::from("secrets")).unwrap();
        assert_eq!(
            resolver.instances().names(),
            "aws-sm, bypass, forever, gcp-sm, local"
        );
    }

    #[test]
    fn rejects_what_does_not_fit() {
        invalid("[providers.x]\ntype = \"azure\"", "unknown variant `azure`");
        invalid(
            "[providers.x]\ntype = \"aws\"\nproject = \"p\"",
            "`project` does not apply",
        );
        invalid("[providers.x]\ntype = \"local\"", "needs `dir` or `file`");
        invalid(
            "[providers.x]\ntype = \"aws\"\ncredentials = \"static\"",
            "write \"default\" or \"anonymous\"",
        );
        invalid(
            "[providers.x]\ntype = \"aws\"\nttl = \"soon\"",
            "is not a TTL",
        );
        invalid("[providers.Bad]\ntype = \"aws\"", "instance name `Bad`");
        invalid("[cache]\nmax_byte = 1", "unknown field `max_byte`");
        invalid("[providers.x]\ntype = \"aws\"\nregion = ", "line 3");
    }

    #[test]
    fn ttl_text_forms() {
        assert_eq!(parse_ttl("5m"), Ok(Ttl::For(Duration::from_mins(5))));
        assert_eq!(parse_ttl("300"), Ok(Ttl::For(Duration::from_mins(5))));
        assert_eq!(parse_ttl("0"), Ok(Ttl::Bypass));
        assert_eq!(parse_ttl("-1"), Ok(Ttl::Forever));
        assert_eq!(parse_ttl("forever"), Ok(Ttl::Forever));
        assert!(parse_ttl("x").is_err());
    }
}

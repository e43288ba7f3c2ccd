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
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyway_core::{Cache, CacheConfig, CachePolicy, Provider, RateLimited, Resolver, Ttl};
use serde::Deserialize;

use crate::aws::{AwsProvider, AwsSettings};
use crate::gcp::{GcpProvider, GcpSettings};
use crate::local::{LocalProvider, LocalSettings};

/// A decorator applied to each instance's provider by [`Config::resolver_with`].
pub type WrapProvider = dyn Fn(&str, Arc<dyn Provider>) -> Arc<dyn Provider>;

/// Upstream calls per second for cloud instances without a `rate_limit` of their own.
pub const DEFAULT_CLOUD_RATE_LIMIT: u32 = 100;

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
    /// The daemon (`keyway serve`).
    #[serde(default)]
    pub server: ServerSection,
    /// The identity mapping (Anyscale's cloud IAM mapping), from a spec file or inline.
    #[serde(default)]
    pub iam: IamSection,
    /// This workload's labels (`workload-type`, `project`, `user`), which the identity mapping and
    /// selector access rules evaluate.
    #[serde(default)]
    pub workload: WorkloadSection,
    /// The role AWS instances assume, set by [`crate::iam::apply_mapping`]; never read from the file.
    #[serde(skip)]
    pub aws_assume: Option<crate::aws::AssumeRole>,
    /// The service account GCP instances impersonate, set by [`crate::iam::apply_mapping`]; never read from
    /// the file.
    #[serde(skip)]
    pub gcp_impersonate: Option<String>,
}

/// `[iam]`: `spec = "cloud-config.yaml"` (Anyscale's YAML), or the same rules inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSection {
    /// An Anyscale cloud config YAML file.
    pub spec: Option<PathBuf>,
    /// `AWS`, `GCP` or `AZURE` (inline form).
    pub cloud_provider: Option<String>,
    /// `VM` or `K8S` (inline form).
    pub compute_stack: Option<String>,
    /// `CLOUD_DEFAULT` or `FAIL` (inline form).
    pub fallback_rule: Option<String>,
    /// Rules in order (inline form).
    #[serde(default)]
    pub rules: Vec<IamRule>,
}

/// One inline `[[iam.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamRule {
    /// A selector in Anyscale's dialect.
    pub selector: String,
    /// The identity.
    pub value: String,
}

/// `[workload]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// Label key to value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One `[providers.NAME]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// IAM Credentials endpoint override for service account impersonation (GCP).
    pub iam_endpoint: Option<String>,
    /// `default` or `anonymous` (for emulators).
    pub credentials: Option<String>,
    /// GCP project for references that name only a secret.
    pub project: Option<String>,
    /// GCP location of regional secrets, for references that name none (`europe-west1`).
    pub location: Option<String>,
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
    /// How long a read of an expired value waits for the upstream before it gets that value, marked stale
    /// (default 500ms; `"0s"`: never wait, refresh in the background).
    #[serde(default, with = "humantime_serde")]
    pub stale_wait: Option<Duration>,
    /// Per-attempt upstream timeout.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Upstream calls per second for this instance (bursts of the same size); 0 for no limit.
    /// Default: 100 for cloud backends, none for local.
    pub rate_limit: Option<u32>,
}

impl ProviderConfig {
    /// An instance of `kind` with every setting at its default.
    pub fn of(kind: KindName) -> ProviderConfig {
        ProviderConfig {
            kind,
            region: None,
            profile: None,
            endpoint: None,
            iam_endpoint: None,
            credentials: None,
            project: None,
            location: None,
            dir: None,
            file: None,
            age_identity: None,
            ttl: None,
            max_stale: None,
            stale_wait: None,
            timeout: None,
            rate_limit: None,
        }
    }
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

/// The username of a `[[git.credentials]]` entry that names none: GitHub takes any with a token.
pub fn default_git_user() -> String {
    "x-access-token".to_owned()
}

/// `[server]`: the daemon's listeners, tokens, access rules and logs.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of the file's [server] table"
)]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Serve the unix socket (default true); false serves TCP only, as the AWS agent does.
    pub unix: bool,
    /// Unix socket path; default `/run/keyway/keyway.sock` as root, `$XDG_RUNTIME_DIR/keyway.sock` otherwise.
    pub socket: Option<PathBuf>,
    /// Socket file mode, octal text (`"0660"`); default `"0666"`: every local user may connect and the
    /// access rules decide by uid/gid what each may read.
    pub socket_mode: Option<String>,
    /// Group owning the socket: a name or a numeric gid.
    pub socket_group: Option<String>,
    /// Loopback TCP listener, e.g. `"127.0.0.1:2773"` (the AWS agent's port); off by default.
    pub tcp: Option<String>,
    /// Permit a non-loopback `tcp` address (logged as a warning at start-up).
    pub allow_non_loopback: bool,
    /// A plain-HTTP listener for Prometheus and probes, e.g. `"0.0.0.0:9102"`: `/metrics`, `/healthz`,
    /// `/readyz`, `/ping` and nothing else (no secret is served there, so any address may be used); off by
    /// default.
    pub metrics: Option<String>,
    /// Named tokens accepted on TCP. When none is configured, the AWS agent's variables are used:
    /// `AWS_TOKEN`, `AWS_SESSION_TOKEN` or `AWS_CONTAINER_AUTHORIZATION_TOKEN` (a value or `file://PATH`).
    pub tokens: Vec<TokenConfig>,
    /// Who may read what; deny by default once any rule exists.
    pub access: Vec<AccessRule>,
    /// Labels assigned to callers, for access rules with a `selector`.
    pub labels: Vec<CallerLabels>,
    /// References fetched at start-up; `/readyz` turns ready when they are done.
    pub prefetch: Vec<String>,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Open connections at most, per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Bound on a request's head (request line and headers) and on a body.
    pub max_request_bytes: usize,
    /// A client must send its request head within this time.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Audit log: `"off"`, `"stderr"` or a file path (JSON lines, appended).
    pub audit_log: String,
    /// Label metrics with secret references (names can be sensitive; off by default).
    pub metrics_secret_names: bool,
    /// Provider instance behind the AWS-agent-compatible endpoints.
    pub aws_compat_instance: String,
    /// How the AWS agent's routes answer.
    pub aws_agent: AwsAgentSection,
    /// Lock the daemon's memory (`mlockall`), so cached values are never swapped to disk; the daemon refuses to
    /// start when the memory-lock limit is too low.
    pub lock_memory: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            unix: true,
            socket: None,
            socket_mode: None,
            socket_group: None,
            tcp: None,
            allow_non_loopback: false,
            metrics: None,
            tokens: Vec::new(),
            access: Vec::new(),
            labels: Vec::new(),
            prefetch: Vec::new(),
            grace_period: Duration::from_secs(10),
            max_connections: 1024,
            max_request_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            audit_log: "off".to_owned(),
            metrics_secret_names: false,
            aws_compat_instance: "aws-sm".to_owned(),
            aws_agent: AwsAgentSection::default(),
            lock_memory: false,
        }
    }
}

/// `[server.aws_agent]`: the AWS Secrets Manager Agent's settings for its routes, as its configuration file
/// names them (`keyway serve --aws-agent-config` sets them from that file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsAgentSection {
    /// The headers a token may come in, each tried (`ssrf_headers`).
    pub token_headers: Vec<String>,
    /// The prefix of path-style requests, `/v1/<secret id>` (`path_prefix`).
    pub path_prefix: String,
    /// Open TCP connections beyond which a request is answered 429 (`max_conn`; `/ping` two more). None:
    /// Keyway's `max_connections`, over which new connections wait in the backlog instead.
    pub max_conn: Option<usize>,
}

impl Default for AwsAgentSection {
    fn default() -> Self {
        AwsAgentSection {
            token_headers: vec![
                "X-Aws-Parameters-Secrets-Token".to_owned(),
                "X-Vault-Token".to_owned(),
            ],
            path_prefix: "/v1/".to_owned(),
            max_conn: None,
        }
    }
}

/// One `[[server.tokens]]` entry: a name for access rules and audit lines, and where the token is read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The name rules and the audit log use.
    pub name: String,
    /// A file holding the token (re-read when it changes, so rotation needs no restart).
    pub file: Option<PathBuf>,
    /// An environment variable holding the token.
    pub env: Option<String>,
}

/// One `[[server.access]]` rule: callers matching any listed identity may read references matching any glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Unix-socket callers with one of these uids.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Unix-socket callers with one of these primary gids.
    #[serde(default)]
    pub gids: Vec<u32>,
    /// TCP callers presenting one of these named tokens.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Callers whose labels (`[[server.labels]]`) match this selector (Kubernetes syntax, any values).
    pub selector: Option<String>,
    /// Glob patterns over references without version or field (`aws-sm://ci/*`, `local://**`); `allow` is
    /// accepted as another name.
    #[serde(alias = "allow")]
    pub refs: Vec<String>,
}

/// One `[[server.labels]]` entry: labels assigned to callers, which selector access rules evaluate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerLabels {
    /// Unix-socket callers with one of these uids.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Unix-socket callers with one of these primary gids.
    #[serde(default)]
    pub gids: Vec<u32>,
    /// TCP callers presenting one of these named tokens.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// The labels (`workload-type`, `project`, `user`, or any).
    pub labels: BTreeMap<String, String>,
}

impl Config {
    /// Reads and validates a config file. Relative paths in it (a local store's `dir`, `file` and
    /// `age_identity`, `[iam] spec`, `[server] socket`, token files, the audit log) are taken from the file's
    /// own directory, as kubeconfig does: one file names the same paths whichever directory keyway runs in
    /// (git runs credential helpers in the repository, Ray workers in their working_dir, a service in `/`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let file = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        config.anchor_paths(file.parent().unwrap_or(Path::new("/")))?;
        Ok(config)
    }

    /// Joins every relative path of the file to `base`, the file's directory.
    fn anchor_paths(&mut self, base: &Path) -> Result<(), ConfigError> {
        let anchor = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        for provider in self.providers.values_mut() {
            [
                &mut provider.dir,
                &mut provider.file,
                &mut provider.age_identity,
            ]
            .into_iter()
            .flatten()
            .for_each(anchor);
        }
        self.iam.spec.iter_mut().for_each(anchor);
        self.server.socket.iter_mut().for_each(anchor);
        self.server
            .tokens
            .iter_mut()
            .filter_map(|token| token.file.as_mut())
            .for_each(anchor);
        let audit = &mut self.server.audit_log;
        if !matches!(audit.as_str(), "off" | "stderr") && Path::new(audit.as_str()).is_relative() {
            *audit = base.join(audit.as_str()).into_os_string().into_string().map_err(|_| {
                ConfigError::Invalid(format!(
                    "[server] audit_log: the config file's directory {} is not UTF-8; give an absolute path",
                    base.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: toml_message(&e, text),
        })?;
        let instances = config.instances()?;
        for (name, provider) in &config.providers {
            provider.validate(name)?;
        }
        // Checked here, so that `serve --check` finds a token pasted in place of its reference, and no error
        // later prints it (a reference error quotes the reference; this one never quotes a value).
        for (i, entry) in config.git.credentials.iter().enumerate() {
            keyway_core::SecretRef::parse_with(&entry.password, &instances).map_err(|e| {
                ConfigError::Invalid(format!(
                    "[[git.credentials]] entry {} (host {}): password must be a reference to the token: {e}",
                    i + 1,
                    entry.host
                ))
            })?;
        }
        Ok(config)
    }

    /// The instance names references may use and their kinds: the three defaults, then the configured ones (as
    /// [`Config::resolver`] has them, without building a provider).
    pub fn instances(&self) -> Result<keyway_core::Instances, ConfigError> {
        let mut instances = keyway_core::Instances::default();
        for (name, provider) in &self.providers {
            let kind = match provider.kind {
                KindName::Aws => keyway_core::BackendKind::Aws,
                KindName::Gcp => keyway_core::BackendKind::Gcp,
                KindName::Local => keyway_core::BackendKind::Local,
            };
            instances
                .insert(name, kind)
                .map_err(|e| ConfigError::Invalid(format!("[providers.{name}]: {e}")))?;
        }
        Ok(instances)
    }

    /// Whether [`Config::resolver`] would build the same resolver from `other` (same provider instances, cache
    /// limits and mapped identity), so that a daemon reloading its configuration can keep its cache.
    pub fn builds_the_same_resolver(&self, other: &Config) -> bool {
        self.providers == other.providers
            && self.cache == other.cache
            && self.aws_assume == other.aws_assume
            && self.gcp_impersonate == other.gcp_impersonate
    }

    /// Whether the files the configured local instances name are there (see [`LocalSettings::check`]), for a
    /// daemon about to serve this configuration. Returns warnings, each naming its instance.
    pub fn check_files(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        for (name, p) in &self.providers {
            if p.kind != KindName::Local {
                continue;
            }
            let settings = LocalSettings {
                dir: p.dir.clone(),
                file: p.file.clone(),
                age_identity: p.age_identity.clone(),
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
        let settings = match self.providers.get(instance) {
            Some(p) if p.kind == KindName::Aws => p.aws_settings(self),
            None if instance == "aws-sm" => AwsSettings {
                timeout: Duration::from_secs(10),
                assume: self.aws_assume.clone(),
                ..AwsSettings::default()
            },
            _ => return None,
        };
        Some(AwsProvider::new(settings).caller_identity().await)
    }

    /// Builds the resolver: the three default instances from the standard environment, then the configured ones.
    /// `local_dir` is the default local store (`$KEYWAY_LOCAL_DIR` or `./secrets`).
    pub fn resolver(&self, local_dir: PathBuf) -> Result<Resolver, ConfigError> {
        self.resolver_with(local_dir, &|_, provider| provider)
    }

    /// As [`Config::resolver`], passing each instance's provider (already rate limited) through `wrap`, e.g. to
    /// count its upstream calls.
    pub fn resolver_with(
        &self,
        local_dir: PathBuf,
        wrap: &WrapProvider,
    ) -> Result<Resolver, ConfigError> {
        let timeout = Duration::from_secs(10);
        let cloud_limit = NonZeroU32::new(DEFAULT_CLOUD_RATE_LIMIT);
        let defaults: [(&str, Arc<dyn Provider>, Option<NonZeroU32>); 3] = [
            (
                "aws-sm",
                Arc::new(AwsProvider::new(AwsSettings {
                    timeout,
                    assume: self.aws_assume.clone(),
                    ..AwsSettings::default()
                })),
                cloud_limit,
            ),
            (
                "gcp-sm",
                // No project: the provider looks it up as Google's libraries do (`gcp::project`).
                Arc::new(GcpProvider::new(GcpSettings {
                    timeout,
                    impersonate: self.gcp_impersonate.clone(),
                    ..GcpSettings::default()
                })),
                cloud_limit,
            ),
            (
                "local",
                Arc::new(LocalProvider::new(LocalSettings {
                    dir: Some(local_dir),
                    ..LocalSettings::default()
                })),
                None,
            ),
        ];
        let mut builder = Resolver::builder();
        let finish = |name: &str, provider: Arc<dyn Provider>, limit: Option<NonZeroU32>| {
            let provider: Arc<dyn Provider> = match limit {
                Some(limit) => Arc::new(RateLimited::new(provider, limit)),
                None => provider,
            };
            wrap(name, provider)
        };
        for (name, provider, limit) in defaults {
            if !self.providers.contains_key(name) {
                builder =
                    builder.provider(name, finish(name, provider, limit), CachePolicy::default());
            }
        }
        for (name, p) in &self.providers {
            let (provider, policy) = p.build(self)?;
            let limit = match (p.rate_limit, p.kind) {
                (Some(n), _) => NonZeroU32::new(n),
                (None, KindName::Local) => None,
                (None, _) => cloud_limit,
            };
            builder = builder.provider(name, finish(name, provider, limit), policy);
        }
        let cache = Cache::new(CacheConfig {
            max_bytes: self.cache.max_bytes,
            negative_ttl: self.cache.negative_ttl,
        });
        builder.build(cache).map_err(ConfigError::Invalid)
    }
}

/// The TOML parser's complaint with its line and column, without what it quotes: toml prints the offending line
/// and serde the offending value, and a token pasted in place of its reference is a value
/// (`password = ghp_...`).
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let mut message = e.message().trim_end().replace('\n', " ");
    for prefix in ["invalid type: ", "invalid value: "] {
        // serde's form: "invalid type: integer `1234`, expected a string" (strings in double quotes).
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let kind = found.split(['`', '"']).next().unwrap_or("").trim_end();
            message = format!("{prefix}{kind}, expected {expected}");
        }
    }
    let Some(span) = e.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {message}")
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
                not_for("location", self.location.is_some())?;
                not_for("iam_endpoint", self.iam_endpoint.is_some())?;
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
                    ("iam_endpoint", self.iam_endpoint.is_some()),
                    ("credentials", self.credentials.is_some()),
                    ("project", self.project.is_some()),
                    ("location", self.location.is_some()),
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
        if let Some(location) = &self.location
            && !keyway_core::reference::is_gcp_location(location)
        {
            return Err(ConfigError::Invalid(format!(
                "[providers.{name}] location = \"{location}\" is not a GCP location; write e.g. \"europe-west1\""
            )));
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

    /// An AWS instance's settings, with the role the mapping chose in `config` (instances on the standard
    /// credential chain only: an anonymous instance is an emulator's).
    fn aws_settings(&self, config: &Config) -> AwsSettings {
        let anonymous = self.credentials.as_deref() == Some("anonymous");
        AwsSettings {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint: self.endpoint.clone(),
            anonymous,
            timeout: self.timeout.unwrap_or(Duration::from_secs(10)),
            static_keys: None,
            assume: config.aws_assume.clone().filter(|_| !anonymous),
        }
    }

    /// The provider, with the identity the mapping chose in `config` (instances on the standard credential
    /// chain only: an anonymous instance is an emulator's).
    fn build(&self, config: &Config) -> Result<(Arc<dyn Provider>, CachePolicy), ConfigError> {
        let defaults = CachePolicy::default();
        let policy = CachePolicy {
            ttl: match &self.ttl {
                Some(ttl) => ttl.to_ttl().map_err(ConfigError::Invalid)?,
                None => defaults.ttl,
            },
            max_stale: self.max_stale.unwrap_or(defaults.max_stale),
            stale_wait: self.stale_wait.unwrap_or(defaults.stale_wait),
            ..defaults
        };
        let timeout = self.timeout.unwrap_or(Duration::from_secs(10));
        let anonymous = self.credentials.as_deref() == Some("anonymous");
        let provider: Arc<dyn Provider> = match self.kind {
            KindName::Aws => Arc::new(AwsProvider::new(self.aws_settings(config))),
            KindName::Gcp => Arc::new(GcpProvider::new(GcpSettings {
                project: self.project.clone(),
                location: self.location.clone(),
                endpoint: self.endpoint.clone(),
                anonymous,
                timeout,
                impersonate: config.gcp_impersonate.clone().filter(|_| !anonymous),
                iam_endpoint: self.iam_endpoint.clone(),
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
    fn errors_name_the_place_never_the_value() {
        for (text, expected) in [
            (
                "[[git.credentials]]\nhost = \"github.com\"\npassword = ghp_s3cret\n",
                "line 3, column 12: string values must be quoted, expected literal string",
            ),
            (
                "[[git.credentials]]\nhost = \"github.com\"\npassword = 918273645\n",
                "line 3, column 12: invalid type: integer, expected a string",
            ),
            (
                "[cache]\nmax_bytes = \"s3cret\"\n",
                "line 2, column 13: invalid type: string, expected u64",
            ),
            (
                "[[git.credentials]]\nhost = \"github.com\"\npassword = \"ghp_s3cret\"\n",
                "[[git.credentials]] entry 1 (host github.com): password must be a reference to the token: not a secret reference (10 characters, not shown",
            ),
        ] {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(expected), "`{err}` lacks `{expected}`");
            assert!(
                !err.contains("s3cret") && !err.contains("918273645"),
                "{err}"
            );
        }
        invalid(
            "[[git.credentials]]\nhost = \"h\"\npassword = \"vault://x\"\n",
            "no provider instance named `vault`",
        );
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
            "[providers.x]\ntype = \"aws\"\nlocation = \"europe-west1\"",
            "`location` does not apply to [providers.x]",
        );
        invalid(
            "[providers.x]\ntype = \"gcp\"\nlocation = \"Europe West\"",
            "is not a GCP location; write e.g. \"europe-west1\"",
        );
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
    fn relative_paths_are_taken_from_the_config_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyway.toml");
        std::fs::write(
            &path,
            r#"
            [providers.local]
            type = "local"
            dir = "secrets"
            file = "../shared/secrets.yaml"
            age_identity = "/etc/keyway/age.key"
            [iam]
            spec = "cloud-config.yaml"
            [server]
            socket = "run/keyway.sock"
            audit_log = "audit.jsonl"
            [[server.tokens]]
            name = "app"
            file = "app.token"
            "#,
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let base = dir.path();
        let local = &config.providers["local"];
        assert_eq!(local.dir.as_deref(), Some(base.join("secrets").as_path()));
        assert_eq!(
            local.file.as_deref(),
            Some(base.join("../shared/secrets.yaml").as_path())
        );
        assert_eq!(
            local.age_identity.as_deref(),
            Some(Path::new("/etc/keyway/age.key"))
        );
        assert_eq!(
            config.iam.spec.as_deref(),
            Some(base.join("cloud-config.yaml").as_path())
        );
        assert_eq!(
            config.server.socket.as_deref(),
            Some(base.join("run/keyway.sock").as_path())
        );
        assert_eq!(
            config.server.tokens[0].file.as_deref(),
            Some(base.join("app.token").as_path())
        );
        assert_eq!(
            Path::new(&config.server.audit_log),
            base.join("audit.jsonl")
        );

        std::fs::write(&path, "[server]\naudit_log = \"stderr\"\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().server.audit_log, "stderr");
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

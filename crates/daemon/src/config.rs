//! The daemon's part of `keyway.toml`: `[server]` (listeners, tokens, access rules, limits, logs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyway_core::FileMode;
use serde::Deserialize;

use crate::auth::Identity;

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
    /// Socket file mode (`"0660"`); default `0666`: every local user may connect and the access rules decide
    /// by uid/gid what each may read.
    #[serde(default, deserialize_with = "mode")]
    pub socket_mode: Option<FileMode>,
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
    /// Provider instance behind the Lambda extension's Parameter Store route.
    pub parameter_store_instance: String,
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
            parameter_store_instance: "aws-ps".to_owned(),
            lock_memory: false,
        }
    }
}

/// An octal mode; the text is not quoted back in the error (a value pasted in the wrong place may be a secret).
fn mode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<FileMode>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_: String| {
        serde::de::Error::custom("socket_mode is not an octal file mode; write e.g. \"0660\"")
    })
}

impl ServerSection {
    /// Joins the section's relative paths (the socket, token files, the audit log) to `base`, the config
    /// file's directory. The audit log's path must then be UTF-8.
    pub fn anchor_paths(&mut self, base: &Path) -> Result<(), String> {
        let anchor = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        self.socket.iter_mut().for_each(anchor);
        self.tokens
            .iter_mut()
            .filter_map(|token| token.file.as_mut())
            .for_each(anchor);
        let audit = &mut self.audit_log;
        if !matches!(audit.as_str(), "off" | "stderr") && Path::new(audit.as_str()).is_relative() {
            *audit = base.join(audit.as_str()).into_os_string().into_string().map_err(|_| {
                format!(
                    "[server] audit_log: the config file's directory {} is not UTF-8; give an absolute path",
                    base.display()
                )
            })?;
        }
        Ok(())
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

/// Callers named by uid, gid (unix socket) or token name (TCP): whom an access rule or a label set is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callers {
    /// Unix-socket callers with one of these uids.
    pub uids: Vec<u32>,
    /// Unix-socket callers with one of these primary gids.
    pub gids: Vec<u32>,
    /// TCP callers presenting one of these named tokens.
    pub tokens: Vec<String>,
}

impl Callers {
    /// Whether the list names this caller.
    pub(crate) fn includes(&self, identity: &Identity) -> bool {
        match identity {
            Identity::Unix { uid, gid, .. } => self.uids.contains(uid) || self.gids.contains(gid),
            Identity::Token { token } => self.tokens.iter().any(|t| **t == **token),
        }
    }

    /// Whether the list names no one.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty() && self.tokens.is_empty()
    }
}

/// One `[[server.access]]` rule: callers matching any listed identity may read references matching any glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "AccessRuleTable")]
pub struct AccessRule {
    /// Callers by uid, gid or token.
    pub callers: Callers,
    /// Callers whose labels (`[[server.labels]]`) match this selector (Kubernetes syntax, any values).
    pub selector: Option<String>,
    /// Glob patterns over references without version or field (`aws-sm://ci/*`, `local://**`).
    pub refs: Vec<String>,
}

/// `[[server.access]]` as written: the callers' keys sit beside the rule's. (Spelled out here and in
/// [`CallerLabelsTable`]: serde's `flatten` of a [`Callers`] would lose `deny_unknown_fields`.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRuleTable {
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    tokens: Vec<String>,
    selector: Option<String>,
    /// `allow` is accepted as another name.
    #[serde(alias = "allow")]
    refs: Vec<String>,
}

impl From<AccessRuleTable> for AccessRule {
    fn from(t: AccessRuleTable) -> Self {
        AccessRule {
            callers: Callers {
                uids: t.uids,
                gids: t.gids,
                tokens: t.tokens,
            },
            selector: t.selector,
            refs: t.refs,
        }
    }
}

/// One `[[server.labels]]` entry: labels assigned to callers, which selector access rules evaluate.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "CallerLabelsTable")]
pub struct CallerLabels {
    /// Callers by uid, gid or token.
    pub callers: Callers,
    /// The labels (`workload-type`, `project`, `user`, or any).
    pub labels: BTreeMap<String, String>,
}

/// `[[server.labels]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerLabelsTable {
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    tokens: Vec<String>,
    labels: BTreeMap<String, String>,
}

impl From<CallerLabelsTable> for CallerLabels {
    fn from(t: CallerLabelsTable) -> Self {
        CallerLabels {
            callers: Callers {
                uids: t.uids,
                gids: t.gids,
                tokens: t.tokens,
            },
            labels: t.labels,
        }
    }
}

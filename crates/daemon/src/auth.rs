//! Caller identity and access: TCP tokens (constant-time, rotated by re-reading their files) and the
//! `[[server.access]]` rules (deny by default once any rule exists).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use std::collections::BTreeMap;

use crate::config::{AccessRule, CallerLabels, Callers, ServerSection};
use globset::{GlobSet, GlobSetBuilder};
use keyway_core::Instances;
use keyway_core::selector::{Mode, Selector};
use secrecy::{ExposeSecret as _, SecretBox};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::DaemonError;

/// Who made a request, as far as the daemon can tell.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Identity {
    /// A unix socket caller.
    Unix {
        uid: u32,
        gid: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
    },
    /// A TCP caller that presented the named token.
    Token { token: Arc<str> },
}

impl Identity {
    /// The identity of a request no token was asked of (the agent's `/ping`): it names no token.
    pub fn nobody() -> Identity {
        Identity::Token {
            token: Arc::from(""),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Unix { uid, gid, .. } => write!(f, "uid {uid} (gid {gid})"),
            Identity::Token { token } => write!(f, "token `{token}`"),
        }
    }
}

enum Source {
    File {
        path: PathBuf,
        modified: RwLock<Option<SystemTime>>,
    },
    Fixed,
}

struct Token {
    /// Shared with every request's [`Identity`]: naming the caller allocates nothing.
    name: Arc<str>,
    value: RwLock<SecretBox<Vec<u8>>>,
    source: Source,
}

/// The tokens TCP callers may present.
pub(crate) struct Tokens {
    tokens: Vec<Token>,
}

/// The AWS agent's token variables, in its order; a value may be `file://PATH`.
const AWS_TOKEN_VARS: [&str; 3] = [
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

impl Tokens {
    pub fn load(settings: &ServerSection) -> Result<Tokens, DaemonError> {
        let mut tokens = Vec::new();
        for t in &settings.tokens {
            let token = match (&t.file, &t.env) {
                (Some(path), None) => file_token(&t.name, path.clone())?,
                (None, Some(var)) => {
                    let value = std::env::var(var).map_err(|_| {
                        DaemonError::Config(format!(
                            "token `{}`: environment variable {var} is not set",
                            t.name
                        ))
                    })?;
                    fixed_token(&t.name, value.into_bytes())?
                }
                _ => {
                    return Err(DaemonError::Config(format!(
                        "token `{}`: give exactly one of `file` or `env`",
                        t.name
                    )));
                }
            };
            tokens.push(token);
        }
        if tokens.is_empty()
            && settings.tcp.is_some()
            && let Some(value) = AWS_TOKEN_VARS
                .iter()
                .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        {
            tokens.push(match value.strip_prefix("file://") {
                Some(path) => file_token("aws", PathBuf::from(path))?,
                None => fixed_token("aws", value.into_bytes())?,
            });
        }
        Ok(Tokens { tokens })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens' names (`aws` for the one from the AWS agent's variables).
    pub fn names(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| &*t.name).collect()
    }

    /// The name of the token equal to `presented`, compared in constant time against every token.
    pub fn check(&self, presented: &[u8]) -> Option<Arc<str>> {
        let mut found = None;
        for token in &self.tokens {
            let value = token
                .value
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let equal: bool = value.expose_secret().as_slice().ct_eq(presented).into();
            if equal && found.is_none() {
                found = Some(Arc::clone(&token.name));
            }
        }
        found
    }

    /// Re-reads token files whose modification time changed (rotation without a restart). A file that
    /// cannot be read or is empty keeps the previous token and logs a warning.
    pub fn reload(&self) {
        for token in &self.tokens {
            let Source::File { path, modified } = &token.source else {
                continue;
            };
            let now = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let before = *modified
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now.is_none() || now == before {
                continue;
            }
            match read_token(path) {
                Ok(value) => {
                    *token
                        .value
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
                    *modified
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
                    tracing::info!(token = %token.name, "token file changed; new token in use");
                }
                Err(e) => {
                    tracing::warn!(token = %token.name, error = %e, "token file unreadable; keeping the previous token");
                }
            }
        }
    }
}

fn read_token(path: &PathBuf) -> Result<SecretBox<Vec<u8>>, String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretBox::new(Box::new(bytes)))
}

fn file_token(name: &str, path: PathBuf) -> Result<Token, DaemonError> {
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let value =
        read_token(&path).map_err(|e| DaemonError::Config(format!("token `{name}`: {e}")))?;
    Ok(Token {
        name: Arc::from(name),
        value: RwLock::new(value),
        source: Source::File {
            path,
            modified: RwLock::new(modified),
        },
    })
}

fn fixed_token(name: &str, value: Vec<u8>) -> Result<Token, DaemonError> {
    if value.is_empty() {
        return Err(DaemonError::Config(format!("token `{name}` is empty")));
    }
    Ok(Token {
        name: Arc::from(name),
        value: RwLock::new(SecretBox::new(Box::new(value))),
        source: Source::Fixed,
    })
}

/// Refuses a `refs` pattern that can match no reference (`instance://name`): one without `INSTANCE://` (but
/// `**`), or whose instance, when written out, is not configured.
fn can_match(pattern: &str, instances: &Instances) -> Result<(), String> {
    if pattern == "**" {
        return Ok(());
    }
    let Some((instance, _)) = pattern.split_once("://") else {
        return Err(format!(
            "`{pattern}` has no INSTANCE:// and so matches no reference; write e.g. `aws-sm://{pattern}`, or `**` for every secret"
        ));
    };
    if !instance.contains(['*', '?', '[', '{', '\\']) && instances.kind(instance).is_none() {
        return Err(format!(
            "`{pattern}` names `{instance}`, which is no configured provider instance ({}); fix the name or add a [providers.{instance}] table",
            instances.names()
        ));
    }
    Ok(())
}

struct Rule {
    callers: Callers,
    selector: Option<Selector>,
    refs: GlobSet,
}

impl Rule {
    fn covers(&self, identity: &Identity, labels: &BTreeMap<String, String>) -> bool {
        self.callers.includes(identity) || self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// Compiled `[[server.access]]` rules and the `[[server.labels]]` they may select on.
pub(crate) struct Access {
    rules: Vec<Rule>,
    labels: Vec<CallerLabels>,
}

impl Access {
    /// Compiles the rules. A rule that could never apply is refused: a pattern without `INSTANCE://` or naming
    /// an instance `instances` does not have, a token name no `[[server.tokens]]` entry (`token_names`) gives.
    pub fn compile(
        rules: &[AccessRule],
        labels: &[CallerLabels],
        instances: &Instances,
        token_names: &[&str],
    ) -> Result<Access, DaemonError> {
        let unknown_token = |names: &[String], what: String| match names
            .iter()
            .find(|n| !token_names.contains(&n.as_str()))
        {
            Some(name) => Err(DaemonError::Config(format!(
                "{what} names token `{name}`, which no [[server.tokens]] entry defines (tokens: {}); fix the name or add the token",
                if token_names.is_empty() {
                    "none".to_owned()
                } else {
                    token_names.join(", ")
                }
            ))),
            None => Ok(()),
        };
        for (i, entry) in labels.iter().enumerate() {
            unknown_token(
                &entry.callers.tokens,
                format!("[[server.labels]] entry {}", i + 1),
            )?;
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            unknown_token(&rule.callers.tokens, format!("access rule {}", i + 1))?;
            if rule.callers.is_empty() && rule.selector.is_none() {
                return Err(DaemonError::Config(format!(
                    "access rule {} names no caller; give uids, gids, tokens or a selector",
                    i + 1
                )));
            }
            let selector = match &rule.selector {
                Some(text) => Some(
                    Selector::parse_with(text, Mode::Relaxed)
                        .map_err(|e| DaemonError::Config(format!("access rule {}: {e}", i + 1)))?,
                ),
                None => None,
            };
            let mut set = GlobSetBuilder::new();
            for pattern in &rule.refs {
                can_match(pattern, instances)
                    .map_err(|e| DaemonError::Config(format!("access rule {}: {e}", i + 1)))?;
                let glob = globset::GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| DaemonError::Config(format!("access rule {}: {e}", i + 1)))?;
                set.add(glob);
            }
            compiled.push(Rule {
                callers: rule.callers.clone(),
                selector,
                refs: set
                    .build()
                    .map_err(|e| DaemonError::Config(format!("access rule {}: {e}", i + 1)))?,
            });
        }
        Ok(Access {
            rules: compiled,
            labels: labels.to_vec(),
        })
    }

    /// The labels assigned to a caller (every matching `[[server.labels]]` entry, later ones winning).
    fn labels_of(&self, identity: &Identity) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for entry in &self.labels {
            if entry.callers.includes(identity) {
                out.extend(entry.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }

    /// True when no rule exists, so everyone may read everything.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `identity` may read `secret_path` (`instance://name`). With no rules, everyone may.
    pub fn allows(&self, identity: &Identity, secret_path: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        // Caller labels matter only to selector rules.
        let labels = if self.rules.iter().any(|r| r.selector.is_some()) {
            self.labels_of(identity)
        } else {
            BTreeMap::new()
        };
        self.rules
            .iter()
            .any(|r| r.covers(identity, &labels) && r.refs.is_match(secret_path))
    }

    /// The denial message: names the caller and the reference, never whether the secret exists.
    pub fn denial(identity: &Identity, secret_path: &str) -> String {
        let who = match identity {
            Identity::Unix { uid, .. } => format!("uids = [{uid}]"),
            Identity::Token { token } => format!("tokens = [\"{token}\"]"),
        };
        format!(
            "access denied: no [[server.access]] rule lets {identity} read {secret_path}; add one with {who} and refs matching it"
        )
    }
}

//! Secret references: one syntax for every backend.
//!
//! ```text
//! aws-sm://NAME_OR_ARN[?version-id=ID][&version-stage=STAGE][#FIELD]    (both: the id must carry the stage)
//! gcp-sm://[PROJECT/]SECRET[?version=V][&location=L][#FIELD]            (no PROJECT: the instance's project)
//! gcp-sm://projects/P[/locations/L]/secrets/S[/versions/V][#FIELD]     (Secret Manager's own resource name)
//! local://NAME[#FIELD]
//! vault://MOUNT/PATH[?version=N][#FIELD]                               (KV v1 or v2; the mount is found)
//! aws-ps://NAME_OR_ARN[?version=N|label=L][#FIELD]                     (Parameter Store)
//! azure-kv://VAULT/NAME[?version=ID][#FIELD]                           (Azure Key Vault)
//! k8s://[NAMESPACE/]NAME#KEY                                           (a Kubernetes Secret's key)
//!
//! V        ::= a positive number | latest | an alias the secret defines (a letter, then up to 62 letters,
//!              digits, `-`, `_`)
//! L        ::= a location (`europe-west1`): the secret is regional, read from that region's endpoint
//! FIELD    ::= a top-level JSON key, or a JSON pointer (`#/db/password`)
//! ```
//! The scheme is a provider *instance*: `aws-sm`, `gcp-sm`, `local`, `vault`, `aws-ps`, `azure-kv` and `k8s`
//! always exist, and `keyway.toml` can add more (`prod-aws://...`) of any backend kind. Query values and fields escape `%`, space, `#`, `&` and `?`
//! as `%XX`; the parameters may come in any order, each once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a query value or a field must escape to parse back to itself: the separators, `%` itself, space.
const ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%').add(b'&').add(b'?');

use crate::Error;
use crate::cache::Key;

mod aws;
mod azure;
mod gcp;
mod k8s;
mod local;
mod ssm;
mod target;
mod vault;

pub use aws::{AwsVersion, is_aws_region};
pub use gcp::{GcpVersion, is_gcp_location};
pub use ssm::SsmSelector;
pub use target::Target;

/// The backend family an instance belongs to; it decides how a reference's path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// AWS Secrets Manager.
    Aws,
    /// Google Cloud Secret Manager.
    Gcp,
    /// The embedded local store.
    Local,
    /// HashiCorp Vault or OpenBao, KV v1 or v2.
    Vault,
    /// AWS Systems Manager Parameter Store.
    Ssm,
    /// Azure Key Vault.
    Azure,
    /// Kubernetes Secrets.
    K8s,
}

impl BackendKind {
    /// The configuration name of the kind (`type = "aws"` in `keyway.toml`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Aws => "aws",
            BackendKind::Gcp => "gcp",
            BackendKind::Local => "local",
            BackendKind::Vault => "vault",
            BackendKind::Ssm => "ssm",
            BackendKind::Azure => "azure",
            BackendKind::K8s => "k8s",
        }
    }

    /// Every kind.
    pub const ALL: [BackendKind; 7] = [
        BackendKind::Aws,
        BackendKind::Gcp,
        BackendKind::Local,
        BackendKind::Vault,
        BackendKind::Ssm,
        BackendKind::Azure,
        BackendKind::K8s,
    ];

    /// The instance that exists without configuration: `aws-sm`, `gcp-sm`, `local`, `vault`, `aws-ps`,
    /// `azure-kv`, `k8s`.
    pub fn default_instance(self) -> &'static str {
        match self {
            BackendKind::Aws => "aws-sm",
            BackendKind::Gcp => "gcp-sm",
            BackendKind::Local => "local",
            BackendKind::Vault => "vault",
            BackendKind::Ssm => "aws-ps",
            BackendKind::Azure => "azure-kv",
            BackendKind::K8s => "k8s",
        }
    }
}

/// The provider instances references may name, with their kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances(BTreeMap<String, BackendKind>);

impl Default for Instances {
    /// The default instance of every kind ([`BackendKind::default_instance`]).
    fn default() -> Self {
        Instances(
            BackendKind::ALL
                .into_iter()
                .map(|kind| (kind.default_instance().to_owned(), kind))
                .collect(),
        )
    }
}

impl Instances {
    /// Adds or replaces an instance. Names follow the scheme rules: lowercase letters, digits, `-`, `_`.
    pub fn insert(&mut self, name: &str, kind: BackendKind) -> Result<(), String> {
        validate_instance_name(name)?;
        self.0.insert(name.to_owned(), kind);
        Ok(())
    }

    /// Removes an instance, so references to it are rejected.
    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// The kind of the named instance, if configured.
    pub fn kind(&self, name: &str) -> Option<BackendKind> {
        self.0.get(name).copied()
    }

    /// Instance names, comma separated, for error messages.
    pub fn names(&self) -> String {
        self.0
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True when `text` starts with `INSTANCE://` for a configured instance: it is meant as a reference.
    pub fn looks_like_reference(&self, text: &str) -> bool {
        text.split_once("://")
            .is_some_and(|(scheme, _)| self.0.contains_key(scheme))
    }

    /// The configured instance that `name`, which is none, is a likely typo of (`aws-ms`, `awssm` or `locl`
    /// for `aws-sm` and `local`): at most two edits away (a swap of two neighbours is one), and fewer edits than
    /// half its length, so that other URL schemes (`https`, `postgres`, `s3`) are not taken for one.
    pub fn typo_of(&self, name: &str) -> Option<&str> {
        if self.0.contains_key(name) {
            return None;
        }
        // Between names as many edits away, one with the same letters wins: `aws-ms` is `aws-sm` with two
        // letters swapped, more likely than `aws-ps` with one changed.
        let letters = |text: &str| {
            let mut letters: Vec<char> = text.chars().collect();
            letters.sort_unstable();
            letters
        };
        self.0
            .keys()
            .map(|known| {
                let edits = strsim::damerau_levenshtein(name, known);
                (edits, letters(known) != letters(name), known.as_str())
            })
            .filter(|&(edits, _, known)| edits <= 2 && edits * 2 < known.len().min(name.len()))
            .min()
            .map(|(_, _, known)| known)
    }

    /// The configured instance that `text`'s scheme is a likely typo of ([`Instances::typo_of`]), when it has
    /// one: a value meant as a reference that would otherwise be taken as a plain value.
    pub fn typo_in(&self, text: &str) -> Option<&str> {
        text.split_once("://")
            .and_then(|(scheme, _)| self.typo_of(scheme))
    }

    /// The error for a reference to `instance`, which is not configured.
    pub fn unknown(&self, instance: &str) -> Error {
        Error::UnknownInstance {
            instance: instance.to_owned(),
            known: self.names(),
            hint: self
                .typo_of(instance)
                .map_or_else(String::new, |known| format!(" (did you mean `{known}`?)")),
        }
    }
}

fn validate_instance_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "instance name `{name}` must start with a lowercase letter and hold only lowercase letters, digits, `-` and `_`"
        ))
    }
}

/// A field inside a JSON secret value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// A top-level key: `#github_token`.
    Key(String),
    /// An RFC 6901 JSON pointer: `#/db/password`.
    Pointer(String),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Percent-decoded on parse, so escaped here: the printed reference parses back to this field.
            Field::Key(k) | Field::Pointer(k) => write!(f, "{}", utf8_percent_encode(k, ESCAPE)),
        }
    }
}

/// A parsed secret reference. It holds names only; `Display` prints the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// Shared with the cache key ([`SecretRef::key`]): making a key from a reference allocates nothing.
    instance: Arc<str>,
    kind: BackendKind,
    target: Arc<Target>,
    field: Option<Field>,
}

impl SecretRef {
    /// Parses a reference against the default instances (`aws-sm`, `gcp-sm`, `local`).
    pub fn parse(input: &str) -> Result<Self, Error> {
        Self::parse_with(input, &Instances::default())
    }

    /// Parses a reference against the configured instances.
    pub fn parse_with(input: &str, instances: &Instances) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidRef {
            input: input.to_owned(),
            reason,
        };
        let (scheme, rest) = input.split_once("://").ok_or(Error::NotARef {
            chars: input.chars().count(),
        })?;
        let kind = instances
            .kind(scheme)
            .ok_or_else(|| instances.unknown(scheme))?;
        let (rest, field) = match rest.split_once('#') {
            Some((rest, field)) => (rest, Some(parse_field(field).map_err(bad)?)),
            None => (rest, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, parse_query(query).map_err(bad)?),
            None => (rest, Vec::new()),
        };
        if path.is_empty() {
            return Err(bad("the secret name is empty".into()));
        }
        if let Some(c) = path.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(format!(
                "the secret name holds the character {c:?}; names have no spaces or control characters"
            )));
        }
        let target = match kind {
            BackendKind::Aws => aws::parse_aws(path, &query),
            BackendKind::Gcp => gcp::parse_gcp(path, &query),
            BackendKind::Local => local::parse_local(path, &query),
            BackendKind::Vault => vault::parse_vault(path, &query),
            BackendKind::Ssm => ssm::parse_ssm(path, &query),
            BackendKind::Azure => azure::parse_azure(path, &query),
            BackendKind::K8s => k8s::parse_k8s(path, &query),
        }
        .map_err(bad)?;
        Ok(SecretRef {
            instance: Arc::from(scheme),
            kind,
            target: Arc::new(target),
            field,
        })
    }

    /// The provider instance (the scheme).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The backend kind of the instance.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// What the reference points at, without the field.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The field to select from a JSON value, if any.
    pub fn field(&self) -> Option<&Field> {
        self.field.as_ref()
    }

    /// The cache key: instance and target, shared with the reference (no allocation).
    pub fn key(&self) -> Key {
        Key {
            instance: Arc::clone(&self.instance),
            target: Arc::clone(&self.target),
        }
    }

    /// `instance://name`: the secret's identity without version selector or field, which access rules match.
    #[must_use]
    pub fn secret_path(&self) -> String {
        format!("{}://{}", self.instance, self.target.identity())
    }

    /// The reference without its field.
    #[must_use]
    pub fn without_field(&self) -> SecretRef {
        SecretRef {
            field: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.instance, self.target)?;
        match &self.field {
            Some(field) => write!(f, "#{field}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_field(raw: &str) -> Result<Field, String> {
    let field = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the field is not valid UTF-8 after percent-decoding".to_owned())?
        .into_owned();
    if field.is_empty() {
        return Err(
            "the field after `#` is empty; write #KEY or #/json/pointer, or drop the `#`".into(),
        );
    }
    if field.starts_with('/') {
        // RFC 6901: `~` must be followed by 0 or 1.
        let mut chars = field.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "JSON pointer `{field}` has a `~` not followed by 0 or 1 (write ~0 for ~, ~1 for /)"
                ));
            }
        }
        Ok(Field::Pointer(field))
    } else {
        Ok(Field::Key(field))
    }
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("query parameter `{pair}` has no `=VALUE`"))?;
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("query parameter `{key}` is not valid UTF-8"))?
            .into_owned();
        if value.is_empty() {
            return Err(format!("query parameter `{key}` is empty"));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("query parameter `{key}` is given twice"));
        }
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// A cloud region's id, which goes into a host name: a lowercase letter, then lowercase letters, digits and
/// `-`, at most `max` characters; nothing that could name another host (`.`, `/`, `:`).
pub(crate) fn is_region_label(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests;

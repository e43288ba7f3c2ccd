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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a query value or a field must escape to parse back to itself: the separators, `%` itself, space.
const ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%').add(b'&').add(b'?');

use crate::Error;

mod aws;
mod azure;
mod gcp;
mod k8s;
mod local;
mod ssm;
mod vault;

pub use aws::{AwsVersion, is_aws_region};
pub use gcp::{GcpVersion, is_gcp_location};
pub use ssm::SsmSelector;

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

/// What a reference points at inside its backend, without the field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An AWS secret by name or ARN.
    Aws {
        /// Name or full ARN.
        secret_id: String,
        /// Version selector.
        version: AwsVersion,
    },
    /// A GCP secret; `project` is `None` when the reference relies on the instance's configured project,
    /// `location` when it relies on the instance's (global, unless the instance sets one).
    Gcp {
        /// Project id or number.
        project: Option<String>,
        /// The location of a regional secret (`europe-west1`).
        location: Option<String>,
        /// Secret id.
        secret: String,
        /// Version selector.
        version: GcpVersion,
    },
    /// A local store entry.
    Local {
        /// Entry name, possibly with `/` separated segments.
        name: String,
    },
    /// A Vault KV secret.
    Vault {
        /// The path, mount included (`secret/ci/github`).
        path: String,
        /// A KV v2 version; `None` is the current one.
        version: Option<u64>,
    },
    /// A Parameter Store parameter.
    Ssm {
        /// The name without a leading `/`, or the ARN.
        name: String,
        /// A version or label; `None` is the latest.
        selector: Option<SsmSelector>,
    },
    /// An Azure Key Vault secret.
    Azure {
        /// The vault's name (lowercase).
        vault: String,
        /// The secret's name.
        name: String,
        /// A version id (lowercase hex); `None` is the latest.
        version: Option<String>,
    },
    /// A Kubernetes Secret; `namespace` is `None` when the reference relies on the instance's.
    K8s {
        /// The namespace.
        namespace: Option<String>,
        /// The Secret's name.
        name: String,
    },
}

impl Target {
    /// The secret without its version selector: an AWS name or ARN, `PROJECT/SECRET` (or `SECRET` when the
    /// instance's project applies; a regional one `projects/PROJECT/locations/LOCATION/secrets/SECRET`, or
    /// `locations/LOCATION/secrets/SECRET`), a local entry's name. Borrowed for an AWS or local name and a GCP
    /// secret alone.
    #[must_use]
    pub fn identity(&self) -> Cow<'_, str> {
        match self {
            Target::Aws { secret_id, .. } => Cow::Borrowed(secret_id),
            Target::Gcp {
                project,
                location: Some(location),
                secret,
                ..
            } => Cow::Owned(match project {
                Some(project) => {
                    format!("projects/{project}/locations/{location}/secrets/{secret}")
                }
                None => format!("locations/{location}/secrets/{secret}"),
            }),
            Target::Gcp {
                project: Some(project),
                location: None,
                secret,
                ..
            } => Cow::Owned(format!("{project}/{secret}")),
            Target::Gcp {
                project: None,
                location: None,
                secret,
                ..
            }
            | Target::Local { name: secret }
            | Target::Vault { path: secret, .. }
            | Target::Ssm { name: secret, .. }
            | Target::K8s {
                namespace: None,
                name: secret,
            } => Cow::Borrowed(secret),
            Target::Azure { vault, name, .. } => Cow::Owned(format!("{vault}/{name}")),
            Target::K8s {
                namespace: Some(namespace),
                name,
            } => Cow::Owned(format!("{namespace}/{name}")),
        }
    }
}

impl fmt::Display for Target {
    /// The path and query part of the canonical reference (no scheme, no field).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Aws {
                secret_id,
                version: AwsVersion::Stage(stage),
            } => {
                let stage = utf8_percent_encode(stage, ESCAPE);
                write!(f, "{secret_id}?version-stage={stage}")
            }
            Target::Aws {
                secret_id,
                version: AwsVersion::Id(id),
            } => write!(
                f,
                "{secret_id}?version-id={}",
                utf8_percent_encode(id, ESCAPE)
            ),
            Target::Aws {
                secret_id,
                version: AwsVersion::IdAndStage { id, stage },
            } => write!(
                f,
                "{secret_id}?version-id={}&version-stage={}",
                utf8_percent_encode(id, ESCAPE),
                utf8_percent_encode(stage, ESCAPE)
            ),
            Target::Gcp {
                project,
                location,
                secret,
                version,
            } => {
                if let Some(project) = project {
                    write!(f, "{project}/")?;
                }
                write!(f, "{secret}?")?;
                if let Some(location) = location {
                    write!(f, "location={location}&")?;
                }
                write!(f, "version={version}")
            }
            Target::Local { name } => f.write_str(name),
            Target::Vault { path, version } => {
                f.write_str(path)?;
                match version {
                    Some(version) => write!(f, "?version={version}"),
                    None => Ok(()),
                }
            }
            Target::Ssm { name, selector } => {
                f.write_str(name)?;
                match selector {
                    Some(SsmSelector::Version(version)) => write!(f, "?version={version}"),
                    Some(SsmSelector::Label(label)) => write!(f, "?label={label}"),
                    None => Ok(()),
                }
            }
            Target::Azure {
                vault,
                name,
                version,
            } => {
                write!(f, "{vault}/{name}")?;
                match version {
                    Some(version) => write!(f, "?version={version}"),
                    None => Ok(()),
                }
            }
            Target::K8s { namespace, name } => match namespace {
                Some(namespace) => write!(f, "{namespace}/{name}"),
                None => f.write_str(name),
            },
        }
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
    instance: String,
    kind: BackendKind,
    target: Target,
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
            instance: scheme.to_owned(),
            kind,
            target,
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

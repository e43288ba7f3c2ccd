//! Secret references: one syntax for every backend.
//!
//! ```text
//! aws-sm://NAME_OR_ARN[?version-id=ID][&version-stage=STAGE][#FIELD]    (both: the id must carry the stage)
//! gcp-sm://[PROJECT/]SECRET[?version=V][&location=L][#FIELD]            (no PROJECT: the instance's project)
//! gcp-sm://projects/P[/locations/L]/secrets/S[/versions/V][#FIELD]     (Secret Manager's own resource name)
//! local://NAME[#FIELD]
//!
//! V        ::= a positive number | latest | an alias the secret defines (a letter, then up to 62 letters,
//!              digits, `-`, `_`)
//! L        ::= a location (`europe-west1`): the secret is regional, read from that region's endpoint
//! FIELD    ::= a top-level JSON key, or a JSON pointer (`#/db/password`)
//! ```
//! The scheme is a provider *instance*: `aws-sm`, `gcp-sm` and `local` always exist, and `keyway.toml` can add
//! more (`prod-aws://...`) of any backend kind. Query values and fields escape `%`, space, `#`, `&` and `?`
//! as `%XX`; the parameters may come in any order, each once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// What a query value or a field must escape to parse back to itself: the separators, `%` itself, space.
const ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%').add(b'&').add(b'?');

use crate::Error;

/// The backend family an instance belongs to; it decides how a reference's path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// AWS Secrets Manager.
    Aws,
    /// Google Cloud Secret Manager.
    Gcp,
    /// The embedded local store.
    Local,
}

impl BackendKind {
    /// The configuration name of the kind (`type = "aws"` in `keyway.toml`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Aws => "aws",
            BackendKind::Gcp => "gcp",
            BackendKind::Local => "local",
        }
    }
}

/// The provider instances references may name, with their kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instances(BTreeMap<String, BackendKind>);

impl Default for Instances {
    /// The three default instances: `aws-sm`, `gcp-sm` and `local`.
    fn default() -> Self {
        let mut map = BTreeMap::new();
        map.insert("aws-sm".to_owned(), BackendKind::Aws);
        map.insert("gcp-sm".to_owned(), BackendKind::Gcp);
        map.insert("local".to_owned(), BackendKind::Local);
        Instances(map)
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
        self.0
            .keys()
            .map(|known| (strsim::damerau_levenshtein(name, known), known.as_str()))
            .filter(|&(edits, known)| edits <= 2 && edits * 2 < known.len().min(name.len()))
            .min()
            .map(|(_, known)| known)
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

/// Which version of an AWS secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AwsVersion {
    /// A staging label, `AWSCURRENT` by default.
    Stage(String),
    /// A version id (a UUID).
    Id(String),
    /// A version id that must also carry this staging label (the AWS agent's `versionId` with `versionStage`):
    /// Secrets Manager refuses the pair when they name different versions.
    IdAndStage {
        /// The version id.
        id: String,
        /// The staging label.
        stage: String,
    },
}

/// Which version of a GCP secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GcpVersion {
    /// The `latest` alias.
    Latest,
    /// A numbered version.
    Number(u64),
    /// A version alias the secret defines (`prod`): like `latest`, it may point at another version later.
    Alias(String),
}

impl fmt::Display for GcpVersion {
    /// As Secret Manager names it in `.../versions/V`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpVersion::Latest => f.write_str("latest"),
            GcpVersion::Number(n) => write!(f, "{n}"),
            GcpVersion::Alias(alias) => f.write_str(alias),
        }
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
            | Target::Local { name: secret } => Cow::Borrowed(secret),
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
            BackendKind::Aws => parse_aws(path, &query),
            BackendKind::Gcp => parse_gcp(path, &query),
            BackendKind::Local => parse_local(path, &query),
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

fn parse_aws(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let (mut id, mut stage) = (None, None);
    for (key, value) in query {
        match key.as_str() {
            "version-id" => id = Some(value.clone()),
            "version-stage" => stage = Some(value.clone()),
            other => {
                return Err(format!(
                    "unknown parameter `{other}` for AWS; use version-id=ID or version-stage=STAGE"
                ));
            }
        }
    }
    let version = match (id, stage) {
        (Some(id), Some(stage)) => AwsVersion::IdAndStage { id, stage },
        (Some(id), None) => AwsVersion::Id(id),
        (None, Some(stage)) => AwsVersion::Stage(stage),
        (None, None) => AwsVersion::Stage("AWSCURRENT".to_owned()),
    };
    if path.starts_with("arn:") {
        // arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME
        let parts: Vec<&str> = path.splitn(7, ':').collect();
        if parts.len() != 7
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
            || parts[6].is_empty()
        {
            return Err(
                "an ARN must look like arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME".into(),
            );
        }
        // The region picks the endpoint a cross-region read goes to: a host label, nothing else.
        let region = parts[3];
        if !is_aws_region(region) {
            return Err(format!(
                "`{region}` in the ARN is not an AWS region (lowercase letters, digits and `-`, e.g. us-east-1)"
            ));
        }
    } else if path.len() > 512 {
        return Err("an AWS secret name is at most 512 characters".into());
    } else if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(format!(
            "AWS secret names hold letters, digits and /_+=.@- only, not {c:?}"
        ));
    }
    Ok(Target::Aws {
        secret_id: path.to_owned(),
        version,
    })
}

fn parse_gcp(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let (mut version, mut query_location) = (None, None);
    for (key, value) in query {
        match key.as_str() {
            "version" => version = Some(parse_gcp_version(value)?),
            "location" => query_location = Some(value.as_str()),
            _ => {
                return Err(format!(
                    "unknown parameter `{key}` for GCP; use version=N or version=latest, and location=LOCATION for a regional secret"
                ));
            }
        }
    }
    let segments: Vec<&str> = path.split('/').collect();
    let (project, location, secret, path_version) = match segments.as_slice() {
        ["projects", p, "secrets", s] | [p, s] => (Some(*p), None, *s, None),
        ["projects", p, "secrets", s, "versions", v] => {
            (Some(*p), None, *s, Some(parse_gcp_version(v)?))
        }
        ["projects", p, "locations", l, "secrets", s] => (Some(*p), Some(*l), *s, None),
        ["projects", p, "locations", l, "secrets", s, "versions", v] => {
            (Some(*p), Some(*l), *s, Some(parse_gcp_version(v)?))
        }
        [s] => (None, None, *s, None),
        _ => {
            return Err("expected PROJECT/SECRET, SECRET (with the instance's project), projects/P/secrets/S[/versions/V] or projects/P/locations/L/secrets/S[/versions/V]".into());
        }
    };
    if path_version.is_some() && version.is_some() {
        return Err("the version is given both in the path and as ?version=; give it once".into());
    }
    if location.is_some() && query_location.is_some() {
        return Err(
            "the location is given both in the path and as ?location=; give it once".into(),
        );
    }
    let location = location.or(query_location);
    if let Some(l) = location
        && !is_gcp_location(l)
    {
        return Err(format!(
            "`{l}` is not a GCP location (lowercase letters, digits and `-`, e.g. europe-west1)"
        ));
    }
    if let Some(p) = project
        && (p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c)))
    {
        return Err(format!(
            "`{p}` is not a GCP project id (letters, digits, `-`, `.`, `:`)"
        ));
    }
    if secret.is_empty()
        || secret.len() > 255
        || !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "`{secret}` is not a GCP secret id (1 to 255 letters, digits, `-`, `_`)"
        ));
    }
    Ok(Target::Gcp {
        project: project.map(str::to_owned),
        location: location.map(str::to_owned),
        secret: secret.to_owned(),
        version: path_version.or(version).unwrap_or(GcpVersion::Latest),
    })
}

/// A GCP location id as Secret Manager's regional endpoints take it: `europe-west1`, `us-central1`.
#[must_use]
pub fn is_gcp_location(location: &str) -> bool {
    is_region_label(location, 63)
}

/// An AWS region as an ARN names it and an endpoint's host name takes it: `us-east-1`.
#[must_use]
pub fn is_aws_region(region: &str) -> bool {
    is_region_label(region, 32)
}

/// A cloud region's id, which goes into a host name: a lowercase letter, then lowercase letters, digits and
/// `-`, at most `max` characters; nothing that could name another host (`.`, `/`, `:`).
fn is_region_label(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A version as Secret Manager takes it: `latest`, a positive number, or an alias (a letter, then up to 62
/// letters, digits, `-` and `_`; never `latest` or `new` in another case).
fn parse_gcp_version(value: &str) -> Result<GcpVersion, String> {
    if value == "latest" {
        return Ok(GcpVersion::Latest);
    }
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return match value.parse::<u64>() {
            Ok(n) if n > 0 => Ok(GcpVersion::Number(n)),
            _ => Err(format!(
                "GCP version `{value}` must be a positive number, `latest` or a version alias"
            )),
        };
    }
    let alias = value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !value.eq_ignore_ascii_case("latest")
        && !value.eq_ignore_ascii_case("new");
    if alias {
        Ok(GcpVersion::Alias(value.to_owned()))
    } else {
        Err(format!(
            "GCP version `{value}` must be a positive number, `latest` or a version alias (a letter, then letters, digits, `-`, `_`)"
        ))
    }
}

fn parse_local(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    if let Some((key, _)) = query.first() {
        return Err(format!(
            "the local store has no versions; drop `?{key}=...`"
        ));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(
                "local names are relative paths without empty, `.` or `..` segments".into(),
            );
        }
        if segment.contains('\\') || segment.contains('\0') {
            return Err("local names may not hold `\\` or NUL".into());
        }
    }
    Ok(Target::Local {
        name: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> SecretRef {
        SecretRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    fn err(input: &str, needle: &str) {
        match SecretRef::parse(input) {
            Ok(r) => panic!("{input} parsed as {r:?}"),
            Err(e) => assert!(
                e.to_string().contains(needle),
                "{input}: `{e}` lacks `{needle}`"
            ),
        }
    }

    fn check(input: &str, canonical: &str) {
        let parsed = ok(input);
        assert_eq!(parsed.to_string(), canonical, "{input}");
        assert_eq!(
            ok(canonical),
            parsed,
            "canonical form of {input} reparses differently"
        );
    }

    #[test]
    fn aws_names_arns_versions_and_fields() {
        check(
            "aws-sm://ci/github",
            "aws-sm://ci/github?version-stage=AWSCURRENT",
        );
        check(
            "aws-sm://ci/github#github_token",
            "aws-sm://ci/github?version-stage=AWSCURRENT#github_token",
        );
        check(
            "aws-sm://db?version-stage=AWSPREVIOUS",
            "aws-sm://db?version-stage=AWSPREVIOUS",
        );
        check(
            "aws-sm://db?version-id=0123-abcd#/db/password",
            "aws-sm://db?version-id=0123-abcd#/db/password",
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/github-AbCdEf";
        let r = ok(&format!("aws-sm://{arn}#github_token"));
        assert_eq!(
            r.target(),
            &Target::Aws {
                secret_id: arn.to_owned(),
                version: AwsVersion::Stage("AWSCURRENT".into())
            }
        );
        assert_eq!(r.field(), Some(&Field::Key("github_token".into())));
        assert_eq!(r.kind(), BackendKind::Aws);
    }

    #[test]
    fn aws_rejections() {
        err("aws-sm://", "empty");
        assert_eq!(
            SecretRef::parse("aws-sm://x?version-stage=b&version-id=a")
                .unwrap()
                .to_string(),
            "aws-sm://x?version-id=a&version-stage=b"
        );
        err("aws-sm://x?stage=b", "unknown parameter `stage`");
        err("aws-sm://x?version-id", "no `=VALUE`");
        err("aws-sm://x?version-id=", "is empty");
        err("aws-sm://arn:aws:s3:::bucket", "ARN must look like");
        err(
            "aws-sm://arn:aws:secretsmanager:evil.example.com/x:1:secret:s",
            "is not an AWS region",
        );
        err(
            "aws-sm://arn:aws:secretsmanager::123456789012:secret:s",
            "is not an AWS region",
        );
        err("aws-sm://a b", "no spaces");
        err("aws-sm://a%b", "letters, digits");
        err("aws-sm://x#", "field after `#` is empty");
        err("aws-sm://x#/a~2", "~0 for ~");
    }

    #[test]
    fn gcp_forms() {
        check("gcp-sm://proj/token", "gcp-sm://proj/token?version=latest");
        check(
            "gcp-sm://proj/token?version=3#k",
            "gcp-sm://proj/token?version=3#k",
        );
        check(
            "gcp-sm://projects/p-1/secrets/s_2/versions/7",
            "gcp-sm://p-1/s_2?version=7",
        );
        check(
            "gcp-sm://projects/p/secrets/s",
            "gcp-sm://p/s?version=latest",
        );
        check(
            "gcp-sm://only-secret",
            "gcp-sm://only-secret?version=latest",
        );
        check(
            "gcp-sm://projects/p/secrets/s/versions/latest",
            "gcp-sm://p/s?version=latest",
        );
    }

    #[test]
    fn gcp_version_aliases() {
        check("gcp-sm://p/s?version=prod", "gcp-sm://p/s?version=prod");
        check(
            "gcp-sm://projects/p/secrets/s/versions/blue_green-2#k",
            "gcp-sm://p/s?version=blue_green-2#k",
        );
        assert_eq!(
            ok("gcp-sm://p/s?version=prod").target(),
            &Target::Gcp {
                project: Some("p".into()),
                location: None,
                secret: "s".into(),
                version: GcpVersion::Alias("prod".into()),
            }
        );
    }

    #[test]
    fn gcp_regional_forms() {
        check(
            "gcp-sm://projects/p/locations/europe-west1/secrets/s/versions/4#k",
            "gcp-sm://p/s?location=europe-west1&version=4#k",
        );
        check(
            "gcp-sm://projects/p/locations/us-east4/secrets/s",
            "gcp-sm://p/s?location=us-east4&version=latest",
        );
        check(
            "gcp-sm://s?version=2&location=me-central2",
            "gcp-sm://s?location=me-central2&version=2",
        );
        let r = ok("gcp-sm://p/s?location=europe-west1");
        assert_eq!(
            r.target(),
            &Target::Gcp {
                project: Some("p".into()),
                location: Some("europe-west1".into()),
                secret: "s".into(),
                version: GcpVersion::Latest,
            }
        );
        assert_eq!(
            r.secret_path(),
            "gcp-sm://projects/p/locations/europe-west1/secrets/s"
        );
        assert_ne!(
            r.target(),
            ok("gcp-sm://p/s").target(),
            "a regional secret is not the global one of the same name"
        );
        assert_eq!(
            ok("gcp-sm://s?location=europe-west1").secret_path(),
            "gcp-sm://locations/europe-west1/secrets/s"
        );
        err(
            "gcp-sm://projects/p/locations/europe-west1/secrets/s?location=us-east1",
            "given both in the path and as ?location=",
        );
        err("gcp-sm://p/s?location=Europe", "not a GCP location");
        err("gcp-sm://p/s?location=eu_west", "not a GCP location");
        err(
            "gcp-sm://projects/p/locations/secrets/s",
            "expected PROJECT/SECRET",
        );
    }

    #[test]
    fn gcp_rejections() {
        err("gcp-sm://p/s?version=0", "positive number");
        err("gcp-sm://p/s?version=-1", "positive number");
        err("gcp-sm://p/s?version=3x", "positive number");
        err("gcp-sm://p/s?version=Latest", "version alias (a letter");
        err("gcp-sm://p/s?version=new", "version alias (a letter");
        err("gcp-sm://p/s?version=_x", "version alias (a letter");
        err("gcp-sm://p/s?ver=1", "unknown parameter");
        err(
            "gcp-sm://projects/p/secrets/s/versions/2?version=3",
            "give it once",
        );
        err("gcp-sm://a/b/c", "expected PROJECT/SECRET");
        err("gcp-sm://p/s.x", "not a GCP secret id");
        err("gcp-sm://p!/s", "not a GCP project id");
    }

    #[test]
    fn local_forms() {
        check("local://github", "local://github");
        check("local://team/db#password", "local://team/db#password");
        err("local://../etc/passwd", "`..`");
        err("local://a//b", "empty");
        err("local:///abs", "empty");
        err("local://x?version=1", "no versions");
    }

    #[test]
    fn typos_of_instance_names_are_recognised_and_other_schemes_are_not() {
        let instances = Instances::default();
        for (name, meant) in [
            ("aws-ms", "aws-sm"),
            ("awssm", "aws-sm"),
            ("aws_sm", "aws-sm"),
            ("gcp-s", "gcp-sm"),
            ("gpc-sm", "gcp-sm"),
            ("locl", "local"),
            ("loacl", "local"),
            ("lokal", "local"),
        ] {
            assert_eq!(instances.typo_of(name), Some(meant), "{name}");
        }
        for name in [
            "aws-sm", "local", "s3", "gs", "aws", "gcp", "https", "http", "file", "postgres",
            "redis", "mysql", "ldap", "ssh", "git", "amqp", "smtp", "sftp", "kafka", "nats", "ws",
            "wss",
        ] {
            assert_eq!(instances.typo_of(name), None, "{name}");
        }
        assert_eq!(instances.typo_in("aws-ms://ci/github"), Some("aws-sm"));
        assert_eq!(instances.typo_in("https://example.com"), None);
        assert_eq!(instances.typo_in("locl"), None, "no `://`: no reference");
    }

    #[test]
    fn schemes_and_instances() {
        err("github", "expected INSTANCE://PATH");
        // Text that is not a reference may be a value pasted in its place: not echoed.
        let e = SecretRef::parse("ghp_s3cretToken").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a secret reference (15 characters, not shown: it may be a value): expected INSTANCE://PATH, for example aws-sm://NAME or local://NAME"
        );
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        err("s3://bucket/key", "no provider instance named `s3`;");
        err(
            "awssm://x",
            "no provider instance named `awssm` (did you mean `aws-sm`?);",
        );
        let mut instances = Instances::default();
        instances.insert("prod-aws", BackendKind::Aws).unwrap();
        let r = SecretRef::parse_with("prod-aws://db#pw", &instances).unwrap();
        assert_eq!(r.instance(), "prod-aws");
        assert_eq!(r.to_string(), "prod-aws://db?version-stage=AWSCURRENT#pw");
        assert!(instances.insert("Bad", BackendKind::Aws).is_err());
        assert!(instances.looks_like_reference("prod-aws://x"));
        assert!(!instances.looks_like_reference("https://example.com"));
    }

    #[test]
    fn fields_are_percent_decoded_and_pointers_kept() {
        assert_eq!(
            ok("local://x#a%23b").field(),
            Some(&Field::Key("a#b".into()))
        );
        assert_eq!(
            ok("local://x#/a~1b/0").field(),
            Some(&Field::Pointer("/a~1b/0".into()))
        );
        assert_eq!(ok("local://x#k").without_field().field(), None);
    }

    /// Found by the fuzz run below (50,000 cases): `%23` in a version id decoded to `#`, which the canonical
    /// form printed raw, so it parsed back as a field separator. Query values and fields are escaped now.
    #[test]
    fn escaped_query_values_and_fields_print_escaped_and_parse_back() {
        for input in [
            "aws-sm://0?version-id=%23",
            "aws-sm://s?version-stage=a%26b",
            "local://x#a%25b",
            "local://x#k%20%3F",
        ] {
            let parsed = SecretRef::parse(input).unwrap();
            let printed = parsed.to_string();
            assert_eq!(
                SecretRef::parse(&printed).unwrap(),
                parsed,
                "{input} -> {printed}"
            );
        }
        assert_eq!(
            SecretRef::parse("aws-sm://0?version-id=%23")
                .unwrap()
                .to_string(),
            "aws-sm://0?version-id=%23"
        );
    }

    /// Hostile input (`docs/security.md`): `KEYWAY_FUZZ_CASES` cases of each strategy (default 2,000).
    mod fuzz {
        use proptest::prelude::*;

        use super::super::*;

        fn cases() -> u32 {
            crate::fuzz_cases(2000)
        }

        fn reference_shaped() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,80}",
                "(aws-sm|gcp-sm|local|prod-aws|AWS-SM)://[ -~]{0,60}",
                (
                    "(aws-sm|gcp-sm|local)",
                    "[a-zA-Z0-9/_+=.@:%-]{0,40}",
                    "(\\?(version-id|version-stage|version)=[a-zA-Z0-9%]{0,12})?",
                    "(#[a-z0-9/~._-]{0,12})?",
                )
                    .prop_map(|(s, n, q, f)| format!("{s}://{n}{q}{f}")),
                // GCP's forms: regional paths, `location=`, aliases, in either order.
                (
                    "(projects/[a-z0-9-]{0,8}/(locations/[a-zA-Z0-9_-]{0,10}/)?secrets/)?[a-z0-9_-]{0,10}",
                    "(/versions/[a-zA-Z0-9_-]{0,8})?",
                    "(\\?(location|version)=[a-zA-Z0-9_-]{0,10}(&(location|version)=[a-zA-Z0-9_-]{0,10})?)?",
                )
                    .prop_map(|(p, v, q)| format!("gcp-sm://{p}{v}{q}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

            /// No input panics; whatever parses prints a canonical form that parses to the same reference.
            #[test]
            fn references_never_panic_and_round_trip(input in reference_shaped()) {
                if let Ok(reference) = SecretRef::parse(&input) {
                    let printed = reference.to_string();
                    let again = SecretRef::parse(&printed).ok();
                    prop_assert_eq!(again.as_ref(), Some(&reference), "{} -> {}", input, printed);
                }
            }
        }
    }
}

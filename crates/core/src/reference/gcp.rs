//! `gcp-sm://[PROJECT/]SECRET[?version=V][&location=L]` and Secret Manager's own resource names.

use std::fmt;

use super::{Target, is_region_label};

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

pub(super) fn parse_gcp(path: &str, query: &[(String, String)]) -> Result<Target, String> {
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

/// A version as Secret Manager takes it: `latest`, a positive number, or an alias (a letter, then up to 62
/// letters, digits, `-` and `_`; never `latest` or `new` in another case).
pub(super) fn parse_gcp_version(value: &str) -> Result<GcpVersion, String> {
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

//! Flyte's secret requests, as flytepropeller writes them on task Pods: label `inject-flyte-secrets: "true"` and
//! annotations `flyte.secrets/s<i>`, each the `flyteidl.core.Secret` message in protobuf text format,
//! base32-encoded with the `=` padding stripped. Keyway replaces Flyte's webhook with no change to Flyte or
//! flytekit: files land where flytekit's `SecretsManager` looks,
//! `/etc/flyte/secrets/<group>[/<group_version>][/<key>]` (lower-cased).

use keyway_core::{Instances, SecretRef};

use crate::Denial;

/// The label that marks a Pod for secret injection.
pub const LABEL: &str = "inject-flyte-secrets";
/// Annotation prefix of the encoded secrets.
pub const ANNOTATION_PREFIX: &str = "flyte.secrets/";
/// flytekit's default `SECRETS_ENV_PREFIX`.
pub const ENV_PREFIX: &str = "_FSEC_";
/// flytekit's task entrypoints: a container whose `args` start with one runs it from `PATH` (flytepropeller
/// sets `args`, not `command`), so its command is known and can be wrapped in `keyway exec`.
pub const ENTRYPOINTS: [&str; 3] = [
    "pyflyte-execute",
    "pyflyte-fast-execute",
    "pyflyte-map-execute",
];
/// Where flytekit reads secrets when `FLYTE_SECRETS_DEFAULT_DIR` says so.
pub const DIR: &str = "/etc/flyte/secrets";

/// `flyteidl.core.Secret.MountType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountType {
    /// Either; Keyway delivers a file, as Flyte's file-based injectors do.
    #[default]
    Any,
    /// An environment variable, named as flytekit looks it up ([`FlyteSecret::env_name`]), set by wrapping the
    /// container's command in `keyway exec`.
    EnvVar,
    /// A file.
    File,
}

/// One decoded `flyteidl.core.Secret`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlyteSecret {
    /// `group`.
    pub group: String,
    /// `group_version`.
    pub group_version: String,
    /// `key`.
    pub key: String,
    /// `mount_requirement`.
    pub mount: MountType,
    /// `env_var`.
    pub env_var: String,
}

/// How Flyte's (group, group_version, key) names a Keyway reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlyteBackend {
    /// AWS Secrets Manager, as Flyte's AWS injector: the group is the ARN prefix
    /// (`arn:aws:secretsmanager:REGION:ACCOUNT:secret`) and the key the secret name; `aws-sm://GROUP:KEY`.
    Aws {
        /// The provider instance.
        instance: String,
    },
    /// GCP Secret Manager, as Flyte's GCP injector: the group is the secret and `group_version` its version
    /// (latest when empty); `gcp-sm://PROJECT/GROUP?version=V`.
    Gcp {
        /// The provider instance.
        instance: String,
        /// The project the secrets live in.
        project: String,
    },
}

impl FlyteSecret {
    /// The file path relative to [`DIR`], as flytekit computes it (empty parts skipped, lower-cased).
    pub fn file(&self) -> String {
        [&self.group, &self.group_version, &self.key]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_lowercase())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The environment variable an `ENV_VAR` secret is delivered in: `env_var` when the task names one, else
    /// the name flytekit's `SecretsManager` looks up first, `_FSEC_` and the upper-cased non-empty parts of
    /// (group, group_version, key) joined with `_`.
    pub fn env_name(&self) -> String {
        if !self.env_var.is_empty() {
            return self.env_var.clone();
        }
        let parts: Vec<String> = [&self.group, &self.group_version, &self.key]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_uppercase())
            .collect();
        format!("{ENV_PREFIX}{}", parts.join("_"))
    }

    /// The Keyway reference this secret maps to.
    pub fn reference(
        &self,
        backend: &FlyteBackend,
        instances: &Instances,
    ) -> Result<SecretRef, String> {
        let text = match backend {
            FlyteBackend::Aws { instance } => {
                if self.key.is_empty() {
                    return Err(
                        "an AWS secret needs a key (the secret name after the ARN prefix in group)"
                            .into(),
                    );
                }
                format!("{instance}://{}:{}", self.group, self.key)
            }
            FlyteBackend::Gcp { instance, project } => {
                let version = if self.group_version.is_empty() {
                    "latest"
                } else {
                    &self.group_version
                };
                format!("{instance}://{project}/{}?version={version}", self.group)
            }
        };
        SecretRef::parse_with(&text, instances).map_err(|e| e.to_string())
    }
}

/// Decodes one `flyte.secrets/s<i>` value.
pub fn decode(annotation: &str, value: &str) -> Result<FlyteSecret, Denial> {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(value.trim_end_matches('=').as_bytes())
        .map_err(|e| Denial(format!("annotation {annotation}: not base32 ({e})")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Denial(format!(
            "annotation {annotation}: the decoded secret is not UTF-8"
        ))
    })?;
    parse_text(&text).map_err(|e| Denial(format!("annotation {annotation}: {e}")))
}

/// Parses the protobuf text format of `flyteidl.core.Secret`: `field: value` pairs separated by whitespace,
/// `,` or `;`, string values in double or single quotes with C escapes, the enum by name or number.
pub fn parse_text(text: &str) -> Result<FlyteSecret, String> {
    let mut secret = FlyteSecret::default();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (field, after) = rest.split_at(end);
        if field.is_empty() {
            return Err(format!("expected a field name at `{}`", preview(rest)));
        }
        let after = after.trim_start();
        let Some(after) = after.strip_prefix(':') else {
            return Err(format!("expected `:` after `{field}`"));
        };
        let after = after.trim_start();
        let (value, after) = if after.starts_with(['"', '\'']) {
            let (s, after) = quoted(after)?;
            (Value::Text(s), after)
        } else {
            let end = after
                .find(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .unwrap_or(after.len());
            (Value::Word(&after[..end]), &after[end..])
        };
        match (field, value) {
            ("group", Value::Text(s)) => secret.group = s,
            ("group_version", Value::Text(s)) => secret.group_version = s,
            ("key", Value::Text(s)) => secret.key = s,
            ("env_var", Value::Text(s)) => secret.env_var = s,
            ("mount_requirement", Value::Word(w)) => {
                secret.mount = match w {
                    "ANY" | "0" => MountType::Any,
                    "ENV_VAR" | "1" => MountType::EnvVar,
                    "FILE" | "2" => MountType::File,
                    other => {
                        return Err(format!(
                            "unknown mount_requirement `{other}`; expected ANY, ENV_VAR or FILE"
                        ));
                    }
                };
            }
            ("group" | "group_version" | "key" | "env_var" | "mount_requirement", _) => {
                return Err(format!("field `{field}` has a value of the wrong type"));
            }
            _ => return Err(format!("unknown field `{field}` in a flyteidl.core.Secret")),
        }
        rest = after.trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == ';');
    }
    if secret.group.is_empty() {
        return Err("the secret has no group".into());
    }
    Ok(secret)
}

enum Value<'a> {
    Text(String),
    Word(&'a str),
}

fn preview(s: &str) -> String {
    s.chars().take(20).collect()
}

/// A quoted string with C escapes (`\"`, `\\`, `\n`, `\t`, `\r`, `\'`, octal `\NNN`, hex `\xNN`).
fn quoted(input: &str) -> Result<(String, &str), String> {
    let quote = input.as_bytes()[0];
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if b == quote {
            let text = String::from_utf8(out).map_err(|_| "a string is not UTF-8".to_owned())?;
            return Ok((text, &input[i + 1..]));
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&e) = bytes.get(i + 1) else {
            break;
        };
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'"' | b'\'' | b'\\' => out.push(e),
            b'x' => {
                let end = (i..bytes.len().min(i + 2))
                    .take_while(|j| bytes[*j].is_ascii_hexdigit())
                    .last()
                    .map_or(i, |j| j + 1);
                let v = u8::from_str_radix(&input[i..end], 16)
                    .map_err(|_| "bad \\x escape".to_owned())?;
                out.push(v);
                i = end;
            }
            b'0'..=b'7' => {
                let start = i - 1;
                let end = (start..bytes.len().min(start + 3))
                    .take_while(|j| (b'0'..=b'7').contains(&bytes[*j]))
                    .last()
                    .map_or(start + 1, |j| j + 1);
                let v = u32::from_str_radix(&input[start..end], 8)
                    .map_err(|_| "bad octal escape".to_owned())?;
                out.push(u8::try_from(v).map_err(|_| "octal escape out of range".to_owned())?);
                i = end;
            }
            other => return Err(format!("unknown escape `\\{}`", other as char)),
        }
    }
    Err("a string is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &str) -> String {
        data_encoding::BASE32
            .encode(text.as_bytes())
            .trim_end_matches('=')
            .to_owned()
    }

    #[test]
    fn decodes_what_flytepropeller_writes() {
        let value = encode(
            r#"group:"arn:aws:secretsmanager:us-east-2:123456789012:secret"  key:"ci/github" mount_requirement:FILE"#,
        );
        let secret = decode("flyte.secrets/s0", &value).unwrap();
        assert_eq!(
            secret.group,
            "arn:aws:secretsmanager:us-east-2:123456789012:secret"
        );
        assert_eq!(secret.key, "ci/github");
        assert_eq!(secret.mount, MountType::File);
        assert_eq!(
            secret.file(),
            "arn:aws:secretsmanager:us-east-2:123456789012:secret/ci/github"
        );
        let reference = secret
            .reference(
                &FlyteBackend::Aws {
                    instance: "aws-sm".into(),
                },
                &Instances::default(),
            )
            .unwrap();
        assert_eq!(
            reference.to_string(),
            "aws-sm://arn:aws:secretsmanager:us-east-2:123456789012:secret:ci/github?version-stage=AWSCURRENT"
        );
    }

    #[test]
    fn gcp_groups_and_versions_map_to_secret_and_version() {
        let secret = parse_text(
            "group: 'DB-Password' group_version: \"3\", key: \"\"; mount_requirement: 0",
        )
        .unwrap();
        assert_eq!(secret.file(), "db-password/3");
        let backend = FlyteBackend::Gcp {
            instance: "gcp-sm".into(),
            project: "proj".into(),
        };
        assert_eq!(
            secret
                .reference(&backend, &Instances::default())
                .unwrap()
                .to_string(),
            "gcp-sm://proj/DB-Password?version=3"
        );
        let latest = parse_text(r#"group:"token""#).unwrap();
        assert_eq!(
            latest
                .reference(&backend, &Instances::default())
                .unwrap()
                .to_string(),
            "gcp-sm://proj/token?version=latest"
        );
    }

    #[test]
    fn escapes_and_errors() {
        let s = parse_text(r#"group:"a\"b\\c\x41\101" env_var:"X""#).unwrap();
        assert_eq!(s.group, "a\"b\\cAA");
        for (text, fragment) in [
            ("group:\"x\" colour:\"red\"", "unknown field `colour`"),
            ("group \"x\"", "expected `:`"),
            ("group:\"x", "not closed"),
            (
                "group:\"x\" mount_requirement:SOMETIMES",
                "unknown mount_requirement",
            ),
            ("key:\"k\"", "no group"),
            ("group:FILE", "wrong type"),
        ] {
            let err = parse_text(text).unwrap_err();
            assert!(err.contains(fragment), "{text}: {err}");
        }
        assert!(
            decode("flyte.secrets/s0", "!!!")
                .unwrap_err()
                .0
                .contains("flyte.secrets/s0: not base32")
        );
    }

    #[test]
    fn env_var_secrets_are_named_as_flytekit_looks_them_up() {
        let secret = parse_text(
            r#"group:"db" group_version:"v2" key:"pass-word" mount_requirement:ENV_VAR"#,
        )
        .unwrap();
        assert_eq!(secret.mount, MountType::EnvVar);
        // flytekit: f"{env_prefix}{'_'.join(k.upper() for k in (group, group_version, key) if k)}"
        assert_eq!(secret.env_name(), "_FSEC_DB_V2_PASS-WORD");
        let named =
            parse_text(r#"group:"db" key:"k" mount_requirement:ENV_VAR env_var:"DB_PASSWORD""#)
                .unwrap();
        assert_eq!(named.env_name(), "DB_PASSWORD");
    }
}

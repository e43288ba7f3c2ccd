//! Flyte's secret manager types as Keyway's backends: how each of Flyte's injectors reads a secret's (group,
//! group_version, key), which Keyway reference that is, and where Flyte puts the file (beside where flytekit's
//! `SecretsManager` looks for it, when the two differ).
//!
//! | `--flyte` | Flyte's injector | group | group_version | key |
//! |---|---|---|---|---|
//! | `aws` | AWS (sidecar) | the ARN prefix | (unused) | the secret's name |
//! | `gcp:PROJECT` | GCP (sidecar) | the secret, or `projects/P/secrets/S` | the version | (unused) |
//! | `vault` | Vault (Vault Agent annotations) | the secret's API path | `kv1`, `kv2` or `db` | the field |
//! | `azure` | Azure (init container, `az`) | the secret's URI | the version | (unused) |
//! | `k8s` | K8s (volume, `secretKeyRef`) | the Secret, in the Pod's namespace | (unused) | its key |

use keyway_core::{Instances, SecretRef};

use super::FlyteSecret;

/// How Flyte's (group, group_version, key) names a Keyway reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlyteBackend {
    /// AWS Secrets Manager, as Flyte's AWS injector: the secret is `TrimRight(group, ":") + ":" +
    /// TrimLeft(key, ":")`, the group being the ARN prefix (`arn:aws:secretsmanager:REGION:ACCOUNT:secret`) and
    /// the key the secret name; `aws-sm://GROUP:KEY`.
    Aws {
        /// The provider instance.
        instance: String,
    },
    /// GCP Secret Manager, as Flyte's GCP injector: the group is the secret (a name in `project`, or a full
    /// `projects/P/secrets/S`) and `group_version` its version (`latest` when empty, where Flyte refuses).
    Gcp {
        /// The provider instance.
        instance: String,
        /// The project of groups that are plain secret names.
        project: String,
    },
    /// Vault, as Flyte's Vault injector asks Vault Agent: the group is the secret's API path (KV v2's with or
    /// without its `data/` segment, as Vault Agent takes it), the key its field; `group_version` `kv1` or `kv2`
    /// (default), `db` (the database engine's dynamic credentials) refused: Keyway reads KV.
    Vault {
        /// The provider instance.
        instance: String,
    },
    /// Azure Key Vault, as Flyte's Azure injector: the group is the secret's URI
    /// (`https://VAULT.vault.azure.net/secrets/NAME`), `group_version` its version; files only.
    Azure {
        /// The provider instance.
        instance: String,
    },
    /// Kubernetes Secrets, as Flyte's K8s injector (its default type): the group is a Secret in the Pod's
    /// namespace, the key one of its keys.
    K8s {
        /// The provider instance.
        instance: String,
    },
}

impl FlyteBackend {
    /// The Keyway reference a secret maps to, or why Flyte's request cannot name one. `namespace` is the Pod's
    /// (Kubernetes Secrets are read in it).
    pub fn reference(
        &self,
        secret: &FlyteSecret,
        instances: &Instances,
        namespace: Option<&str>,
    ) -> Result<SecretRef, String> {
        let FlyteSecret {
            group,
            group_version,
            key,
            ..
        } = secret;
        if let Some(c) = [group, group_version, key]
            .iter()
            .flat_map(|p| p.chars())
            .find(|c| matches!(c, '?' | '#' | '%') || c.is_control())
        {
            return Err(format!(
                "group, group_version and key may not hold `{}`: no secret manager names a secret with it",
                c.escape_default()
            ));
        }
        let text = match self {
            FlyteBackend::Aws { instance } => {
                if group.is_empty() || key.is_empty() {
                    return Err(
                        "an AWS secret needs both group (the ARN prefix) and key (the secret name), as Flyte's AWS injector"
                            .into(),
                    );
                }
                format!(
                    "{instance}://{}:{}",
                    group.trim_end_matches(':'),
                    key.trim_start_matches(':')
                )
            }
            FlyteBackend::Gcp { instance, project } => {
                if group.is_empty() {
                    return Err("a GCP secret needs a group (the secret's name)".into());
                }
                let version = if group_version.is_empty() {
                    "latest"
                } else {
                    group_version
                };
                if group.starts_with("projects/") {
                    format!("{instance}://{group}/versions/{version}")
                } else {
                    format!("{instance}://{project}/{group}?version={version}")
                }
            }
            FlyteBackend::Vault { instance } => {
                if group.is_empty() || key.is_empty() {
                    return Err(
                        "a Vault secret needs group (its path) and key (the field), as Flyte's Vault injector".into(),
                    );
                }
                let path = match group_version.as_str() {
                    "kv1" => group.trim_matches('/').to_owned(),
                    "db" => {
                        return Err(
                            "group_version db asks for the database engine's dynamic credentials; Keyway reads KV v1 and v2 (store the credentials in KV, or keep Flyte's Vault injector for them)"
                                .into(),
                        );
                    }
                    // kv2, and anything else: Flyte's default KV version, 2. Vault Agent reads a KV v2 path with
                    // or without the `data/` segment after the mount; Keyway's references are without it.
                    _ => without_data_segment(group.trim_matches('/')),
                };
                format!("{instance}://{path}#{key}")
            }
            FlyteBackend::Azure { instance } => {
                let (vault, name) = azure_uri(group)?;
                if group_version.is_empty() {
                    format!("{instance}://{vault}/{name}")
                } else {
                    format!("{instance}://{vault}/{name}?version={group_version}")
                }
            }
            FlyteBackend::K8s { instance } => {
                if group.is_empty() || key.is_empty() {
                    return Err(
                        "a Kubernetes secret needs group (the Secret's name) and key, as Flyte's K8s injector".into(),
                    );
                }
                let namespace = namespace.ok_or(
                    "the Pod has no namespace in the review, and Kubernetes Secrets are read in the Pod's namespace",
                )?;
                format!("{instance}://{namespace}/{group}#{key}")
            }
        };
        SecretRef::parse_with(&text, instances).map_err(|e| e.to_string())
    }

    /// Where a file secret goes, relative to the secrets directory: Flyte's injector's path first (a file
    /// secret's `env_var` names it), then flytekit's `get_secrets_file` path when it differs.
    pub fn files(&self, secret: &FlyteSecret) -> Vec<String> {
        let flytekit = secret.file();
        let flyte = match self {
            FlyteBackend::Aws { .. } | FlyteBackend::Gcp { .. } => flytekit.clone(),
            // Vault Agent writes `<group>/<key>`, as written.
            FlyteBackend::Vault { .. } => {
                format!("{}/{}", secret.group.trim_matches('/'), secret.key)
            }
            // `az ... > /etc/flyte/secrets/<name>[/<version>]`, lower-cased: flytekit's path for `get(name,
            // group_version=...)`, which is how Flyte's users read it.
            FlyteBackend::Azure { .. } => {
                let name =
                    azure_uri(&secret.group).map_or_else(|_| String::new(), |(_, name)| name);
                let mut path = name.to_lowercase();
                if !secret.group_version.is_empty() {
                    path = format!("{path}/{}", secret.group_version.to_lowercase());
                }
                return vec![path];
            }
            // The Secret's volume at `<group>` (lower-cased), its key as the file.
            FlyteBackend::K8s { .. } => {
                format!(
                    "{}/{}",
                    secret.group.to_lowercase(),
                    secret.key.to_lowercase()
                )
            }
        };
        if flyte == flytekit {
            vec![flyte]
        } else {
            vec![flyte, flytekit]
        }
    }

    /// Whether an `ENV_VAR` secret can be delivered: Flyte's Vault and Azure injectors write files only, and
    /// refuse it.
    pub fn env_allowed(&self) -> Result<(), String> {
        match self {
            FlyteBackend::Vault { .. } => Err(
                "Flyte's Vault secrets are files (Vault Agent writes them); ask with mount_requirement FILE (or ANY) and read the file".into(),
            ),
            FlyteBackend::Azure { .. } => Err(
                "Flyte's Azure secrets are files; ask with mount_requirement FILE (or ANY) and read the file".into(),
            ),
            _ => Ok(()),
        }
    }
}

/// A KV v2 API path without its `data/` segment after the mount (`secret/data/app` is `secret/app`); where the
/// mount is nested, the first `data` segment is taken for it, as Vault Agent would find it after the mount.
fn without_data_segment(path: &str) -> String {
    match path.split_once("/data/") {
        Some((mount, rest)) => format!("{mount}/{rest}"),
        None => path.to_owned(),
    }
}

/// The vault and the secret's name of a Key Vault secret URI (`https://VAULT.vault.azure.net/secrets/NAME`).
fn azure_uri(group: &str) -> Result<(String, String), String> {
    let rest = group
        .trim_end_matches('/')
        .strip_prefix("https://")
        .ok_or("an Azure secret's group is its URI, https://VAULT.vault.azure.net/secrets/NAME")?;
    let (host, path) = rest
        .split_once('/')
        .ok_or("the URI names no secret: https://VAULT.vault.azure.net/secrets/NAME")?;
    let vault = host.split('.').next().unwrap_or_default();
    let name = path
        .strip_prefix("secrets/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .ok_or("the URI names no secret: https://VAULT.vault.azure.net/secrets/NAME")?;
    Ok((vault.to_owned(), name.to_owned()))
}

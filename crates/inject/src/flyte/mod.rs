//! Flyte's secret requests, read as Flyte's own webhook reads them, delivered where Flyte's injectors put them.
//!
//! flytepropeller marks a task Pod with the label `inject-flyte-secrets: "true"` and one annotation per
//! secret, `flyte.secrets/s<i>` (flyteplugins `utils/secrets/marshaler.go`): the `flyteidl.core.Secret`
//! message in protobuf text format ([`text`]), base32-encoded with flyteplugins' own alphabet
//! (`abcdefghijklmnopqrstuvwxyz123456`, no padding; `encoding/encoder.go`). Every annotation whose key starts
//! with `flyte.secrets/s` is a secret, as in Flyte's `UnmarshalStringMapToSecrets`.
//!
//! Delivery follows Flyte's injectors and flytekit's `SecretsManager` (docs/webhook.md, "Flyte does / Keyway
//! does"): files under `/etc/flyte/secrets` at the path flytekit computes, `_FSEC_` variables for `ENV_VAR`
//! secrets, `env_var` as Flyte's K8s injector sets it, and the `FLYTE_SECRETS_*` variables.

mod backend;
mod text;

pub use backend::FlyteBackend;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use keyway_core::{Instances, SecretRef};

use crate::Denial;

/// The label that marks a Pod for secret injection.
pub const LABEL: &str = "inject-flyte-secrets";
/// Prefix of the annotations holding the encoded secrets (`flyte.secrets/s0`, `flyte.secrets/s1`, ...).
pub const ANNOTATION_PREFIX: &str = "flyte.secrets/s";
/// flytekit's default `SECRETS_ENV_PREFIX`, and the one Flyte's injectors write.
pub const ENV_PREFIX: &str = "_FSEC_";
/// flytekit's task entrypoints: a container whose `args` start with one runs it from `PATH` (flytepropeller
/// sets `args`, not `command`), so its command is known and can be wrapped in `keyway exec`.
pub const ENTRYPOINTS: [&str; 3] = [
    "pyflyte-execute",
    "pyflyte-fast-execute",
    "pyflyte-map-execute",
];
/// Where Flyte's injectors put secret files (flytekit reads there once `FLYTE_SECRETS_DEFAULT_DIR` says so).
pub const DIR: &str = "/etc/flyte/secrets";

/// flyteplugins' `Base32Encoder`: RFC 4648's base32 with the alphabet `a-z1-6`, no padding. Go's decoder
/// skips `\r` and `\n` and does not check the unused bits of the last symbol; neither does this one.
static BASE32: LazyLock<data_encoding::Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz123456");
    spec.ignore.push_str("\r\n");
    spec.check_trailing_bits = false;
    // The specification is a constant that is known to be valid; the tests decode Flyte's own vectors with it.
    spec.encoding()
        .unwrap_or_else(|_| data_encoding::BASE32_NOPAD.clone())
});

/// `flyteidl.core.Secret.MountType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountType {
    /// Either: Flyte's file-based injectors (AWS, GCP, K8s) deliver a file, and so does Keyway.
    #[default]
    Any,
    /// An environment variable.
    EnvVar,
    /// A file.
    File,
}

/// One decoded `flyteidl.core.Secret`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlyteSecret {
    /// `group` (1).
    pub group: String,
    /// `group_version` (2).
    pub group_version: String,
    /// `key` (3).
    pub key: String,
    /// `mount_requirement` (4).
    pub mount: MountType,
    /// `env_var` (5): for an `ENV_VAR` secret a second variable holding the value, for a file the variable
    /// holding its path.
    pub env_var: String,
}

impl FlyteSecret {
    /// The file path relative to [`DIR`], as flytekit's `get_secrets_file` computes it: the non-empty parts of
    /// (group, group_version, key), lower-cased (flytekit's file prefix is empty, and Flyte sets it so).
    pub fn file(&self) -> String {
        self.parts()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The variables an `ENV_VAR` secret is delivered in: the name flytekit's `SecretsManager` looks up
    /// (`_FSEC_` and the upper-cased non-empty parts of group, group_version and key joined with `_`), the
    /// name Flyte's injectors write (`_FSEC_<GROUP>_<KEY>`, without the version; the same name when
    /// group_version is empty), and `env_var` when the task names one.
    pub fn env_names(&self) -> Vec<String> {
        let flytekit = format!(
            "{ENV_PREFIX}{}",
            self.parts()
                .map(str::to_uppercase)
                .collect::<Vec<_>>()
                .join("_")
        );
        let flyte = format!("{ENV_PREFIX}{}_{}", self.group, self.key).to_uppercase();
        let mut names = vec![flytekit, flyte];
        if !self.env_var.is_empty() {
            names.push(self.env_var.clone());
        }
        names.dedup();
        names
    }

    fn parts(&self) -> impl Iterator<Item = &str> {
        [&self.group, &self.group_version, &self.key]
            .into_iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
    }
}

/// Decodes one `flyte.secrets/s<i>` value into its `flyteidl.core.Secret`.
pub fn decode(annotation: &str, value: &str) -> Result<FlyteSecret, Denial> {
    let bytes = BASE32.decode(value.as_bytes()).map_err(|e| {
        Denial(format!(
            "annotation {annotation}: not Flyte's base32 ({e}); flytepropeller writes a-z and 1-6 without padding"
        ))
    })?;
    text::parse(&bytes).map_err(|e| Denial(format!("annotation {annotation}: {e}")))
}

/// What a Flyte Pod asks for, mapped to Keyway's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlyteAsk {
    /// Path under [`DIR`] to reference.
    pub files: BTreeMap<String, SecretRef>,
    /// Environment variable to reference, set by wrapping the task's command in `keyway exec`.
    pub env: BTreeMap<String, SecretRef>,
    /// Plain variables for every container: flytekit's `FLYTE_SECRETS_*` and each file secret's `env_var`,
    /// holding its path.
    pub vars: BTreeMap<String, String>,
}

/// Reads a Flyte Pod's annotations: `None` when no `flyte.secrets/s*` annotation is present (Flyte admits such
/// a Pod unchanged), a denial naming the annotation when one cannot be delivered.
pub fn read(
    annotations: &BTreeMap<String, String>,
    backend: &FlyteBackend,
    instances: &Instances,
    namespace: Option<&str>,
) -> Result<Option<FlyteAsk>, Denial> {
    let mut ask = FlyteAsk::default();
    let mut any = false;
    for (key, value) in annotations {
        if !key.starts_with(ANNOTATION_PREFIX) {
            continue;
        }
        any = true;
        let secret = decode(key, value)?;
        let denied = |e: String| Denial(format!("annotation {key}: {e}"));
        let reference = backend
            .reference(&secret, instances, namespace)
            .map_err(denied)?;
        if secret.mount == MountType::EnvVar {
            backend.env_allowed().map_err(denied)?;
            if let Some(name) = secret
                .env_names()
                .into_iter()
                .find(|n| n.contains(['=', '\0']))
            {
                return Err(denied(format!(
                    "the environment variable name `{}` holds `=` or NUL",
                    name.escape_default()
                )));
            }
            for name in secret.env_names() {
                ask.env.insert(name, reference.clone());
            }
            continue;
        }
        let files = backend.files(&secret);
        if let Some(file) = files.iter().find(|file| {
            file.split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        }) {
            return Err(denied(format!(
                "group, group_version and key must not make the path `{file}` escape the secrets directory"
            )));
        }
        if !secret.env_var.is_empty() {
            ask.vars
                .insert(secret.env_var.clone(), format!("{DIR}/{}", files[0]));
        }
        for file in files {
            ask.files.insert(file, reference.clone());
        }
    }
    if !any {
        return Ok(None);
    }
    for (name, value) in [
        ("FLYTE_SECRETS_DEFAULT_DIR", DIR),
        ("FLYTE_SECRETS_FILE_PREFIX", ""),
        ("FLYTE_SECRETS_ENV_PREFIX", ENV_PREFIX),
    ] {
        ask.vars.insert(name.to_owned(), value.to_owned());
    }
    Ok(Some(ask))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// flyteplugins `utils/secrets/marshaler_test.go`, verbatim: the annotation values flytepropeller writes
    /// for `Secret{Group: ";':/\\"}` and `Secret{Key: "my_key"}`.
    #[test]
    fn flytes_own_marshaler_vectors_decode_to_their_secrets() {
        let group_only = decode("flyte.secrets/s0", "m4zg54lqhiqceozhhixvyxbcbi").unwrap();
        assert_eq!(
            group_only,
            FlyteSecret {
                group: ";':/\\".into(),
                ..FlyteSecret::default()
            }
        );
        let key_only = decode("flyte.secrets/s0", "nnsxsoraejwxsx2lmv3secq").unwrap();
        assert_eq!(
            key_only,
            FlyteSecret {
                key: "my_key".into(),
                ..FlyteSecret::default()
            }
        );
        // The text under them, as golang/protobuf's MarshalTextString wrote it.
        assert_eq!(
            BASE32.decode(b"m4zg54lqhiqceozhhixvyxbcbi").unwrap(),
            b"group: \";':/\\\\\"\n"
        );
        assert_eq!(
            BASE32.decode(b"nnsxsoraejwxsx2lmv3secq").unwrap(),
            b"key: \"my_key\"\n"
        );
    }

    #[test]
    fn the_rfc_alphabet_is_not_flytes() {
        // Upper case and the digits 7 are outside flyteplugins' alphabet.
        let err = decode("flyte.secrets/s3", "M4ZG54LQ").unwrap_err();
        assert!(
            err.0.contains("flyte.secrets/s3: not Flyte's base32"),
            "{err}"
        );
    }

    fn secret(group: &str, version: &str, key: &str) -> FlyteSecret {
        FlyteSecret {
            group: group.into(),
            group_version: version.into(),
            key: key.into(),
            ..FlyteSecret::default()
        }
    }

    #[test]
    fn aws_secrets_are_the_arn_flyte_builds() {
        let aws = FlyteBackend::Aws {
            instance: "aws-sm".into(),
        };
        let arn = |group: &str, key: &str| {
            aws.reference(&secret(group, "", key), &Instances::default(), None)
                .unwrap()
                .to_string()
        };
        let want = "aws-sm://arn:aws:secretsmanager:us-east-2:123456789012:secret:ci/github?version-stage=AWSCURRENT";
        assert_eq!(
            arn(
                "arn:aws:secretsmanager:us-east-2:123456789012:secret",
                "ci/github"
            ),
            want
        );
        // Go's TrimRight/TrimLeft with the cutset ":" drop every colon at the join.
        assert_eq!(
            arn(
                "arn:aws:secretsmanager:us-east-2:123456789012:secret::",
                "::ci/github"
            ),
            want
        );
        assert!(
            aws.reference(
                &secret("arn:aws:secretsmanager:us-east-2:1:secret", "", ""),
                &Instances::default(),
                None
            )
            .unwrap_err()
            .contains("needs both group")
        );
    }

    #[test]
    fn gcp_groups_are_secrets_or_full_names_and_versions_default_to_latest() {
        let gcp = FlyteBackend::Gcp {
            instance: "gcp-sm".into(),
            project: "proj".into(),
        };
        let reference = |s: FlyteSecret| {
            gcp.reference(&s, &Instances::default(), None)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            reference(secret("DB-Password", "3", "")),
            "gcp-sm://proj/DB-Password?version=3"
        );
        assert_eq!(
            reference(secret("token", "", "")),
            "gcp-sm://proj/token?version=latest"
        );
        assert_eq!(
            reference(secret("projects/other/secrets/token", "2", "")),
            "gcp-sm://other/token?version=2"
        );
        assert_eq!(secret("DB-Password", "3", "").file(), "db-password/3");
    }

    #[test]
    fn env_var_secrets_carry_flytekits_name_flytes_name_and_env_var() {
        let mut s = secret("db", "v2", "pass-word");
        s.env_var = "DB_PASSWORD".into();
        // flytekit: f"{env_prefix}{'_'.join(k.upper() for k in (group, group_version, key) if k)}";
        // Flyte's injectors: strings.ToUpper(prefix + group + "_" + key).
        assert_eq!(
            s.env_names(),
            ["_FSEC_DB_V2_PASS-WORD", "_FSEC_DB_PASS-WORD", "DB_PASSWORD"]
        );
        assert_eq!(secret("db", "", "k").env_names(), ["_FSEC_DB_K"]);
    }

    #[test]
    fn a_labelled_pod_without_secret_annotations_asks_for_nothing() {
        let aws = FlyteBackend::Aws {
            instance: "aws-sm".into(),
        };
        let annotations = BTreeMap::from([("flyte.secrets/other".to_owned(), "x".to_owned())]);
        assert_eq!(
            read(&annotations, &aws, &Instances::default(), None),
            Ok(None)
        );
    }

    #[test]
    fn vault_groups_are_paths_with_or_without_kv2s_data_segment() {
        let vault = FlyteBackend::Vault {
            instance: "vault".into(),
        };
        let reference = |s: FlyteSecret| {
            vault
                .reference(&s, &Instances::default(), None)
                .map(|r| r.to_string())
        };
        assert_eq!(
            reference(secret("secret/data/ci/github", "kv2", "token")).unwrap(),
            "vault://secret/ci/github#token"
        );
        assert_eq!(
            reference(secret("secret/ci/github", "", "token")).unwrap(),
            "vault://secret/ci/github#token"
        );
        assert_eq!(
            reference(secret("kv/app", "kv1", "password")).unwrap(),
            "vault://kv/app#password"
        );
        assert!(
            reference(secret("database/creds/ro", "db", "username"))
                .unwrap_err()
                .contains("dynamic credentials")
        );
        // Vault Agent's file keeps the group and key as written; flytekit's path is lower-cased and versioned.
        assert_eq!(
            vault.files(&secret("secret/data/CI", "kv2", "Token")),
            ["secret/data/CI/Token", "secret/data/ci/kv2/token"]
        );
    }

    #[test]
    fn azure_groups_are_uris_and_files_are_the_name_and_version() {
        let azure = FlyteBackend::Azure {
            instance: "azure-kv".into(),
        };
        let uri = "https://My-Vault.vault.azure.net/secrets/DB-Password";
        let reference = |s: FlyteSecret| {
            azure
                .reference(&s, &Instances::default(), None)
                .map(|r| r.to_string())
        };
        assert_eq!(
            reference(secret(uri, "", "")).unwrap(),
            "azure-kv://my-vault/DB-Password"
        );
        let version = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            reference(secret(uri, version, "")).unwrap(),
            format!("azure-kv://my-vault/DB-Password?version={version}")
        );
        assert_eq!(
            azure.files(&secret(uri, version, "")),
            [format!("db-password/{version}")]
        );
        assert!(
            reference(secret("my-vault/x", "", ""))
                .unwrap_err()
                .contains("its URI")
        );
        assert!(azure.env_allowed().is_err());
    }

    #[test]
    fn kubernetes_groups_are_secrets_of_the_pods_namespace() {
        let k8s = FlyteBackend::K8s {
            instance: "k8s".into(),
        };
        let s = secret("GitHub-Creds", "", "Token");
        assert_eq!(
            k8s.reference(&s, &Instances::default(), Some("ml"))
                .unwrap_err(),
            "invalid secret reference `k8s://ml/GitHub-Creds#Token`: Secret name `GitHub-Creds` must consist of lower case alphanumeric characters, `-` or `.`, and must start and end with an alphanumeric character"
        );
        let s = secret("github-creds", "", "Token");
        assert_eq!(
            k8s.reference(&s, &Instances::default(), Some("ml"))
                .unwrap()
                .to_string(),
            "k8s://ml/github-creds#Token"
        );
        assert!(k8s.reference(&s, &Instances::default(), None).is_err());
        assert_eq!(k8s.files(&s), ["github-creds/token"]);
    }
}

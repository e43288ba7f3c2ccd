//! `type = "vault"` in `keyway.toml`: the server, namespace, CA and how to authenticate.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{SERVICE_ACCOUNT_TOKEN, VaultAuth, VaultSettings};

/// `type = "vault"` in `keyway.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Server address (`VAULT_ADDR` otherwise).
    pub address: Option<String>,
    /// Namespace (`VAULT_NAMESPACE` otherwise).
    pub namespace: Option<String>,
    /// PEM bundle of CAs to trust (`VAULT_CACERT` otherwise).
    pub ca_file: Option<PathBuf>,
    /// `1` or `2`: every mount's KV version, which skips asking the server (the mount is the first segment).
    pub kv_version: Option<u8>,
    /// How to authenticate (default: a token from `VAULT_TOKEN` or `~/.vault-token`).
    #[serde(default)]
    pub auth: AuthConfig,
}

/// `[providers.NAME.auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// `method = "token"`: `VAULT_TOKEN`, else `token_file` (default `~/.vault-token`), re-read when it changes.
    Token {
        /// The token file; when set, `VAULT_TOKEN` is not read.
        token_file: Option<PathBuf>,
    },
    /// `method = "approle"`.
    Approle {
        /// Auth mount (default `approle`).
        mount: Option<String>,
        /// The role id.
        role_id: String,
        /// File holding the secret id, read at each login.
        secret_id_file: PathBuf,
    },
    /// `method = "jwt"` (also for OIDC-issued JWTs).
    Jwt {
        /// Auth mount (default `jwt`).
        mount: Option<String>,
        /// The role.
        role: String,
        /// File holding the JWT, read at each login.
        jwt_file: PathBuf,
    },
    /// `method = "kubernetes"`.
    Kubernetes {
        /// Auth mount (default `kubernetes`).
        mount: Option<String>,
        /// The role.
        role: String,
        /// The service-account token file (default the Pod's own).
        jwt_file: Option<PathBuf>,
    },
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig::Token { token_file: None }
    }
}

impl VaultConfig {
    /// The provider's settings.
    pub fn settings(&self, timeout: Duration) -> VaultSettings {
        let auth = match &self.auth {
            AuthConfig::Token { token_file } => VaultAuth::Token {
                file: token_file.clone(),
            },
            AuthConfig::Approle {
                mount,
                role_id,
                secret_id_file,
            } => VaultAuth::AppRole {
                mount: mount.clone().unwrap_or_else(|| "approle".to_owned()),
                role_id: role_id.clone(),
                secret_id_file: secret_id_file.clone(),
            },
            AuthConfig::Jwt {
                mount,
                role,
                jwt_file,
            } => VaultAuth::Jwt {
                mount: mount.clone().unwrap_or_else(|| "jwt".to_owned()),
                role: role.clone(),
                jwt_file: jwt_file.clone(),
            },
            AuthConfig::Kubernetes {
                mount,
                role,
                jwt_file,
            } => VaultAuth::Kubernetes {
                mount: mount.clone().unwrap_or_else(|| "kubernetes".to_owned()),
                role: role.clone(),
                jwt_file: jwt_file
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_TOKEN)),
            },
        };
        VaultSettings {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            ca_file: self.ca_file.clone(),
            kv_version: self.kv_version,
            auth,
            timeout,
        }
    }

    /// The files the table names, for anchoring relative paths to the config file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths: Vec<&mut PathBuf> = self.ca_file.iter_mut().collect();
        match &mut self.auth {
            AuthConfig::Token { token_file } => paths.extend(token_file.iter_mut()),
            AuthConfig::Approle { secret_id_file, .. } => paths.push(secret_id_file),
            AuthConfig::Jwt { jwt_file, .. } => paths.push(jwt_file),
            AuthConfig::Kubernetes { jwt_file, .. } => paths.extend(jwt_file.iter_mut()),
        }
        paths
    }

    /// What serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(version) = self.kv_version.filter(|v| !matches!(v, 1 | 2)) {
            return Err(format!(
                "kv_version = {version}: write 1 or 2, or leave it out to ask the server"
            ));
        }
        if let Some(address) = &self.address
            && !(address.starts_with("http://") || address.starts_with("https://"))
        {
            return Err(format!(
                "address = \"{address}\" is not an http:// or https:// URL"
            ));
        }
        Ok(())
    }
}

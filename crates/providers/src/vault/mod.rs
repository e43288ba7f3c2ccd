//! HashiCorp Vault and OpenBao (Vault's API-compatible fork): the KV secrets engine, v1 and v2, over Vault's
//! HTTP API.
//!
//! A small client of our own on `reqwest` (already in the tree, rustls): `vaultrs` drops KV v2's metadata and
//! the body of a deleted version's 404 (which is how a deleted version is told from a missing one), logs every
//! routine 404 at error level, and reads `VAULT_*` variables by itself. Where a path's mount is and which KV
//! version it runs is asked of the server (`sys/internal/ui/mounts/PATH`), as the `vault` CLI does; the token's
//! lifecycle is [`session`].

mod session;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
    Upstream,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

pub use session::{SERVICE_ACCOUNT_TOKEN, VaultAuth};
use session::{Sessions, first_error};

/// The address the `vault` CLI uses when `VAULT_ADDR` is unset.
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// How many names a listing returns at most: a KV tree is walked folder by folder, one request each.
const MAX_LISTED: usize = 10_000;

/// Settings of one Vault instance.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `https://vault.example.com:8200` (`VAULT_ADDR` or `BAO_ADDR` when `None`, else [`DEFAULT_ADDRESS`]).
    pub address: Option<String>,
    /// Vault Enterprise / OpenBao namespace (`VAULT_NAMESPACE` when `None`).
    pub namespace: Option<String>,
    /// A PEM bundle of the CAs to trust besides the system's (`VAULT_CACERT` when `None`).
    pub ca_file: Option<PathBuf>,
    /// The KV version of every mount, which skips asking the server; the mount is then a path's first segment.
    pub kv_version: Option<u8>,
    /// How the instance authenticates.
    pub auth: VaultAuth,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Where requests go: the address, namespace and HTTP client.
#[derive(Debug)]
pub(crate) struct Endpoint {
    address: String,
    namespace: Option<String>,
    http: reqwest::Client,
}

impl Endpoint {
    fn new(settings: &VaultSettings) -> Result<Endpoint, ProviderError> {
        let env = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.is_empty())
        };
        let address = settings
            .address
            .clone()
            .or_else(|| env(["VAULT_ADDR", "BAO_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let namespace = settings
            .namespace
            .clone()
            .or_else(|| env(["VAULT_NAMESPACE", "BAO_NAMESPACE"]));
        let mut builder = reqwest::Client::builder().timeout(settings.timeout);
        let ca_file = settings
            .ca_file
            .clone()
            .or_else(|| env(["VAULT_CACERT", "BAO_CACERT"]).map(PathBuf::from));
        if let Some(ca_file) = ca_file {
            let misconfigured = |why: String| {
                ProviderError::new(
                    ErrorKind::Misconfigured,
                    format!("the Vault CA bundle {}: {why}", ca_file.display()),
                )
            };
            let pem = std::fs::read(&ca_file).map_err(|e| misconfigured(e.to_string()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| misconfigured("not a PEM bundle of certificates".into()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| {
            ProviderError::new(
                ErrorKind::Misconfigured,
                format!("cannot build the Vault client: {e}"),
            )
        })?;
        Ok(Endpoint {
            address,
            namespace,
            http,
        })
    }

    /// A request to `/v1/{path}`, with the token and namespace headers.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}/v1/{path}", self.address));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        request
    }

    /// A request that never reached an answer.
    fn transport(&self, e: &reqwest::Error, path: &str) -> ProviderError {
        let (upstream, what) = if e.is_timeout() {
            (Upstream::ReadTimeout, "timed out")
        } else if e.is_connect() {
            (Upstream::Unreachable, "cannot connect")
        } else {
            (Upstream::BadResponse, "failed")
        };
        ProviderError::new(
            ErrorKind::Unavailable,
            format!(
                "Vault at {} {what} ({path}); check the address (VAULT_ADDR or `address`) and that the server is up",
                self.address
            ),
        )
        .with_upstream(Some(upstream))
    }
}

/// A KV mount: its path (with the trailing `/`) and whether it runs KV v2.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    path: String,
    v2: bool,
}

/// The Vault provider. The HTTP client is built, and the token got, on first use.
#[derive(Debug)]
pub struct VaultProvider {
    settings: VaultSettings,
    endpoint: tokio::sync::OnceCell<Endpoint>,
    sessions: Sessions,
    /// The mounts found so far.
    mounts: Mutex<Vec<Mount>>,
}

impl VaultProvider {
    /// A provider for these settings; nothing is contacted yet.
    pub fn new(settings: VaultSettings) -> VaultProvider {
        VaultProvider {
            sessions: Sessions::new(settings.auth.clone()),
            settings,
            endpoint: tokio::sync::OnceCell::new(),
            mounts: Mutex::new(Vec::new()),
        }
    }

    async fn endpoint(&self) -> Result<&Endpoint, ProviderError> {
        self.endpoint
            .get_or_try_init(|| async { Endpoint::new(&self.settings) })
            .await
    }

    /// One authenticated request; a token Vault calls invalid is replaced once (a login method logs in again).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(reqwest::StatusCode, Zeroizing<String>), ProviderError> {
        let endpoint = self.endpoint().await?;
        for attempt in 0..2 {
            let token = self.sessions.token(endpoint).await?;
            let response = endpoint
                .request(method.clone(), path, Some(&token))
                .send()
                .await
                .map_err(|e| endpoint.transport(&e, path))?;
            let status = response.status();
            let body = Zeroizing::new(
                response
                    .text()
                    .await
                    .map_err(|e| endpoint.transport(&e, path))?,
            );
            let invalid_token =
                status == reqwest::StatusCode::FORBIDDEN && body.contains("invalid token");
            if invalid_token && attempt == 0 && self.sessions.logs_in() {
                self.sessions.invalidate().await;
                continue;
            }
            if invalid_token {
                self.sessions.invalidate().await;
            }
            return Ok((status, body));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The mount `path` is in: known, configured, or asked of the server.
    async fn mount(&self, path: &str) -> Result<Mount, ProviderError> {
        let known = self
            .mounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|m| path.starts_with(&m.path))
            .max_by_key(|m| m.path.len())
            .cloned();
        if let Some(mount) = known {
            return Ok(mount);
        }
        let mount = match self.settings.kv_version {
            Some(version) => Mount {
                path: first_segment(path),
                v2: version == 2,
            },
            None => self.ask_mount(path).await?,
        };
        let mut mounts = self
            .mounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !mounts.contains(&mount) && mounts.len() < 256 {
            mounts.push(mount.clone());
        }
        Ok(mount)
    }

    /// Asks the server which mount `path` is in, and its KV version (`sys/internal/ui/mounts/PATH`).
    async fn ask_mount(&self, path: &str) -> Result<Mount, ProviderError> {
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("sys/internal/ui/mounts/{path}"),
            )
            .await?;
        Ok(match status.as_u16() {
            200 => {
                #[derive(Deserialize)]
                struct Answer {
                    data: MountData,
                }
                #[derive(Deserialize)]
                struct MountData {
                    path: String,
                    #[serde(default, rename = "type")]
                    kind: String,
                    options: Option<MountOptions>,
                }
                #[derive(Deserialize)]
                struct MountOptions {
                    version: Option<String>,
                }
                let answer: Answer = serde_json::from_str(&body)
                    .map_err(|_| bad_answer("sys/internal/ui/mounts"))?;
                let found = answer.data.path;
                // Under a namespace the server may name the mount with the namespace in front.
                let found = match self.endpoint().await?.namespace.as_deref() {
                    Some(ns) => found
                        .strip_prefix(&format!("{}/", ns.trim_matches('/')))
                        .map_or(found.clone(), str::to_owned),
                    None => found,
                };
                if answer.data.kind != "kv" {
                    return Err(ProviderError::new(
                        ErrorKind::Invalid,
                        format!(
                            "vault://{path} is in the {} engine mounted at {found}, not a KV engine; Keyway reads KV v1 and v2",
                            answer.data.kind
                        ),
                    ));
                }
                Mount {
                    path: if path.starts_with(&found) {
                        found
                    } else {
                        first_segment(path)
                    },
                    v2: answer.data.options.and_then(|o| o.version).as_deref() == Some("2"),
                }
            }
            // A Vault older than the preflight endpoint: the CLI assumes v1 there too.
            404 => Mount {
                path: first_segment(path),
                v2: false,
            },
            403 => {
                return Err(ProviderError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "Vault says no mount holds {path} that the token may use ({}); check the path, or give the token's policy a capability on it",
                        first_error(&body)
                    ),
                )
                .with_upstream(Some(Upstream::Code("403".into()))));
            }
            _ => {
                return Err(vault_error(
                    status,
                    &body,
                    &format!("finding the mount of {path}"),
                ));
            }
        })
    }

    /// Every name under `folder` (relative to the mount, ending in `/` or empty), walked depth first.
    async fn walk(
        &self,
        mount: &Mount,
        folder: &str,
        names: &mut Vec<String>,
    ) -> Result<(), ProviderError> {
        let mut folders = vec![folder.to_owned()];
        while let Some(folder) = folders.pop() {
            let path = if mount.v2 {
                format!("{}metadata/{folder}", mount.path)
            } else {
                format!("{}{folder}", mount.path)
            };
            let (status, body) = self.send(list_method(), &path).await?;
            match status.as_u16() {
                200 => {}
                404 => continue,
                403 => {
                    return Err(denied(&format!("list {path}"), &path, "list", &body));
                }
                _ => return Err(vault_error(status, &body, &format!("listing {path}"))),
            }
            let listing: Listing = serde_json::from_str(&body).map_err(|_| bad_answer(&path))?;
            for key in listing.data.keys {
                if key.ends_with('/') {
                    folders.push(format!("{folder}{key}"));
                } else if names.len() < MAX_LISTED {
                    names.push(format!("{}{folder}{key}", mount.path));
                }
            }
        }
        Ok(())
    }
}

fn list_method() -> reqwest::Method {
    reqwest::Method::from_bytes(b"LIST").unwrap_or(reqwest::Method::GET)
}

/// A LIST answer.
#[derive(Deserialize)]
struct Listing {
    data: Keys,
}

#[derive(Deserialize)]
struct Keys {
    #[serde(default)]
    keys: Vec<String>,
}

/// `sys/internal/ui/mounts`: the mounts the token can see.
#[derive(Deserialize)]
struct MountsAnswer {
    data: Mounts,
}
#[derive(Deserialize)]
struct Mounts {
    #[serde(default)]
    secret: std::collections::BTreeMap<String, MountInfo>,
}
#[derive(Deserialize)]
struct MountInfo {
    #[serde(default, rename = "type")]
    kind: String,
    options: Option<std::collections::BTreeMap<String, String>>,
}

/// A path's first segment with its `/`: the mount when the server is not asked.
fn first_segment(path: &str) -> String {
    format!("{}/", path.split('/').next().unwrap_or_default())
}

/// KV v2's read answer: the data and its version's metadata (also in a deleted version's 404).
#[derive(Deserialize)]
struct V2<'a> {
    #[serde(borrow)]
    data: Option<V2Data<'a>>,
}

#[derive(Deserialize)]
struct V2Data<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    metadata: Option<V2Metadata>,
}

#[derive(Deserialize)]
struct V2Metadata {
    #[serde(default)]
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
    #[serde(default)]
    version: u64,
}

/// KV v1's read answer.
#[derive(Deserialize)]
struct V1<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[async_trait]
impl Provider for VaultProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Vault { path, version } = target else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not a Vault reference",
            ));
        };
        let mount = self.mount(path).await?;
        let rest = &path[mount.path.len().min(path.len())..];
        let api_path = match (mount.v2, version) {
            (true, Some(version)) => format!("{}data/{rest}?version={version}", mount.path),
            (true, None) => format!("{}data/{rest}", mount.path),
            (false, Some(_)) => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    format!(
                        "{} is KV v1, which keeps no versions; drop `?version=`",
                        mount.path
                    ),
                ));
            }
            (false, None) => format!("{}{rest}", mount.path),
        };
        let shown = match version {
            Some(version) => format!("vault://{path} (version {version})"),
            None => format!("vault://{path}"),
        };
        let (status, body) = self.send(reqwest::Method::GET, &api_path).await?;
        let bare = api_path.split('?').next().unwrap_or_default();
        match status.as_u16() {
            200 => {}
            404 => return Err(not_found(&shown, mount.v2, &body)),
            403 => return Err(denied(&shown, bare, "read", &body)),
            _ => return Err(vault_error(status, &body, &format!("reading {shown}"))),
        }
        let (data, metadata) = if mount.v2 {
            let answer: V2<'_> = serde_json::from_str(&body).map_err(|_| bad_answer(bare))?;
            let data = answer.data.ok_or_else(|| bad_answer(bare))?;
            (data.data, data.metadata)
        } else {
            let answer: V1<'_> = serde_json::from_str(&body).map_err(|_| bad_answer(bare))?;
            (answer.data, None)
        };
        let data = data.ok_or_else(|| bad_answer(bare))?;
        let metadata = metadata.unwrap_or(V2Metadata {
            created_time: String::new(),
            deletion_time: String::new(),
            destroyed: false,
            version: 0,
        });
        Ok(Secret {
            value: SecretValue::new(data.get().as_bytes().to_vec()),
            encoding: Encoding::Text,
            meta: SecretMeta {
                name: path.clone(),
                // KV v1 keeps no versions.
                version_id: if metadata.version == 0 {
                    String::new()
                } else {
                    metadata.version.to_string()
                },
                stages: Vec::new(),
                created: humantime::parse_rfc3339_weak(&metadata.created_time).ok(),
                attributes: std::collections::BTreeMap::new(),
            },
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let prefix = match filter {
            None => None,
            Some(ListFilter::Prefix(prefix)) => Some(prefix.trim_start_matches('/')),
            Some(other) => return Err(other.not_for(BackendKind::Vault)),
        };
        let mut names = Vec::new();
        match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => {
                let mount = self.mount(prefix).await?;
                let inside = &prefix[mount.path.len().min(prefix.len())..];
                let folder = inside.rfind('/').map_or("", |at| &inside[..=at]);
                self.walk(&mount, folder, &mut names).await?;
                names.retain(|name| name.starts_with(prefix));
            }
            None => {
                for mount in self.kv_mounts().await? {
                    self.walk(&mount, "", &mut names).await?;
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

impl VaultProvider {
    /// The KV mounts the token can see (`sys/internal/ui/mounts`).
    async fn kv_mounts(&self) -> Result<Vec<Mount>, ProviderError> {
        let (status, body) = self
            .send(reqwest::Method::GET, "sys/internal/ui/mounts")
            .await?;
        if !status.is_success() {
            return Err(vault_error(status, &body, "listing the mounts"));
        }
        let answer: MountsAnswer =
            serde_json::from_str(&body).map_err(|_| bad_answer("sys/internal/ui/mounts"))?;
        Ok(answer
            .data
            .secret
            .into_iter()
            .filter(|(_, info)| info.kind == "kv")
            .map(|(path, info)| Mount {
                path,
                v2: info
                    .options
                    .and_then(|o| o.get("version").cloned())
                    .as_deref()
                    == Some("2"),
            })
            .collect())
    }
}

/// A 404: no such secret or version, or (KV v2) a version that was deleted or destroyed.
fn not_found(shown: &str, v2: bool, body: &str) -> ProviderError {
    let metadata = if v2 {
        serde_json::from_str::<V2<'_>>(body)
            .ok()
            .and_then(|answer| answer.data)
            .and_then(|data| data.metadata)
    } else {
        None
    };
    let message = match metadata {
        Some(m) if m.destroyed => format!(
            "{shown}: version {} was destroyed; read another version (`?version=N`) or write a new one",
            m.version
        ),
        Some(m) if !m.deletion_time.is_empty() => format!(
            "{shown}: version {} was deleted at {}; undelete it (`vault kv undelete -versions={} ...`) or read another version",
            m.version, m.deletion_time, m.version
        ),
        _ => {
            format!("{shown} does not exist; check the path (`vault kv list` shows what is there)")
        }
    };
    ProviderError::new(ErrorKind::NotFound, message)
        .with_upstream(Some(Upstream::Code("404".into())))
}

/// A 403 on `api_path`: which capability the token's policies lack.
fn denied(shown: &str, api_path: &str, capability: &str, body: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::PermissionDenied,
        format!(
            "Vault denied {shown} ({}): the token's policies need `{capability}` on `{api_path}`",
            first_error(body)
        ),
    )
    .with_upstream(Some(Upstream::Code("403".into())))
}

/// Any other error answer, classified by status.
pub(crate) fn vault_error(status: reqwest::StatusCode, body: &str, doing: &str) -> ProviderError {
    let said = first_error(body);
    let (kind, advice) = match status.as_u16() {
        400 => (ErrorKind::Invalid, "the request was refused as invalid"),
        401 | 403 => (ErrorKind::PermissionDenied, "the token may not do this"),
        404 => (ErrorKind::NotFound, "not found"),
        412 | 429 => (ErrorKind::Throttled, "rate limited; retried later"),
        503 => (
            ErrorKind::Unavailable,
            "Vault is sealed or in standby; retried later",
        ),
        _ => (ErrorKind::Unavailable, "Vault failed; retried later"),
    };
    ProviderError::new(
        kind,
        format!(
            "Vault answered {} while {doing}: {}",
            status.as_u16(),
            if said.is_empty() {
                advice.to_owned()
            } else {
                format!("{said} ({advice})")
            }
        ),
    )
    .with_upstream(Some(Upstream::Code(status.as_u16().to_string())))
}

fn bad_answer(path: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Unavailable,
        format!("Vault's answer to {path} is not what Vault sends; check the instance's address"),
    )
    .with_upstream(Some(Upstream::BadResponse))
}

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

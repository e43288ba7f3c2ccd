//! HashiCorp Vault and OpenBao (Vault's API-compatible fork): the KV secrets engine, v1 and v2, over Vault's
//! HTTP API.
//!
//! A small client of our own on `reqwest` (already in the tree, rustls): `vaultrs` drops KV v2's metadata and
//! the body of a deleted version's 404 (which is how a deleted version is told from a missing one), logs every
//! routine 404 at error level, and reads `VAULT_*` variables by itself. Where a path's mount is and which KV
//! version it runs is asked of the server (`sys/internal/ui/mounts/PATH`), as the `vault` CLI does; the token's
//! lifecycle is [`session`].

mod config;
mod list;
mod session;

pub use config::{AuthConfig, VaultConfig};

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
        crate::tls::install();
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

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        self.names(filter).await
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
            }
            .into(),
        })
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

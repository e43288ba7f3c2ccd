//! Kubernetes Secrets through the API server, with `kube`'s client: in a Pod its service account (the token
//! re-read as it rotates, the cluster's CA), elsewhere the kubeconfig's current context.
//!
//! The request goes out through `kube`'s client (authentication, TLS, token refresh), but the body is read by
//! Keyway into a zeroizing buffer: `kube`'s typed API would hold the decoded values in plain `Vec<u8>`s and log
//! a body it cannot parse. A Secret's `data` is kept as the API writes it (base64 per key), an
//! [`Encoding::Entries`] value: a reference names the key it wants (`k8s://NS/NAME#KEY`), and every key of
//! one Secret is one fetch.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt as _;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
    Upstream,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

/// Settings of one Kubernetes instance.
#[derive(Debug, Clone, Default)]
pub struct K8sSettings {
    /// The namespace of references that name none (the Pod's own in a cluster, else the context's).
    pub namespace: Option<String>,
    /// The kubeconfig context to use outside a cluster (the current one otherwise).
    pub context: Option<String>,
    /// The API server's URL, which skips discovery (with `token_file` and `ca_file`).
    pub api_server: Option<String>,
    /// A bearer token file for `api_server`, re-read as it changes.
    pub token_file: Option<PathBuf>,
    /// A PEM CA bundle for `api_server`.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// `type = "k8s"` in `keyway.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// Namespace of references that name none.
    pub namespace: Option<String>,
    /// kubeconfig context.
    pub context: Option<String>,
    /// API server URL (skips in-cluster and kubeconfig discovery).
    pub api_server: Option<String>,
    /// Bearer token file for `api_server`.
    pub token_file: Option<PathBuf>,
    /// CA bundle for `api_server`.
    pub ca_file: Option<PathBuf>,
}

impl K8sConfig {
    /// The provider's settings.
    pub fn settings(&self, timeout: Duration) -> K8sSettings {
        K8sSettings {
            namespace: self.namespace.clone(),
            context: self.context.clone(),
            api_server: self.api_server.clone(),
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            timeout,
        }
    }

    /// The files the table names.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.token_file
            .iter_mut()
            .chain(self.ca_file.iter_mut())
            .collect()
    }

    /// What serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(namespace) = &self.namespace {
            keyway_core::selector::dns1123_label(namespace)
                .map_err(|why| format!("namespace = \"{namespace}\" {why}"))?;
        }
        if self.api_server.is_none() && (self.token_file.is_some() || self.ca_file.is_some()) {
            return Err("token_file and ca_file go with api_server; without it the in-cluster or kubeconfig settings apply".into());
        }
        Ok(())
    }
}

/// The Kubernetes Secrets provider. The client is built on first use.
pub struct K8sProvider {
    settings: K8sSettings,
    client: OnceCell<kube_client::Client>,
}

impl std::fmt::Debug for K8sProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A Secret as the API answers: `data` kept as written.
#[derive(Deserialize)]
struct SecretJson<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    creation_timestamp: String,
}

/// A SecretList, names only.
#[derive(Deserialize)]
struct SecretList {
    #[serde(default)]
    items: Vec<Named>,
    #[serde(default)]
    metadata: ListMetadata,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct ListMetadata {
    #[serde(rename = "continue")]
    next: Option<String>,
}

/// A `Status` error answer.
#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
}

impl K8sProvider {
    /// A provider with these settings; nothing is contacted yet.
    pub fn new(settings: K8sSettings) -> K8sProvider {
        crate::tls::install();
        K8sProvider {
            settings,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&kube_client::Client, ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let config = self.config().await?;
                kube_client::Client::try_from(config).map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Misconfigured,
                        format!("cannot build the Kubernetes client: {e}"),
                    )
                })
            })
            .await
    }

    /// The client's configuration: the configured API server, else in-cluster, else the kubeconfig.
    async fn config(&self) -> Result<kube_client::Config, ProviderError> {
        let s = &self.settings;
        let misconfigured = |what: String| ProviderError::new(ErrorKind::Misconfigured, what);
        let mut config = if let Some(url) = &s.api_server {
            let uri = url
                .parse()
                .map_err(|_| misconfigured(format!("api_server = \"{url}\" is not a URL")))?;
            let mut config = kube_client::Config::new(uri);
            config.auth_info.token_file = s.token_file.as_ref().map(|f| f.display().to_string());
            if let Some(ca_file) = &s.ca_file {
                let pem = std::fs::read(ca_file).map_err(|e| {
                    misconfigured(format!("cannot read ca_file {}: {e}", ca_file.display()))
                })?;
                config.root_cert = Some(pem_certificates(&pem));
            }
            config
        } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            kube_client::Config::incluster().map_err(|e| {
                misconfigured(format!(
                    "cannot read the Pod's service account for the Kubernetes API: {e}"
                ))
            })?
        } else {
            let options = kube_client::config::KubeConfigOptions {
                context: s.context.clone(),
                ..kube_client::config::KubeConfigOptions::default()
            };
            kube_client::Config::from_kubeconfig(&options).await.map_err(|e| {
                ProviderError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "no Kubernetes credentials: not in a Pod and no usable kubeconfig ({e}); set KUBECONFIG or `api_server` in the provider's table"
                    ),
                )
                .with_upstream(Some(Upstream::NoCredentials))
            })?
        };
        if let Some(namespace) = &s.namespace {
            namespace.clone_into(&mut config.default_namespace);
        }
        config.connect_timeout = Some(Duration::from_secs(3));
        config.read_timeout = Some(s.timeout);
        config.write_timeout = Some(s.timeout);
        config.reset_reader_on_write = true;
        // Keyway's rate limit and stale-if-error handle throttling and outages, not retries in the call.
        config.default_retry = false;
        Ok(config)
    }

    /// One GET; the status and the body, in a zeroizing buffer.
    async fn get(&self, path: &str) -> Result<(u16, Zeroizing<Vec<u8>>), ProviderError> {
        let client = self.client().await?;
        let request = http::Request::get(path)
            .header("Accept", "application/json")
            .body(kube_client::client::Body::from(Vec::new()))
            .map_err(|e| {
                ProviderError::new(ErrorKind::Invalid, format!("bad request path {path}: {e}"))
            })?;
        let response = client.send(request).await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(&e))?
            .to_bytes();
        Ok((status, Zeroizing::new(body.to_vec())))
    }

    fn namespace<'a>(&'a self, client: &'a kube_client::Client, given: Option<&'a str>) -> &'a str {
        given
            .or(self.settings.namespace.as_deref())
            .unwrap_or_else(|| client.default_namespace())
    }
}

/// PEM text to the DER certificates kube's `root_cert` takes.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .collect()
}

fn transport(e: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::new(
        ErrorKind::Unavailable,
        format!(
            "cannot reach the Kubernetes API server ({e}); check the cluster's address and network"
        ),
    )
    .with_upstream(Some(Upstream::Unreachable))
}

/// An error answer: kind by status, the API server's own message (which names the RBAC rule that is missing).
fn api_error(status: u16, body: &[u8], doing: &str, fix: &str) -> ProviderError {
    let said: Status = serde_json::from_slice(body).unwrap_or_default();
    let message = if said.message.is_empty() {
        format!("the API server answered {status}")
    } else {
        said.message
    };
    let (kind, advice) = match status {
        404 => (ErrorKind::NotFound, "check the namespace and name"),
        401 => (
            ErrorKind::PermissionDenied,
            "the credentials were refused; refresh them",
        ),
        403 => (ErrorKind::PermissionDenied, fix),
        429 => (ErrorKind::Throttled, "retried later"),
        400 | 422 => (ErrorKind::Invalid, "the request was refused"),
        _ => (ErrorKind::Unavailable, "retried later"),
    };
    let code = if said.reason.is_empty() {
        status.to_string()
    } else {
        said.reason
    };
    ProviderError::new(kind, format!("{doing}: {message}; {advice}"))
        .with_upstream(Some(Upstream::Code(code)))
}

#[async_trait]
impl Provider for K8sProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::K8s
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::K8s { namespace, name } = target else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not a Kubernetes reference",
            ));
        };
        let client = self.client().await?;
        let namespace = self.namespace(client, namespace.as_deref()).to_owned();
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        let (status, body) = self.get(&path).await?;
        if status != 200 {
            return Err(api_error(
                status,
                &body,
                &format!("reading Secret {namespace}/{name}"),
                &format!(
                    "grant the identity `get` on `secrets` in namespace {namespace} (a Role with resourceNames: [{name}] and a RoleBinding)"
                ),
            ));
        }
        let secret: SecretJson<'_> = serde_json::from_slice(&body).map_err(|_| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!("the API server's answer for Secret {namespace}/{name} is not a Secret; check api_server"),
            )
            .with_upstream(Some(Upstream::BadResponse))
        })?;
        let data = secret.data.map_or("{}", RawValue::get);
        Ok(Secret {
            value: SecretValue::new(data.as_bytes().to_vec()),
            encoding: Encoding::Entries,
            meta: SecretMeta {
                name: format!("{namespace}/{}", secret.metadata.name),
                version_id: secret.metadata.resource_version,
                stages: Vec::new(),
                created: humantime::parse_rfc3339_weak(&secret.metadata.creation_timestamp).ok(),
                attributes: std::collections::BTreeMap::new(),
            }
            .into(),
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let prefix = match filter {
            None => "",
            Some(ListFilter::Prefix(prefix)) => prefix.as_str(),
            Some(other) => return Err(other.not_for(BackendKind::K8s)),
        };
        let client = self.client().await?;
        // `NS/prefix` lists that namespace; a bare prefix, the instance's.
        let (namespace, name_prefix, qualified) = match prefix.split_once('/') {
            Some((namespace, rest)) => (namespace.to_owned(), rest, true),
            None => (self.namespace(client, None).to_owned(), prefix, false),
        };
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/namespaces/{namespace}/secrets?limit=500");
            if let Some(token) = &next {
                path.push_str("&continue=");
                path.extend(form_urlencoded::byte_serialize(token.as_bytes()));
            }
            let (status, body) = self.get(&path).await?;
            if status != 200 {
                return Err(api_error(
                    status,
                    &body,
                    &format!("listing Secrets in {namespace}"),
                    &format!("grant the identity `list` on `secrets` in namespace {namespace}"),
                ));
            }
            let list: SecretList = serde_json::from_slice(&body).map_err(|_| {
                ProviderError::new(
                    ErrorKind::Unavailable,
                    "the API server's answer is not a SecretList",
                )
                .with_upstream(Some(Upstream::BadResponse))
            })?;
            names.extend(
                list.items
                    .into_iter()
                    .map(|item| item.metadata.name)
                    .filter(|name| name.starts_with(name_prefix))
                    .map(|name| {
                        if qualified {
                            format!("{namespace}/{name}")
                        } else {
                            name
                        }
                    }),
            );
            match list.metadata.next.filter(|t| !t.is_empty()) {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        names.sort();
        Ok(names)
    }
}

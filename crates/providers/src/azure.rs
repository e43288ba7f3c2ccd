//! Azure Key Vault through Microsoft's crates (`azure_security_keyvault_secrets`, `azure_identity`): workload
//! identity on AKS (the federated token a Pod's service account gets), managed identity on VMs, the Azure CLI's
//! login on a workstation, or a bearer token from a file. One client per vault, each built on first use.
//!
//! The SDK's own retries are off: Keyway's rate limit and stale-if-error handle throttling and outages. Its HTTP
//! client is Keyway's (`reqwest`, rustls), for the instance's timeout and CA bundle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt as _;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
    Upstream,
};
use serde::Deserialize;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

/// The public cloud's vault host suffix.
pub const DEFAULT_DNS_SUFFIX: &str = "vault.azure.net";

/// How many vaults' clients an instance keeps (references choose vaults; past this, a client serves its one
/// request and is not kept).
const MAX_CLIENTS: usize = 64;

/// How an instance gets its Entra ID token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredentials {
    /// Workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set (AKS), else managed identity when the
    /// App Service or VM identity endpoint is (`IDENTITY_ENDPOINT`, or on a VM), else the Azure CLI's login.
    #[default]
    Auto,
    /// AKS workload identity (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// A VM's or App Service's managed identity (`client_id` for a user-assigned one).
    ManagedIdentity,
    /// `az account get-access-token`.
    AzureCli,
    /// A bearer token read from `token_file` for each request (emulators, tokens another agent refreshes).
    TokenFile,
}

/// `type = "azure"` in `keyway.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Vault of listings that name none (`keyway list azure-kv`).
    pub vault: Option<String>,
    /// Host suffix of vaults (`vault.azure.net`; `vault.azure.cn`, `vault.usgovcloudapi.net` in other clouds).
    pub dns_suffix: Option<String>,
    /// Every vault at this URL instead (`https://127.0.0.1:8443` for an emulator, one vault per URL).
    pub endpoint: Option<String>,
    /// How to authenticate.
    #[serde(default)]
    pub credentials: AzureCredentials,
    /// A user-assigned identity's client id (managed identity), or the app's (workload identity).
    pub client_id: Option<String>,
    /// The tenant (workload identity; `AZURE_TENANT_ID` otherwise).
    pub tenant_id: Option<String>,
    /// The token file of `credentials = "token-file"`.
    pub token_file: Option<PathBuf>,
    /// A PEM bundle of CAs to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Check that an authentication challenge names a Key Vault resource of the vault's domain (default true;
    /// false only for an emulator on an address).
    pub verify_challenge_resource: Option<bool>,
}

impl AzureConfig {
    /// The provider's settings.
    pub fn settings(&self, timeout: Duration) -> AzureSettings {
        AzureSettings {
            config: self.clone(),
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
        if (self.credentials == AzureCredentials::TokenFile) != self.token_file.is_some() {
            return Err("credentials = \"token-file\" and token_file go together".into());
        }
        if let Some(endpoint) = &self.endpoint
            && !endpoint.starts_with("https://")
        {
            return Err(format!(
                "endpoint = \"{endpoint}\" must be an https:// URL: Key Vault clients send tokens over TLS only"
            ));
        }
        Ok(())
    }
}

/// Settings of one Azure Key Vault instance.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    config: AzureConfig,
    timeout: Duration,
}

/// The Key Vault provider.
pub struct AzureProvider {
    settings: AzureSettings,
    credential: OnceCell<Arc<dyn TokenCredential>>,
    http: OnceCell<reqwest::Client>,
    clients: Mutex<HashMap<String, Arc<SecretClient>>>,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A bearer token from a file, re-read for each token request.
#[derive(Debug)]
struct FileToken(PathBuf);

#[async_trait]
impl TokenCredential for FileToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let text = Zeroizing::new(std::fs::read_to_string(&self.0).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("cannot read token_file {}: {e}", self.0.display()),
            )
        })?);
        // Asked again within minutes: the file is the source of truth, refreshed by whoever writes it.
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::minutes(10);
        Ok(AccessToken::new(text.trim().to_owned(), expires))
    }
}

impl AzureProvider {
    /// A provider with these settings; nothing is contacted yet.
    pub fn new(settings: AzureSettings) -> AzureProvider {
        crate::tls::install();
        AzureProvider {
            settings,
            credential: OnceCell::new(),
            http: OnceCell::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn credential(&self) -> Result<Arc<dyn TokenCredential>, ProviderError> {
        let c = &self.settings.config;
        let failed = |e: azure_core::Error| {
            ProviderError::new(
                ErrorKind::PermissionDenied,
                format!("no Azure credentials ({e}); on AKS enable workload identity for the Pod's service account, on a VM assign a managed identity, locally run `az login`"),
            )
            .with_upstream(Some(Upstream::NoCredentials))
        };
        let workload = || {
            let mut options = azure_identity::WorkloadIdentityCredentialOptions::default();
            options.client_id.clone_from(&c.client_id);
            options.tenant_id.clone_from(&c.tenant_id);
            azure_identity::WorkloadIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
        };
        let managed = || {
            let options = azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: c
                    .client_id
                    .clone()
                    .map(azure_identity::UserAssignedId::ClientId),
                ..azure_identity::ManagedIdentityCredentialOptions::default()
            };
            azure_identity::ManagedIdentityCredential::new(Some(options))
                .map(|c| c as Arc<dyn TokenCredential>)
        };
        let cli =
            || azure_identity::AzureCliCredential::new(None).map(|c| c as Arc<dyn TokenCredential>);
        let credential = match c.credentials {
            AzureCredentials::TokenFile => {
                let file = c.token_file.clone().unwrap_or_default();
                Ok(Arc::new(FileToken(file)) as Arc<dyn TokenCredential>)
            }
            AzureCredentials::WorkloadIdentity => workload(),
            AzureCredentials::ManagedIdentity => managed(),
            AzureCredentials::AzureCli => cli(),
            AzureCredentials::Auto => {
                if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                    workload()
                } else if std::env::var_os("IDENTITY_ENDPOINT").is_some() || on_azure_vm() {
                    managed()
                } else {
                    cli()
                }
            }
        };
        credential.map_err(failed)
    }

    async fn http(&self) -> Result<&reqwest::Client, ProviderError> {
        self.http
            .get_or_try_init(|| async {
                let mut builder = reqwest::Client::builder()
                    .timeout(self.settings.timeout)
                    .connect_timeout(Duration::from_secs(3))
                    .redirect(reqwest::redirect::Policy::none());
                if let Some(ca_file) = &self.settings.config.ca_file {
                    let misconfigured = |why: String| {
                        ProviderError::new(
                            ErrorKind::Misconfigured,
                            format!("ca_file {}: {why}", ca_file.display()),
                        )
                    };
                    let pem = std::fs::read(ca_file).map_err(|e| misconfigured(e.to_string()))?;
                    for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|_| misconfigured("not a PEM bundle of certificates".into()))?
                    {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                builder.build().map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Misconfigured,
                        format!("cannot build the Key Vault client: {e}"),
                    )
                })
            })
            .await
    }

    /// The vault's URL.
    fn vault_url(&self, vault: &str) -> String {
        let c = &self.settings.config;
        match &c.endpoint {
            Some(endpoint) => endpoint.replace("{vault}", vault),
            None => format!(
                "https://{vault}.{}",
                c.dns_suffix.as_deref().unwrap_or(DEFAULT_DNS_SUFFIX)
            ),
        }
    }

    async fn client(&self, vault: &str) -> Result<Arc<SecretClient>, ProviderError> {
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(vault)
        {
            return Ok(client.clone());
        }
        let credential = if let Some(credential) = self.credential.get() {
            credential.clone()
        } else {
            let credential = self.credential()?;
            let _ = self.credential.set(credential.clone());
            credential
        };
        let http = self.http().await?.clone();
        let client_options = ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(Transport::new(Arc::new(http))),
            ..ClientOptions::default()
        };
        let options = SecretClientOptions {
            client_options,
            verify_challenge_resource: Some(
                self.settings
                    .config
                    .verify_challenge_resource
                    .unwrap_or(true),
            ),
            ..SecretClientOptions::default()
        };
        let url = self.vault_url(vault);
        let client = Arc::new(
            SecretClient::new(&url, credential, Some(options)).map_err(|e| {
                ProviderError::new(
                    ErrorKind::Misconfigured,
                    format!("cannot build a client for {url}: {e}"),
                )
            })?,
        );
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() < MAX_CLIENTS {
            clients.insert(vault.to_owned(), client.clone());
        }
        Ok(client)
    }
}

/// Whether this looks like an Azure VM (its DMI vendor), where the metadata endpoint answers; elsewhere a managed
/// identity request would wait a minute for an endpoint that is not there.
fn on_azure_vm() -> bool {
    std::fs::read_to_string("/sys/class/dmi/id/chassis_asset_tag")
        .is_ok_and(|tag| tag.trim() == "7783-7084-3265-9085-8269-3286-77")
}

/// An SDK error: kind by status, Key Vault's own code and message (which name the missing permission).
fn classify(e: &azure_core::Error, doing: &str, vault: &str) -> ProviderError {
    use azure_core::error::ErrorKind as Az;
    let message = e.to_string().replace(['\r', '\n'], " ");
    match e.kind() {
        Az::HttpResponse { status, error_code, .. } => {
            let status = u16::from(*status);
            let code = error_code.clone().unwrap_or_else(|| status.to_string());
            let (kind, advice) = match status {
                401 => (ErrorKind::PermissionDenied, "Key Vault refused the token; check the identity's federation or login".to_owned()),
                403 => (ErrorKind::PermissionDenied, format!("give the identity the `Key Vault Secrets User` role on vault {vault} (or a `get` access policy)")),
                404 => (ErrorKind::NotFound, "check the vault, name and version".to_owned()),
                429 => (ErrorKind::Throttled, "Key Vault throttled the request; Keyway paces calls with the instance's rate_limit".to_owned()),
                400 => (ErrorKind::Invalid, "the request was refused".to_owned()),
                _ => (ErrorKind::Unavailable, "Key Vault failed; retried later".to_owned()),
            };
            ProviderError::new(kind, format!("{doing}: {message} ({advice})"))
                .with_upstream(Some(Upstream::Code(code)))
        }
        Az::Credential => ProviderError::new(
            ErrorKind::PermissionDenied,
            format!("{doing}: no Azure token ({message}); on AKS enable workload identity, on a VM a managed identity, locally `az login`"),
        )
        .with_upstream(Some(Upstream::NoCredentials)),
        Az::Connection | Az::Io => ProviderError::new(
            ErrorKind::Unavailable,
            format!("{doing}: cannot reach Key Vault ({message}); check the vault name and network"),
        )
        .with_upstream(Some(Upstream::Unreachable)),
        _ => ProviderError::new(ErrorKind::Unavailable, format!("{doing}: {message}")),
    }
}

#[async_trait]
impl Provider for AzureProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Azure
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Azure {
            vault,
            name,
            version,
        } = target
        else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not an Azure Key Vault reference",
            ));
        };
        let shown = format!("azure-kv://{vault}/{name}");
        let client = self.client(vault).await?;
        let options = SecretClientGetSecretOptions {
            secret_version: version.clone(),
            ..SecretClientGetSecretOptions::default()
        };
        let doing = format!("reading {shown}");
        let secret = client
            .get_secret(name, Some(options))
            .await
            .map_err(|e| classify(&e, &doing, vault))?
            .into_model()
            .map_err(|e| classify(&e, &doing, vault))?;
        let id = secret.id.clone().unwrap_or_default();
        let (base, version_id) = match id.rsplit_once('/') {
            Some((base, version)) if version.len() == 32 => (base.to_owned(), version.to_owned()),
            _ => (id.clone(), String::new()),
        };
        let created = secret
            .attributes
            .as_ref()
            .and_then(|a| a.created)
            .map(std::time::SystemTime::from);
        let mut attributes = std::collections::BTreeMap::new();
        if let Some(content_type) = secret.content_type.clone() {
            attributes.insert("contentType".to_owned(), content_type);
        }
        let value = secret.value.unwrap_or_default();
        Ok(Secret {
            value: SecretValue::from(value),
            encoding: Encoding::Text,
            meta: SecretMeta {
                name: base,
                version_id,
                stages: Vec::new(),
                created,
                attributes,
            }
            .into(),
        })
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let prefix = match filter {
            None => "",
            Some(ListFilter::Prefix(prefix)) => prefix.as_str(),
            Some(other) => return Err(other.not_for(BackendKind::Azure)),
        };
        let (vault, name_prefix) = match (prefix.split_once('/'), &self.settings.config.vault) {
            (Some((vault, rest)), _) => (vault.to_ascii_lowercase(), rest),
            (None, Some(vault)) => (vault.to_ascii_lowercase(), prefix),
            (None, None) => {
                return Err(ProviderError::new(
                    ErrorKind::Invalid,
                    "name the vault to list: --filter VAULT/ (or set `vault` in the provider's table)",
                ));
            }
        };
        let client = self.client(&vault).await?;
        let doing = format!("listing vault {vault}");
        let mut pager = client
            .list_secret_properties(None)
            .map_err(|e| classify(&e, &doing, &vault))?;
        let mut names = Vec::new();
        while let Some(properties) = pager
            .try_next()
            .await
            .map_err(|e| classify(&e, &doing, &vault))?
        {
            let Some(name) = properties
                .id
                .as_deref()
                .and_then(|id| id.rsplit('/').next())
            else {
                continue;
            };
            if name.starts_with(name_prefix) {
                names.push(format!("{vault}/{name}"));
            }
        }
        names.sort();
        Ok(names)
    }
}

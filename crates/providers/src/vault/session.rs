//! The token a Vault instance reads with, and its lifecycle: taken from `VAULT_TOKEN` or a token file (re-read
//! when the file changes), or got by logging in (AppRole, JWT/OIDC, Kubernetes); renewed (`renew-self`) once
//! two thirds of its TTL have passed, and replaced by a new login when renewal fails or the TTL ends. Renewal
//! happens on the way to a request, so an instance nobody reads from holds no timer.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use keyway_core::{ErrorKind, ProviderError};
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Endpoint, vault_error};

/// How an instance authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// A token: `VAULT_TOKEN` (or `BAO_TOKEN`), else the file (default `~/.vault-token`), re-read when it changes.
    Token {
        /// The token file.
        file: Option<PathBuf>,
    },
    /// AppRole: `role_id` and the secret id read from a file at each login.
    AppRole {
        /// The auth mount (`approle`).
        mount: String,
        /// The role id.
        role_id: String,
        /// A file holding the secret id.
        secret_id_file: PathBuf,
    },
    /// JWT/OIDC: a JWT read from a file at each login (a CI system's or a cloud's workload identity token).
    Jwt {
        /// The auth mount (`jwt`).
        mount: String,
        /// The role.
        role: String,
        /// A file holding the JWT.
        jwt_file: PathBuf,
    },
    /// Kubernetes: the Pod's service-account token, re-read at each login (projected tokens rotate).
    Kubernetes {
        /// The auth mount (`kubernetes`).
        mount: String,
        /// The role.
        role: String,
        /// The token file.
        jwt_file: PathBuf,
    },
}

/// Where a Pod's service-account token is.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A token in use.
struct Session {
    token: SecretString,
    /// When to renew (two thirds into the TTL); `None`: never (a root token, or TTL unknown).
    renew_at: Option<Instant>,
    /// When the token stops working; `None`: not known to.
    expires_at: Option<Instant>,
    renewable: bool,
    /// The token file's modification time, for [`VaultAuth::Token`] read from a file.
    file_modified: Option<SystemTime>,
}

/// The instance's current token, behind a lock that also serialises logins.
pub(super) struct Sessions {
    auth: VaultAuth,
    current: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The `auth` block of a login or `renew-self` answer.
#[derive(Deserialize)]
struct AuthAnswer {
    auth: Option<AuthBlock>,
}

#[derive(Deserialize)]
struct AuthBlock {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(Deserialize)]
struct LookupAnswer {
    data: LookupData,
}

#[derive(Deserialize)]
struct LookupData {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
}

impl Sessions {
    pub(super) fn new(auth: VaultAuth) -> Sessions {
        Sessions {
            auth,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The token to send now: the current one, renewed or replaced first when it is due.
    pub(super) async fn token(&self, endpoint: &Endpoint) -> Result<SecretString, ProviderError> {
        let mut current = self.current.lock().await;
        let now = Instant::now();
        let stale_file = match (&self.auth, current.as_ref()) {
            (VaultAuth::Token { .. }, Some(session)) => {
                session.file_modified.is_some()
                    && session.file_modified != self.token_file_modified()
            }
            _ => false,
        };
        match current.as_mut() {
            Some(session)
                if !stale_file && session.expires_at.is_none_or(|expires| now < expires) =>
            {
                if session.renewable && session.renew_at.is_some_and(|at| now >= at) {
                    match renew(endpoint, &session.token).await {
                        Ok(renewed) => *session = renewed,
                        // A login method logs in again; a given token is used until the server refuses it.
                        Err(e) if self.logs_in() => {
                            tracing::info!(error = %e, "renewing the Vault token failed; logging in again");
                            *current = Some(self.start(endpoint).await?);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "renewing the Vault token failed");
                            session.renew_at = None;
                        }
                    }
                }
            }
            _ => *current = Some(self.start(endpoint).await?),
        }
        Ok(current
            .as_ref()
            .map_or_else(|| SecretString::from(String::new()), |s| s.token.clone()))
    }

    /// Forgets the current token (Vault said it is invalid): the next request gets a new one.
    pub(super) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    /// Whether a refused token can be replaced by logging in again.
    pub(super) fn logs_in(&self) -> bool {
        !matches!(self.auth, VaultAuth::Token { .. })
    }

    fn token_file(&self) -> Option<PathBuf> {
        match &self.auth {
            VaultAuth::Token { file: Some(file) } => Some(file.clone()),
            VaultAuth::Token { file: None } => {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".vault-token"))
            }
            _ => None,
        }
    }

    fn token_file_modified(&self) -> Option<SystemTime> {
        self.token_file()
            .and_then(|f| std::fs::metadata(f).ok())
            .and_then(|m| m.modified().ok())
    }

    /// A new session: the configured token, or a login.
    async fn start(&self, endpoint: &Endpoint) -> Result<Session, ProviderError> {
        let (path, body) = match &self.auth {
            VaultAuth::Token { file } => return self.given_token(endpoint, file.is_some()).await,
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                let secret_id = read_credential(secret_id_file, "the AppRole secret id")?;
                (
                    format!("auth/{mount}/login"),
                    serde_json::json!({"role_id": role_id, "secret_id": secret_id.as_str()}),
                )
            }
            VaultAuth::Jwt {
                mount,
                role,
                jwt_file,
            }
            | VaultAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_credential(jwt_file, "the JWT")?;
                (
                    format!("auth/{mount}/login"),
                    serde_json::json!({"role": role, "jwt": jwt.as_str()}),
                )
            }
        };
        let body = Zeroizing::new(body.to_string());
        let response = endpoint
            .request(reqwest::Method::POST, &path, None)
            .header("Content-Type", "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| endpoint.transport(&e, &path))?;
        let status = response.status();
        let text = Zeroizing::new(
            response
                .text()
                .await
                .map_err(|e| endpoint.transport(&e, &path))?,
        );
        if !status.is_success() {
            let e = vault_error(status, &text, &format!("logging in at {path}"));
            return Err(match e.kind() {
                ErrorKind::PermissionDenied | ErrorKind::Invalid => ProviderError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "Vault refused the login at {path} ({}); check the role and that its bound claims or service account match",
                        first_error(&text)
                    ),
                ),
                _ => e,
            });
        }
        let answer: AuthAnswer = serde_json::from_str(&text).map_err(|_| bad_answer(&path))?;
        let auth = answer.auth.ok_or_else(|| bad_answer(&path))?;
        Ok(session(
            SecretString::from(auth.client_token),
            auth.lease_duration,
            auth.renewable,
            None,
        ))
    }

    /// The token from the environment or the file, with its TTL from `lookup-self` when the token may look
    /// itself up (a token without the default policy may not: then it is used until refused).
    async fn given_token(
        &self,
        endpoint: &Endpoint,
        file_only: bool,
    ) -> Result<Session, ProviderError> {
        let from_env = (!file_only)
            .then(|| {
                std::env::var("VAULT_TOKEN")
                    .or_else(|_| std::env::var("BAO_TOKEN"))
                    .ok()
            })
            .flatten()
            .filter(|t| !t.trim().is_empty());
        let (token, file_modified) = if let Some(token) = from_env {
            (SecretString::from(token.trim().to_owned()), None)
        } else {
            let file = self.token_file().ok_or_else(no_token)?;
            let modified = std::fs::metadata(&file)
                .ok()
                .and_then(|m| m.modified().ok());
            let text = Zeroizing::new(std::fs::read_to_string(&file).map_err(|_| no_token())?);
            if text.trim().is_empty() {
                return Err(no_token());
            }
            (
                SecretString::from(text.trim().to_owned()),
                modified.or(Some(SystemTime::UNIX_EPOCH)),
            )
        };
        let path = "auth/token/lookup-self";
        let lookup = endpoint
            .request(reqwest::Method::GET, path, Some(&token))
            .send()
            .await
            .map_err(|e| endpoint.transport(&e, path))?;
        let (ttl, renewable) = if lookup.status().is_success() {
            let text = lookup
                .text()
                .await
                .map_err(|e| endpoint.transport(&e, path))?;
            serde_json::from_str::<LookupAnswer>(&text)
                .map_or((0, false), |a| (a.data.ttl, a.data.renewable))
        } else {
            (0, false)
        };
        Ok(session(token, ttl, renewable, file_modified))
    }
}

/// A session for a token with `ttl` seconds left (0: no expiry).
fn session(
    token: SecretString,
    ttl: u64,
    renewable: bool,
    file_modified: Option<SystemTime>,
) -> Session {
    let now = Instant::now();
    let (renew_at, expires_at) = if ttl == 0 {
        (None, None)
    } else {
        (
            Some(now + Duration::from_secs(ttl * 2 / 3)),
            Some(now + Duration::from_secs(ttl)),
        )
    };
    Session {
        token,
        renew_at,
        expires_at,
        renewable,
        file_modified,
    }
}

/// `renew-self`: the same token with a new TTL. A TTL shorter than before means the max TTL is near: the
/// session then ends at it, and the next request logs in again.
async fn renew(endpoint: &Endpoint, token: &SecretString) -> Result<Session, ProviderError> {
    let path = "auth/token/renew-self";
    let response = endpoint
        .request(reqwest::Method::POST, path, Some(token))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .map_err(|e| endpoint.transport(&e, path))?;
    let status = response.status();
    let text = Zeroizing::new(
        response
            .text()
            .await
            .map_err(|e| endpoint.transport(&e, path))?,
    );
    if !status.is_success() {
        return Err(vault_error(status, &text, "renewing the token"));
    }
    let answer: AuthAnswer = serde_json::from_str(&text).map_err(|_| bad_answer(path))?;
    let auth = answer.auth.ok_or_else(|| bad_answer(path))?;
    Ok(session(
        token.clone(),
        auth.lease_duration,
        auth.renewable,
        None,
    ))
}

fn read_credential(path: &PathBuf, what: &str) -> Result<Zeroizing<String>, ProviderError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProviderError::new(
            ErrorKind::Misconfigured,
            format!("cannot read {what} from {}: {e}", path.display()),
        )
    })?;
    let text = Zeroizing::new(text);
    Ok(Zeroizing::new(text.trim().to_owned()))
}

fn no_token() -> ProviderError {
    ProviderError::new(
        ErrorKind::PermissionDenied,
        "no Vault token: set VAULT_TOKEN, log in with `vault login` (it writes ~/.vault-token), or set an auth method in the provider's table of keyway.toml",
    )
    .with_upstream(Some(keyway_core::Upstream::NoCredentials))
}

fn bad_answer(path: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Unavailable,
        format!("Vault's answer to {path} is not what Vault sends; check the instance's address"),
    )
    .with_upstream(Some(keyway_core::Upstream::BadResponse))
}

/// The first message of a Vault `{"errors": [...]}` body, on one line.
pub(super) fn first_error(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    serde_json::from_str::<Errors>(body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| {
            e.split(['\n', '\t'])
                .map(|part| part.trim_start_matches('*').trim())
                .filter(|part| {
                    !part.is_empty()
                        && !part.ends_with("error occurred:")
                        && !part.ends_with("errors occurred:")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

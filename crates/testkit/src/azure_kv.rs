//! An Azure Key Vault emulator: the secrets surface a reader needs, over HTTPS (Key Vault clients send tokens
//! over TLS only), one vault per origin (both SDKs parse ids as `{vault}/secrets/{name}[/{version}]`).
//!
//! No emulator is installable here, so this one is Keyway's; `tests/python/test_azure_kv.py` proves it with
//! Microsoft's own Python client (`azure-keyvault-secrets`) before the Rust provider is tested against it. It
//! answers, with Key Vault's JSON shapes (integer Unix timestamps, `{"error":{"code","message","innererror"}}`):
//! `GET /secrets/{name}` and `/secrets/{name}/` (latest), `/secrets/{name}/{version}`, `/secrets` and
//! `/secrets/{name}/versions` (pages of `maxresults`, absolute `nextLink`); every request needs `api-version`.
//!
//! Authentication is Key Vault's challenge: a request without a known bearer token is answered 401 with
//! `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/TENANT",
//! resource="https://vault.azure.net"`. Tokens are registered by the test (`POST /emulator/token?token=T&principal=P`).
//! Controls under `/emulator/`, on a second port over plain HTTP: `secret` (PUT `{"name","value","contentType"}`: a new version, its id
//! answered), `deny?principal=P&name=N` (403 `AccessDenied`), `disable?name=N` (403 `SecretDisabled`),
//! `fail?count=N&status=429|503` (with `Retry-After: 1`), `stats`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The tenant the challenge names.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// The challenge every unauthenticated request gets.
pub fn challenge() -> String {
    format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", resource=\"https://vault.azure.net\""
    )
}

struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    created: u64,
}

struct Entry {
    versions: Vec<Version>,
    enabled: bool,
}

#[derive(Default)]
struct Store {
    base: String,
    secrets: BTreeMap<String, Entry>,
    tokens: HashMap<String, String>,
    denied: BTreeSet<(String, String)>,
    gets: u64,
    gets_by_name: HashMap<String, u64>,
    unauthenticated: u64,
    fail_next: u64,
    fail_status: u16,
    next_id: u64,
}

type Shared = Arc<Mutex<Store>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Store> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The routers of a vault served at `base` (`https://127.0.0.1:PORT`): Key Vault's API (served over TLS), and
/// the test controls (served over plain HTTP on another port, so tests need no TLS client).
pub fn routers(base: &str) -> (Router, Router) {
    let state: Shared = Arc::new(Mutex::new(Store {
        base: base.to_owned(),
        next_id: 0x1000,
        ..Store::default()
    }));
    let api_router = Router::new()
        .route("/secrets", any(api))
        .route("/secrets/{*rest}", any(api))
        .with_state(state.clone());
    let controls = Router::new()
        .route("/emulator/secret", put(put_secret))
        .route("/emulator/token", post(add_token))
        .route("/emulator/deny", post(deny))
        .route("/emulator/disable", post(disable))
        .route("/emulator/fail", post(fail))
        .route("/emulator/stats", get(stats))
        .with_state(state);
    (api_router, controls)
}

fn error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = json!({"code": inner});
    }
    (status, Json(json!({ "error": error }))).into_response()
}

fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "AKV10000: Request is missing a Bearer or PoP token.",
        None,
    );
    if let Ok(value) = HeaderValue::from_str(&challenge()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn attributes(entry: &Entry, version: &Version) -> Value {
    json!({
        "enabled": entry.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    })
}

async fn api(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| lock(&state).tokens.get(token.trim()).cloned());
    let Some(principal) = principal else {
        lock(&state).unauthenticated += 1;
        return unauthorized();
    };
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            "The emulator serves reads only.",
            None,
        );
    }
    if !params.contains_key("api-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The 'api-version' query parameter is required.",
            None,
        );
    }
    {
        let mut store = lock(&state);
        if store.fail_next > 0 {
            store.fail_next -= 1;
            let status =
                StatusCode::from_u16(store.fail_status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut response = error(
                status,
                if status == StatusCode::TOO_MANY_REQUESTS {
                    "Throttled"
                } else {
                    "ServiceUnavailable"
                },
                "Request was not processed because too many requests were received. Please retry.",
                None,
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let store = &mut *lock(&state);
    let base = store.base.clone();
    match segments.as_slice() {
        ["secrets"] => list(store, &params, None),
        ["secrets", name, "versions"] => list(store, &params, Some(name)),
        ["secrets", name] | ["secrets", name, ""] => read(store, &principal, name, None),
        ["secrets", name, version] => read(store, &principal, name, Some(version)),
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No route for {} at {base}", uri.path()),
            None,
        ),
    }
}

fn read(store: &mut Store, principal: &str, name: &str, version: Option<&str>) -> Response {
    store.gets += 1;
    *store.gets_by_name.entry(name.to_owned()).or_default() += 1;
    if store
        .denied
        .contains(&(principal.to_owned(), name.to_owned()))
    {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "The user, group or application 'appid={principal};oid={principal};iss=https://sts.windows.net/{TENANT}/' does not have secrets get permission on key vault 'emulator;location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
            Some("AccessDenied"),
        );
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!(
                "A secret with (name/id) {name}/{} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                version.unwrap_or_default()
            ),
            None,
        )
    };
    let Some(entry) = store.secrets.get(name) else {
        return not_found();
    };
    let found = match version {
        Some(version) => entry
            .versions
            .iter()
            .find(|v| v.id == version.to_ascii_lowercase()),
        None => entry.versions.last(),
    };
    let Some(found) = found else {
        return not_found();
    };
    if !entry.enabled {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            Some("SecretDisabled"),
        );
    }
    let mut body = json!({
        "value": found.value,
        "id": format!("{}/secrets/{name}/{}", store.base, found.id),
        "attributes": attributes(entry, found),
        "tags": {},
    });
    if let Some(content_type) = &found.content_type {
        body["contentType"] = json!(content_type);
    }
    Json(body).into_response()
}

fn list(store: &Store, params: &HashMap<String, String>, name: Option<&&str>) -> Response {
    let page_size = params
        .get("maxresults")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| (1..=25).contains(m))
        .unwrap_or(25);
    let skip = params
        .get("$skiptoken")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let mut items: Vec<Value> = match name {
        None => store
            .secrets
            .iter()
            .filter_map(|(name, entry)| {
                let latest = entry.versions.last()?;
                let mut item = json!({
                    "id": format!("{}/secrets/{name}", store.base),
                    "attributes": attributes(entry, latest),
                    "tags": {},
                });
                if let Some(content_type) = &latest.content_type {
                    item["contentType"] = json!(content_type);
                }
                Some(item)
            })
            .collect(),
        Some(name) => match store.secrets.get(*name) {
            Some(entry) => entry
                .versions
                .iter()
                .map(|v| json!({"id": format!("{}/secrets/{name}/{}", store.base, v.id), "attributes": attributes(entry, v), "tags": {}}))
                .collect(),
            None => Vec::new(),
        },
    };
    let total = items.len();
    let page: Vec<Value> = items.drain(..).skip(skip).take(page_size).collect();
    let next = (skip + page_size < total).then(|| {
        let path = match name {
            None => "secrets".to_owned(),
            Some(name) => format!("secrets/{name}/versions"),
        };
        format!(
            "{}/{path}?api-version=7.2&$skiptoken={}&maxresults={page_size}",
            store.base,
            skip + page_size
        )
    });
    Json(json!({"value": page, "nextLink": next})).into_response()
}

async fn put_secret(State(state): State<Shared>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(name), Some(value)) = (body["name"].as_str(), body["value"].as_str()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut store = lock(&state);
    store.next_id += 1;
    let id = format!("{:032x}", store.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let entry = store.secrets.entry(name.to_owned()).or_insert(Entry {
        versions: Vec::new(),
        enabled: true,
    });
    entry.versions.push(Version {
        id: id.clone(),
        value: value.to_owned(),
        content_type: body["contentType"].as_str().map(str::to_owned),
        created: now(),
    });
    Json(json!({"version": id})).into_response()
}

async fn add_token(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(token), Some(principal)) = (params.get("token"), params.get("principal")) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state).tokens.insert(token.clone(), principal.clone());
    StatusCode::NO_CONTENT
}

async fn deny(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(principal), Some(name)) = (params.get("principal"), params.get("name")) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state)
        .denied
        .insert((principal.clone(), name.clone()));
    StatusCode::NO_CONTENT
}

async fn disable(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let Some(name) = params.get("name") else {
        return StatusCode::BAD_REQUEST;
    };
    match lock(&state).secrets.get_mut(name) {
        Some(entry) => {
            entry.enabled = false;
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn fail(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let mut store = lock(&state);
    store.fail_next = params
        .get("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    store.fail_status = params
        .get("status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(429);
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<Shared>) -> Json<Value> {
    let store = lock(&state);
    Json(
        json!({"get": store.gets, "get_by_name": store.gets_by_name, "unauthenticated": store.unauthenticated}),
    )
}

/// A certificate for `127.0.0.1` and `localhost` (self-signed): its PEM, and the rustls server config.
pub fn certificate() -> (String, Arc<rustls::ServerConfig>) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
    let pem = generated.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .expect("the generated key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .expect("a certificate and its key");
    (pem, Arc::new(config))
}

/// Serves the emulator until `shutdown` resolves: Key Vault's API over TLS on `listener`, the controls over
/// plain HTTP on `controls`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    controls: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let base = format!("https://{}", listener.local_addr().expect("address"));
    let (app, control_app) = routers(&base);
    tokio::spawn(async move {
        let _ = axum::serve(controls, control_app).await;
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The emulator on its own thread and runtime, on a free loopback port, stopped on drop.
pub struct AzureKv {
    /// `https://127.0.0.1:PORT`: the vault's URL.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The certificate's PEM file, for clients to trust.
    pub ca_file: PathBuf,
    /// `http://127.0.0.1:PORT`: the test controls.
    pub controls: String,
    _dir: tempfile::TempDir,
    _server: crate::Background,
}

impl AzureKv {
    /// Starts the emulator, with the token `token` for the principal `keyway`.
    pub fn start() -> AzureKv {
        let (pem, tls) = certificate();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pem).expect("write the certificate");
        let controls = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        controls.set_nonblocking(true).expect("nonblocking");
        let controls_addr = controls.local_addr().expect("address");
        let (addr, server) = crate::Background::start(move |listener, stopped| async move {
            let controls = tokio::net::TcpListener::from_std(controls).expect("listener");
            serve(listener, controls, tls, async move {
                let _ = stopped.await;
            })
            .await;
        });
        let emulator = AzureKv {
            endpoint: format!("https://{addr}"),
            addr,
            ca_file,
            controls: format!("http://{controls_addr}"),
            _dir: dir,
            _server: server,
        };
        emulator.add_token("token", "keyway");
        emulator
    }

    fn control(&self, method: &str, path: &str, body: &str) -> crate::Reply {
        let reply = crate::http(
            method,
            &format!("{}/emulator/{path}", self.controls),
            &[("Content-Type", "application/json")],
            body,
        );
        assert!(
            reply.status < 300,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        reply
    }

    /// Adds a version of `name` holding `value`; returns its version id.
    pub fn put_secret(&self, name: &str, value: &str) -> String {
        let reply = self.control(
            "PUT",
            "secret",
            &json!({"name": name, "value": value}).to_string(),
        );
        reply.json()["version"]
            .as_str()
            .expect("version")
            .to_owned()
    }

    /// Makes `token` a valid token of `principal`.
    pub fn add_token(&self, token: &str, principal: &str) {
        self.control(
            "POST",
            &format!("token?token={token}&principal={principal}"),
            "",
        );
    }

    /// Denies `principal` reading `name`.
    pub fn deny(&self, principal: &str, name: &str) {
        self.control(
            "POST",
            &format!("deny?principal={principal}&name={name}"),
            "",
        );
    }

    /// The next `count` requests answer `status` (429 or 503) with `Retry-After: 1`.
    pub fn fail_next(&self, count: u64, status: u16) {
        self.control("POST", &format!("fail?count={count}&status={status}"), "");
    }

    /// How many secret reads (authenticated) reached the emulator.
    pub fn gets(&self) -> u64 {
        self.control("GET", "stats", "").json()["get"]
            .as_u64()
            .unwrap_or(0)
    }
}

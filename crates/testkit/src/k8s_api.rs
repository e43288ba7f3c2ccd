//! A stand-in for the Kubernetes API server: what a reader of Secrets meets, with the real JSON shapes and
//! `Status` errors (apimachinery's `errors.go`): `GET /api/v1/namespaces/{ns}/secrets/{name}`, `GET
//! /api/v1/namespaces/{ns}/secrets` (`limit`, `continue`), and the TokenReview API
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`) that Vault's and OpenBao's Kubernetes auth call.
//! `tests/python/test_k8s_api.py` proves it with the official `kubernetes` Python client.
//!
//! Authentication is a bearer token naming a user (`POST /stand-in/token?token=T&user=U`; the token `admin` is
//! `kubernetes-admin`, who may do anything); a missing or unknown token is 401. Authorization: a user may read a
//! Secret when granted (`POST /stand-in/grant?user=U&verb=get|list&namespace=NS`), else 403 with the RBAC
//! message the API server writes; checked before existence, as the API server does. Controls under
//! `/stand-in/`: `secret` (PUT a Secret: `{"namespace","name","data":{key: base64}}`), `stats` (GET counts),
//! `fail?count=N&status=S` (the next N API requests answer S), `reset`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

struct StoredSecret {
    data: BTreeMap<String, String>,
    uid: String,
    resource_version: u64,
    created: SystemTime,
}

#[derive(Default)]
struct Store {
    secrets: BTreeMap<(String, String), StoredSecret>,
    tokens: HashMap<String, String>,
    grants: BTreeSet<(String, String, String)>,
    next_version: u64,
    gets: u64,
    lists: u64,
    reviews: u64,
    fail_next: u64,
    fail_status: u16,
}

type Shared = Arc<Mutex<Store>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Store> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The admin token (user `kubernetes-admin`, allowed everything).
pub const ADMIN_TOKEN: &str = "admin";

/// The router.
pub fn router() -> Router {
    let state: Shared = Arc::new(Mutex::new(Store {
        tokens: HashMap::from([(ADMIN_TOKEN.to_owned(), "kubernetes-admin".to_owned())]),
        next_version: 1000,
        ..Store::default()
    }));
    Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/secrets/{name}",
            get(read_secret),
        )
        .route("/api/v1/namespaces/{namespace}/secrets", get(list_secrets))
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(token_review),
        )
        .route("/stand-in/secret", put(put_secret))
        .route("/stand-in/token", post(add_token))
        .route("/stand-in/grant", post(grant))
        .route("/stand-in/fail", post(fail))
        .route("/stand-in/stats", get(stats))
        .route("/stand-in/reset", post(reset))
        .with_state(state)
}

/// apimachinery's `metav1.Status` for a failure.
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, Json(body)).into_response()
}

/// The caller's user, or the 401 the API server answers.
#[allow(
    clippy::result_large_err,
    reason = "the error is the response, answered at once"
)]
fn user(state: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    token
        .and_then(|t| lock(state).tokens.get(t).cloned())
        .ok_or_else(|| {
            status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
                None,
            )
        })
}

fn allowed(store: &Store, user: &str, verb: &str, namespace: &str) -> bool {
    user == "kubernetes-admin"
        || store
            .grants
            .contains(&(user.to_owned(), verb.to_owned(), namespace.to_owned()))
}

/// A test-injected failure, if one is due.
fn injected(state: &Shared) -> Option<Response> {
    let mut store = lock(state);
    if store.fail_next == 0 {
        return None;
    }
    store.fail_next -= 1;
    let code = StatusCode::from_u16(store.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = if code == StatusCode::TOO_MANY_REQUESTS {
        "TooManyRequests"
    } else {
        "ServiceUnavailable"
    };
    Some(status(
        code,
        reason,
        "the server is currently unable to handle the request",
        None,
    ))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn secret_json(namespace: &str, name: &str, secret: &StoredSecret) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": secret.uid,
            "resourceVersion": secret.resource_version.to_string(),
            "creationTimestamp": rfc3339(secret.created),
        },
        "data": secret.data,
        "type": "Opaque",
    })
}

async fn read_secret(
    State(state): State<Shared>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let user = match user(&state, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    if let Some(response) = injected(&state) {
        return response;
    }
    let mut store = lock(&state);
    store.gets += 1;
    if !allowed(&store, &user, "get", &namespace) {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "secrets \"{name}\" is forbidden: User \"{user}\" cannot get resource \"secrets\" in API group \"\" in the namespace \"{namespace}\""
            ),
            Some(json!({"name": name, "kind": "secrets"})),
        );
    }
    match store.secrets.get(&(namespace.clone(), name.clone())) {
        Some(secret) => Json(secret_json(&namespace, &name, secret)).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            Some(json!({"name": name, "kind": "secrets"})),
        ),
    }
}

async fn list_secrets(
    State(state): State<Shared>,
    Path(namespace): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let user = match user(&state, &headers) {
        Ok(user) => user,
        Err(response) => return response,
    };
    if let Some(response) = injected(&state) {
        return response;
    }
    let mut store = lock(&state);
    store.lists += 1;
    if !allowed(&store, &user, "list", &namespace) {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{namespace}\""
            ),
            Some(json!({"kind": "secrets"})),
        );
    }
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after = params.get("continue").cloned().unwrap_or_default();
    let names: Vec<&String> = store
        .secrets
        .keys()
        .filter(|(ns, name)| *ns == namespace && *name > after)
        .map(|(_, name)| name)
        .collect();
    let page: Vec<&String> = names
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .copied()
        .collect();
    let more = page.len() < names.len();
    let items: Vec<Value> = page
        .iter()
        .map(|name| {
            secret_json(
                &namespace,
                name,
                &store.secrets[&(namespace.clone(), (*name).clone())],
            )
        })
        .collect();
    let mut metadata = json!({"resourceVersion": store.next_version.to_string()});
    if let (true, Some(last)) = (more, page.last()) {
        metadata["continue"] = json!(last);
    }
    Json(json!({"apiVersion": "v1", "kind": "SecretList", "metadata": metadata, "items": items}))
        .into_response()
}

/// TokenReview: a token the stand-in knows is authenticated as its user (a service account's
/// `system:serviceaccount:NS:NAME`), with the uid Vault compares to the JWT's and the audiences asked for.
async fn token_review(State(state): State<Shared>, body: Bytes) -> Response {
    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let mut store = lock(&state);
    store.reviews += 1;
    let user = store.tokens.get(token).cloned();
    let status = match user {
        Some(user) => json!({
            "authenticated": true,
            "user": {"username": user, "uid": jwt_claim(token, &["kubernetes.io", "serviceaccount", "uid"]).unwrap_or_default()},
            "audiences": review["spec"]["audiences"].clone(),
        }),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    Json(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}))
        .into_response()
}

/// A string claim of a JWT's payload (unverified), by path.
fn jwt_claim(token: &str, path: &[&str]) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let mut value: Value = serde_json::from_slice(&bytes).ok()?;
    for key in path {
        value = value.get(*key)?.clone();
    }
    value.as_str().map(str::to_owned)
}

async fn put_secret(State(state): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let (Some(namespace), Some(name)) = (body["namespace"].as_str(), body["name"].as_str()) else {
        return StatusCode::BAD_REQUEST;
    };
    let data: BTreeMap<String, String> =
        serde_json::from_value(body["data"].clone()).unwrap_or_default();
    let mut store = lock(&state);
    store.next_version += 1;
    let version = store.next_version;
    let key = (namespace.to_owned(), name.to_owned());
    let created = store
        .secrets
        .get(&key)
        .map_or_else(SystemTime::now, |s| s.created);
    store.secrets.insert(
        key,
        StoredSecret {
            data,
            uid: format!("00000000-0000-4000-8000-{version:012}"),
            resource_version: version,
            created,
        },
    );
    StatusCode::NO_CONTENT
}

async fn add_token(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(token), Some(user)) = (params.get("token"), params.get("user")) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state).tokens.insert(token.clone(), user.clone());
    StatusCode::NO_CONTENT
}

async fn grant(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(user), Some(verb), Some(namespace)) = (
        params.get("user"),
        params.get("verb"),
        params.get("namespace"),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state)
        .grants
        .insert((user.clone(), verb.clone(), namespace.clone()));
    StatusCode::NO_CONTENT
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
        .unwrap_or(503);
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<Shared>) -> Json<Value> {
    let store = lock(&state);
    Json(json!({"get": store.gets, "list": store.lists, "tokenreviews": store.reviews}))
}

async fn reset(State(state): State<Shared>) -> StatusCode {
    let mut store = lock(&state);
    store.secrets.clear();
    store.grants.clear();
    store.fail_next = 0;
    StatusCode::NO_CONTENT
}

/// Serves the stand-in on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The stand-in on its own thread and runtime, on a free loopback port, stopped on drop.
pub struct K8sApi {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    _server: crate::Background,
}

impl K8sApi {
    /// Starts the stand-in.
    pub fn start() -> K8sApi {
        let (addr, server) = crate::Background::start(|listener, stopped| async move {
            serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        K8sApi {
            endpoint: format!("http://{addr}"),
            addr,
            _server: server,
        }
    }

    fn control(&self, method: &str, path: &str, body: &str) -> crate::Reply {
        let reply = crate::http(
            method,
            &format!("{}/stand-in/{path}", self.endpoint),
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

    /// Creates or replaces a Secret with these entries.
    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
        use base64::Engine as _;
        let data: BTreeMap<&str, String> = data
            .iter()
            .map(|(k, v)| (*k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        self.control(
            "PUT",
            "secret",
            &json!({"namespace": namespace, "name": name, "data": data}).to_string(),
        );
    }

    /// Makes `token` authenticate as `user`.
    pub fn add_token(&self, token: &str, user: &str) {
        self.control("POST", &format!("token?token={token}&user={user}"), "");
    }

    /// Lets `user` `get` or `list` Secrets in `namespace`.
    pub fn grant(&self, user: &str, verb: &str, namespace: &str) {
        self.control(
            "POST",
            &format!("grant?user={user}&verb={verb}&namespace={namespace}"),
            "",
        );
    }

    /// The next `count` API requests answer `status`.
    pub fn fail_next(&self, count: u64, status: u16) {
        self.control("POST", &format!("fail?count={count}&status={status}"), "");
    }

    /// How many Secret reads reached the stand-in.
    pub fn gets(&self) -> u64 {
        self.control("GET", "stats", "").json()["get"]
            .as_u64()
            .unwrap_or(0)
    }
}

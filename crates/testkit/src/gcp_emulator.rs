//! A GCP Secret Manager emulator: the v1 REST surface a reader needs.
//!
//! Google publishes no usable Secret Manager emulator (the one on PyPI answers every access with a stub), so
//! this one is Keyway's. It implements, with the real JSON shapes and `google.rpc.Status` errors:
//! create/get/list/delete secrets (global, and regional under `projects/P/locations/L`), their labels and
//! version aliases (PATCH with `updateMask`), addVersion, get/list versions, access (numbered, `latest` or an
//! alias, with `payload.dataCrc32c`), and disable/enable/destroy. `tests/python/test_gcp_emulator.py` proves the shapes
//! with Google's own Python client (`transport="rest"`).
//!
//! Test controls live under `/emulator/`: `GET stats` (access counts), `POST reset`,
//! `POST deny?name=projects/P/secrets/S` (answers PERMISSION_DENIED), `POST latency?ms=N` (delays access),
//! `POST fail?count=N` (the next N requests answer 503 UNAVAILABLE), `POST corrupt?count=N` (the next N
//! access answers carry a wrong checksum).
//!
//! Identity, for the daemon's service account impersonation (`docs/iam.md`): `POST /token` is an OAuth2 token
//! endpoint (the `token_uri` of an `authorized_user` ADC file: the refresh grant yields a token for
//! `user:CLIENT_ID`); `POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` is the IAM Credentials call
//! (the caller needs `POST /emulator/token_creator?sa=EMAIL&principal=P`, else 403; an unknown account is 404),
//! yielding a token for `serviceAccount:EMAIL` that expires after `POST /emulator/token_lifetime?secs=N` (3600 by
//! default). Every request's bearer token names its principal (none: `anonymous`; unknown or expired: 401);
//! `POST /emulator/grant?name=projects/P/secrets/S&principal=P` limits a secret's readers to the principals
//! granted; `stats` counts access calls by principal and generateAccessToken calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    fn as_str(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }
}

struct Version {
    data: Vec<u8>,
    state: VersionState,
    created: SystemTime,
    destroyed: Option<SystemTime>,
}

struct SecretEntry {
    created: SystemTime,
    labels: Value,
    versions: Vec<Version>,
    /// Version aliases (`prod` -> 2).
    aliases: BTreeMap<String, usize>,
}

#[derive(Default)]
struct Store {
    secrets: BTreeMap<String, SecretEntry>,
    denied: BTreeSet<String>,
    access_by_name: HashMap<String, u64>,
    requests: u64,
    latency: Duration,
    fail_next: u64,
    /// 503 (UNAVAILABLE) or 429 (RESOURCE_EXHAUSTED) for the failures above.
    fail_throttled: bool,
    corrupt_next: u64,
    /// Bearer token to (principal, expiry).
    tokens: HashMap<String, (String, SystemTime)>,
    /// Service account to the principals that may impersonate it.
    token_creators: BTreeMap<String, BTreeSet<String>>,
    /// Secret to its only readers, when limited.
    readers: BTreeMap<String, BTreeSet<String>>,
    access_by_principal: HashMap<String, u64>,
    generate_access_token: u64,
    token_lifetime: Option<Duration>,
}

type Shared = Arc<Mutex<Store>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Store> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The router: the v1 REST API plus `/emulator/` controls.
pub fn router() -> Router {
    let state: Shared = Arc::default();
    Router::new()
        .route("/emulator/stats", get(stats))
        .route("/emulator/reset", post(reset))
        .route("/emulator/deny", post(deny))
        .route("/emulator/latency", post(latency))
        .route("/emulator/fail", post(fail))
        .route("/emulator/corrupt", post(corrupt))
        .route("/emulator/token_creator", post(token_creator))
        .route("/emulator/grant", post(grant))
        .route("/emulator/token_lifetime", post(token_lifetime))
        .route("/token", post(oauth_token))
        .route("/v1/{*path}", any(api))
        .with_state(state)
}

fn status(code: StatusCode, status: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"code": code.as_u16(), "message": message.into(), "status": status}});
    (code, Json(body)).into_response()
}

fn not_found(what: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found or has no versions."),
    )
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn secret_json(name: &str, s: &SecretEntry) -> Value {
    let mut out = json!({
        "name": name,
        "createTime": time(s.created),
        "labels": s.labels,
        "etag": format!("\"{}\"", s.versions.len()),
    });
    // A regional secret lives in its location: it has no replication policy.
    if !name.contains("/locations/") {
        out["replication"] = json!({"automatic": {}});
    }
    if !s.aliases.is_empty() {
        // int64 values, as JSON strings.
        let aliases: serde_json::Map<String, Value> = s
            .aliases
            .iter()
            .map(|(alias, n)| (alias.clone(), json!(n.to_string())))
            .collect();
        out["versionAliases"] = Value::Object(aliases);
    }
    out
}

fn version_json(secret: &str, n: usize, v: &Version) -> Value {
    let mut out = json!({
        "name": format!("{secret}/versions/{n}"),
        "createTime": time(v.created),
        "state": v.state.as_str(),
        "replicationStatus": {"automatic": {}},
        "etag": format!("\"{n}\""),
        "clientSpecifiedPayloadChecksum": true,
    });
    if let Some(d) = v.destroyed {
        out["destroyTime"] = json!(time(d));
    }
    out
}

fn page<T: Clone>(items: &[T], params: &HashMap<String, String>) -> (Vec<T>, Option<String>) {
    let size = params
        .get("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(25)
        .min(25_000);
    let start = params
        .get("pageToken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (start + size).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    (slice, (end < items.len()).then(|| end.to_string()))
}

/// `name:TEXT` (substring) filters, the form readers use, joined with ` OR ` (`name:dev OR name:ray`); other
/// terms match everything.
fn matches_filter(name: &str, params: &HashMap<String, String>) -> bool {
    let id = name.rsplit('/').next().unwrap_or(name);
    match params.get("filter").map(String::as_str) {
        None | Some("") => true,
        Some(f) => f.split(" OR ").any(|term| {
            term.trim()
                .strip_prefix("name:")
                .is_none_or(|needle| id.contains(needle))
        }),
    }
}

/// The failure `/emulator/fail` asked for, if any is left.
fn injected_failure(store: &mut Store) -> Option<Response> {
    if store.fail_next == 0 {
        return None;
    }
    store.fail_next -= 1;
    Some(if store.fail_throttled {
        status(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Access requests' of service 'secretmanager.googleapis.com'.",
        )
    } else {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
    })
}

/// Google's default access token lifetime.
const TOKEN_LIFETIME: Duration = Duration::from_hours(1);

/// Issues a token for `principal`, valid for the configured lifetime.
fn issue_token(store: &mut Store, principal: String) -> (String, SystemTime) {
    let expires = SystemTime::now() + store.token_lifetime.unwrap_or(TOKEN_LIFETIME);
    let token = format!("ya29.emulator-{}", store.tokens.len() + 1);
    store.tokens.insert(token.clone(), (principal, expires));
    (token, expires)
}

/// The principal a request's bearer token names: `anonymous` without one, `None` (401) for an unknown or
/// expired one.
fn principal(store: &Store, headers: &HeaderMap) -> Option<String> {
    let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Some("anonymous".to_owned());
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or(auth);
    match store.tokens.get(token) {
        Some((principal, expires)) if SystemTime::now() < *expires => Some(principal.clone()),
        _ => None,
    }
}

/// OAuth2's token endpoint, the refresh grant of an `authorized_user` credential.
async fn oauth_token(State(state): State<Shared>, body: Bytes) -> Response {
    // Google's endpoint takes a form or JSON (google-cloud-auth sends JSON).
    let form: HashMap<String, String> =
        match serde_json::from_slice::<HashMap<String, Value>>(&body) {
            Ok(json) => json
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect(),
            Err(_) => form_urlencoded::parse(&body).into_owned().collect(),
        };
    let (Some("refresh_token"), Some(client)) = (
        form.get("grant_type").map(String::as_str),
        form.get("client_id"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "expected grant_type=refresh_token and client_id"})),
        )
            .into_response();
    };
    let mut store = lock(&state);
    let (token, _) = issue_token(&mut store, format!("user:{client}"));
    let lifetime = store.token_lifetime.unwrap_or(TOKEN_LIFETIME);
    Json(json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}))
        .into_response()
}

/// `POST projects/-/serviceAccounts/EMAIL:generateAccessToken`.
fn generate_access_token(store: &mut Store, caller: &str, account: &str) -> Response {
    store.generate_access_token += 1;
    let Some(creators) = store.token_creators.get(account) else {
        return status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Requested entity was not found: projects/-/serviceAccounts/{account}"),
        );
    };
    if !creators.contains(caller) {
        return status(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let (token, expires) = issue_token(store, format!("serviceAccount:{account}"));
    Json(json!({"accessToken": token, "expireTime": humantime::format_rfc3339_seconds(expires).to_string()}))
        .into_response()
}

// One match over the REST surface reads best whole.
#[allow(clippy::too_many_lines)]
async fn api(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches("/v1/").to_owned();
    let (resource, verb) = match path.rsplit_once(':') {
        Some((r, v)) if !v.contains('/') => (r.to_owned(), Some(v.to_owned())),
        _ => (path.clone(), None),
    };
    let delay = {
        let mut store = lock(&state);
        store.requests += 1;
        if let Some(failure) = injected_failure(&mut store) {
            return failure;
        }
        if verb.as_deref() == Some("access") {
            store.latency
        } else {
            Duration::ZERO
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // A regional resource (`projects/P/locations/L/...`) is served as a global one is; its full name keeps it
    // apart from the global secret of the same id.
    let mut segments: Vec<&str> = resource.split('/').collect();
    let parent = match segments.as_slice() {
        ["projects", p, "locations", l, ..] => {
            let parent = format!("projects/{p}/locations/{l}");
            segments.drain(2..4);
            parent
        }
        ["projects", p, ..] => format!("projects/{p}"),
        _ => String::new(),
    };
    let mut store = lock(&state);
    let Some(caller) = principal(&store, &headers) else {
        return status(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    match (method.clone(), segments.as_slice(), verb.as_deref()) {
        (
            Method::POST,
            ["projects", "-", "serviceAccounts", account],
            Some("generateAccessToken"),
        ) => generate_access_token(&mut store, &caller, account),
        (Method::GET, ["projects", _, "secrets"], None) => {
            let all: Vec<Value> = store
                .secrets
                .iter()
                .filter(|(name, _)| {
                    name.starts_with(&format!("{resource}/")) && matches_filter(name, &params)
                })
                .map(|(name, s)| secret_json(name, s))
                .collect();
            let (items, next) = page(&all, &params);
            let mut out = json!({"secrets": items, "totalSize": all.len()});
            if let Some(next) = next {
                out["nextPageToken"] = json!(next);
            }
            Json(out).into_response()
        }
        (Method::POST, ["projects", _, "secrets"], None) => {
            create_secret(&mut store, &resource, &params, &body)
        }
        (Method::GET, ["projects", _, "secrets", _], None) => match store.secrets.get(&resource) {
            Some(s) => Json(secret_json(&resource, s)).into_response(),
            None => not_found(&format!("Secret [{resource}]")),
        },
        (Method::PATCH, ["projects", _, "secrets", _], None) => {
            update_secret(&mut store, &resource, &params, &body)
        }
        (Method::DELETE, ["projects", _, "secrets", _], None) => {
            match store.secrets.remove(&resource) {
                Some(_) => Json(json!({})).into_response(),
                None => not_found(&format!("Secret [{resource}]")),
            }
        }
        (Method::POST, ["projects", _, "secrets", _], Some("addVersion")) => {
            add_version(&mut store, &resource, &body)
        }
        (Method::GET, ["projects", _, "secrets", _, "versions"], None) => {
            let secret_name = resource.trim_end_matches("/versions").to_owned();
            let Some(secret) = store.secrets.get(&secret_name) else {
                return not_found(&format!("Secret [{secret_name}]"));
            };
            // Newest first, as the service lists them.
            let all: Vec<Value> = secret
                .versions
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| version_json(&secret_name, i + 1, v))
                .collect();
            let (items, next) = page(&all, &params);
            let mut out = json!({"versions": items, "totalSize": all.len()});
            if let Some(next) = next {
                out["nextPageToken"] = json!(next);
            }
            Json(out).into_response()
        }
        (_, ["projects", _, "secrets", s, "versions", v], verb) => {
            let secret_name = format!("{parent}/secrets/{s}");
            version_call(
                &mut store,
                &caller,
                &method,
                (&resource, &secret_name, v, verb),
                uri.path(),
            )
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Method not found: {} {}", method, uri.path()),
        ),
    }
}

/// `POST projects/P/secrets?secretId=S`.
fn create_secret(
    store: &mut Store,
    resource: &str,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let Some(id) = params.get("secretId") else {
        return status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "secretId is required.",
        );
    };
    let name = format!("{resource}/{id}");
    if store.secrets.contains_key(&name) {
        return status(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("Secret [{name}] already exists."),
        );
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let entry = SecretEntry {
        created: SystemTime::now(),
        labels: request["labels"].clone(),
        versions: Vec::new(),
        aliases: BTreeMap::new(),
    };
    let out = secret_json(&name, &entry);
    store.secrets.insert(name, entry);
    Json(out).into_response()
}

/// `PATCH projects/P/secrets/S?updateMask=...`: labels and version aliases.
fn update_secret(
    store: &mut Store,
    resource: &str,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(secret) = store.secrets.get_mut(resource) else {
        return not_found(&format!("Secret [{resource}]"));
    };
    let mask = params.get("updateMask").map_or("", String::as_str);
    for field in mask.split(',').filter(|f| !f.is_empty()) {
        match field {
            "labels" => secret.labels = request["labels"].clone(),
            "versionAliases" | "version_aliases" => {
                let mut aliases = BTreeMap::new();
                for (alias, n) in request["versionAliases"].as_object().into_iter().flatten() {
                    let n = n
                        .as_str()
                        .and_then(|n| n.parse::<usize>().ok())
                        .or_else(|| n.as_u64().and_then(|n| usize::try_from(n).ok()));
                    match n {
                        Some(n) if (1..=secret.versions.len()).contains(&n) => {
                            aliases.insert(alias.clone(), n);
                        }
                        _ => {
                            return status(
                                StatusCode::BAD_REQUEST,
                                "INVALID_ARGUMENT",
                                format!("Alias [{alias}] points to no version of [{resource}]."),
                            );
                        }
                    }
                }
                secret.aliases = aliases;
            }
            other => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    format!("The emulator cannot update field [{other}]."),
                );
            }
        }
    }
    Json(secret_json(resource, secret)).into_response()
}

/// `POST projects/P/secrets/S:addVersion`.
fn add_version(store: &mut Store, resource: &str, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(data) = request["payload"]["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "payload.data must be base64.",
        );
    };
    let claimed = request["payload"]["dataCrc32c"]
        .as_str()
        .and_then(|c| c.parse::<u32>().ok());
    if claimed.is_some_and(|c| c != crc32c::crc32c(&data)) {
        return status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Checksum mismatch for payload data.",
        );
    }
    let Some(secret) = store.secrets.get_mut(resource) else {
        return not_found(&format!("Secret [{resource}]"));
    };
    secret.versions.push(Version {
        data,
        state: VersionState::Enabled,
        created: SystemTime::now(),
        destroyed: None,
    });
    let n = secret.versions.len();
    Json(version_json(resource, n, &secret.versions[n - 1])).into_response()
}

/// Every call on one version: get, `:access`, `:disable`, `:enable`, `:destroy`.
/// A call on `projects/P/secrets/S/versions/V[:verb]`, named by (resource, secret, version, verb).
fn version_call(
    store: &mut Store,
    caller: &str,
    method: &Method,
    (resource, secret_name, v, verb): (&str, &str, &str, Option<&str>),
    uri_path: &str,
) -> Response {
    let permission = if verb == Some("access") {
        "secretmanager.versions.access"
    } else {
        "secretmanager.versions.get"
    };
    let not_a_reader = store
        .readers
        .get(secret_name)
        .is_some_and(|readers| !readers.contains(caller));
    if store.denied.contains(secret_name) || not_a_reader {
        return status(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "Permission '{permission}' denied for resource '{resource}' (or it may not exist)."
            ),
        );
    }
    let Some(secret) = store.secrets.get_mut(secret_name) else {
        return not_found(&format!("Secret [{secret_name}]"));
    };
    let n = if v == "latest" {
        secret.versions.len()
    } else if let Some(&n) = secret.aliases.get(v) {
        n
    } else {
        v.parse::<usize>().unwrap_or(0)
    };
    if n == 0 || n > secret.versions.len() {
        return not_found(&format!("Secret Version [{resource}]"));
    }
    let version_name = format!("{secret_name}/versions/{n}");
    let version = &mut secret.versions[n - 1];
    match (method.clone(), verb) {
        (Method::GET, None) => Json(version_json(secret_name, n, version)).into_response(),
        (Method::GET, Some("access")) => {
            if version.state != VersionState::Enabled {
                return status(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    format!(
                        "Secret Version [{version_name}] is in {} state.",
                        version.state.as_str()
                    ),
                );
            }
            let data = base64::engine::general_purpose::STANDARD.encode(&version.data);
            let mut crc = crc32c::crc32c(&version.data);
            if store.corrupt_next > 0 {
                store.corrupt_next -= 1;
                crc ^= 1;
            }
            let crc = crc.to_string();
            *store
                .access_by_name
                .entry(version_name.clone())
                .or_default() += 1;
            *store
                .access_by_principal
                .entry(caller.to_owned())
                .or_default() += 1;
            Json(json!({"name": version_name, "payload": {"data": data, "dataCrc32c": crc}}))
                .into_response()
        }
        (Method::POST, Some(action @ ("disable" | "enable" | "destroy"))) => {
            if version.state == VersionState::Destroyed {
                return status(
                    StatusCode::BAD_REQUEST,
                    "FAILED_PRECONDITION",
                    format!("Secret Version [{version_name}] is in DESTROYED state."),
                );
            }
            version.state = match action {
                "disable" => VersionState::Disabled,
                "enable" => VersionState::Enabled,
                _ => {
                    version.data.fill(0);
                    version.data.clear();
                    version.destroyed = Some(SystemTime::now());
                    VersionState::Destroyed
                }
            };
            Json(version_json(secret_name, n, version)).into_response()
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Method not found: {uri_path}"),
        ),
    }
}

async fn stats(State(state): State<Shared>) -> Json<Value> {
    let store = lock(&state);
    let total: u64 = store.access_by_name.values().sum();
    Json(json!({
        "access": total,
        "access_by_name": store.access_by_name,
        "access_by_principal": store.access_by_principal,
        "generate_access_token": store.generate_access_token,
        "requests": store.requests,
    }))
}

/// `?sa=EMAIL&principal=P`: P may impersonate EMAIL (which then exists).
async fn token_creator(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(sa), Some(principal)) = (params.get("sa"), params.get("principal")) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state)
        .token_creators
        .entry(sa.clone())
        .or_default()
        .insert(principal.clone());
    StatusCode::NO_CONTENT
}

/// `?name=projects/P/secrets/S&principal=P`: only the principals granted read the secret.
async fn grant(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let (Some(name), Some(principal)) = (params.get("name"), params.get("principal")) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state)
        .readers
        .entry(name.clone())
        .or_default()
        .insert(principal.clone());
    StatusCode::NO_CONTENT
}

/// `?secs=N`: tokens issued from now on expire after N seconds.
async fn token_lifetime(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let Some(secs) = params.get("secs").and_then(|v| v.parse().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&state).token_lifetime = Some(Duration::from_secs(secs));
    StatusCode::NO_CONTENT
}

async fn reset(State(state): State<Shared>) -> StatusCode {
    *lock(&state) = Store::default();
    StatusCode::NO_CONTENT
}

async fn deny(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let Some(name) = params.get("name") else {
        return StatusCode::BAD_REQUEST;
    };
    let mut store = lock(&state);
    if params.get("allow").is_some_and(|v| v == "true") {
        store.denied.remove(name);
    } else {
        store.denied.insert(name.clone());
    }
    StatusCode::NO_CONTENT
}

async fn latency(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let ms = params.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    lock(&state).latency = Duration::from_millis(ms);
    StatusCode::NO_CONTENT
}

async fn fail(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    let mut store = lock(&state);
    store.fail_next = params
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    store.fail_throttled = params.get("status").is_some_and(|s| s == "429");
    StatusCode::NO_CONTENT
}

async fn corrupt(
    State(state): State<Shared>,
    Query(params): Query<HashMap<String, String>>,
) -> StatusCode {
    lock(&state).corrupt_next = params
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    StatusCode::NO_CONTENT
}

/// Serves the emulator on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The emulator running on its own thread and runtime, on a free loopback port, stopped on drop.
pub struct GcpEmulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    _server: crate::Background,
}

impl GcpEmulator {
    /// Starts the emulator.
    pub fn start() -> GcpEmulator {
        let (addr, server) = crate::Background::start(|listener, stopped| async move {
            serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        GcpEmulator {
            endpoint: format!("http://{addr}"),
            addr,
            _server: server,
        }
    }

    /// Creates a secret (if missing) and adds a version with `data`; returns the version number.
    pub fn add_version(&self, project: &str, secret: &str, data: &[u8]) -> u64 {
        self.add_version_under(&format!("projects/{project}"), secret, data)
    }

    /// The same for a regional secret of `project` in `location`.
    pub fn add_regional_version(
        &self,
        project: &str,
        location: &str,
        secret: &str,
        data: &[u8],
    ) -> u64 {
        self.add_version_under(
            &format!("projects/{project}/locations/{location}"),
            secret,
            data,
        )
    }

    fn add_version_under(&self, parent: &str, secret: &str, data: &[u8]) -> u64 {
        let parent = format!("{}/v1/{parent}/secrets", self.endpoint);
        crate::http(
            "POST",
            &format!("{parent}?secretId={secret}"),
            &[],
            r#"{"replication":{"automatic":{}}}"#,
        );
        let body =
            json!({"payload": {"data": base64::engine::general_purpose::STANDARD.encode(data)}})
                .to_string();
        let reply = crate::http(
            "POST",
            &format!("{parent}/{secret}:addVersion"),
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(reply.status, 200, "addVersion: {}", reply.body);
        reply.json()["name"]
            .as_str()
            .and_then(|n| n.rsplit('/').next())
            .and_then(|n| n.parse().ok())
            .expect("version")
    }

    /// Calls a version action (`disable`, `enable`, `destroy`).
    pub fn version_action(&self, project: &str, secret: &str, version: u64, action: &str) {
        let url = format!(
            "{}/v1/projects/{project}/secrets/{secret}/versions/{version}:{action}",
            self.endpoint
        );
        let reply = crate::http("POST", &url, &[("Content-Type", "application/json")], "{}");
        assert_eq!(reply.status, 200, "{action}: {}", reply.body);
    }

    /// Denies (or with `allow`, allows again) access to `projects/P/secrets/S`.
    pub fn deny(&self, project: &str, secret: &str, allow: bool) {
        let url = format!(
            "{}/emulator/deny?name=projects/{project}/secrets/{secret}&allow={allow}",
            self.endpoint
        );
        crate::http("POST", &url, &[], "");
    }

    /// Makes the next `count` requests fail with 503 UNAVAILABLE.
    pub fn fail_next(&self, count: u64) {
        crate::http(
            "POST",
            &format!("{}/emulator/fail?count={count}", self.endpoint),
            &[],
            "",
        );
    }

    /// Makes the next `count` requests fail with 429 RESOURCE_EXHAUSTED (quota exceeded).
    pub fn throttle_next(&self, count: u64) {
        crate::http(
            "POST",
            &format!("{}/emulator/fail?count={count}&status=429", self.endpoint),
            &[],
            "",
        );
    }

    /// Makes the next `count` access answers carry a wrong `dataCrc32c`.
    pub fn corrupt_next(&self, count: u64) {
        crate::http(
            "POST",
            &format!("{}/emulator/corrupt?count={count}", self.endpoint),
            &[],
            "",
        );
    }

    /// Delays every access call.
    pub fn set_latency(&self, latency: Duration) {
        crate::http(
            "POST",
            &format!(
                "{}/emulator/latency?ms={}",
                self.endpoint,
                latency.as_millis()
            ),
            &[],
            "",
        );
    }

    /// Lets `principal` impersonate the service account `sa` (which then exists).
    pub fn allow_impersonation(&self, sa: &str, principal: &str) {
        let url = format!(
            "{}/emulator/token_creator?sa={sa}&principal={principal}",
            self.endpoint
        );
        crate::http("POST", &url, &[], "");
    }

    /// Limits the readers of `projects/P/secrets/S` to the principals granted.
    pub fn grant_reader(&self, project: &str, secret: &str, principal: &str) {
        let url = format!(
            "{}/emulator/grant?name=projects/{project}/secrets/{secret}&principal={principal}",
            self.endpoint
        );
        crate::http("POST", &url, &[], "");
    }

    /// Tokens issued from now on expire after `lifetime`.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        let url = format!(
            "{}/emulator/token_lifetime?secs={}",
            self.endpoint,
            lifetime.as_secs()
        );
        crate::http("POST", &url, &[], "");
    }

    /// The emulator's counters (`access`, `access_by_principal`, `generate_access_token`, ...).
    pub fn stats(&self) -> serde_json::Value {
        crate::http("GET", &format!("{}/emulator/stats", self.endpoint), &[], "").json()
    }

    /// Total access calls served.
    pub fn access_count(&self) -> u64 {
        crate::http("GET", &format!("{}/emulator/stats", self.endpoint), &[], "").json()["access"]
            .as_u64()
            .unwrap_or(0)
    }
}

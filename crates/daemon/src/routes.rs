//! Request routing: authentication, access, the native and AWS-agent endpoints, health and metrics.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use keyway_api::{
    BatchItem, BatchRequest, BatchResponse, ListBody, MAX_BATCH, SecretBody, header, path,
};
use keyway_core::{Encoding, Lookup, Resolved, SecretRef, Source};
use zeroize::Zeroizing;

use crate::State;
use crate::audit::Event;
use crate::auth::{Access, Identity};
use crate::listen::Peer;
use crate::respond::{self, Failure, Reply};

pub(crate) async fn handle(state: &State, peer: Peer, request: Request<Incoming>) -> Reply {
    let (route, reply) = route(state, peer, request).await;
    state.shared.metrics.request(route, reply.status().as_u16());
    reply
}

async fn route(state: &State, peer: Peer, request: Request<Incoming>) -> (&'static str, Reply) {
    let method = request.method().clone();
    let uri_path = request.uri().path();
    match uri_path {
        path::HEALTHZ => return ("healthz", respond::text(StatusCode::OK, "ok\n")),
        path::READYZ => {
            let reply = if state.shared.draining.load(Ordering::SeqCst) {
                respond::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if state.shared.ready.load(Ordering::SeqCst) {
                respond::text(StatusCode::OK, "ready\n")
            } else {
                respond::text(StatusCode::SERVICE_UNAVAILABLE, "prefetching\n")
            };
            return ("readyz", reply);
        }
        _ => {}
    }
    if let Peer::Metrics(_) = peer {
        return match (uri_path, &method) {
            (path::METRICS, &Method::GET) => ("metrics", metrics(state)),
            (path::METRICS, _) => ("method", Failure::Method("GET").native()),
            (path::PING, _) => ("ping", respond::text(StatusCode::OK, "healthy")),
            _ => (
                "unknown",
                Failure::NoRoute(format!(
                    "no such endpoint {uri_path} on the metrics listener: it serves {}, {}, {} and {} only",
                    path::METRICS,
                    path::HEALTHZ,
                    path::READYZ,
                    path::PING
                ))
                .native(),
            ),
        };
    }
    // Every path but the native API's is the AWS agent's, answered as the agent answers.
    let Some(uri_path) = [path::SECRET, path::SECRETS, path::LIST, path::METRICS]
        .into_iter()
        .find(|native| *native == uri_path)
    else {
        return crate::agent::handle(state, peer, &request).await;
    };
    let identity = match authenticate(state, peer, request.headers()) {
        Ok(identity) => identity,
        Err(failure) => return ("unauthenticated", failure.native()),
    };
    let query = request.uri().query().unwrap_or("").to_owned();
    match (uri_path, &method) {
        (path::SECRET, &Method::GET) => (
            "secret",
            get_secret(state, &identity, &query, request.headers()).await,
        ),
        (path::SECRETS, &Method::POST) => ("secrets", batch(state, &identity, request).await),
        (path::LIST, &Method::GET) => ("list", list(state, &identity, &query).await),
        (path::METRICS, &Method::GET) => ("metrics", metrics(state)),
        (path::SECRETS, _) => ("method", Failure::Method("POST").native()),
        _ => ("method", Failure::Method("GET").native()),
    }
}

fn metrics(state: &State) -> Reply {
    respond::with_type(
        StatusCode::OK,
        state.shared.metrics.encode().into(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

/// Unix socket callers are who the kernel says; TCP callers must present a token, and never a forwarded
/// request.
fn authenticate(state: &State, peer: Peer, headers: &HeaderMap) -> Result<Identity, Failure> {
    let addr = match peer {
        Peer::Tcp { addr, .. } | Peer::Metrics(addr) => addr,
        Peer::Unix { uid, gid, pid } => return Ok(Identity::Unix { uid, gid, pid }),
    };
    if headers.contains_key(header::FORWARDED_FOR) {
        return Err(Failure::BadRequest(
            "forwarded requests are refused (X-Forwarded-For is set): call Keyway directly from the node"
                .into(),
        ));
    }
    let presented = headers
        .get(header::AWS_TOKEN)
        .or_else(|| headers.get(header::VAULT_TOKEN))
        .map(HeaderValue::as_bytes)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        });
    let Some(presented) = presented else {
        return Err(Failure::Unauthenticated(
            "missing token: send X-Aws-Parameters-Secrets-Token (or Authorization: Bearer) with the configured token"
                .into(),
        ));
    };
    if let Some(token) = state.tokens.check(presented) {
        Ok(Identity::Token { token })
    } else {
        tracing::warn!(peer = %addr, "request with a bad token refused");
        Err(Failure::Denied(
            "bad token: it matches no configured token".into(),
        ))
    }
}

struct Params<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Params<'a> {
    fn parse(query: &'a str) -> Params<'a> {
        Params(form_urlencoded::parse(query.as_bytes()).collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

fn lookup(ttl: Option<&str>, refresh: bool) -> Result<Lookup, Failure> {
    let ttl = ttl
        .map(str::parse::<keyway_core::Ttl>)
        .transpose()
        .map_err(Failure::BadRequest)?;
    Ok(Lookup {
        ttl,
        refresh_now: refresh,
    })
}

/// Parses and checks access, in that order, so a denial never depends on whether the secret exists.
pub(crate) fn admit(
    state: &State,
    identity: &Identity,
    route: &'static str,
    text: &str,
) -> Result<SecretRef, Failure> {
    let reference = state.resolver.parse(text).map_err(Failure::Resolve)?;
    check_access(state, identity, route, &reference)?;
    Ok(reference)
}

/// Whether the access rules let `identity` read `reference`; a refusal is audited.
pub(crate) fn check_access(
    state: &State,
    identity: &Identity,
    route: &'static str,
    reference: &SecretRef,
) -> Result<(), Failure> {
    if state.access.is_open() {
        // No rules: every caller may read, and the cached read path builds no secret path.
        return Ok(());
    }
    let secret_path = reference.secret_path();
    if state.access.allows(identity, &secret_path) {
        Ok(())
    } else {
        audit(
            state,
            identity,
            route,
            &secret_path,
            "denied",
            "access_denied",
        );
        Err(Failure::Denied(Access::denial(identity, &secret_path)))
    }
}

pub(crate) async fn resolve(
    state: &State,
    identity: &Identity,
    route: &'static str,
    reference: &SecretRef,
    lookup: Lookup,
) -> Result<Resolved, Failure> {
    let result = state.resolver.resolve(reference, lookup).await;
    if state.audit.enabled() {
        let outcome = match &result {
            Ok(r) => r.source.as_str(),
            Err(e) => e.kind().as_str(),
        };
        audit(
            state,
            identity,
            route,
            &reference.to_string(),
            "allowed",
            outcome,
        );
    }
    if result.is_ok() {
        state.shared.metrics.read(|| reference.secret_path());
    }
    result.map_err(Failure::Resolve)
}

fn audit(
    state: &State,
    identity: &Identity,
    route: &'static str,
    reference: &str,
    decision: &'static str,
    outcome: &str,
) {
    state.audit.record(&Event {
        caller: identity,
        route,
        reference,
        decision,
        outcome,
    });
}

async fn get_secret(state: &State, identity: &Identity, query: &str, headers: &HeaderMap) -> Reply {
    let params = Params::parse(query);
    let result = async {
        let text = params.get("ref").ok_or_else(|| {
            Failure::BadRequest("missing `ref` parameter: GET /v1/secret?ref=aws-sm://NAME".into())
        })?;
        let lookup = lookup(params.get("ttl"), params.flag("refresh"))?;
        let reference = admit(state, identity, "secret", text)?;
        let resolved = resolve(state, identity, "secret", &reference, lookup).await?;
        Ok::<_, Failure>((reference, resolved))
    }
    .await;
    let (reference, resolved) = match result {
        Ok(ok) => ok,
        Err(failure) => return failure.native(),
    };
    let raw = headers
        .get(ACCEPT)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
    let mut reply = if raw {
        respond::secret(
            StatusCode::OK,
            resolved.secret.value.expose().to_vec(),
            "application/octet-stream",
        )
    } else {
        let body = secret_json(&reference, &resolved);
        respond::secret(StatusCode::OK, body, "application/json")
    };
    add_freshness(&mut reply, &resolved);
    reply
}

/// `x-keyway-source`, a name made once, not parsed from text (and allocated) per answer.
const SOURCE: hyper::header::HeaderName = hyper::header::HeaderName::from_static(header::SOURCE);

pub(crate) fn add_freshness(reply: &mut Reply, resolved: &Resolved) {
    let headers = reply.headers_mut();
    headers.insert(header::AGE, respond::age(resolved.age.as_secs()));
    headers.insert(SOURCE, HeaderValue::from_static(resolved.source.as_str()));
}

/// The value as JSON text (`text`) or base64 (`base64`), in a buffer zeroized on drop.
pub(crate) fn encoded_value(resolved: &Resolved) -> (Zeroizing<String>, &'static str) {
    let bytes = resolved.secret.value.expose();
    match std::str::from_utf8(bytes) {
        Ok(text) if resolved.secret.encoding == Encoding::Text => {
            (Zeroizing::new(text.to_owned()), keyway_api::ENCODING_TEXT)
        }
        _ => (
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes)),
            keyway_api::ENCODING_BASE64,
        ),
    }
}

fn secret_body<'a>(
    reference: &SecretRef,
    resolved: &'a Resolved,
    value: &'a str,
    encoding: &'static str,
) -> SecretBody<&'a str> {
    let meta = &resolved.secret.meta;
    SecretBody {
        reference: reference.to_string(),
        value,
        encoding: encoding.to_owned(),
        name: meta.name.clone(),
        version: meta.version_id.clone(),
        stages: meta.stages.clone(),
        created: meta
            .created
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
        fetched_at: humantime::format_rfc3339_millis(resolved.fetched_at).to_string(),
        age_seconds: resolved.age.as_secs(),
        stale: resolved.source == Source::Stale,
        source: resolved.source.as_str().to_owned(),
    }
}

fn secret_json(reference: &SecretRef, resolved: &Resolved) -> Vec<u8> {
    let (value, encoding) = encoded_value(resolved);
    serde_json::to_vec(&secret_body(reference, resolved, &value, encoding)).unwrap_or_default()
}

async fn batch(state: &State, identity: &Identity, request: Request<Incoming>) -> Reply {
    let limit = state.settings.max_request_bytes;
    // The body has as long as the head had (hyper times the head only): a client that announces a body and
    // never sends it must not hold a connection.
    let wait = state.settings.header_timeout;
    let collect = http_body_util::Limited::new(request.into_body(), limit).collect();
    let body = match tokio::time::timeout(wait, collect).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Failure::TooLarge(format!(
                "request body over {limit} bytes (max_request_bytes); split the batch"
            ))
            .native();
        }
        Err(_) => {
            return Failure::SlowBody(format!(
                "the request body did not arrive within {} (header_timeout); send it with the request",
                humantime::format_duration(wait)
            ))
            .native();
        }
    };
    let parsed: BatchRequest = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Failure::BadRequest(format!(
                "body is not a batch request ({}); send {{\"refs\": [\"aws-sm://NAME\", ...]}}",
                keyway_core::JsonProblem::from(&e)
            ))
            .native();
        }
    };
    if parsed.refs.len() > MAX_BATCH {
        return Failure::TooLarge(format!(
            "{} references in one batch; send at most {MAX_BATCH}",
            parsed.refs.len()
        ))
        .native();
    }
    let lookup = match lookup(parsed.ttl.as_deref(), parsed.refresh) {
        Ok(lookup) => lookup,
        Err(failure) => return failure.native(),
    };
    let items = parsed.refs.iter().map(|text| async move {
        let reference = admit(state, identity, "secrets", text)?;
        let resolved = resolve(state, identity, "secrets", &reference, lookup).await?;
        Ok::<_, Failure>((reference, resolved))
    });
    let results = futures::future::join_all(items).await;
    let values: Vec<Option<(Zeroizing<String>, &'static str)>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|(_, resolved)| encoded_value(resolved)))
        .collect();
    let response = BatchResponse {
        results: results
            .iter()
            .zip(&values)
            .map(|(result, value)| match (result, value) {
                (Ok((reference, resolved)), Some((value, encoding))) => {
                    BatchItem::Secret(secret_body(reference, resolved, value, encoding))
                }
                (Err(failure), _) => BatchItem::Error(failure.body()),
                (Ok(_), None) => unreachable!("every success has a value"),
            })
            .collect(),
    };
    let body = serde_json::to_vec(&response).unwrap_or_default();
    respond::secret(StatusCode::OK, body, "application/json")
}

async fn list(state: &State, identity: &Identity, query: &str) -> Reply {
    let params = Params::parse(query);
    let Some(provider) = params.get("provider") else {
        return Failure::BadRequest(
            "missing `provider` parameter: GET /v1/list?provider=aws-sm".into(),
        )
        .native();
    };
    let names = match state.resolver.list(provider, params.get("filter")).await {
        Ok(names) => names,
        Err(e) => return Failure::Resolve(e).native(),
    };
    // Only the names this caller could read: listing reveals nothing the access rules hide.
    let names = names
        .into_iter()
        .filter(|name| {
            state
                .access
                .allows(identity, &format!("{provider}://{name}"))
        })
        .collect();
    respond::json(
        StatusCode::OK,
        &ListBody {
            provider: provider.to_owned(),
            names,
        },
    )
}

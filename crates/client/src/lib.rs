//! A client of the Keyway daemon over its unix socket, answering with the core's own types
//! ([`keyway_core::Resolved`], [`keyway_core::Error`]) so callers treat daemon and direct access alike.
//!
//! Each call opens one connection (a unix socket connect costs microseconds) and the daemon identifies the
//! caller by its peer credentials: no token is involved. Response buffers are zeroized after parsing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use keyway_api::{BatchItem, BatchRequest, BatchResponse, ErrorBody, ListBody, SecretBody, path};
use keyway_core::{
    Encoding, Error, ErrorKind, Lookup, Resolved, Secret, SecretMeta, SecretValue, Source, Ttl,
    Upstream,
};
use zeroize::Zeroizing;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A daemon at a unix socket path. Keep-alive connections are reused: idle ones wait in a small pool, so a
/// process making many calls pays one connect, not one per call. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Sender>>>,
}

/// Idle connections kept per client: a sequential caller needs one, and every idle connection holds one of the
/// daemon's per-listener connection slots, which hundreds of worker processes on a node share.
const MAX_IDLE: usize = 2;

fn remote(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::Remote {
        kind,
        message: message.into(),
        upstream: None,
    }
}

impl Client {
    /// A client of the daemon listening at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            idle: std::sync::Arc::default(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a daemon accepts connections at the socket (a synchronous connect, no request).
    pub fn is_listening(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), Error> {
        let unreachable = |e: &dyn std::fmt::Display| {
            remote(
                ErrorKind::Unavailable,
                format!(
                    "cannot talk to the keyway daemon at {}: {e}; start `keyway serve` or use --daemon never",
                    self.socket.display()
                ),
            )
        };
        let build = || {
            let mut request = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(hyper::header::HOST, "keyway");
            if body.is_some() {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            request
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| remote(ErrorKind::Invalid, format!("cannot build the request: {e}")))
        };
        // A pooled connection may have been closed by the daemon (idle timeout, restart): every request is a
        // read, so it is safe to send it again once on a fresh connection.
        let pooled = self.take_idle();
        let reused = pooled.is_some();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => self.connect().await.map_err(|e| unreachable(&e))?,
        };
        let response = match sender.send_request(build()?).await {
            Ok(response) => response,
            Err(_) if reused => {
                sender = self.connect().await.map_err(|e| unreachable(&e))?;
                sender
                    .send_request(build()?)
                    .await
                    .map_err(|e| unreachable(&e))?
            }
            Err(e) => return Err(unreachable(&e)),
        };
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        self.put_idle(sender);
        Ok((status, Zeroizing::new(Vec::from(bytes))))
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends when the sender is dropped (pool eviction, client drop) or the daemon closes.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "daemon connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Resolves one reference through the daemon.
    pub async fn resolve(&self, reference: &str, lookup: Lookup) -> Result<Resolved, Error> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("ref", reference);
        if let Some(ttl) = lookup.ttl {
            query.append_pair("ttl", &ttl_text(ttl));
        }
        if lookup.refresh_now {
            query.append_pair("refresh", "true");
        }
        let uri = format!("{}?{}", path::SECRET, query.finish());
        let (status, body) = self.call(Method::GET, &uri, None).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        let parsed: SecretBody<Zeroizing<String>> =
            serde_json::from_slice(&body).map_err(|e| protocol(&e))?;
        into_resolved(parsed)
    }

    /// Resolves many references in one request; one result per reference, in order.
    pub async fn resolve_all(
        &self,
        references: &[String],
        lookup: Lookup,
    ) -> Result<Vec<Result<Resolved, Error>>, Error> {
        let request = BatchRequest {
            refs: references.to_vec(),
            ttl: lookup.ttl.map(ttl_text),
            refresh: lookup.refresh_now,
        };
        let body = serde_json::to_vec(&request).map_err(|e| protocol(&e))?;
        let (status, body) = self.call(Method::POST, path::SECRETS, Some(body)).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        let parsed: BatchResponse<Zeroizing<String>> =
            serde_json::from_slice(&body).map_err(|e| protocol(&e))?;
        Ok(parsed
            .results
            .into_iter()
            .map(|item| match item {
                BatchItem::Secret(secret) => into_resolved(secret),
                BatchItem::Error(error) => Err(from_body(error)),
            })
            .collect())
    }

    /// Whether the daemon is ready (`/readyz`: its prefetch finished and it is not draining), or with `live`
    /// only whether it answers (`/healthz`). `Ok(Err(why))` when it answers but is not ready (`prefetching`,
    /// `draining`); `Err` when it cannot be reached.
    pub async fn status(&self, live: bool) -> Result<Result<(), String>, Error> {
        let uri = if live { path::HEALTHZ } else { path::READYZ };
        let (status, body) = self.call(Method::GET, uri, None).await?;
        if status.is_success() {
            return Ok(Ok(()));
        }
        let why = String::from_utf8_lossy(&body).trim().to_owned();
        if status == StatusCode::SERVICE_UNAVAILABLE && !why.is_empty() {
            return Ok(Err(why));
        }
        Err(error_from(status, &body))
    }

    /// Lists the secret names of a provider instance (those the caller may read).
    pub async fn list(&self, provider: &str, filter: Option<&str>) -> Result<Vec<String>, Error> {
        // The serializer is not Send: gone before the await, so this future can run on any thread.
        let uri = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("provider", provider);
            if let Some(filter) = filter {
                query.append_pair("filter", filter);
            }
            format!("{}?{}", path::LIST, query.finish())
        };
        let (status, body) = self.call(Method::GET, &uri, None).await?;
        if !status.is_success() {
            return Err(error_from(status, &body));
        }
        let parsed: ListBody = serde_json::from_slice(&body).map_err(|e| protocol(&e))?;
        Ok(parsed.names)
    }
}

fn ttl_text(ttl: Ttl) -> String {
    match ttl {
        Ttl::Bypass => "0".to_owned(),
        Ttl::For(d) => format!("{}ms", d.as_millis().max(1)),
        Ttl::Forever => "-1".to_owned(),
    }
}

fn protocol(e: &serde_json::Error) -> Error {
    remote(
        ErrorKind::Unavailable,
        format!(
            "the keyway daemon answered something unexpected ({e}); are CLI and daemon the same version?"
        ),
    )
}

fn from_body(body: ErrorBody) -> Error {
    let detail = body.error;
    Error::Remote {
        kind: ErrorKind::from_name(&detail.kind).unwrap_or(ErrorKind::Invalid),
        message: detail.message,
        upstream: Upstream::from_parts(detail.upstream_code, detail.failure.as_deref()),
    }
}

fn error_from(status: StatusCode, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => from_body(parsed),
        Err(_) => remote(
            ErrorKind::Unavailable,
            format!("the keyway daemon answered {status}"),
        ),
    }
}

fn into_resolved(mut body: SecretBody<Zeroizing<String>>) -> Result<Resolved, Error> {
    let text = std::mem::take(&mut *body.value);
    let (value, encoding) = if body.encoding == keyway_api::ENCODING_BASE64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(Zeroizing::new(text).as_bytes())
            .map_err(|_| remote(ErrorKind::Unavailable, "the daemon sent invalid base64"))?;
        (SecretValue::new(bytes), Encoding::Binary)
    } else {
        (SecretValue::from(text), Encoding::Text)
    };
    let time = |t: &str| humantime::parse_rfc3339(t).ok();
    let source = match body.source.as_str() {
        "miss" => Source::Miss,
        "stale" => Source::Stale,
        _ => Source::Hit,
    };
    Ok(Resolved {
        secret: Secret {
            value,
            encoding,
            meta: SecretMeta {
                name: body.name,
                version_id: body.version,
                stages: body.stages,
                created: body.created.as_deref().and_then(time),
                attributes: std::collections::BTreeMap::new(),
            }
            .into(),
        },
        fetched_at: time(&body.fetched_at).unwrap_or_else(SystemTime::now),
        age: Duration::from_secs(body.age_seconds),
        source,
    })
}

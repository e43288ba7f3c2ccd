//! A fault-injecting HTTP proxy to put between Keyway and moto or the GCP emulator, switched during a test:
//! pass through, add latency, answer throttling or server errors (all requests or one in N), drop the
//! connection without an answer, hold requests forever (a black hole), or refuse connections. It counts every
//! request that reaches it, which is every upstream call Keyway makes, retries included.
//!
//! It speaks HTTP/1.1 on both sides (hyper), so a fault applies per request even on keep-alive connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the proxy does to the requests it receives from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward unchanged.
    Pass,
    /// Forward after a delay.
    Latency(Duration),
    /// Answer `code` (429 throttling, 5xx) in the upstream's error shape to one request in every `every`
    /// (1: all); forward the others.
    Status {
        /// The HTTP status.
        code: u16,
        /// One in `every` requests gets it.
        every: u64,
    },
    /// Answer every request with HTTP `status` and the upstream's error `code` (AWS `__type`, Google's
    /// `status`) in its error shape.
    Error {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: &'static str,
    },
    /// Close the connection without answering.
    Drop,
    /// Accept and read, never answer.
    Blackhole,
    /// Close new connections at once.
    Refuse,
}

/// The upstream's error shape for injected answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// AWS JSON protocol (`__type`, `x-amzn-ErrorType`).
    Aws,
    /// Google's `google.rpc.Status`.
    Gcp,
    /// Vault's `{"errors": [...]}`.
    Vault,
}

struct State {
    upstream: SocketAddr,
    flavor: Flavor,
    fault: Mutex<Fault>,
    requests: AtomicU64,
    forwarded: AtomicU64,
    injected: AtomicU64,
    /// Each request's method and path, in order.
    seen: Mutex<Vec<String>>,
}

/// The proxy on a free loopback port, on its own thread and runtime, stopped on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<State>,
    _server: crate::Background,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(body: String) -> Body {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed()
}

/// The error code the upstream answers a throttle (429) or a server error (anything else) with.
fn default_code(flavor: Flavor, status: u16) -> &'static str {
    match (flavor, status) {
        (Flavor::Aws, 429) => "ThrottlingException",
        (Flavor::Aws, _) => "InternalServiceError",
        (Flavor::Gcp, 429) => "RESOURCE_EXHAUSTED",
        (Flavor::Gcp, _) => "UNAVAILABLE",
        (Flavor::Vault, 429) => "rate limit quota exceeded",
        (Flavor::Vault, _) => "Vault is sealed",
    }
}

fn injected(flavor: Flavor, http_status: u16, error_code: &'static str) -> Response<Body> {
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (body, aws_type) = match flavor {
        Flavor::Aws => (
            format!(r#"{{"__type":"{error_code}","message":"injected failure"}}"#),
            Some(error_code),
        ),
        Flavor::Gcp => (
            format!(
                r#"{{"error":{{"code":{http_status},"message":"injected failure","status":"{error_code}"}}}}"#
            ),
            None,
        ),
        Flavor::Vault => (format!(r#"{{"errors":["{error_code}"]}}"#), None),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(t) = aws_type {
        headers.insert(
            "x-amzn-ErrorType",
            hyper::header::HeaderValue::from_static(t),
        );
    }
    response
}

async fn forward(state: &State, request: Request<Incoming>) -> Result<Response<Body>, String> {
    let stream = tokio::net::TcpStream::connect(state.upstream)
        .await
        .map_err(|e| format!("upstream connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("upstream handshake: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("upstream request: {e}"))?;
    state.forwarded.fetch_add(1, Ordering::Relaxed);
    Ok(response.map(http_body_util::BodyExt::boxed))
}

/// Whether request number `n` gets the fault's answer.
fn injects(fault: &Fault, n: u64) -> bool {
    match fault {
        Fault::Status { every, .. } => n.is_multiple_of((*every).max(1)),
        Fault::Pass | Fault::Refuse => false,
        Fault::Latency(_) | Fault::Error { .. } | Fault::Drop | Fault::Blackhole => true,
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Body>, String> {
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    state
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!("{} {}", request.method(), request.uri()));
    let fault = state
        .fault
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if !injects(&fault, n) {
        // Refuse acts at accept; a request already on an open connection passes.
        return forward(&state, request).await;
    }
    match fault {
        Fault::Pass | Fault::Refuse => forward(&state, request).await,
        Fault::Latency(delay) => {
            tokio::time::sleep(delay).await;
            forward(&state, request).await
        }
        Fault::Status { code: status, .. } | Fault::Error { status, .. } => {
            let code = match fault {
                Fault::Error { code, .. } => code,
                _ => default_code(state.flavor, status),
            };
            state.injected.fetch_add(1, Ordering::Relaxed);
            // Read the request to its end, as a server does before answering.
            let _ = request.into_body().collect().await;
            Ok(injected(state.flavor, status, code))
        }
        Fault::Drop => {
            state.injected.fetch_add(1, Ordering::Relaxed);
            Err("dropped".to_owned())
        }
        Fault::Blackhole => {
            state.injected.fetch_add(1, Ordering::Relaxed);
            std::future::pending().await
        }
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://HOST:PORT`), passing everything until told otherwise.
    pub fn start(upstream: &str, flavor: Flavor) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let state = Arc::new(State {
            upstream,
            flavor,
            fault: Mutex::new(Fault::Pass),
            requests: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let (addr, server) = crate::Background::start(|listener, mut stopped| async move {
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let refuse =
                    *shared.fault.lock().unwrap_or_else(PoisonError::into_inner) == Fault::Refuse;
                if refuse {
                    drop(stream);
                    continue;
                }
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { handle(state, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint: format!("http://{addr}"),
            state,
            _server: server,
        }
    }

    /// Applies `fault` to the requests received from now on.
    pub fn set(&self, fault: Fault) {
        *self
            .state
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Requests received (every upstream call Keyway made through the proxy).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests forwarded and answered by the upstream.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::Relaxed)
    }

    /// How many requests received so far were `METHOD PATH...` starting with `prefix` (`GET /v1/secret/data/`).
    pub fn count(&self, prefix: &str) -> usize {
        self.state
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|line| line.starts_with(prefix))
            .count()
    }

    /// Requests that got an injected fault.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::Relaxed)
    }
}

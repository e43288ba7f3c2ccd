//! `keyway webhook`: an HTTPS server (rustls) answering `admission.k8s.io/v1` AdmissionReview for Pods on
//! `POST /mutate` (and Flyte's paths, [`MUTATE_PATHS`]) with [`keyway_inject::mutate`], `GET /healthz` and `GET /metrics`. The certificate and key are read from
//! files and re-read within a second of a change (cert-manager rotates them in place), without a restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::Pod;
use keyway_inject::InjectConfig;
use kube_core::admission::{AdmissionRequest, AdmissionResponse};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

mod metrics;

use metrics::{Metrics, Outcome};

/// Where AdmissionReviews are answered: Keyway's own path, and Flyte's (`/mutate--v1-pod` from flytepropeller's
/// `generateMutatePath`, `/mutate--v1-pod/secrets` in its newer layout), so a MutatingWebhookConfiguration that
/// Flyte made can be pointed at Keyway's Service unchanged.
pub const MUTATE_PATHS: [&str; 3] = ["/mutate", "/mutate--v1-pod", "/mutate--v1-pod/secrets"];

/// Bound on an AdmissionReview body (a Pod with a large spec stays well under it).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// How long a client has for its request head, and then for its body (the API server sends both at once and
/// waits at most 30 s for the answer); past it, the head is dropped, the body answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The certificate files and the key they hold, swapped in place when the files change.
#[derive(Debug)]
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    modified: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, WebhookError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            WebhookError::Tls(format!(
                "cannot read certificates from {}: {e}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(WebhookError::Tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        WebhookError::Tls(format!(
            "cannot read the private key from {}: {e}",
            key.display()
        ))
    })?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            WebhookError::Tls(format!("unusable private key in {}: {e}", key.display()))
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

impl Certificate {
    fn open(cert: PathBuf, key: PathBuf) -> Result<Certificate, WebhookError> {
        let current = load(&cert, &key)?;
        let stamps = (modified(&cert), modified(&key));
        Ok(Certificate {
            cert,
            key,
            current: RwLock::new(current),
            modified: RwLock::new(stamps),
        })
    }

    /// Re-reads the files when either changed; a pair that does not load keeps the previous one.
    fn reload(&self) {
        let now = (modified(&self.cert), modified(&self.key));
        if *self
            .modified
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == now
        {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(fresh) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                *self
                    .modified
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
                tracing::info!(cert = %self.cert.display(), "certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate files changed but do not load; keeping the previous pair");
            }
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A bound webhook server.
pub struct Webhook {
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    certificate: Arc<Certificate>,
    config: Arc<arc_swap::ArcSwap<InjectConfig>>,
    metrics: Arc<Metrics>,
}

impl Webhook {
    /// Loads the certificate pair and binds `address`.
    pub async fn bind(
        address: &str,
        cert: PathBuf,
        key: PathBuf,
        config: InjectConfig,
    ) -> Result<Webhook, WebhookError> {
        let certificate = Arc::new(Certificate::open(cert, key)?);
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| WebhookError::Listen {
                address: address.to_owned(),
                source,
            })?;
        Ok(Webhook {
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            certificate,
            config: Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// The configuration it mutates Pods by: storing a new one applies it from the next request on (a reload).
    pub fn configuration(&self) -> Arc<arc_swap::ArcSwap<InjectConfig>> {
        self.config.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let certificate = self.certificate.clone();
        let reloader = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                certificate.reload();
            }
        });
        tokio::select! {
            () = self.accept() => {}
            () = shutdown => {}
        }
        reloader.abort();
    }

    async fn accept(&self) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let tls = self.tls.clone();
            let config = self.config.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let stream =
                    match tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                let service = service_fn(move |request| {
                    // Each request keeps the configuration it started with, across a reload.
                    let config = config.load_full();
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(handle(&config, &metrics, request).await) }
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(REQUEST_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }
}

fn reply(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn handle(
    config: &InjectConfig,
    metrics: &Metrics,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, b"ok\n".to_vec(), "text/plain"),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            metrics.encode().into_bytes(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (&Method::POST, path) if MUTATE_PATHS.contains(&path) => {
            let started = std::time::Instant::now();
            let (outcome, response) = admit(config, request).await;
            metrics.review(outcome, started.elapsed().as_secs_f64());
            response
        }
        (_, path) if MUTATE_PATHS.contains(&path) || path == "/healthz" || path == "/metrics" => {
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                b"use POST /mutate, GET /healthz or GET /metrics\n".to_vec(),
                "text/plain",
            )
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            b"no such endpoint\n".to_vec(),
            "text/plain",
        ),
    }
}

/// Answers one `POST /mutate`, and what it ended as.
async fn admit(
    config: &InjectConfig,
    request: Request<Incoming>,
) -> (Outcome, Response<Full<Bytes>>) {
    let collect = Limited::new(request.into_body(), MAX_BODY).collect();
    let collected = match tokio::time::timeout(REQUEST_TIMEOUT, collect).await {
        Ok(Ok(collected)) => collected,
        Ok(Err(_)) => {
            let text = b"AdmissionReview too large\n".to_vec();
            return (
                Outcome::Invalid,
                reply(StatusCode::PAYLOAD_TOO_LARGE, text, "text/plain"),
            );
        }
        Err(_) => {
            let text = format!(
                "the AdmissionReview did not arrive within {}s; send it with the request\n",
                REQUEST_TIMEOUT.as_secs()
            )
            .into_bytes();
            return (
                Outcome::Invalid,
                reply(StatusCode::REQUEST_TIMEOUT, text, "text/plain"),
            );
        }
    };
    let body = collected.to_bytes();
    let review = match keyway_inject::read_review(&body) {
        Ok(review) => review,
        Err(e) => {
            let text = format!("{e}\n").into_bytes();
            return (
                Outcome::Invalid,
                reply(StatusCode::BAD_REQUEST, text, "text/plain"),
            );
        }
    };
    let request: Result<AdmissionRequest<Pod>, _> = review.try_into();
    let (outcome, response) = match request {
        Ok(request) => {
            let response = keyway_inject::mutate(&request, config);
            tracing::info!(
                uid = %request.uid,
                namespace = request.namespace.as_deref().unwrap_or(""),
                name = %request.name,
                allowed = response.allowed,
                "admission"
            );
            let outcome = match (&response.allowed, &response.patch) {
                (false, _) => Outcome::Denied,
                (true, Some(patch)) if patch.as_slice() != b"[]" => Outcome::Mutated,
                (true, _) => Outcome::Unchanged,
            };
            (outcome, response)
        }
        Err(e) => (
            Outcome::Invalid,
            AdmissionResponse::invalid(format!("keyway: {e}")),
        ),
    };
    let body = serde_json::to_vec(&keyway_inject::review_json(response)).unwrap_or_default();
    (outcome, reply(StatusCode::OK, body, "application/json"))
}

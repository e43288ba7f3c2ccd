//! A git smart-HTTP server for tests: git's own `git http-backend` (as CGI) behind HTTP Basic authentication
//! with one token, which a test can rotate. A clone through it is what a workload's `git clone` of a private
//! repository does: 401 first, then git asks its credential helpers, then again with the credential; a refused
//! credential makes git tell the helpers to `erase` it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

struct State {
    root: PathBuf,
    /// The `username:token` pair that is let in.
    credential: Mutex<String>,
    refused: AtomicU64,
}

/// `git http-backend` serving the bare repositories under a directory, on a free loopback port, stopped on
/// drop.
pub struct GitServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    state: Arc<State>,
    _server: crate::Background,
}

impl GitServer {
    /// Serves the repositories under `root` (`root/NAME.git`) to `username` with `token`.
    pub fn start(root: &Path, username: &str, token: &str) -> GitServer {
        let state = Arc::new(State {
            root: root.to_owned(),
            credential: Mutex::new(format!("{username}:{token}")),
            refused: AtomicU64::new(0),
        });
        let shared = Arc::clone(&state);
        let (addr, server) = crate::Background::start(|listener, stopped| async move {
            let app = axum::Router::new().fallback(move |method, uri, headers, body| {
                handle(Arc::clone(&shared), method, uri, headers, body)
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        GitServer {
            url: format!("http://{addr}"),
            addr,
            state,
            _server: server,
        }
    }

    /// From now on only `username` with `token` is let in (a rotated token).
    pub fn set_credential(&self, username: &str, token: &str) {
        *self
            .state
            .credential
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = format!("{username}:{token}");
    }

    /// Requests that carried a credential and were refused.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }
}

fn answer(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
    let allowed = state
        .credential
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if given.as_deref() != Some(allowed.as_bytes()) {
        if given.is_some() {
            state.refused.fetch_add(1, Ordering::Relaxed);
        }
        let mut response = answer(StatusCode::UNAUTHORIZED, "authentication required\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"git\""),
        );
        return response;
    }
    let user = allowed.split(':').next().unwrap_or_default().to_owned();
    match cgi(&state.root, &method, &uri, &headers, &user, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "git http-backend failed");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "git http-backend failed\n",
            )
        }
    }
}

/// Runs `git http-backend` for one request, as a web server runs a CGI program.
async fn cgi(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    user: &str,
    body: Bytes,
) -> anyhow::Result<Response> {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            header(header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    writer.await?;
    anyhow::ensure!(output.status.success(), "exit {}", output.status);
    let out = output.stdout;
    let (head, rest) = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (&out[..at], &out[at + 4..]))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| (&out[..at], &out[at + 2..]))
        })
        .ok_or_else(|| anyhow::anyhow!("no CGI header in the output"))?;
    let mut response = Response::new(Body::from(rest.to_vec()));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or("200").parse::<u16>()?;
            *response.status_mut() = StatusCode::from_u16(code)?;
        } else {
            response.headers_mut().append(
                header::HeaderName::from_bytes(name.as_bytes())?,
                header::HeaderValue::from_str(value)?,
            );
        }
    }
    Ok(response)
}

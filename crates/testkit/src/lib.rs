//! Keyway's test ground: real emulators started by the tests themselves.
//!
//! - [`Moto`]: AWS Secrets Manager emulated by moto in server mode, from the project's virtual environment
//!   (`scripts/python-env.sh` creates it), on a free loopback port, killed on drop.
//! - [`gcp_emulator`]: a GCP Secret Manager emulator speaking the v1 REST surface a reader needs, proven against
//!   Google's own Python client (`tests/python/test_gcp_emulator.py`); [`GcpEmulator`] runs it in-process.
//!
//! This crate is for tests and benchmarks only; nothing in the product depends on it.

pub mod gcp_emulator;
pub mod raw;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub use gcp_emulator::GcpEmulator;

/// The project's virtual environment (`$KEYWAY_VENV` or `.venv` at the workspace root).
pub fn venv() -> PathBuf {
    std::env::var_os("KEYWAY_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
        PathBuf::from,
    )
}

/// A free loopback port (bound then released; the caller retries if it is taken meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
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

/// moto in server mode, emulating AWS Secrets Manager (and IAM/STS) on a free loopback port.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` from the project's venv and waits until it answers.
    pub fn start() -> Moto {
        for _ in 0..3 {
            let port = free_port();
            if let Some(moto) = Self::start_on(port) {
                return moto;
            }
        }
        panic!("moto_server did not start");
    }

    fn start_on(port: u16) -> Option<Moto> {
        let server = venv().join("bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/python-env.sh (scripts/test.sh does)",
            server.display()
        );
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if wait_for_port(addr, Duration::from_secs(30)) && moto.get("/moto-api/").status == 200 {
            return Some(moto);
        }
        let _ = moto.child.kill();
        let _ = moto.child.wait();
        None
    }

    /// Kills the server: the upstream is down (connections refused) until [`Moto::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh server on the same port (its state is empty again).
    pub fn restart(&mut self) {
        let port: u16 = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in endpoint");
        let fresh = Self::start_on(port).expect("moto_server restarts on its port");
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    fn get(&self, path: &str) -> Reply {
        http("GET", &format!("{}{path}", self.endpoint), &[], "")
    }

    /// Calls a Secrets Manager action with a JSON body (moto does not check signatures).
    pub fn call(&self, action: &str, body: &serde_json::Value) -> Reply {
        http(
            "POST",
            &format!("{}/", self.endpoint),
            &[
                ("X-Amz-Target", &format!("secretsmanager.{action}")),
                ("Content-Type", "application/x-amz-json-1.1"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            &body.to_string(),
        )
    }

    /// Creates a string secret; returns its ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        let reply = self.call(
            "CreateSecret",
            &serde_json::json!({"Name": name, "SecretString": value}),
        );
        assert_eq!(reply.status, 200, "CreateSecret {name}: {}", reply.body);
        reply.json()["ARN"].as_str().expect("ARN").to_owned()
    }

    /// Creates a binary secret; returns its ARN.
    pub fn create_binary_secret(&self, name: &str, value: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        let reply = self.call(
            "CreateSecret",
            &serde_json::json!({"Name": name, "SecretBinary": b64}),
        );
        assert_eq!(reply.status, 200, "CreateSecret {name}: {}", reply.body);
        reply.json()["ARN"].as_str().expect("ARN").to_owned()
    }

    /// Puts a new AWSCURRENT version; returns its version id.
    pub fn put_secret_value(&self, name: &str, value: &str) -> String {
        let reply = self.call(
            "PutSecretValue",
            &serde_json::json!({"SecretId": name, "SecretString": value}),
        );
        assert_eq!(reply.status, 200, "PutSecretValue {name}: {}", reply.body);
        reply.json()["VersionId"]
            .as_str()
            .expect("VersionId")
            .to_owned()
    }

    /// Starts moto's request recorder (clearing earlier recordings).
    pub fn start_recording(&self) {
        self.get("/moto-api/recorder/reset-recording");
        self.get("/moto-api/recorder/start-recording");
    }

    /// Recorded requests: each as (action, full record).
    pub fn recording(&self) -> Vec<(String, serde_json::Value)> {
        let body = self.get("/moto-api/recorder/download-recording").body;
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|record| {
                let target = record["headers"]["X-Amz-Target"]
                    .as_str()
                    .unwrap_or_default();
                (
                    target.trim_start_matches("secretsmanager.").to_owned(),
                    record,
                )
            })
            .collect()
    }

    /// How many recorded requests were the given action.
    pub fn count(&self, action: &str) -> usize {
        self.recording().iter().filter(|(a, _)| a == action).count()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

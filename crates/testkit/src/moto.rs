//! moto in server mode (AWS Secrets Manager, Systems Manager, IAM, STS), from the project's virtual environment.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::{PortLease, Reply, http, lease_port, listens_on, percent_encode, venv};

/// moto in server mode, emulating AWS Secrets Manager (and IAM/STS) on a free loopback port.
pub struct Moto {
    child: Child,
    lease: Option<PortLease>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` from the project's venv and waits until it answers.
    pub fn start() -> Moto {
        for _ in 0..3 {
            let lease = lease_port();
            if let Some(mut moto) = Self::start_on(lease.port) {
                moto.lease = Some(lease);
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
        // moto's recorder writes to one file, `moto_recording` in the working directory by default: give each
        // server its own, or concurrent tests read each other's requests.
        let recording = std::env::temp_dir().join(format!(
            "keyway-moto-recording-{}-{port}",
            std::process::id()
        ));
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let mut moto = Moto {
            child,
            lease: None,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Another test may have raced us to the same free port: wait until *our* process holds the listening
        // socket, not merely until something answers there.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if moto.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if listens_on(moto.child.id(), port) && moto.get("/moto-api/").status == 200 {
                return Some(moto);
            }
            std::thread::sleep(Duration::from_millis(50));
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
        let mut fresh = Self::start_on(port).expect("moto_server restarts on its port");
        fresh.lease = self.lease.take();
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    fn get(&self, path: &str) -> Reply {
        http("GET", &format!("{}{path}", self.endpoint), &[], "")
    }

    /// Calls a Secrets Manager action with a JSON body (moto does not check signatures).
    pub fn call(&self, action: &str, body: &serde_json::Value) -> Reply {
        self.call_in("us-east-1", action, body)
    }

    /// The same in `region` (moto keeps each region's secrets apart, by the signature's region).
    pub fn call_in(&self, region: &str, action: &str, body: &serde_json::Value) -> Reply {
        http(
            "POST",
            &format!("{}/", self.endpoint),
            &[
                ("X-Amz-Target", &format!("secretsmanager.{action}")),
                ("Content-Type", "application/x-amz-json-1.1"),
                (
                    "Authorization",
                    &format!(
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/secretsmanager/aws4_request, SignedHeaders=host, Signature=0"
                    ),
                ),
            ],
            &body.to_string(),
        )
    }

    /// Creates a string secret; returns its ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        self.create_secret_in("us-east-1", name, value)
    }

    /// Creates a string secret in `region`; returns its ARN.
    pub fn create_secret_in(&self, region: &str, name: &str, value: &str) -> String {
        let reply = self.call_in(
            region,
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

    /// Calls a Systems Manager action with a JSON body.
    pub fn ssm(&self, action: &str, body: &serde_json::Value) -> Reply {
        http(
            "POST",
            &format!("{}/", self.endpoint),
            &[
                ("X-Amz-Target", &format!("AmazonSSM.{action}")),
                ("Content-Type", "application/x-amz-json-1.1"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            &body.to_string(),
        )
    }

    /// Puts a parameter (`String`, `StringList` or `SecureString`), overwriting; returns its new version.
    pub fn put_parameter(&self, name: &str, value: &str, kind: &str) -> u64 {
        let reply = self.ssm(
            "PutParameter",
            &serde_json::json!({"Name": name, "Value": value, "Type": kind, "Overwrite": true}),
        );
        assert_eq!(reply.status, 200, "PutParameter {name}: {}", reply.body);
        reply.json()["Version"].as_u64().expect("Version")
    }

    /// Attaches `label` to `version` of a parameter.
    pub fn label_parameter(&self, name: &str, version: u64, label: &str) {
        let reply = self.ssm(
            "LabelParameterVersion",
            &serde_json::json!({"Name": name, "ParameterVersion": version, "Labels": [label]}),
        );
        assert_eq!(
            reply.status, 200,
            "LabelParameterVersion {name}: {}",
            reply.body
        );
    }

    /// Starts moto's request recorder (clearing earlier recordings).
    pub fn start_recording(&self) {
        self.get("/moto-api/recorder/reset-recording");
        self.get("/moto-api/recorder/start-recording");
    }

    /// Calls an action of a query-protocol service (`iam`, `sts`) with form parameters.
    pub fn query(&self, service: &str, params: &[(&str, &str)]) -> Reply {
        let body: String = params
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        http(
            "POST",
            &format!("{}/", self.endpoint),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (
                    "Authorization",
                    &format!(
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
                    ),
                ),
            ],
            &body,
        )
    }

    /// Creates an IAM role and an instance profile holding it; returns the role's ARN.
    pub fn create_instance_profile(&self, profile: &str, role: &str) -> String {
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let reply = self.query(
            "iam",
            &[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", role),
                ("AssumeRolePolicyDocument", trust),
            ],
        );
        assert_eq!(reply.status, 200, "CreateRole: {}", reply.body);
        let arn = reply
            .body
            .split("<Arn>")
            .nth(1)
            .and_then(|rest| rest.split("</Arn>").next())
            .expect("role ARN in the answer")
            .to_owned();
        for params in [
            vec![
                ("Action", "CreateInstanceProfile"),
                ("Version", "2010-05-08"),
                ("InstanceProfileName", profile),
            ],
            vec![
                ("Action", "AddRoleToInstanceProfile"),
                ("Version", "2010-05-08"),
                ("InstanceProfileName", profile),
                ("RoleName", role),
            ],
        ] {
            let reply = self.query("iam", &params);
            assert_eq!(reply.status, 200, "{}: {}", params[0].1, reply.body);
        }
        arn
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
                    target
                        .trim_start_matches("secretsmanager.")
                        .trim_start_matches("AmazonSSM.")
                        .to_owned(),
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

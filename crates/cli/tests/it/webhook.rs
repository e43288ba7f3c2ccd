//! End to end without a cluster: the init container's command from the webhook's mutation, run for real
//! against moto, the GCP emulator and the local store, into a directory standing in for the volume.

use std::os::unix::fs::PermissionsExt as _;

use k8s_openapi::api::core::v1::Pod;
use keyway_inject::{InjectConfig, mutate_pod, read_annotations};
use serde_json::json;

use crate::support::{Ground, run, stderr};

/// The patch of an AdmissionReview answer: base64 text, the API's JSON form of `[]byte`.
pub fn patch_bytes(review: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    let text = review["response"]["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("the patch is not base64 text: {review}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// An `admission.k8s.io/v1` AdmissionReview asking to create `pod`.
pub(crate) fn admission_review(uid: &str, pod: &serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": pod
        }
    })
}

#[test]
fn the_init_containers_render_call_delivers_every_secret() {
    let ground = Ground::start();
    ground
        .moto
        .create_secret("ci/github", r#"{"github_token":"ghp_from_aws"}"#);
    ground.gcp.add_version("proj", "db-password", b"from-gcp");
    std::fs::create_dir_all(ground.dir.path().join("local/team")).unwrap();
    std::fs::write(ground.dir.path().join("local/team/api"), "from-local").unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "annotations": {
            "keyway.dev/inject": "true",
            "keyway.dev/secret.github-token": "aws-sm://ci/github#github_token",
            "keyway.dev/secret.db-password": "gcp-sm://proj/db-password",
            "keyway.dev/secret.api-key": "local://team/api"
        }},
        "spec": {"containers": [{"name": "main", "image": "python"}]}
    }))
    .unwrap();
    let config = InjectConfig::default();
    let ask = read_annotations(&pod, &config).unwrap().unwrap();
    let (mutated, _) = mutate_pod(&pod, &ask, &config);
    let init = &mutated.spec.unwrap().init_containers.unwrap()[0];
    let mut command = init.command.clone().unwrap();
    assert_eq!(command[0], "keyway");
    // The volume's mount path, replaced by a temporary directory.
    let volume = ground.dir.path().join("volume");
    let at = command.iter().position(|a| a == "--dir").unwrap() + 1;
    command[at] = volume.display().to_string();

    let out = run(ground.keyway().args(&command[1..]));
    assert!(out.status.success(), "{}", stderr(&out));
    for (file, value) in [
        ("github-token", "ghp_from_aws"),
        ("db-password", "from-gcp"),
        ("api-key", "from-local"),
    ] {
        let path = volume.join(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), value);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
    }

    // A missing secret makes the init container fail loudly: non-zero, naming the secret, nothing written.
    let missing = ground.dir.path().join("volume2");
    command[at] = missing.display().to_string();
    command.push("extra=aws-sm://ci/missing".into());
    let out = run(ground.keyway().args(&command[1..]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("ci/missing"), "{}", stderr(&out));
    assert!(!missing.join("github-token").exists());
}

mod https {
    use std::io::{BufRead as _, BufReader};
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::{Child, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    use rustls::pki_types::{CertificateDer, ServerName};
    use serde_json::{Value, json};

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Writes a fresh self-signed pair for localhost/127.0.0.1 and returns the certificate's DER.
    fn write_pair(dir: &Path) -> Vec<u8> {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        std::fs::write(dir.join("tls.crt"), generated.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), generated.signing_key.serialize_pem()).unwrap();
        generated.cert.der().to_vec()
    }

    /// `keyway webhook` on a free loopback port with the pair in `dir` and `extra` arguments; its address.
    fn start(dir: &Path, extra: &[&std::ffi::OsStr], stderr: Stdio) -> (Server, SocketAddr) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
            .args(["webhook", "--listen", "127.0.0.1:0", "--cert"])
            .arg(dir.join("tls.crt"))
            .arg("--key")
            .arg(dir.join("tls.key"))
            .args(extra)
            .env("KEYWAY_DAEMON", "never")
            .env("KEYWAY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .unwrap()
            .unwrap();
        let addr = line
            .strip_prefix("listening on https://")
            .unwrap()
            .parse()
            .unwrap();
        (Server(child), addr)
    }

    /// POSTs `body` to `path` over TLS trusting only `root`; returns (status, body, the server's certificate),
    /// or `None` when the server's certificate is not `root`.
    async fn try_post(
        addr: SocketAddr,
        root: &[u8],
        path: &str,
        body: Vec<u8>,
    ) -> Option<(u16, Vec<u8>, Vec<u8>)> {
        try_send(addr, root, hyper::Method::POST, path, body).await
    }

    /// The body of a GET of `path`.
    async fn get(addr: SocketAddr, root: &[u8], path: &str) -> String {
        let (status, body, _) = try_send(addr, root, hyper::Method::GET, path, Vec::new())
            .await
            .expect("TLS with the expected certificate");
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// A TLS connection to the webhook, trusting `root`.
    async fn connect(
        addr: SocketAddr,
        root: &[u8],
    ) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(root.to_vec())).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .ok()
    }

    async fn try_send(
        addr: SocketAddr,
        root: &[u8],
        method: hyper::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Option<(u16, Vec<u8>, Vec<u8>)> {
        let tls = connect(addr, root).await?;
        let served_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Some((status, body, served_cert))
    }

    async fn post(
        addr: SocketAddr,
        root: &[u8],
        path: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>, Vec<u8>) {
        try_post(addr, root, path, body)
            .await
            .expect("TLS with the expected certificate")
    }

    fn review() -> Vec<u8> {
        serde_json::to_vec(&super::admission_review(
            "11111111-2222-3333-4444-555555555555",
            &json!({
                "metadata": {"name": "p", "annotations": {
                    "keyway.dev/inject": "true",
                    "keyway.dev/secret.token": "aws-sm://ci/github#github_token"
                }},
                "spec": {"containers": [{"name": "main", "image": "python"}]}
            }),
        ))
        .unwrap()
    }

    /// A client that announces a body and sends part of it is answered 408 once the request timeout (10 s)
    /// passes, not held forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_never_arrives_is_answered_408() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let dir = tempfile::tempdir().unwrap();
        let root = write_pair(dir.path());
        let (_server, addr) = start(dir.path(), &[], Stdio::null());
        let mut tls = connect(addr, &root).await.expect("TLS");
        let started = Instant::now();
        tls.write_all(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\n{\"kind\":",
        )
        .await
        .unwrap();
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_secs(9)
                && started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_admission_reviews_over_tls_and_follows_certificate_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path());
        let (_server, addr) = start(dir.path(), &[], Stdio::null());

        let (status, body, served) = post(addr, &first, "/mutate", review()).await;
        assert_eq!(status, 200);
        assert_eq!(served, first);
        // Flyte's paths answer the same, so Flyte's MutatingWebhookConfiguration can point here unchanged.
        for flyte in ["/mutate--v1-pod", "/mutate--v1-pod/secrets"] {
            let (status, flyte_body, _) = post(addr, &first, flyte, review()).await;
            assert_eq!((status, &flyte_body), (200, &body), "{flyte}");
        }
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"],
            "11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch: Value = serde_json::from_slice(&super::patch_bytes(&answer)).unwrap();
        assert!(
            patch
                .as_array()
                .unwrap()
                .iter()
                .any(|op| op["path"] == "/spec/initContainers"),
            "{patch}"
        );

        let (status, _, _) = post(addr, &first, "/mutate", b"{not json".to_vec()).await;
        assert_eq!(status, 400);
        // A manifest's unquoted `value: 918273645` is an integer where a string belongs: the answer says where,
        // never the value (serde's own message quotes it).
        let pod = json!({"metadata": {"name": "p"},
                         "spec": {"containers": [{"name": "main", "image": "python",
                                                  "env": [{"name": "PIN", "value": 918_273_645}]}]}});
        let bad = serde_json::to_vec(&super::admission_review("u-3", &pod)).unwrap();
        let (status, body, _) = post(addr, &first, "/mutate", bad).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("at `request.object.spec.containers[0].env[0].value`")
                && !body.contains("918273645"),
            "{body}"
        );
        for (annotations, allowed) in [
            (json!({}), true),
            (
                json!({"keyway.dev/inject": "true", "keyway.dev/secret.t": "github"}),
                false,
            ),
        ] {
            let pod = json!({"metadata": {"name": "q", "annotations": annotations},
                             "spec": {"containers": [{"name": "main", "image": "python"}]}});
            let review = serde_json::to_vec(&super::admission_review("u-2", &pod)).unwrap();
            let (status, body, _) = post(addr, &first, "/mutate", review).await;
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (status, answer["response"]["allowed"].clone()),
                (200, allowed.into())
            );
        }
        let metrics = get(addr, &first, "/metrics").await;
        for line in [
            r#"keyway_webhook_admissions_total{result="mutated"} 3"#,
            r#"keyway_webhook_admissions_total{result="invalid"} 2"#,
            r#"keyway_webhook_admissions_total{result="unchanged"} 1"#,
            r#"keyway_webhook_admissions_total{result="denied"} 1"#,
            "keyway_webhook_admission_duration_seconds_count 7",
            &format!(
                "keyway_webhook_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
        assert!(
            !metrics.contains("github"),
            "no reference or Pod name: {metrics}"
        );

        // Rotate the pair in place: new connections get the new certificate without a restart.
        std::thread::sleep(Duration::from_millis(1100));
        let second = write_pair(dir.path());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((status, _, served)) = try_post(addr, &second, "/mutate", review()).await {
                assert_eq!((status, served), (200, second));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the rotated certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The service account the webhook gives a `workload-type: service` Pod.
    async fn service_account(addr: SocketAddr, root: &[u8]) -> Value {
        let review = serde_json::to_vec(&super::admission_review(
            "u-iam",
            &json!({
                "metadata": {"name": "svc", "labels": {"workload-type": "service"}},
                "spec": {"containers": [{"name": "main", "image": "ray"}]}
            }),
        ))
        .unwrap();
        let (status, body, _) = post(addr, root, "/mutate", review).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let patch: Value = serde_json::from_slice(&super::patch_bytes(&answer)).unwrap();
        patch[0]["value"].clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_config_applies_a_changed_iam_spec_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = write_pair(dir.path());
        let original = super::SERVICES_SPEC;
        let spec = dir.path().join("cloud-config.yaml");
        let replace = |text: &str| {
            // As a ConfigMap update does: a new file renamed over the old one.
            std::fs::write(dir.path().join("next.yaml"), text).unwrap();
            std::fs::rename(dir.path().join("next.yaml"), &spec).unwrap();
        };
        replace(original);
        let stderr_path = dir.path().join("webhook.stderr");
        let watch = [
            "--watch-config".as_ref(),
            "--iam-spec".as_ref(),
            spec.as_os_str(),
        ];
        let (server, addr) = start(
            dir.path(),
            &watch,
            std::fs::File::create(&stderr_path).unwrap().into(),
        );
        let pid = rustix::process::Pid::from_child(&server.0);
        assert_eq!(service_account(addr, &root).await, "anyscale-services");

        replace(&original.replace("anyscale-services", "anyscale-services-v2"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while service_account(addr, &root).await != "anyscale-services-v2" {
            assert!(
                Instant::now() < deadline,
                "the new mapping was never applied"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A spec that does not load is refused, on a change and on SIGHUP; the last good one stays.
        replace("compute_stack: [");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(service_account(addr, &root).await, "anyscale-services-v2");
        let said = std::fs::read_to_string(&stderr_path).unwrap();
        assert_eq!(said.matches("reload refused").count(), 2, "{said}");
        assert!(said.contains("configuration reloaded"), "{said}");
    }
}

/// An EKS spec whose rules select on the workload type and project only: Pod labels cannot hold the e-mail
/// addresses of the documented examples' `user=` rules.
const SERVICES_SPEC: &str = "cloud_provider: AWS\ncompute_stack: K8S\ndataplane_iam_mapping:\n  rules:\n  - selector: workload-type in (service)\n    value: anyscale-services\n  - selector: workload-type in (job, workspace),project=analytics\n    value: analytics-jobs\n  fallback_rule: CLOUD_DEFAULT\n";

#[test]
fn review_mode_applies_the_k8s_mapping_from_an_anyscale_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eks.yaml"), SERVICES_SPEC).unwrap();
    std::fs::copy(
        keyway_testkit::repo_root().join("examples/iam/aws-vm.yaml"),
        dir.path().join("aws-vm.yaml"),
    )
    .unwrap();
    let review = admission_review(
        "u1",
        &json!({
            "metadata": {"name": "svc", "labels": {"workload-type": "service"}},
            "spec": {"containers": [{"name": "main", "image": "ray"}]}
        }),
    );
    let run_review = |spec: &str| {
        crate::support::run_with_stdin(
            std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
                .args(["webhook", "--review", "-", "--iam-spec"])
                .arg(dir.path().join(spec)),
            review.to_string().as_bytes(),
        )
    };
    let out = run_review("eks.yaml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch_bytes(&answer)).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/spec/serviceAccountName", "value": "anyscale-services"}])
    );
    let out = run_review("aws-vm.yaml");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compute_stack is VM"));
}

#[test]
fn resource_flags_size_the_added_containers_and_a_pods_annotations_win() {
    let review = admission_review(
        "u2",
        &json!({
            "metadata": {"name": "app", "annotations": {
                "keyway.dev/inject": "true",
                "keyway.dev/secret.token": "local://token",
                "keyway.dev/limits-memory": "96Mi"
            }},
            "spec": {"containers": [{"name": "main", "image": "app"}]}
        }),
    );
    let run_review = |flags: &[&str]| {
        crate::support::run_with_stdin(
            std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
                .args(["webhook", "--review", "-"])
                .args(flags),
            review.to_string().as_bytes(),
        )
    };
    let out = run_review(&[
        "--resource",
        "limits.cpu=200m",
        "--resource=requests.memory=48Mi",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let patch: serde_json::Value = serde_json::from_slice(&patch_bytes(&answer)).unwrap();
    let init = patch
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/initContainers")
        .map_or_else(
            || panic!("no init container added: {patch}"),
            |op| &op["value"][0],
        );
    assert_eq!(
        init["resources"],
        json!({"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"cpu": "200m", "memory": "96Mi"}})
    );
    for (flag, says) in [
        ("limits.gpu=1", "`limits.gpu` is not one of requests.cpu"),
        ("limits.cpu=lots", "`lots` is not a Kubernetes quantity"),
        ("limits.cpu", "`limits.cpu` is not KIND.RESOURCE=QUANTITY"),
    ] {
        let out = run_review(&["--resource", flag]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flag}: {}", stderr(&out));
    }
}

#[test]
fn env_delivery_runs_the_wrapped_command_with_the_value_in_its_environment() {
    let ground = Ground::start();
    ground
        .moto
        .create_secret("ci/github", r#"{"github_token":"ghp_env_delivery"}"#);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "annotations": {
            "keyway.dev/inject": "true",
            "keyway.dev/env.GITHUB_TOKEN": "aws-sm://ci/github#github_token"
        }},
        "spec": {"containers": [{"name": "main", "image": "debian", "command": ["sh", "-c", "printf %s \"$GITHUB_TOKEN\""]}]}
    }))
    .unwrap();
    let config = InjectConfig::default();
    let ask = read_annotations(&pod, &config).unwrap().unwrap();
    let (mutated, warnings) = mutate_pod(&pod, &ask, &config);
    assert!(warnings.is_empty(), "{warnings:?}");
    let spec = mutated.spec.unwrap();

    // The init container installs the binary (stand-in directories for the two volumes).
    let bin = ground.dir.path().join("bin");
    let mut init = spec.init_containers.unwrap()[0].command.clone().unwrap();
    let at = init.iter().position(|a| a == "--dir").unwrap() + 1;
    init[at] = ground.dir.path().join("secrets").display().to_string();
    let at = init.iter().position(|a| a == "--install-self").unwrap() + 1;
    init[at] = bin.display().to_string();
    let out = run(ground.keyway().args(&init[1..]));
    assert!(out.status.success(), "{}", stderr(&out));
    let installed = bin.join("keyway");
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o555
    );

    // The app container's wrapped command, run with the installed copy.
    let app = spec.containers[0].command.clone().unwrap();
    assert_eq!(app[0], "/keyway/bin/keyway");
    let out = run(std::process::Command::new(&installed)
        .arg("--config")
        .arg(&ground.config)
        .args(&app[1..])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("KEYWAY_DAEMON", "never"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ghp_env_delivery");
}

#[test]
fn env_restart_restarts_the_wrapped_command_when_the_secret_rotates() {
    use std::io::BufRead as _;
    let ground = Ground::start();
    ground.moto.create_secret("ci/db", "first-password");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "annotations": {
            "keyway.dev/inject": "true",
            "keyway.dev/env.DB_PASSWORD": "aws-sm://ci/db",
            "keyway.dev/env-restart": "10s"
        }},
        "spec": {"containers": [{"name": "main", "image": "debian", "command": [
            "sh", "-c", "trap 'exit 0' TERM; echo \"up with $DB_PASSWORD\"; while :; do sleep 0.05; done"
        ]}]}
    }))
    .unwrap();
    let config = InjectConfig::default();
    let ask = read_annotations(&pod, &config).unwrap().unwrap();
    let (mutated, _) = mutate_pod(&pod, &ask, &config);
    let mut app = mutated.spec.unwrap().containers[0].command.clone().unwrap();
    // The container's wrapped command as the webhook wrote it, but checking every 200 ms instead of 10 s.
    let at = app.iter().position(|a| a == "--watch").unwrap() + 1;
    assert_eq!(app[at], "10s");
    "200ms".clone_into(&mut app[at]);
    let mut child = ground
        .keyway()
        .args(&app[1..])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "up with first-password");
    ground.moto.put_secret_value("ci/db", "second-password");
    assert_eq!(lines.next().unwrap().unwrap(), "up with second-password");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn watch_config_without_a_file_to_watch_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args([
            "webhook",
            "--watch-config",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ])
        .env_remove("KEYWAY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither is given"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `keyway serve`: the real daemon binary over real sockets, against moto, the GCP emulator and the local store.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use keyway_testkit::raw::{self, Target};

use crate::{Ground, run, stderr, stdout};

/// A running `keyway serve`, killed on drop.
pub struct Served {
    child: Child,
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub stderr_path: PathBuf,
}

impl Served {
    pub fn start(ground: &Ground, extra_args: &[&str]) -> Served {
        Self::start_with_env(ground, extra_args, &[])
    }

    pub fn start_with_env(ground: &Ground, extra_args: &[&str], env: &[(&str, &str)]) -> Served {
        let socket = ground.dir.path().join("keyway.sock");
        let stderr_path = ground.dir.path().join("serve.stderr");
        let mut child = ground
            .keyway()
            .arg("--socket")
            .arg(&socket)
            .arg("serve")
            .args(extra_args)
            .env("KEYWAY_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn keyway serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut tcp = None;
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            first.starts_with("listening on unix:"),
            "serve did not start: {first} / {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        if extra_args.contains(&"--tcp") || ground_has(ground, "tcp =") {
            let line = lines.next().and_then(Result::ok).unwrap_or_default();
            tcp = line
                .strip_prefix("listening on tcp:")
                .map(|a| a.parse().unwrap());
        }
        let metrics =
            (extra_args.contains(&"--metrics") || ground_has(ground, "metrics =")).then(|| {
                let line = lines.next().and_then(Result::ok).unwrap_or_default();
                let address = line.strip_prefix("listening on metrics:");
                address
                    .unwrap_or_else(|| panic!("no metrics listener: {line}"))
                    .parse()
                    .unwrap()
            });
        Served {
            child,
            socket,
            tcp,
            metrics,
            stderr_path,
        }
    }

    pub fn unix(&self) -> Target {
        Target::Unix(self.socket.clone())
    }

    pub fn tcp(&self) -> Target {
        Target::Tcp(self.tcp.expect("a TCP listener"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
}

/// Reads `path` until the answer is a fresh (not stale) value; fails the test at `deadline`.
pub fn wait_until_fresh(target: &raw::Target, path: &str, deadline: Instant) {
    loop {
        let reply = raw::get(target, path, &[]);
        if reply.status == 200 && reply.json()["stale"] == false {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ground_has(ground: &Ground, setting: &str) -> bool {
    std::fs::read_to_string(&ground.config)
        .unwrap()
        .lines()
        .any(|l| l.trim_start().starts_with(setting))
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[test]
fn native_api_over_the_unix_socket_with_metadata_and_raw_bytes() {
    let ground = Ground::with_extra("[server]\naudit_log = \"stderr\"\n");
    std::fs::write(
        ground.dir.path().join("local/app"),
        r#"{"token":"tok-123","db":{"password":"pw"}}"#,
    )
    .unwrap();
    let served = Served::start(&ground, &[]);
    let unix = served.unix();

    let reply = raw::get(&unix, "/v1/secret?ref=local://app%23/db/password", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["value"], "pw");
    assert_eq!(body["encoding"], "text");
    assert_eq!(body["ref"], "local://app#/db/password");
    assert_eq!(body["source"], "miss");
    assert_eq!(body["stale"], false);
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    let reply = raw::get(
        &unix,
        "/v1/secret?ref=local://app%23token",
        &["Accept: application/octet-stream"],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"tok-123");
    assert_eq!(
        reply.header("x-keyway-source"),
        Some("hit"),
        "one fetch serves both fields"
    );
    assert!(reply.header("age").is_some());

    let reply = raw::get(&unix, "/v1/secret?ref=local://missing", &[]);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["kind"], "not_found");
    assert!(
        reply.json()["error"].get("upstream_code").is_none(),
        "the local store has no codes of its own"
    );

    // Metrics count, and name no secret unless metrics_secret_names is on.
    let metrics = raw::get(&unix, "/metrics", &[]).text();
    assert!(metrics.contains("keyway_cache_hits_total 1"), "{metrics}");
    let build = format!(
        "keyway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.lines().any(|l| l == build), "{metrics}");
    let started: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyway_start_time_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started > now - 300.0 && started <= now, "{metrics}");
    assert!(
        metrics.contains("keyway_upstream_calls_total{provider=\"local\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("app") && !metrics.contains("tok-123"),
        "{metrics}"
    );

    // The audit log names the caller's uid and the reference, never the value.
    std::thread::sleep(Duration::from_millis(100));
    let log = served.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("\"ref\":\"local://app#token\""))
        .unwrap_or_else(|| panic!("no audit line in {log}"));
    assert!(line.contains(&format!("\"uid\":{}", uid())), "{line}");
    assert!(line.contains("\"decision\":\"allowed\""), "{line}");
    assert!(!log.contains("tok-123") && !log.contains("\"pw\""), "{log}");
}

#[test]
fn batch_returns_one_result_per_reference_in_order() {
    let ground = Ground::start();
    ground.moto.create_secret("batch/a", r#"{"k":"A"}"#);
    std::fs::write(ground.dir.path().join("local/b"), "B").unwrap();
    // Encrypted, and the instance has no age identity: the daemon's configuration is at fault, not the request.
    std::fs::write(ground.dir.path().join("local/enc.age"), "age").unwrap();
    let served = Served::start(&ground, &[]);
    let body =
        br#"{"refs":["aws-sm://batch/a#k","local://b","local://nope","bad ref","local://enc"]}"#;
    let reply = raw::post(&served.unix(), "/v1/secrets", &[], body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let results = reply.json()["results"].clone();
    assert_eq!(results[0]["value"], "A");
    assert_eq!(results[1]["value"], "B");
    assert_eq!(results[2]["error"]["kind"], "not_found");
    assert_eq!(results[3]["error"]["kind"], "invalid");
    assert_eq!(results[4]["error"]["kind"], "misconfigured");
    let one = raw::get(&served.unix(), "/v1/secret?ref=local://enc", &[]);
    assert_eq!(
        (one.status, one.json()["error"]["kind"].clone()),
        (500, "misconfigured".into()),
        "{}",
        one.text()
    );
    let out = run(ground
        .keyway()
        .args(["--daemon", "always", "--socket"])
        .arg(&served.socket)
        .args(["get", "local://enc"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no `age_identity` is configured"),
        "{}",
        stderr(&out)
    );

    let reply = raw::post(&served.unix(), "/v1/secrets", &[], b"{\"refs\": 3}");
    assert_eq!(reply.status, 400);
    // A value sent where a reference belongs is refused without being repeated.
    let reply = raw::post(
        &served.unix(),
        "/v1/secrets",
        &[],
        b"{\"refs\": [918273645]}",
    );
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, 400, "{body}");
    assert!(
        body.contains("a value of the wrong type or form (line 1, column 19)")
            && !body.contains("918273645"),
        "{body}"
    );
}

#[test]
fn cli_reads_through_the_daemon_and_fails_loudly_without_it() {
    let ground = Ground::start();
    std::fs::write(ground.dir.path().join("local/tok"), "via-daemon").unwrap();
    let served = Served::start(&ground, &[]);
    let out = run(ground
        .keyway()
        .args(["--daemon", "always", "--socket"])
        .arg(&served.socket)
        .args(["get", "--json", "local://tok"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["value"], "via-daemon");

    // The daemon served it: its metrics count the read.
    let metrics = raw::get(&served.unix(), "/metrics", &[]).text();
    assert!(
        metrics.contains("keyway_requests_total{route=\"secret\",status=\"200\"} 1"),
        "{metrics}"
    );

    // render through the daemon (one batch request).
    let dir = ground.dir.path().join("out");
    let out = run(ground
        .keyway()
        .args(["--daemon", "always", "--socket"])
        .arg(&served.socket)
        .args(["render", "--dir"])
        .arg(&dir)
        .arg("tok=local://tok"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("tok")).unwrap(),
        "via-daemon"
    );

    drop(served);
    let out = run(ground
        .keyway()
        .args(["--daemon", "always", "--socket"])
        .arg(ground.dir.path().join("keyway.sock"))
        .args(["get", "local://tok"]));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("start `keyway serve`"),
        "{}",
        stderr(&out)
    );
}

/// A supervisor that pipes the daemon's stdout and stops reading it (the reader gone before the daemon says
/// where it listens) must not lose the daemon: the "listening on" lines are dropped, the daemon serves.
#[test]
fn a_stdout_nobody_reads_does_not_end_the_daemon_or_a_status() {
    let ground = Ground::start();
    std::fs::write(ground.dir.path().join("local/tok"), "served-anyway").unwrap();
    let socket = ground.dir.path().join("keyway.sock");
    let mut daemon = ground
        .keyway()
        .arg("--socket")
        .arg(&socket)
        .arg("serve")
        .stdout(crate::unread_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon_pid = rustix::process::Pid::from_child(&daemon);
    let status = ground
        .keyway()
        .arg("--socket")
        .arg(&socket)
        .args(["status", "--wait", "10s"])
        .stdout(crate::unread_pipe())
        .output()
        .unwrap();
    assert!(status.status.success(), "status: {}", stderr(&status));
    let out = run(ground
        .keyway()
        .args(["--daemon", "always", "--socket"])
        .arg(&socket)
        .args(["get", "local://tok"]));
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "served-anyway"),
        "{}",
        stderr(&out)
    );
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon ended");
    rustix::process::kill_process(daemon_pid, rustix::process::Signal::TERM).unwrap();
    let ended = daemon.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&ended.stderr);
    assert!(ended.status.success() && !log.contains("panicked"), "{log}");
}

#[test]
fn tcp_needs_a_token_refuses_forwarding_and_follows_rotation() {
    let ground = Ground::start();
    let token_file = ground.dir.path().join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    std::fs::write(
        &ground.config,
        std::fs::read_to_string(&ground.config).unwrap()
            + &format!(
                "[server]\ntcp = \"127.0.0.1:0\"\n[[server.tokens]]\nname = \"app\"\nfile = \"{}\"\n",
                token_file.display()
            ),
    )
    .unwrap();
    std::fs::write(ground.dir.path().join("local/s"), "value-s").unwrap();
    let served = Served::start(&ground, &[]);
    let tcp = served.tcp();
    let uri = "/v1/secret?ref=local://s";

    assert_eq!(raw::get(&tcp, uri, &[]).status, 401);
    assert_eq!(
        raw::get(&tcp, uri, &["X-Aws-Parameters-Secrets-Token: wrong"]).status,
        403
    );
    let forwarded = raw::get(
        &tcp,
        uri,
        &[
            "X-Aws-Parameters-Secrets-Token: first-token",
            "X-Forwarded-For: 10.0.0.1",
        ],
    );
    assert_eq!(forwarded.status, 400, "{}", forwarded.text());
    assert_eq!(
        raw::get(&tcp, uri, &["X-Aws-Parameters-Secrets-Token: first-token"]).status,
        200
    );
    assert_eq!(
        raw::get(&tcp, uri, &["Authorization: Bearer first-token"]).status,
        200
    );
    assert_eq!(
        raw::get(&tcp, "/healthz", &[]).status,
        200,
        "health needs no token"
    );

    // Rotate: the new token works and the old one stops, without a restart.
    std::thread::sleep(Duration::from_millis(1100)); // a distinct mtime
    std::fs::write(&token_file, "second-token").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw::get(&tcp, uri, &["X-Vault-Token: second-token"]).status != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never accepted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        raw::get(&tcp, uri, &["X-Vault-Token: first-token"]).status,
        403
    );
    let log = served.stderr();
    assert!(!log.contains("second-token"));
    // stderr is a file here, as under systemd or in a Pod: plain text, no terminal colour codes.
    assert!(log.contains("request with a bad token refused"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

#[test]
fn a_non_loopback_tcp_address_is_refused_unless_allowed() {
    let ground = Ground::with_extra("[server]\ntcp = \"0.0.0.0:0\"\n");
    let out = run(ground
        .keyway()
        .arg("--socket")
        .arg(ground.dir.path().join("k.sock"))
        .arg("serve"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a loopback address"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn access_rules_deny_by_default_without_revealing_existence() {
    let me = uid();
    let other = me + 4242;
    let ground = Ground::with_extra(&format!(
        "[server]\n[[server.access]]\nuids = [{me}]\nrefs = [\"local://team/*\"]\n[[server.access]]\nuids = [{other}]\nrefs = [\"local://**\"]\n"
    ));
    std::fs::create_dir_all(ground.dir.path().join("local/team")).unwrap();
    std::fs::write(ground.dir.path().join("local/team/db"), "db-pw").unwrap();
    std::fs::write(ground.dir.path().join("local/root-only"), "root-pw").unwrap();
    let served = Served::start(&ground, &[]);
    let unix = served.unix();

    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=local://team/db", &[]).status,
        200
    );
    let denied = raw::get(&unix, "/v1/secret?ref=local://root-only", &[]);
    let absent = raw::get(&unix, "/v1/secret?ref=local://does-not-exist", &[]);
    assert_eq!(denied.status, 403);
    assert_eq!(
        absent.status, 403,
        "a missing secret is denied the same way"
    );
    assert_eq!(denied.json()["error"]["kind"], "access_denied");
    let message = denied.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(&format!("uids = [{me}]")), "{message}");

    // Listing shows only what the caller may read.
    let list = raw::get(&unix, "/v1/list?provider=local", &[]).json();
    assert_eq!(list["names"], serde_json::json!(["team/db"]));
}

#[test]
fn aws_agent_compatible_endpoints_answer_like_the_agent() {
    let ground = Ground::with_extra("[server]\ntcp = \"127.0.0.1:0\"\n");
    let arn = ground
        .moto
        .create_secret("compat/db", r#"{"password":"first"}"#);
    ground
        .moto
        .put_secret_value("compat/db", r#"{"password":"second"}"#);
    // The AWS agent's own token variable, as an application written for the agent would set it.
    let served = Served::start_with_env(&ground, &[], &[("AWS_TOKEN", "agent-token")]);
    let tcp = served.tcp();
    let token = "X-Aws-Parameters-Secrets-Token: agent-token";

    let reply = raw::get(&tcp, "/secretsmanager/get?secretId=compat/db", &[token]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["ARN"], arn.as_str());
    assert_eq!(body["Name"], "compat/db");
    assert_eq!(body["SecretString"], r#"{"password":"second"}"#);
    assert_eq!(body["VersionStages"], serde_json::json!(["AWSCURRENT"]));
    assert!(body["VersionId"].as_str().is_some_and(|v| !v.is_empty()));
    // Seconds as the agent prints them: a whole second without `.0` (moto's dates are whole seconds).
    assert!(
        body["CreatedDate"]
            .as_str()
            .is_some_and(|d| d.parse::<f64>().is_ok() && !d.ends_with(".0"))
    );

    let previous = raw::get(
        &tcp,
        "/v1/compat%2Fdb?versionStage=AWSPREVIOUS",
        &["X-Vault-Token: agent-token"],
    );
    assert_eq!(previous.status, 200, "{}", previous.text());
    assert_eq!(previous.json()["SecretString"], r#"{"password":"first"}"#);

    // Secrets Manager's own status and code, passed on (moto answers 404 where AWS answers 400).
    let missing = raw::get(&tcp, "/secretsmanager/get?secretId=compat/nope", &[token]);
    assert_eq!(missing.json()["__type"], "ResourceNotFoundException");
    // As the agent: a missing token is 403 `Bad Token`, plain text (crates/cli/tests/it/agent.rs has the rest).
    let no_token = raw::get(&tcp, "/secretsmanager/get?secretId=compat/db", &[]);
    assert_eq!(
        (no_token.status, no_token.text().as_str()),
        (403, "Bad Token")
    );
}

#[test]
fn two_hundred_concurrent_cold_reads_make_one_upstream_call() {
    let ground = Ground::start();
    ground.moto.create_secret("stampede/one", r#"{"k":"v"}"#);
    let served = Served::start(&ground, &[]);
    ground.moto.start_recording();
    let unix = served.unix();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (unix, barrier) = (unix.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                raw::get(&unix, "/v1/secret?ref=aws-sm://stampede/one%23k", &[]).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(ground.moto.count("GetSecretValue"), 1);
}

#[test]
fn upstream_down_serves_stale_values_fails_fast_for_the_rest_and_recovers() {
    let ground = Ground::with_extra("");
    // Short TTL on the GCP instance so values expire during the outage.
    let config = std::fs::read_to_string(&ground.config).unwrap().replace(
        "project = \"proj\"",
        "project = \"proj\"\nttl = \"1s\"\nmax_stale = \"1h\"\ntimeout = \"2s\"",
    );
    std::fs::write(&ground.config, config).unwrap();
    ground.gcp.add_version("proj", "cached", b"cached-value");
    ground.gcp.add_version("proj", "uncached", b"never-read");
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    let cached = "/v1/secret?ref=gcp-sm://proj/cached";
    assert_eq!(raw::get(&unix, cached, &[]).status, 200);

    ground.gcp.fail_next(1_000_000);
    std::thread::sleep(Duration::from_millis(1200));
    let stale = raw::get(&unix, cached, &[]);
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.json()["stale"], true);
    assert_eq!(stale.json()["value"], "cached-value");

    let started = Instant::now();
    let down = raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/uncached", &[]);
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.json()["error"]["kind"], "unavailable");
    assert_eq!(down.json()["error"]["upstream_code"], "UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    ground.gcp.fail_next(0);
    wait_until_fresh(&unix, cached, Instant::now() + Duration::from_secs(10));
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/uncached", &[]).status,
        200
    );
}

#[test]
fn a_slow_upstream_does_not_block_other_secrets() {
    let ground = Ground::start();
    ground.gcp.add_version("proj", "slow", b"slow-value");
    ground.gcp.set_latency(Duration::from_secs(2));
    std::fs::write(ground.dir.path().join("local/fast"), "fast-value").unwrap();
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    let slow = {
        let unix = unix.clone();
        std::thread::spawn(move || raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/slow", &[]))
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let fast = raw::get(&unix, "/v1/secret?ref=local://fast", &[]);
    assert_eq!(fast.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the fast read waited {:?}",
        started.elapsed()
    );
    assert_eq!(slow.join().unwrap().status, 200);
}

#[test]
fn prefetch_gates_readiness_and_sigterm_drains_then_removes_the_socket() {
    let ground = Ground::with_extra(
        "[server]\nprefetch = [\"gcp-sm://proj/warm\"]\ngrace_period = \"10s\"\n",
    );
    ground.gcp.add_version("proj", "warm", b"warm-value");
    ground.gcp.add_version("proj", "slow", b"slow-value");
    ground.gcp.set_latency(Duration::from_millis(1500));
    let mut served = Served::start(&ground, &[]);
    let unix = served.unix();
    assert_eq!(raw::get(&unix, "/healthz", &[]).status, 200);
    assert_eq!(
        raw::get(&unix, "/readyz", &[]).status,
        503,
        "prefetch is still running"
    );
    // `keyway status` says the same, and waits for it with --wait.
    let socket = served.socket.clone();
    let keyway_status = |args: &[&str]| {
        run(ground
            .keyway()
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .args(args))
    };
    let not_yet = keyway_status(&[]);
    assert_eq!(not_yet.status.code(), Some(5), "{}", stderr(&not_yet));
    assert!(
        stderr(&not_yet).contains("is not ready (prefetching); wait for it with --wait 30s"),
        "{}",
        stderr(&not_yet)
    );
    assert_eq!(keyway_status(&["--live"]).status.code(), Some(0));
    let ready = keyway_status(&["--wait", "10s"]);
    assert_eq!(ready.status.code(), Some(0), "{}", stderr(&ready));
    assert_eq!(
        stdout(&ready),
        format!("ready: keyway daemon at {}\n", served.socket.display())
    );
    assert_eq!(raw::get(&unix, "/readyz", &[]).status, 200);
    let warm = raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/warm", &[]);
    assert_eq!(warm.json()["source"], "hit", "prefetched");

    // A request in flight when SIGTERM arrives still completes.
    let in_flight = {
        let unix = unix.clone();
        std::thread::spawn(move || raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/slow", &[]))
    };
    std::thread::sleep(Duration::from_millis(300));
    let status = served.terminate();
    assert!(status.success(), "{status:?}: {}", served.stderr());
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(!served.socket.exists(), "the socket file is removed");
    let gone = keyway_status(&["--live"]);
    assert_eq!(gone.status.code(), Some(5));
    assert!(
        stderr(&gone).contains("cannot talk to the keyway daemon"),
        "{}",
        stderr(&gone)
    );
}

#[test]
fn hostile_requests_get_clear_4xx_answers() {
    let ground =
        Ground::with_extra("[server]\nmax_request_bytes = 16384\nheader_timeout = \"1s\"\n");
    let served = Served::start(&ground, &[]);
    let unix = served.unix();

    let huge_header = format!("X-Junk: {}", "a".repeat(64 * 1024));
    let reply = raw::get(&unix, "/v1/secret?ref=local://x", &[&huge_header]);
    assert!(
        reply.status == 431 || reply.status == 0,
        "oversized head: {} {}",
        reply.status,
        reply.text()
    );

    let body = format!("{{\"refs\":[\"{}\"]}}", "a".repeat(32 * 1024));
    assert_eq!(
        raw::post(&unix, "/v1/secrets", &[], body.as_bytes()).status,
        413
    );
    assert_eq!(raw::get(&unix, "/v1/secret?ref=nope://x", &[]).status, 400);
    assert_eq!(raw::get(&unix, "/v1/secret", &[]).status, 400);
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=local://../../etc/passwd", &[]).status / 100,
        4
    );
    assert_eq!(raw::get(&unix, "/nope", &[]).status, 404);
    let wrong_method = raw::exchange(&unix, &raw::request("DELETE", "/v1/secret", &[], b""));
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("GET"));
    let garbage = raw::exchange(&unix, b"\x16\x03\x01garbage\r\n\r\n");
    assert!(garbage.status == 400 || garbage.status == 0);

    // A client that never finishes its head is cut off by header_timeout.
    let started = Instant::now();
    let mut slow = std::os::unix::net::UnixStream::connect(&served.socket).unwrap();
    std::io::Write::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut slow, &mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // So is one that announces a body and sends less of it: 408, within header_timeout too.
    let started = Instant::now();
    let mut slow = std::os::unix::net::UnixStream::connect(&served.socket).unwrap();
    std::io::Write::write_all(
        &mut slow,
        b"POST /v1/secrets HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"refs\": [",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut slow, &mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408")
            && answer.contains("did not arrive within 1s (header_timeout)"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // And the daemon still serves.
    assert_eq!(raw::get(&unix, "/healthz", &[]).status, 200);
}

#[test]
fn throttling_is_rate_limited_and_reported_without_a_retry_storm() {
    let ground = Ground::start();
    let config = std::fs::read_to_string(&ground.config)
        .unwrap()
        .replace("project = \"proj\"", "project = \"proj\"\nrate_limit = 5");
    std::fs::write(&ground.config, config).unwrap();
    for i in 0..20 {
        ground.gcp.add_version("proj", &format!("s{i}"), b"v");
    }
    let served = Served::start(&ground, &[]);
    let unix = served.unix();

    // 20 distinct cold secrets at once: the token bucket (5/s, bursts of 5) spaces the upstream calls.
    let before = ground.gcp.access_count();
    let started = Instant::now();
    let body = format!(
        "{{\"refs\":[{}]}}",
        (0..20)
            .map(|i| format!("\"gcp-sm://proj/s{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let reply = raw::post(&unix, "/v1/secrets", &[], body.as_bytes());
    assert_eq!(reply.status, 200);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert!(results.iter().all(|r| r["value"] == "v"), "{results:?}");
    assert_eq!(ground.gcp.access_count() - before, 20);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "20 calls at 5/s took {:?}",
        started.elapsed()
    );

    // A throttled upstream with nothing cached: 429, kind throttled, and the upstream saw one call for the
    // read (RESOURCE_EXHAUSTED is not retried by the client; single-flight folds concurrent readers).
    ground.gcp.add_version("proj", "hot", b"v");
    ground.gcp.throttle_next(1000);
    let before = ground.gcp.access_count();
    let requests_before = stats_requests(&ground);
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let unix = unix.clone();
            std::thread::spawn(move || raw::get(&unix, "/v1/secret?ref=gcp-sm://proj/hot", &[]))
        })
        .collect();
    for t in threads {
        let reply = t.join().unwrap();
        assert_eq!(reply.status, 429, "{}", reply.text());
        assert_eq!(reply.json()["error"]["kind"], "throttled");
    }
    assert_eq!(ground.gcp.access_count(), before, "no access succeeded");
    let upstream_calls = stats_requests(&ground) - requests_before;
    assert!(
        (1..=10).contains(&upstream_calls),
        "10 readers of a throttled secret made {upstream_calls} upstream calls"
    );
    ground.gcp.throttle_next(0);
}

fn stats_requests(ground: &Ground) -> u64 {
    keyway_testkit::http(
        "GET",
        &format!("{}/emulator/stats", ground.gcp.endpoint),
        &[],
        "",
    )
    .json()["requests"]
        .as_u64()
        .unwrap()
}

#[test]
fn socket_mode_group_and_the_connection_limit_are_applied() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    // As root, a group other than the daemon's own, so the chown is what puts it there; otherwise the only
    // group we can be sure to set is our own.
    let own = rustix::process::getgid().as_raw();
    let gid = if rustix::process::geteuid().is_root() {
        own + 4242
    } else {
        own
    };
    let ground = Ground::with_extra(&format!(
        "[server]\nsocket_mode = \"0660\"\nsocket_group = \"{gid}\"\nmax_connections = 2\n"
    ));
    let served = Served::start(&ground, &[]);
    let meta = std::fs::metadata(&served.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);

    // Two idle keep-alive connections take both slots; a third waits in the backlog until one closes.
    let idle_a = std::os::unix::net::UnixStream::connect(&served.socket).unwrap();
    let idle_b = std::os::unix::net::UnixStream::connect(&served.socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let third = {
        let unix = served.unix();
        std::thread::spawn(move || {
            let started = Instant::now();
            let reply = raw::get(&unix, "/healthz", &[]);
            (reply.status, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    drop(idle_a);
    let (status, waited) = third.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_millis(500),
        "served at once: {waited:?}"
    );
    drop(idle_b);
}

#[test]
fn selector_access_rules_match_the_labels_assigned_to_callers() {
    let me = uid();
    let ground = Ground::with_extra(&format!(
        r#"[server]
[[server.labels]]
uids = [{me}]
labels = {{ project = "ml", "workload-type" = "job", user = "a@example.com" }}
[[server.access]]
selector = "project=ml,workload-type in (job)"
allow = ["local://ml/*"]
[[server.access]]
selector = "project=web"
allow = ["local://web/*"]
"#
    ));
    for dir in ["ml", "web"] {
        std::fs::create_dir_all(ground.dir.path().join("local").join(dir)).unwrap();
        std::fs::write(ground.dir.path().join("local").join(dir).join("s"), dir).unwrap();
    }
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=local://ml/s", &[]).status,
        200
    );
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=local://web/s", &[]).status,
        403
    );
}

/// Replaces the config file as a Kubernetes ConfigMap update does: a new file renamed over the old one.
fn rewrite_config(ground: &Ground, edit: impl FnOnce(String) -> String) {
    let text = edit(std::fs::read_to_string(&ground.config).unwrap());
    let next = ground.dir.path().join("keyway.toml.next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &ground.config).unwrap();
}

/// Asks `ok` every 100 ms until it holds; fails the test with `what` after 15 s.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(served: &Served, line: &str) -> bool {
    raw::get(&served.unix(), "/metrics", &[])
        .text()
        .lines()
        .any(|l| l == line)
}

#[test]
fn sighup_reloads_access_rules_and_the_audit_log_and_keeps_the_cache() {
    let me = uid();
    let audit = std::path::PathBuf::from("audit.log");
    let ground = Ground::with_extra(&format!(
        "[server]\naudit_log = \"{}\"\n[[server.access]]\nuids = [{me}]\nrefs = [\"local://team/*\"]\n",
        audit.display()
    ));
    let audit = ground.dir.path().join(audit);
    std::fs::create_dir_all(ground.dir.path().join("local/team")).unwrap();
    std::fs::write(ground.dir.path().join("local/team/db"), "db-pw").unwrap();
    std::fs::write(ground.dir.path().join("local/other"), "other-pw").unwrap();
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    let read = |name: &str| raw::get(&unix, &format!("/v1/secret?ref=local://{name}"), &[]);
    assert_eq!(read("team/db").json()["source"], "miss");
    assert_eq!(read("other").status, 403);

    // logrotate moves the audit log away; the operator widens the rule; then SIGHUP.
    std::fs::rename(&audit, audit.with_extension("log.1")).unwrap();
    rewrite_config(&ground, |text| text.replace("local://team/*", "local://**"));
    let pid = rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    eventually("the widened rule lets `other` be read", || {
        read("other").status == 200
    });
    let again = read("team/db").json();
    assert_eq!(
        again["source"], "hit",
        "same providers: the cache was kept: {again}"
    );
    let lines = std::fs::read_to_string(&audit).expect("a new audit log after the reload");
    assert!(lines.contains(r#""ref":"local://other""#), "{lines}");
    let log = served.stderr();
    assert!(
        log.contains("configuration reloaded") && log.contains("kept"),
        "{log}"
    );
    assert!(metric(
        &served,
        r#"keyway_config_reloads_total{result="ok"} 1"#
    ));
}

#[test]
fn watch_config_applies_a_changed_file_and_refuses_a_broken_one() {
    let ground = Ground::start();
    for (dir, value) in [("local", "one"), ("local2", "two")] {
        std::fs::create_dir_all(ground.dir.path().join(dir).join("team")).unwrap();
        std::fs::write(ground.dir.path().join(dir).join("team/db"), value).unwrap();
    }
    let served = Served::start(&ground, &["--watch-config"]);
    let unix = served.unix();
    let read = || raw::get(&unix, "/v1/secret?ref=local://team/db", &[]);
    assert_eq!(read().json()["value"], "one");
    let original = std::fs::read_to_string(&ground.config).unwrap();

    // Half an edit, then an access rule that does not compile: each refused, the running one kept.
    rewrite_config(&ground, |text| format!("{text}\n[server\n"));
    eventually("the broken file is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 1"#)
    });
    rewrite_config(&ground, |_| {
        format!("{original}\n[server]\n[[server.access]]\nuids = [0]\nrefs = [\"local://a[\"]\n")
    });
    eventually("the bad rule is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 2"#)
    });
    rewrite_config(&ground, |_| original.replace("/local\"", "/missing\""));
    eventually("a store directory that is not there is refused", || {
        metric(&served, r#"keyway_config_reloads_total{result="error"} 3"#)
    });
    assert!(metric(&served, "keyway_config_last_reload_successful 0"));
    let kept = read();
    assert_eq!(
        (kept.status, kept.json()["value"].clone()),
        (200, "one".into())
    );
    let log = served.stderr();
    assert!(
        log.contains("reload refused")
            && log.contains("unclosed character class")
            && log.contains("/missing is not a directory; create it"),
        "{log}"
    );

    // Another local store and a setting that applies only at start.
    rewrite_config(&ground, |_| {
        format!(
            "{}\n[server]\nmax_connections = 7\n",
            original.replace("/local\"", "/local2\"")
        )
    });
    eventually("the new store is served", || {
        read().json()["value"] == "two"
    });
    assert!(metric(&served, "keyway_config_last_reload_successful 1"));
    // The emptied cache's counts were added to the new one's: one miss in each, the old cache's hits kept.
    let metrics = raw::get(&served.unix(), "/metrics", &[]).text();
    assert!(
        metrics.lines().any(|l| l == "keyway_cache_misses_total 2"),
        "{metrics}"
    );
    assert!(
        !metrics.lines().any(|l| l == "keyway_cache_hits_total 0"),
        "{metrics}"
    );
    let log = served.stderr();
    assert!(log.contains("[server] max_connections"), "{log}");
    assert!(log.contains("emptied (the providers changed)"), "{log}");
}

#[test]
fn settings_that_could_never_apply_are_refused_at_start() {
    for (server, says) in [
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"locl://team/*\"]",
            "names `locl`, which is no configured provider instance (aws-sm, gcp-sm, local)",
        ),
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"team/*\"]",
            "`team/*` has no INSTANCE://",
        ),
        (
            "[[server.access]]\ntokens = [\"ap\"]\nrefs = [\"local://**\"]",
            "access rule 1 names token `ap`, which no [[server.tokens]] entry defines (tokens: none)",
        ),
        (
            "aws_compat_instance = \"aws\"",
            "aws_compat_instance = \"aws\" is no configured provider instance (aws-sm, gcp-sm, local)",
        ),
    ] {
        let ground = Ground::with_extra(&format!("[server]\n{server}\n"));
        for check in [false, true] {
            let out = run(ground
                .keyway()
                .arg("--socket")
                .arg(ground.dir.path().join("k.sock"))
                .arg("serve")
                .args(check.then_some("--check")));
            assert_eq!(out.status.code(), Some(2), "{server}: {}", stderr(&out));
            assert!(stderr(&out).contains(says), "{server}: {}", stderr(&out));
        }
    }
}

#[test]
fn serve_check_passes_a_good_configuration_without_serving_it() {
    let ground = Ground::with_extra(
        "[server]\ntcp = \"127.0.0.1:0\"\n[[server.tokens]]\nname = \"app\"\nenv = \"APP_TOKEN\"\n[[server.access]]\ntokens = [\"app\"]\nrefs = [\"local://**\"]\n",
    );
    let socket = ground.dir.path().join("k.sock");
    let out = run(ground
        .keyway()
        .env("APP_TOKEN", "tok-123")
        .arg("--socket")
        .arg(&socket)
        .args(["serve", "--check"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("{}: configuration OK\n", ground.config.display())
    );
    assert!(!socket.exists(), "--check bound the socket");
    // The same file on a machine without the token's variable: what the daemon would refuse, --check refuses.
    let out = run(ground
        .keyway()
        .arg("--socket")
        .arg(&socket)
        .args(["serve", "--check"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("APP_TOKEN is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_socket_every_user_may_use_without_access_rules_is_warned_about() {
    let says = "is open to every local user (mode 0666) and no [[server.access]] rule limits what a caller reads";
    let open_dir = |ground: &Ground, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(ground.dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for (server, dir_mode, warned) in [
        ("", 0o755, true),
        ("", 0o700, false), // others cannot reach the socket through its directory
        ("socket_mode = \"0660\"", 0o755, false),
        (
            "[[server.access]]\nuids = [0]\nrefs = [\"local://**\"]",
            0o755,
            false,
        ),
    ] {
        let ground = Ground::with_extra(&format!("[server]\n{server}\n"));
        open_dir(&ground, dir_mode);
        let out = run(ground
            .keyway()
            .arg("--socket")
            .arg(ground.dir.path().join("k.sock"))
            .args(["serve", "--check"]));
        assert_eq!(out.status.code(), Some(0), "{server}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).contains(says),
            warned,
            "{server} {dir_mode:o}: {}",
            stderr(&out)
        );
    }
    // A running daemon says it in its log: at start, and after a reload that drops the last rule.
    let ground = Ground::start();
    open_dir(&ground, 0o755);
    let served = Served::start(&ground, &[]);
    assert!(served.stderr().contains(says), "{}", served.stderr());
    let rule = "[server]\n[[server.access]]\nuids = [0]\nrefs = [\"local://**\"]\n";
    let ground = Ground::with_extra(rule);
    open_dir(&ground, 0o755);
    let served = Served::start(&ground, &[]);
    let config = std::fs::read_to_string(&ground.config).unwrap();
    std::fs::write(&ground.config, config.replace(rule, "")).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served.stderr().contains("configuration reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        served.stderr().matches(says).count(),
        1,
        "{}",
        served.stderr()
    );
}

#[test]
fn watch_config_without_a_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_keyway"))
        .env_remove("KEYWAY_CONFIG")
        .arg("--socket")
        .arg(dir.path().join("k.sock"))
        .args(["serve", "--watch-config"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("add --config FILE"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("k.sock").exists());
}

#[test]
fn tells_systemd_when_it_is_ready_reloading_and_stopping() {
    let ground = Ground::with_extra("[server]\nprefetch = [\"gcp-sm://proj/warm\"]\n");
    ground.gcp.add_version("proj", "warm", b"warm-value");
    ground.gcp.set_latency(Duration::from_millis(800));
    // The service manager's end: a datagram socket named by NOTIFY_SOCKET, as systemd gives a Type=notify unit.
    let path = ground.dir.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let started = Instant::now();
    let mut served =
        Served::start_with_env(&ground, &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let ready = next();
    assert!(
        ready.contains("READY=1\n") && ready.contains("STATUS=ready; prefetched 1 of 1 secrets\n"),
        "{ready}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "READY=1 came before the prefetch was done"
    );
    assert_eq!(raw::get(&served.unix(), "/readyz", &[]).status, 200);

    // systemctl reload (ExecReload=kill -HUP): RELOADING=1 with the monotonic time, then READY=1.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let reloading = next();
    assert!(
        reloading.contains("RELOADING=1\n") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    let again = next();
    assert!(
        again.contains("READY=1\n") && again.contains("STATUS=ready; configuration reloaded\n"),
        "{again}"
    );

    // A refused reload ends the reload too, and says so.
    rewrite_config(&ground, |text| format!("{text}\n[server.bogus]\n"));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(served.pid().cast_signed()).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    assert!(next().contains("RELOADING=1\n"));
    let refused = next();
    assert!(
        refused.contains("READY=1\n") && refused.contains("reload refused"),
        "{refused}"
    );

    assert!(served.terminate().success());
    assert!(next().contains("STOPPING=1\n"));
}

/// systemd's own socket-activation tool, with its `options` (`--listen=`, `--fdname=`, `-E VAR=VALUE`): it
/// listens, and on the first connection execs `keyway serve` with the listening sockets from fd 3 on
/// (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), as a .socket unit does. `socket` is the one keyway would
/// bind itself; its stderr (logged at info) goes to `stderr`.
/// Whether a TCP socket listens on `addr` (IPv4), from `/proc/net/tcp`: `local_address` as hex `ADDR:PORT`
/// (the address in the kernel's byte order), state `0A` (LISTEN).
fn listening(addr: SocketAddr) -> bool {
    let SocketAddr::V4(addr) = addr else {
        return false;
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
}

fn socket_activate(
    ground: &Ground,
    options: &[String],
    socket: &std::path::Path,
    stderr: &std::path::Path,
) -> Child {
    std::process::Command::new("systemd-socket-activate")
        .args(options)
        .args(["-E", "KEYWAY_LOG=info"])
        .arg(env!("CARGO_BIN_EXE_keyway"))
        .arg("--config")
        .arg(&ground.config)
        .arg("--socket")
        .arg(socket)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd; scripts/test.sh installs it)")
}

#[test]
fn serves_the_socket_systemd_passes_and_leaves_it_in_place() {
    let ground = Ground::start();
    std::fs::write(ground.dir.path().join("local/tok"), "activated").unwrap();
    let socket = ground.dir.path().join("activated.sock");
    let unused = ground.dir.path().join("unused.sock");
    let stderr_path = ground.dir.path().join("activate.stderr");
    let mut child = socket_activate(
        &ground,
        &[format!("--listen={}", socket.display())],
        &unused,
        &stderr_path,
    );
    eventually("the activation socket", || socket.exists());

    // The first connection, made before keyway runs, starts it and is answered by it.
    let reply = raw::get(
        &Target::Unix(socket.clone()),
        "/v1/secret?ref=local://tok",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["value"], "activated");
    assert!(!unused.exists(), "keyway bound its own socket as well");
    let said = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        said.contains("serving on the socket the service manager passed"),
        "{said}"
    );

    // Stopped, it leaves the socket to the manager, which keeps it for the next start.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(socket.exists(), "keyway removed the manager's socket");
}

#[test]
fn serves_every_socket_systemd_passes_by_kind_and_name() {
    // A .socket unit with ListenStream= for the unix socket, the AWS agent's TCP port and the metrics port
    // (FileDescriptorName=metrics); the config's own `tcp` and `metrics` addresses are not bound.
    let ground = Ground::with_extra(
        "[server]\ntcp = \"127.0.0.1:1\"\nmetrics = \"127.0.0.1:1\"\n[[server.tokens]]\nname = \"app\"\nenv = \"APP_TOKEN\"\n",
    );
    std::fs::write(ground.dir.path().join("local/tok"), "passed-value").unwrap();
    let socket = ground.dir.path().join("activated.sock");
    let (tcp, metrics) = (keyway_testkit::lease_port(), keyway_testkit::lease_port());
    let tcp_addr: SocketAddr = ([127, 0, 0, 1], tcp.port).into();
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics.port).into();
    let stderr_path = ground.dir.path().join("activate.stderr");
    let mut child = socket_activate(
        &ground,
        &[
            format!("--listen={}", socket.display()),
            format!("--listen={tcp_addr}"),
            format!("--listen={metrics_addr}"),
            "--fdname=keyway.socket:keyway.socket:metrics".to_owned(),
            "-E".to_owned(),
            "APP_TOKEN=tok-passed".to_owned(),
        ],
        &ground.dir.path().join("unused.sock"),
        &stderr_path,
    );
    // systemd-socket-activate binds its sockets in turn: wait for the last, without connecting (a connection
    // would start keyway).
    eventually("the activation sockets", || {
        socket.exists() && listening(tcp_addr) && listening(metrics_addr)
    });

    // The first connection, on the TCP socket, starts keyway; the token still rules there.
    let uri = "/v1/secret?ref=local://tok";
    let on_tcp = raw::get(
        &Target::Tcp(tcp_addr),
        uri,
        &["X-Aws-Parameters-Secrets-Token: tok-passed"],
    );
    assert_eq!(on_tcp.status, 200, "{}", on_tcp.text());
    assert_eq!(on_tcp.json()["value"], "passed-value");
    assert_eq!(raw::get(&Target::Tcp(tcp_addr), uri, &[]).status, 401);
    assert_eq!(
        raw::get(&Target::Unix(socket.clone()), uri, &[]).json()["value"],
        "passed-value"
    );
    let scrape = raw::get(&Target::Tcp(metrics_addr), "/metrics", &[]);
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    assert!(
        scrape.text().contains("keyway_requests_total"),
        "{}",
        scrape.text()
    );
    assert_eq!(raw::get(&Target::Tcp(metrics_addr), uri, &[]).status, 404);
    let said = std::fs::read_to_string(&stderr_path).unwrap();
    for line in [
        "serving tcp on the socket the service manager passed, not tcp = \"127.0.0.1:1\"",
        "serving metrics on the socket the service manager passed, not metrics = \"127.0.0.1:1\"",
        "serving on the socket the service manager passed",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn refuses_two_passed_sockets_of_one_kind() {
    let ground = Ground::start();
    let dir = ground.dir.path();
    let stderr_path = dir.join("activate.stderr");
    let (first, second) = (dir.join("one.sock"), dir.join("two.sock"));
    let mut child = socket_activate(
        &ground,
        &[
            format!("--listen={}", first.display()),
            format!("--listen={}", second.display()),
        ],
        &dir.join("unused.sock"),
        &stderr_path,
    );
    eventually("the activation sockets", || second.exists());
    // A connection starts keyway, which refuses the pair and exits 2.
    let _ = std::os::unix::net::UnixStream::connect(&first);
    let status = child.wait().unwrap();
    let said = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(
        said.contains("the service manager passed more than one unix stream socket; keyway takes one unix stream socket, one TCP socket for `tcp` and one TCP socket named `metrics`"),
        "{said}"
    );
    assert_eq!(
        said.lines()
            .filter(|l| l.starts_with("keyway: error"))
            .count(),
        1,
        "{said}"
    );
}

#[test]
fn the_metrics_listener_serves_metrics_and_probes_and_never_a_secret() {
    let ground = Ground::with_extra("[server]\nmetrics = \"127.0.0.1:0\"\n");
    std::fs::write(ground.dir.path().join("local/db"), "db-pw-on-metrics").unwrap();
    let served = Served::start(&ground, &[]);
    assert_eq!(
        raw::get(&served.unix(), "/v1/secret?ref=local://db", &[]).json()["value"],
        "db-pw-on-metrics"
    );
    let scrape = Target::Tcp(served.metrics.unwrap());
    let metrics = raw::get(&scrape, "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .lines()
            .any(|l| l == "keyway_cache_misses_total 1"),
        "{}",
        metrics.text()
    );
    assert_eq!(raw::get(&scrape, "/healthz", &[]).status, 200);
    assert_eq!(raw::get(&scrape, "/ping", &[]).status, 200);
    eventually("ready", || raw::get(&scrape, "/readyz", &[]).status == 200);
    for path in [
        "/v1/secret?ref=local://db",
        "/secretsmanager/get?secretId=db",
        "/v1/list?provider=local",
    ] {
        let reply = raw::get(&scrape, path, &[]);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        assert!(
            reply
                .text()
                .contains("serves /metrics, /healthz, /readyz and /ping only"),
            "{}",
            reply.text()
        );
        assert!(!reply.text().contains("db-pw"), "{}", reply.text());
    }
    assert_eq!(raw::post(&scrape, "/metrics", &[], b"").status, 405);
}

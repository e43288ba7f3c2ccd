//! `keyway serve`: the real daemon binary over real sockets: its API, callers' identity and access rules, the
//! AWS agent's routes, hostile requests, the metrics listener.

use std::process::Stdio;
use std::time::{Duration, Instant};

use keyway_testkit::raw::{self, Target};

use crate::support::{Ground, Served, eventually, run, stderr, stdout, uid};

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
        .stdout(crate::support::unread_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon_pid = rustix::process::Pid::from_child(&daemon);
    let status = ground
        .keyway()
        .arg("--socket")
        .arg(&socket)
        .args(["status", "--wait", "10s"])
        .stdout(crate::support::unread_pipe())
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

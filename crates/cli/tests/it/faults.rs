//! Faults between the daemon and its upstream, injected by testkit's `FaultProxy` between `keyway serve` and
//! moto: an outage under steady load, a throttling storm, rotation (with files replaced atomically), and
//! SIGTERM and restart under load. Each prints its figures (`--nocapture`); `docs/security.md` records them.
//!
//! `KEYWAY_OUTAGE_SECS` (default 6) sets the outage's length; the documented long run uses 60.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    reason = "rates and percentiles for the report; the counts are far below 2^52"
)]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_testkit::fault::{Fault, FaultProxy, Flavor};
use keyway_testkit::raw;

use crate::support::{Ground, env_u64};
use crate::support::{Served, wait_until_fresh};

/// A ground whose aws-sm instance reaches moto through a fault proxy, with `settings` in its table.
fn through_proxy(settings: &str) -> (Ground, FaultProxy) {
    let ground = Ground::start();
    let proxy = FaultProxy::start(&ground.moto.endpoint, Flavor::Aws);
    let config = std::fs::read_to_string(&ground.config).unwrap().replace(
        &format!("endpoint = \"{}\"", ground.moto.endpoint),
        &format!("endpoint = \"{}\"\n{settings}", proxy.endpoint),
    );
    std::fs::write(&ground.config, config).unwrap();
    (ground, proxy)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    stale: AtomicU64,
    slowest_ms: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// Readers of `paths` in rotation until `stop`; every answer must be 200 with the expected value.
fn steady_load(
    target: &raw::Target,
    paths: &[(String, String)],
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|t| {
            let (target, paths, stop, tally) =
                (target.clone(), paths.to_vec(), stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let (path, want) = &paths[i % paths.len()];
                    i += 1;
                    let started = Instant::now();
                    let reply = raw::get(&target, path, &[]);
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tally.slowest_ms.fetch_max(ms, Ordering::Relaxed);
                    if reply.status == 200 && reply.json()["value"] == want.as_str() {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if reply.json()["stale"] == true {
                            tally.stale.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        tally.failures.lock().unwrap().push(format!(
                            "{path}: {} {}",
                            reply.status,
                            reply.text()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect()
}

#[test]
fn an_upstream_outage_under_load_serves_cached_secrets_and_recovers() {
    let outage = Duration::from_secs(env_u64("KEYWAY_OUTAGE_SECS", 6));
    let (ground, proxy) = through_proxy("ttl = \"1s\"\nmax_stale = \"1h\"\ntimeout = \"1s\"");
    let mut hot = Vec::new();
    for i in 0..10 {
        ground
            .moto
            .create_secret(&format!("hot/s{i}"), &format!("hot-{i}"));
        ground.moto.create_secret(&format!("cold/s{i}"), "cold");
        hot.push((
            format!("/v1/secret?ref=aws-sm://hot/s{i}"),
            format!("hot-{i}"),
        ));
    }
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    for (path, _) in &hot {
        assert_eq!(raw::get(&unix, path, &[]).status, 200);
    }
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let readers = steady_load(&unix, &hot, &stop, &tally);
    std::thread::sleep(Duration::from_millis(1500));

    // Down: first a black hole (calls time out), then refused connections.
    let down = Instant::now();
    proxy.set(Fault::Blackhole);
    let mut cold_answers = Vec::new();
    let mut i = 0;
    while down.elapsed() < outage {
        if down.elapsed() > outage / 2 {
            proxy.set(Fault::Refuse);
        }
        let started = Instant::now();
        let reply = raw::get(&unix, &format!("/v1/secret?ref=aws-sm://cold/s{i}"), &[]);
        cold_answers.push((
            reply.status,
            reply.json()["error"]["kind"].clone(),
            started.elapsed(),
        ));
        i = (i + 1) % 10;
    }
    proxy.set(Fault::Pass);
    let outage_survived = down.elapsed();

    // Recovered: every hot secret is fresh again within seconds, and the cold ones are served.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (path, _) in &hot {
        wait_until_fresh(&unix, path, deadline);
    }
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=aws-sm://cold/s0", &[]).status,
        200
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "cached reads failed: {failures:?}");
    assert!(
        tally.stale.load(Ordering::Relaxed) > 0,
        "the outage outlived the TTL"
    );
    // A hung upstream holds a read of an expired value for stale_wait (500 ms), not for the SDK's timeouts.
    assert!(
        tally.slowest_ms.load(Ordering::Relaxed) < 1500,
        "slowest cached read {} ms",
        tally.slowest_ms.load(Ordering::Relaxed)
    );
    assert!(!cold_answers.is_empty());
    for (status, kind, took) in &cold_answers {
        assert_eq!(*status, 503, "uncached during the outage");
        assert_eq!(kind, "unavailable");
        assert!(*took < Duration::from_secs(10), "answered in {took:?}");
    }
    let slowest_cold = cold_answers.iter().map(|a| a.2).max().unwrap_or_default();
    println!(
        "outage: {:.1} s survived; cached reads {} ok ({} stale), 0 failed, slowest {} ms; uncached reads {} x 503, slowest {} ms; upstream calls through the proxy {}",
        outage_survived.as_secs_f64(),
        tally.ok.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed),
        tally.slowest_ms.load(Ordering::Relaxed),
        cold_answers.len(),
        slowest_cold.as_millis(),
        proxy.requests()
    );
}

#[test]
fn a_throttling_storm_keeps_upstream_calls_under_the_rate_limit() {
    let limit = 10.0;
    let (ground, proxy) = through_proxy("rate_limit = 10");
    for i in 0..60 {
        ground
            .moto
            .create_secret(&format!("storm/s{i}"), &format!("v{i}"));
    }
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    // Half of the upstream's answers are ThrottlingException.
    proxy.set(Fault::Status {
        code: 429,
        every: 2,
    });
    let before = proxy.requests();
    let started = Instant::now();
    let readers: Vec<_> = (0..6)
        .map(|t| {
            let unix = unix.clone();
            std::thread::spawn(move || {
                (0..10)
                    .map(|k| {
                        let i = t * 10 + k;
                        let reply =
                            raw::get(&unix, &format!("/v1/secret?ref=aws-sm://storm/s{i}"), &[]);
                        (i, reply)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let replies: Vec<_> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let calls = proxy.requests() - before;
    let (mut values, mut throttled) = (0, 0);
    for (i, reply) in &replies {
        match reply.status {
            200 => {
                assert_eq!(reply.json()["value"], format!("v{i}"));
                values += 1;
            }
            429 => {
                assert_eq!(
                    reply.json()["error"]["kind"],
                    "throttled",
                    "{}",
                    reply.text()
                );
                assert!(reply.text().contains("rate_limit"), "{}", reply.text());
                throttled += 1;
            }
            other => panic!("storm/s{i}: {other} {}", reply.text()),
        }
    }
    // Token bucket: a burst of `limit`, then `limit` a second.
    let allowed = limit + limit * elapsed;
    assert!(
        (calls as f64) <= allowed + 1.0,
        "{calls} upstream calls in {elapsed:.1} s against a limit of {limit}/s"
    );
    assert_eq!(
        calls,
        replies.len() as u64,
        "one upstream call per cold read: throttled calls are not retried"
    );
    assert!(
        values > 0 && throttled > 0,
        "{values} values, {throttled} throttled"
    );
    println!(
        "throttling storm: {} reads of distinct cold secrets, {values} values, {throttled} clear 429s; {calls} upstream calls in {elapsed:.1} s = {:.1}/s (limit {limit}/s after a burst of {limit})",
        replies.len(),
        calls as f64 / elapsed
    );
}

#[test]
fn rotation_reaches_every_reader_within_the_ttl_and_files_are_replaced_whole() {
    let (ground, _proxy) = through_proxy("ttl = \"2s\"");
    // The GCP instance too: a new version becomes `latest`.
    let config = std::fs::read_to_string(&ground.config)
        .unwrap()
        .replace("project = \"proj\"", "project = \"proj\"\nttl = \"2s\"");
    std::fs::write(&ground.config, config).unwrap();
    ground.gcp.add_version("proj", "rot", b"g1");
    let big = |tag: &str| format!("{tag}:{}", "x".repeat(256 * 1024));
    ground.moto.create_secret("rot/token", "v1");
    ground.moto.create_secret("rot/file", &big("v1"));
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    let path = "/v1/secret?ref=aws-sm://rot/token";
    assert_eq!(raw::get(&unix, path, &[]).json()["value"], "v1");

    ground.moto.put_secret_value("rot/token", "v2");
    let rotated = Instant::now();
    loop {
        if raw::get(&unix, path, &[]).json()["value"] == "v2" {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(4),
            "not within the TTL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen_after = rotated.elapsed();
    let gcp = "/v1/secret?ref=gcp-sm://proj/rot";
    assert_eq!(raw::get(&unix, gcp, &[]).json()["value"], "g1");
    ground.gcp.add_version("proj", "rot", b"g2");
    let rotated_gcp = Instant::now();
    while raw::get(&unix, gcp, &[]).json()["value"] != "g2" {
        assert!(
            rotated_gcp.elapsed() < Duration::from_secs(4),
            "GCP: not within the TTL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen_after_gcp = rotated_gcp.elapsed();
    ground.gcp.add_version("proj", "rot", b"g3");
    assert_eq!(
        raw::get(&unix, &format!("{gcp}&refresh=true"), &[]).json()["value"],
        "g3"
    );
    // refresh asks the upstream now (the AWS agent's refreshNow too).
    ground.moto.put_secret_value("rot/token", "v3");
    let now = raw::get(&unix, &format!("{path}&refresh=true"), &[]);
    assert_eq!(now.json()["value"], "v3");
    assert_eq!(raw::get(&unix, path, &[]).json()["value"], "v3");
    ground.moto.put_secret_value("rot/token", "v4");
    let agent = raw::get(
        &unix,
        "/secretsmanager/get?secretId=rot/token&refreshNow=true",
        &["X-Aws-Parameters-Secrets-Token: x"],
    );
    assert_eq!(agent.json()["SecretString"], "v4", "{}", agent.text());

    // `keyway render --watch`: a reader never sees a partial file while the value rotates under it.
    let (reads, seen) = read_while_rotating(&ground, big);
    assert!(seen.contains("v4"), "the last rotation arrived: {seen:?}");
    println!(
        "rotation: new value seen {} ms (AWS) and {} ms (GCP) after the rotation (TTL 2 s), at once with refresh; {reads} whole reads of a 256 KiB file across {} values, none partial",
        seen_after.as_millis(),
        seen_after_gcp.as_millis(),
        seen.len()
    );
}

/// Renders `aws-sm://rot/file` with `keyway render --watch 1s` while it rotates v2, v3, v4 (values made by
/// `big`) and a thread reads the file in a loop, checking each read is whole; returns the reads and the values
/// seen, up to v4 (or a deadline).
fn read_while_rotating(
    ground: &Ground,
    big: impl Fn(&str) -> String,
) -> (u64, std::collections::BTreeSet<String>) {
    let dir = ground.dir.path().join("rendered");
    let mut watcher = crate::support::keyway(&ground.config)
        .args(["--daemon", "never", "render", "--dir"])
        .arg(&dir)
        .args(["--watch", "1s", "f=aws-sm://rot/file"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.join("f");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "never rendered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut reads, mut seen) = (0u64, std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).unwrap();
                let (tag, rest) = text.split_once(':').expect("a whole value");
                assert_eq!(rest.len(), 256 * 1024, "partial file for {tag}");
                seen.insert(tag.to_owned());
                reads += 1;
                if tag == "v4" {
                    break;
                }
            }
            (reads, seen)
        })
    };
    for tag in ["v2", "v3", "v4"] {
        ground.moto.put_secret_value("rot/file", &big(tag));
        std::thread::sleep(Duration::from_millis(1500));
    }
    // The last rotation reaches the file within a watch interval plus two fetches of 256 KiB from moto, which on
    // a loaded machine can take longer than the pause above: the reader stops at it, or at the deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let read = reader.join().unwrap();
    let _ = watcher.kill();
    let _ = watcher.wait();
    read
}

#[test]
fn sigterm_under_load_finishes_or_refuses_cleanly_and_a_restart_serves_again() {
    let ground = Ground::with_extra("[server]\ngrace_period = \"5s\"\n");
    ground.moto.create_secret("load/s", "v");
    let mut served = Served::start(&ground, &[]);
    let unix = served.unix();
    assert_eq!(
        raw::get(&unix, "/v1/secret?ref=aws-sm://load/s", &[]).status,
        200
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (unix, stop) = (unix.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut outcomes = std::collections::BTreeMap::<u16, u64>::new();
                while !stop.load(Ordering::Relaxed) {
                    // Once the daemon has stopped, nothing accepts: counted as refused (0).
                    let status = match raw::try_get(&unix, "/v1/secret?ref=aws-sm://load/s", &[]) {
                        Some(reply) => {
                            if reply.status == 200 {
                                assert_eq!(reply.json()["value"], "v");
                            }
                            reply.status
                        }
                        None => 0,
                    };
                    *outcomes.entry(status).or_default() += 1;
                    if status == 0 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                outcomes
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status = served.terminate();
    assert!(status.success(), "{status:?}: {}", served.stderr());
    assert!(!served.socket.exists(), "the socket file is removed");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = std::collections::BTreeMap::<u16, u64>::new();
    for c in clients {
        for (status, n) in c.join().unwrap() {
            *outcomes.entry(status).or_default() += n;
        }
    }
    // 200s before and during the drain; after it, no connection (status 0): nothing else.
    assert!(
        outcomes.keys().all(|s| *s == 200 || *s == 0 || *s == 503),
        "{outcomes:?}"
    );
    assert!(outcomes.get(&200).copied().unwrap_or(0) > 0, "{outcomes:?}");

    let restarted = Served::start(&ground, &[]);
    assert!(restarted.socket.exists(), "the socket is recreated");
    assert_eq!(
        raw::get(&restarted.unix(), "/v1/secret?ref=aws-sm://load/s", &[]).status,
        200
    );
    println!(
        "sigterm under load: client outcomes by status (0 = refused after the drain): {outcomes:?}"
    );
}

#[test]
fn errors_carry_aws_own_code_and_the_transport_failure() {
    // A black hole times out after three 300 ms attempts.
    let (ground, proxy) = through_proxy("timeout = \"300ms\"");
    let served = Served::start(&ground, &[]);
    let unix = served.unix();
    proxy.set(Fault::Error {
        status: 400,
        code: "ExpiredTokenException",
    });
    let agent = raw::get(&unix, "/secretsmanager/get?secretId=expired/a", &[]);
    assert_eq!(
        (agent.status, agent.json()["__type"].clone()),
        (400, "ExpiredTokenException".into()),
        "the AWS agent's shape keeps AWS's code: {}",
        agent.text()
    );
    let native = raw::get(&unix, "/v1/secret?ref=aws-sm://expired/b", &[]);
    let error = native.json()["error"].clone();
    assert_eq!(
        (
            native.status,
            error["kind"].clone(),
            error["upstream_code"].clone()
        ),
        (
            403,
            "permission_denied".into(),
            "ExpiredTokenException".into()
        ),
        "{}",
        native.text()
    );
    assert!(error.get("failure").is_none(), "{error}");

    // Refusing acts at accept, and the daemon keeps its connection open: a black hole acts per request.
    proxy.set(Fault::Blackhole);
    let native = raw::get(&unix, "/v1/secret?ref=aws-sm://silent/c", &[]);
    let error = native.json()["error"].clone();
    assert_eq!(
        (
            native.status,
            error["kind"].clone(),
            error["failure"].clone()
        ),
        (503, "unavailable".into(), "read_timeout".into()),
        "{}",
        native.text()
    );
}

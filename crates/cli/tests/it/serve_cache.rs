//! `keyway serve` and its upstreams: one call per secret however many ask, stale values while the upstream is
//! down, no head-of-line blocking, throttling without a retry storm, prefetch and drain.

use std::time::{Duration, Instant};

use keyway_testkit::raw;

use crate::support::{Ground, Served, run, stderr, stdout, wait_until_fresh};

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

//! Hostile input against the running daemon (`docs/security.md`): request lines, headers, queries and bodies
//! built from the daemon's own vocabulary and junk, over the unix socket. Every request gets an HTTP answer
//! that is a 4xx (or 200, or a 503 naming the upstream) or a closed connection, within 5 s; never a 500; and
//! the daemon serves a well-behaved client afterwards. `KEYWAY_FUZZ_CASES` requests (default 300).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use keyway_testkit::raw;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::Served;
use crate::support::{Ground, proc_status_kib};

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec![
        "GET", "GET", "GET", "POST", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "BREW",
        "G\0ET", "", "CONNECT",
    ]);
    let path = prop::sample::select(vec![
        "/v1/secret?ref=",
        "/v1/secret?ref=local://",
        "/v1/secret?ref=aws-sm://",
        "/v1/secret?ref=gcp-sm://proj/",
        "/v1/secrets",
        "/v1/list?provider=",
        "/secretsmanager/get?secretId=",
        "/v1/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "//",
        "/v1/secret/../../etc/passwd",
        "*",
        "http://evil.example/v1/secret?ref=",
        "/v1/secret?ref=local://..%2f..%2fetc%2fpasswd",
        "/%00",
        "/v1/secret?ref=local://x&ref=local://y",
    ]);
    let suffix = prop_oneof![
        "[a-zA-Z0-9/_.%#?&=~-]{0,40}",
        "[ -~]{0,20}",
        Just(String::new())
    ];
    let version = prop::sample::select(vec![
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/9.9", "", "http/1.1",
    ]);
    let header = (
        prop::sample::select(vec![
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "X-Forwarded-For",
            "X-Aws-Parameters-Secrets-Token",
            "X-Vault-Token",
            "Authorization",
            "Content-Type",
            "Expect",
            "Upgrade",
            "X-Junk",
            "Bad Header",
            "",
        ]),
        prop_oneof![
            prop::sample::select(vec![
                "chunked",
                "0",
                "5",
                "-1",
                "99999999999999999999",
                "application/json",
                "100-continue",
                "h2c",
                "127.0.0.1",
                ""
            ])
            .prop_map(str::to_owned),
            "[ -~]{0,30}",
        ],
    );
    let body = prop_oneof![
        Just(String::new()),
        Just(r#"{"refs":["local://a","nope://b"]}"#.to_owned()),
        Just("0\r\n\r\n".to_owned()),
        "[ -~]{0,64}",
    ];
    (
        method,
        path,
        suffix,
        version,
        prop::collection::vec(header, 0..5),
        body,
    )
        .prop_map(|(method, path, suffix, version, headers, body)| {
            let mut text = format!("{method} {path}{suffix} {version}\r\n");
            for (name, value) in headers {
                let _ = write!(text, "{name}: {value}\r\n");
            }
            // The exchange ends when the server closes; a request that asks to keep alive still gets its answer.
            text.push_str("Connection: close\r\n\r\n");
            text.push_str(&body);
            text.into_bytes()
        })
}

/// Status of the answer (0: closed without one) and how long it took.
fn exchange(socket: &std::path::Path, request: &[u8]) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, started.elapsed())
}

#[test]
fn arbitrary_requests_get_a_clear_answer_or_a_closed_connection() {
    let cases =
        u32::try_from(crate::support::env_u64("KEYWAY_FUZZ_CASES", 300)).unwrap_or(u32::MAX);
    let ground =
        Ground::with_extra("[server]\nmax_request_bytes = 16384\nheader_timeout = \"1s\"\n");
    std::fs::write(ground.dir.path().join("local/x"), "fuzz-canary-value").unwrap();
    let served = Served::start(&ground, &[]);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let by_status = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    let result = runner.run(&request(), |request| {
        let (status, text, took) = exchange(&served.socket, &request);
        *by_status.borrow_mut().entry(status).or_default() += 1;
        prop_assert!(
            took < Duration::from_secs(5),
            "no answer within 5 s: {:?}",
            String::from_utf8_lossy(&request)
        );
        prop_assert!(
            status != 500,
            "500 for {:?}: {text}",
            String::from_utf8_lossy(&request)
        );
        prop_assert!(
            status < 500 || text.contains("\"unavailable\"") || text.contains("\"throttled\""),
            "{status} for {:?}: {text}",
            String::from_utf8_lossy(&request)
        );
        Ok(())
    });
    result.unwrap();
    assert_eq!(
        raw::get(&served.unix(), "/healthz", &[]).status,
        200,
        "still serving"
    );
    assert!(!served.stderr().contains("panicked"), "{}", served.stderr());
    println!(
        "daemon HTTP fuzz: {cases} requests, answers by status (0 = closed): {:?}",
        by_status.borrow()
    );
}

/// An HTTP attack in progress for 5 s: idle connections held open, slowloris clients dribbling a head, and
/// oversized heads and bodies in a loop. Each attack gets its 4xx or a closed connection in bounded time,
/// a well-behaved client beside them keeps being served promptly, and the daemon's memory stays bounded.
#[test]
fn well_behaved_clients_are_served_during_an_http_attack() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let ground = Ground::with_extra(
        "[server]\nmax_connections = 128\nmax_request_bytes = 16384\nheader_timeout = \"1s\"\n",
    );
    std::fs::write(ground.dir.path().join("local/good"), "good-value").unwrap();
    let served = Served::start(&ground, &[]);
    let socket = served.socket.clone();
    let before = proc_status_kib(served.pid(), "VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let (cut_off, rejected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut attackers = Vec::new();
    // Idle and slowloris: 40 connections that never finish a head; each must be cut off by header_timeout.
    for i in 0..40 {
        let (socket, stop, cut_off) = (socket.clone(), stop.clone(), cut_off.clone());
        attackers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let opened = Instant::now();
                let mut buf = [0u8; 64];
                loop {
                    if i % 2 == 0 {
                        // slowloris: one byte of a head every 200 ms
                        let _ = s.write_all(b"X");
                    }
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                    assert!(opened.elapsed() < Duration::from_secs(5), "never cut off");
                }
                cut_off.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Oversized heads and bodies, as fast as they are answered.
    for i in 0..4 {
        let (socket, stop, rejected) = (socket.clone(), stop.clone(), rejected.clone());
        attackers.push(std::thread::spawn(move || {
            let head = format!("X-Junk: {}", "a".repeat(64 * 1024));
            let body = vec![b'{'; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let target = raw::Target::Unix(socket.clone());
                let reply = if i % 2 == 0 {
                    raw::get(&target, "/v1/secret?ref=local://good", &[&head])
                } else {
                    raw::post(&target, "/v1/secrets", &[], &body)
                };
                assert!(
                    matches!(reply.status, 0 | 413 | 431 | 400),
                    "oversized: {}",
                    reply.status
                );
                rejected.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut served_ok = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let asked = Instant::now();
        let reply = raw::get(&served.unix(), "/v1/secret?ref=local://good", &[]);
        slowest = slowest.max(asked.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["value"], "good-value");
        served_ok += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = proc_status_kib(served.pid(), "VmRSS");
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a good client waited {slowest:?}"
    );
    assert!(during < before + 64 * 1024, "RSS {before} -> {during} KiB");
    assert!(
        cut_off.load(Ordering::Relaxed) >= 40,
        "slow clients were cut off"
    );
    println!(
        "http attack: 40 idle/slowloris connections cut off {} times, {} oversized requests refused; a good client served {served_ok} times, slowest {} ms; RSS {before} -> {during} KiB",
        cut_off.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        slowest.as_millis()
    );
}

//! Heap allocations of a cached read on the AWS agent's route, counted by stats_alloc's instrumented system
//! allocator: the daemon serves in this process on loopback TCP, a client thread sends keep-alive requests
//! from a prepared buffer and reads the answers into a fixed one (so it allocates nothing itself), and the
//! allocations made while it does, over the number of requests, are the daemon's per request.
//!
//! Issue 34 asks for none in the steady state; this test states where Keyway is (`CEILING`, printed with the
//! measured figure) so a change that adds one fails, and lowering it is the work that remains.

use std::alloc::System;
use std::io::{Read as _, Write as _};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations per cached read, measured 6.07 on 2026-12-07 (the test prints it; 25.07 before the answers
/// were rendered once per version). What remains is hyper's, one each: the response's `HeaderMap` (its
/// index and entry tables), the request's custom header name (`X-Aws-Parameters-Secrets-Token` is copied into
/// a `HeaderName`), the read buffer's `split_to` and `reserve`, and the header-read timer's boxed `Sleep`
/// (hyper's `Timer` returns a `Box`; it is the slow-client guard, `header_timeout`).
const CEILING: u64 = 7;

/// Reads one HTTP/1.1 answer (head and a `content-length` body) into `buf`; returns its status.
fn read_answer(stream: &mut std::net::TcpStream, buf: &mut [u8]) -> u16 {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("read");
        assert!(n > 0, "the daemon closed the connection");
        filled += n;
        let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).expect("head");
        let status: u16 = head[9..12].parse().expect("status");
        let length: usize = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length");
        while filled < end + 4 + length {
            let n = stream.read(&mut buf[filled..]).expect("read");
            assert!(n > 0, "the daemon closed the connection");
            filled += n;
        }
        return status;
    }
}

#[test]
fn a_cached_read_on_the_agents_route_allocates_at_most_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("team")).unwrap();
    std::fs::write(
        dir.path().join("team/api"),
        r#"{"github_token":"ghp_0123456789abcdef0123456789abcdef0123","username":"octocat"}"#,
    )
    .unwrap();
    let token = "alloc-test-token";
    let server: keyway_daemon::ServerSection = toml::from_str(&format!(
        "unix = false\ntcp = \"127.0.0.1:0\"\naudit_log = \"off\"\naws_compat_instance = \"local\"\n\
         [[tokens]]\nname = \"bench\"\nfile = \"{}\"\n",
        {
            let path = dir.path().join("token");
            std::fs::write(&path, token).unwrap();
            path.display().to_string()
        }
    ))
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let daemon = runtime
        .block_on(keyway_daemon::Daemon::bind(
            &server,
            &keyway_providers::ProvidersConfig::default(),
            dir.path().to_owned(),
            keyway_daemon::Activated::default(),
        ))
        .unwrap();
    let addr = daemon.tcp_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(daemon.run(async {
        let _ = stopped.await;
    }));

    let request = format!(
        "GET /secretsmanager/get?secretId=team/api HTTP/1.1\r\nHost: localhost\r\n\
         X-Aws-Parameters-Secrets-Token: {token}\r\n\r\n"
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0_u8; 64 * 1024];
    let mut read = |n: u32| {
        for _ in 0..n {
            stream.write_all(request.as_bytes()).unwrap();
            assert_eq!(read_answer(&mut stream, &mut buf), 200);
        }
    };
    // The first read fetches and caches; the next ones warm every pool and table on the way.
    read(2_000);
    let requests = 20_000;
    let region = Region::new(GLOBAL);
    read(requests);
    let change = region.change();
    let total = u64::try_from(change.allocations + change.reallocations).unwrap();
    let hundredths = total * 100 / u64::from(requests);
    let per_request = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    println!("heap allocations per cached read: {per_request} (ceiling {CEILING})");

    let _ = stop.send(());
    runtime.block_on(serving).unwrap();
    assert!(
        total <= CEILING * u64::from(requests),
        "{per_request} allocations per cached read, more than {CEILING}"
    );
}

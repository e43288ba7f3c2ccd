//! `keyway serve` under systemd: readiness, reload and stop notifications, and socket activation.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use keyway_testkit::raw::{self, Target};

use crate::support::{Ground, Served, eventually, rewrite_config};

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

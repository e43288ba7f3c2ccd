//! The daemon keeps its memory to itself (`docs/security.md`): it is not dumpable (no core dumps, no ptrace by
//! same-user processes; the kernel then makes its `/proc/PID` files root's, which is what we observe from
//! outside), and with `lock_memory` its pages are locked, or it refuses to start with a message that names the
//! limit and the fix. The non-root cases run the binary as `nobody` with setpriv and prlimit (util-linux).

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A copy of the binary and a config `nobody` can read, in a directory it can write.
fn nobody_ground(extra: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let binary = dir.path().join("keyway");
    std::fs::copy(env!("CARGO_BIN_EXE_keyway"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("local")).unwrap();
    let config = dir.path().join("keyway.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.local]\ntype = \"local\"\ndir = \"{}\"\n{extra}",
            dir.path().join("local").display()
        ),
    )
    .unwrap();
    (dir, binary, config)
}

fn as_nobody(memlock: Option<u64>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    if let Some(bytes) = memlock {
        cmd.args(["prlimit", &format!("--memlock={bytes}:{bytes}"), "--"]);
    }
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    cmd
}

fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn the_daemon_is_not_dumpable() {
    if !root() {
        eprintln!("skipped: switching to nobody needs root (CI runs as root)");
        return;
    }
    let (dir, binary, config) = nobody_ground("");
    let socket = dir.path().join("k.sock");
    let mut child = as_nobody(None)
        .arg(&binary)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&socket);
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t65534")),
        "runs as nobody: {status}"
    );
    // A dumpable process owns its /proc files; a non-dumpable one's belong to root.
    let environ = std::fs::metadata(format!("/proc/{pid}/environ")).unwrap();
    assert_eq!(
        environ.uid(),
        0,
        "/proc/{pid}/environ is root's: not dumpable"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn lock_memory_refuses_to_start_under_a_low_limit_and_locks_with_privilege() {
    if !root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let (dir, binary, config) = nobody_ground("[server]\nlock_memory = true\n");
    let out = as_nobody(Some(65536))
        .arg(&binary)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("k.sock"))
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("RLIMIT_MEMLOCK is 65536 bytes") && err.contains("lock_memory = false"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!dir.path().join("k.sock").exists(), "nothing was served");

    // With CAP_IPC_LOCK (root) the pages are locked.
    let socket = dir.path().join("root.sock");
    let mut child = Command::new(&binary)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&socket);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let locked: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(locked > 0, "VmLck {locked} kB: {status}");
    let _ = child.kill();
    let _ = child.wait();
}

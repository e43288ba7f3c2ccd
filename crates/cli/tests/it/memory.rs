//! The daemon keeps its memory to itself (`docs/security.md`): it is not dumpable (no core dumps, no ptrace by
//! same-user processes; the kernel then makes its `/proc/PID` files root's, which is what we observe from
//! outside), and with `lock_memory` its pages are locked, or it refuses to start with a message that names the
//! limit and the fix. The non-root cases run the binary as `nobody` with setpriv and prlimit (util-linux).

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
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

/// `keyway serve` from `command` (the binary itself, or a wrapper running it) on `socket`.
fn serve(mut command: Command, binary: &Path, config: &Path, socket: &Path) -> std::process::Child {
    let child = command
        .arg(binary)
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(socket);
    child
}

fn wait_for(path: &Path) {
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
    let mut child = serve(
        as_nobody(None),
        &binary,
        &config,
        &dir.path().join("k.sock"),
    );
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
fn exec_and_render_that_keep_running_are_not_dumpable_but_the_command_is() {
    if !root() {
        eprintln!("skipped: switching to nobody needs root (CI runs as root)");
        return;
    }
    let (dir, binary, config) = nobody_ground("");
    std::fs::write(dir.path().join("local/k"), "value").unwrap();
    let environ_owner = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/environ"))
            .unwrap()
            .uid()
    };
    let start = |args: &[&str]| {
        as_nobody(None)
            .arg(&binary)
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    let mut exec = start(&[
        "exec",
        "--watch",
        "1h",
        "-e",
        "K=local://k",
        "--",
        "sleep",
        "30",
    ]);
    // setpriv execs keyway, which starts `sleep` as its child.
    let deadline = Instant::now() + Duration::from_secs(10);
    let command = loop {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", exec.id()))
            .unwrap_or_default();
        // Once it runs `sleep`: a child between its fork and its exec is still keyway's image, not dumpable.
        if let Some(pid) = children.split_whitespace().next()
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "sleep")
        {
            break pid.parse::<u32>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "keyway exec never started its command"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        environ_owner(exec.id()),
        0,
        "keyway exec --watch is not dumpable"
    );
    assert_eq!(
        environ_owner(command),
        65534,
        "the command it started is as dumpable as ever"
    );
    let _ = exec.kill();
    let _ = exec.wait();

    let out = dir.path().join("out");
    let mut render = start(&[
        "render",
        "--dir",
        out.to_str().unwrap(),
        "--watch",
        "1h",
        "f=local://k",
    ]);
    wait_for(&out.join("f"));
    assert_eq!(
        environ_owner(render.id()),
        0,
        "keyway render --watch is not dumpable"
    );
    let _ = render.kill();
    let _ = render.wait();
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
    let mut direct = Command::new("env");
    direct.arg("--");
    let mut child = serve(direct, &binary, &config, &dir.path().join("root.sock"));
    let locked = crate::support::proc_status_kib(child.id(), "VmLck");
    assert!(locked > 0, "VmLck {locked} kB");
    let _ = child.kill();
    let _ = child.wait();
}

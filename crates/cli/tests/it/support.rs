//! The harness every test module shares: [`Ground`] (moto, the GCP emulator and a local store, with a config
//! file naming them), the `keyway` binary's command line, [`Served`] (a running `keyway serve`), and small
//! helpers for outputs, files and waiting.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keyway_testkit::raw::{self, Target};
use keyway_testkit::{GcpEmulator, Moto};

/// A config file pointing the default instances at the emulators.
pub struct Ground {
    pub moto: Moto,
    pub gcp: GcpEmulator,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Ground {
    pub fn start() -> Ground {
        Self::with_extra("")
    }

    pub fn with_extra(extra: &str) -> Ground {
        let moto = Moto::start();
        let gcp = GcpEmulator::start();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keyway.toml");
        std::fs::create_dir_all(dir.path().join("local")).unwrap();
        std::fs::write(
            &config,
            format!(
                r#"
[providers.aws-sm]
type = "aws"
region = "us-east-1"
endpoint = "{}"

[providers.gcp-sm]
type = "gcp"
endpoint = "{}"
credentials = "anonymous"
project = "proj"

[providers.local]
type = "local"
dir = "{}"
{extra}
"#,
                moto.endpoint,
                gcp.endpoint,
                dir.path().join("local").display()
            ),
        )
        .unwrap();
        Ground {
            moto,
            gcp,
            dir,
            config,
        }
    }

    pub fn keyway(&self) -> Command {
        keyway(&self.config)
    }
}

/// The binary with the test AWS credentials in its environment and nothing inherited that could interfere.
pub fn keyway(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyway"));
    cmd.arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("KEYWAY_LOG")
        .env_remove("KEYWAY_CONFIG")
        .env("KEYWAY_DAEMON", "never")
        .stdin(Stdio::null());
    cmd
}

/// A numeric knob of the long-running tests (`KEYWAY_SOAK_SECS`, `KEYWAY_FUZZ_CASES`, ...), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmLck`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Asserts that the binary takes `args` (an invocation from a manifest, a unit file or the docs): with `--help`
/// added before any `--`, it prints help and exits 0, where an unknown subcommand, flag or value exits 2.
pub fn assert_takes_arguments<S: AsRef<std::ffi::OsStr>>(args: &[S], what: &str) {
    let at = args
        .iter()
        .position(|a| a.as_ref() == "--")
        .unwrap_or(args.len());
    let out = Command::new(env!("CARGO_BIN_EXE_keyway"))
        .args(&args[..at])
        .arg("--help")
        .args(&args[at..])
        .output()
        .expect("run keyway");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cmd` (program, arguments, environment) run under `wrapper` and its arguments (`setpriv --bounding-set=...
/// --`, `sh -c 'exec "$@" >&-' sh`), with stdin from /dev/null as `keyway` gives it.
pub fn wrapped(wrapper: &str, wrapper_args: &[&str], cmd: &Command) -> Command {
    let mut outer = Command::new(wrapper);
    outer
        .args(wrapper_args)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (var, value) in cmd.get_envs() {
        match value {
            Some(value) => outer.env(var, value),
            None => outer.env_remove(var),
        };
    }
    outer
}

/// The writing end of a pipe whose reader is gone, for a stdout or stderr nobody reads: writes to it fail with
/// EPIPE (keyway ignores SIGPIPE, as Rust programs do).
pub fn unread_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run keyway")
}

/// Runs `cmd` with `input` on its stdin, its stdout and stderr collected.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

pub fn ground_has(ground: &Ground, setting: &str) -> bool {
    std::fs::read_to_string(&ground.config)
        .unwrap()
        .lines()
        .any(|l| l.trim_start().starts_with(setting))
}

pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Replaces the config file as a Kubernetes ConfigMap update does: a new file renamed over the old one.
pub fn rewrite_config(ground: &Ground, edit: impl FnOnce(String) -> String) {
    let text = edit(std::fs::read_to_string(&ground.config).unwrap());
    let next = ground.dir.path().join("keyway.toml.next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &ground.config).unwrap();
}

/// Asks `ok` every 100 ms until it holds; fails the test with `what` after 15 s.
pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn metric(served: &Served, line: &str) -> bool {
    raw::get(&served.unix(), "/metrics", &[])
        .text()
        .lines()
        .any(|l| l == line)
}

//! The real `keyway` binary against moto, the GCP emulator and the local store.
#![allow(missing_docs)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod agent;
mod canary;
mod completion;
mod deploy;
mod docs;
mod exec;
mod faults;
mod fuzz;
mod get;
mod git;
mod iam;
mod identity;
mod inject;
mod memory;
mod render;
mod selector;
mod serve;
mod soak;
mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

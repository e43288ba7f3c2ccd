//! Errors to one stderr line and a documented exit code.

use std::process::ExitCode;

use keyway_core::ErrorKind;

/// A usage problem found by the CLI itself (bad NAME=REF pair, unsafe file name, ...): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Several failures at once (render, exec): all are printed, the first decides the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{count} of {total} references failed; nothing was delivered")]
pub struct Many {
    pub count: usize,
    pub total: usize,
    pub first: ErrorKind,
}

/// Refuses to start a command whose output is its stdout when stdout was closed (`keyway get REF >&-`, a
/// supervisor that closes it): Rust's runtime opens `/dev/null` on a closed standard descriptor before `main`,
/// so the command would write into nothing and exit 0. That `/dev/null` is opened read-write, which a shell's
/// `> /dev/null` never is, so a chosen `> /dev/null` still works. Checked before any secret is fetched.
pub fn require_stdout() -> anyhow::Result<()> {
    use rustix::fs::{FileType, OFlags};
    let stdout = std::io::stdout();
    let (Ok(flags), Ok(stat)) = (rustix::fs::fcntl_getfl(&stdout), rustix::fs::fstat(&stdout))
    else {
        return Ok(()); // not known to be closed; a failed write still reports itself
    };
    let null_device = rustix::fs::makedev(1, 3);
    if FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice
        && stat.st_rdev == null_device
        && flags & OFlags::ACCMODE == OFlags::RDWR
    {
        return Err(Usage(
            "stdout was closed when keyway started, so nothing could be delivered: give it an open stdout \
             (a pipe or `> FILE`)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// Writes one line for `say!` and `tell!`. A line that cannot be written (a closed pipe, a stream nobody
/// reads) is dropped instead of ending the process with a panic, as `println!` would: the exit code still
/// tells. (Secret values go to stdout through checked writes, never through here.)
pub fn line(mut out: impl std::io::Write, line: std::fmt::Arguments<'_>) {
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        tracing::debug!(error = %e, "a line for stdout or stderr was dropped");
    }
}

pub fn code_for(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid | ErrorKind::Misconfigured => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::PermissionDenied => 4,
        ErrorKind::Throttled | ErrorKind::Unavailable => 5,
        _ => 1,
    }
}

fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<keyway_core::Error>() {
            return code_for(e.kind());
        }
        if let Some(many) = cause.downcast_ref::<Many>() {
            return code_for(many.first);
        }
        if cause.is::<Usage>() || cause.is::<keyway_providers::ConfigError>() {
            return 2;
        }
        if cause.is::<keyway_webhook::WebhookError>() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<keyway_daemon::DaemonError>() {
            return match e {
                keyway_daemon::DaemonError::Listen { .. }
                | keyway_daemon::DaemonError::MemoryLock(_) => 1,
                _ => 2,
            };
        }
    }
    1
}

/// Prints `keyway: error: MESSAGE` on one line and returns the exit code. Only the outermost messages are
/// printed: Keyway's own messages are complete, and SDK sources are logged at debug level instead.
pub fn report(err: &anyhow::Error) -> ExitCode {
    tracing::debug!(error = format!("{err:#}"), "failure detail");
    let mut line = String::new();
    for cause in err.chain() {
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause.to_string());
        // Stop at the first error of our own; what lies below is SDK detail.
        if cause.is::<keyway_core::Error>()
            || cause.is::<Usage>()
            || cause.is::<keyway_providers::ConfigError>()
            || cause.is::<Many>()
            || cause.is::<keyway_daemon::DaemonError>()
            || cause.is::<keyway_webhook::WebhookError>()
        {
            break;
        }
    }
    tell!("keyway: error: {}", line.replace('\n', " "));
    ExitCode::from(code(err))
}

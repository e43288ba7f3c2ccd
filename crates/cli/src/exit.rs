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
    eprintln!("keyway: error: {}", line.replace('\n', " "));
    ExitCode::from(code(err))
}

//! The audit log: one JSON line per secret read (time, caller, reference, decision, outcome), never a value.

use std::io::{LineWriter, Write};
use std::sync::Mutex;

use serde::Serialize;

use crate::DaemonError;
use crate::auth::Identity;

/// Where audit lines go.
pub(crate) enum Audit {
    Off,
    On(Mutex<LineWriter<Box<dyn Write + Send>>>),
}

/// One audit line.
#[derive(Serialize)]
pub(crate) struct Event<'a> {
    pub caller: &'a Identity,
    pub route: &'static str,
    #[serde(rename = "ref")]
    pub reference: &'a str,
    /// `allowed` or `denied`.
    pub decision: &'static str,
    /// `hit`, `miss`, `stale`, or the error kind.
    pub outcome: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

impl Audit {
    /// `off`, `stderr`, or a file opened for appending (created with mode 0600).
    pub fn open(target: &str) -> Result<Audit, DaemonError> {
        let sink: Box<dyn Write + Send> = match target {
            "off" | "" => return Ok(Audit::Off),
            "stderr" => Box::new(std::io::stderr()),
            path => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        DaemonError::Config(format!("audit_log = \"{path}\": cannot open: {e}"))
                    })?;
                Box::new(file)
            }
        };
        Ok(Audit::On(Mutex::new(LineWriter::new(sink))))
    }

    pub fn enabled(&self) -> bool {
        matches!(self, Audit::On(_))
    }

    pub fn record(&self, event: &Event<'_>) {
        let Audit::On(sink) = self else {
            return;
        };
        let line = Line {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            event,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let mut sink = sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = sink.write_all(&text) {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}

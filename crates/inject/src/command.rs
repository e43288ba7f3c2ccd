//! The command lines the webhook writes into Pods: `keyway render` for the init container and the refresh
//! sidecar, `keyway exec` in front of an app container's own command.
//!
//! Both are built from typed values, never pasted from strings at the call site. The `keyway` binary's tests
//! parse what these builders write with the binary's own argument parser (`the_webhooks_render_line_parses_as_
//! render_reads_it` in `crates/cli/src/render.rs`, and its `exec` twin), so a renamed flag fails a test, not a
//! Pod.

use std::collections::BTreeMap;
use std::time::Duration;

use keyway_core::{FileMode, SecretRef};

/// `keyway render`: every file and template of a Pod, fetched together, written atomically into `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderCommand {
    /// The program: `keyway`, on the image's `PATH`.
    pub program: String,
    /// `--dir`: the secrets volume's mount path.
    pub dir: String,
    /// `--mode`.
    pub mode: FileMode,
    /// `--uid` and `--gid`.
    pub owner: Option<(u32, u32)>,
    /// `--install-self`: where to copy the binary for `keyway exec` wrappers.
    pub install_self: Option<String>,
    /// `NAME=REF` arguments.
    pub files: BTreeMap<String, SecretRef>,
    /// `--template-text=NAME=TEXT` arguments.
    pub templates: BTreeMap<String, String>,
    /// `--watch`: keep re-rendering at this interval (the refresh sidecar).
    pub watch: Option<Duration>,
}

impl RenderCommand {
    /// The command line. The node's daemon is never used: a Pod's init container has no socket to it.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.program.clone(),
            "--daemon".to_owned(),
            "never".to_owned(),
            "render".to_owned(),
            "--dir".to_owned(),
            self.dir.clone(),
            "--mode".to_owned(),
            self.mode.to_string(),
        ];
        if let Some((uid, gid)) = self.owner {
            args.extend([
                "--uid".to_owned(),
                uid.to_string(),
                "--gid".to_owned(),
                gid.to_string(),
            ]);
        }
        if let Some(dir) = &self.install_self {
            args.extend(["--install-self".to_owned(), dir.clone()]);
        }
        // File names never start with `-` (the annotations are checked), so none reads as an option.
        args.extend(
            self.files
                .iter()
                .map(|(file, reference)| format!("{file}={reference}")),
        );
        // One argument each, `=`-joined: a template's text may start with `-`.
        args.extend(
            self.templates
                .iter()
                .map(|(file, text)| format!("--template-text={file}={text}")),
        );
        if let Some(interval) = self.watch {
            args.extend([
                "--watch".to_owned(),
                humantime::format_duration(interval).to_string(),
            ]);
        }
        args
    }
}

/// `keyway exec --env VAR=REF ... --`, to be followed by the container's own command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The installed binary (`/keyway/bin/keyway`).
    pub program: String,
    /// `--env VAR=REF` arguments.
    pub env: BTreeMap<String, SecretRef>,
    /// `--watch`: restart the command in place when a value changed.
    pub watch: Option<Duration>,
}

impl ExecCommand {
    /// The command line up to and including `--`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![self.program.clone(), "exec".to_owned()];
        if let Some(interval) = self.watch {
            args.extend([
                "--watch".to_owned(),
                humantime::format_duration(interval).to_string(),
            ]);
        }
        for (var, reference) in &self.env {
            args.extend(["--env".to_owned(), format!("{var}={reference}")]);
        }
        args.push("--".to_owned());
        args
    }
}

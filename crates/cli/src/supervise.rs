//! `keyway exec --mask` and `--watch`: the command runs as keyway's child instead of replacing it.
//!
//! `--mask`: its stdout and stderr come through pipes, and every resolved value in them is replaced by
//! [`CONCEALED`] before it reaches keyway's own stdout and stderr, as `op run` and CI log masking do. For
//! commands that print what they were given (`set -x`, `env`, a client that logs its request URL) and would
//! otherwise put a token into a log. The forms commands print values in are hidden too ([`encoded_forms`]:
//! base64, percent-encoding, JSON escapes, as GitHub Actions' masking does). Values are searched with
//! `memchr::memmem` finders that borrow the values and their forms (those computed into zeroizing buffers);
//! the command's output passes through pre-sized zeroizing buffers.
//!
//! `--watch INTERVAL`: the references are fetched again every INTERVAL, past the cache (as `render --watch`
//! does), and when a value changed the command is stopped (`--stop-signal`, then SIGKILL after
//! `--stop-timeout`) and started again with the new values, as `doppler run --watch` and Vault Agent's `exec`
//! (`restart_on_secret_changes`) do: an environment cannot change under a running process.
//!
//! Either way keyway is a child subreaper while the command runs: processes the command leaves behind become
//! keyway's children and are collected when they end, so `keyway exec --mask` can be a container's PID 1.

use std::ffi::{OsStr, OsString};
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyway_core::{Resolved, SecretRef};
use memchr::memmem::Finder;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::{Zeroize as _, Zeroizing};

use crate::commands::Context;

/// What a value becomes in the command's output.
pub const CONCEALED: &[u8] = b"<concealed by keyway>";

/// Values shorter than this (after trimming whitespace at both ends) are not masked: hiding every `on` or `42`
/// would garble ordinary output. `exec` names such variables in a warning.
pub const MIN_LEN: usize = 4;

/// Bytes read from the command at a time: the size of a pipe's buffer, so a busy command's output moves in few
/// reads (16 KiB reads ran at a third of the speed, docs/benchmarks.md); a read returns what is there at once.
const READ: usize = 64 * 1024;

/// Values shorter than this get no base64 forms, and lines shorter than this of a value of several lines are
/// not hidden alone: a fragment of a few base64 letters, or a short line (`}`, `true`), turns up by chance.
pub const MIN_PART_LEN: usize = 8;

/// The forms a command commonly prints a value in besides the value itself, as GitHub Actions' log masking
/// also hides them: base64 (standard and URL-safe alphabets, at each of the three byte offsets the value can
/// start at inside a longer encoded text, so `Authorization: Basic base64(user:token)` is covered; only the
/// letters that the value alone decides), percent-encoding (a query string, `curl --data-urlencode`), a
/// JSON string's escapes, and each line of a value of several lines (a PEM key printed line by line). Only
/// forms that differ from the value, each in a zeroizing buffer; `value` is trimmed as [`Masker::new`] trims
/// it.
pub fn encoded_forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let value = value.trim_ascii();
    let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    if value.len() < MIN_LEN {
        return forms;
    }
    let mut add = |form: Zeroizing<Vec<u8>>| {
        if form.as_slice() != value && form.len() >= MIN_LEN && !forms.contains(&form) {
            forms.push(form);
        }
    };
    if value.len() >= MIN_PART_LEN {
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            for shift in 0..3 {
                let mut shifted = Zeroizing::new(vec![0; shift]);
                shifted.extend_from_slice(value);
                let encoded = Zeroizing::new(engine.encode(&shifted[..]).into_bytes());
                // Letters holding bits of the zero bytes in front, or of whatever follows the value, are not
                // the value's alone.
                let (start, end) = ((8 * shift).div_ceil(6), 8 * shifted.len() / 6);
                add(Zeroizing::new(encoded[start..end].to_vec()));
            }
        }
    }
    let mut percent = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &byte in value {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            percent.push(byte);
        } else {
            let hex = b"0123456789ABCDEF";
            percent.extend_from_slice(&[
                b'%',
                hex[usize::from(byte >> 4)],
                hex[usize::from(byte & 15)],
            ]);
        }
    }
    add(percent);
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(json) = serde_json::to_string(text).map(|json| Zeroizing::new(json.into_bytes()))
    {
        add(Zeroizing::new(json[1..json.len() - 1].to_vec()));
    }
    if value.contains(&b'\n') {
        for line in value.split(|&b| b == b'\n').map(<[u8]>::trim_ascii) {
            if line.len() >= MIN_PART_LEN {
                add(Zeroizing::new(line.to_vec()));
            }
        }
    }
    forms
}

/// The values to hide, longest first, so that of two values starting at one place the longer is replaced.
pub struct Masker<'v> {
    finders: Vec<Finder<'v>>,
    longest: usize,
}

impl<'v> Masker<'v> {
    /// A masker for `values`; each is trimmed of surrounding whitespace (a value read from a file often ends
    /// in a newline the output does not repeat). Values shorter than [`MIN_LEN`] are left out.
    pub fn new(values: impl IntoIterator<Item = &'v [u8]>) -> Masker<'v> {
        let mut needles: Vec<&'v [u8]> = values
            .into_iter()
            .map(<[u8]>::trim_ascii)
            .filter(|v| v.len() >= MIN_LEN)
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker {
            longest: needles.first().map_or(0, |n| n.len()),
            finders: needles.into_iter().map(Finder::new).collect(),
        }
    }

    /// Moves what can be written from `pending` to `out`, values replaced. Without `eof`, the longest end of
    /// `pending` that could still grow into a value stays in it for the next read.
    fn pass(&self, pending: &mut Zeroizing<Vec<u8>>, out: &mut Zeroizing<Vec<u8>>, eof: bool) {
        let mut limit = pending.len() - if eof { 0 } else { self.held(pending) };
        let (mut pos, mut from) = (0, 0);
        while let Some((start, len)) = self.first_match(&pending[..], pos) {
            if start >= limit {
                break;
            }
            if start + len > limit {
                // A whole value that a later read could still lengthen into a longer one: decide then.
                limit = start;
                break;
            }
            out.extend_from_slice(&pending[from..start]);
            out.extend_from_slice(CONCEALED);
            pos = start + len;
            from = pos;
        }
        out.extend_from_slice(&pending[from.min(limit)..limit]);
        pending.copy_within(limit.., 0);
        let kept = pending.len() - limit;
        pending[kept..].zeroize();
        pending.truncate(kept);
    }

    /// The leftmost value in `text[pos..]` (the longest of those starting there): start and length.
    fn first_match(&self, text: &[u8], pos: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for finder in &self.finders {
            if let Some(at) = finder.find(&text[pos..]) {
                let start = pos + at;
                if best.is_none_or(|(s, _)| start < s) {
                    best = Some((start, finder.needle().len()));
                }
            }
        }
        best
    }

    /// How many bytes at the end of `text` are the beginning of some value, but not yet all of it.
    fn held(&self, text: &[u8]) -> usize {
        let mut held = 0;
        for needle in self.finders.iter().map(Finder::needle) {
            let window = needle.len().saturating_sub(1).min(text.len());
            let tail = &text[text.len() - window..];
            // The longest suffix of `tail` that is a prefix of `needle`: try each place its first byte occurs.
            if let Some(at) =
                memchr::memchr_iter(needle[0], tail).find(|&at| needle.starts_with(&tail[at..]))
            {
                held = held.max(window - at);
            }
        }
        held
    }

    /// Copies `from` to `to` until `from` ends, values replaced. Stops early, dropping `from` (the command then
    /// gets EPIPE), when `to` can no longer be written.
    async fn relay(
        &self,
        from: Option<impl AsyncRead + Unpin>,
        mut to: impl AsyncWrite + Unpin,
    ) -> std::io::Result<()> {
        let Some(mut from) = from else {
            return Ok(()); // not piped: the command writes to keyway's own stdout and stderr
        };
        let mut read = Zeroizing::new(vec![0u8; READ]);
        let mut pending = Zeroizing::new(Vec::with_capacity(READ + self.longest));
        // Every value replaced by CONCEALED, which may be longer than it: room for the worst case up front.
        let mut out = Zeroizing::new(Vec::with_capacity(
            (READ + self.longest) * CONCEALED.len().div_ceil(MIN_LEN),
        ));
        loop {
            let n = from.read(&mut read).await?;
            pending.extend_from_slice(&read[..n]);
            read[..n].zeroize();
            self.pass(&mut pending, &mut out, n == 0);
            to.write_all(&out).await?;
            to.flush().await?;
            // Only what was written holds anything: the rest of the buffer was zeroed before, or never used.
            out.as_mut_slice().zeroize();
            out.clear();
            if n == 0 {
                return Ok(());
            }
        }
    }
}

/// The signal that asks the command to stop before a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StopSignal {
    #[value(name = "TERM")]
    Term,
    #[value(name = "INT")]
    Int,
    #[value(name = "QUIT")]
    Quit,
    #[value(name = "HUP")]
    Hup,
}

impl StopSignal {
    fn signal(self) -> Signal {
        match self {
            StopSignal::Term => Signal::TERM,
            StopSignal::Int => Signal::INT,
            StopSignal::Quit => Signal::QUIT,
            StopSignal::Hup => Signal::HUP,
        }
    }
}

/// What `exec` asked for besides running the command.
pub struct Options {
    pub mask: bool,
    pub watch: Option<Duration>,
    pub stop_signal: StopSignal,
    /// How long a command stopped for a restart may take to exit before it is killed.
    pub stop_timeout: Duration,
}

/// Runs the command as keyway's child until it exits, restarting it when a watched value changes; returns its
/// exit code (128 + the signal when a signal ended it, 127 or 126 when it could not be started). SIGTERM,
/// SIGHUP, SIGUSR1 and SIGUSR2 sent to keyway are passed on to the command; SIGINT and SIGQUIT are ignored by
/// keyway, so that a terminal's Ctrl-C, which reaches every process of the foreground group, reaches the
/// command once. After a SIGTERM the command is not started again.
pub async fn run(
    context: &Context,
    program: &[OsString],
    plain: &[(String, OsString)],
    vars: &[(String, SecretRef)],
    mut values: Vec<Resolved>,
    options: &Options,
) -> anyhow::Result<i32> {
    // Handlers first: a SIGTERM before them would end keyway and orphan the command.
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let child = Arc::new(Mutex::new(Current::default()));
    let forwarder = tokio::spawn({
        let child = Arc::clone(&child);
        async move {
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => Signal::TERM,
                    _ = hup.recv() => Signal::HUP,
                    _ = usr1.recv() => Signal::USR1,
                    _ = usr2.recv() => Signal::USR2,
                    _ = int.recv() => continue,
                    _ = quit.recv() => continue,
                };
                child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .deliver(sig);
            }
        }
    });
    // Processes the command leaves behind are reparented to keyway, not to the machine's init (which in a
    // container may be keyway itself), and collected when they end.
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        tracing::debug!(error = %e, "cannot become a child subreaper");
    }
    let reaper = tokio::spawn(reap_orphans(Arc::clone(&child)));
    if options.mask {
        for ((var, _), resolved) in vars.iter().zip(&values) {
            if resolved.secret.value.expose().trim_ascii().len() < MIN_LEN {
                tell!(
                    "keyway: warning: the value of {var} is shorter than {MIN_LEN} characters and is not masked"
                );
            }
        }
    }
    let references: Vec<SecretRef> = vars.iter().map(|(_, r)| r.clone()).collect();
    let code = loop {
        let command = crate::commands::command_with(program, plain, vars, &values)?;
        match once(context, &references, command, &values, options, &child).await? {
            Run::Exited(code) => break code,
            Run::Restart(code, _)
                if child
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .stopping =>
            {
                break code;
            }
            Run::Restart(_, new) => {
                tell!("keyway: a secret changed; restarting the command");
                values = new;
            }
        }
    };
    forwarder.abort();
    reaper.abort();
    Ok(code)
}

/// Collects the zombies of processes the command left behind (reparented to keyway: see `run`), as `tini`
/// does. A zombie is collected once it has waited a whole second: keyway's own children (the command, which
/// its wait collects; a `credential_process` the AWS SDK runs) are collected by their waits at once, and taking
/// one of those from under its wait would fail it. `/proc` is read only after a child ended, once a second
/// until no zombie is left.
async fn reap_orphans(current: Arc<Mutex<Current>>) {
    let Ok(mut exited) = signal(SignalKind::child()) else {
        return;
    };
    let mut waiting: Vec<Pid> = Vec::new();
    loop {
        if waiting.is_empty() && exited.recv().await.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ours = current.lock().unwrap_or_else(PoisonError::into_inner).pid;
        let zombies: Vec<Pid> = zombie_children()
            .into_iter()
            .filter(|&pid| Some(pid) != ours)
            .collect();
        for &pid in zombies.iter().filter(|pid| waiting.contains(pid)) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
        waiting = zombies;
    }
}

/// keyway's children that have exited and wait to be collected, from `/proc/PID/stat` (state `Z`, parent us).
fn zombie_children() -> Vec<Pid> {
    let me = rustix::process::getpid().as_raw_nonzero().get().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            let pid: i32 = name.to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses, so read after the last `)`.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            (fields.next()? == "Z" && fields.next()? == me).then(|| Pid::from_raw(pid))?
        })
        .collect()
}

/// The running command, if any, and whether keyway was asked to stop. One lock, held across the spawn, so that
/// a signal arriving while the command starts reaches it (the handler waits for its process ID), and a SIGTERM
/// that came between two runs of it stops the new one. (`pid` is cleared just after the command is reaped; the
/// kernel hands out process IDs in a cycle, so none is reused within that instant.)
#[derive(Default)]
struct Current {
    pid: Option<Pid>,
    stopping: bool,
}

impl Current {
    /// Passes `sig` on to the command; a SIGTERM also means: do not start it again.
    fn deliver(&mut self, sig: Signal) {
        if sig == Signal::TERM {
            self.stopping = true;
        }
        if let Some(pid) = self.pid {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    fn started(&mut self, pid: Option<Pid>) {
        self.pid = pid;
        if let (true, Some(pid)) = (self.stopping, pid) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
    }
}

enum Run {
    /// The command ended by itself (or by a signal passed on), with this exit code.
    Exited(i32),
    /// A value changed: the command was stopped (with this exit code); start it again with these values.
    Restart(i32, Vec<Resolved>),
}

/// Starts the command once and waits for it to end, or for a watched value to change and the command to stop.
async fn once(
    context: &Context,
    references: &[SecretRef],
    mut command: std::process::Command,
    values: &[Resolved],
    options: &Options,
    current: &Mutex<Current>,
) -> anyhow::Result<Run> {
    let forms: Vec<Zeroizing<Vec<u8>>> = values
        .iter()
        .filter(|_| options.mask)
        .flat_map(|r| encoded_forms(r.secret.value.expose()))
        .collect();
    let masker = Masker::new(
        values
            .iter()
            .filter(|_| options.mask)
            .map(|r| r.secret.value.expose())
            .chain(forms.iter().map(|form| form.as_slice())),
    );
    if options.mask {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let program = command.get_program().to_owned();
    // Locked across the spawn: a signal that arrives while the command starts waits for its process ID
    // instead of finding none.
    let (mut child, pid) = {
        let mut state = current.lock().unwrap_or_else(PoisonError::into_inner);
        let child = match tokio::process::Command::from(command).spawn() {
            Ok(child) => child,
            Err(err) => return Ok(Run::Exited(crate::commands::cannot_run(&program, &err))),
        };
        let pid = child.id().and_then(|id| Pid::from_raw(id.cast_signed()));
        state.started(pid);
        (child, pid)
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Set when the command was stopped for a restart: its output is then relayed for one more second, not
    // until a process it left behind closes the pipes.
    let (cut, cut_at) = tokio::sync::oneshot::channel::<()>();
    let relays = async {
        let relay = async {
            let (out, err) = tokio::join!(
                masker.relay(stdout, tokio::io::stdout()),
                masker.relay(stderr, tokio::io::stderr())
            );
            for result in [out, err] {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "stopped relaying the command's output");
                }
            }
        };
        let deadline = async {
            match cut_at.await {
                Ok(()) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = relay => {}
            () = deadline => {}
        }
    };
    let lifecycle = async {
        let mut exit = pin!(child.wait());
        let changed = async {
            match options.watch {
                Some(interval) => changed(context, references, values, interval).await,
                None => std::future::pending().await,
            }
        };
        let new = tokio::select! {
            status = &mut exit => {
                current.lock().unwrap_or_else(PoisonError::into_inner).pid = None;
                return Ok::<_, std::io::Error>(Run::Exited(code(status?, &program)));
            }
            new = changed => new,
        };
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, options.stop_signal.signal());
        }
        let status = if let Ok(status) = tokio::time::timeout(options.stop_timeout, &mut exit).await
        {
            status?
        } else {
            tracing::warn!(program = %program.to_string_lossy(), "the command did not stop in time; killing it");
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            exit.await?
        };
        current.lock().unwrap_or_else(PoisonError::into_inner).pid = None;
        let _ = cut.send(());
        Ok(Run::Restart(code(status, &program), new))
    };
    let (run, ()) = tokio::join!(lifecycle, relays);
    Ok(run?)
}

/// Fetches the references every `interval`, past the cache, until a value differs from `values`.
/// A failed round keeps the command running and is retried at the next interval.
async fn changed(
    context: &Context,
    references: &[SecretRef],
    values: &[Resolved],
    interval: Duration,
) -> Vec<Resolved> {
    loop {
        let Some(new) = crate::commands::watch_round(context, references, interval).await else {
            continue;
        };
        let same = new
            .iter()
            .zip(values)
            .all(|(a, b)| a.secret.value.ct_eq(b.secret.value.expose()));
        if !same {
            return new;
        }
    }
}

fn code(status: ExitStatus, program: &OsStr) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().unwrap_or_else(|| {
        let signal = status.signal().unwrap_or(0);
        tracing::info!(program = %program.to_string_lossy(), signal, "the command was ended by a signal");
        128 + signal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` cut at `cuts` (clamped to its length), in order.
    fn cut_at(text: &str, cuts: Vec<usize>) -> Vec<&str> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts {
            pieces.push(&text[at..cut]);
            at = cut;
        }
        pieces.push(&text[at..]);
        pieces
    }

    /// `text` through `masker` in one read, to its end.
    fn mask_once(masker: &Masker<'_>, text: &str) -> String {
        let mut pending = Zeroizing::new(text.as_bytes().to_vec());
        let mut out = Zeroizing::new(Vec::new());
        masker.pass(&mut pending, &mut out, true);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn mask_in_pieces(values: &[&str], pieces: &[&str]) -> String {
        let masker = Masker::new(values.iter().map(|v| v.as_bytes()));
        let mut pending = Zeroizing::new(Vec::new());
        let mut out = Zeroizing::new(Vec::new());
        for piece in pieces {
            pending.extend_from_slice(piece.as_bytes());
            masker.pass(&mut pending, &mut out, false);
        }
        masker.pass(&mut pending, &mut out, true);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn values_are_concealed_wherever_the_reads_split_them() {
        let text = "clone https://x-access-token:ghp_abc123@github.com/o/r and ghp_abc123\n";
        let want = "clone https://x-access-token:<concealed by keyway>@github.com/o/r and <concealed by keyway>\n";
        assert_eq!(mask_in_pieces(&["ghp_abc123\n"], &[text]), want);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                mask_in_pieces(&["ghp_abc123"], &[a, b]),
                want,
                "cut at {cut}"
            );
        }
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(mask_in_pieces(&["ghp_abc123"], &pieces), want);
    }

    #[test]
    fn the_longer_of_two_values_wins_and_short_values_are_left_alone() {
        assert_eq!(
            mask_in_pieces(
                &["secret", "secret-long"],
                &["a secret-", "long b secret c"]
            ),
            "a <concealed by keyway> b <concealed by keyway> c"
        );
        assert_eq!(mask_in_pieces(&["on", " 42 "], &["on 42 on"]), "on 42 on");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("KEYWAY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
        ))]
        // A small alphabet, so values recur, overlap themselves and are cut at every place.
        #[test]
        fn streaming_conceals_as_a_replace_of_the_whole_text_would(
            value in "[ab]{4,9}",
            text in "[abc]{0,80}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let pieces = cut_at(&text, cuts);
            let want = text.replace(&value, "<concealed by keyway>");
            proptest::prop_assert_eq!(mask_in_pieces(&[&value], &pieces), want);
        }

        // Several values, as a value and its forms are: overlapping, one inside another, one the start of
        // another. Streamed, as the leftmost match (the longest of those starting there) replaced in turn.
        #[test]
        fn streaming_several_values_conceals_the_leftmost_longest_in_turn(
            values in proptest::collection::vec("[ab]{4,9}", 1..5),
            text in "[abc]{0,80}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let mut want = String::new();
            let mut pos = 0;
            while pos < text.len() {
                let found = values.iter().filter(|v| text[pos..].starts_with(v.as_str())).map(String::len).max();
                if let Some(len) = found {
                    want.push_str("<concealed by keyway>");
                    pos += len;
                } else {
                    want.push_str(&text[pos..=pos]);
                    pos += 1;
                }
            }
            let pieces = cut_at(&text, cuts);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(mask_in_pieces(&values, &pieces), want);
        }
    }

    #[test]
    fn encoded_forms_of_a_value_are_concealed_too() {
        use base64::Engine as _;
        let value = "ghp_a+b/c?d=e&f\"g\\h\u{e9}";
        let forms = encoded_forms(format!("{value}\n").as_bytes());
        let masker = Masker::new(
            std::iter::once(value.as_bytes()).chain(forms.iter().map(|f| f.as_slice())),
        );
        let mask = |text: &str| mask_once(&masker, text);
        let concealed = |text: &str| {
            let out = mask(text);
            out.contains("<concealed by keyway>") && !out.contains(text)
        };
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            for prefix in ["", "u", "us", "user:", "x-access-token:"] {
                for suffix in ["", "!", "!!", "!!!"] {
                    let encoded = engine.encode(format!("{prefix}{value}{suffix}"));
                    assert!(
                        concealed(&encoded),
                        "{prefix}…{suffix}: {encoded} -> {}",
                        mask(&encoded)
                    );
                }
            }
        }
        let percent = "ghp_a%2Bb%2Fc%3Fd%3De%26f%22g%5Ch%C3%A9";
        assert!(
            mask(&format!("GET /?token={percent} HTTP/1.1"))
                .starts_with("GET /?token=<concealed by keyway> HTTP")
        );
        let json = serde_json::to_string(&serde_json::json!({"token": value})).unwrap();
        assert_eq!(mask(&json), r#"{"token":"<concealed by keyway>"}"#);
        // Each line of a value of several lines, when it is long enough to be told from chance.
        let pem = "-----BEGIN KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nq1w2e3r4\r\nabc\r\n-----END KEY-----\r\n";
        let forms = encoded_forms(pem.as_bytes());
        let masker = Masker::new(forms.iter().map(|f| f.as_slice()));
        assert_eq!(
            mask_once(
                &masker,
                "got MIIEvQIBADANBgkqhkiG9w0BAQEFAASC and q1w2e3r4, abc"
            ),
            "got <concealed by keyway> and <concealed by keyway>, abc"
        );
        // Short values get no base64 forms (`test` is dGVzdA== in base64: left as it is); forms equal to the
        // value are not repeated.
        assert!(encoded_forms(b"abcdefg").is_empty());
        assert_eq!(encoded_forms(b"abcdefgh").len(), 3);
        let short = encoded_forms(b"test");
        let masker = Masker::new(
            std::iter::once(b"test".as_slice()).chain(short.iter().map(|f| f.as_slice())),
        );
        assert_eq!(
            mask_once(&masker, "test dGVzdA=="),
            "<concealed by keyway> dGVzdA=="
        );
    }

    #[test]
    fn output_that_cannot_be_a_value_is_not_held_back() {
        let masker = Masker::new([b"ghp_abc123".as_slice()]);
        let mut pending = Zeroizing::new(b"Password: ghp".to_vec());
        let mut out = Zeroizing::new(Vec::new());
        masker.pass(&mut pending, &mut out, false);
        assert_eq!(&out[..], b"Password: ");
        assert_eq!(&pending[..], b"ghp");
        let mut pending = Zeroizing::new(b"Continue? [y/N] ".to_vec());
        out.clear();
        masker.pass(&mut pending, &mut out, false);
        assert_eq!(&out[..], b"Continue? [y/N] ");
        assert!(pending.is_empty());
    }
}

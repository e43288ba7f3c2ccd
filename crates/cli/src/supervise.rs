//! `keyway exec --mask` and `--watch`: the command runs as keyway's child instead of replacing it.
//!
//! `--mask`: its stdout and stderr come through pipes and through the masker ([`crate::mask`]) before they reach
//! keyway's own stdout and stderr.
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
use rustix::process::{Pid, Signal};
use tokio::signal::unix::{SignalKind, signal};
use zeroize::Zeroizing;

use crate::context::Context;
use crate::exec::Environment;
use crate::mask::{MIN_LEN, Masker, encoded_forms};

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
    environment: &Environment,
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
        for (var, resolved) in environment.named(&values) {
            if resolved.secret.value.expose().trim_ascii().len() < MIN_LEN {
                tell!(
                    "keyway: warning: the value of {var} is shorter than {MIN_LEN} characters and is not masked"
                );
            }
        }
    }
    let references = environment.references();
    let code = loop {
        let command = environment.command(program, &values)?;
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

/// Starts the command once and waits for it to end, or for a watched value to change and the command to stop;
/// its output relayed meanwhile (masked with `--mask`).
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
    let (mut child, pid) = match spawn(command, current) {
        Ok(started) => started,
        Err(err) => return Ok(Run::Exited(crate::exec::cannot_run(&program, &err))),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // Set when the command was stopped for a restart: its output is then relayed for one more second, not
    // until a process it left behind closes the pipes.
    let (cut, cut_at) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let changed = async {
            match options.watch {
                Some(interval) => changed(context, references, values, interval).await,
                None => std::future::pending().await,
            }
        };
        let run = wait_or_restart(&mut child, pid, &program, changed, options, current).await;
        // Only a restart cuts the output short; a command that ended by itself is relayed to the end.
        if let Ok(Run::Restart(..)) = run {
            let _ = cut.send(());
        }
        run
    };
    let (run, ()) = tokio::join!(stopped, relay(&masker, stdout, stderr, cut_at));
    Ok(run?)
}

/// Starts `command` with the lock on `current` held across the spawn, so that a signal arriving meanwhile waits
/// for its process ID instead of finding none.
fn spawn(
    command: std::process::Command,
    current: &Mutex<Current>,
) -> std::io::Result<(tokio::process::Child, Option<Pid>)> {
    let mut state = current.lock().unwrap_or_else(PoisonError::into_inner);
    let child = tokio::process::Command::from(command).spawn()?;
    let pid = child.id().and_then(|id| Pid::from_raw(id.cast_signed()));
    state.started(pid);
    Ok((child, pid))
}

/// Relays the command's stdout and stderr through `masker` until they close, or for one second more once `cut`
/// fires (a process the command left behind may hold the pipes open).
async fn relay(
    masker: &Masker<'_>,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    cut: tokio::sync::oneshot::Receiver<()>,
) {
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
        match cut.await {
            Ok(()) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = relay => {}
        () = deadline => {}
    }
}

/// Waits for the command to end by itself, or for `changed` to give new values; then stops it (the stop signal,
/// SIGKILL after the stop timeout) and asks for a restart with them.
async fn wait_or_restart(
    child: &mut tokio::process::Child,
    pid: Option<Pid>,
    program: &OsStr,
    changed: impl Future<Output = Vec<Resolved>>,
    options: &Options,
    current: &Mutex<Current>,
) -> std::io::Result<Run> {
    let mut exit = pin!(child.wait());
    let new = tokio::select! {
        status = &mut exit => {
            current.lock().unwrap_or_else(PoisonError::into_inner).pid = None;
            return Ok(Run::Exited(code(status?, program)));
        }
        new = changed => new,
    };
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, options.stop_signal.signal());
    }
    let status = if let Ok(status) = tokio::time::timeout(options.stop_timeout, &mut exit).await {
        status?
    } else {
        tracing::warn!(program = %program.to_string_lossy(), "the command did not stop in time; killing it");
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        exit.await?
    };
    current.lock().unwrap_or_else(PoisonError::into_inner).pid = None;
    Ok(Run::Restart(code(status, program), new))
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
        let Some(new) = crate::context::watch_round(context, references, interval).await else {
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

//! systemd's readiness protocol (`sd_notify`): under `Type=notify` the service manager learns when the daemon is
//! ready (after its prefetch, as `/readyz`), reloading and stopping, and shows a one-line status. Units ordered
//! after keyway then start only once it answers. A no-op unless `NOTIFY_SOCKET` is set; a failure to send is
//! logged and never stops the daemon. Status lines hold counts, never a reference or a value.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Ready to serve, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A status line only (the state is unchanged).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload starts; [`ready`] ends it. Carries the monotonic time, as `Type=notify-reload` requires.
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutting down.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining in-flight requests"),
    ]);
}

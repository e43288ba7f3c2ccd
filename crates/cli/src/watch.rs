//! When `serve` and `webhook` reload their configuration: on every SIGHUP and, with `--watch-config`, when the
//! files' content changed and read the same twice a second apart (a ConfigMap update is an atomic symlink swap;
//! an editor's half-written file is not applied). A content that was tried and refused is not tried again until
//! it changes.

use std::path::Path;

use tokio::signal::unix::Signal;

/// The bytes of the files a configuration is read from (`None`: not given), to notice a change. A file that
/// cannot be read counts as empty: loading it then says why.
pub fn content(files: &[Option<&Path>]) -> Vec<u8> {
    let mut content = Vec::new();
    for file in files {
        if let Some(path) = file {
            content.extend(std::fs::read(path).unwrap_or_default());
        }
        content.push(0);
    }
    content
}

pub struct Trigger {
    hangup: Signal,
    tick: tokio::time::Interval,
    watch: bool,
    /// The content read at the last tick.
    seen: Vec<u8>,
    /// The content last applied or refused.
    tried: Vec<u8>,
}

impl Trigger {
    /// `content`: the files as the running configuration was read from them.
    pub fn new(hangup: Signal, watch: bool, content: Vec<u8>) -> Trigger {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Trigger {
            hangup,
            tick,
            watch,
            seen: content.clone(),
            tried: content,
        }
    }

    /// Waits until a reload is due; `read` reads the files' content.
    pub async fn next(&mut self, read: impl Fn() -> Vec<u8>) {
        loop {
            let signalled = tokio::select! {
                _ = self.hangup.recv() => true,
                _ = self.tick.tick(), if self.watch => false,
            };
            let content = read();
            if signalled {
                tracing::info!("SIGHUP received: reloading the configuration");
            } else {
                let settled = content == self.seen;
                self.seen.clone_from(&content);
                if !settled || content == self.tried {
                    continue;
                }
                tracing::info!("the config file changed: reloading the configuration");
            }
            self.tried = content;
            return;
        }
    }

    /// After a reload was applied: `content` is what the new configuration was read from.
    pub fn applied(&mut self, content: Vec<u8>) {
        self.seen.clone_from(&content);
        self.tried = content;
    }
}

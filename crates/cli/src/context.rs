//! What every command shares: the configuration, the resolver built from it, and the daemon when it is used;
//! how a request's TTL is read; a `--watch` round.

use std::path::{Path, PathBuf};

use keyway_config::Config;
use keyway_core::{Lookup, Resolved, Resolver, SecretRef};

use crate::exit::{Many, Usage};

/// How commands reach secrets: through the node's daemon, or directly with the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DaemonMode {
    /// The daemon when its socket accepts connections, otherwise direct.
    Auto,
    /// Only the daemon; fail (exit 5) when it is not there.
    Always,
    /// Never the daemon.
    Never,
}

/// What every command needs: the config, a resolver built from it (for parsing and direct access), and the
/// daemon client when the daemon is used.
pub struct Context {
    pub config: Config,
    pub resolver: Resolver,
    pub daemon: Option<keyway_client::Client>,
    /// The daemon's socket, whether or not it is used.
    pub socket: PathBuf,
}

impl Context {
    pub fn load(
        path: Option<&Path>,
        local_dir: PathBuf,
        mode: DaemonMode,
        socket: Option<PathBuf>,
    ) -> anyhow::Result<Context> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let resolver = config.providers.resolver(local_dir)?;
        let socket = socket
            .or_else(|| config.server.socket.clone())
            .unwrap_or_else(keyway_api::default_socket_path);
        let client = keyway_client::Client::new(socket.clone());
        let daemon = match mode {
            DaemonMode::Never => None,
            DaemonMode::Always => Some(client),
            DaemonMode::Auto => client.is_listening().then_some(client),
        };
        if let Some(daemon) = &daemon {
            tracing::debug!(socket = %daemon.socket().display(), "using the keyway daemon");
        }
        Ok(Context {
            config,
            resolver,
            daemon,
            socket,
        })
    }

    pub fn parse(&self, reference: &str) -> anyhow::Result<SecretRef> {
        Ok(self.resolver.parse(reference)?)
    }

    /// As [`Context::parse`], the error led by where the reference was given (`--env TOKEN`, `file token`):
    /// text that is not a reference is not shown (it may be a value), so the place is what finds it.
    pub fn parse_at(&self, place: &str, reference: &str) -> anyhow::Result<SecretRef> {
        self.resolver
            .parse(reference)
            .map_err(|e| Usage(format!("{place}: {e}")).into())
    }

    /// Resolves one reference, through the daemon or directly.
    pub async fn resolve(&self, reference: &SecretRef, lookup: Lookup) -> anyhow::Result<Resolved> {
        Ok(match &self.daemon {
            Some(daemon) => daemon.resolve(&reference.to_string(), lookup).await?,
            None => self.resolver.resolve(reference, lookup).await?,
        })
    }

    /// Resolves many references concurrently. On any failure, prints every failure and returns [`Many`]:
    /// callers deliver all or nothing.
    pub async fn resolve_all(
        &self,
        references: &[SecretRef],
        lookup: Lookup,
    ) -> anyhow::Result<Vec<Resolved>> {
        let results = match &self.daemon {
            Some(daemon) => {
                let texts: Vec<String> = references.iter().map(ToString::to_string).collect();
                daemon.resolve_all(&texts, lookup).await?
            }
            None => self.resolver.resolve_all(references, lookup).await,
        };
        let total = results.len();
        let mut values = Vec::with_capacity(total);
        let mut first = None;
        let mut count = 0;
        for result in results {
            match result {
                Ok(v) => values.push(v),
                Err(e) => {
                    count += 1;
                    first.get_or_insert(e.kind());
                    tell!("keyway: error: {}", e.to_string().replace('\n', " "));
                }
            }
        }
        match first {
            None => Ok(values),
            Some(first) => Err(Many {
                count,
                total,
                first,
            }
            .into()),
        }
    }

    /// Lists names, through the daemon or directly.
    pub async fn list(&self, instance: &str, filter: Option<&str>) -> anyhow::Result<Vec<String>> {
        Ok(match &self.daemon {
            Some(daemon) => daemon.list(instance, filter).await?,
            None => self.resolver.list(instance, filter).await?,
        })
    }
}

/// A request's TTL (`--ttl`) and whether it asks the upstream now (`--refresh`).
pub fn lookup(ttl: Option<&str>, refresh: bool) -> anyhow::Result<Lookup> {
    let ttl = ttl
        .map(str::parse::<keyway_core::Ttl>)
        .transpose()
        .map_err(Usage)?;
    Ok(Lookup {
        ttl,
        refresh_now: refresh,
    })
}

/// One `--watch` round (`render`, `exec`): after `interval`, every reference fetched again past the cache, so a
/// rotation is seen. `None` when the round failed (logged): the caller keeps what it has and tries again.
pub async fn watch_round(
    context: &Context,
    references: &[SecretRef],
    interval: std::time::Duration,
) -> Option<Vec<Resolved>> {
    tokio::time::sleep(interval).await;
    let lookup = Lookup {
        ttl: Some(keyway_core::Ttl::Bypass),
        refresh_now: true,
    };
    context
        .resolve_all(references, lookup)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "refresh failed; keeping the current values"))
        .ok()
}

/// For the commands that keep values in memory while they run (`exec --mask` or `--watch`, `render --watch`):
/// no core dumps and no ptrace by other processes of the same user, as the daemon does (docs/security.md). The
/// command `exec` starts is dumpable again: the kernel resets the flag when a process executes a program.
pub fn keep_memory_private() {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot disable core dumps (PR_SET_DUMPABLE)");
    }
}

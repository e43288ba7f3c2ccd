//! Replacing the configuration while serving (`SIGHUP`, `keyway serve --watch-config`). The new configuration is
//! built whole and checked before it replaces the running one, so a bad file changes nothing; requests in flight
//! finish under the configuration they started with.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use keyway_providers::config::ProvidersConfig;

use crate::config::ServerSection;

use crate::{Current, DaemonError, State};

/// Replaces the configuration a daemon serves; from [`crate::Daemon::reloader`], cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) current: Arc<Current>,
    pub(crate) local_dir: PathBuf,
    /// The unix socket's path and the mode of its file, as bound at start (none with `unix = false`).
    pub(crate) socket: Option<(PathBuf, u32)>,
    /// `[server]` as the listeners were bound.
    pub(crate) bound: ServerSection,
    /// Whether a TCP listener is served (configured or passed by the service manager), which needs a token.
    pub(crate) serves_tcp: bool,
    /// The providers applied last.
    pub(crate) applied: Arc<Mutex<ProvidersConfig>>,
}

/// What a reload changed.
#[derive(Debug)]
#[non_exhaustive]
pub struct Reloaded {
    /// The provider instances, cache limits and mapped identity were the same, so the resolver was kept and
    /// with it every cached value; otherwise the cache starts empty.
    pub cache_kept: bool,
    /// `[server]` settings that changed but take effect only when the daemon starts (`socket`, `tcp`, ...):
    /// they keep their running values until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    /// Builds `server` and `providers` beside the running configuration and, when all of it is valid, serves it
    /// from the next request on. On an error nothing changes. Call it on the daemon's runtime: the new
    /// `prefetch` list is fetched there.
    ///
    /// # Panics
    /// Outside a tokio runtime, when the configuration has references to prefetch.
    pub fn reload(
        &self,
        server: &ServerSection,
        providers: &ProvidersConfig,
    ) -> Result<Reloaded, DaemonError> {
        let result = self.apply(server, providers);
        self.current.load().shared.metrics.reloaded(result.is_ok());
        result
    }

    /// Counts a reload that failed before it reached [`Reloader::reload`] (the file did not load), in the
    /// metrics `reload` keeps.
    pub fn refused(&self) {
        self.current.load().shared.metrics.reloaded(false);
    }

    /// Whether the daemon is ready (its prefetch done), as `/readyz` says.
    pub fn is_ready(&self) -> bool {
        self.current
            .load()
            .shared
            .ready
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn apply(
        &self,
        server: &ServerSection,
        providers: &ProvidersConfig,
    ) -> Result<Reloaded, DaemonError> {
        crate::check_files(providers)?;
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let running = self.current.load_full();
        // The same instances, cache limits and mapped identity build the same resolver: keep it, and its cache.
        let cache_kept = *applied == *providers;
        let resolver = if cache_kept {
            running.resolver.clone()
        } else {
            let observe = running.shared.metrics.upstream_observer();
            Arc::new(providers.resolver_with(self.local_dir.clone(), &*observe)?)
        };
        let (settings, needs_restart) = self.keep_fixed(server.clone());
        let open = self
            .socket
            .as_ref()
            .and_then(|(path, mode)| crate::open_socket_warning(&settings, path, *mode));
        let (state, prefetch) = State::build(
            settings,
            resolver.clone(),
            running.shared.clone(),
            self.serves_tcp,
        )?;
        let state = Arc::new(state);
        running.shared.metrics.observe_cache(&resolver);
        self.current.store(state.clone());
        *applied = providers.clone();
        if !prefetch.is_empty() {
            tokio::spawn(async move { crate::prefetch_all(&state, prefetch).await });
        }
        if let Some(warning) = open {
            tracing::warn!("{warning}");
        }
        Ok(Reloaded {
            cache_kept,
            needs_restart,
        })
    }

    /// `settings` with the values of what was bound at start (listeners, connection limit, memory lock, metric
    /// labels), and the names of those that differed.
    fn keep_fixed(&self, mut settings: ServerSection) -> (ServerSection, Vec<&'static str>) {
        fn keep<T: PartialEq + Clone>(
            name: &'static str,
            new: &mut T,
            bound: &T,
            changed: &mut Vec<&'static str>,
        ) {
            if new != bound {
                changed.push(name);
                new.clone_from(bound);
            }
        }
        let bound = &self.bound;
        let mut changed = Vec::new();
        keep("unix", &mut settings.unix, &bound.unix, &mut changed);
        keep("socket", &mut settings.socket, &bound.socket, &mut changed);
        keep(
            "socket_mode",
            &mut settings.socket_mode,
            &bound.socket_mode,
            &mut changed,
        );
        keep(
            "socket_group",
            &mut settings.socket_group,
            &bound.socket_group,
            &mut changed,
        );
        keep("tcp", &mut settings.tcp, &bound.tcp, &mut changed);
        keep(
            "metrics",
            &mut settings.metrics,
            &bound.metrics,
            &mut changed,
        );
        keep(
            "allow_non_loopback",
            &mut settings.allow_non_loopback,
            &bound.allow_non_loopback,
            &mut changed,
        );
        keep(
            "max_connections",
            &mut settings.max_connections,
            &bound.max_connections,
            &mut changed,
        );
        keep(
            "lock_memory",
            &mut settings.lock_memory,
            &bound.lock_memory,
            &mut changed,
        );
        keep(
            "metrics_secret_names",
            &mut settings.metrics_secret_names,
            &bound.metrics_secret_names,
            &mut changed,
        );
        (settings, changed)
    }
}

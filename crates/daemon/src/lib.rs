//! `keyway serve`: the node-local secrets broker.
//!
//! One process per node serves every local caller from one cache: a unix socket (callers identified by the
//! kernel's peer credentials) and optionally loopback TCP (callers identified by a token). Two APIs: Keyway's
//! native one (`/v1/secret`, `/v1/secrets`, `/v1/list`) and the AWS Secrets Manager Agent's
//! (`/secretsmanager/get`, `/v1/<secret id>`), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! [`Daemon::bind`] binds the listeners (so a test or a supervisor knows the addresses before anything is
//! served), [`Daemon::run`] serves until the `shutdown` future completes, then drains in-flight requests under
//! the grace period and removes the socket. Only `main` installs signal handlers.

mod agent;
mod audit;
mod auth;
pub mod config;
mod lambda;
mod listen;
mod memory;
mod metrics;
pub mod notify;
mod reload;
mod respond;
mod routes;

pub use listen::Activated;
pub use reload::{Reloaded, Reloader};

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keyway_core::{Lookup, Resolver, SecretRef};
use keyway_providers::config::ProvidersConfig;

pub use config::{AccessRule, AwsAgentSection, CallerLabels, Callers, ServerSection, TokenConfig};

/// A start-up failure; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A setting of `[server]` is unusable.
    #[error("[server] {0}")]
    Config(String),
    /// The provider configuration is unusable.
    #[error(transparent)]
    Providers(#[from] keyway_providers::ConfigError),
    /// A listener could not be set up.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The socket path or TCP address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A prefetch reference does not parse.
    #[error("[server] prefetch: {0}")]
    Prefetch(#[source] keyway_core::Error),
    /// `lock_memory` is on and the memory could not be locked.
    #[error("{0}")]
    MemoryLock(String),
}

/// What stays for the daemon's life, whatever configuration it serves.
pub(crate) struct Shared {
    pub metrics: metrics::Metrics,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
}

impl Shared {
    fn new(settings: &ServerSection) -> Arc<Shared> {
        Arc::new(Shared {
            metrics: metrics::Metrics::new(settings.metrics_secret_names),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }
}

/// Builds and checks everything [`Daemon::bind`] would from `server` and `providers`, without binding a listener
/// or locking memory (`keyway serve --check`, to test a configuration before a start or a reload). The audit log
/// file is opened (created when missing), as it would be. Returns the warnings a start would log.
pub fn check(
    server: &ServerSection,
    providers: &ProvidersConfig,
    local_dir: PathBuf,
) -> Result<Vec<String>, DaemonError> {
    let warnings = providers.check_files()?;
    let settings = server.clone();
    let tcp = match &settings.tcp {
        Some(address) => Some(listen::tcp_address(address, settings.allow_non_loopback)?),
        None => None,
    };
    if let Some(address) = &settings.metrics {
        listen::metrics_address(address)?;
    }
    let (mode, _) = listen::socket_owner(&settings)?;
    let socket_warning = settings
        .unix
        .then(|| open_socket_warning(&settings, &listen::socket_path(&settings), mode))
        .flatten();
    let warnings = warnings.into_iter().chain(socket_warning).collect();
    let shared = Shared::new(&settings);
    let resolver = Arc::new(providers.resolver(local_dir)?);
    State::build(settings, resolver, shared, tcp.is_some())?;
    Ok(warnings)
}

/// The warning for a unix socket that every local user may connect to (`mode` lets others write to it, and
/// they may search every directory above it) while no `[[server.access]]` rule limits what a caller reads: then
/// any process on the machine reads every secret the daemon can. A directory not made yet (it will be, 0755)
/// counts as searchable.
pub(crate) fn open_socket_warning(
    settings: &ServerSection,
    socket: &Path,
    mode: u32,
) -> Option<String> {
    let reachable = socket
        .parent()
        .is_none_or(keyway_providers::local::others_may_enter);
    (settings.access.is_empty() && mode & 0o002 != 0 && reachable).then(|| {
        format!(
            "{} is open to every local user (mode {:04o}) and no [[server.access]] rule limits what a caller reads, so any process on this machine may read every secret this daemon can; add access rules, or narrow socket_mode and socket_group (docs/daemon.md)",
            socket.display(),
            mode & 0o7777
        )
    })
}

/// Logs [`ProvidersConfig::check_files`]'s warnings, or returns its error.
fn check_files(providers: &ProvidersConfig) -> Result<(), DaemonError> {
    for warning in providers.check_files()? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// One configuration: everything a request handler needs. Built at start and again by each reload, and
/// swapped whole ([`Current`]), so a request sees one configuration from start to end.
pub(crate) struct State {
    pub resolver: Arc<Resolver>,
    pub settings: ServerSection,
    pub tokens: auth::Tokens,
    pub access: auth::Access,
    pub audit: audit::Audit,
    pub shared: Arc<Shared>,
    /// The references the AWS agent's routes were asked for, parsed once.
    pub agent_references: agent::References,
}

/// The configuration being served; a reload stores a new one.
pub(crate) type Current = arc_swap::ArcSwap<State>;

impl State {
    /// The configuration's tokens, access rules, audit log and prefetch list, over `resolver`. `tcp`: whether a
    /// TCP listener is bound, which needs a token.
    fn build(
        settings: ServerSection,
        resolver: Arc<Resolver>,
        shared: Arc<Shared>,
        tcp: bool,
    ) -> Result<(State, Vec<SecretRef>), DaemonError> {
        let tokens = auth::Tokens::load(&settings)?;
        if tcp && tokens.is_empty() {
            return Err(DaemonError::Config(
                "the TCP listener needs a token: add a [[server.tokens]] entry (file or env), or set AWS_TOKEN"
                    .into(),
            ));
        }
        if resolver.kind(&settings.aws_compat_instance).is_none() {
            return Err(DaemonError::Config(format!(
                "aws_compat_instance = \"{}\" is no configured provider instance ({}); name the one the AWS agent's endpoints read",
                settings.aws_compat_instance,
                resolver.instances().names()
            )));
        }
        let access = auth::Access::compile(
            &settings.access,
            &settings.labels,
            resolver.instances(),
            &tokens.names(),
        )?;
        let audit = audit::Audit::open(&settings.audit_log)?;
        let prefetch = settings
            .prefetch
            .iter()
            .map(|r| resolver.parse(r).map_err(DaemonError::Prefetch))
            .collect::<Result<Vec<_>, _>>()?;
        let state = State {
            resolver,
            settings,
            tokens,
            access,
            audit,
            shared,
            agent_references: agent::References::default(),
        };
        Ok((state, prefetch))
    }
}

/// A bound, not yet serving, daemon.
pub struct Daemon {
    unix: Option<listen::UnixSocket>,
    tcp: Option<tokio::net::TcpListener>,
    metrics: Option<tokio::net::TcpListener>,
    prefetch: Vec<SecretRef>,
    reloader: Reloader,
}

impl Daemon {
    /// Builds the resolver from `providers` and binds the listeners of `server`. `local_dir` is the default
    /// local store;
    /// `activated`, the sockets the service manager passed (systemd socket activation), each served instead of
    /// binding its configured address.
    pub async fn bind(
        server: &ServerSection,
        providers: &ProvidersConfig,
        local_dir: PathBuf,
        activated: Activated,
    ) -> Result<Daemon, DaemonError> {
        check_files(providers)?;
        let settings = server.clone();
        memory::protect(settings.lock_memory)?;
        let shared = Shared::new(&settings);
        let observe = shared.metrics.upstream_observer();
        let resolver = Arc::new(providers.resolver_with(local_dir.clone(), &*observe)?);
        shared.metrics.observe_cache(&resolver);
        let tcp = match (activated.tcp, &settings.tcp) {
            (Some(passed), configured) => Some(listen::adopt_tcp(
                passed,
                "tcp",
                configured.as_ref(),
                |a| listen::tcp_address(a, settings.allow_non_loopback),
            )?),
            (None, Some(address)) => {
                Some(listen::bind_tcp(address, settings.allow_non_loopback).await?)
            }
            (None, None) => None,
        };
        let metrics = match (activated.metrics, &settings.metrics) {
            (Some(passed), configured) => Some(listen::adopt_tcp(
                passed,
                "metrics",
                configured.as_ref(),
                listen::metrics_address,
            )?),
            (None, Some(address)) => Some(listen::bind_metrics(address).await?),
            (None, None) => None,
        };
        let (state, prefetch) = State::build(settings.clone(), resolver, shared, tcp.is_some())?;
        let unix = if settings.unix || activated.unix.is_some() {
            Some(listen::bind_unix(&settings, activated.unix)?)
        } else {
            None
        };
        // The mode the socket file has (the service manager's SocketMode when it passed the socket).
        let socket = unix.as_ref().map(|unix| {
            let mode = std::fs::metadata(unix.path()).map_or(0, |m| m.permissions().mode());
            (unix.path().to_owned(), mode)
        });
        if let Some(warning) = socket
            .as_ref()
            .and_then(|(path, mode)| open_socket_warning(&settings, path, *mode))
        {
            tracing::warn!("{warning}");
        }
        let reloader = Reloader {
            current: Arc::new(Current::from_pointee(state)),
            local_dir,
            socket,
            serves_tcp: tcp.is_some(),
            bound: settings,
            applied: Arc::new(std::sync::Mutex::new(providers.clone())),
        };
        Ok(Daemon {
            unix,
            tcp,
            metrics,
            prefetch,
            reloader,
        })
    }

    /// The unix socket's path, when one is served.
    pub fn socket_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(listen::UnixSocket::path)
    }

    /// The TCP listener's address, when one is configured.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics listener's address, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that replaces the configuration the daemon serves (`SIGHUP`, `--watch-config`).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish within the grace
    /// period and removes the socket file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Daemon {
            unix,
            tcp,
            metrics,
            prefetch,
            reloader,
        } = self;
        let current = reloader.current;
        let background = Background::start(&current, prefetch);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let server = listen::Server::new(current.clone());
        tokio::select! {
            () = server.accept_unix(unix.as_ref(), &graceful) => {}
            () = server.accept_tcp(tcp.as_ref(), &graceful) => {}
            () = server.accept_metrics(metrics.as_ref(), &graceful) => {}
            () = shutdown => {}
        }
        let state = current.load_full();
        state.shared.draining.store(true, Ordering::SeqCst);
        state.shared.ready.store(false, Ordering::SeqCst);
        notify::stopping();
        drop(tcp);
        drop(metrics);
        let socket = unix.and_then(listen::UnixSocket::close);
        tracing::info!("shutting down: draining in-flight requests");
        let grace = state.settings.grace_period;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "grace period over; closing the remaining connections"
            );
        }
        drop(background);
        if let Some(socket) = socket
            && let Err(e) = std::fs::remove_file(&socket)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %socket.display(), error = %e, "cannot remove the socket file");
        }
    }
}

/// Prefetch and token rotation, stopped when dropped.
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(current: &Arc<Current>, prefetch: Vec<SecretRef>) -> Background {
        let prefetcher = {
            let state = current.load_full();
            tokio::spawn(async move {
                let (ok, total) = prefetch_all(&state, prefetch).await;
                if !state.shared.draining.load(Ordering::SeqCst) {
                    state.shared.ready.store(true, Ordering::SeqCst);
                    tracing::info!("ready");
                    notify::ready(&format!("ready; prefetched {ok} of {total} secrets"));
                }
            })
        };
        let rotation = {
            let current = current.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    current.load().tokens.reload();
                }
            })
        };
        Background {
            tasks: vec![prefetcher, rotation],
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Fetches every prefetch reference concurrently, each after a random delay of up to 250 ms so that many
/// nodes starting together do not hit the upstream in one instant. Returns (fetched, asked).
async fn prefetch_all(state: &State, references: Vec<SecretRef>) -> (usize, usize) {
    let total = references.len();
    let fetches = references.into_iter().map(|reference| async move {
        let jitter = Duration::from_millis(fastrand::u64(0..=250));
        if total > 1 {
            tokio::time::sleep(jitter).await;
        }
        match state.resolver.resolve(&reference, Lookup::default()).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(reference = %reference, error = %e, "prefetch failed");
                false
            }
        }
    });
    let ok = futures::future::join_all(fetches)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    if total > 0 {
        tracing::info!(ok, total, "prefetch finished");
    }
    (ok, total)
}

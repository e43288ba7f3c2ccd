//! `keyway serve`: binds the daemon's listeners, prints where it listens, serves until SIGTERM or SIGINT, and
//! reloads its configuration on SIGHUP (and with `--watch-config` when the file changes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use keyway_config::Config;

use crate::agent::AgentSettings;
use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Loopback TCP address to listen on as well (overrides [server] tcp), e.g. 127.0.0.1:2773.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Plain-HTTP address for Prometheus and probes (overrides [server] metrics), e.g. 0.0.0.0:9102: /metrics,
    /// /healthz, /readyz and /ping only, never a secret.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// A label of this workload (workload-type, project, user) for the identity mapping; repeat. Overrides
    /// KEYWAY_WORKLOAD_LABELS (KEY=VALUE,KEY=VALUE) and [workload] labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Reload the configuration when the config file (or the IAM spec it names) changes, as on SIGHUP: checked
    /// every second, applied once the new content reads the same twice (a Kubernetes ConfigMap update).
    #[arg(long)]
    watch_config: bool,
    /// Check the configuration as the daemon would start with it (providers, access rules, tokens, identity
    /// mapping, listener settings), print `configuration OK` and exit 0, or the problem and exit 2, without
    /// serving; as `nginx -t`, before a restart or a reload.
    #[arg(long, conflicts_with = "watch_config")]
    check: bool,
    /// Also read the AWS Secrets Manager Agent's configuration file (TOML, JSON or YAML, as the agent reads it):
    /// its port, token, headers, TTL, region and limits become the `aws-sm` instance and the TCP listener, which
    /// answers as the agent does (docs/daemon.md).
    #[arg(long, value_name = "FILE")]
    aws_agent_config: Option<PathBuf>,
}

impl ServeArgs {
    /// The AWS agent's configuration, when one is given.
    pub fn agent_settings(&self) -> anyhow::Result<Option<AgentSettings>> {
        self.aws_agent_config
            .as_deref()
            .map(|path| {
                crate::agent::load(path).map_err(|e| {
                    Usage(format!("--aws-agent-config {}: {e}", path.display())).into()
                })
            })
            .transpose()
    }
}

/// Where the configuration comes from: the file and the command line's overrides, read the same way at start
/// and at every reload.
struct Source {
    path: Option<PathBuf>,
    agent: Option<AgentSettings>,
    socket: Option<PathBuf>,
    tcp: Option<String>,
    metrics: Option<String>,
    labels: Vec<String>,
}

impl Source {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(socket) = &self.socket {
            config.server.socket = Some(socket.clone());
        }
        if let Some(tcp) = &self.tcp {
            config.server.tcp = Some(tcp.clone());
        }
        if let Some(metrics) = &self.metrics {
            config.server.metrics = Some(metrics.clone());
        }
        if let Some(agent) = &self.agent {
            agent.apply(&mut config).map_err(Usage)?;
        }
        let labels = workload_labels(&config, &self.labels)?;
        if let Some((decision, _)) = keyway_config::iam::apply_mapping(&mut config, &labels)? {
            tracing::info!(%decision, "identity mapping applied");
        }
        Ok(config)
    }

    /// The config file and the IAM spec file `config` names, as [`crate::watch::content`].
    fn content(&self, config: &Config) -> Vec<u8> {
        crate::watch::content(&[self.path.as_deref(), config.iam.spec.as_deref()])
    }
}

/// `[workload] labels`, then `KEYWAY_WORKLOAD_LABELS`, then `--label`, later ones winning per key.
fn workload_labels(config: &Config, flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = config.workload.labels.clone();
    let env = std::env::var("KEYWAY_WORKLOAD_LABELS").unwrap_or_default();
    let from_env = env.split(',').map(str::trim).filter(|s| !s.is_empty());
    for (source, pair) in from_env
        .map(|p| ("KEYWAY_WORKLOAD_LABELS", p))
        .chain(flags.iter().map(|p| ("--label", p.as_str())))
    {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Usage(format!("{source}: `{pair}` is not KEY=VALUE")).into());
        };
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(labels)
}

pub async fn run(
    config: Option<&Path>,
    local_dir: PathBuf,
    socket: Option<PathBuf>,
    activated: keyway_daemon::Activated,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let agent = args.agent_settings()?;
    let source = Source {
        path: config.map(Path::to_path_buf),
        agent,
        socket,
        tcp: args.tcp,
        metrics: args.metrics,
        labels: args.labels,
    };
    if args.watch_config && source.path.is_none() {
        return Err(Usage(
            "--watch-config watches the config file, and none is given; add --config FILE (or KEYWAY_CONFIG)"
                .into(),
        )
        .into());
    }
    let config = source.load()?;
    if args.check {
        for warning in keyway_daemon::check(&config.server, &config.providers, local_dir)? {
            tell!("keyway: warning: {warning}");
        }
        let file = source
            .path
            .as_deref()
            .map_or_else(|| "no config file".to_owned(), |p| p.display().to_string());
        say!("{file}: configuration OK");
        return Ok(());
    }
    let daemon =
        keyway_daemon::Daemon::bind(&config.server, &config.providers, local_dir, activated)
            .await?;
    // Before the daemon says it listens: from then on a SIGHUP reloads instead of ending the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    // One line per listener on stdout, so scripts and tests know where to connect; with the AWS agent's
    // configuration, first the agent's own line.
    if let (Some(_), Some(addr)) = (&source.agent, daemon.tcp_addr()) {
        say!("{}", agent_line(addr));
    }
    if let Some(socket) = daemon.socket_path() {
        say!("listening on unix:{}", socket.display());
    }
    if let Some(addr) = daemon.tcp_addr() {
        say!("listening on tcp:{addr}");
    }
    if let Some(addr) = daemon.metrics_addr() {
        say!("listening on metrics:{addr}");
    }
    let reloads = tokio::spawn(reload_on_change(
        source,
        config,
        daemon.reloader(),
        hangup,
        args.watch_config,
    ));
    daemon.run(shutdown_signal()).await;
    reloads.abort();
    Ok(())
}

/// Reloads on every SIGHUP and, with `watch`, when the files' content changed and read the same twice a second
/// apart (so a file caught half written is not applied). A refused configuration is logged once, and the
/// daemon goes on with the one it has.
async fn reload_on_change(
    source: Source,
    mut config: Config,
    reloader: keyway_daemon::Reloader,
    hangup: tokio::signal::unix::Signal,
    watch: bool,
) {
    let mut trigger = crate::watch::Trigger::new(hangup, watch, source.content(&config));
    loop {
        trigger.next(|| source.content(&config)).await;
        keyway_daemon::notify::reloading();
        let outcome = match source.load() {
            Ok(new) => reloader
                .reload(&new.server, &new.providers)
                .map(|done| (done, new))
                .map_err(anyhow::Error::from),
            Err(e) => {
                reloader.refused();
                Err(e)
            }
        };
        let applied = outcome.is_ok();
        match outcome {
            Ok((done, new)) => {
                config = new;
                trigger.applied(source.content(&config));
                for setting in &done.needs_restart {
                    tracing::warn!(
                        setting = %format!("[server] {setting}"),
                        "changed, but it applies only when keyway serve starts; the running value is kept"
                    );
                }
                let cache = if done.cache_kept {
                    "kept"
                } else {
                    "emptied (the providers changed)"
                };
                tracing::info!(cache, "configuration reloaded");
            }
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "reload refused; still serving the previous configuration"
            ),
        }
        // The reload ends here; while the first prefetch runs, its own READY=1 ends it instead.
        let status = if applied {
            "ready; configuration reloaded"
        } else {
            "ready; reload refused, serving the previous configuration"
        };
        if reloader.is_ready() {
            keyway_daemon::notify::ready(status);
        } else {
            keyway_daemon::notify::status("prefetching");
        }
    }
}

/// The sockets systemd passed (socket activation: `LISTEN_FDS`, for this process by `LISTEN_PID`): a unix
/// stream socket is the daemon's socket; a TCP socket named `metrics` (`FileDescriptorName=metrics`, in
/// `LISTEN_FDNAMES`) the metrics listener; another TCP socket the token-guarded TCP listener. Call it before any
/// thread starts: it removes `LISTEN_FDS` and `LISTEN_PID` from the environment.
pub fn activated_sockets() -> anyhow::Result<keyway_daemon::Activated> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut passed = listenfd::ListenFd::from_env();
    let mut activated = keyway_daemon::Activated::default();
    let taken = |what: &str| {
        Usage(format!(
            "the service manager passed more than one {what}; keyway takes one unix stream socket, one TCP socket for `tcp` and one TCP socket named `metrics` (FileDescriptorName=metrics)"
        ))
    };
    for index in 0..passed.len() {
        let name = names.get(index).map_or("", String::as_str);
        if let Ok(Some(unix)) = passed.take_unix_listener(index) {
            if activated.unix.replace(unix).is_some() {
                return Err(taken("unix stream socket").into());
            }
        } else if let Ok(Some(tcp)) = passed.take_tcp_listener(index) {
            let (slot, what) = if name == "metrics" {
                (&mut activated.metrics, "TCP socket named `metrics`")
            } else {
                (&mut activated.tcp, "TCP socket for `tcp`")
            };
            if slot.replace(tcp).is_some() {
                return Err(taken(what).into());
            }
        } else {
            return Err(Usage(format!(
                "socket {} the service manager passed{} is neither a unix stream nor a TCP listening socket; give the .socket unit ListenStream= lines only",
                index + 1,
                if name.is_empty() { String::new() } else { format!(" (`{name}`)") }
            ))
            .into());
        }
    }
    Ok(activated)
}

/// SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// The first line the agent prints, `Agent/2.1.0 listening on http://127.0.0.1:2773`, as Keyway's.
fn agent_line(addr: std::net::SocketAddr) -> String {
    format!(
        "Keyway/{} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    )
}

/// `keyway` run under the AWS agent's name: the agent's command line (`--config FILE`, `--help`), messages and
/// exit status (1 for every failure, its message on stderr), then the daemon on TCP only.
pub fn run_as_agent(command_line: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    let failed = |message: &str, usage: &str| {
        if !message.is_empty() {
            tell!("{message}");
        }
        if !usage.is_empty() {
            tell!("{usage}");
        }
        std::process::ExitCode::from(1)
    };
    let mut args = command_line.into_iter();
    let usage = format!(
        "Usage: {} [--config <file>]",
        args.next().unwrap_or_default().to_string_lossy()
    );
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-c" | "--config") => match args.next() {
                Some(path) => file = Some(PathBuf::from(path)),
                None => return failed("Argument expected", &usage),
            },
            Some("-h" | "--help") => return failed("", &usage),
            _ => return failed(&format!("Unknown option {}", arg.to_string_lossy()), &usage),
        }
    }
    let settings = match file.as_deref().map(crate::agent::load).transpose() {
        Ok(settings) => settings.unwrap_or_default(),
        Err(message) => return failed(&message, ""),
    };
    crate::init_logging(0, Some((settings.log_level, settings.log_to_file)));
    let mut config = match std::env::var_os("KEYWAY_CONFIG") {
        Some(path) => match Config::load(Path::new(&path)) {
            Ok(config) => config,
            Err(e) => return failed(&e.to_string(), ""),
        },
        None => Config::default(),
    };
    if let Err(message) = settings.apply(&mut config) {
        tracing::error!("{message}");
        return failed(&message, "");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(&format!("cannot start the async runtime: {e}"), ""),
    };
    let local_dir = std::env::var_os("KEYWAY_LOCAL_DIR")
        .map_or_else(|| PathBuf::from("secrets"), PathBuf::from);
    runtime.block_on(async {
        if settings.validate_credentials
            && let Some(Err(e)) = config.providers.aws_caller_identity("aws-sm").await
            && !(settings.ignore_transient_errors && e.kind().is_transient())
        {
            return failed(&format!("Error: {e}"), "");
        }
        let bound = keyway_daemon::Daemon::bind(
            &config.server,
            &config.providers,
            local_dir,
            keyway_daemon::Activated::default(),
        );
        let daemon = match bound.await {
            Ok(daemon) => daemon,
            Err(keyway_daemon::DaemonError::Listen { address, source }) => {
                let address = address.strip_prefix("tcp:").unwrap_or(&address);
                return failed(&format!("Could not bind to {address}: {source}"), "");
            }
            Err(e) => return failed(&e.to_string(), ""),
        };
        if let Some(addr) = daemon.tcp_addr() {
            say!("{}", agent_line(addr));
            tracing::info!("{}", agent_line(addr));
        }
        daemon.run(shutdown_signal()).await;
        std::process::ExitCode::SUCCESS
    })
}

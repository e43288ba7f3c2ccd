//! `keyway serve`: binds the daemon's listeners, prints where it listens, serves until SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyway_providers::Config;

use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Loopback TCP address to listen on as well (overrides [server] tcp), e.g. 127.0.0.1:2773.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// A label of this workload (workload-type, project, user) for the identity mapping; repeat. Overrides
    /// KEYWAY_WORKLOAD_LABELS (KEY=VALUE,KEY=VALUE) and [workload] labels.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
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
    args: ServeArgs,
) -> anyhow::Result<()> {
    let mut config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(socket) = socket {
        config.server.socket = Some(socket);
    }
    if let Some(tcp) = args.tcp {
        config.server.tcp = Some(tcp);
    }
    let labels = workload_labels(&config, &args.labels)?;
    if let Some((decision, _)) = keyway_providers::iam::apply_mapping(&mut config, &labels)? {
        tracing::info!(%decision, "identity mapping applied");
    }
    let daemon = keyway_daemon::Daemon::bind(&config, local_dir).await?;
    // One line per listener on stdout, so scripts and tests know where to connect.
    println!("listening on unix:{}", daemon.socket_path().display());
    if let Some(addr) = daemon.tcp_addr() {
        println!("listening on tcp:{addr}");
    }
    daemon.run(shutdown_signal()).await;
    Ok(())
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

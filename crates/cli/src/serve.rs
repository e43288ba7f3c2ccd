//! `keyway serve`: binds the daemon's listeners, prints where it listens, serves until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};

use keyway_providers::Config;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Loopback TCP address to listen on as well (overrides [server] tcp), e.g. 127.0.0.1:2773.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
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
async fn shutdown_signal() {
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

//! `keyway status`: whether the node's daemon is ready, for init scripts and probes.

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Wait up to this long for the daemon to be ready (`30s`, `2m`), asking every 100 ms, instead of answering
    /// at once: for init scripts that start `keyway serve` and go on when its prefetch is done.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    wait: Option<std::time::Duration>,
    /// Only whether the daemon answers (`/healthz`), not whether it is ready (`/readyz`): a liveness probe.
    #[arg(long)]
    live: bool,
}

/// `keyway status`: exit 0 when the node's daemon is ready (or, with `--live`, answers), 5 when it is not.
pub async fn run(context: &Context, args: StatusArgs) -> anyhow::Result<()> {
    let client = keyway_client::Client::new(context.socket.clone());
    let deadline = args.wait.map(|wait| tokio::time::Instant::now() + wait);
    loop {
        let answer = client.status(args.live).await;
        let retry = deadline.is_some_and(|d| tokio::time::Instant::now() < d);
        match answer {
            Ok(Ok(())) => {
                let state = if args.live { "alive" } else { "ready" };
                say!("{state}: keyway daemon at {}", context.socket.display());
                return Ok(());
            }
            _ if retry => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Ok(Err(why)) => {
                let hint = if args.wait.is_some() {
                    "; wait longer, or see its log"
                } else {
                    "; wait for it with --wait 30s"
                };
                return Err(keyway_core::Error::Remote {
                    kind: keyway_core::ErrorKind::Unavailable,
                    message: format!(
                        "the keyway daemon at {} is not ready ({why}){hint}",
                        context.socket.display()
                    ),
                    upstream: None,
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

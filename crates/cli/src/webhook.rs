//! `keyway webhook`: the Kubernetes mutating admission webhook (HTTPS), until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};

use keyway_inject::InjectConfig;
use keyway_providers::Config;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address to listen on (the API server must reach it).
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    listen: String,
    /// PEM certificate chain (re-read when it changes).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// PEM private key (re-read when it changes).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Image of the init container (holds the keyway binary).
    #[arg(
        long,
        env = "KEYWAY_IMAGE",
        default_value = "ghcr.io/keyway-dev/keyway:latest"
    )]
    image: String,
    /// Default mount path of the secrets volume in Pods.
    #[arg(long, default_value = "/keyway/secrets", value_name = "DIR")]
    dir: String,
}

pub async fn run(
    config: Option<&Path>,
    local_dir: PathBuf,
    args: WebhookArgs,
) -> anyhow::Result<()> {
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // References in annotations may name the instances this config declares.
    let instances = config.resolver(local_dir)?.instances().clone();
    let inject = InjectConfig {
        image: args.image,
        dir: args.dir,
        instances,
        ..InjectConfig::default()
    };
    let webhook = keyway_webhook::Webhook::bind(&args.listen, args.cert, args.key, inject).await?;
    if let Some(addr) = webhook.local_addr() {
        println!("listening on https://{addr}");
    }
    webhook.run(crate::serve::shutdown_signal()).await;
    Ok(())
}

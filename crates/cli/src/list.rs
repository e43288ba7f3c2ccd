//! `keyway list`: the secret names of a provider instance.

use std::io::Write as _;

use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Provider instance (aws-sm, gcp-sm, local, or one from the config).
    instance: String,
    /// Only names containing this text (AWS: name filter; GCP: name: filter).
    #[arg(long)]
    filter: Option<String>,
}

pub async fn run(context: &Context, args: ListArgs) -> anyhow::Result<()> {
    let names = context.list(&args.instance, args.filter.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    for name in names {
        match writeln!(out, "{name}") {
            Ok(()) => {}
            // The reader had enough (`keyway list aws-sm | head -3`): names are no secret, so stop quietly, as
            // ripgrep does, and a `set -o pipefail` script goes on. A value's reader going away stays an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e).context("cannot write to stdout")),
        }
    }
    Ok(())
}

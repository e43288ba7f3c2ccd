//! `keyway get`: one value (or one field of it) to stdout, exactly, or with its metadata as JSON.

use std::io::Write as _;

use anyhow::Context as _;
use base64::Engine as _;
use keyway_core::Encoding;
use zeroize::Zeroizing;

use crate::context::{Context, lookup};

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The reference, e.g. aws-sm://ci/github#github_token.
    reference: String,
    /// Print JSON with the value and its metadata instead of the raw value.
    #[arg(long)]
    json: bool,
    /// Cache TTL for this request (seconds or a duration; 0 asks the upstream).
    #[arg(long)]
    ttl: Option<String>,
    /// Ask the upstream now.
    #[arg(long)]
    refresh: bool,
}

#[derive(serde::Serialize)]
struct GetJson<'a> {
    #[serde(rename = "ref")]
    reference: String,
    value: &'a str,
    encoding: &'static str,
    name: &'a str,
    version: &'a str,
    stages: &'a [String],
    created: Option<String>,
    fetched_at: String,
    source: &'static str,
}

pub async fn run(context: &Context, args: GetArgs) -> anyhow::Result<()> {
    let reference = context.parse(&args.reference)?;
    let resolved = context
        .resolve(&reference, lookup(args.ttl.as_deref(), args.refresh)?)
        .await?;
    let secret = &resolved.secret;
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = std::str::from_utf8(secret.value.expose())
            .ok()
            .filter(|_| secret.encoding == Encoding::Text);
        let b64;
        let (value, encoding) = if let Some(text) = text {
            (text, "text")
        } else {
            b64 = Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(secret.value.expose()),
            );
            (b64.as_str(), "base64")
        };
        let doc = GetJson {
            reference: reference.to_string(),
            value,
            encoding,
            name: &secret.meta.name,
            version: &secret.meta.version_id,
            stages: &secret.meta.stages,
            created: secret
                .meta
                .created
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            fetched_at: humantime::format_rfc3339_millis(resolved.fetched_at).to_string(),
            source: resolved.source.as_str(),
        };
        // Sized up front so the buffer holding the value is never reallocated (and left unzeroized).
        let mut buf = Zeroizing::new(Vec::with_capacity(value.len() * 6 + 4096));
        serde_json::to_writer(&mut *buf, &doc).context("cannot encode JSON")?;
        buf.push(b'\n');
        out.write_all(&buf).context("cannot write to stdout")?;
    } else {
        out.write_all(secret.value.expose())
            .context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    tracing::info!(reference = %reference, source = resolved.source.as_str(), "delivered to stdout");
    Ok(())
}

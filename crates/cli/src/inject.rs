//! `keyway inject`: one template in (a file or stdin), the same text out with every `{{ REF }}` replaced by its
//! value (stdout, or a file written atomically), as 1Password's `op inject` does: for a file a tool reads
//! whole (`.npmrc`, a Kubernetes manifest piped to `kubectl apply -f -`). Every reference is fetched first;
//! if any fails, nothing is written.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use keyway_core::template::{Placeholder, Template};
use zeroize::Zeroizing;

use crate::commands::Context;
use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// The template (default: stdin): text with `{{ REF }}` placeholders; any other `{{ ... }}` stays text.
    #[arg(short = 'i', long = "in-file", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write the result to FILE, replaced at once (a temporary file beside it, then a rename), instead of
    /// stdout. Best on tmpfs.
    #[arg(short = 'o', long = "out-file", value_name = "FILE")]
    output: Option<PathBuf>,
    /// With --out-file: its mode, octal. A mode others can read is applied with a warning.
    #[arg(long, default_value = "0600", value_parser = crate::render::parse_mode, requires = "output")]
    mode: u32,
}

pub async fn run(context: &Context, args: InjectArgs) -> anyhow::Result<()> {
    let (origin, text) = read_template(args.input.as_ref())?;
    let template = Template::new(&text).map_err(|e| Usage(format!("{origin}, {e}")))?;
    drop(text);
    let mut references = Vec::with_capacity(template.references().len());
    for Placeholder { reference, line } in template.references() {
        references.push(context.parse_at(&format!("{origin}, line {line}"), reference)?);
    }
    let values = context
        .resolve_all(&references, keyway_core::Lookup::default())
        .await?;
    let filled = template.fill(|i| values[i].secret.value.expose());
    drop(values);
    tracing::info!(
        references = references.len(),
        to = %args.output.as_ref().map_or("stdout".into(), |p| p.display().to_string()),
        "template filled"
    );
    match &args.output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&filled)
                .and_then(|()| out.flush())
                .context("cannot write to stdout")?;
        }
        Some(path) => {
            if args.mode & 0o007 != 0 {
                eprintln!(
                    "keyway: warning: mode {:04o} lets every user on this machine read {}; use 0600",
                    args.mode,
                    path.display()
                );
            }
            crate::render::write_file(path, &filled, args.mode)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// The template's text and how errors name it.
fn read_template(input: Option<&PathBuf>) -> anyhow::Result<(String, Zeroizing<String>)> {
    let (origin, mut bytes) = match input {
        Some(path) if path.as_os_str() != "-" => {
            let bytes = std::fs::read(path)
                .map_err(|e| Usage(format!("cannot read template {}: {e}", path.display())))?;
            (
                format!("template {}", path.display()),
                Zeroizing::new(bytes),
            )
        }
        _ => {
            let mut bytes = Zeroizing::new(Vec::new());
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the template from stdin")?;
            ("template on stdin".to_owned(), bytes)
        }
    };
    if std::str::from_utf8(&bytes).is_err() {
        return Err(Usage(format!("{origin} is not UTF-8 text")).into());
    }
    // The buffer itself becomes the string: no copy of it is left behind unzeroized.
    let text = String::from_utf8(std::mem::take(&mut *bytes)).unwrap_or_default();
    Ok((origin, Zeroizing::new(text)))
}

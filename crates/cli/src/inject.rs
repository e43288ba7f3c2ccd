//! `keyway inject`: one template in (a file or stdin), the same text out with every `{{ REF }}` replaced by its
//! value (stdout, or a file written atomically), as 1Password's `op inject` does: for a file a tool reads
//! whole (`.npmrc`, a Kubernetes manifest piped to `kubectl apply -f -`). Every reference is fetched first;
//! if any fails, nothing is written.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::context::Context;
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
    #[arg(long, default_value = "0600", requires = "output")]
    mode: keyway_core::FileMode,
}

impl InjectArgs {
    pub fn to_stdout(&self) -> bool {
        self.output.is_none()
    }
}

pub async fn run(context: &Context, args: InjectArgs) -> anyhow::Result<()> {
    let (origin, text) = read_template(args.input.as_ref())?;
    let (template, references) = crate::render::parse_template(context, &origin, &text)?;
    if let Some(path) = &args.output {
        check_out_file(path)?;
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
            if args.mode.others_read() {
                tell!(
                    "keyway: warning: mode {} lets every user on this machine read {}; use 0600",
                    args.mode,
                    path.display()
                );
            }
            crate::atomic::write_file(path, &filled, args.mode)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// Refuses an `--out-file` that could never be written (a directory, or in a directory that does not exist)
/// before any value is fetched.
fn check_out_file(path: &Path) -> Result<(), Usage> {
    if path.is_dir() {
        return Err(Usage(format!(
            "--out-file {} is a directory; give the path of a file",
            path.display()
        )));
    }
    let dir = crate::atomic::parent(path);
    if !dir.is_dir() {
        return Err(Usage(format!(
            "--out-file {}: there is no directory {}; create it first",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The template's text and how errors name it. A template holds references only (docs/references.md), so it
/// is read as plain text.
fn read_template(input: Option<&PathBuf>) -> anyhow::Result<(String, String)> {
    let file = input.filter(|path| path.as_os_str() != "-");
    let (origin, read) = if let Some(path) = file {
        (
            format!("template {}", path.display()),
            std::fs::read_to_string(path),
        )
    } else {
        let mut text = String::new();
        let read = std::io::stdin().read_to_string(&mut text).map(|_| text);
        ("template on stdin".to_owned(), read)
    };
    match read {
        Ok(text) => Ok((origin, text)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Usage(format!("{origin} is not UTF-8 text")).into())
        }
        // A file that cannot be read is the caller's to fix (exit 2); stdin failing is an I/O error (exit 1).
        Err(e) if file.is_some() => Err(Usage(format!("cannot read {origin}: {e}")).into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot read the template from stdin")),
    }
}

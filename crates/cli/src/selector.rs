//! `keyway selector parse|match`: Kubernetes label selectors (and Anyscale's dialect) for people debugging
//! their rules and for scripts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use keyway_core::selector::{Mode, Selector};

use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct SelectorArgs {
    #[command(subcommand)]
    command: SelectorCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// Kubernetes exactly.
    Strict,
    /// Anyscale's IAM mapping: keys workload-type, project, user; e-mail values.
    Anyscale,
    /// Any value the tokenizer yields.
    Relaxed,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Strict => Mode::Strict,
            ModeArg::Anyscale => Mode::Anyscale,
            ModeArg::Relaxed => Mode::Relaxed,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum SelectorCommand {
    /// Print the canonical form (requirements sorted by key, set values sorted and deduplicated). Exit 0, or 2
    /// with the error.
    Parse {
        /// The selector, e.g. 'workload-type in (job, service),user=a@example.com'.
        selector: String,
        #[arg(long, value_enum, default_value = "strict")]
        mode: ModeArg,
    },
    /// Print true or false. Exit 0 on a match, 1 on no match, 2 on an invalid selector.
    Match {
        /// The selector.
        selector: String,
        #[arg(long, value_enum, default_value = "strict")]
        mode: ModeArg,
        /// A label of the workload, KEY=VALUE; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
}

fn parse(text: &str, mode: ModeArg) -> anyhow::Result<Selector> {
    Selector::parse_with(text, mode.into()).map_err(|e| Usage(e.to_string()).into())
}

pub fn run(args: SelectorArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match args.command {
        SelectorCommand::Parse { selector, mode } => {
            let parsed = parse(&selector, mode)?;
            writeln!(out, "{parsed}").context("cannot write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        SelectorCommand::Match {
            selector,
            mode,
            labels,
        } => {
            let parsed = parse(&selector, mode)?;
            let mut given = BTreeMap::new();
            for label in labels {
                let Some((k, v)) = label.split_once('=') else {
                    return Err(Usage(format!("--label `{label}` is not KEY=VALUE")).into());
                };
                given.insert(k.to_owned(), v.to_owned());
            }
            let matched = parsed.matches(&given);
            writeln!(out, "{matched}").context("cannot write to stdout")?;
            Ok(if matched {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

//! `keyway iam validate|resolve`: Anyscale's cloud IAM mapping spec, checked and evaluated.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use keyway_config::iam::read_spec;
use keyway_core::mapping::Decision;

use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct IamArgs {
    #[command(subcommand)]
    command: IamCommand,
}

#[derive(Debug, clap::Subcommand)]
enum IamCommand {
    /// Report every problem of a spec with its line. Exit 0 when valid (warnings allowed), 2 otherwise.
    Validate {
        /// The cloud config YAML, as `anyscale cloud config get` prints it.
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
    /// Print the identity the mapping chooses for a workload and which rule chose it. Exit 0 on a rule or
    /// CLOUD_DEFAULT, 4 when the fallback is FAIL and nothing matched, 2 on an invalid spec.
    Resolve {
        /// The cloud config YAML.
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// A workload label, KEY=VALUE (workload-type, project, user); repeat.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Print each rule and why it did or did not match.
        #[arg(long)]
        explain: bool,
    },
}

fn load(spec: &PathBuf) -> anyhow::Result<keyway_config::iam::SpecReport> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("cannot read {}", spec.display()))?;
    Ok(read_spec(&text))
}

pub fn run(args: IamArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match args.command {
        IamCommand::Validate { spec } => {
            let report = load(&spec)?;
            for problem in &report.problems {
                writeln!(out, "{}: {problem}", spec.display()).context("cannot write to stdout")?;
            }
            match report.mapping {
                Some(mapping) => {
                    let summary = if mapping.rules.is_empty() {
                        "no rules: every workload gets the cloud's default identity".to_owned()
                    } else {
                        format!(
                            "{} rules, fallback {}",
                            mapping.rules.len(),
                            mapping.fallback
                        )
                    };
                    writeln!(
                        out,
                        "{}: valid: {} {}, {summary}",
                        spec.display(),
                        mapping.cloud,
                        mapping.stack
                    )
                    .context("cannot write to stdout")?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(2)),
            }
        }
        IamCommand::Resolve {
            spec,
            labels,
            explain,
        } => {
            let report = load(&spec)?;
            let mapping = report
                .into_mapping(&spec.display().to_string())
                .map_err(Usage)?;
            let mut given = BTreeMap::new();
            for label in &labels {
                let Some((k, v)) = label.split_once('=') else {
                    return Err(Usage(format!("--label `{label}` is not KEY=VALUE")).into());
                };
                given.insert(k.to_owned(), v.to_owned());
            }
            if explain {
                for (i, failing) in mapping.explain(&given) {
                    let rule = &mapping.rules[i];
                    let why = failing.map_or_else(
                        || "matches".to_owned(),
                        |r| format!("does not match: `{r}` is false"),
                    );
                    writeln!(
                        out,
                        "rule {}: {} -> {}: {why}",
                        i + 1,
                        rule.text,
                        rule.value
                    )
                    .context("cannot write to stdout")?;
                }
            }
            let decision = mapping.resolve(&given);
            if decision == Decision::Fail {
                tell!(
                    "keyway: error: no rule matches labels {} and fallback_rule is FAIL; rules tried: {}",
                    if labels.is_empty() {
                        "(none)".to_owned()
                    } else {
                        labels.join(",")
                    },
                    mapping.rules_tried()
                );
                return Ok(ExitCode::from(4));
            }
            writeln!(out, "{decision}").context("cannot write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

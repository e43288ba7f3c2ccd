//! `keyway exec`: references resolved into environment variables, then the command: in place of keyway, or as
//! its child with `--mask` or `--watch` ([`crate::supervise`]).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use keyway_core::{Resolved, SecretRef};

use crate::context::{Context, keep_memory_private, lookup};
use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// VAR=REF: set VAR to the value of REF (repeatable, each VAR once).
    #[arg(long = "env", short = 'e', value_name = "VAR=REF")]
    env: Vec<String>,
    /// A dotenv file of VAR=VALUE lines (repeatable; quotes, comments, `export`, `${VAR}`): a value that is a
    /// reference is resolved, any other is set as written. --env wins over a file, a later file or line over
    /// an earlier one.
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Do not resolve environment variables whose value is a reference.
    #[arg(long)]
    no_env_refs: bool,
    /// Replace the values in the command's stdout and stderr, their base64, percent-encoded and JSON-escaped
    /// forms, and the lines of values of several lines, with `<concealed by keyway>`: the command runs as
    /// keyway's child with its output through pipes (not a terminal); SIGTERM, SIGHUP, SIGUSR1/2 are passed
    /// on; the exit code is the command's (128 + N when signal N ended it).
    #[arg(long)]
    mask: bool,
    /// Keep running: fetch the references again every INTERVAL (e.g. 5m), past the cache, and when a value
    /// changed stop the command (--stop-signal, SIGKILL after --stop-timeout) and start it again with the new
    /// values.
    /// A failed round keeps the command running. The exit code is the command's when it ends by itself.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
    watch: Option<std::time::Duration>,
    /// The signal that stops the command before a restart (--watch).
    #[arg(
        long,
        value_name = "SIGNAL",
        default_value = "TERM",
        requires = "watch"
    )]
    stop_signal: crate::supervise::StopSignal,
    /// How long the command may take to stop before a restart; then it is killed (SIGKILL).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, requires = "watch")]
    stop_timeout: std::time::Duration,
    /// Cache TTL for these requests.
    #[arg(long)]
    ttl: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The command's environment: variables set as written, and variables set to a secret's value.
pub struct Environment {
    /// Set as written (`--env-file` lines that are not references).
    pub plain: Vec<(String, OsString)>,
    /// Set to the value of the reference, each variable once.
    pub secrets: Vec<(String, SecretRef)>,
}

impl Environment {
    /// The secrets' references, in the order of [`Environment::secrets`], as [`Context::resolve_all`] takes
    /// them.
    pub fn references(&self) -> Vec<SecretRef> {
        self.secrets.iter().map(|(_, r)| r.clone()).collect()
    }

    /// The variable of each of `values`, resolved from [`Environment::references`] in that order.
    pub fn named<'v>(&self, values: &'v [Resolved]) -> impl Iterator<Item = (&str, &'v Resolved)> {
        self.secrets.iter().map(|(var, _)| var.as_str()).zip(values)
    }

    /// `program` with this environment, each secret's variable set to its value.
    pub fn command(
        &self,
        program: &[OsString],
        values: &[Resolved],
    ) -> anyhow::Result<std::process::Command> {
        let mut command = std::process::Command::new(&program[0]);
        command.args(&program[1..]);
        command.envs(self.plain.iter().map(|(var, value)| (var, value)));
        for ((var, reference), resolved) in self.secrets.iter().zip(values) {
            let bytes = resolved.secret.value.expose();
            if bytes.contains(&0) {
                return Err(Usage(format!(
                    "the value of {reference} holds a NUL byte, which an environment variable cannot carry; use `keyway render` for {var}"
                ))
                .into());
            }
            command.env(var, OsString::from_vec(bytes.to_vec()));
        }
        Ok(command)
    }
}

pub async fn run(context: &Context, args: ExecArgs) -> anyhow::Result<()> {
    let mut vars: Vec<(String, SecretRef)> = Vec::new();
    for pair in &args.env {
        let (var, reference) = pair
            .split_once('=')
            .ok_or_else(|| Usage("an --env is not VAR=REF (not shown: it may be a value); write e.g. --env GITHUB_TOKEN=aws-sm://ci/github#github_token".into()))?;
        if var.is_empty() || var.contains('\0') {
            return Err(Usage("an --env has no variable name; write VAR=REF, e.g. GITHUB_TOKEN=aws-sm://ci/github".into()).into());
        }
        if vars.iter().any(|(v, _)| v == var) {
            return Err(Usage(format!(
                "variable `{var}` is given twice in --env; give each variable one reference"
            ))
            .into());
        }
        vars.push((
            var.to_owned(),
            context.parse_at(&format!("--env {var}"), reference)?,
        ));
    }
    let plain = from_env_files(context, &args.env_file, &mut vars)?;
    if !args.no_env_refs {
        for (var, value) in std::env::vars_os() {
            let (Some(var), Some(value)) = (var.to_str(), value.to_str()) else {
                continue;
            };
            if vars.iter().any(|(v, _)| v == var) || plain.iter().any(|(v, _)| v == var) {
                continue;
            }
            if context.resolver.instances().looks_like_reference(value) {
                vars.push((
                    var.to_owned(),
                    context.parse_at(&format!("environment variable {var}"), value)?,
                ));
            } else {
                warn_of_typo(context, &format!("environment variable {var}"), value);
            }
        }
    }
    // Supervised, keyway keeps the values in memory while the command runs; otherwise it replaces itself.
    let supervised = args.mask || args.watch.is_some();
    if supervised {
        keep_memory_private();
    }
    let environment = Environment {
        plain,
        secrets: vars,
    };
    let values = context
        .resolve_all(
            &environment.references(),
            lookup(args.ttl.as_deref(), false)?,
        )
        .await?;
    tracing::info!(count = values.len(), program = %args.command[0].to_string_lossy(), "exec with resolved environment");
    if supervised {
        let options = crate::supervise::Options {
            mask: args.mask,
            watch: args.watch,
            stop_signal: args.stop_signal,
            stop_timeout: args.stop_timeout,
        };
        let code =
            crate::supervise::run(context, &args.command, &environment, values, &options).await?;
        std::process::exit(code);
    }
    let mut command = environment.command(&args.command, &values)?;
    drop(values);
    let err = command.exec();
    std::process::exit(cannot_run(args.command[0].as_os_str(), &err));
}

/// The variables of `--env-file`s: those whose value is a reference join `vars` (unless `--env` set them
/// already); the others are returned, to be set as written. A later file or line replaces an earlier one.
fn from_env_files(
    context: &Context,
    files: &[PathBuf],
    vars: &mut Vec<(String, SecretRef)>,
) -> anyhow::Result<Vec<(String, OsString)>> {
    let explicit = vars.len();
    let mut plain: Vec<(String, OsString)> = Vec::new();
    for file in files {
        for (var, value) in crate::env_file::read(file)? {
            if vars[..explicit].iter().any(|(v, _)| *v == var) {
                continue;
            }
            vars.retain(|(v, _)| *v != var);
            plain.retain(|(v, _)| *v != var);
            if context.resolver.instances().looks_like_reference(&value) {
                let reference = context
                    .parse(&value)
                    .with_context(|| format!("{var} in --env-file {}", file.display()))?;
                vars.push((var, reference));
            } else {
                warn_of_typo(
                    context,
                    &format!("{var} in --env-file {}", file.display()),
                    &value,
                );
                plain.push((var, OsString::from(value.as_str())));
            }
        }
    }
    Ok(plain)
}

/// Warns when `value`, taken as a plain value, starts like a reference with a typo in its instance
/// (`aws-ms://...`): the command would get the text instead of the secret. The value is not shown.
fn warn_of_typo(context: &Context, place: &str, value: &str) {
    if let Some(known) = context.resolver.instances().typo_in(value) {
        tell!(
            "keyway: warning: {place} looks like a mistyped {known}:// reference (its INSTANCE:// names no configured instance); it is set as written, not resolved"
        );
    }
}

/// A `--watch` interval: a duration (`30s`, `5m`) of at least 100 ms, so that a `0s` cannot turn the watch into
/// a loop that asks the upstream as fast as it answers.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!(
            "`{text}` is too short: every interval asks the upstream again; use 100ms or more (30s, 5m)"
        ));
    }
    Ok(interval)
}

/// Says why `program` could not be started; the exit code for it, as a shell gives: 127 not found, 126 other.
pub fn cannot_run(program: &std::ffi::OsStr, err: &std::io::Error) -> i32 {
    tell!(
        "keyway: error: cannot run {}: {err}",
        program.to_string_lossy()
    );
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

#[cfg(test)]
mod tests {
    use keyway_core::SecretRef;

    /// Containers whose environment holds secrets run what `keyway_inject::command` writes in front of their
    /// own command: this parser must read every part of it back, and leave the command whole.
    #[test]
    fn the_webhooks_exec_line_parses_as_exec_reads_it() {
        use clap::Parser as _;
        use keyway_inject::command::ExecCommand;

        let built = ExecCommand {
            program: "/keyway/bin/keyway".to_owned(),
            env: [
                ("GITHUB_TOKEN", "aws-sm://ci/github#github_token"),
                ("DB", "local://db"),
            ]
            .into_iter()
            .map(|(var, reference)| (var.to_owned(), reference.parse().unwrap()))
            .collect(),
            watch: Some(std::time::Duration::from_mins(5)),
        };
        let mut line = built.args();
        line.extend(["python".to_owned(), "--env".to_owned(), "prod".to_owned()]);
        let cli = crate::Cli::try_parse_from(line).unwrap();
        let crate::Command::Exec(args) = cli.command else {
            panic!("not exec: {:?}", cli.command);
        };
        let written: Vec<String> = built
            .env
            .iter()
            .map(|(var, r)| format!("{var}={r}"))
            .collect();
        assert_eq!(args.env, written);
        let read: Vec<SecretRef> = args
            .env
            .iter()
            .map(|e| e.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(read, built.env.values().cloned().collect::<Vec<_>>());
        assert_eq!(args.watch, built.watch);
        assert_eq!(args.command, ["python", "--env", "prod"]);
    }
}

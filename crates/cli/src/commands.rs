//! `get`, `list` and `exec`, and the context they share.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use keyway_config::Config;
use keyway_core::{Encoding, Lookup, Resolved, Resolver, SecretRef};
use zeroize::Zeroizing;

use crate::exit::{Many, Usage};

/// How commands reach secrets: through the node's daemon, or directly with the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DaemonMode {
    /// The daemon when its socket accepts connections, otherwise direct.
    Auto,
    /// Only the daemon; fail (exit 5) when it is not there.
    Always,
    /// Never the daemon.
    Never,
}

/// What every command needs: the config, a resolver built from it (for parsing and direct access), and the
/// daemon client when the daemon is used.
pub struct Context {
    pub config: Config,
    pub resolver: Resolver,
    pub daemon: Option<keyway_client::Client>,
    /// The daemon's socket, whether or not it is used.
    pub socket: PathBuf,
}

impl Context {
    pub fn load(
        path: Option<&Path>,
        local_dir: PathBuf,
        mode: DaemonMode,
        socket: Option<PathBuf>,
    ) -> anyhow::Result<Context> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let resolver = config.providers.resolver(local_dir)?;
        let socket = socket
            .or_else(|| config.server.socket.clone())
            .unwrap_or_else(keyway_api::default_socket_path);
        let client = keyway_client::Client::new(socket.clone());
        let daemon = match mode {
            DaemonMode::Never => None,
            DaemonMode::Always => Some(client),
            DaemonMode::Auto => client.is_listening().then_some(client),
        };
        if let Some(daemon) = &daemon {
            tracing::debug!(socket = %daemon.socket().display(), "using the keyway daemon");
        }
        Ok(Context {
            config,
            resolver,
            daemon,
            socket,
        })
    }

    pub fn parse(&self, reference: &str) -> anyhow::Result<SecretRef> {
        Ok(self.resolver.parse(reference)?)
    }

    /// As [`Context::parse`], the error led by where the reference was given (`--env TOKEN`, `file token`):
    /// text that is not a reference is not shown (it may be a value), so the place is what finds it.
    pub fn parse_at(&self, place: &str, reference: &str) -> anyhow::Result<SecretRef> {
        self.resolver
            .parse(reference)
            .map_err(|e| Usage(format!("{place}: {e}")).into())
    }

    /// Resolves one reference, through the daemon or directly.
    pub async fn resolve(&self, reference: &SecretRef, lookup: Lookup) -> anyhow::Result<Resolved> {
        Ok(match &self.daemon {
            Some(daemon) => daemon.resolve(&reference.to_string(), lookup).await?,
            None => self.resolver.resolve(reference, lookup).await?,
        })
    }

    /// Resolves many references concurrently. On any failure, prints every failure and returns [`Many`]:
    /// callers deliver all or nothing.
    pub async fn resolve_all(
        &self,
        references: &[SecretRef],
        lookup: Lookup,
    ) -> anyhow::Result<Vec<Resolved>> {
        let results = match &self.daemon {
            Some(daemon) => {
                let texts: Vec<String> = references.iter().map(ToString::to_string).collect();
                daemon.resolve_all(&texts, lookup).await?
            }
            None => self.resolver.resolve_all(references, lookup).await,
        };
        let total = results.len();
        let mut values = Vec::with_capacity(total);
        let mut first = None;
        let mut count = 0;
        for result in results {
            match result {
                Ok(v) => values.push(v),
                Err(e) => {
                    count += 1;
                    first.get_or_insert(e.kind());
                    tell!("keyway: error: {}", e.to_string().replace('\n', " "));
                }
            }
        }
        match first {
            None => Ok(values),
            Some(first) => Err(Many {
                count,
                total,
                first,
            }
            .into()),
        }
    }

    /// Lists names, through the daemon or directly.
    pub async fn list(&self, instance: &str, filter: Option<&str>) -> anyhow::Result<Vec<String>> {
        Ok(match &self.daemon {
            Some(daemon) => daemon.list(instance, filter).await?,
            None => self.resolver.list(instance, filter).await?,
        })
    }
}

fn lookup(ttl: Option<&str>, refresh: bool) -> anyhow::Result<Lookup> {
    let ttl = ttl
        .map(str::parse::<keyway_core::Ttl>)
        .transpose()
        .map_err(Usage)?;
    Ok(Lookup {
        ttl,
        refresh_now: refresh,
    })
}

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
pub async fn status(context: &Context, args: StatusArgs) -> anyhow::Result<()> {
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

pub async fn get(context: &Context, args: GetArgs) -> anyhow::Result<()> {
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

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Provider instance (aws-sm, gcp-sm, local, or one from the config).
    instance: String,
    /// Only names containing this text (AWS: name filter; GCP: name: filter).
    #[arg(long)]
    filter: Option<String>,
}

pub async fn list(context: &Context, args: ListArgs) -> anyhow::Result<()> {
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

pub async fn exec(context: &Context, args: ExecArgs) -> anyhow::Result<()> {
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
    let references: Vec<SecretRef> = vars.iter().map(|(_, r)| r.clone()).collect();
    let values = context
        .resolve_all(&references, lookup(args.ttl.as_deref(), false)?)
        .await?;
    tracing::info!(count = vars.len(), program = %args.command[0].to_string_lossy(), "exec with resolved environment");
    if supervised {
        let options = crate::supervise::Options {
            mask: args.mask,
            watch: args.watch,
            stop_signal: args.stop_signal,
            stop_timeout: args.stop_timeout,
        };
        let code =
            crate::supervise::run(context, &args.command, &plain, &vars, values, &options).await?;
        std::process::exit(code);
    }
    let mut command = command_with(&args.command, &plain, &vars, &values)?;
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

/// `program` with the `plain` variables, and each of `vars` set to its value, in its environment.
pub fn command_with(
    program: &[OsString],
    plain: &[(String, OsString)],
    vars: &[(String, SecretRef)],
    values: &[Resolved],
) -> anyhow::Result<std::process::Command> {
    let mut command = std::process::Command::new(&program[0]);
    command.args(&program[1..]);
    command.envs(plain.iter().map(|(var, value)| (var, value)));
    for ((var, reference), resolved) in vars.iter().zip(values) {
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

/// One `--watch` round (`render`, `exec`): after `interval`, every reference fetched again past the cache, so a
/// rotation is seen. `None` when the round failed (logged): the caller keeps what it has and tries again.
pub async fn watch_round(
    context: &Context,
    references: &[SecretRef],
    interval: std::time::Duration,
) -> Option<Vec<Resolved>> {
    tokio::time::sleep(interval).await;
    let lookup = Lookup {
        ttl: Some(keyway_core::Ttl::Bypass),
        refresh_now: true,
    };
    context
        .resolve_all(references, lookup)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "refresh failed; keeping the current values"))
        .ok()
}

/// For the commands that keep values in memory while they run (`exec --mask` or `--watch`, `render --watch`):
/// no core dumps and no ptrace by other processes of the same user, as the daemon does (docs/security.md). The
/// command `exec` starts is dumpable again: the kernel resets the flag when a process executes a program.
pub fn keep_memory_private() {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot disable core dumps (PR_SET_DUMPABLE)");
    }
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

//! `keyway`: resolve secret references from AWS Secrets Manager, GCP Secret Manager or the local store, and
//! deliver them to a process (`exec`), to files (`render`), to stdout (`get`, `inject`) or to git
//! (`git-credential`).
//! This crate is argument parsing and wiring only; the work happens in keyway-core and keyway-providers.
// Lines go through `say!` and `tell!`, which never panic on a closed stream; secret values through checked
// writes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

/// An informational line on stdout (where a daemon listens, a check's verdict): `println!` that never panics.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::exit::line(std::io::stdout().lock(), format_args!($($arg)*))
    };
}

/// A warning or error line on stderr: `eprintln!` that never panics (see `exit::line`).
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::exit::line(std::io::stderr().lock(), format_args!($($arg)*))
    };
}

mod agent;
mod atomic;
mod context;
mod env_file;
mod exec;
mod exit;
mod get;
mod git_credential;
mod iam;
mod inject;
mod list;
mod mask;
mod render;
mod selector;
mod serve;
mod status;
mod supervise;
mod watch;
mod webhook;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other failure (I/O, a file that could not be written)
  2  usage or configuration error: bad arguments, reference, config or file name, or a provider set up so that
     it cannot answer (no AWS region, no age identity for an encrypted file)
  3  not found: secret, version or field
  4  permission denied: the identity may not read the secret, or has no credentials
  5  upstream unavailable or throttled (and nothing servable was cached)
 `keyway exec` exits with the command's own status once it runs (126/127 if it cannot be started).";

/// Keyway: secrets from AWS, GCP or a local store, into processes, files and git, without leaking them.
#[derive(Debug, Parser)]
#[command(name = "keyway", version, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    /// Config file (default: none; the aws-sm, gcp-sm and local instances use the standard environment).
    #[arg(long, global = true, env = "KEYWAY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the default `local` instance.
    #[arg(
        long,
        global = true,
        env = "KEYWAY_LOCAL_DIR",
        value_name = "DIR",
        default_value = "secrets"
    )]
    local_dir: PathBuf,
    /// Use the node's keyway daemon: auto (when its socket accepts connections), always, or never.
    #[arg(
        long,
        global = true,
        env = "KEYWAY_DAEMON",
        value_enum,
        default_value = "auto"
    )]
    daemon: context::DaemonMode,
    /// The daemon's socket (default: [server] socket in the config, else /run/keyway/keyway.sock as root,
    /// $XDG_RUNTIME_DIR/keyway.sock otherwise).
    #[arg(long, global = true, env = "KEYWAY_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); KEYWAY_LOG takes a full filter. Values are never logged.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print one secret (or one field of it) to stdout, exactly, with no trailing newline.
    Get(get::GetArgs),
    /// List the secret names of a provider instance.
    List(list::ListArgs),
    /// Resolve references into environment variables, then replace this process with CMD (no shell); with
    /// --mask or --watch, run CMD as a child instead.
    Exec(exec::ExecArgs),
    /// Fetch references concurrently and write each value, or each template with its values, atomically to a
    /// file under DIR.
    Render(render::RenderArgs),
    /// Fill one template's `{{ REF }}` placeholders with their values, to stdout or --out-file (as `op inject`):
    /// all references fetched first, nothing written if any fails.
    Inject(inject::InjectArgs),
    /// A git credential helper: `git config credential.helper '!keyway git-credential'`.
    GitCredential(git_credential::GitCredentialArgs),
    /// Validate or evaluate an Anyscale cloud IAM mapping spec.
    Iam(iam::IamArgs),
    /// Parse or evaluate a Kubernetes label selector (as Anyscale's IAM mapping rules use them).
    Selector(selector::SelectorArgs),
    /// Run the Kubernetes mutating admission webhook that delivers secrets into Pods (HTTPS).
    Webhook(webhook::WebhookArgs),
    /// Run the node-local daemon: one cache for every local caller, on a unix socket and optionally loopback TCP.
    Serve(serve::ServeArgs),
    /// Whether the node's daemon is ready (exit 0) or not (exit 5); --wait for init scripts, --live for probes.
    Status(status::StatusArgs),
    /// Print the shell completion script: `source <(keyway completion bash)`, or into the shell's completion
    /// directory (zsh: a file `_keyway` on $fpath; fish: ~/.config/fish/completions/keyway.fish).
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Whether the command delivers secret values on stdout (and so must not run into a closed one).
    fn delivers_to_stdout(&self) -> bool {
        match self {
            Command::Get(_) => true,
            Command::Inject(args) => args.to_stdout(),
            Command::GitCredential(args) => args.answers(),
            // Names, decisions and scripts: their reader's business, as with any Unix tool.
            Command::List(_)
            | Command::Iam(_)
            | Command::Selector(_)
            | Command::Completion { .. }
            | Command::Webhook(_)
            | Command::Exec(_)
            | Command::Render(_)
            | Command::Serve(_)
            | Command::Status(_) => false,
        }
    }
}

fn main() -> ExitCode {
    // Installed under the AWS agent's name (a symlink, as busybox is): the agent's command line.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|name| name == agent::AGENT_NAME)
    {
        return serve::run_as_agent(std::env::args_os().collect());
    }
    let cli = Cli::parse();
    let agent_log = match &cli.command {
        Command::Serve(args) => match args.agent_settings() {
            Ok(settings) => settings.map(|s| (s.log_level, s.log_to_file)),
            Err(e) => {
                init_logging(cli.verbose, None);
                return exit::report(&e);
            }
        },
        _ => None,
    };
    init_logging(cli.verbose, agent_log);
    if cli.command.delivers_to_stdout()
        && let Err(e) = exit::require_stdout()
    {
        return exit::report(&e);
    }
    match cli.command {
        Command::Selector(args) => return selector::run(args).unwrap_or_else(|e| exit::report(&e)),
        Command::Iam(args) => return iam::run(args).unwrap_or_else(|e| exit::report(&e)),
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            use std::io::Write as _;
            // Into memory first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keyway", &mut script);
            let mut out = std::io::stdout().lock();
            return match out.write_all(&script).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => exit::report(&anyhow::Error::new(e).context("cannot write to stdout")),
            };
        }
        _ => {}
    }
    // Socket activation's variables are read, and removed, before the runtime starts threads.
    let activated = match &cli.command {
        Command::Serve(_) => match serve::activated_sockets() {
            Ok(sockets) => sockets,
            Err(e) => return exit::report(&e),
        },
        _ => keyway_daemon::Activated::default(),
    };
    // Client commands: two workers. The daemon: one worker unless TOKIO_WORKER_THREADS says otherwise: a cached
    // read is answered from memory without waiting, so one worker serves them with the least CPU per request
    // (docs/benchmarks.md, "The daemon"), and upstream fetches are asynchronous, so they never hold it.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if !matches!(cli.command, Command::Serve(_) | Command::Webhook(_)) {
        builder.worker_threads(2);
    } else if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return exit::report(&anyhow::Error::new(e).context("cannot start the async runtime"));
        }
    };
    let result = runtime.block_on(async {
        let command = match cli.command {
            Command::Serve(args) => {
                return serve::run(
                    cli.config.as_deref(),
                    cli.local_dir,
                    cli.socket,
                    activated,
                    args,
                )
                .await;
            }
            Command::Webhook(args) => {
                return webhook::run(cli.config.as_deref(), args).await;
            }
            other => other,
        };
        let context =
            context::Context::load(cli.config.as_deref(), cli.local_dir, cli.daemon, cli.socket)?;
        match command {
            Command::Get(args) => get::run(&context, args).await,
            Command::List(args) => list::run(&context, args).await,
            Command::Exec(args) => exec::run(&context, args).await,
            Command::Render(args) => render::run(&context, args).await,
            Command::Inject(args) => inject::run(&context, args).await,
            Command::GitCredential(args) => git_credential::run(&context, args).await,
            Command::Status(args) => status::run(&context, args).await,
            Command::Serve(_)
            | Command::Webhook(_)
            | Command::Selector(_)
            | Command::Iam(_)
            | Command::Completion { .. } => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}

/// Logs go to stderr; with an AWS agent configuration (`agent`: its `log_level` and `log_to_file`), where the
/// agent writes them: `./logs/secrets_manager_agent.log` (appended), or stdout. Cloud SDK and HTTP crates are
/// held at `info` unless KEYWAY_LOG names them, because some log whole HTTP bodies at trace level, and a body can
/// hold a secret.
pub(crate) fn init_logging(verbose: u8, agent: Option<(agent::LogLevel, bool)>) {
    let ours = match (agent, verbose) {
        (Some((level, _)), 0) => level.directive(),
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = std::env::var("KEYWAY_LOG").unwrap_or_else(|_| {
        format!(
            "warn,aws_config=error,keyway={ours},keyway_core={ours},keyway_providers={ours},keyway_daemon={ours},keyway_client={ours}"
        )
    });
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    match agent {
        Some((_, true)) => {
            let file = std::fs::create_dir_all("logs").and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open("logs/secrets_manager_agent.log")
            });
            match file {
                Ok(file) => builder
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .init(),
                Err(e) => {
                    builder.with_writer(std::io::stderr).with_ansi(false).init();
                    tracing::warn!(error = %e, "cannot open logs/secrets_manager_agent.log; logging to stderr");
                }
            }
        }
        Some((_, false)) => builder.with_writer(std::io::stdout).with_ansi(false).init(),
        None => {
            // Colour only on a terminal: a file, journald or `kubectl logs` would show the escape codes as text.
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .init();
        }
    }
}

//! `keyway render`: fetch every reference first, then write each file (a value, or a template with values in
//! it) atomically (temporary file, fsync, rename, fsync of the directory) with the requested mode and owner.
//! All or nothing: if any reference fails, no file is written; every file is written beside its target before
//! any target is replaced, so a file that cannot be written leaves all targets as they were.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use keyway_core::template::{Placeholder, Template};
use keyway_core::{FileMode, SecretRef};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::atomic::{Owner, check_target, commit, create_parents, stage, write_atomically};
use crate::context::Context;
use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Directory to write into (created if missing). Best on tmpfs, so secrets never touch a disk.
    #[arg(long)]
    dir: PathBuf,
    /// File mode, octal. A mode others can read (e.g. 0644) is applied with a warning: prefer --uid/--gid.
    #[arg(long, default_value = "0400")]
    mode: FileMode,
    /// Owner uid of the files (needs privilege).
    #[arg(long)]
    uid: Option<u32>,
    /// Owner gid of the files (needs privilege).
    #[arg(long)]
    gid: Option<u32>,
    /// Keep running: re-fetch every INTERVAL (e.g. 5m) and replace files whose value changed, atomically (the
    /// webhook's refresh sidecar). A failed round keeps the files and is retried at the next interval.
    #[arg(long, value_name = "INTERVAL", value_parser = crate::exec::parse_interval)]
    watch: Option<std::time::Duration>,
    /// With --watch: run CMD after a round replaced files, e.g. 'nginx -s reload' or 'pkill -HUP -F
    /// /run/app.pid' (split into words as a shell would, run without one; no value is passed, KEYWAY_CHANGED
    /// names the files). Not run at the first render. A failure, or a run past 60 s (then killed), is logged and
    /// the watch goes on.
    #[arg(long, value_name = "CMD", requires = "watch", value_parser = parse_hook)]
    on_change: Option<Hook>,
    /// After rendering, copy this keyway binary to DIR/keyway (mode 0555), for app containers that wrap their
    /// command in `keyway exec` (the webhook's environment delivery).
    #[arg(long, value_name = "DIR")]
    install_self: Option<PathBuf>,
    /// NAME=FILE: write the template FILE to DIR/NAME with every `{{ REF }}` in it replaced by the value of REF
    /// (any other `{{ ... }}` is kept as text). Repeatable; rendered with the rest, all or nothing.
    #[arg(long = "template", value_name = "NAME=FILE")]
    templates: Vec<String>,
    /// NAME=TEXT: as --template, with the template's text itself (the webhook's `keyway.dev/template.<file>`).
    #[arg(long = "template-text", value_name = "NAME=TEXT")]
    template_texts: Vec<String>,
    /// NAME=REF: write the value of REF to DIR/NAME (NAME may hold `/` for subdirectories).
    #[arg(
        required_unless_present_any = ["install_self", "templates", "template_texts"],
        value_name = "NAME=REF"
    )]
    files: Vec<String>,
}

/// Copies the running executable to `dir/keyway` through a temporary file and a rename.
fn install_self(dir: &Path) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("cannot find the keyway executable")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = dir.join(".keyway.tmp");
    std::fs::copy(&me, &temporary)
        .with_context(|| format!("cannot copy {} to {}", me.display(), dir.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o555))
        .with_context(|| format!("cannot chmod {}", temporary.display()))?;
    std::fs::rename(&temporary, dir.join("keyway"))
        .with_context(|| format!("cannot install keyway into {}", dir.display()))?;
    Ok(())
}

/// An `--on-change` command, split into its words.
#[derive(Debug, Clone)]
pub struct Hook(Vec<String>);

fn parse_hook(text: &str) -> Result<Hook, String> {
    let words = shell_words::split(text)
        .map_err(|e| format!("`{text}` is not a command line ({e}); quote it as a shell would"))?;
    if words.is_empty() {
        return Err("the command is empty; give e.g. 'nginx -s reload'".to_owned());
    }
    Ok(Hook(words))
}

/// Whether `program` names an executable file, as `execvp` would find it: a path as given, or a name in PATH.
fn runnable(program: &str) -> bool {
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

/// How long an `--on-change` command may run before it is killed.
const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_mins(1);

impl Hook {
    /// Refuses a program that cannot be run, before anything is rendered (not while parsing the arguments, so
    /// that `--help` works wherever it runs).
    fn check(&self) -> Result<(), Usage> {
        let program = &self.0[0];
        if runnable(program) {
            return Ok(());
        }
        let where_ = if program.contains('/') {
            ""
        } else {
            " on PATH"
        };
        Err(Usage(format!(
            "--on-change: `{program}` is not an executable file{where_}; give its full path"
        )))
    }

    /// Runs the command for the files of `changed` (names under DIR) and logs how it ended; never fails the
    /// watch.
    async fn run(&self, changed: &[&Path]) {
        let names = changed
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let program = &self.0[0];
        let spawned = tokio::process::Command::new(program)
            .args(&self.0[1..])
            .env("KEYWAY_CHANGED", &names)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(command = %program, error = %e, "cannot run the --on-change command");
                return;
            }
        };
        match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                tracing::info!(command = %program, files = %names, "--on-change command done");
            }
            Ok(Ok(status)) => {
                tracing::warn!(command = %program, %status, "the --on-change command failed");
            }
            Ok(Err(e)) => {
                tracing::warn!(command = %program, error = %e, "cannot wait for the --on-change command");
            }
            Err(_) => {
                let _ = child.kill().await;
                tracing::warn!(command = %program, timeout_secs = HOOK_TIMEOUT.as_secs(), "the --on-change command ran too long and was killed");
            }
        }
    }
}

/// A NAME must stay inside DIR: relative, no `..`, no `.`, no empty parts.
fn check_name(name: &str) -> Result<PathBuf, Usage> {
    let path = Path::new(name);
    let ok = !name.is_empty()
        && !name.ends_with('/')
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if ok {
        Ok(path.to_owned())
    } else {
        Err(Usage(format!(
            "file name `{name}` would escape --dir; use a relative name without `..`, `.` or a leading `/`"
        )))
    }
}

/// What the files hold: each a reference's value or a template, over one list of distinct references.
#[derive(Default)]
struct Plan {
    names: Vec<PathBuf>,
    contents: Vec<Content>,
    references: Vec<SecretRef>,
    /// Where each reference is in `references`.
    index: std::collections::HashMap<SecretRef, usize>,
}

enum Content {
    /// The value of `references[i]`.
    Value(usize),
    /// A template, and for each of its references the place of that reference in `references`.
    Template(Template, Vec<usize>),
}

impl Plan {
    fn new(context: &Context, args: &RenderArgs) -> anyhow::Result<Self> {
        let mut plan = Self::default();
        for pair in &args.files {
            let (name, reference) =
                split_pair(pair, "REF", "github-token=aws-sm://ci/github#github_token")?;
            let value = plan.reference(context.parse_at(&format!("file {name}"), reference)?);
            plan.add(name, Content::Value(value))?;
        }
        for pair in &args.templates {
            let (name, file) = split_pair(pair, "FILE", "app.env=app.env.tpl")?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| Usage(format!("cannot read template {file}: {e}")))?;
            plan.add_template(context, name, &format!("template {file}"), &text)?;
        }
        for pair in &args.template_texts {
            let (name, text) = split_pair(pair, "TEXT", "app.env='TOKEN={{ aws-sm://ci/token }}'")?;
            plan.add_template(context, name, &format!("template of {name}"), text)?;
        }
        Ok(plan)
    }

    /// A template for DIR/`name`; `origin` names it in errors.
    fn add_template(
        &mut self,
        context: &Context,
        name: &str,
        origin: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let (template, references) = parse_template(context, origin, text)?;
        let at = references.into_iter().map(|r| self.reference(r)).collect();
        Ok(self.add(name, Content::Template(template, at))?)
    }

    fn reference(&mut self, reference: SecretRef) -> usize {
        let next = self.references.len();
        let i = *self.index.entry(reference.clone()).or_insert(next);
        if i == next {
            self.references.push(reference);
        }
        i
    }

    fn add(&mut self, name: &str, content: Content) -> Result<(), Usage> {
        let name = check_name(name)?;
        if self.names.contains(&name) {
            return Err(Usage(format!(
                "file name `{}` is given twice",
                name.display()
            )));
        }
        // `a` and `a/b` cannot both be files: one would have to be a directory.
        if let Some(other) = self
            .names
            .iter()
            .find(|other| other.starts_with(&name) || name.starts_with(other))
        {
            return Err(Usage(format!(
                "file names `{}` and `{}` clash: one would be the other's directory; rename one",
                other.display(),
                name.display()
            )));
        }
        self.names.push(name);
        self.contents.push(content);
        Ok(())
    }

    /// Every file's bytes, from the values of `references` in order.
    fn render(&self, values: &[keyway_core::Resolved]) -> Vec<Zeroizing<Vec<u8>>> {
        self.contents
            .iter()
            .map(|content| match content {
                Content::Value(i) => Zeroizing::new(values[*i].secret.value.expose().to_vec()),
                Content::Template(template, at) => {
                    template.fill(|i| values[at[i]].secret.value.expose())
                }
            })
            .collect()
    }
}

/// A template and its distinct references, parsed; an error names `origin` and the line.
pub fn parse_template(
    context: &Context,
    origin: &str,
    text: &str,
) -> anyhow::Result<(Template, Vec<SecretRef>)> {
    let template = Template::new(text).map_err(|e| Usage(format!("{origin}, {e}")))?;
    let references = template
        .references()
        .iter()
        .map(|Placeholder { reference, line }| {
            context.parse_at(&format!("{origin}, line {line}"), reference)
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((template, references))
}

fn split_pair<'a>(pair: &'a str, what: &str, example: &str) -> Result<(&'a str, &'a str), Usage> {
    pair.split_once('=').ok_or_else(|| {
        Usage(format!(
            "an argument is not NAME={what} (not shown: it may be a value); write e.g. {example}"
        ))
    })
}

pub async fn run(context: &Context, args: RenderArgs) -> anyhow::Result<()> {
    let plan = Plan::new(context, &args)?;
    if args.dir.exists() && !args.dir.is_dir() {
        return Err(Usage(format!(
            "--dir {} exists and is not a directory; remove it or choose another directory",
            args.dir.display()
        ))
        .into());
    }
    // Targets that could never be written are refused before anything is fetched (and checked again just
    // before the writes).
    for name in &plan.names {
        check_target(&args.dir, name)?;
    }
    if let Some(hook) = &args.on_change {
        hook.check()?;
    }
    if args.watch.is_some() {
        crate::context::keep_memory_private();
    }
    let values = context
        .resolve_all(&plan.references, keyway_core::Lookup::default())
        .await?;
    let mut current = plan.render(&values);
    drop(values);
    write_all(&args, &plan.names, &current)?;
    if let Some(dir) = &args.install_self {
        install_self(dir)?;
    }
    let Some(interval) = args.watch else {
        return Ok(());
    };
    loop {
        let Some(values) = crate::context::watch_round(context, &plan.references, interval).await
        else {
            continue;
        };
        let mut changed = Vec::new();
        for (i, (name, bytes)) in plan.names.iter().zip(plan.render(&values)).enumerate() {
            if bool::from(bytes.as_slice().ct_eq(current[i].as_slice())) {
                continue;
            }
            let path = args.dir.join(name);
            match write_atomically(&path, &bytes, args.mode, owner(&args)) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "new value rendered");
                    current[i] = bytes;
                    changed.push(name.as_path());
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot replace the file");
                }
            }
        }
        if let (Some(hook), false) = (&args.on_change, changed.is_empty()) {
            hook.run(&changed).await;
        }
    }
}

fn owner(args: &RenderArgs) -> Owner {
    Owner {
        uid: args.uid,
        gid: args.gid,
    }
}

/// Writes every file: targets checked first, then all staged, then all renamed into place.
fn write_all(
    args: &RenderArgs,
    names: &[PathBuf],
    contents: &[Zeroizing<Vec<u8>>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    warn_unless_tmpfs(&args.dir);
    if args.mode.others_read() {
        tell!(
            "keyway: warning: mode {} lets every user on this machine read the secrets; use 0400 with --uid, or 0440 with --gid for a group",
            args.mode
        );
    }
    let owner = owner(args);
    // Validate every target before writing any, so a bad path does not leave a half-rendered directory.
    for name in names {
        check_target(&args.dir, name)?;
    }
    // Every file is written beside its target first; only when all are written do they replace the targets,
    // so a failure (a full disk, a path that cannot be a directory) leaves every target as it was.
    let mut staged = Vec::with_capacity(names.len());
    let written = names.iter().zip(contents).try_for_each(|(name, bytes)| {
        let path = args.dir.join(name);
        if let Some(parent) = path.parent() {
            create_parents(&args.dir, parent, owner)?;
        }
        let temp = stage(&path, bytes, args.mode, owner)
            .with_context(|| format!("cannot write {}", path.display()))?;
        staged.push((temp, path));
        anyhow::Ok(())
    });
    if let Err(e) = written {
        for (temp, _) in &staged {
            let _ = std::fs::remove_file(temp);
        }
        return Err(e.context("nothing was replaced"));
    }
    for (i, (temp, path)) in staged.iter().enumerate() {
        if let Err(e) = commit(temp, path) {
            // The files not yet renamed hold values too: none may stay behind.
            for (later, _) in &staged[i + 1..] {
                let _ = std::fs::remove_file(later);
            }
            return Err(e).with_context(|| format!("cannot replace {}", path.display()));
        }
        tracing::info!(file = %path.display(), "rendered");
    }
    Ok(())
}

/// tmpfs and ramfs keep files in memory only.
fn warn_unless_tmpfs(dir: &Path) {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    if let Ok(stat) = rustix::fs::statfs(dir) {
        #[allow(clippy::useless_conversion)]
        let kind = i64::from(stat.f_type);
        if kind != TMPFS_MAGIC && kind != RAMFS_MAGIC {
            tell!(
                "keyway: warning: {} is not on tmpfs, so secrets are written to disk; mount a tmpfs (or a memory-backed emptyDir) there",
                dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The webhook's init container and refresh sidecar run what `keyway_inject::command` writes: this parser
    /// must read every part of it back.
    #[test]
    fn the_webhooks_render_line_parses_as_render_reads_it() {
        use clap::Parser as _;
        use keyway_inject::command::RenderCommand;

        let built = RenderCommand {
            program: "keyway".to_owned(),
            dir: "/keyway/secrets".to_owned(),
            mode: "0440".parse().unwrap(),
            owner: Some((2000, 3000)),
            install_self: Some("/keyway/bin".to_owned()),
            files: [
                ("github-token", "aws-sm://ci/github#github_token"),
                ("db", "gcp-sm://p/db?version=3"),
            ]
            .into_iter()
            .map(|(file, reference)| (file.to_owned(), reference.parse().unwrap()))
            .collect(),
            templates: [("app.env".to_owned(), "--x={{ local://a }}\nB=2".to_owned())].into(),
            watch: Some(std::time::Duration::from_mins(90)),
        };
        let cli = crate::Cli::try_parse_from(built.args()).unwrap();
        assert!(matches!(cli.daemon, crate::context::DaemonMode::Never));
        let crate::Command::Render(args) = cli.command else {
            panic!("not render: {:?}", cli.command);
        };
        assert_eq!(args.dir, Path::new("/keyway/secrets"));
        assert_eq!(args.mode, built.mode);
        assert_eq!((args.uid, args.gid), (Some(2000), Some(3000)));
        assert_eq!(args.install_self.as_deref(), Some(Path::new("/keyway/bin")));
        let written: Vec<String> = built
            .files
            .iter()
            .map(|(file, r)| format!("{file}={r}"))
            .collect();
        assert_eq!(args.files, written);
        let read: Vec<SecretRef> = args
            .files
            .iter()
            .map(|f| f.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(read, built.files.values().cloned().collect::<Vec<_>>());
        assert_eq!(args.template_texts, ["app.env=--x={{ local://a }}\nB=2"]);
        assert_eq!(args.watch, built.watch);
    }

    #[test]
    fn names_that_escape_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "",
            "a//b",
            "./a",
            "a/",
            "a/./b",
            "..",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["github-token", "group/key", ".hidden", "a.b/c..d"] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }
}

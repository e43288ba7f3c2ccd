//! `keyway git-credential`: git's credential helper protocol over stdin/stdout, so a private repository clones
//! without the token in a URL, a command line, `.git/config` or shell history.
//!
//! git runs `keyway git-credential get` with `key=value` lines (protocol, host, path, ...) and a blank line;
//! the helper answers `username=` and `password=` for the first `[[git.credentials]]` entry that matches, or
//! for the one entry `--host` and `--password` describe (no config file needed).
//! `store` is accepted and ignored: the secret store is the source of truth. git runs `erase` with the
//! credential the server just refused; when that is the one keyway gave from the daemon's cache (a token
//! rotated in the store since it was cached), the daemon fetches it again past its cache, so the next `get`
//! answers with the store's current token instead of the refused one until the TTL runs out.

use std::io::Write as _;

use anyhow::Context as _;
use keyway_config::git::GitCredential;
use zeroize::Zeroizing;

use crate::context::Context;
use crate::exit::Usage;

#[derive(Debug, clap::Args)]
pub struct GitCredentialArgs {
    /// get, store (ignored) or erase (a refused token from the daemon's cache is fetched again); git passes it.
    #[arg(default_value = "get")]
    action: String,
    /// Answer for this host only (`github.com`, or `host:port`), with --password, instead of the config's
    /// [[git.credentials]] entries: for an init script with no keyway.toml.
    #[arg(long, requires = "password")]
    host: Option<String>,
    /// The reference that yields the token for --host, e.g. aws-sm://ci/github#github_token.
    #[arg(long, requires = "host", value_name = "REF")]
    password: Option<String>,
    /// The username for --host (default x-access-token, which GitHub takes with any token).
    #[arg(long, requires = "host")]
    username: Option<String>,
    /// Only for repository paths under this prefix on --host (needs `credential.useHttpPath`).
    #[arg(long, requires = "host", value_name = "PREFIX")]
    path: Option<String>,
    /// The protocol git must be using for --host: https, or http for a server on a trusted network only
    /// (the token then travels in clear).
    #[arg(long, requires = "host", default_value = "https", value_parser = ["https", "http"])]
    protocol: String,
}

impl GitCredentialArgs {
    /// Whether git expects an answer on stdout (`get`).
    pub fn answers(&self) -> bool {
        self.action == "get"
    }

    /// The entries to answer from: the one the flags describe, or the config's.
    fn entries(&self, context: &Context) -> anyhow::Result<Vec<GitCredential>> {
        let (Some(host), Some(password)) = (&self.host, &self.password) else {
            return Ok(context.config.git.credentials.clone());
        };
        if host.is_empty() || host.contains(['/', '\n', ' ']) {
            return Err(Usage(format!(
                "--host `{host}` is not a host; give it as git reports it, e.g. github.com or git.example.com:8443"
            ))
            .into());
        }
        context.parse_at("--password", password)?;
        Ok(vec![GitCredential {
            host: host.clone(),
            path: self.path.clone(),
            protocol: Some(self.protocol.clone()),
            username: self
                .username
                .clone()
                .unwrap_or_else(keyway_config::git::default_git_user),
            password: password.clone(),
        }])
    }
}

#[derive(Default)]
struct Request {
    protocol: String,
    host: String,
    path: Option<String>,
    username: Option<String>,
    /// Only `erase` carries one: the credential the server refused.
    password: Option<Zeroizing<String>>,
}

fn read_request(input: impl std::io::BufRead) -> anyhow::Result<Request> {
    let mut request = Request::default();
    for line in input.lines() {
        // Zeroized: the `password=` line of an `erase` holds a token.
        let line = Zeroizing::new(line.context("cannot read the credential request from stdin")?);
        if line.is_empty() {
            break;
        }
        match line.split_once('=') {
            Some(("protocol", v)) => v.clone_into(&mut request.protocol),
            Some(("host", v)) => v.clone_into(&mut request.host),
            Some(("path", v)) => request.path = Some(v.to_owned()),
            Some(("username", v)) => request.username = Some(v.to_owned()),
            Some(("password", v)) => request.password = Some(Zeroizing::new(v.to_owned())),
            _ => {}
        }
    }
    Ok(request)
}

fn matches(entry: &GitCredential, request: &Request) -> bool {
    entry.protocol.as_deref().unwrap_or("https") == request.protocol
        && entry.host.eq_ignore_ascii_case(&request.host)
        && entry.path.as_deref().is_none_or(|prefix| {
            request.path.as_deref().is_some_and(|p| {
                p.trim_start_matches('/')
                    .starts_with(prefix.trim_start_matches('/'))
            })
        })
}

pub async fn run(context: &Context, args: GitCredentialArgs) -> anyhow::Result<()> {
    let entries = args.entries(context)?;
    match args.action.as_str() {
        "get" => {}
        "store" => {
            // Drain the request so git does not see a broken pipe.
            read_request(std::io::stdin().lock())?;
            return Ok(());
        }
        "erase" => {
            let request = read_request(std::io::stdin().lock())?;
            return erase(context, &entries, &request).await;
        }
        other => {
            return Err(Usage(format!(
                "unknown git credential action `{other}`; git passes get, store or erase"
            ))
            .into());
        }
    }
    let request = read_request(std::io::stdin().lock())?;
    let Some(entry) = entries.iter().find(|e| matches(e, &request)) else {
        tracing::info!(host = %request.host, "no [[git.credentials]] entry matches; git will try its other helpers");
        return Ok(());
    };
    let reference = context.parse(&entry.password)?;
    let resolved = context
        .resolve(&reference, keyway_core::Lookup::default())
        .await?;
    let password = std::str::from_utf8(resolved.secret.value.expose()).map_err(|_| {
        Usage(format!(
            "{reference} is not UTF-8 text, so it cannot be a git password"
        ))
    })?;
    if password.contains('\n') || password.contains('\0') {
        return Err(Usage(format!(
            "{reference} holds a newline or NUL, which git's credential protocol cannot carry"
        ))
        .into());
    }
    let mut answer = Zeroizing::new(String::with_capacity(
        password.len() + entry.username.len() + 64,
    ));
    answer.push_str("username=");
    answer.push_str(&entry.username);
    answer.push_str("\npassword=");
    answer.push_str(password);
    answer.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(answer.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    tracing::info!(host = %request.host, reference = %reference, "credential delivered to git");
    Ok(())
}

/// The server refused `request`'s credential. When keyway gave it from the daemon's cache, fetch it again past
/// the cache. Without the daemon every `get` already asks the store, so there is nothing to do.
async fn erase(
    context: &Context,
    entries: &[GitCredential],
    request: &Request,
) -> anyhow::Result<()> {
    let Some(daemon) = &context.daemon else {
        tracing::debug!(host = %request.host, "git reports a refused credential; without the daemon nothing was cached, so every get asks the store already");
        return Ok(());
    };
    let Some(refused) = &request.password else {
        return Ok(());
    };
    let Some(entry) = entries.iter().find(|e| matches(e, request)) else {
        return Ok(());
    };
    if request
        .username
        .as_deref()
        .is_some_and(|u| u != entry.username)
    {
        return Ok(());
    }
    let reference = context.parse(&entry.password)?.to_string();
    let cached = daemon
        .resolve(&reference, keyway_core::Lookup::default())
        .await?;
    if !cached.secret.value.ct_eq(refused.as_bytes()) {
        // Another helper's credential, or one the store has replaced already.
        return Ok(());
    }
    let lookup = keyway_core::Lookup {
        refresh_now: true,
        ..keyway_core::Lookup::default()
    };
    let current = daemon.resolve(&reference, lookup).await?;
    if current.secret.value.ct_eq(refused.as_bytes()) {
        tracing::warn!(
            host = %request.host,
            reference = %reference,
            "the server refused this credential and the store still holds it: rotate it there, or check what the token may access"
        );
    } else {
        tracing::info!(host = %request.host, reference = %reference, "the server refused a cached credential; the daemon now holds the store's current one");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, path: Option<&str>) -> GitCredential {
        GitCredential {
            host: host.into(),
            path: path.map(Into::into),
            protocol: None,
            username: "x-access-token".into(),
            password: "local://t".into(),
        }
    }

    #[test]
    fn request_parsing_and_matching() {
        let req = read_request(
            "protocol=https\nhost=GitHub.com\npath=org/repo.git\n\nignored=1\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (
                req.protocol.as_str(),
                req.host.as_str(),
                req.path.as_deref()
            ),
            ("https", "GitHub.com", Some("org/repo.git"))
        );
        assert!(matches(&entry("github.com", None), &req));
        assert!(matches(&entry("github.com", Some("org/")), &req));
        assert!(!matches(&entry("github.com", Some("other/")), &req));
        assert!(!matches(&entry("gitlab.com", None), &req));
        let http = read_request("protocol=http\nhost=github.com\n".as_bytes()).unwrap();
        assert!(!matches(&entry("github.com", None), &http));
    }
}

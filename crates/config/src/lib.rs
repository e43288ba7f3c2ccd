//! `keyway.toml`: one file, each section owned by the crate that uses it and composed here.
//!
//! | section | owner |
//! |---|---|
//! | `[providers.NAME]`, `[cache]` | `keyway-providers` ([`ProvidersConfig`]) |
//! | `[server]` | `keyway-daemon` ([`ServerSection`]) |
//! | `[git]` | this crate ([`git`]: the CLI's `keyway git-credential`, which has no crate of its own) |
//! | `[iam]`, `[workload]` | this crate ([`iam`]: the identity mapping, applied to the providers) |
//!
//! Relative paths in the file (a local store's `dir`, `file` and `age_identity`, `[iam] spec`, `[server] socket`,
//! token files, the audit log) are taken from the file's own directory, as kubeconfig does: one file names the same
//! paths whichever directory keyway runs in (git runs credential helpers in the repository, Ray workers in their
//! working_dir, a service in `/`).

pub mod git;
pub mod iam;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyway_daemon::ServerSection;
pub use keyway_providers::ConfigError;
use keyway_providers::config::{CacheSection, ProviderConfig, ProvidersConfig};
use serde::Deserialize;

use crate::git::GitSection;
use crate::iam::{IamSection, WorkloadSection};

/// The whole configuration file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[providers.NAME]` and `[cache]`, with the identity the mapping chose.
    pub providers: ProvidersConfig,
    /// `[server]`: the daemon (`keyway serve`).
    pub server: ServerSection,
    /// `[git]`: git credential mappings.
    pub git: GitSection,
    /// `[iam]`: the identity mapping (Anyscale's cloud IAM mapping), from a spec file or inline.
    pub iam: IamSection,
    /// `[workload]`: this workload's labels (`workload-type`, `project`, `user`), which the identity mapping and
    /// selector access rules evaluate.
    pub workload: WorkloadSection,
}

/// The file as written: each section as its owner reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Each table read by `ProviderConfig::from_table`, which names it in its errors.
    #[serde(default)]
    providers: BTreeMap<String, toml::Value>,
    #[serde(default)]
    cache: CacheSection,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    git: GitSection,
    #[serde(default)]
    iam: IamSection,
    #[serde(default)]
    workload: WorkloadSection,
}

impl Config {
    /// Reads and validates a config file, its relative paths taken from its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let file = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        config.anchor_paths(file.parent().unwrap_or(Path::new("/")))?;
        Ok(config)
    }

    /// Joins every relative path of the file to `base`, the file's directory.
    fn anchor_paths(&mut self, base: &Path) -> Result<(), ConfigError> {
        self.providers.anchor_paths(base);
        if let Some(spec) = self.iam.spec.as_mut()
            && spec.is_relative()
        {
            *spec = base.join(&*spec);
        }
        self.server.anchor_paths(base).map_err(ConfigError::Invalid)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: toml_message(&e, text),
        })?;
        let providers = file
            .providers
            .into_iter()
            .map(|(name, table)| Ok((name.clone(), ProviderConfig::from_table(&name, table)?)))
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        let config = Config {
            providers: ProvidersConfig {
                providers,
                cache: file.cache,
                ..ProvidersConfig::default()
            },
            server: file.server,
            git: file.git,
            iam: file.iam,
            workload: file.workload,
        };
        config.providers.validate()?;
        let instances = config.providers.instances()?;
        // Checked here, so that `serve --check` finds a token pasted in place of its reference, and no error
        // later prints it (a reference error quotes the reference; this one never quotes a value).
        for (i, entry) in config.git.credentials.iter().enumerate() {
            keyway_core::SecretRef::parse_with(&entry.password, &instances).map_err(|e| {
                ConfigError::Invalid(format!(
                    "[[git.credentials]] entry {} (host {}): password must be a reference to the token: {e}",
                    i + 1,
                    entry.host
                ))
            })?;
        }
        Ok(config)
    }
}

/// The TOML parser's complaint with its line and column, without what it quotes: toml prints the offending line
/// and serde the offending value, and a token pasted in place of its reference is a value
/// (`password = ghp_...`).
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = keyway_providers::config::unquoted(e.message());
    let Some(span) = e.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests;

//! `[git]`: the hosts `keyway git-credential` answers for, and the references of their tokens.

use serde::Deserialize;

/// `[git]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSection {
    /// Host to credential mappings, first match wins.
    #[serde(default)]
    pub credentials: Vec<GitCredential>,
}

/// One `[[git.credentials]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitCredential {
    /// Host as git reports it (`github.com`, or `host:port`).
    pub host: String,
    /// Optional path prefix (needs `credential.useHttpPath`).
    pub path: Option<String>,
    /// Protocol; `https` by default.
    pub protocol: Option<String>,
    /// Username, literal (GitHub accepts `x-access-token` for tokens).
    #[serde(default = "default_git_user")]
    pub username: String,
    /// Reference that yields the password or token.
    pub password: String,
}

/// The username of a `[[git.credentials]]` entry that names none: GitHub takes any with a token.
pub fn default_git_user() -> String {
    "x-access-token".to_owned()
}

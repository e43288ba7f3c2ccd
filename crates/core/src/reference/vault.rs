//! `vault://PATH[?version=N]`: a secret of a HashiCorp Vault or OpenBao KV engine (v1 or v2), by its path as
//! `vault kv get` takes it, the mount included (`secret/ci/github`). The provider asks the server which mount
//! the path is in and which KV version it runs, as the `vault` CLI does, so nested mounts need nothing more.

use super::Target;

pub(super) fn parse_vault(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let mut version = None;
    for (key, value) in query {
        match key.as_str() {
            "version" => {
                version = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| {
                            format!("Vault version `{value}` must be a positive number (KV v2)")
                        })?,
                );
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}` for Vault; use version=N (KV v2)"
                ));
            }
        }
    }
    let path = path.trim_matches('/');
    if !path.contains('/') {
        return Err(
            "a Vault path names the mount and the secret: MOUNT/PATH (`secret/ci/github`)".into(),
        );
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("a Vault path has no empty, `.` or `..` segments".into());
        }
    }
    if let Some(c) = path.chars().find(|c| matches!(c, '\\' | '%' | '"')) {
        return Err(format!("a Vault path may not hold {c:?}"));
    }
    Ok(Target::Vault {
        path: path.to_owned(),
        version,
    })
}

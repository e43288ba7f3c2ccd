//! Listing: a KV tree walked folder by folder (`LIST`), under a prefix or in every KV mount the token can see.

use keyway_core::reference::BackendKind;
use keyway_core::{ListFilter, ProviderError};
use serde::Deserialize;

use super::{Mount, VaultProvider, bad_answer, denied, vault_error};

/// How many names a listing returns at most: a KV tree is walked folder by folder, one request each.
const MAX_LISTED: usize = 10_000;

/// A LIST answer.
#[derive(Deserialize)]
struct Listing {
    data: Keys,
}

#[derive(Deserialize)]
struct Keys {
    #[serde(default)]
    keys: Vec<String>,
}

/// `sys/internal/ui/mounts`: the mounts the token can see.
#[derive(Deserialize)]
struct MountsAnswer {
    data: Mounts,
}
#[derive(Deserialize)]
struct Mounts {
    #[serde(default)]
    secret: std::collections::BTreeMap<String, MountInfo>,
}
#[derive(Deserialize)]
struct MountInfo {
    #[serde(default, rename = "type")]
    kind: String,
    options: Option<std::collections::BTreeMap<String, String>>,
}

fn list_method() -> reqwest::Method {
    reqwest::Method::from_bytes(b"LIST").unwrap_or(reqwest::Method::GET)
}

impl VaultProvider {
    /// Names under a prefix (`MOUNT/PATH/...`), or in every KV mount the token can see.
    pub(super) async fn names(
        &self,
        filter: Option<&ListFilter>,
    ) -> Result<Vec<String>, ProviderError> {
        let prefix = match filter {
            None => None,
            Some(ListFilter::Prefix(prefix)) => Some(prefix.trim_start_matches('/')),
            Some(other) => return Err(other.not_for(BackendKind::Vault)),
        };
        let mut names = Vec::new();
        match prefix.filter(|p| !p.is_empty()) {
            Some(prefix) => {
                let mount = self.mount(prefix).await?;
                let inside = &prefix[mount.path.len().min(prefix.len())..];
                let folder = inside.rfind('/').map_or("", |at| &inside[..=at]);
                self.walk(&mount, folder, &mut names).await?;
                names.retain(|name| name.starts_with(prefix));
            }
            None => {
                for mount in self.kv_mounts().await? {
                    self.walk(&mount, "", &mut names).await?;
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every name under `folder` (relative to the mount, ending in `/` or empty), walked depth first.
    async fn walk(
        &self,
        mount: &Mount,
        folder: &str,
        names: &mut Vec<String>,
    ) -> Result<(), ProviderError> {
        let mut folders = vec![folder.to_owned()];
        while let Some(folder) = folders.pop() {
            let path = if mount.v2 {
                format!("{}metadata/{folder}", mount.path)
            } else {
                format!("{}{folder}", mount.path)
            };
            let (status, body) = self.send(list_method(), &path).await?;
            match status.as_u16() {
                200 => {}
                404 => continue,
                403 => {
                    return Err(denied(&format!("list {path}"), &path, "list", &body));
                }
                _ => return Err(vault_error(status, &body, &format!("listing {path}"))),
            }
            let listing: Listing = serde_json::from_str(&body).map_err(|_| bad_answer(&path))?;
            for key in listing.data.keys {
                if key.ends_with('/') {
                    folders.push(format!("{folder}{key}"));
                } else if names.len() < MAX_LISTED {
                    names.push(format!("{}{folder}{key}", mount.path));
                }
            }
        }
        Ok(())
    }

    /// The KV mounts the token can see (`sys/internal/ui/mounts`).
    async fn kv_mounts(&self) -> Result<Vec<Mount>, ProviderError> {
        let (status, body) = self
            .send(reqwest::Method::GET, "sys/internal/ui/mounts")
            .await?;
        if !status.is_success() {
            return Err(vault_error(status, &body, "listing the mounts"));
        }
        let answer: MountsAnswer =
            serde_json::from_str(&body).map_err(|_| bad_answer("sys/internal/ui/mounts"))?;
        Ok(answer
            .data
            .secret
            .into_iter()
            .filter(|(_, info)| info.kind == "kv")
            .map(|(path, info)| Mount {
                path,
                v2: info
                    .options
                    .and_then(|o| o.get("version").cloned())
                    .as_deref()
                    == Some("2"),
            })
            .collect())
    }
}

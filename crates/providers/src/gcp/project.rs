//! The GCP project Google's client libraries name when nothing else does (`google.auth.default()`'s second
//! value, and what `gcloud` uses), so that `gcp-sm://SECRET` reads from it as they would. The same sources in
//! the same order:
//!
//! 1. `GOOGLE_CLOUD_PROJECT` (or the legacy `GCLOUD_PROJECT`);
//! 2. the file `GOOGLE_APPLICATION_CREDENTIALS` names: a service account key's `project_id` (other kinds name no
//!    project, and the search stops there, as Google's does);
//! 3. gcloud's application default credentials (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`): the file's
//!    `project_id`, else `gcloud config get project`;
//! 4. the Compute Engine metadata server (`GCE_METADATA_IP` / `GCE_METADATA_HOST` override its address), when
//!    it answers as Google's does: on GCE and GKE, the instance's project.
//!
//! `tests/python/test_gcp_project.py` checks each against `google.auth.default()` in the same environment (the
//! Python package's `keyway._gcp` asks this module).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Google pings the metadata server with a 3 s timeout; an address that is not routed waits that long.
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);
const GCLOUD_TIMEOUT: Duration = Duration::from_secs(30);

/// The project, or `None` when no source names one.
pub async fn default_project() -> Option<String> {
    // As google-auth reads them: GCLOUD_PROJECT only when GOOGLE_CLOUD_PROJECT is unset; an empty value
    // names nothing and the search goes on.
    let explicit = std::env::var("GOOGLE_CLOUD_PROJECT")
        .or_else(|_| std::env::var("GCLOUD_PROJECT"))
        .ok()
        .filter(|p| !p.is_empty());
    if explicit.is_some() {
        return explicit;
    }
    let gcloud_adc =
        gcloud_config_dir().map(|dir| dir.join("application_default_credentials.json"));
    if let Some(named) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        let named = PathBuf::from(named);
        if gcloud_adc.as_ref() != Some(&named) {
            return project_of_key_file(&named);
        }
    }
    if let Some(adc) = gcloud_adc.filter(|f| f.is_file()) {
        return match project_of_key_file(&adc) {
            Some(project) => Some(project),
            None => gcloud_project().await,
        };
    }
    metadata_project().await
}

fn gcloud_config_dir() -> Option<PathBuf> {
    match std::env::var_os("CLOUDSDK_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => std::env::home_dir().map(|home| home.join(".config/gcloud")),
    }
}

/// The fields of a credentials file this module reads; the rest (a private key, a refresh token) is skipped
/// by the parser, never copied out of the zeroized buffer the file is read into.
#[derive(serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: Option<String>,
    project: Option<String>,
}

/// A service account key's `project_id` (a GDCH one's `project`); `None` for any other file.
fn project_of_key_file(path: &Path) -> Option<String> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).ok()?);
    let key: KeyFile = serde_json::from_slice(&bytes).ok()?;
    match key.kind.as_deref()? {
        "service_account" => key.project_id,
        "gdch_service_account" => key.project,
        _ => None,
    }
    .filter(|p| !p.is_empty())
}

async fn gcloud_project() -> Option<String> {
    let run = tokio::process::Command::new("gcloud")
        .args(["config", "get", "project"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GCLOUD_TIMEOUT, run).await.ok()?.ok()?;
    if !out.status.success() {
        return None;
    }
    let project = String::from_utf8(out.stdout).ok()?;
    Some(project.trim().to_owned()).filter(|p| !p.is_empty())
}

async fn metadata_project() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let ip = var("GCE_METADATA_IP").unwrap_or_else(|| "169.254.169.254".to_owned());
    let host = var("GCE_METADATA_HOST")
        .or_else(|| var("GCE_METADATA_ROOT"))
        .unwrap_or_else(|| "metadata.google.internal".to_owned());
    crate::tls::install();
    let http = reqwest::Client::builder()
        .timeout(METADATA_TIMEOUT)
        .no_proxy()
        .build()
        .ok()?;
    metadata_get(&http, &format!("http://{ip}")).await?;
    metadata_get(
        &http,
        &format!("http://{host}/computeMetadata/v1/project/project-id"),
    )
    .await
    .filter(|p| !p.is_empty())
}

/// The body, if the server answered 200 as Google's metadata server does (its flavor header).
async fn metadata_get(http: &reqwest::Client, url: &str) -> Option<String> {
    let reply = http
        .get(url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .ok()?;
    let google = reply
        .headers()
        .get("Metadata-Flavor")
        .is_some_and(|v| v == "Google");
    if reply.status() != reqwest::StatusCode::OK || !google {
        return None;
    }
    Some(reply.text().await.ok()?.trim().to_owned())
}

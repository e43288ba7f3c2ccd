//! Secrets into Kubernetes Pods: the mutation behind `keyway webhook`, as a pure function
//! ([`mutate`]: `AdmissionRequest<Pod>` and an [`InjectConfig`] in, `AdmissionResponse` out), tested without a
//! server.
//!
//! A Pod asks with annotations (`docs/webhook.md`):
//! - `keyway.dev/inject: "true"`
//! - `keyway.dev/secret.<file>: <reference>`: the value lands in `<dir>/<file>`
//! - `keyway.dev/template.<file>: <text>`: the text, with each `{{ <reference> }}` replaced by its value, lands in
//!   `<dir>/<file>`
//! - `keyway.dev/mode: "0400"`, `keyway.dev/owner: "uid:gid"`, `keyway.dev/dir: "/keyway/secrets"`
//!
//! The patch adds one memory-backed `emptyDir`, **one** init container that runs `keyway render` for all the
//! Pod's secrets (concurrently, all or nothing, non-zero exit on any failure), and a read-only mount of the
//! volume into every container. The mutated Pod is computed first and the RFC 6902 patch is the difference,
//! so mutating an already mutated Pod yields an empty patch, and fields Keyway does not know are untouched.

pub mod annotations;
pub mod command;
pub mod flyte;
mod identity;
pub mod pod;
pub mod resources;
mod review;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use keyway_core::mapping::Mapping;
use keyway_core::{FileMode, Instances};
use kube_core::admission::{AdmissionRequest, AdmissionResponse};

pub use annotations::{Ask, read_annotations};
pub use identity::service_account;
pub use pod::mutate_pod;
pub use resources::Resources;
pub use review::{read_review, review_json};

/// Annotation prefix of every Keyway annotation.
pub const PREFIX: &str = "keyway.dev/";
/// Name of the volume the secrets live in.
pub const VOLUME: &str = "keyway-secrets";
/// Name of the init container.
pub const INIT_CONTAINER: &str = "keyway-render";
/// Name of the refresh sidecar (a native sidecar: an init container with `restartPolicy: Always`).
pub const REFRESH_CONTAINER: &str = "keyway-refresh";
/// Where the init container installs the keyway binary for `keyway exec` wrappers.
pub const BIN_DIR: &str = "/keyway/bin";
/// The volume holding it.
pub const BIN_VOLUME: &str = "keyway-bin";

/// The image the added containers run: Keyway's own, at this build's version. Its repository is the Helm
/// chart's `image.repository` (`deploy/chart/keyway/values.yaml`), the one place the name is set;
/// `scripts/image.sh` tags what it builds with it, and a test holds the two equal.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/keyway-dev/keyway:", env!("CARGO_PKG_VERSION"));

/// How the webhook mutates Pods.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    /// The image holding the `keyway` binary.
    pub image: String,
    /// Default mount path of the secrets volume.
    pub dir: String,
    /// Default file mode.
    pub mode: FileMode,
    /// Provider instances references may name (references to others are denied at admission).
    pub instances: Instances,
    /// Serve Flyte's requests (`inject-flyte-secrets` Pods) from this backend; `None` leaves them alone.
    pub flyte: Option<flyte::FlyteBackend>,
    /// An identity mapping with `compute_stack: K8S`: the Pod's labels choose its service account.
    pub mapping: Option<Mapping>,
    /// The Pod label holding each mapping key (`workload-type`, `project`, `user`); keys absent here are read
    /// from the label of the same name.
    pub label_names: BTreeMap<String, String>,
    /// The added containers' resources replacing [`Resources::default_amounts`] for every Pod (a Pod's own
    /// annotations still win).
    pub resources: Resources,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            image: DEFAULT_IMAGE.to_owned(),
            dir: "/keyway/secrets".to_owned(),
            mode: FileMode::new(0o400).unwrap_or_else(|| unreachable!("0400 is a file mode")),
            instances: Instances::default(),
            flyte: None,
            mapping: None,
            label_names: BTreeMap::new(),
            resources: Resources::default(),
        }
    }
}

/// Why a Pod is refused; the message names the annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denial(pub String);

/// The webhook's answer to one AdmissionRequest for a Pod.
pub fn mutate(request: &AdmissionRequest<Pod>, config: &InjectConfig) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(pod) = request.object.as_ref() else {
        return response;
    };
    // A Pod being created may carry no namespace yet; the review names the one it is created in.
    let with_namespace;
    let pod = match (&pod.metadata.namespace, &request.namespace) {
        (None, Some(namespace)) => {
            let mut named = pod.clone();
            named.metadata.namespace = Some(namespace.clone());
            with_namespace = named;
            &with_namespace
        }
        _ => pod,
    };
    let account = match service_account(pod, config) {
        Ok(account) => account,
        Err(denial) => return response.deny(denial.0),
    };
    let ask = match read_annotations(pod, config) {
        Ok(ask) => ask,
        Err(denial) => return response.deny(denial.0),
    };
    if ask.is_none() && account.is_none() {
        return response;
    }
    let (mut mutated, warnings) = match &ask {
        Some(ask) => mutate_pod(pod, ask, config),
        None => (pod.clone(), Vec::new()),
    };
    if let Some(account) = account {
        mutated
            .spec
            .get_or_insert_with(PodSpec::default)
            .service_account_name = Some(account);
    }
    let (Ok(before), Ok(after)) = (serde_json::to_value(pod), serde_json::to_value(&mutated))
    else {
        return response.deny("keyway: cannot encode the Pod");
    };
    let patch = json_patch::diff(&before, &after);
    let mut response = match response.with_patch(patch) {
        Ok(r) => r,
        Err(e) => {
            return AdmissionResponse::invalid(format!("keyway: cannot encode the patch: {e}"));
        }
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

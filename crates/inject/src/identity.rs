//! The service account an identity mapping (`compute_stack: K8S`) chooses from a Pod's labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use keyway_core::mapping::Decision;

use crate::{Denial, InjectConfig};

/// The service account the identity mapping chooses for a Pod: `Ok(None)` when there is no mapping or it
/// falls back to the cloud default; a denial for `FAIL` with no match, or for an explicit
/// `serviceAccountName` that disagrees with the mapping.
pub fn service_account(pod: &Pod, config: &InjectConfig) -> Result<Option<String>, Denial> {
    let Some(mapping) = &config.mapping else {
        return Ok(None);
    };
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = ["workload-type", "project", "user"]
        .into_iter()
        .filter_map(|key| {
            let label = config.label_names.get(key).map_or(key, String::as_str);
            pod_labels.get(label).map(|v| (key.to_owned(), v.clone()))
        })
        .collect();
    let shown = || {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if pairs.is_empty() {
            "(none)".to_owned()
        } else {
            pairs.join(",")
        }
    };
    match mapping.resolve(&labels) {
        Decision::CloudDefault => Ok(None),
        Decision::Fail => Err(Denial(format!(
            "keyway: no identity mapping rule matches this Pod's labels {} and fallback_rule is FAIL; rules tried: {}",
            shown(),
            mapping.rules_tried()
        ))),
        Decision::Rule { index, value } => {
            let explicit = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .filter(|name| !name.is_empty() && *name != "default");
            match explicit {
                Some(name) if name != value => Err(Denial(format!(
                    "keyway: serviceAccountName `{name}` disagrees with the identity mapping, which chooses `{value}` for labels {} (rule {}); remove serviceAccountName or fix the rule",
                    shown(),
                    index + 1
                ))),
                _ => Ok(Some(value)),
            }
        }
    }
}

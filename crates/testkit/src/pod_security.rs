//! Kubernetes' Pod Security Standards, as a check of a Pod spec: for the webhook's mutation and the shipped
//! manifests. Written here from the standard's published rules (no crate implements them; Kubernetes' own is Go).

use serde_json::{Value, json};

/// What Kubernetes' `restricted` Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards)
/// finds wrong with a Pod spec (a Pod's `spec`, or a workload's `spec.template.spec`): its volume types, and
/// for every container (init and sidecar ones too) privilege escalation, running as root, seccomp and
/// capabilities, each either on the container or inherited from the Pod.
pub fn restricted_violations(spec: &Value) -> Vec<String> {
    let pod_context = &spec["securityContext"];
    let mut found = Vec::new();
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let allowed = [
            "configMap",
            "csi",
            "downwardAPI",
            "emptyDir",
            "ephemeral",
            "persistentVolumeClaim",
            "projected",
            "secret",
        ];
        let keys = volume.as_object().into_iter().flat_map(|v| v.keys());
        if !keys
            .into_iter()
            .all(|k| k == "name" || allowed.contains(&k.as_str()))
        {
            found.push(format!("volume {}: type not allowed", volume["name"]));
        }
    }
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|kind| spec[kind].as_array().into_iter().flatten());
    for container in containers {
        let name = &container["name"];
        let context = &container["securityContext"];
        let either = |field: &str| {
            let own = &context[field];
            if own.is_null() {
                &pod_context[field]
            } else {
                own
            }
        };
        if context["allowPrivilegeEscalation"] != json!(false) {
            found.push(format!("{name}: allowPrivilegeEscalation != false"));
        }
        if either("runAsNonRoot") != &json!(true) {
            found.push(format!("{name}: runAsNonRoot != true"));
        }
        if either("runAsUser") == &json!(0) {
            found.push(format!("{name}: runAsUser = 0"));
        }
        if !["RuntimeDefault", "Localhost"]
            .contains(&either("seccompProfile")["type"].as_str().unwrap_or(""))
        {
            found.push(format!(
                "{name}: seccompProfile not RuntimeDefault or Localhost"
            ));
        }
        let capabilities = &context["capabilities"];
        if !capabilities["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("ALL")))
        {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        for added in capabilities["add"].as_array().into_iter().flatten() {
            if added != "NET_BIND_SERVICE" {
                found.push(format!("{name}: adds capability {added}"));
            }
        }
    }
    found
}

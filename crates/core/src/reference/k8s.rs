//! `k8s://[NAMESPACE/]NAME#KEY`: a key of a Kubernetes Secret (its decoded `data` entry), in the namespace given
//! or the instance's (the Pod's own, in a cluster). The key is the reference's field.

use super::Target;
use crate::selector::{dns1123_label, dns1123_subdomain};

pub(super) fn parse_k8s(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    if let Some((key, _)) = query.first() {
        return Err(format!(
            "a Kubernetes Secret has no versions; drop `?{key}=...`"
        ));
    }
    let (namespace, name) = match path.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, path),
    };
    if let Some(namespace) = namespace {
        dns1123_label(namespace).map_err(|why| format!("namespace `{namespace}` {why}"))?;
    }
    dns1123_subdomain(name).map_err(|why| format!("Secret name `{name}` {why}"))?;
    Ok(Target::K8s {
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    })
}

//! Anyscale's cloud IAM mapping: `[iam]` and `[workload]`, the spec ([`spec`]: Anyscale's cloud config YAML or
//! `keyway.toml`'s inline `[iam]`, read and checked), and the workload's decision applied to the providers
//! ([`apply_mapping`]).

pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;

use keyway_core::mapping::{Cloud, Mapping, Stack};
use keyway_providers::aws::{AssumeRole, RoleSource};
use serde::Deserialize;

pub use spec::{Problem, RawSpec, SpecReport, check, read_spec};

/// `[iam]`: `spec = "cloud-config.yaml"` (Anyscale's YAML), or the same rules inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamSection {
    /// An Anyscale cloud config YAML file.
    pub spec: Option<PathBuf>,
    /// `AWS`, `GCP` or `AZURE` (inline form).
    pub cloud_provider: Option<String>,
    /// `VM` or `K8S` (inline form).
    pub compute_stack: Option<String>,
    /// `CLOUD_DEFAULT` or `FAIL` (inline form).
    pub fallback_rule: Option<String>,
    /// Rules in order (inline form).
    #[serde(default)]
    pub rules: Vec<IamRule>,
}

/// One inline `[[iam.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamRule {
    /// A selector in Anyscale's dialect.
    pub selector: String,
    /// The identity.
    pub value: String,
}

/// `[workload]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// Label key to value: `workload-type`, `project`, `user`, which the identity mapping and selector access
    /// rules evaluate.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The `[iam]` mapping of a config: from its spec file, from the inline rules, or none.
pub fn load_mapping(config: &crate::Config) -> Result<Option<Mapping>, crate::ConfigError> {
    use crate::ConfigError::Invalid;
    let iam = &config.iam;
    let inline = iam.cloud_provider.is_some()
        || iam.compute_stack.is_some()
        || iam.fallback_rule.is_some()
        || !iam.rules.is_empty();
    let (raw, source) = match (&iam.spec, inline) {
        (Some(_), true) => {
            return Err(Invalid(
                "[iam]: give `spec` or the inline rules, not both".into(),
            ));
        }
        (Some(path), false) => (
            spec::parse(&std::fs::read_to_string(path).map_err(|e| {
                Invalid(format!("[iam] spec {}: cannot read: {e}", path.display()))
            })?),
            path.display().to_string(),
        ),
        (None, true) => (inline_spec(iam), "[iam] in keyway.toml".to_owned()),
        (None, false) => return Ok(None),
    };
    check(raw).into_mapping(&source).map(Some).map_err(Invalid)
}

/// The inline `[iam]` form as the spec it stands for: `fallback_rule` and the rules are
/// `dataplane_iam_mapping`'s.
fn inline_spec(iam: &IamSection) -> RawSpec {
    RawSpec {
        cloud_provider: iam.cloud_provider.as_deref().map(spec::Located::new),
        compute_stack: iam.compute_stack.as_deref().map(spec::Located::new),
        mapping: Some(spec::RawMapping {
            rules: iam
                .rules
                .iter()
                .map(|rule| spec::RawRule {
                    selector: Some(rule.selector.clone()),
                    value: Some(spec::Located::new(rule.value.clone())),
                    ..spec::RawRule::default()
                })
                .collect(),
            fallback_rule: iam.fallback_rule.as_deref().map(spec::Located::new),
            ..spec::RawMapping::default()
        }),
        ..RawSpec::default()
    }
}

/// `RoleSessionName` for a workload: `keyway-<workload-type>-<project>`, in STS's alphabet, at most 64.
pub fn session_name(labels: &BTreeMap<String, String>) -> String {
    let mut name = String::from("keyway");
    for key in ["workload-type", "project"] {
        if let Some(v) = labels.get(key) {
            name.push('-');
            name.push_str(v);
        }
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// Resolves the mapping for this workload's labels and applies the choice to `config`: a role for the AWS
/// instances (VM), nothing for `CLOUD_DEFAULT`, nothing here for Kubernetes service accounts (the webhook
/// sets them on Pods), a service account the GCP instances impersonate. `FAIL` with no match is an error that
/// names the labels and the rules tried.
/// Returns the decision and its mapping, when there is one.
pub fn apply_mapping(
    config: &mut crate::Config,
    labels: &BTreeMap<String, String>,
) -> Result<Option<(keyway_core::mapping::Decision, Mapping)>, crate::ConfigError> {
    use keyway_core::mapping::Decision;
    let Some(mapping) = load_mapping(config)? else {
        return Ok(None);
    };
    let decision = mapping.resolve(labels);
    let shown = || {
        if labels.is_empty() {
            "(none)".to_owned()
        } else {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    match (&decision, mapping.cloud, mapping.stack) {
        (Decision::Fail, ..) => {
            return Err(crate::ConfigError::Invalid(format!(
                "no [iam] rule matches this workload's labels {} and fallback_rule is FAIL, so Keyway refuses to start; rules tried: {}. Set the labels (--label, KEYWAY_WORKLOAD_LABELS or [workload] labels) or add a rule",
                shown(),
                mapping.rules_tried()
            )));
        }
        (Decision::Rule { value, .. }, Cloud::Aws, Stack::Vm) => {
            config.providers.identity.aws_assume = Some(AssumeRole {
                role: RoleSource::from_value(value),
                session_name: session_name(labels),
            });
        }
        (Decision::Rule { value, .. }, Cloud::Gcp, Stack::Vm) => {
            config.providers.identity.gcp_impersonate = Some(value.clone());
        }
        (Decision::CloudDefault | Decision::Rule { .. }, ..) => {}
    }
    Ok(Some((decision, mapping)))
}

//! Anyscale's cloud config YAML (`anyscale cloud config get --spec-file`), read for its
//! `dataplane_iam_mapping`: every problem is reported with its line, other top-level keys are kept and ignored.

use keyway_core::mapping::{Cloud, Fallback, Mapping, MappingRule, Stack};

use keyway_core::selector::{Mode, Selector};
use serde_norway::Value;

/// One finding of [`read_spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when it can be placed.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
    /// Warnings (a rule that can never match) do not make the spec invalid.
    pub warning: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.warning { "warning" } else { "error" };
        match self.line {
            Some(line) => write!(f, "line {line}: {level}: {}", self.message),
            None => write!(f, "{level}: {}", self.message),
        }
    }
}

/// The mapping (when the spec is usable) and every problem found.
#[derive(Debug, Clone)]
pub struct SpecReport {
    /// Present when there are no errors.
    pub mapping: Option<Mapping>,
    /// Errors and warnings, in file order.
    pub problems: Vec<Problem>,
}

impl SpecReport {
    /// The mapping, or the first error as one line naming `source`, for callers that need a usable spec.
    pub fn into_mapping(self, source: &str) -> Result<Mapping, String> {
        if let Some(mapping) = self.mapping {
            return Ok(mapping);
        }
        let first = self
            .problems
            .iter()
            .find(|p| !p.warning)
            .map_or_else(String::new, ToString::to_string);
        Err(format!(
            "{source}: {first}; `keyway iam validate` lists every problem"
        ))
    }
}

/// Lines (1-based) whose first key is `key`, in order.
fn key_lines(text: &str, key: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// Reads and checks a spec.
#[allow(
    clippy::too_many_lines,
    reason = "one linear pass over the sections; split it when the inline keyway.toml form arrives"
)]
pub fn read_spec(text: &str) -> SpecReport {
    let mut problems = Vec::new();
    let mut error = |line: Option<usize>, message: String| {
        problems.push(Problem {
            line,
            message,
            warning: false,
        });
    };
    let root: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            error(
                e.location().map(|l| l.line()),
                format!("not valid YAML: {e}"),
            );
            return SpecReport {
                mapping: None,
                problems,
            };
        }
    };
    let first_line = |key: &str| key_lines(text, key).first().copied();
    let cloud = match root.get("cloud_provider").and_then(Value::as_str) {
        Some("AWS") => Some(Cloud::Aws),
        Some("GCP") => Some(Cloud::Gcp),
        other => {
            error(
                first_line("cloud_provider"),
                format!("cloud_provider is {other:?}; write AWS or GCP"),
            );
            None
        }
    };
    let stack = match root.get("compute_stack").and_then(Value::as_str) {
        Some("VM") | None => Some(Stack::Vm),
        Some("K8S") => Some(Stack::K8s),
        Some(other) => {
            error(
                first_line("compute_stack"),
                format!("compute_stack is `{other}`; write VM or K8S"),
            );
            None
        }
    };
    let Some(section) = root.get("dataplane_iam_mapping") else {
        error(None, "no dataplane_iam_mapping section".into());
        return SpecReport {
            mapping: None,
            problems,
        };
    };
    if let Some(map) = section.as_mapping() {
        for key in map.keys().filter_map(Value::as_str) {
            if key != "rules" && key != "fallback_rule" {
                error(
                    first_line(key),
                    format!(
                        "unknown key `{key}` in dataplane_iam_mapping; expected rules and fallback_rule"
                    ),
                );
            }
        }
    }
    let fallback = match section.get("fallback_rule").and_then(Value::as_str) {
        Some("CLOUD_DEFAULT") => Some(Fallback::CloudDefault),
        Some("FAIL") => Some(Fallback::Fail),
        Some(other) => {
            error(
                first_line("fallback_rule"),
                format!("fallback_rule `{other}` is unknown; write CLOUD_DEFAULT or FAIL"),
            );
            None
        }
        None => {
            error(
                first_line("dataplane_iam_mapping"),
                "fallback_rule is missing; write CLOUD_DEFAULT (use the cloud's default identity) or FAIL (refuse to start)".into(),
            );
            None
        }
    };
    let selector_lines = key_lines(text, "selector");
    let rule_values = section
        .get("rules")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let mut rules = Vec::new();
    // Index in the file of each parsed rule, for line numbers and messages.
    let mut origins = Vec::new();
    for (i, rule) in rule_values.iter().enumerate() {
        let line = selector_lines.get(i).copied();
        if let Some(map) = rule.as_mapping() {
            for key in map.keys().filter_map(Value::as_str) {
                if key != "selector" && key != "value" {
                    error(
                        line,
                        format!(
                            "rule {}: unknown key `{key}`; a rule has selector and value",
                            i + 1
                        ),
                    );
                }
            }
        }
        let selector_text = rule.get("selector").and_then(Value::as_str);
        let value = rule.get("value").and_then(Value::as_str);
        let (Some(selector_text), Some(value)) = (selector_text, value) else {
            error(
                line,
                format!("rule {}: needs a selector and a value (strings)", i + 1),
            );
            continue;
        };
        match Selector::parse_with(selector_text, Mode::Anyscale) {
            Ok(selector) => {
                origins.push(i);
                rules.push(MappingRule {
                    text: selector_text.to_owned(),
                    selector,
                    value: value.to_owned(),
                });
            }
            Err(e) => error(line, format!("rule {}: {e}", i + 1)),
        }
    }
    let (Some(cloud), Some(stack)) = (cloud, stack) else {
        return SpecReport {
            mapping: None,
            problems,
        };
    };
    // Analyse the rules even when the fallback is wrong, so one run reports every problem.
    let mapping = Mapping {
        cloud,
        stack,
        rules,
        fallback: fallback.unwrap_or(Fallback::Fail),
    };
    let value_lines = key_lines(text, "value");
    for (rule, &i) in mapping.rules.iter().zip(&origins) {
        if let Some(why) = mapping.value_problem(&rule.value) {
            error(
                value_lines.get(i).copied(),
                format!("rule {}: {why}", i + 1),
            );
        }
    }
    for (shadowed, by) in mapping.shadowed() {
        let (shadowed, by) = (origins[shadowed], origins[by]);
        problems.push(Problem {
            line: selector_lines.get(shadowed).copied(),
            message: format!(
                "rule {} can never match: rule {} matches everything it matches",
                shadowed + 1,
                by + 1
            ),
            warning: true,
        });
    }
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    let usable = fallback.is_some()
        && problems.iter().all(|p| p.warning)
        && mapping.rules.len() == rule_values.len();
    SpecReport {
        mapping: usable.then_some(mapping),
        problems,
    }
}

/// The `[iam]` mapping of a config: from its spec file, from the inline rules, or none.
pub fn load_mapping(config: &crate::Config) -> Result<Option<Mapping>, crate::ConfigError> {
    use crate::ConfigError::Invalid;
    let iam = &config.iam;
    let inline = iam.cloud_provider.is_some()
        || iam.compute_stack.is_some()
        || iam.fallback_rule.is_some()
        || !iam.rules.is_empty();
    let (text, source) = match (&iam.spec, inline) {
        (Some(_), true) => {
            return Err(Invalid(
                "[iam]: give `spec` or the inline rules, not both".into(),
            ));
        }
        (Some(path), false) => (
            std::fs::read_to_string(path)
                .map_err(|e| Invalid(format!("[iam] spec {}: cannot read: {e}", path.display())))?,
            path.display().to_string(),
        ),
        (None, true) => {
            #[derive(serde::Serialize)]
            struct Section<'a> {
                rules: &'a [crate::config::IamRule],
                #[serde(skip_serializing_if = "Option::is_none")]
                fallback_rule: Option<&'a str>,
            }
            #[derive(serde::Serialize)]
            struct Inline<'a> {
                #[serde(skip_serializing_if = "Option::is_none")]
                cloud_provider: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                compute_stack: Option<&'a str>,
                dataplane_iam_mapping: Section<'a>,
            }
            let text = serde_norway::to_string(&Inline {
                cloud_provider: iam.cloud_provider.as_deref(),
                compute_stack: iam.compute_stack.as_deref(),
                dataplane_iam_mapping: Section {
                    rules: &iam.rules,
                    fallback_rule: iam.fallback_rule.as_deref(),
                },
            })
            .map_err(|e| Invalid(format!("[iam]: {e}")))?;
            (text, "[iam] in keyway.toml".to_owned())
        }
        (None, false) => return Ok(None),
    };
    read_spec(&text)
        .into_mapping(&source)
        .map(Some)
        .map_err(Invalid)
}

/// `RoleSessionName` for a workload: `keyway-<workload-type>-<project>`, in STS's alphabet, at most 64.
pub fn session_name(labels: &std::collections::BTreeMap<String, String>) -> String {
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
    labels: &std::collections::BTreeMap<String, String>,
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
            config.aws_assume = Some(crate::aws::AssumeRole {
                role: crate::aws::RoleSource::from_value(value),
                session_name: session_name(labels),
            });
        }
        (Decision::Rule { value, .. }, Cloud::Gcp, Stack::Vm) => {
            config.gcp_impersonate = Some(value.clone());
        }
        (Decision::CloudDefault | Decision::Rule { .. }, ..) => {}
    }
    Ok(Some((decision, mapping)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_their_lines() {
        let text = "cloud_deployment_id: cldrsrc_1\ncloud_provider: AWS\ncompute_stack: VM\ndataplane_iam_mapping:\n  rules:\n  - selector: user=a@example.com\n    value: arn:aws:iam::1:instance-profile/prof\n  - selector: team=ml\n    value: r\n    extra: 1\n  - selector: workload-type=job,user=a@example.com\n    value: r3\n  fallback_rule: MAYBE\n";
        let report = read_spec(text);
        let shown: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(report.mapping.is_none());
        assert!(
            shown.iter().any(
                |p| p.starts_with("line 7: error: rule 1: value") && p.contains("write `prof`")
            ),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("line 8: error: rule 2: unknown key `extra`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("line 8: error: rule 2: invalid selector")
                    && p.contains("unknown key `team`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("line 11: warning: rule 3 can never match: rule 1")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|p| p.starts_with("line 13: error: fallback_rule `MAYBE`")),
            "{shown:?}"
        );
    }

    #[test]
    fn missing_fallback_and_bad_yaml_are_reported() {
        let report = read_spec("cloud_provider: GCP\ndataplane_iam_mapping:\n  rules: []\n");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains("fallback_rule is missing"))
        );
        let report = read_spec("cloud_provider: [\n");
        assert!(report.problems[0].message.contains("not valid YAML"));
    }
}

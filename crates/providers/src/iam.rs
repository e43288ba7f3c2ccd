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

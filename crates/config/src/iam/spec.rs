//! Anyscale's cloud config, as `anyscale cloud config get` prints it and `update --spec-file` takes it: read
//! into a [`RawSpec`] (what was written, each key with its line), then [`check`]ed into a [`Mapping`] with every
//! problem found. `keyway.toml`'s inline `[iam]` form builds a [`RawSpec`] directly.
//!
//! What Anyscale accepts (docs/iam.md, "Anyscale accepts / Keyway accepts"): `cloud_provider` `AWS`, `GCP` or
//! `AZURE`; `compute_stack` `VM` or `K8S`; `dataplane_iam_mapping` holding `rules` (each a `selector` and a
//! `value`), `fallback_rule` (required with rules, ignored without) and `mode` (which Anyscale writes and
//! never reads); `{}` or no mapping at all for none; any other top-level key (kept by the CLI, tolerated by
//! the server).

use keyway_core::mapping::{Cloud, Fallback, Mapping, MappingRule, Stack};
use keyway_core::selector::{Mode, Selector};
use serde_norway::Value;

/// One finding of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when it can be placed.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
    /// Warnings (a rule that can never match, a key Keyway ignores) do not make the spec invalid.
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

/// A text as written, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The text.
    pub text: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl Located {
    /// A text with no line (the inline form).
    pub fn new(text: impl Into<String>) -> Located {
        Located {
            text: text.into(),
            line: None,
        }
    }
}

/// One rule as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRule {
    /// Line of its `selector` (or of the rule).
    pub line: Option<usize>,
    /// `selector`, when a string.
    pub selector: Option<String>,
    /// `value`, when a string.
    pub value: Option<Located>,
    /// Other keys.
    pub others: Vec<String>,
}

/// `dataplane_iam_mapping` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMapping {
    /// Line of the key.
    pub line: Option<usize>,
    /// `rules`, in order.
    pub rules: Vec<RawRule>,
    /// `fallback_rule`.
    pub fallback_rule: Option<Located>,
    /// `mode`, which Anyscale writes (`CUSTOMER_MANAGED`) and never reads.
    pub mode: Option<Located>,
    /// Other keys.
    pub others: Vec<Located>,
}

/// An Anyscale cloud config as written: what [`check`] reads, from YAML ([`parse`]) or `keyway.toml`'s `[iam]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSpec {
    /// `cloud_provider`.
    pub cloud_provider: Option<Located>,
    /// `compute_stack`.
    pub compute_stack: Option<Located>,
    /// `dataplane_iam_mapping`; `None` when the key is absent.
    pub mapping: Option<RawMapping>,
    /// Other top-level keys.
    pub others: Vec<Located>,
    /// What could not be read as a spec at all (bad YAML, a value of the wrong type).
    pub problems: Vec<Problem>,
}

/// Top-level keys of Anyscale's cloud config that are not about the mapping: kept silently.
const ANYSCALE_KEYS: [&str; 2] = ["cloud_deployment_id", "user_tag_annotation_prefix"];

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

fn error(line: Option<usize>, message: String) -> Problem {
    Problem {
        line,
        message,
        warning: false,
    }
}

fn warning(line: Option<usize>, message: String) -> Problem {
    Problem {
        line,
        message,
        warning: true,
    }
}

/// Reads the YAML into a [`RawSpec`]. Never fails: what cannot be read is a problem in the spec.
pub fn parse(text: &str) -> RawSpec {
    let mut raw = RawSpec::default();
    let root: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            raw.problems.push(error(
                e.location().map(|l| l.line()),
                format!("not valid YAML: {e}"),
            ));
            return raw;
        }
    };
    let first_line = |key: &str| key_lines(text, key).first().copied();
    let Some(top) = root.as_mapping() else {
        raw.problems.push(error(
            None,
            "not an Anyscale cloud config: expected keys such as cloud_provider and dataplane_iam_mapping"
                .into(),
        ));
        return raw;
    };
    for (key, value) in top {
        let Some(key) = key.as_str() else {
            raw.problems
                .push(error(None, "a top-level key is not a string".into()));
            continue;
        };
        match key {
            "cloud_provider" => {
                raw.cloud_provider = located(key, value, first_line(key), &mut raw.problems);
            }
            "compute_stack" => {
                raw.compute_stack = located(key, value, first_line(key), &mut raw.problems);
            }
            "dataplane_iam_mapping" => {
                raw.mapping = Some(parse_mapping(text, value, &mut raw.problems));
            }
            other => raw.others.push(Located {
                text: other.to_owned(),
                line: first_line(other),
            }),
        }
    }
    raw
}

/// A string value with its line; any other value is a problem.
fn located(
    key: &str,
    value: &Value,
    line: Option<usize>,
    problems: &mut Vec<Problem>,
) -> Option<Located> {
    if let Value::String(text) = value {
        return Some(Located {
            text: text.clone(),
            line,
        });
    }
    problems.push(error(line, format!("{key} must be a string")));
    None
}

fn parse_mapping(text: &str, section: &Value, problems: &mut Vec<Problem>) -> RawMapping {
    let first_line = |key: &str| key_lines(text, key).first().copied();
    let mut mapping = RawMapping {
        line: first_line("dataplane_iam_mapping"),
        ..RawMapping::default()
    };
    let entries = match section {
        // `dataplane_iam_mapping:` with nothing after it, as `{}`.
        Value::Null => return mapping,
        Value::Mapping(entries) => entries,
        _ => {
            problems.push(error(
                mapping.line,
                "dataplane_iam_mapping must hold rules and fallback_rule (or be {})".into(),
            ));
            return mapping;
        }
    };
    let selector_lines = key_lines(text, "selector");
    let value_lines = key_lines(text, "value");
    for (key, value) in entries {
        let key = key.as_str().unwrap_or("");
        let line = first_line(key);
        match key {
            "fallback_rule" => mapping.fallback_rule = located(key, value, line, problems),
            "mode" => mapping.mode = located(key, value, line, problems),
            "rules" => match value {
                Value::Null => {}
                Value::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        mapping.rules.push(parse_rule(
                            item,
                            selector_lines.get(i).copied(),
                            value_lines.get(i).copied(),
                        ));
                    }
                }
                _ => problems.push(error(
                    line,
                    "rules must be a list of rules, each a selector and a value".into(),
                )),
            },
            other => mapping.others.push(Located {
                text: other.to_owned(),
                line,
            }),
        }
    }
    mapping
}

fn parse_rule(item: &Value, line: Option<usize>, value_line: Option<usize>) -> RawRule {
    let mut rule = RawRule {
        line,
        ..RawRule::default()
    };
    let Some(entries) = item.as_mapping() else {
        return rule;
    };
    for (key, value) in entries {
        match key.as_str() {
            Some("selector") => rule.selector = value.as_str().map(str::to_owned),
            Some("value") => {
                rule.value = value.as_str().map(|text| Located {
                    text: text.to_owned(),
                    line: value_line,
                });
            }
            other => rule.others.push(other.unwrap_or("").to_owned()),
        }
    }
    rule
}

/// Checks a spec as Anyscale would, and more where a mistake is certain: every problem with its line.
pub fn check(raw: RawSpec) -> SpecReport {
    let mut problems = raw.problems;
    let (cloud, stack) = check_cloud(
        raw.cloud_provider.as_ref(),
        raw.compute_stack.as_ref(),
        &mut problems,
    );
    for other in raw
        .others
        .iter()
        .filter(|k| !ANYSCALE_KEYS.contains(&k.text.as_str()))
    {
        problems.push(warning(
            other.line,
            format!(
                "key `{}` is not part of the IAM mapping; Keyway ignores it",
                other.text
            ),
        ));
    }
    if raw.mapping.is_none() && cloud.is_some() {
        problems.push(warning(
            None,
            "no dataplane_iam_mapping: every workload gets the cloud's default identity".into(),
        ));
    }
    let section = raw.mapping.unwrap_or_default();
    let (rules, fallback) = check_mapping(&section, &mut problems);
    let (Some(cloud), Some(stack)) = (cloud, stack) else {
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        return SpecReport {
            mapping: None,
            problems,
        };
    };
    let mapping = Mapping {
        cloud,
        stack,
        rules: rules.iter().map(|(_, rule)| rule.clone()).collect(),
        fallback: fallback.unwrap_or(Fallback::Fail),
    };
    for (i, rule) in &rules {
        if let Some(why) = mapping.value_problem(&rule.value) {
            let line = section.rules[*i].value.as_ref().and_then(|v| v.line);
            problems.push(error(line, format!("rule {}: {why}", i + 1)));
        }
    }
    for (shadowed, by) in mapping.shadowed() {
        let (shadowed, by) = (rules[shadowed].0, rules[by].0);
        problems.push(warning(
            section.rules[shadowed].line,
            format!(
                "rule {} can never match: rule {} matches everything it matches",
                shadowed + 1,
                by + 1
            ),
        ));
    }
    problems.sort_by_key(|p| p.line.unwrap_or(0));
    let usable = problems.iter().all(|p| p.warning);
    SpecReport {
        mapping: usable.then_some(mapping),
        problems,
    }
}

/// `cloud_provider` and `compute_stack`, and whether they go together.
fn check_cloud(
    provider: Option<&Located>,
    stack: Option<&Located>,
    problems: &mut Vec<Problem>,
) -> (Option<Cloud>, Option<Stack>) {
    let cloud = match provider {
        Some(Located { text, line }) => match text.as_str() {
            "AWS" => Some(Cloud::Aws),
            "GCP" => Some(Cloud::Gcp),
            "AZURE" => Some(Cloud::Azure),
            other => {
                problems.push(error(
                    *line,
                    format!("cloud_provider `{other}` is unknown; write AWS, GCP or AZURE"),
                ));
                None
            }
        },
        None if problems.is_empty() => {
            problems.push(error(
                None,
                "cloud_provider is missing; write AWS, GCP or AZURE".into(),
            ));
            None
        }
        None => None,
    };
    let compute = match stack {
        None => Some(Stack::Vm),
        Some(Located { text, line }) => match text.as_str() {
            "VM" => Some(Stack::Vm),
            "K8S" => Some(Stack::K8s),
            other => {
                problems.push(error(
                    *line,
                    format!("compute_stack `{other}` is unknown; write VM or K8S"),
                ));
                None
            }
        },
    };
    if (cloud, compute) == (Some(Cloud::Azure), Some(Stack::Vm)) {
        problems.push(error(
            stack.and_then(|s| s.line),
            "cloud_provider AZURE runs on Kubernetes (AKS): write compute_stack: K8S".into(),
        ));
    }
    (cloud, compute)
}

/// The rules that parsed (with their index in the file) and the fallback; problems for the rest.
fn check_mapping(
    section: &RawMapping,
    problems: &mut Vec<Problem>,
) -> (Vec<(usize, MappingRule)>, Option<Fallback>) {
    for other in &section.others {
        let message = if other.text == "default_rule" {
            "default_rule is the old name of fallback_rule, which Anyscale refuses now: write fallback_rule".to_owned()
        } else {
            format!(
                "unknown key `{}` in dataplane_iam_mapping; expected rules and fallback_rule",
                other.text
            )
        };
        problems.push(error(other.line, message));
    }
    if let Some(mode) = section
        .mode
        .as_ref()
        .filter(|m| m.text != "CUSTOMER_MANAGED")
    {
        problems.push(warning(
            mode.line,
            format!(
                "mode `{}` is ignored: Anyscale sets it (CUSTOMER_MANAGED once rules exist)",
                mode.text
            ),
        ));
    }
    let fallback = match &section.fallback_rule {
        Some(Located { text, line }) => match text.as_str() {
            "CLOUD_DEFAULT" => Some(Fallback::CloudDefault),
            "FAIL" => Some(Fallback::Fail),
            other => {
                problems.push(error(
                    *line,
                    format!("fallback_rule `{other}` is unknown; write CLOUD_DEFAULT or FAIL"),
                ));
                None
            }
        },
        None => None,
    };
    if section.rules.is_empty() {
        if let Some(Located { text, line }) = &section.fallback_rule {
            problems.push(warning(
                *line,
                format!(
                    "fallback_rule {text} applies only when there are rules; with none, Anyscale ignores it and every workload gets the cloud's default identity"
                ),
            ));
        }
        return (Vec::new(), Some(Fallback::CloudDefault));
    }
    if section.fallback_rule.is_none() {
        problems.push(error(
            section.line,
            "fallback_rule is missing; write CLOUD_DEFAULT (use the cloud's default identity) or FAIL (refuse to start)"
                .into(),
        ));
    }
    let mut rules = Vec::new();
    for (i, rule) in section.rules.iter().enumerate() {
        for key in &rule.others {
            problems.push(error(
                rule.line,
                format!(
                    "rule {}: unknown key `{key}`; a rule has selector and value",
                    i + 1
                ),
            ));
        }
        let (Some(selector_text), Some(value)) = (&rule.selector, &rule.value) else {
            problems.push(error(
                rule.line,
                format!("rule {}: needs a selector and a value (strings)", i + 1),
            ));
            continue;
        };
        if value.text.is_empty() {
            problems.push(error(
                value.line.or(rule.line),
                format!(
                    "rule {}: value is empty; give the identity the rule maps to",
                    i + 1
                ),
            ));
            continue;
        }
        match Selector::parse_with(selector_text, Mode::Anyscale) {
            Ok(selector) => rules.push((
                i,
                MappingRule {
                    text: selector_text.clone(),
                    selector,
                    value: value.text.clone(),
                },
            )),
            Err(e) => problems.push(error(rule.line, format!("rule {}: {e}", i + 1))),
        }
    }
    (rules, fallback)
}

/// Reads and checks a spec's YAML.
pub fn read_spec(text: &str) -> SpecReport {
    check(parse(text))
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
        for expected in [
            "line 7: error: rule 1: value",
            "line 8: error: rule 2: unknown key `extra`",
            "line 8: error: rule 2: invalid selector",
            "line 11: warning: rule 3 can never match: rule 1",
            "line 13: error: fallback_rule `MAYBE`",
        ] {
            assert!(
                shown.iter().any(|p| p.starts_with(expected)),
                "{expected}: {shown:?}"
            );
        }
        assert!(
            shown.iter().any(|p| p.contains("write `prof`")),
            "{shown:?}"
        );
    }

    #[test]
    fn what_anyscale_prints_without_rules_is_no_mapping() {
        // `anyscale cloud config get` for a cloud that never had a mapping (its CLI's documented example).
        let report = read_spec(
            "cloud_deployment_id: cldrsrc_abc123\ncloud_provider: AWS\ncompute_stack: VM\ndataplane_iam_mapping: {}\n\n",
        );
        assert_eq!(report.problems, []);
        let mapping = report.mapping.unwrap();
        assert!(mapping.rules.is_empty());
        assert_eq!(mapping.fallback, Fallback::CloudDefault);
    }

    #[test]
    fn a_missing_fallback_is_an_error_only_with_rules() {
        let report = read_spec(
            "cloud_provider: GCP\ndataplane_iam_mapping:\n  rules:\n  - selector: project=p\n    value: sa@p.iam.gserviceaccount.com\n",
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| !p.warning && p.message.contains("fallback_rule is missing"))
        );
        let report = read_spec(
            "cloud_provider: GCP\ndataplane_iam_mapping:\n  rules: []\n  fallback_rule: FAIL\n",
        );
        assert!(report.mapping.is_some());
        assert!(
            report.problems.iter().all(|p| p.warning),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn unknown_values_are_named_as_written() {
        let report = read_spec("cloud_provider: ALIBABA\ndataplane_iam_mapping: {}\n");
        assert_eq!(
            report.problems[0].to_string(),
            "line 1: error: cloud_provider `ALIBABA` is unknown; write AWS, GCP or AZURE"
        );
        let report = read_spec("cloud_provider: [\n");
        assert!(report.problems[0].message.contains("not valid YAML"));
        let report =
            read_spec("cloud_provider: AZURE\ncompute_stack: VM\ndataplane_iam_mapping: {}\n");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains("write compute_stack: K8S"))
        );
    }
}

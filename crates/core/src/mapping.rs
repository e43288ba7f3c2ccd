//! Identity mapping: Anyscale's cloud IAM mapping rules, evaluated as Anyscale does. An ordered list of rules,
//! each a label selector over `workload-type`, `project` and `user` and a value (an AWS instance profile
//! name, a Google service account e-mail, or a Kubernetes service account name); the first matching rule wins,
//! and when none matches the fallback says `CLOUD_DEFAULT` or `FAIL`.

use std::collections::BTreeMap;
use std::fmt;

use crate::selector::{Operator, Requirement, Selector};

/// The cloud the mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// AWS: values are instance profile names (VM) or Kubernetes service accounts (K8S).
    Aws,
    /// GCP: values are service account e-mails (VM) or Kubernetes service accounts (K8S).
    Gcp,
    /// Azure: Kubernetes only (AKS); values are Kubernetes service accounts.
    Azure,
}

impl fmt::Display for Cloud {
    /// As Anyscale writes `cloud_provider`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cloud::Aws => "AWS",
            Cloud::Gcp => "GCP",
            Cloud::Azure => "AZURE",
        })
    }
}

/// Where workloads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Virtual machines.
    Vm,
    /// Kubernetes (EKS, GKE, AKS).
    K8s,
}

impl fmt::Display for Stack {
    /// As Anyscale writes `compute_stack`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stack::Vm => "VM",
            Stack::K8s => "K8S",
        })
    }
}

/// What happens when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Use the cloud's default identity.
    CloudDefault,
    /// Refuse to start the workload.
    Fail,
}

impl fmt::Display for Fallback {
    /// As Anyscale writes `fallback_rule`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fallback::CloudDefault => "CLOUD_DEFAULT",
            Fallback::Fail => "FAIL",
        })
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRule {
    /// The selector as written.
    pub text: String,
    /// The parsed selector.
    pub selector: Selector,
    /// The identity it maps to.
    pub value: String,
}

/// An ordered rule list with its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The cloud.
    pub cloud: Cloud,
    /// The compute stack.
    pub stack: Stack,
    /// Rules, first match wins.
    pub rules: Vec<MappingRule>,
    /// When nothing matches.
    pub fallback: Fallback,
}

/// The outcome of [`Mapping::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Rule `index` (0-based) matched and maps to `value`.
    Rule {
        /// 0-based rule index.
        index: usize,
        /// The identity.
        value: String,
    },
    /// No rule matched; use the cloud's default identity.
    CloudDefault,
    /// No rule matched and the fallback is `FAIL`.
    Fail,
}

impl Mapping {
    /// The first matching rule, or the fallback.
    pub fn resolve(&self, labels: &BTreeMap<String, String>) -> Decision {
        match self.rules.iter().position(|r| r.selector.matches(labels)) {
            Some(index) => Decision::Rule {
                index,
                value: self.rules[index].value.clone(),
            },
            None => match self.fallback {
                Fallback::CloudDefault => Decision::CloudDefault,
                Fallback::Fail => Decision::Fail,
            },
        }
    }

    /// `1. SELECTOR; 2. SELECTOR; ...`, for messages that say which rules were tried.
    pub fn rules_tried(&self) -> String {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {}", i + 1, r.text))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// For each rule, whether it matches and, if not, the first requirement that fails.
    pub fn explain(&self, labels: &BTreeMap<String, String>) -> Vec<(usize, Option<String>)> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let failing = r
                    .selector
                    .requirements()
                    .iter()
                    .find(|req| !req.matches(labels))
                    .map(ToString::to_string);
                (i, failing)
            })
            .collect()
    }

    /// Problems with a rule's value for this cloud and stack, with what to write instead.
    pub fn value_problem(&self, value: &str) -> Option<String> {
        match (self.cloud, self.stack) {
            (_, Stack::K8s) => crate::selector::dns1123_label(value).err().map(|why| {
                format!("value `{value}` is not a Kubernetes service account name: {why}")
            }),
            (Cloud::Aws, Stack::Vm) => {
                if let Some((_, name)) = value
                    .strip_prefix("arn:")
                    .and_then(|rest| rest.split_once(":instance-profile/"))
                {
                    let name = name.rsplit('/').next().unwrap_or(name);
                    return Some(format!(
                        "value `{value}` is an instance profile ARN; Anyscale expects the instance profile name: write `{name}`"
                    ));
                }
                if value.starts_with("arn:") {
                    return Some(format!(
                        "value `{value}` is an ARN; give the name of an instance profile (not a role ARN)"
                    ));
                }
                let ok = !value.is_empty()
                    && value.len() <= 128
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
                (!ok).then(|| format!(
                    "value `{value}` is not an instance profile name (1-128 of letters, digits and +=,.@_-)"
                ))
            }
            (Cloud::Gcp, Stack::Vm) => {
                let ok =
                    crate::selector::is_email(value) && value.ends_with(".gserviceaccount.com");
                (!ok).then(|| format!(
                    "value `{value}` is not a service account e-mail (NAME@PROJECT.iam.gserviceaccount.com)"
                ))
            }
            (Cloud::Azure, Stack::Vm) => Some(
                "Azure clouds run on Kubernetes (AKS): their values are Kubernetes service account names".into(),
            ),
        }
    }

    /// Rules that can never match because an earlier rule matches everything they match (decided where a
    /// sufficient condition holds: every requirement of the earlier rule is implied by one of the later's).
    /// Returns (shadowed index, shadowing index).
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (j, later) in self.rules.iter().enumerate() {
            if let Some(i) = self.rules[..j]
                .iter()
                .position(|earlier| covers(&earlier.selector, &later.selector))
            {
                out.push((j, i));
            }
        }
        out
    }
}

/// Whether every label set matching `narrow` also matches `broad`.
fn covers(broad: &Selector, narrow: &Selector) -> bool {
    broad
        .requirements()
        .iter()
        .all(|b| narrow.requirements().iter().any(|n| implies(n, b)))
}

/// Whether requirement `a` holding implies `b` holds.
fn implies(a: &Requirement, b: &Requirement) -> bool {
    if a.key() != b.key() {
        return false;
    }
    if a == b {
        return true;
    }
    let subset = |x: &[String], y: &[String]| x.iter().all(|v| y.contains(v));
    let positive = |op| matches!(op, Operator::In | Operator::Equals | Operator::DoubleEquals);
    let negative = |op| matches!(op, Operator::NotIn | Operator::NotEquals);
    match (a.operator(), b.operator()) {
        (x, y) if positive(x) && positive(y) => subset(a.values(), b.values()),
        (x, y) if positive(x) && negative(y) => a.values().iter().all(|v| !b.values().contains(v)),
        (x, y) if negative(x) && negative(y) => subset(b.values(), a.values()),
        (x, Operator::Exists) => {
            positive(x) || matches!(x, Operator::GreaterThan | Operator::LessThan)
        }
        (Operator::DoesNotExist, y) => negative(y),
        _ => false,
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Rule { index, value } => write!(f, "{value} (rule {})", index + 1),
            Decision::CloudDefault => f.write_str("CLOUD_DEFAULT (no rule matched)"),
            Decision::Fail => f.write_str("FAIL (no rule matched)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Mode;

    fn mapping(rules: &[(&str, &str)], fallback: Fallback) -> Mapping {
        Mapping {
            cloud: Cloud::Aws,
            stack: Stack::Vm,
            rules: rules
                .iter()
                .map(|(s, v)| MappingRule {
                    text: (*s).to_owned(),
                    selector: Selector::parse_with(s, Mode::Anyscale).unwrap(),
                    value: (*v).to_owned(),
                })
                .collect(),
            fallback,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn first_match_wins_then_the_fallback() {
        let m = mapping(
            &[
                (
                    "workload-type in (workspace),user=user1@example.com",
                    "role_name1",
                ),
                (
                    "workload-type in (job, service),user=user2@example.com",
                    "role_name2",
                ),
                ("user=user2@example.com", "role_name3"),
            ],
            Fallback::Fail,
        );
        let l = labels(&[
            ("workload-type", "job"),
            ("user", "user2@example.com"),
            ("project", "p"),
        ]);
        assert_eq!(
            m.resolve(&l),
            Decision::Rule {
                index: 1,
                value: "role_name2".into()
            }
        );
        let l = labels(&[
            ("workload-type", "workspace"),
            ("user", "user2@example.com"),
        ]);
        assert_eq!(
            m.resolve(&l),
            Decision::Rule {
                index: 2,
                value: "role_name3".into()
            }
        );
        let l = labels(&[("workload-type", "job"), ("user", "user3@example.com")]);
        assert_eq!(m.resolve(&l), Decision::Fail);
        let explained = m.explain(&l);
        assert_eq!(explained[0].1.as_deref(), Some("user=user1@example.com"));
        let m = Mapping {
            fallback: Fallback::CloudDefault,
            ..m
        };
        assert_eq!(m.resolve(&l), Decision::CloudDefault);
    }

    #[test]
    fn shadowed_rules_are_found_where_decidable() {
        let m = mapping(
            &[
                ("user=a@example.com", "r1"),
                ("workload-type in (job),user=a@example.com", "r2"),
                ("workload-type in (job, service)", "r3"),
                ("workload-type=service,project=p", "r4"),
                ("project", "r5"),
                ("project=q,user=b@example.com", "r6"),
            ],
            Fallback::Fail,
        );
        assert_eq!(m.shadowed(), vec![(1, 0), (3, 2), (5, 4)]);
        let m = mapping(
            &[("", "all"), ("user=a@example.com", "never")],
            Fallback::Fail,
        );
        assert_eq!(m.shadowed(), vec![(1, 0)]);
    }

    #[test]
    fn values_are_checked_for_the_cloud_and_stack() {
        let mut m = mapping(&[], Fallback::Fail);
        assert_eq!(m.value_problem("my-profile"), None);
        let p = m
            .value_problem("arn:aws:iam::123456789012:instance-profile/path/my-profile")
            .unwrap();
        assert!(p.contains("write `my-profile`"), "{p}");
        assert!(m.value_problem("arn:aws:iam::1:role/r").is_some());
        m.cloud = Cloud::Gcp;
        assert_eq!(m.value_problem("sa@proj.iam.gserviceaccount.com"), None);
        assert!(m.value_problem("sa@example.com").is_some());
        m.stack = Stack::K8s;
        assert_eq!(m.value_problem("ml-jobs"), None);
        assert!(m.value_problem("ML_jobs").is_some());
    }
}

//! Kubernetes label selectors in their string form (`workload-type in (job, service),user=a@b.com`), parsed
//! the way Kubernetes' apimachinery (`labels.Parse`) parses them, with the same matching semantics.
//!
//! Written by hand because no crate parses the string form (kube-rs only builds selectors in code). The
//! grammar, token rules and validation follow apimachinery's `pkg/labels/selector.go` and
//! `pkg/util/validation`:
//!
//! ```text
//! selector    := "" | requirement ("," requirement)*
//! requirement := ["!"] KEY                                   exists / does not exist
//!              | KEY ("=" | "==" | "!=" | ">" | "<") [VALUE]  an empty VALUE is the empty string
//!              | KEY ("in" | "notin") "(" [VALUE ("," VALUE)*] ")"
//! ```
//! Whitespace separates tokens and is otherwise ignored; `=!(),<>` are symbols and every other run of
//! characters is an identifier (`in`/`notin` are keywords only in operator position).
//!
//! Three [`Mode`]s decide what keys and values are valid: Kubernetes exactly, Anyscale's IAM mapping dialect
//! (e-mail addresses as values, three keys), or anything the tokenizer yields.
//!
//! Consecutive commas in a set parse as apimachinery has since kubernetes/kubernetes#133419 (release 1.35):
//! `x in (a,,)` is `x in (,a)`.

mod anyscale;
mod names;
mod parse;

use std::collections::BTreeMap;
use std::fmt;

pub use anyscale::{Email, anyscale_emails, is_email};
pub use names::{dns1123_label, dns1123_subdomain, label_value, qualified_name};

/// How strictly keys and values are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Kubernetes exactly: qualified-name keys, label values.
    #[default]
    Strict,
    /// Anyscale's IAM mapping: keys `workload-type`, `project`, `user`; `workload-type` values `job`,
    /// `service`, `workspace`; e-mail addresses as Anyscale's backend takes them ([`anyscale_emails`]).
    Anyscale,
    /// Keys are qualified names; values are whatever the tokenizer yields.
    Relaxed,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Mode::Strict),
            "anyscale" => Ok(Mode::Anyscale),
            "relaxed" => Ok(Mode::Relaxed),
            other => Err(format!(
                "unknown selector mode `{other}`; use strict, anyscale or relaxed"
            )),
        }
    }
}

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (matches when the label is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (matches when the label is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>N` (integers)
    GreaterThan,
    /// `key<N` (integers)
    LessThan,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and deduplicated, as Kubernetes keeps them.
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and deduplicated.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Kubernetes' `Requirement.Matches`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| has(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !has(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(label), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(label), Ok(bound)) = (label.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    label > bound
                } else {
                    label < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed selector: all requirements must match. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses the string form with Kubernetes' rules ([`Mode::Strict`]).
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        Self::parse_with(input, Mode::Strict)
    }

    /// Parses with the given validation mode.
    pub fn parse_with(input: &str, mode: Mode) -> Result<Selector, SelectorError> {
        if mode == Mode::Anyscale {
            let emails = anyscale_emails(input);
            if !emails.is_empty() {
                return Self::parse_hashed(input, &emails);
            }
        }
        Self::parse_text(input, mode)
    }

    fn parse_text(input: &str, mode: Mode) -> Result<Selector, SelectorError> {
        let mut requirements = parse::requirements(input, mode)?;
        // Kubernetes sorts by key (its sort is stable for the sizes selectors have).
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Anyscale's way with e-mail addresses: each is replaced by its hash and the text parsed as Kubernetes
    /// does; the addresses are then put back, so the selector matches and prints them. Errors name the
    /// address and its position in what was written, not the hash.
    fn parse_hashed(input: &str, emails: &[Email]) -> Result<Selector, SelectorError> {
        let mut hashed = String::with_capacity(input.len());
        let mut copied = 0;
        for email in emails {
            hashed.push_str(&input[copied..email.start]);
            hashed.push_str(&email.hash);
            copied = email.start + email.text.len();
        }
        hashed.push_str(&input[copied..]);
        let restore = |text: &str| {
            emails
                .iter()
                .find(|e| e.hash == text)
                .map_or_else(|| text.to_owned(), |e| e.text.clone())
        };
        match Self::parse_text(&hashed, Mode::Anyscale) {
            Ok(mut selector) => {
                for requirement in &mut selector.requirements {
                    let mut values: Vec<String> =
                        requirement.values.iter().map(|v| restore(v)).collect();
                    values.sort();
                    requirement.values = values;
                }
                Ok(selector)
            }
            Err(mut e) => {
                // Back to the written text's offsets: every address before the position, and one that holds it.
                let mut shift: isize = 0;
                let mut hashed_at = 0;
                for email in emails {
                    let hashed_start = email.start.wrapping_add_signed(shift);
                    if e.position < hashed_start {
                        break;
                    }
                    hashed_at = hashed_start;
                    if e.position < hashed_start + email.hash.len() {
                        e.position = email.start;
                        hashed_at = usize::MAX;
                        break;
                    }
                    shift += email.hash.len().cast_signed() - email.text.len().cast_signed();
                }
                if hashed_at != usize::MAX {
                    e.position = e.position.wrapping_add_signed(-shift);
                }
                for email in emails {
                    e.message = e.message.replace(&email.hash, &email.text);
                }
                Err(e)
            }
        }
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True for the empty selector, which matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement matches the labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    /// The canonical form: requirements sorted by key, set values sorted and deduplicated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A parse or validation failure, with the byte offset it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at position {position}: {message}")]
pub struct SelectorError {
    /// Byte offset into the input.
    pub position: usize,
    /// What was found and what was expected.
    pub message: String,
}

fn error(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;

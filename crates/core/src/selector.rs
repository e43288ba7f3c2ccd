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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

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
        let tokens = lex(input)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            mode,
            input_len: input.len(),
        };
        let mut requirements = parser.parse()?;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identifier,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Greater,
    Less,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    position: usize,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn symbol(text: &str) -> Option<Kind> {
    Some(match text {
        "!" => Kind::Not,
        "!=" => Kind::NotEquals,
        "(" => Kind::Open,
        ")" => Kind::Close,
        "," => Kind::Comma,
        "=" => Kind::Equals,
        "==" => Kind::DoubleEquals,
        ">" => Kind::Greater,
        "<" => Kind::Less,
        _ => return None,
    })
}

/// apimachinery's lexer: symbols take the longest known run, identifiers run to whitespace or a symbol.
fn lex(input: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if is_whitespace(c) {
            chars.next();
        } else if is_symbol(c) {
            let mut text = String::new();
            while let Some(&(_, c)) = chars.peek() {
                let mut longer = text.clone();
                longer.push(c);
                if is_symbol(c) && symbol(&longer).is_some() {
                    text = longer;
                    chars.next();
                } else {
                    break;
                }
            }
            let kind =
                symbol(&text).ok_or_else(|| error(start, format!("unknown symbol `{text}`")))?;
            tokens.push(Token {
                kind,
                text,
                position: start,
            });
        } else {
            let mut text = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if is_whitespace(c) || is_symbol(c) {
                    break;
                }
                text.push(c);
                chars.next();
            }
            let kind = match text.as_str() {
                "in" => Kind::In,
                "notin" => Kind::NotIn,
                _ => Kind::Identifier,
            };
            tokens.push(Token {
                kind,
                text,
                position: start,
            });
        }
    }
    tokens.push(Token {
        kind: Kind::End,
        text: String::new(),
        position: input.len(),
    });
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    mode: Mode,
    input_len: usize,
}

fn found(token: &Token) -> String {
    if token.kind == Kind::End {
        "end of string".to_owned()
    } else {
        format!("`{}`", token.text)
    }
}

impl Parser {
    /// The next token; in value position `in`/`notin` are plain identifiers, as in Kubernetes.
    fn peek(&self, values: bool) -> Token {
        let mut token = self.tokens[self.next.min(self.tokens.len() - 1)].clone();
        if values && matches!(token.kind, Kind::In | Kind::NotIn) {
            token.kind = Kind::Identifier;
        }
        token
    }

    fn consume(&mut self, values: bool) -> Token {
        let token = self.peek(values);
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let token = self.peek(true);
            match token.kind {
                Kind::Identifier | Kind::Not => {
                    requirements.push(self.requirement()?);
                    let after = self.consume(true);
                    match after.kind {
                        Kind::End => return Ok(requirements),
                        Kind::Comma => {
                            let next = self.peek(true);
                            if !matches!(next.kind, Kind::Identifier | Kind::Not) {
                                return Err(error(
                                    next.position,
                                    format!(
                                        "found {}, expected an identifier after `,`",
                                        found(&next)
                                    ),
                                ));
                            }
                        }
                        _ => {
                            return Err(error(
                                after.position,
                                format!("found {}, expected `,` or end of string", found(&after)),
                            ));
                        }
                    }
                }
                Kind::End => return Ok(requirements),
                _ => {
                    return Err(error(
                        token.position,
                        format!(
                            "found {}, expected `!`, an identifier or end of string",
                            found(&token)
                        ),
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.consume(true);
        let negated = token.kind == Kind::Not;
        if negated {
            token = self.consume(true);
        }
        if token.kind != Kind::Identifier {
            return Err(error(
                token.position,
                format!(
                    "found {}, expected an identifier (a label key)",
                    found(&token)
                ),
            ));
        }
        let key = token.text;
        let key_position = token.position;
        self.validate_key(&key, key_position)?;
        let next = self.peek(true);
        if negated || matches!(next.kind, Kind::End | Kind::Comma) {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: Vec::new(),
            });
        }
        let op_token = self.consume(false);
        let operator = match op_token.kind {
            Kind::In => Operator::In,
            Kind::NotIn => Operator::NotIn,
            Kind::Equals => Operator::Equals,
            Kind::DoubleEquals => Operator::DoubleEquals,
            Kind::NotEquals => Operator::NotEquals,
            Kind::Greater => Operator::GreaterThan,
            Kind::Less => Operator::LessThan,
            _ => {
                return Err(error(
                    op_token.position,
                    format!(
                        "found {}, expected an operator: in, notin, =, ==, !=, >, <",
                        found(&op_token)
                    ),
                ));
            }
        };
        let (values, value_position) = if matches!(operator, Operator::In | Operator::NotIn) {
            self.set_values()?
        } else {
            self.exact_value()?
        };
        if matches!(operator, Operator::GreaterThan | Operator::LessThan)
            && values.iter().any(|v| v.parse::<i64>().is_err())
        {
            return Err(error(
                value_position,
                format!("`{key}` with > or < needs an integer value"),
            ));
        }
        for value in &values {
            self.validate_value(&key, value, value_position)?;
        }
        Ok(Requirement {
            key,
            operator,
            values: values.into_iter().collect(),
        })
    }

    /// `( a, b )`: `()` is the set {""}, and empty items (`(,a)`, `(a,,b)`) are the empty string.
    fn set_values(&mut self) -> Result<(BTreeSet<String>, usize), SelectorError> {
        let open = self.consume(true);
        if open.kind != Kind::Open {
            return Err(error(
                open.position,
                format!("found {}, expected `(`", found(&open)),
            ));
        }
        let position = self.peek(true).position;
        let mut values = BTreeSet::new();
        let first = self.peek(true);
        match first.kind {
            Kind::Close => {
                self.consume(true);
                values.insert(String::new());
                return Ok((values, position));
            }
            Kind::Identifier | Kind::Comma => {}
            _ => {
                return Err(error(
                    first.position,
                    format!(
                        "found {}, expected `,`, `)` or an identifier",
                        found(&first)
                    ),
                ));
            }
        }
        loop {
            let token = self.consume(true);
            match token.kind {
                Kind::Identifier => {
                    values.insert(token.text);
                    let next = self.peek(true);
                    match next.kind {
                        Kind::Comma => {}
                        Kind::Close => break,
                        _ => {
                            return Err(error(
                                next.position,
                                format!("found {}, expected `,` or `)`", found(&next)),
                            ));
                        }
                    }
                }
                Kind::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let next = self.peek(true);
                    if next.kind == Kind::Close {
                        values.insert(String::new());
                        break;
                    }
                    if next.kind == Kind::Comma {
                        // `,,`: an empty value; the second comma is the next item's (apimachinery since
                        // kubernetes/kubernetes#133419, so `(a,,)` closes).
                        values.insert(String::new());
                    }
                }
                _ => {
                    return Err(error(
                        token.position,
                        format!("found {}, expected `,` or an identifier", found(&token)),
                    ));
                }
            }
        }
        let close = self.consume(true);
        if close.kind != Kind::Close {
            return Err(error(
                close.position,
                format!("found {}, expected `)`", found(&close)),
            ));
        }
        Ok((values, position))
    }

    /// After `=`, `==`, `!=`, `>`, `<`: one identifier, or nothing (the empty value).
    fn exact_value(&mut self) -> Result<(BTreeSet<String>, usize), SelectorError> {
        let token = self.peek(true);
        let mut values = BTreeSet::new();
        match token.kind {
            Kind::End | Kind::Comma => {
                values.insert(String::new());
            }
            Kind::Identifier => {
                self.consume(true);
                values.insert(token.text);
            }
            _ => {
                return Err(error(
                    token.position,
                    format!("found {}, expected a value", found(&token)),
                ));
            }
        }
        Ok((values, token.position.min(self.input_len)))
    }

    fn validate_key(&self, key: &str, position: usize) -> Result<(), SelectorError> {
        if let Err(why) = qualified_name(key) {
            return Err(error(position, format!("invalid key `{key}`: {why}")));
        }
        if self.mode == Mode::Anyscale && !ANYSCALE_KEYS.contains(&key) {
            return Err(error(
                position,
                format!(
                    "unknown key `{key}`; Anyscale's IAM mapping selects on workload-type, project and user"
                ),
            ));
        }
        Ok(())
    }

    fn validate_value(&self, key: &str, value: &str, position: usize) -> Result<(), SelectorError> {
        match self.mode {
            Mode::Relaxed => Ok(()),
            Mode::Strict => label_value(value).map_err(|why| {
                error(
                    position,
                    format!("invalid value `{value}` for `{key}`: {why}"),
                )
            }),
            Mode::Anyscale => {
                if key == "workload-type" && !ANYSCALE_WORKLOADS.contains(&value) {
                    return Err(error(
                        position,
                        format!("workload-type `{value}` is not one of job, service, workspace"),
                    ));
                }
                label_value(value).map_err(|why| {
                    error(
                        position,
                        format!(
                            "invalid value `{value}` for `{key}`: {why} (or give an e-mail address, NAME@DOMAIN.TLD)"
                        ),
                    )
                })
            }
        }
    }
}

const ANYSCALE_KEYS: [&str; 3] = ["workload-type", "project", "user"];
const ANYSCALE_WORKLOADS: [&str; 3] = ["job", "service", "workspace"];

fn name_chars_ok(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Kubernetes' `IsQualifiedName`: `[prefix/]name`.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err("the prefix before `/` must be non-empty".into());
            }
            dns1123_subdomain(prefix).map_err(|why| format!("prefix `{prefix}`: {why}"))?;
            *name
        }
        _ => {
            return Err(
                "a qualified name is an optional DNS subdomain prefix and `/`, then a name".into(),
            );
        }
    };
    if name.is_empty() {
        return Err("the name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("the name part must be no more than 63 characters".into());
    }
    if !name_chars_ok(name) {
        return Err("the name part must consist of alphanumeric characters, `-`, `_` or `.`, and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// Kubernetes' `IsValidLabelValue`: empty, or up to 63 of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !value.is_empty() && !name_chars_ok(value) {
        return Err("must be empty or consist of alphanumeric characters, `-`, `_` or `.`, and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// Kubernetes' `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok = value.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err("must consist of lower case alphanumeric characters, `-` or `.`, and must start and end with an alphanumeric character".into())
    }
}

/// Kubernetes' `IsDNS1123Label` (a service account name).
pub fn dns1123_label(value: &str) -> Result<(), String> {
    if value.len() > 63 || value.contains('.') {
        return Err("must be a DNS-1123 label: at most 63 lower case alphanumeric characters or `-`, starting and ending alphanumeric".into());
    }
    dns1123_subdomain(value)
}

/// An e-mail address in an Anyscale selector, where it was written, and the hash Anyscale parses instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Byte offset in the selector.
    pub start: usize,
    /// The address as written.
    pub text: String,
    /// Its decimal FNV-1 64-bit hash.
    pub hash: String,
}

/// Anyscale's backend (`go/infra/config/cloud/util.go`, mirrored byte for byte by Anyscale's Terraform provider,
/// `cloud_iam_mapping_helpers.go`) replaces every match of this pattern anywhere in a selector by the decimal
/// FNV-1 64-bit hash of the match (Go's `fnv.New64`) before `labels.Parse`, since `@` is not allowed in a
/// label value. RE2's `\b` is an ASCII word boundary, as regex-lite's; `[A-Z|a-z]` takes `|` too, as written.
static ANYSCALE_EMAIL: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
    regex_lite::Regex::new(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b")
        .unwrap_or_else(|e| unreachable!("the e-mail pattern is a constant: {e}"))
});

/// The e-mail addresses Anyscale hashes in a selector, in order.
pub fn anyscale_emails(selector: &str) -> Vec<Email> {
    ANYSCALE_EMAIL
        .find_iter(selector)
        .map(|m| Email {
            start: m.start(),
            text: m.as_str().to_owned(),
            hash: fnv1_64(m.as_str().as_bytes()).to_string(),
        })
        .collect()
}

/// FNV-1 (not FNV-1a), 64 bits: Go's `hash/fnv.New64`.
fn fnv1_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, &b| {
        hash.wrapping_mul(0x0000_0100_0000_01b3) ^ u64::from(b)
    })
}

/// A pragmatic e-mail shape: `local@domain.tld`, no whitespace, one `@`.
pub fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && value.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests;

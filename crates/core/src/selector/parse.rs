//! apimachinery's lexer and parser for the string form (`pkg/labels/selector.go`), validating keys and values
//! by the [`Mode`].

use std::collections::BTreeSet;

use super::names::{label_value, qualified_name};
use super::{Mode, Operator, Requirement, SelectorError, error};

/// The requirements of `input`, in the order written.
pub(super) fn requirements(input: &str, mode: Mode) -> Result<Vec<Requirement>, SelectorError> {
    let mut parser = Parser {
        tokens: lex(input)?,
        next: 0,
        mode,
        input_len: input.len(),
    };
    parser.parse()
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

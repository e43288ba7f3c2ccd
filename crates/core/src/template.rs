//! Templates: text with `{{ REF }}` placeholders, for the files an application reads whole (`.env`, `.netrc`,
//! `.pypirc`, a config file), as 1Password's `op inject` does with its own references. `keyway render
//! --template` fills them; the webhook checks a Pod's `keyway.dev/template.<file>` at admission.
//!
//! A placeholder is `{{`, optional blanks, a reference (`INSTANCE://...` up to a blank or a brace), optional
//! blanks and `}}`. Any other `{{` is text, so the templates of other tools (`{{ .Values.x }}`, Jinja) pass
//! through untouched. Written by hand: the grammar is this one rule, and a templating crate would bring a
//! language (conditions, escaping, functions) that a secrets file must not depend on.

use std::collections::HashMap;

use zeroize::Zeroizing;

/// A template read once: its text and placeholders, over its distinct references. The caller resolves
/// [`Template::references`] its own way (the CLI's resolver or daemon, the Python package's) and [`Template::fill`]s.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
    references: Vec<Placeholder>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    /// The value of `references[i]`.
    Value(usize),
}

/// One distinct reference of a template, with the line of its first placeholder (for error messages).
#[derive(Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// The reference as written, without the braces and blanks around it.
    pub reference: String,
    /// The line its first placeholder opens on, from 1.
    pub line: usize,
}

impl Template {
    /// Reads a template; an error names the line of a placeholder that is not closed.
    pub fn new(text: &str) -> Result<Self, Unclosed> {
        let mut references: Vec<Placeholder> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let parts = parse(text)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Part::Text(text.to_owned()),
                Piece::Reference { text, line } => {
                    Part::Value(*index.entry(text).or_insert_with(|| {
                        references.push(Placeholder {
                            reference: text.to_owned(),
                            line,
                        });
                        references.len() - 1
                    }))
                }
            })
            .collect();
        Ok(Self { parts, references })
    }

    /// Each distinct reference once, in the order of its first placeholder.
    pub fn references(&self) -> &[Placeholder] {
        &self.references
    }

    /// The text with every placeholder replaced by `value(i)`, the value of `references()[i]`.
    pub fn fill<'a>(&'a self, value: impl Fn(usize) -> &'a [u8]) -> Zeroizing<Vec<u8>> {
        let part = |part: &'a Part| -> &'a [u8] {
            match *part {
                Part::Text(ref text) => text.as_bytes(),
                Part::Value(i) => value(i),
            }
        };
        // Sized up front: a reallocation would leave a copy of the values behind, unzeroized.
        let mut bytes = Vec::with_capacity(self.parts.iter().map(|p| part(p).len()).sum());
        for p in &self.parts {
            bytes.extend_from_slice(part(p));
        }
        Zeroizing::new(bytes)
    }
}

/// A part of a template: text to copy, or the reference whose value goes there.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Copied as it is.
    Text(&'a str),
    /// A placeholder: the reference as written, and the line (from 1) it stands on.
    Reference {
        /// The reference, without the braces and blanks around it.
        text: &'a str,
        /// The line the placeholder opens on, from 1.
        line: usize,
    },
}

/// A placeholder that starts a reference but does not end with `}}`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: `{{{{ {reference}` is not closed; write `{{{{ {reference} }}}}`")]
pub struct Unclosed {
    line: usize,
    reference: String,
}

/// Splits a template into text and references, in order.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, Unclosed> {
    let mut pieces = Vec::new();
    let mut text_from = 0;
    let mut search_from = 0;
    // Lines are counted as the scan goes, so a large template is read once (an admission request may be hostile).
    let (mut line, mut counted_to) = (1, 0);
    while let Some(found) = template[search_from..].find("{{") {
        let open = search_from + found;
        let start = skip_blanks(template, open + 2);
        let end = start + reference_len(&template[start..]);
        if end == start {
            search_from = open + 2;
            continue;
        }
        line += template[counted_to..open].matches('\n').count();
        counted_to = open;
        let close = skip_blanks(template, end);
        if !template[close..].starts_with("}}") {
            return Err(Unclosed {
                line,
                reference: template[start..end].to_owned(),
            });
        }
        if open > text_from {
            pieces.push(Piece::Text(&template[text_from..open]));
        }
        pieces.push(Piece::Reference {
            text: &template[start..end],
            line,
        });
        search_from = close + 2;
        text_from = search_from;
    }
    if text_from < template.len() {
        pieces.push(Piece::Text(&template[text_from..]));
    }
    Ok(pieces)
}

fn skip_blanks(text: &str, from: usize) -> usize {
    from + text[from..].len() - text[from..].trim_start_matches([' ', '\t']).len()
}

/// The length of the reference `text` starts with (`INSTANCE://` then anything but blanks and braces), or 0.
fn reference_len(text: &str) -> usize {
    let scheme = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    if scheme == 0 || !text.as_bytes()[0].is_ascii_lowercase() || !text[scheme..].starts_with("://")
    {
        return 0;
    }
    let rest = &text[scheme + 3..];
    let path = rest
        .find(|c: char| c.is_whitespace() || c == '{' || c == '}')
        .unwrap_or(rest.len());
    if path == 0 { 0 } else { scheme + 3 + path }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reference(text: &str, line: usize) -> Piece<'_> {
        Piece::Reference { text, line }
    }

    #[test]
    fn placeholders_become_references_and_the_rest_stays_text() {
        let template =
            "user={{ local://db#user }}\npass={{aws-sm://ci/db?version-stage=AWSPREVIOUS#/a/b}}!\n";
        assert_eq!(
            parse(template).unwrap(),
            [
                Piece::Text("user="),
                reference("local://db#user", 1),
                Piece::Text("\npass="),
                reference("aws-sm://ci/db?version-stage=AWSPREVIOUS#/a/b", 2),
                Piece::Text("!\n"),
            ]
        );
        assert_eq!(
            parse("{{\tgcp-sm://p/s }}{{ prod-aws://x }}").unwrap(),
            [reference("gcp-sm://p/s", 1), reference("prod-aws://x", 1)]
        );
    }

    #[test]
    fn a_template_fills_each_placeholder_from_its_distinct_reference() {
        let template =
            Template::new("a={{ local://x }}\nb={{ local://y }} {{local://x}}\n{{ .Values.z }}")
                .unwrap();
        let placeholder = |reference: &str, line| Placeholder {
            reference: reference.to_owned(),
            line,
        };
        assert_eq!(
            template.references(),
            [placeholder("local://x", 1), placeholder("local://y", 2)]
        );
        let values: [&[u8]; 2] = [b"X", b"\0y"];
        assert_eq!(
            template.fill(|i| values[i]).as_slice(),
            b"a=X\nb=\0y X\n{{ .Values.z }}"
        );
        let plain = Template::new("no placeholders").unwrap();
        assert!(plain.references().is_empty());
        assert_eq!(
            plain.fill(|_| unreachable!()).as_slice(),
            b"no placeholders"
        );
    }

    #[test]
    fn other_tools_braces_are_text() {
        for text in [
            "{{ .Values.image }}",
            "{% if x %}{{ x }}{% endif %}",
            "{{}}",
            "{{ ://x }}",
            "{{ Aws-sm://x }}",
            "{{ aws-sm:// }}",
            "{{{",
            "a {{ b",
            "",
        ] {
            let expected: Vec<Piece> = if text.is_empty() {
                vec![]
            } else {
                vec![Piece::Text(text)]
            };
            assert_eq!(parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn a_large_template_is_read_in_linear_time() {
        // 40,000 placeholders on 40,000 lines (about an annotation's 256 KiB size limit): counting lines from
        // the start for each would take seconds; read once, it takes milliseconds even in a debug build.
        let template = "{{ local://k }}\n".repeat(40_000);
        let started = std::time::Instant::now();
        let pieces = parse(&template).unwrap();
        assert_eq!(pieces.len(), 80_000);
        assert_eq!(pieces[79_998], reference("local://k", 40_000));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error_naming_its_line() {
        let err = parse("a\nb={{ local://db\n}}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: `{{ local://db` is not closed; write `{{ local://db }}`"
        );
        assert!(parse("{{ local://db }").is_err());
        assert!(parse("{{ local://db {{ local://x }}").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(2000), ..ProptestConfig::default() })]

        /// No text panics; the pieces cover the template in order (text as it is, each reference inside its
        /// braces on the line it names), and an error names a line of the text.
        #[test]
        fn fuzz_any_text_parses_or_names_a_line(
            text in prop_oneof![
                "(\\{\\{|\\}\\}|[ \\t\\n]|local://|aws-sm://[a-z#/]{0,4}|é|[a-z{}:/ ]){0,24}",
                ".{0,80}",
            ]
        ) {
            let lines = 1 + text.matches('\n').count();
            match parse(&text) {
                Ok(pieces) => {
                    let mut at = 0;
                    for piece in pieces {
                        match piece {
                            Piece::Text(t) => {
                                prop_assert!(text[at..].starts_with(t));
                                at += t.len();
                            }
                            Piece::Reference { text: r, line } => {
                                let open = at + text[at..].find(r).unwrap();
                                prop_assert!(text[at..open].starts_with("{{"));
                                prop_assert_eq!(line, 1 + text[..at].matches('\n').count());
                                let close = open + r.len();
                                at = close + text[close..].find("}}").unwrap() + 2;
                            }
                        }
                    }
                    prop_assert_eq!(at, text.len());
                }
                Err(e) => prop_assert!((1..=lines).contains(&e.line)),
            }
        }
    }

    proptest! {
        /// Text and references put together come apart again: nothing is lost, moved or invented.
        #[test]
        fn texts_and_references_round_trip(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z \\n.%:/-]{0,12}".prop_map(|t| (false, t)),
                    "(local|aws-sm|gcp-sm)://[a-z/#?=]{1,10}".prop_map(|r| (true, r)),
                ],
                0..8,
            )
        ) {
            let mut template = String::new();
            for (is_reference, text) in &parts {
                if *is_reference {
                    template.push_str("{{ ");
                    template.push_str(text);
                    template.push_str(" }}");
                } else {
                    template.push_str(text);
                }
            }
            let pieces = parse(&template).unwrap();
            let references: Vec<&str> = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Reference { text, .. } => Some(*text),
                    Piece::Text(_) => None,
                })
                .collect();
            let expected: Vec<&str> = parts.iter().filter(|(r, _)| *r).map(|(_, t)| t.as_str()).collect();
            prop_assert_eq!(references, expected);
            let rebuilt: String = pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => (*t).to_owned(),
                    Piece::Reference { text, .. } => format!("{{{{ {text} }}}}"),
                })
                .collect();
            prop_assert_eq!(rebuilt, template);
        }
    }
}

//! The protobuf text format of `flyteidl.core.Secret`, read as golang/protobuf's `proto.UnmarshalText` reads it
//! (flyteplugins' `unmarshalSecret`; golang/protobuf 1.5 `proto/text_decode.go`, its own parser, not prototext).
//!
//! What flytepropeller writes (`proto.MarshalTextString`): one `name: value` line per field that is not its
//! default, in declaration order, enums by name, strings in double quotes with `\n`, `\r`, `\t`, `\"`, `\\` and
//! every other byte outside printable ASCII as a three-digit octal escape. What this reader takes, as Go's does:
//! any whitespace and `#` comments between tokens (so protobuf-go's randomly doubled spaces too), `,` or `;`
//! after a field, single or double quotes, adjacent strings concatenated, the C escapes, `\xHH`, `\uHHHH`,
//! `\UHHHHHHHH`, enums by name or number. A field given twice and an unknown field are errors, as in Go.
//!
//! Hand-written: no crate reads the text format without the message's descriptor, and this is one message of
//! five fields.

use super::{FlyteSecret, MountType};

/// Parses the text of one `flyteidl.core.Secret`. The error says where and what, and quotes no value.
pub(super) fn parse(text: &[u8]) -> Result<FlyteSecret, String> {
    let mut reader = Reader { text, at: 0 };
    let mut secret = FlyteSecret::default();
    let mut seen: Vec<&str> = Vec::new();
    loop {
        reader.skip_space();
        if reader.at == text.len() {
            return Ok(secret);
        }
        let name = reader.identifier().ok_or_else(|| {
            format!(
                "expected a field name at byte {} of the secret's text",
                reader.at
            )
        })?;
        if seen.contains(&name) {
            return Err(format!("field `{name}` is given twice"));
        }
        reader.skip_space();
        if !reader.eat(b':') {
            return Err(format!("expected `:` after `{name}`"));
        }
        reader.skip_space();
        match name {
            "group" | "group_version" | "key" | "env_var" => {
                let bytes = reader
                    .strings()
                    .map_err(|why| format!("field `{name}`: {why}"))?;
                let value = String::from_utf8(bytes)
                    .map_err(|_| format!("field `{name}` is not valid UTF-8"))?;
                match name {
                    "group" => secret.group = value,
                    "group_version" => secret.group_version = value,
                    "key" => secret.key = value,
                    _ => secret.env_var = value,
                }
            }
            "mount_requirement" => {
                let word = reader.identifier().ok_or_else(|| {
                    "field `mount_requirement` needs ANY, ENV_VAR or FILE".to_owned()
                })?;
                secret.mount = match word {
                    "ANY" | "0" => MountType::Any,
                    "ENV_VAR" | "1" => MountType::EnvVar,
                    "FILE" | "2" => MountType::File,
                    other => {
                        return Err(format!(
                            "unknown mount_requirement `{other}`; expected ANY, ENV_VAR or FILE"
                        ));
                    }
                };
            }
            other => {
                return Err(format!(
                    "unknown field `{other}` in a flyteidl.core.Secret (group, group_version, key, mount_requirement, env_var)"
                ));
            }
        }
        seen.push(name);
        reader.skip_space();
        if !reader.eat(b';') {
            reader.eat(b',');
        }
    }
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    /// Go's `skipWhitespace`: spaces, tabs, newlines, carriage returns and `#` comments to the end of the line.
    fn skip_space(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.at += 1,
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.at += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// A run of Go's identifier-or-number characters: letters, digits, `_`, `+`, `-`, `.`.
    fn identifier(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
        {
            self.at += 1;
        }
        // Only ASCII was consumed, so the slice is UTF-8.
        (self.at > start).then(|| std::str::from_utf8(&self.text[start..self.at]).unwrap_or(""))
    }

    /// One or more adjacent quoted strings, concatenated.
    fn strings(&mut self) -> Result<Vec<u8>, String> {
        if !matches!(self.peek(), Some(b'"' | b'\'')) {
            return Err("expected a quoted string".into());
        }
        let mut out = Vec::new();
        while let Some(quote @ (b'"' | b'\'')) = self.peek() {
            self.at += 1;
            self.quoted(quote, &mut out)?;
            self.skip_space();
        }
        Ok(out)
    }

    fn quoted(&mut self, quote: u8, out: &mut Vec<u8>) -> Result<(), String> {
        loop {
            let Some(b) = self.peek() else {
                return Err("a string is not closed".into());
            };
            self.at += 1;
            match b {
                b'\n' => return Err("a string is not closed before the end of its line".into()),
                b'\\' => self.escape(out)?,
                b if b == quote => return Ok(()),
                b => out.push(b),
            }
        }
    }

    /// The escape after a `\`, as golang/protobuf's `unescape`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(e) = self.peek() else {
            return Err("a string ends in `\\`".into());
        };
        self.at += 1;
        let simple = match e {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'?' | b'\'' | b'"' | b'\\' => Some(e),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return Ok(());
        }
        match e {
            b'0'..=b'7' => {
                // Exactly three octal digits, at most 0o377.
                let digits = self.take(2).ok_or("`\\NNN` needs three octal digits")?;
                let text = [&[e][..], digits].concat();
                let value = std::str::from_utf8(&text)
                    .ok()
                    .and_then(|t| u8::from_str_radix(t, 8).ok())
                    .ok_or("`\\NNN` needs three octal digits, at most 377")?;
                out.push(value);
            }
            b'x' | b'X' => {
                let value = self.hex(2)?;
                out.push(u8::try_from(value).map_err(|_| "bad `\\x` escape")?);
            }
            b'u' | b'U' => {
                let value = self.hex(if e == b'u' { 4 } else { 8 })?;
                let c = char::from_u32(value).ok_or("`\\u` names no Unicode code point")?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            other => return Err(format!("unknown escape `\\{}`", char::from(other))),
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.text.get(self.at..self.at + n)?;
        self.at += n;
        Some(taken)
    }

    fn hex(&mut self, n: usize) -> Result<u32, String> {
        self.take(n)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| format!("a hexadecimal escape needs {n} hexadecimal digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_golang_protobuf_writes_reads_back() {
        // proto.MarshalTextString of Secret{group: "db", key: "pass", mount_requirement: FILE, env_var: "DB"}.
        let secret =
            parse(b"group: \"db\"\nkey: \"pass\"\nmount_requirement: FILE\nenv_var: \"DB\"\n")
                .unwrap();
        assert_eq!(
            (
                secret.group.as_str(),
                secret.key.as_str(),
                secret.mount,
                secret.env_var.as_str()
            ),
            ("db", "pass", MountType::File, "DB")
        );
        assert_eq!(secret.group_version, "");
    }

    #[test]
    fn escapes_as_go_reads_them() {
        // é as golang/protobuf writes it (bytes 303 251), a quote, a backslash, a tab.
        let secret = parse(br#"group: "caf\303\251 \"q\" \\ \t""#).unwrap();
        assert_eq!(secret.group, "café \"q\" \\ \t");
        let secret = parse(br#"group: 'a' "b" 'c\x41\u00e9\U0001F600\101\?\''"#).unwrap();
        assert_eq!(secret.group, "abcAé😀A?'");
    }

    #[test]
    fn separators_comments_numbers_and_doubled_spaces() {
        let secret =
            parse(b"# a comment\ngroup:  \"g\";key:\t'k', mount_requirement:  1 ").unwrap();
        assert_eq!(
            (secret.group.as_str(), secret.key.as_str(), secret.mount),
            ("g", "k", MountType::EnvVar)
        );
        assert_eq!(parse(b"").unwrap(), FlyteSecret::default());
    }

    #[test]
    fn mistakes_are_named() {
        for (text, fragment) in [
            (
                &b"group: \"x\" colour: \"red\""[..],
                "unknown field `colour`",
            ),
            (b"group \"x\"", "expected `:` after `group`"),
            (b"group: \"x", "not closed"),
            (b"group: \"x\ny\"", "before the end of its line"),
            (b"group: \"x\" group: \"y\"", "given twice"),
            (
                b"group: \"x\" mount_requirement: SOMETIMES",
                "unknown mount_requirement",
            ),
            (b"mount_requirement: 7", "unknown mount_requirement"),
            (b"group: FILE", "expected a quoted string"),
            (b"group: \"\\9\"", "unknown escape"),
            (b"group: \"\\12\"", "three octal digits"),
            (b"group: \"\\400\"", "at most 377"),
            (b"group: \"\\xZZ\"", "hexadecimal"),
            (b"group: \"\\377\"", "not valid UTF-8"),
            (b": \"x\"", "expected a field name"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(fragment),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

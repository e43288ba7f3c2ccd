//! `exec --env-file`: dotenv files whose values are references or plain text, as `op run --env-file` and
//! `docker run --env-file` take them.
//!
//! The syntax is dotenv's (the `dotenvy` crate): `VAR=VALUE` lines, `#` comments, an optional `export`,
//! single quotes taken as they are, double quotes with `\` escapes, and `$VAR` / `${VAR}` replaced from the
//! environment or earlier lines. An unquoted `#` right after a value (`aws-sm://ci/github#token`) is part of
//! it; after a space it starts a comment.

use std::path::Path;

use zeroize::Zeroizing;

use crate::exit::Usage;

/// The `(VAR, VALUE)` pairs of `path`, in file order. A line that is not dotenv, or a file that cannot be
/// read, is a [`Usage`] error naming the file and line but never a value.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, Zeroizing<String>)>> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Usage(format!(
            "cannot read --env-file {}: {e}; give a dotenv file of VAR=REF lines",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Usage(format!(
            "--env-file {} is not UTF-8 text; give a dotenv file of VAR=REF lines",
            path.display()
        ))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((var, value)) => pairs.push((var, Zeroizing::new(value))),
            Err(dotenvy::Error::LineParse(bad, _)) => {
                let bad = Zeroizing::new(bad);
                return Err(Usage(format!(
                    "{}: {} is not VAR=VALUE; quote a value that holds spaces, and `\\` only before \\, ', \", $ or a space",
                    path.display(),
                    line_of(text, &bad, pairs.last().map(|(var, _)| var.as_str())),
                ))
                .into());
            }
            Err(e) => {
                return Err(
                    Usage(format!("cannot read --env-file {}: {e}", path.display())).into(),
                );
            }
        }
    }
    Ok(pairs)
}

/// Where the text dotenv refused sits, for the message: `line N` when it is found, else after the last
/// variable read.
fn line_of(text: &str, bad: &str, last: Option<&str>) -> String {
    let bad = bad.trim();
    match text.find(bad).filter(|_| !bad.is_empty()) {
        Some(at) => format!("line {}", text[..at].matches('\n').count() + 1),
        None => match last {
            Some(var) => format!("the line after {var}"),
            None => "its first line".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        std::fs::write(&path, text).unwrap();
        Ok(read(&path)?
            .into_iter()
            .map(|(var, value)| (var, value.to_string()))
            .collect())
    }

    #[test]
    fn references_plain_values_quotes_and_comments() {
        let pairs = parse(
            "\u{feff}# the app's settings\n\
             GITHUB_TOKEN=aws-sm://ci/github#github_token\n\
             export DB_PASSWORD='gcp-sm://proj/db'   # a comment\n\
             GREETING=\"hello world\"\n\
             EMPTY=\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(v, x)| (v.as_str(), x.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("GITHUB_TOKEN", "aws-sm://ci/github#github_token"),
                ("DB_PASSWORD", "gcp-sm://proj/db"),
                ("GREETING", "hello world"),
                ("EMPTY", ""),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_without_its_value() {
        let err = parse("A=1\nB=2\nTOKEN=s3cr3t value with spaces\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3 is not VAR=VALUE"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = parse("A=1\nB=\"unclosed s3cr3t\n").unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("is not VAR=VALUE"), "{err}");
    }
}

//! Anyscale's IAM mapping dialect: e-mail addresses in a selector, hashed before parsing as Anyscale's backend
//! does, and the e-mail shape its values may take.

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
pub(super) fn fnv1_64(bytes: &[u8]) -> u64 {
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

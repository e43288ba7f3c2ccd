//! Kubernetes' name and value rules (`pkg/util/validation`): what a label key, a label value, a DNS subdomain
//! and a DNS label may hold.

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

//! `aws-ps://NAME[?version=N|label=L]`: a parameter of AWS Systems Manager Parameter Store, by name
//! (`app/db/password` is `/app/db/password`: AWS reads a name and the name with a leading `/` as one parameter)
//! or ARN, at the version or label given, else the latest.

use super::{Target, is_region_label};

/// Which version of a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SsmSelector {
    /// A version number (`name:3`).
    Version(u64),
    /// A label attached to a version (`name:prod`).
    Label(String),
}

pub(super) fn parse_ssm(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let mut selector = None;
    for (key, value) in query {
        let parsed = match key.as_str() {
            "version" => {
                SsmSelector::Version(value.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(
                    || format!("parameter version `{value}` must be a positive number"),
                )?)
            }
            "label" => {
                let ok = value.len() <= 100
                    && !value.starts_with(|c: char| c.is_ascii_digit())
                    && !value.to_ascii_lowercase().starts_with("aws")
                    && !value.to_ascii_lowercase().starts_with("ssm")
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !ok {
                    return Err(format!(
                        "parameter label `{value}` must be up to 100 letters, digits, `.`, `-`, `_`, not starting with a digit, aws or ssm"
                    ));
                }
                SsmSelector::Label(value.clone())
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}` for Parameter Store; use version=N or label=LABEL"
                ));
            }
        };
        if selector.replace(parsed).is_some() {
            return Err("give version=N or label=LABEL, not both".into());
        }
    }
    let name = if let Some(rest) = path.strip_prefix("arn:") {
        // arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = parts.len() == 5
            && parts[1] == "ssm"
            && is_region_label(parts[2], 32)
            && parts[4]
                .strip_prefix("parameter/")
                .is_some_and(|n| !n.is_empty());
        if !ok {
            return Err(
                "a parameter ARN must look like arn:aws:ssm:REGION:ACCOUNT:parameter/NAME".into(),
            );
        }
        check_name(&parts[4]["parameter/".len()..])?;
        path.to_owned()
    } else {
        let name = path.trim_start_matches('/');
        check_name(name)?;
        name.to_owned()
    };
    Ok(Target::Ssm { name, selector })
}

/// Parameter Store's names: up to 15 levels of letters, digits, `_`, `.`, `-`, separated by `/`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 1011 {
        return Err("a parameter name is 1 to 1011 characters".into());
    }
    if name.split('/').any(str::is_empty) {
        return Err("a parameter name has no empty level (`//`, or a trailing `/`)".into());
    }
    if name.split('/').count() > 15 {
        return Err("a parameter name has at most 15 levels".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Err(format!(
            "parameter names hold letters, digits and `_.-/` only, not {c:?}"
        ));
    }
    Ok(())
}

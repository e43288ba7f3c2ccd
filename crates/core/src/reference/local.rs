//! `local://NAME`: a relative path in the local store, no versions.

use super::Target;

pub(super) fn parse_local(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    if let Some((key, _)) = query.first() {
        return Err(format!(
            "the local store has no versions; drop `?{key}=...`"
        ));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(
                "local names are relative paths without empty, `.` or `..` segments".into(),
            );
        }
        if segment.contains('\\') || segment.contains('\0') {
            return Err("local names may not hold `\\` or NUL".into());
        }
    }
    Ok(Target::Local {
        name: path.to_owned(),
    })
}

//! `azure-kv://VAULT/NAME[?version=V]`: a secret of an Azure Key Vault, by the vault's name (the host
//! `VAULT.vault.azure.net`, or the instance's DNS suffix) and the secret's name, at a version or the latest.

use super::Target;

pub(super) fn parse_azure(path: &str, query: &[(String, String)]) -> Result<Target, String> {
    let mut version = None;
    for (key, value) in query {
        match key.as_str() {
            "version" => {
                if value.len() != 32 || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "Key Vault version `{value}` is not a version id (32 hexadecimal characters)"
                    ));
                }
                version = Some(value.to_ascii_lowercase());
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}` for Azure Key Vault; use version=ID"
                ));
            }
        }
    }
    let Some((vault, name)) = path.split_once('/') else {
        return Err(
            "an Azure Key Vault reference names the vault and the secret: VAULT/NAME".into(),
        );
    };
    let vault_ok = (3..=24).contains(&vault.len())
        && vault.starts_with(|c: char| c.is_ascii_alphabetic())
        && !vault.ends_with('-')
        && !vault.contains("--")
        && vault.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !vault_ok {
        return Err(format!(
            "`{vault}` is not a Key Vault name (3 to 24 letters, digits and single `-`, starting with a letter)"
        ));
    }
    let name_ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok {
        return Err(format!(
            "`{name}` is not a Key Vault secret name (1 to 127 letters, digits and `-`)"
        ));
    }
    Ok(Target::Azure {
        vault: vault.to_ascii_lowercase(),
        name: name.to_owned(),
        version,
    })
}

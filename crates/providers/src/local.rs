//! The embedded local store: files in a directory (optionally age-encrypted) and/or entries of one JSON or
//! YAML file. It lets Keyway run with no cloud account, for development and on-premises use.

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use keyway_core::reference::{BackendKind, Target};
use keyway_core::{
    Encoding, ErrorKind, ListFilter, Provider, ProviderError, Secret, SecretMeta, SecretValue,
};
use zeroize::{Zeroize, Zeroizing};

/// Settings of one local instance.
#[derive(Debug, Clone, Default)]
pub struct LocalSettings {
    /// Directory whose files are secrets (`NAME` is a relative path; `NAME.age` is decrypted).
    pub dir: Option<PathBuf>,
    /// A JSON or YAML file mapping names to values (strings, or objects for `#field` access).
    pub file: Option<PathBuf>,
    /// age identity file used to decrypt `*.age` files.
    pub age_identity: Option<PathBuf>,
}

impl LocalSettings {
    /// Whether the files these settings name are there, for a daemon about to serve them (`keyway serve`,
    /// `--check`, a reload): `dir` a directory, `file` readable, `age_identity` readable and an age identity
    /// file. The error says which and what to do; the warnings name an identity, a `file`, or plaintext files
    /// under `dir` that other users may read (so they need no keyway to read the secrets). The content of the
    /// store (the entries of `file`, the files' bytes) is data, read at each request, and not judged here.
    pub fn check(&self) -> Result<Vec<String>, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut warnings = Vec::new();
        if let Some(dir) = &self.dir {
            if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "`dir` {} is not a directory; create it or fix the path",
                    dir.display()
                ));
            }
            let open = readable_by_others(dir);
            if open > 0 {
                warnings.push(format!(
                    "{open} plaintext file(s) under `dir` {} may be read by other users (readable by others, in directories they may enter); `chmod -R go-rwx {}`",
                    dir.display(),
                    dir.display()
                ));
            }
        }
        if let Some(file) = &self.file {
            let opened = std::fs::File::open(file).map_err(|e| {
                format!(
                    "`file` {} cannot be read: {e}; create it, fix the path or its mode",
                    file.display()
                )
            })?;
            let mode = opened.metadata().map_or(0, |m| m.permissions().mode());
            if mode & 0o004 != 0 && others_may_enter(parent_dir(file)) {
                warnings.push(format!(
                    "`file` {} may be read by other users (mode {:04o}); chmod 600 it",
                    file.display(),
                    mode & 0o7777
                ));
            }
        }
        let Some(identity) = &self.age_identity else {
            return Ok(warnings);
        };
        let shown = identity.display();
        let text = std::fs::read(identity).map(Zeroizing::new).map_err(|e| {
            format!("`age_identity` {shown} cannot be read: {e}; fix the path or its mode")
        })?;
        identities(&text).map_err(|e| {
                format!("`age_identity` {shown} is not an age identity file ({e}); create one with `age-keygen -o FILE`")
            })?;
        let mode = std::fs::metadata(identity).map_or(0, |m| m.permissions().mode());
        let others = mode & 0o077;
        if others > 0 {
            warnings.push(format!(
                "`age_identity` {shown} may be read by other users (mode {:04o}); chmod 600 it",
                mode & 0o7777
            ));
        }
        Ok(warnings)
    }
}

/// How many stored files a directory tree caps the permission walk at (a start must stay quick).
const WALK_LIMIT: usize = 10_000;

/// Whether other users may enter `dir`: it and every directory above it let others search (`o+x`). A path that
/// cannot be read counts as enterable (it will be made with a usual mode, or this process lacks the right to
/// see, and then a warning is the safe side).
pub fn others_may_enter(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    dir.ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .all(|d| std::fs::metadata(d).map_or(true, |m| m.permissions().mode() & 0o001 != 0))
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The plaintext files (not `*.age`) under `dir` that other users may read: readable by others, reached
/// through directories others may enter. Symlinks are not followed.
fn readable_by_others(dir: &Path) -> usize {
    use std::os::unix::fs::PermissionsExt as _;
    if !others_may_enter(dir) {
        return 0;
    }
    let (mut found, mut seen) = (0, 0);
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > WALK_LIMIT {
                return found;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let others = meta.permissions().mode() & 0o005;
            if meta.is_dir() && others & 0o001 != 0 {
                stack.push(entry.path());
            } else if meta.is_file()
                && others & 0o004 != 0
                && entry.path().extension().is_none_or(|e| e != "age")
            {
                found += 1;
            }
        }
    }
    found
}

/// The local store provider.
#[derive(Debug)]
pub struct LocalProvider {
    settings: LocalSettings,
}

impl LocalProvider {
    /// A provider with the given settings.
    pub fn new(settings: LocalSettings) -> Self {
        LocalProvider { settings }
    }

    fn where_(&self) -> String {
        let mut places = Vec::new();
        if let Some(dir) = &self.settings.dir {
            places.push(format!("directory {}", dir.display()));
        }
        if let Some(file) = &self.settings.file {
            places.push(format!("file {}", file.display()));
        }
        if places.is_empty() {
            "no configured store".to_owned()
        } else {
            places.join(" or ")
        }
    }

    async fn read_file_entry(
        &self,
        file: &Path,
        name: &str,
    ) -> Result<Option<Secret>, ProviderError> {
        let mut entries = read_entries(file).await?;
        let Some(value) = entries.get_mut(name).map(serde_json::Value::take) else {
            scrub_map(&mut entries);
            return Ok(None);
        };
        scrub_map(&mut entries);
        let bytes = match value {
            serde_json::Value::String(s) => s.into_bytes(),
            mut other => {
                let text = serde_json::to_vec(&other).unwrap_or_default();
                scrub(&mut other);
                text
            }
        };
        let version_id = modified_nanos(file).await;
        Ok(Some(Secret {
            value: SecretValue::new(bytes),
            encoding: Encoding::Text,
            meta: SecretMeta {
                name: format!("{}#{name}", file.display()),
                version_id,
                ..SecretMeta::default()
            }
            .into(),
        }))
    }

    async fn read_dir_entry(
        &self,
        dir: &Path,
        name: &str,
    ) -> Result<Option<Secret>, ProviderError> {
        let plain = dir.join(name);
        let encrypted = dir.join(format!("{name}.age"));
        let (path, is_age) = if is_file(&plain).await {
            (plain, false)
        } else if is_file(&encrypted).await {
            (encrypted, true)
        } else {
            return Ok(None);
        };
        ensure_inside(dir, &path).await?;
        let io_err = |e: std::io::Error| {
            let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                ErrorKind::PermissionDenied
            } else {
                ErrorKind::Unavailable
            };
            ProviderError::new(
                kind,
                format!(
                    "cannot read {}: {e}; check the file's owner and mode",
                    path.display()
                ),
            )
        };
        let raw = tokio::fs::read(&path).await.map_err(io_err)?;
        let bytes = if is_age {
            self.decrypt(&path, Zeroizing::new(raw)).await?
        } else {
            raw
        };
        let encoding = if std::str::from_utf8(&bytes).is_ok() {
            Encoding::Text
        } else {
            Encoding::Binary
        };
        Ok(Some(Secret {
            value: SecretValue::new(bytes),
            encoding,
            meta: SecretMeta {
                name: path.display().to_string(),
                version_id: modified_nanos(&path).await,
                ..SecretMeta::default()
            }
            .into(),
        }))
    }

    async fn decrypt(
        &self,
        path: &Path,
        ciphertext: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>, ProviderError> {
        let identity_file = self.settings.age_identity.as_ref().ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Misconfigured,
                format!("{} is age-encrypted but no `age_identity` is configured for the local provider", path.display()),
            )
        })?;
        let identities = Zeroizing::new(tokio::fs::read(identity_file).await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Misconfigured,
                format!("cannot read age identity {}: {e}", identity_file.display()),
            )
        })?);
        let path = path.to_owned();
        let identity_name = identity_file.display().to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            let bad = |what: String| ProviderError::new(ErrorKind::PermissionDenied, what);
            let identities = self::identities(&identities).map_err(|e| ProviderError::new(ErrorKind::Misconfigured, format!("{identity_name} is not an age identity file: {e}")))?;
            let reader = age::armor::ArmoredReader::new(&ciphertext[..]);
            let decryptor = age::Decryptor::new(reader)
                .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("{} is not an age file: {e}", path.display())))?;
            let mut plain = Vec::new();
            decryptor
                .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
                .and_then(|mut r| r.read_to_end(&mut plain).map_err(age::DecryptError::from))
                .map_err(|e| {
                    plain.zeroize();
                    bad(format!("cannot decrypt {} with {identity_name}: {e}; check that the file was encrypted to this identity", path.display()))
                })?;
            Ok(plain)
        })
        .await
        .map_err(|_| ProviderError::new(ErrorKind::Unavailable, "the decryption task failed"))?
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn fetch(&self, target: &Target) -> Result<Secret, ProviderError> {
        let Target::Local { name } = target else {
            return Err(ProviderError::new(
                ErrorKind::Invalid,
                "not a local reference",
            ));
        };
        if let Some(file) = &self.settings.file
            && let Some(secret) = self.read_file_entry(file, name).await?
        {
            return Ok(secret);
        }
        if let Some(dir) = &self.settings.dir
            && let Some(secret) = self.read_dir_entry(dir, name).await?
        {
            return Ok(secret);
        }
        Err(ProviderError::new(
            ErrorKind::NotFound,
            format!("local secret `{name}` not found in {}", self.where_()),
        ))
    }

    async fn list(&self, filter: Option<&ListFilter>) -> Result<Vec<String>, ProviderError> {
        let filter = match filter {
            None => None,
            Some(ListFilter::Prefix(prefix)) => Some(prefix.as_str()),
            Some(other) => return Err(other.not_for(BackendKind::Local)),
        };
        let mut names = Vec::new();
        if let Some(file) = &self.settings.file {
            let mut entries = read_entries(file).await?;
            names.extend(entries.keys().cloned());
            scrub_map(&mut entries);
        }
        if let Some(dir) = self.settings.dir.clone() {
            let found = tokio::task::spawn_blocking(move || walk(&dir))
                .await
                .map_err(|_| {
                    ProviderError::new(ErrorKind::Unavailable, "the listing task failed")
                })??;
            names.extend(found);
        }
        names.sort();
        names.dedup();
        names.retain(|n| filter.is_none_or(|f| n.contains(f)));
        Ok(names)
    }
}

/// The identities of an age identity file's content (`age-keygen`'s format).
fn identities(text: &[u8]) -> std::io::Result<Vec<Box<dyn age::Identity>>> {
    age::IdentityFile::from_buffer(text)
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
}

async fn read_entries(
    file: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    let text = Zeroizing::new(tokio::fs::read(file).await.map_err(|e| {
        ProviderError::new(
            ErrorKind::Unavailable,
            format!("cannot read local store file {}: {e}", file.display()),
        )
    })?);
    let is_yaml = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed: Result<serde_json::Value, String> = if is_yaml {
        serde_norway::from_slice(&text).map_err(|e| {
            e.location()
                .map(|l| format!("line {}", l.line()))
                .unwrap_or_default()
        })
    } else {
        serde_json::from_slice(&text).map_err(|e| format!("line {}", e.line()))
    };
    match parsed {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(mut other) => {
            scrub(&mut other);
            Err(ProviderError::new(
                ErrorKind::Misconfigured,
                format!("{} must hold a map of NAME: VALUE entries", file.display()),
            ))
        }
        // The parser's own message can quote the file's content, so only the position is reported.
        Err(position) => Err(ProviderError::new(
            ErrorKind::Misconfigured,
            format!(
                "{} is not valid {} (at {position}); fix the syntax",
                file.display(),
                if is_yaml { "YAML" } else { "JSON" }
            ),
        )),
    }
}

/// Overwrites every string in a parsed tree before it is dropped.
fn scrub(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
        serde_json::Value::Object(map) => scrub_map(map),
        _ => {}
    }
}

fn scrub_map(map: &mut serde_json::Map<String, serde_json::Value>) {
    map.values_mut().for_each(scrub);
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

/// Refuses files that resolve (through symlinks) outside the store's directory.
async fn ensure_inside(dir: &Path, path: &Path) -> Result<(), ProviderError> {
    let (dir, real) = (
        tokio::fs::canonicalize(dir).await,
        tokio::fs::canonicalize(path).await,
    );
    match (dir, real) {
        (Ok(dir), Ok(real)) if real.starts_with(&dir) => Ok(()),
        _ => Err(ProviderError::new(
            ErrorKind::PermissionDenied,
            format!(
                "{} resolves outside the local store directory; replace the symlink with the file",
                path.display()
            ),
        )),
    }
}

async fn modified_nanos(path: &Path) -> String {
    tokio::fs::metadata(path)
        .await
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default()
}

fn walk(dir: &Path) -> Result<Vec<String>, ProviderError> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| {
            ProviderError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot list local store directory {}: {e}",
                    current.display()
                ),
            )
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                stack.push(path);
            } else if file_type.is_file() {
                let Ok(relative) = path.strip_prefix(dir) else {
                    continue;
                };
                if relative
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
                {
                    continue;
                }
                let name = relative.to_string_lossy().into_owned();
                names.push(
                    name.strip_suffix(".age")
                        .map_or(name.clone(), str::to_owned),
                );
            }
        }
    }
    Ok(names)
}

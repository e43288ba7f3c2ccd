//! Files written whole or not at all: a temporary file beside the target (created `0600`, `O_EXCL|O_NOFOLLOW`),
//! written, given its mode and owner, synced, then renamed over the target, and the directory synced; and the
//! checks that keep a rename from failing after others succeeded (`keyway render`, `keyway inject -o`, the
//! binary `render --install-self` copies).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use keyway_core::FileMode;

use crate::exit::Usage;

/// Who a written file belongs to (`None`: the writer's uid or gid).
#[derive(Clone, Copy, Default)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Owner {
    pub fn apply(self, file: &File) -> std::io::Result<()> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::fchown(file, self.uid, self.gid)
    }
}

/// Refuses a NAME whose existing parts (below DIR) or final file are symlinks, whose final part is a
/// directory, or whose earlier parts are not directories: a rename over any of them would fail after other
/// files were already replaced.
pub fn check_target(dir: &Path, name: &Path) -> anyhow::Result<()> {
    let target = dir.join(name);
    let mut path = dir.to_owned();
    for part in name.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Usage(format!(
                    "{} is a symlink; refusing to write through it (remove it first)",
                    path.display()
                ))
                .into());
            }
            Ok(meta) if meta.is_dir() && path == target => {
                return Err(Usage(format!(
                    "{} is a directory, which a secret file cannot replace; remove it or choose another file name",
                    path.display()
                ))
                .into());
            }
            Ok(meta) if !meta.is_dir() && path != target => {
                return Err(Usage(format!(
                    "{} is a file, so {} cannot be written under it; remove it or choose another file name",
                    path.display(),
                    target.display()
                ))
                .into());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        }
    }
    Ok(())
}

pub fn create_parents(dir: &Path, parent: &Path, owner: Owner) -> anyhow::Result<()> {
    if parent == dir || parent.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // The created directories get the files' owner, so a non-root reader can traverse them.
    let mut current = parent.to_owned();
    while current != dir {
        let handle =
            File::open(&current).with_context(|| format!("cannot open {}", current.display()))?;
        owner
            .apply(&handle)
            .with_context(|| format!("cannot chown {}", current.display()))?;
        if !current.pop() {
            break;
        }
    }
    Ok(())
}

/// Replaces `path` with a file of `mode`, owned by the caller, holding `bytes`, at once (as `keyway render`
/// writes each of its files).
pub fn write_file(path: &Path, bytes: &[u8], mode: FileMode) -> std::io::Result<()> {
    write_atomically(path, bytes, mode, Owner::default())
}

/// Replaces `path` with a file holding `bytes`, at once: readers see the old file or the new one.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    owner: Owner,
) -> std::io::Result<()> {
    let temp = stage(path, bytes, mode, owner)?;
    commit(&temp, path)
}

/// Writes `bytes` to a new file beside `path`, with its final mode and owner, synced; returns its path. On an
/// error nothing is left behind.
pub fn stage(path: &Path, bytes: &[u8], mode: FileMode, owner: Owner) -> std::io::Result<PathBuf> {
    let dir = parent(path);
    // The target's name, cut short: a name near the file system's limit (255 bytes) must still leave room.
    let file_name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(64).collect())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{file_name}.keyway-{}-{}",
        std::process::id(),
        unique()
    ));
    let result = (|| {
        // Created 0600 with O_EXCL|O_NOFOLLOW: nobody else can open it while it is being written.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(&temp)?;
        file.write_all(bytes)?;
        // The mode first: once the file is given away, changing it takes CAP_FOWNER.
        file.set_permissions(std::fs::Permissions::from_mode(mode.bits()))?;
        owner.apply(&file)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Renames a [`stage`]d file over `path` and syncs the directory, so the rename survives a crash.
pub fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    let result = std::fs::rename(temp, path);
    if result.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    result?;
    File::open(parent(path))?.sync_all()
}

/// The directory `path` is in (`.` for a bare file name, whose parent is the empty path).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

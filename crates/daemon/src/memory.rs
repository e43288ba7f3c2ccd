//! Keeping the daemon's memory to itself: no core dumps and no ptrace by other processes of the same user
//! (`PR_SET_DUMPABLE` 0, which also makes `/proc/PID/{mem,environ,...}` root's), and, with `lock_memory`, no
//! swapping (`mlockall` of current and future pages), so cached values never reach a disk.

use crate::DaemonError;

/// Applies both at start-up, before any secret is fetched.
pub(crate) fn protect(lock_memory: bool) -> Result<(), DaemonError> {
    match rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        Ok(()) => tracing::debug!("core dumps and ptrace by other processes disabled"),
        Err(e) => tracing::warn!(error = %e, "cannot disable core dumps (PR_SET_DUMPABLE)"),
    }
    if !lock_memory {
        return Ok(());
    }
    let flags = rustix::mm::MlockAllFlags::CURRENT | rustix::mm::MlockAllFlags::FUTURE;
    rustix::mm::mlockall(flags).map_err(|e| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock)
            .current
            .map_or_else(|| "unlimited".to_owned(), |bytes| format!("{bytes} bytes"));
        DaemonError::MemoryLock(format!(
            "[server] lock_memory: cannot lock the daemon's memory ({e}; RLIMIT_MEMLOCK is {limit}); raise the limit (ulimit -l unlimited, systemd LimitMEMLOCK=infinity, or CAP_IPC_LOCK in the container) or set lock_memory = false"
        ))
    })?;
    tracing::info!("memory locked (mlockall): cached values are never swapped out");
    Ok(())
}

//! The host-wide snapshot-set lock: only one snapshot set is being created at a time on the
//! host, whichever process runs the engine (vssd or the CLI's embedded mode).
//!
//! It is an `flock` on a lock file: the kernel drops it when the holder dies, so a crashed
//! holder never leaves the host locked. The lock file must not live on a filesystem that may be
//! frozen (the default is under /run).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};
use vss_model::{ErrorCode, VssError};

/// A held snapshot-set lock; dropping it releases the lock.
#[derive(Debug)]
pub struct SetLock {
    _file: File,
}

impl SetLock {
    /// Takes the lock without waiting; `VSS_E_SNAPSHOT_SET_IN_PROGRESS` if someone holds it.
    pub fn try_acquire(path: &Path) -> Result<SetLock, VssError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                VssError::unexpected(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                VssError::unexpected(format!("cannot open lock file {}: {e}", path.display()))
            })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(SetLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(VssError::new(
                ErrorCode::SnapshotSetInProgress,
                "another snapshot set is being created on this host; wait for it to finish and retry",
            )),
            Err(e) => Err(VssError::unexpected(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set.lock");
        let a = SetLock::try_acquire(&p).unwrap();
        let e = SetLock::try_acquire(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::SnapshotSetInProgress);
        drop(a);
        SetLock::try_acquire(&p).unwrap();
    }
}

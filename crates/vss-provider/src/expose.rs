//! Mount helpers for ExposeSnapshot / UnexposeSnapshot, shared by the providers.
//!
//! * [`bind_read_only`]: a snapshot directory (btrfs, reflink) is exposed as a bind mount made
//!   read-only by a **second** `mount(MS_REMOUNT | MS_BIND | MS_RDONLY)`: a single
//!   `MS_BIND | MS_RDONLY` ignores the read-only flag and leaves the bind writable. The exposure
//!   is also `nosuid,nodev`: a snapshot's set-uid programs and device nodes are data, not
//!   something to run or open through the exposure.
//! * [`mount_read_only`]: a block device (the image provider's read-only loop device) mounted
//!   with per-filesystem options.
//! * [`unmount_exposure`]: `umount2(at, MNT_DETACH)`; a path that is no mount point is already
//!   unexposed.
//!
//! The exposure path must be an existing, empty directory ([`check_expose_target`]).

use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use vss_model::{ErrorCode, VssError};

use crate::volume::read_mountinfo;

/// Checks that `at` is an absolute path naming an existing, empty directory that is not a mount
/// point already. `E_INVALIDARG` otherwise.
pub fn check_expose_target(at: &Path) -> Result<(), VssError> {
    let shown = at.display();
    if !at.is_absolute() {
        return Err(VssError::invalid_arg(format!(
            "exposure path '{shown}' is not absolute; give an absolute path to an empty directory"
        )));
    }
    let meta = std::fs::metadata(at).map_err(|e| {
        VssError::invalid_arg(format!(
            "cannot use '{shown}' as exposure path: {e}; create an empty directory there first"
        ))
    })?;
    if !meta.is_dir() {
        return Err(VssError::invalid_arg(format!(
            "exposure path '{shown}' is not a directory; give an empty directory"
        )));
    }
    let mut entries = std::fs::read_dir(at)
        .map_err(|e| VssError::invalid_arg(format!("cannot list exposure path '{shown}': {e}")))?;
    if entries.next().is_some() {
        return Err(VssError::invalid_arg(format!(
            "exposure path '{shown}' is not empty; give an empty directory"
        )));
    }
    if is_mount_point(at) {
        return Err(VssError::invalid_arg(format!(
            "exposure path '{shown}' is already a mount point; unmount it or choose another \
             directory"
        )));
    }
    Ok(())
}

/// Whether `path` (canonicalized) is a mount point in this mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    read_mountinfo().is_ok_and(|mounts| mounts.iter().any(|m| m.mount_point == canonical))
}

fn mount_error(what: String, e: Errno, hint: &str) -> VssError {
    let code = match e {
        Errno::PERM | Errno::ACCESS => ErrorCode::AccessDenied,
        _ => ErrorCode::ProviderVeto,
    };
    VssError::new(code, format!("{what}: {e}; {hint}"))
}

/// Bind-mounts the directory `source` at `at`, then remounts the bind read-only, `nosuid` and
/// `nodev`. If the remount fails the bind is undone, so the snapshot is never left writable.
pub fn bind_read_only(source: &Path, at: &Path) -> Result<(), VssError> {
    check_expose_target(at)?;
    rustix::mount::mount_bind(source, at).map_err(|e| {
        mount_error(
            format!(
                "cannot bind-mount snapshot '{}' at '{}'",
                source.display(),
                at.display()
            ),
            e,
            "vssd needs CAP_SYS_ADMIN, and the snapshot must still exist",
        )
    })?;
    let flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
    if let Err(e) = rustix::mount::mount_remount(at, flags, "") {
        if let Err(undo) = rustix::mount::unmount(at, UnmountFlags::DETACH) {
            tracing::error!(at = %at.display(), error = %undo, "cannot undo a writable bind mount");
        }
        return Err(mount_error(
            format!("cannot make the bind mount at '{}' read-only", at.display()),
            e,
            "the exposure was undone; check the kernel log",
        ));
    }
    Ok(())
}

/// Mounts the block device `device` read-only (`nosuid,nodev`) at `at` as `fs_type` with the
/// filesystem options `options` (`nouuid,norecovery`).
pub fn mount_read_only(
    device: &Path,
    at: &Path,
    fs_type: &str,
    options: &str,
) -> Result<(), Errno> {
    let data = std::ffi::CString::new(options).map_err(|_| Errno::INVAL)?;
    rustix::mount::mount(
        device,
        at,
        fs_type,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        data.as_c_str(),
    )
}

/// Unmounts the exposure at `at` (`MNT_DETACH`, so a process sitting in it cannot keep it).
/// A path that is gone or no mount point is success: the exposure is already gone.
pub fn unmount_exposure(at: &Path) -> Result<(), VssError> {
    if !is_mount_point(at) {
        return Ok(());
    }
    match rustix::mount::unmount(at, UnmountFlags::DETACH) {
        Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
        Err(e) => Err(mount_error(
            format!("cannot unmount the exposure at '{}'", at.display()),
            e,
            "vssd needs CAP_SYS_ADMIN; unmount it by hand (umount -l)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_target_must_be_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        check_expose_target(dir.path()).unwrap();
        for bad in [Path::new("relative"), &dir.path().join("missing")] {
            let err = check_expose_target(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArg, "{err}");
        }
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let err = check_expose_target(dir.path()).unwrap_err();
        assert!(err.message.contains("not empty"), "{err}");
        let err = check_expose_target(&dir.path().join("f")).unwrap_err();
        assert!(err.message.contains("not a directory"), "{err}");
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!is_mount_point(dir.path()));
        // Not mounted: already unexposed.
        unmount_exposure(dir.path()).unwrap();
        unmount_exposure(&dir.path().join("missing")).unwrap();
    }
}

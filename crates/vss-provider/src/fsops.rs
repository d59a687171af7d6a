//! Filesystem operations shared by the providers and the daemon: `FICLONE`, the `FS_NOCOW_FL`
//! inode flag, `syncfs`, and a probe for reflink support (test-machine.md §5).
//!
//! Every file descriptor opened here is `O_CLOEXEC`, so that no command a provider runs inherits
//! it. **None of these may be called on a frozen filesystem** except [`syncfs`] (which returns at
//! once there): `FICLONE` and the writes of [`probe_reflink`] block until the thaw.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{IFlags, Mode, OFlags};
use rustix::io::Errno;

/// `XFS_SUPER_MAGIC` from `linux/magic.h` (`"XFSB"`).
pub const XFS_SUPER_MAGIC: u64 = 0x5846_5342;

/// `EXT4_SUPER_MAGIC` from `linux/magic.h` (shared by ext2, ext3 and ext4).
pub const EXT4_SUPER_MAGIC: u64 = 0xEF53;

/// The `f_type` of the filesystem holding `fd`, as the unsigned 32-bit magic.
pub fn fs_magic(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    // f_type is signed on some targets; the magic is compared as the unsigned 32-bit value.
    #[allow(clippy::unnecessary_cast)]
    let f_type = rustix::fs::fstatfs(fd)?.f_type as u64 & 0xffff_ffff;
    Ok(f_type)
}

/// Whether the filesystem holding `fd` is one whose files can be cloned with `FICLONE` by this
/// crate: btrfs, or XFS (which also needs `reflink=1`; see [`probe_reflink`]).
pub fn may_reflink(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let magic = fs_magic(fd)?;
    Ok(magic == crate::volume::BTRFS_SUPER_MAGIC || magic == XFS_SUPER_MAGIC)
}

/// Opens a directory `O_RDONLY | O_DIRECTORY | O_CLOEXEC`.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `ioctl(dst, FICLONE, src)`: makes `dst` share all of `src`'s extents (a whole-file reflink).
/// `dst` must be open for writing and on the same filesystem as `src` (before Linux 5.18 also
/// on the same mount).
///
/// Errors worth knowing: `EXDEV` (different filesystem), `EOPNOTSUPP` (no reflink:
/// ext4, XFS with `reflink=0`), `EINVAL` (btrfs: exactly one of the two has `FS_NOCOW_FL`).
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::fs::ioctl_ficlone(dst, src)
}

/// Whether `FS_NOCOW_FL` (`chattr +C`) is set on the file. Filesystems without inode flags
/// (`ENOTTY`, `EOPNOTSUPP`) report `false`.
pub fn has_nocow(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    match rustix::fs::ioctl_getflags(fd) {
        Ok(flags) => Ok(flags.contains(IFlags::NOCOW)),
        Err(Errno::NOTTY | Errno::OPNOTSUPP | Errno::INVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets `FS_NOCOW_FL` on a file (`FS_IOC_GETFLAGS`, then `FS_IOC_SETFLAGS` with the flag added).
/// btrfs honours it only on an empty file.
pub fn set_nocow(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let flags = rustix::fs::ioctl_getflags(fd)?;
    if flags.contains(IFlags::NOCOW) {
        return Ok(());
    }
    rustix::fs::ioctl_setflags(fd, flags | IFlags::NOCOW)
}

/// `syncfs(2)` on the filesystem holding `path` (a file or directory): writes back its dirty
/// data and metadata. The daemon calls it on every volume at the end of PrepareForSnapshot,
/// because dirty data makes a later freeze or btrfs snapshot take seconds. On a frozen
/// filesystem it returns at once.
pub fn syncfs(path: &Path) -> io::Result<()> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .or_else(|e| match e {
        // A file we may not read (or a socket, ...): the directory holding it is on the same
        // filesystem.
        Errno::ACCESS | Errno::PERM | Errno::NXIO | Errno::OPNOTSUPP => {
            match path.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(parent) => open_dir(parent),
                None => Err(e),
            }
        }
        _ => Err(e),
    })
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("{}: {e}", path.display()),
        )
    })?;
    rustix::fs::syncfs(&fd).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("syncfs {}: {e}", path.display()),
        )
    })
}

/// Checks that files in the directory `dir` can be cloned with `FICLONE`: clones a 4 KiB
/// unnamed temporary file (`O_TMPFILE`, never visible, gone on close) into another. A block-size
/// file is used because btrfs stores tiny files inline, which says nothing about data extents.
///
/// `EOPNOTSUPP` means no reflink (ext4, XFS made with `reflink=0`), `EXDEV` cannot happen here,
/// `EROFS` a read-only mount. Must not be called on a frozen filesystem (the write blocks).
pub fn probe_reflink(dir: &Path) -> Result<(), Errno> {
    let dir_fd = open_dir(dir)?;
    if !may_reflink(dir_fd.as_fd())? {
        return Err(Errno::OPNOTSUPP);
    }
    let tmp = |dir_fd: &OwnedFd| {
        rustix::fs::openat(
            dir_fd,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let src = tmp(&dir_fd)?;
    let block = [0x5a_u8; 4096];
    let mut written = 0;
    while written < block.len() {
        written += rustix::io::write(&src, &block[written..])?;
    }
    let dst = tmp(&dir_fd)?;
    ficlone(dst.as_fd(), src.as_fd())?;
    let st = rustix::fs::fstat(&dst)?;
    if st.st_size != 4096 {
        return Err(Errno::IO);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_of_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        syncfs(dir.path()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        syncfs(&file).unwrap();
        let err = syncfs(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn nocow_is_false_where_unsupported() {
        let fd = open_dir(Path::new("/proc")).unwrap();
        assert!(!has_nocow(fd.as_fd()).unwrap());
    }
}

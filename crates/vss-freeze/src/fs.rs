//! The kernel primitives: `FIFREEZE` / `FITHAW` on an open directory, and the identity of a
//! filesystem (its superblock).
//!
//! Why these are kept this small and separate:
//!
//! * A freeze belongs to the *superblock*, not to a mount or a process: it outlives the process
//!   that made it, a second `FIFREEZE` of the same superblock fails with `EBUSY`, and `FITHAW`
//!   of a filesystem that is not frozen fails with `EINVAL` (test-machine.md §4). So a set must
//!   freeze each superblock exactly once, and "EINVAL on thaw" means "already thawed", not an
//!   error.
//! * The ioctls work on any open file of the filesystem, so every mount point is opened
//!   `O_RDONLY | O_DIRECTORY | O_CLOEXEC` *before* anything is frozen; after that, freezing and
//!   thawing never resolve a path on a frozen filesystem (a lookup is fine, but nothing else
//!   of ours should need the filesystem while it is frozen).
//! * `st_dev` is not a superblock identity on btrfs: every subvolume reports its own anonymous
//!   device number, while `FIFREEZE` freezes the whole filesystem. Two mounts of two subvolumes
//!   compared by `st_dev` look like two filesystems, and the second `FIFREEZE` then fails with
//!   `EBUSY` (which we would misreport as "frozen by someone else"); worse, vssd's check "is this
//!   the filesystem of my own state directory?" would answer "no". The superblock's device
//!   number is the `major:minor` of the mount in `/proc/self/mountinfo` (the kernel prints
//!   `sb->s_dev` there), found through `statx(STATX_MNT_ID)`. `st_dev` is the fallback when
//!   that is unavailable; on every other filesystem the two agree.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};

/// `FIFREEZE` = `_IOWR('X', 119, int)`.
const FIFREEZE: Opcode = opcode::read_write::<c_int>(b'X', 119);
/// `FITHAW` = `_IOWR('X', 120, int)`.
const FITHAW: Opcode = opcode::read_write::<c_int>(b'X', 120);

/// Opens a mount point the way freezing needs it: `O_RDONLY | O_DIRECTORY | O_CLOEXEC`
/// (`O_PATH` would not do: ioctls on it fail with `EBADF`).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// `FIFREEZE` on the filesystem of `fd`. `EBUSY`: someone (maybe us) froze it already.
pub(crate) fn fifreeze(fd: impl AsFd) -> Result<(), Errno> {
    // SAFETY: FIFREEZE is `_IOWR('X', 119, int)` but the kernel ignores its argument, so passing
    // none (a null pointer) is fine; it touches no memory of ours.
    unsafe { ioctl(fd, NoArg::<FIFREEZE>::new()) }
}

/// What a `FITHAW` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Thawed {
    /// The filesystem was frozen and is thawed now.
    Thawed,
    /// It was not frozen (`EINVAL`): someone thawed it already.
    NotFrozen,
}

/// `FITHAW` on the filesystem of `fd`; `EINVAL` (not frozen) is [`Thawed::NotFrozen`].
pub(crate) fn fithaw(fd: impl AsFd) -> Result<Thawed, Errno> {
    // SAFETY: FITHAW is `_IOWR('X', 120, int)`; the kernel ignores its argument, so passing none
    // is fine, and it touches no memory of ours.
    match unsafe { ioctl(fd, NoArg::<FITHAW>::new()) } {
        Ok(()) => Ok(Thawed::Thawed),
        Err(Errno::INVAL) => Ok(Thawed::NotFrozen),
        Err(e) => Err(e),
    }
}

/// The superblock's device number of the filesystem `fd` is on (see the module docs).
pub(crate) fn superblock_of_fd(fd: impl AsFd) -> io::Result<u64> {
    let stx = rustix::fs::statx(
        &fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    superblock_of_statx(&stx)
}

/// The superblock's device number of the filesystem holding `path` (which may be any kind of
/// file, a socket too: nothing is opened).
pub(crate) fn superblock_of_path(path: &Path) -> io::Result<u64> {
    let stx = rustix::fs::statx(
        CWD,
        path,
        AtFlags::empty(),
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    superblock_of_statx(&stx)
}

fn superblock_of_statx(stx: &rustix::fs::Statx) -> io::Result<u64> {
    if stx.stx_mask & StatxFlags::MNT_ID.bits() != 0
        && let Some(dev) = mountinfo_device(stx.stx_mnt_id)?
    {
        return Ok(dev);
    }
    Ok(rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor))
}

/// The `major:minor` field of mount `mnt_id` in `/proc/self/mountinfo`.
fn mountinfo_device(mnt_id: u64) -> io::Result<Option<u64>> {
    let text = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        // No /proc (a minimal container): fall back to st_dev.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(parse_mountinfo_device(&text, mnt_id))
}

fn parse_mountinfo_device(text: &str, mnt_id: u64) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let id: u64 = fields.next()?.parse().ok()?;
        if id != mnt_id {
            return None;
        }
        let (major, minor) = fields.nth(1)?.split_once(':')?;
        Some(rustix::fs::makedev(
            major.parse().ok()?,
            minor.parse().ok()?,
        ))
    })
}

/// Whether `a` and `b` are on the same filesystem (superblock); both must exist.
///
/// vssd uses it to refuse freezing the filesystem of its own state directory, writers
/// directory, run directory or socket: a freeze of that filesystem would block vssd itself.
/// btrfs subvolumes of one filesystem count as the same filesystem (they freeze together).
pub fn same_filesystem(a: &Path, b: &Path) -> io::Result<bool> {
    Ok(superblock_of_path(a)? == superblock_of_path(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    98 22 0:51 /sub /mnt/x rw shared:40 - btrfs /dev/loop3 rw\n";
        assert_eq!(
            parse_mountinfo_device(text, 22),
            Some(rustix::fs::makedev(254, 0))
        );
        assert_eq!(
            parse_mountinfo_device(text, 98),
            Some(rustix::fs::makedev(0, 51))
        );
        assert_eq!(parse_mountinfo_device(text, 7), None);
    }

    #[test]
    fn same_filesystem_compares_superblocks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(same_filesystem(dir.path(), &file).unwrap());
        assert!(!same_filesystem(Path::new("/proc/self"), dir.path()).unwrap());
        assert!(same_filesystem(Path::new("/no/such/path"), dir.path()).is_err());
    }

    #[test]
    fn superblock_of_an_open_dir_matches_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_dir(dir.path()).unwrap();
        assert_eq!(
            superblock_of_fd(&fd).unwrap(),
            superblock_of_path(dir.path()).unwrap()
        );
    }
}

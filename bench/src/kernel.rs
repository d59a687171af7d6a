//! The kernel's own cost of a btrfs snapshot: `BTRFS_IOC_SNAP_CREATE_V2` (read-only) and
//! `BTRFS_IOC_SNAP_DESTROY` called directly, the baseline of the catalog figure (what creating
//! and deleting 1,000 snapshots costs with no coordinator, no catalog and no process per
//! snapshot).
//!
//! The provider's wrappers (`vss-provider`'s private `btrfs::sys`) are not public API, so the
//! two ioctls are declared here again from `linux/btrfs.h`.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, open};
use rustix::io::Errno;
use rustix::ioctl::{Opcode, Setter, ioctl, opcode};

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
const BTRFS_PATH_NAME_MAX: usize = 4087;
const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2`, its unions flattened to their largest member.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

const _: () = assert!(size_of::<VolArgs>() == 4096);
const _: () = assert!(size_of::<VolArgsV2>() == 4096);

const SNAP_DESTROY: Opcode = opcode::write::<VolArgs>(BTRFS_IOCTL_MAGIC, 15);
const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(BTRFS_IOCTL_MAGIC, 23);

/// Copies a plain file name into a NUL-terminated buffer.
fn fill_name(buf: &mut [u8], name: &str) -> Result<(), Errno> {
    if name.is_empty() || name.contains(['/', '\0']) || name.len() >= buf.len() {
        return Err(Errno::INVAL);
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

/// Opens a directory (or subvolume root) for the ioctls.
pub fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A read-only snapshot of the subvolume `source`, named `name` in the directory `dir`.
pub fn snapshot(dir: BorrowedFd<'_>, source: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let mut args = VolArgsV2 {
        fd: i64::from(source.as_raw_fd()),
        transid: 0,
        flags: BTRFS_SUBVOL_RDONLY,
        unused: [0; 4],
        name: [0; BTRFS_SUBVOL_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SNAP_CREATE_V2 is `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)` and `VolArgsV2`
    // has that struct's layout and size (asserted above); the kernel only reads it, the name is
    // NUL-terminated and `source` stays open for the call.
    unsafe { ioctl(dir, Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args)) }
}

/// Deletes the subvolume `name` in the directory `dir`.
pub fn destroy(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let mut args = VolArgs {
        fd: 0,
        name: [0; BTRFS_PATH_NAME_MAX + 1],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: SNAP_DESTROY is `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`, which `VolArgs`
    // matches (asserted size); the kernel only reads the NUL-terminated name.
    unsafe { ioctl(dir, Setter::<SNAP_DESTROY, VolArgs>::new(args)) }
}

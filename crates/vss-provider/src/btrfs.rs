//! The btrfs provider: read-only btrfs snapshots of subvolumes (test-machine.md §3).
//!
//! **What is snapshotted.** A volume is a btrfs subvolume root (inode 256): the plain mount of a
//! filesystem (the top-level subvolume, id 5), a `subvol=` mount, or an unmounted subvolume below
//! a mount. The snapshot is one read-only subvolume made with `BTRFS_IOC_SNAP_CREATE_V2` and
//! `BTRFS_SUBVOL_RDONLY`. The ioctl flushes the subvolume's delayed allocation itself and is
//! atomic for the subvolume, so it *is* the point in time: it is never combined with `FIFREEZE`
//! (on a frozen btrfs the snapshot ioctl blocks until the thaw). Subvolumes nested inside the
//! source are not part of its snapshot; btrfs leaves an empty directory in their place.
//!
//! **Where snapshots live.** Always outside the source subvolume, in the subvolume
//! `config.btrfs_snapshot_subvolume` (`.vss`) directly under the filesystem's top-level
//! subvolume: `<top level>/.vss/<snapshot id>`, one subvolume per snapshot. The top level is
//! reached through the volume's own mount when that mount shows it (the plain mount of the
//! filesystem), else through a private mount `config.run_dir/btrfs/<fsid>` (made with
//! `subvolid=5` when no read-write mount of the top level is visible and reused afterwards),
//! else through another visible read-write mount of the top level. `.vss` is created with
//! `BTRFS_IOC_SUBVOL_CREATE` when missing.
//!
//! **Deleting.** `BTRFS_IOC_SNAP_DESTROY` on `.vss` with the snapshot's name (root may delete
//! read-only snapshots). The space is reclaimed later by the btrfs cleaner; deletion is checked
//! by the name being gone from `.vss`, never by free space. After a restart the private mount of
//! a locator is re-established from the fsid in its path.
//!
//! **Exposing.** A bind mount of the snapshot subvolume at the exposure path, made read-only by
//! a second `MS_REMOUNT | MS_BIND | MS_RDONLY` ([`crate::expose::bind_read_only`]); the snapshot
//! is a read-only subvolume anyway. Unexposing unmounts it (`MNT_DETACH`).
//!
//! **Query.** The snapshot subvolumes found in `.vss` of the volume's filesystem (all volumes
//! of one filesystem share it).
//!
//! **Reverting** (RevertToSnapshot) replaces the volume's subvolume by a writable snapshot of
//! the snapshot, swapped into its place with one `renameat2(RENAME_EXCHANGE)`; see `btrfs/revert.rs`
//! for the rules (mounts, open files, nested subvolumes, the default subvolume, undo).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use uuid::Uuid;
use vss_model::{ErrorCode, Id, ProviderType, VssError};

use crate::volume::{
    BTRFS_SUBVOLUME_ROOT_INO, BTRFS_SUPER_MAGIC, FsType, MountInfo, Volume, containing_mount,
    read_mountinfo,
};
use crate::{CommittedSnapshot, Provider, ProviderConfig, ProviderInfo, SnapshotRequest};

mod revert;

pub use revert::{REVERT_TMP_PREFIX, RevertFault};

/// The fixed id of the btrfs provider.
pub const BTRFS_PROVIDER_ID: Id = Uuid::from_u128(0x0b1a5e5c_8f2e_4c6e_9a41_6c1f0b7e2a01);

/// The btrfs ioctls this provider uses, from `linux/btrfs.h`.
mod sys {
    use std::os::fd::{AsRawFd, BorrowedFd};

    use rustix::io::Errno;
    use rustix::ioctl::{Opcode, Setter, Updater, ioctl, opcode};
    use uuid::Uuid;

    const BTRFS_IOCTL_MAGIC: u8 = 0x94;
    const BTRFS_PATH_NAME_MAX: usize = 4087;
    const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
    const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

    /// `struct btrfs_ioctl_vol_args`.
    #[repr(C)]
    pub struct VolArgs {
        fd: i64,
        name: [u8; BTRFS_PATH_NAME_MAX + 1],
    }

    /// `struct btrfs_ioctl_vol_args_v2` (the unions flattened to their largest member).
    #[repr(C)]
    pub struct VolArgsV2 {
        fd: i64,
        transid: u64,
        flags: u64,
        /// `union { struct { size; qgroup_inherit * }; __u64 unused[4]; }`.
        unused: [u64; 4],
        /// `union { char name[BTRFS_SUBVOL_NAME_MAX + 1]; __u64 devid; __u64 subvolid; }`.
        name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
    }

    /// `struct btrfs_ioctl_fs_info_args`.
    #[repr(C)]
    pub struct FsInfoArgs {
        max_id: u64,
        num_devices: u64,
        fsid: [u8; 16],
        nodesize: u32,
        sectorsize: u32,
        clone_alignment: u32,
        csum_type: u16,
        csum_size: u16,
        flags: u64,
        generation: u64,
        metadata_uuid: [u8; 16],
        reserved: [u8; 944],
    }

    /// `struct btrfs_ioctl_ino_lookup_args`.
    #[repr(C)]
    pub struct InoLookupArgs {
        treeid: u64,
        objectid: u64,
        name: [u8; 4080],
    }

    /// `struct btrfs_ioctl_search_key`.
    #[repr(C)]
    pub struct SearchKey {
        tree_id: u64,
        min_objectid: u64,
        max_objectid: u64,
        min_offset: u64,
        max_offset: u64,
        min_transid: u64,
        max_transid: u64,
        min_type: u32,
        max_type: u32,
        nr_items: u32,
        unused: u32,
        unused1: u64,
        unused2: u64,
        unused3: u64,
        unused4: u64,
    }

    /// `struct btrfs_ioctl_search_args`.
    #[repr(C)]
    pub struct SearchArgs {
        key: SearchKey,
        buf: [u8; 4096 - size_of::<SearchKey>()],
    }

    /// One entry of `struct btrfs_ioctl_get_subvol_rootref_args`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct RootRef {
        treeid: u64,
        dirid: u64,
    }

    const BTRFS_MAX_ROOTREF_BUFFER_NUM: usize = 255;

    /// `struct btrfs_ioctl_get_subvol_rootref_args`.
    #[repr(C)]
    pub struct RootRefArgs {
        min_treeid: u64,
        rootref: [RootRef; BTRFS_MAX_ROOTREF_BUFFER_NUM],
        num_items: u8,
        align: [u8; 7],
    }

    const BTRFS_VOL_NAME_MAX: usize = 255;
    const BTRFS_INO_LOOKUP_USER_PATH_MAX: usize = 4080 - BTRFS_VOL_NAME_MAX - 1;

    /// `struct btrfs_ioctl_ino_lookup_user_args`.
    #[repr(C)]
    pub struct InoLookupUserArgs {
        dirid: u64,
        treeid: u64,
        name: [u8; BTRFS_VOL_NAME_MAX + 1],
        path: [u8; BTRFS_INO_LOOKUP_USER_PATH_MAX],
    }

    const _: () = assert!(size_of::<VolArgs>() == 4096);
    const _: () = assert!(size_of::<VolArgsV2>() == 4096);
    const _: () = assert!(size_of::<FsInfoArgs>() == 1024);
    const _: () = assert!(size_of::<InoLookupArgs>() == 4096);
    const _: () = assert!(size_of::<SearchKey>() == 104);
    const _: () = assert!(size_of::<SearchArgs>() == 4096);
    const _: () = assert!(size_of::<RootRefArgs>() == 4096);
    const _: () = assert!(size_of::<InoLookupUserArgs>() == 4096);

    const SUBVOL_CREATE: Opcode = opcode::write::<VolArgs>(BTRFS_IOCTL_MAGIC, 14);
    const SNAP_DESTROY: Opcode = opcode::write::<VolArgs>(BTRFS_IOCTL_MAGIC, 15);
    const TREE_SEARCH: Opcode = opcode::read_write::<SearchArgs>(BTRFS_IOCTL_MAGIC, 17);
    const INO_LOOKUP: Opcode = opcode::read_write::<InoLookupArgs>(BTRFS_IOCTL_MAGIC, 18);
    const DEFAULT_SUBVOL: Opcode = opcode::write::<u64>(BTRFS_IOCTL_MAGIC, 19);
    const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(BTRFS_IOCTL_MAGIC, 23);
    const FS_INFO: Opcode = opcode::read::<FsInfoArgs>(BTRFS_IOCTL_MAGIC, 31);
    const GET_SUBVOL_ROOTREF: Opcode = opcode::read_write::<RootRefArgs>(BTRFS_IOCTL_MAGIC, 61);
    const INO_LOOKUP_USER: Opcode = opcode::read_write::<InoLookupUserArgs>(BTRFS_IOCTL_MAGIC, 62);

    /// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of a subvolume's root directory.
    const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
    /// The root tree, which holds the "default" directory item.
    const BTRFS_ROOT_TREE_OBJECTID: u64 = 1;
    /// The root tree's directory (`BTRFS_ROOT_TREE_DIR_OBJECTID`).
    const BTRFS_ROOT_TREE_DIR_OBJECTID: u64 = 6;
    /// `BTRFS_DIR_ITEM_KEY`.
    const BTRFS_DIR_ITEM_KEY: u32 = 84;
    /// The top-level subvolume (`BTRFS_FS_TREE_OBJECTID`).
    pub const BTRFS_FS_TREE_OBJECTID: u64 = 5;

    /// Copies a single path component into a NUL-terminated name buffer.
    fn fill_name(buf: &mut [u8], name: &str) -> Result<(), Errno> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Errno::INVAL);
        }
        if name.len() >= buf.len() {
            return Err(Errno::NAMETOOLONG);
        }
        buf[..name.len()].copy_from_slice(name.as_bytes());
        Ok(())
    }

    fn vol_args(name: &str) -> Result<VolArgs, Errno> {
        let mut args = VolArgs {
            fd: 0,
            name: [0; BTRFS_PATH_NAME_MAX + 1],
        };
        fill_name(&mut args.name, name)?;
        Ok(args)
    }

    /// `BTRFS_IOC_SNAP_CREATE_V2` with `BTRFS_SUBVOL_RDONLY`: a read-only snapshot of the
    /// subvolume `source` named `name` inside the directory `dir`.
    pub fn snap_create_readonly(
        dir: BorrowedFd<'_>,
        source: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), Errno> {
        snap_create(dir, source, name, true)
    }

    /// `BTRFS_IOC_SNAP_CREATE_V2`: a snapshot of the subvolume `source` named `name` inside the
    /// directory `dir`, read-only or writable.
    pub fn snap_create(
        dir: BorrowedFd<'_>,
        source: BorrowedFd<'_>,
        name: &str,
        read_only: bool,
    ) -> Result<(), Errno> {
        let mut args = VolArgsV2 {
            fd: i64::from(source.as_raw_fd()),
            transid: 0,
            flags: if read_only { BTRFS_SUBVOL_RDONLY } else { 0 },
            unused: [0; 4],
            name: [0; BTRFS_SUBVOL_NAME_MAX + 1],
        };
        fill_name(&mut args.name, name)?;
        // SAFETY: SNAP_CREATE_V2 is `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)` and
        // `VolArgsV2` has that struct's layout and size (asserted above); the kernel only reads
        // the struct, whose name is NUL-terminated and whose fd stays open for the call.
        unsafe { ioctl(dir, Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args)) }
    }

    /// `BTRFS_IOC_SUBVOL_CREATE`: an empty subvolume `name` inside the directory `dir`.
    pub fn subvol_create(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        let args = vol_args(name)?;
        // SAFETY: SUBVOL_CREATE is `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`, which
        // `VolArgs` matches (asserted size); the kernel only reads the NUL-terminated name.
        unsafe { ioctl(dir, Setter::<SUBVOL_CREATE, VolArgs>::new(args)) }
    }

    /// `BTRFS_IOC_SNAP_DESTROY`: deletes the subvolume `name` inside the directory `dir`.
    pub fn snap_destroy(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        let args = vol_args(name)?;
        // SAFETY: SNAP_DESTROY is `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)`, which `VolArgs`
        // matches (asserted size); the kernel only reads the NUL-terminated name.
        unsafe { ioctl(dir, Setter::<SNAP_DESTROY, VolArgs>::new(args)) }
    }

    /// `BTRFS_IOC_INO_LOOKUP` for the root directory: the id of the subvolume holding `fd`.
    pub fn subvolume_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
        let mut args = InoLookupArgs {
            treeid: 0,
            objectid: BTRFS_FIRST_FREE_OBJECTID,
            name: [0; 4080],
        };
        // SAFETY: INO_LOOKUP is `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)`, which
        // `InoLookupArgs` matches (asserted size). treeid 0 means "the subvolume of fd", and
        // for the root directory the kernel needs no privilege; it writes the struct back.
        unsafe { ioctl(fd, Updater::<INO_LOOKUP, InoLookupArgs>::new(&mut args))? };
        Ok(args.treeid)
    }

    /// `BTRFS_IOC_DEFAULT_SUBVOL`: makes subvolume `id` the one mounted without `subvol=`.
    pub fn set_default_subvolume(fd: BorrowedFd<'_>, id: u64) -> Result<(), Errno> {
        // SAFETY: DEFAULT_SUBVOL is `_IOW(0x94, 19, __u64)`; the kernel reads one u64.
        unsafe { ioctl(fd, Setter::<DEFAULT_SUBVOL, u64>::new(id)) }
    }

    /// The default subvolume's id (the "default" item of the root tree directory, found with
    /// `BTRFS_IOC_TREE_SEARCH` as libbtrfsutil does); the top level when there is none.
    pub fn default_subvolume(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
        let mut args = SearchArgs {
            key: SearchKey {
                tree_id: BTRFS_ROOT_TREE_OBJECTID,
                min_objectid: BTRFS_ROOT_TREE_DIR_OBJECTID,
                max_objectid: BTRFS_ROOT_TREE_DIR_OBJECTID,
                min_offset: 0,
                max_offset: u64::MAX,
                min_transid: 0,
                max_transid: u64::MAX,
                min_type: BTRFS_DIR_ITEM_KEY,
                max_type: BTRFS_DIR_ITEM_KEY,
                nr_items: 4096,
                unused: 0,
                unused1: 0,
                unused2: 0,
                unused3: 0,
                unused4: 0,
            },
            buf: [0; 4096 - size_of::<SearchKey>()],
        };
        // SAFETY: TREE_SEARCH is `_IOWR(0x94, 17, struct btrfs_ioctl_search_args)`, which
        // `SearchArgs` matches (asserted size). The kernel reads the key and writes back the
        // key (nr_items = items found) and at most `buf.len()` bytes of items into `buf`.
        unsafe { ioctl(fd, Updater::<TREE_SEARCH, SearchArgs>::new(&mut args))? };
        Ok(default_from_search(&args.buf, args.key.nr_items).unwrap_or(BTRFS_FS_TREE_OBJECTID))
    }

    fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn le_u16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    /// Parses TREE_SEARCH results: `struct btrfs_ioctl_search_header` (native endian) followed
    /// by the item, here `struct btrfs_dir_item`s (little endian, packed: location key 17
    /// bytes, transid 8, data_len 2, name_len 2, type 1, then name and data). Returns the
    /// location objectid of the item named "default".
    pub(super) fn default_from_search(buf: &[u8], items: u32) -> Option<u64> {
        const HEADER: usize = 32;
        const DIR_ITEM: usize = 30;
        let mut at = 0;
        for _ in 0..items {
            let item_type = ne_u32(buf, at + 24)?;
            let len = ne_u32(buf, at + 28)? as usize;
            let data = buf.get(at + HEADER..at + HEADER + len)?;
            if item_type == BTRFS_DIR_ITEM_KEY {
                // One item may hold several directory entries whose names hash alike.
                let mut d = 0;
                while d + DIR_ITEM <= data.len() {
                    let location = u64::from_le_bytes(data[d..d + 8].try_into().ok()?);
                    let data_len = usize::from(le_u16(data, d + 25)?);
                    let name_len = usize::from(le_u16(data, d + 27)?);
                    let name = data.get(d + DIR_ITEM..d + DIR_ITEM + name_len)?;
                    if name == b"default" {
                        return Some(location);
                    }
                    d += DIR_ITEM + name_len + data_len;
                }
            }
            at += HEADER + len;
        }
        None
    }

    /// The subvolumes directly inside the subvolume of `fd`, as (subvolume id, inode number
    /// of the directory holding it) (`BTRFS_IOC_GET_SUBVOL_ROOTREF`, Linux 4.18).
    pub fn child_subvolumes(fd: BorrowedFd<'_>) -> Result<Vec<(u64, u64)>, Errno> {
        let mut args = RootRefArgs {
            min_treeid: 0,
            rootref: [RootRef {
                treeid: 0,
                dirid: 0,
            }; BTRFS_MAX_ROOTREF_BUFFER_NUM],
            num_items: 0,
            align: [0; 7],
        };
        let mut found = Vec::new();
        loop {
            args.num_items = 0;
            // SAFETY: GET_SUBVOL_ROOTREF is `_IOWR(0x94, 61, struct
            // btrfs_ioctl_get_subvol_rootref_args)`, which `RootRefArgs` matches (asserted
            // size). The kernel reads min_treeid and writes the struct back, also when it
            // fails with EOVERFLOW (more entries than fit; min_treeid is then advanced).
            let r = unsafe {
                ioctl(
                    fd,
                    Updater::<GET_SUBVOL_ROOTREF, RootRefArgs>::new(&mut args),
                )
            };
            let n = usize::from(args.num_items).min(BTRFS_MAX_ROOTREF_BUFFER_NUM);
            found.extend(args.rootref[..n].iter().map(|r| (r.treeid, r.dirid)));
            match r {
                Ok(()) => return Ok(found),
                Err(Errno::OVERFLOW) if n > 0 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `BTRFS_IOC_INO_LOOKUP_USER`: the path of subvolume `treeid` inside the subvolume whose
    /// root directory is `fd`, given the directory `dirid` holding it (Linux 4.18).
    pub fn child_subvolume_path(
        fd: BorrowedFd<'_>,
        treeid: u64,
        dirid: u64,
    ) -> Result<std::path::PathBuf, Errno> {
        use std::os::unix::ffi::OsStrExt;
        let mut args = InoLookupUserArgs {
            dirid,
            treeid,
            name: [0; BTRFS_VOL_NAME_MAX + 1],
            path: [0; BTRFS_INO_LOOKUP_USER_PATH_MAX],
        };
        // SAFETY: INO_LOOKUP_USER is `_IOWR(0x94, 62, struct btrfs_ioctl_ino_lookup_user_args)`,
        // which `InoLookupUserArgs` matches (asserted size). The kernel reads the ids and
        // writes NUL-terminated name and path back.
        unsafe {
            ioctl(
                fd,
                Updater::<INO_LOOKUP_USER, InoLookupUserArgs>::new(&mut args),
            )?
        };
        let c_str = |b: &[u8]| {
            let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            std::ffi::OsStr::from_bytes(&b[..end]).to_owned()
        };
        // `path` is the directory's path from fd, ending in '/' unless empty.
        let mut path = std::path::PathBuf::from(c_str(&args.path));
        path.push(c_str(&args.name));
        Ok(path)
    }

    /// `BTRFS_IOC_FS_INFO`: the filesystem's fsid.
    pub fn fsid(fd: BorrowedFd<'_>) -> Result<Uuid, Errno> {
        let mut args = FsInfoArgs {
            max_id: 0,
            num_devices: 0,
            fsid: [0; 16],
            nodesize: 0,
            sectorsize: 0,
            clone_alignment: 0,
            csum_type: 0,
            csum_size: 0,
            flags: 0,
            generation: 0,
            metadata_uuid: [0; 16],
            reserved: [0; 944],
        };
        // SAFETY: FS_INFO is `_IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)`, which
        // `FsInfoArgs` matches (asserted size). The kernel reads the zeroed `flags` (requesting
        // no optional fields) and writes the struct back; every bit pattern is valid for it.
        unsafe { ioctl(fd, Updater::<FS_INFO, FsInfoArgs>::new(&mut args))? };
        Ok(Uuid::from_bytes(args.fsid))
    }
}

/// The root of the btrfs subvolume that holds `path` (which must exist), or `None` when `path`
/// is not on btrfs. The walk stays below the mount containing `path`: for a bind mount of a
/// plain directory the mount point is returned. See [`crate::volume::covering_volume`], which
/// also answers for other filesystems.
pub fn subvolume_of(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let canonical = std::fs::canonicalize(path)?;
    let mounts = read_mountinfo()?;
    let Some(mount) = containing_mount(&mounts, &canonical) else {
        return Ok(None);
    };
    if mount.fs_type != "btrfs" {
        return Ok(None);
    }
    Ok(Some(
        crate::volume::btrfs_subvolume_root_of(&canonical, &mount.mount_point)?
            .unwrap_or_else(|| mount.mount_point.clone()),
    ))
}

/// The btrfs snapshot provider.
#[derive(Debug)]
pub struct BtrfsProvider {
    config: ProviderConfig,
    /// Serializes finding/mounting the top level and creating `.vss`, so that two volumes of
    /// one filesystem prepared at once do not mount it twice.
    lock: Mutex<()>,
    /// Tests only: the step of a revert after which it fails (to exercise the undo).
    revert_fault: Option<RevertFault>,
}

/// Formats an OS failure: what failed, the errno text, what to do.
fn os_error(code: ErrorCode, what: impl std::fmt::Display, err: Errno, hint: &str) -> VssError {
    VssError::new(code, format!("{what}: {err}; {hint}"))
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn is_btrfs(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    // f_type is signed on some targets; the magic is compared as the unsigned 32-bit value.
    #[allow(clippy::unnecessary_cast)]
    let f_type = rustix::fs::fstatfs(fd)?.f_type as u64 & 0xffff_ffff;
    Ok(f_type == BTRFS_SUPER_MAGIC)
}

/// Whether `name` in `dir` is a btrfs subvolume root; `None` when it does not exist.
fn subvolume_at(dir: BorrowedFd<'_>, name: &str) -> Result<Option<bool>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir()
                && st.st_ino == BTRFS_SUBVOLUME_ROOT_INO,
        )),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last mount listed on `mount_point`, if it is the one visible there.
fn visible_mount_at<'a>(mounts: &'a [MountInfo], mount_point: &Path) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == mount_point)
}

/// Whether `m` is a visible read-write mount showing the top-level subvolume of its filesystem.
fn shows_top_level(mounts: &[MountInfo], m: &MountInfo) -> bool {
    m.fs_type == "btrfs"
        && m.root == Path::new("/")
        && !m.is_read_only()
        && visible_mount_at(mounts, &m.mount_point).is_some_and(|v| v.mount_id == m.mount_id)
}

fn mountinfo() -> Result<Vec<MountInfo>, VssError> {
    read_mountinfo().map_err(|e| {
        VssError::new(
            ErrorCode::ProviderVeto,
            format!("cannot read /proc/self/mountinfo: {e}; is /proc mounted?"),
        )
    })
}

impl BtrfsProvider {
    /// A provider with these settings.
    pub fn new(config: ProviderConfig) -> Self {
        BtrfsProvider {
            config,
            lock: Mutex::new(()),
            revert_fault: None,
        }
    }

    /// For tests of the revert's undo: makes every revert fail right after `step` (then
    /// undo what it did). Not for production use.
    #[doc(hidden)]
    pub fn with_revert_fault(mut self, step: RevertFault) -> Self {
        self.revert_fault = Some(step);
        self
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The validated name of the snapshot subvolume (`.vss`).
    fn snapshot_subvolume_name(&self) -> Result<&str, VssError> {
        let name = self.config.btrfs_snapshot_subvolume.as_str();
        let mut components = Path::new(name).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => Ok(name),
            _ => Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "the btrfs snapshot subvolume name '{name}' is not a single directory name; \
                     fix the provider configuration (default: .vss)"
                ),
            )),
        }
    }

    /// The private mount points' parent (`<run_dir>/btrfs`), created, canonical.
    fn private_base(&self) -> Result<PathBuf, VssError> {
        let base = self.config.run_dir.join("btrfs");
        let fail = |what: &str, e: std::io::Error| {
            VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "cannot {what} the provider run directory '{}': {e}; check that the run \
                     directory is writable by vssd",
                    base.display()
                ),
            )
        };
        std::fs::create_dir_all(&base).map_err(|e| fail("create", e))?;
        std::fs::canonicalize(&base).map_err(|e| fail("resolve", e))
    }

    /// The key naming a filesystem's private mount: its fsid, else `dev-<major>-<minor>`.
    fn fs_key(path: &Path, mount: &MountInfo) -> String {
        match open_dir(path).and_then(|fd| sys::fsid(fd.as_fd())) {
            Ok(fsid) => fsid.hyphenated().to_string(),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "BTRFS_IOC_FS_INFO failed");
                format!("dev-{}-{}", mount.major, mount.minor)
            }
        }
    }

    /// Mounts the top level of the filesystem of `fs_mount` (idempotently) on
    /// `<run_dir>/btrfs/<key>` and returns that path.
    fn private_mount(
        &self,
        mounts: &[MountInfo],
        fs_mount: &MountInfo,
        key: &str,
    ) -> Result<PathBuf, VssError> {
        let dir = self.private_base()?.join(key);
        if let Some(existing) = visible_mount_at(mounts, &dir) {
            if existing.same_filesystem(fs_mount) && shows_top_level(mounts, existing) {
                return Ok(dir);
            }
            return Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "'{}' is already a mount point, but not of the read-write top level of \
                     btrfs {} (it shows {} '{}' of {}); unmount it and retry",
                    dir.display(),
                    fs_mount.source,
                    existing.fs_type,
                    existing.root.display(),
                    existing.source
                ),
            ));
        }
        std::fs::create_dir_all(&dir).map_err(|e| {
            VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "cannot create the private mount point '{}': {e}; check that the run \
                     directory is writable by vssd",
                    dir.display()
                ),
            )
        })?;
        rustix::mount::mount(
            fs_mount.source.as_str(),
            &dir,
            "btrfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(c"subvolid=5"),
        )
        .map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                format_args!(
                    "cannot mount the top-level subvolume of btrfs {} (subvolid=5) on '{}'",
                    fs_mount.source,
                    dir.display()
                ),
                e,
                "vssd needs CAP_SYS_ADMIN and the device must still be present; or mount the \
                 filesystem's top level yourself",
            )
        })?;
        // Mounts below it need not propagate anywhere.
        if let Err(e) =
            rustix::mount::mount_change(&dir, rustix::mount::MountPropagationFlags::PRIVATE)
        {
            tracing::debug!(dir = %dir.display(), error = %e, "making the private mount private");
        }
        tracing::info!(device = %fs_mount.source, dir = %dir.display(), "mounted btrfs top level");
        Ok(dir)
    }

    /// A directory showing the top-level subvolume of `volume`'s filesystem, mounting it
    /// privately when no read-write mount of it is visible. Call with the lock held.
    fn top_level(&self, volume: &Volume) -> Result<PathBuf, VssError> {
        let mounts = mountinfo()?;
        let shown = volume.path.display();
        let vol_mount = containing_mount(&mounts, &volume.path)
            .filter(|m| m.fs_type == "btrfs")
            .ok_or_else(|| {
                VssError::new(
                    ErrorCode::VolumeNotSupportedByProvider,
                    format!(
                        "'{shown}' is no longer on a mounted btrfs filesystem; check the mounts"
                    ),
                )
            })?;
        if shows_top_level(&mounts, vol_mount) {
            return Ok(vol_mount.mount_point.clone());
        }
        let key = Self::fs_key(&volume.path, vol_mount);
        let private = self.private_base()?.join(&key);
        if let Some(m) = visible_mount_at(&mounts, &private)
            && m.same_filesystem(vol_mount)
            && shows_top_level(&mounts, m)
        {
            return Ok(private);
        }
        if let Some(other) = mounts
            .iter()
            .find(|m| m.same_filesystem(vol_mount) && shows_top_level(&mounts, m))
        {
            return Ok(other.mount_point.clone());
        }
        self.private_mount(&mounts, vol_mount, &key)
    }

    /// `<top level>/.vss`, created as a subvolume when missing. Call with the lock held.
    fn snapshot_dir(&self, top: &Path) -> Result<PathBuf, VssError> {
        let name = self.snapshot_subvolume_name()?;
        let dir = top.join(name);
        let top_fd = open_dir(top).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                format_args!("cannot open the btrfs top level '{}'", top.display()),
                e,
                "check that the filesystem is still mounted",
            )
        })?;
        let veto = |e: Errno, what: &str| {
            os_error(
                ErrorCode::ProviderVeto,
                format_args!("cannot {what} the snapshot subvolume '{}'", dir.display()),
                e,
                "check that the filesystem is mounted read-write and has free space",
            )
        };
        match rustix::fs::statat(top_fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => Ok(dir),
            Ok(_) => Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "'{}' exists but is not a directory; remove or rename it so vssd can create \
                     its snapshot subvolume there",
                    dir.display()
                ),
            )),
            Err(Errno::NOENT) => match sys::subvol_create(top_fd.as_fd(), name) {
                Ok(()) | Err(Errno::EXIST) => {
                    tracing::info!(dir = %dir.display(), "created btrfs snapshot subvolume");
                    Ok(dir)
                }
                Err(e) => Err(veto(e, "create")),
            },
            Err(e) => Err(veto(e, "examine")),
        }
    }

    /// The snapshot directory (`.vss`) for `volume`, made reachable and created when missing.
    fn reachable_snapshot_dir(&self, volume: &Volume) -> Result<PathBuf, VssError> {
        let _guard = self.lock();
        let top = self.top_level(volume)?;
        self.snapshot_dir(&top)
    }

    /// For a locator below `<run_dir>/btrfs/<key>/`: re-establishes that private mount if it is
    /// gone (after a restart), finding the filesystem among the mounted ones by its key.
    fn reach_locator(&self, locator: &Path) -> Result<(), VssError> {
        let raw_base = self.config.run_dir.join("btrfs");
        let canonical_base = std::fs::canonicalize(&raw_base).ok();
        let rest = [Some(&raw_base), canonical_base.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|base| locator.strip_prefix(base).ok());
        let Some(Component::Normal(key)) = rest.and_then(|r| r.components().next()) else {
            return Ok(());
        };
        let key = key.to_string_lossy().into_owned();
        let _guard = self.lock();
        let mounts = mountinfo()?;
        let private = self.private_base()?.join(&key);
        if visible_mount_at(&mounts, &private).is_some() {
            return Ok(());
        }
        let wanted_dev = key.strip_prefix("dev-").and_then(|d| {
            let (major, minor) = d.split_once('-')?;
            Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
        });
        let found = mounts
            .iter()
            .filter(|m| m.fs_type == "btrfs")
            .find(|m| match wanted_dev {
                Some((major, minor)) => m.major == major && m.minor == minor,
                None => {
                    visible_mount_at(&mounts, &m.mount_point)
                        .is_some_and(|v| v.mount_id == m.mount_id)
                        && Self::fs_key(&m.mount_point, m) == key
                }
            });
        match found {
            Some(m) => self.private_mount(&mounts, m, &key).map(|_| ()),
            None => Err(VssError::bad_state(format!(
                "snapshot '{}' is on btrfs filesystem {key}, which is not mounted; mount the \
                 filesystem and retry",
                locator.display()
            ))),
        }
    }

    /// Splits a locator into its parent directory (opened, checked to be on btrfs) and name.
    fn open_locator(&self, snapshot: &CommittedSnapshot) -> Result<(OwnedFd, String), VssError> {
        let path = Path::new(&snapshot.locator);
        let invalid = || {
            VssError::invalid_arg(format!(
                "'{}' is not a btrfs snapshot locator (an absolute path ending in the snapshot \
                 name); the catalog entry is damaged",
                snapshot.locator
            ))
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(invalid());
        };
        let name = name.to_str().ok_or_else(invalid)?.to_owned();
        if !path.is_absolute() {
            return Err(invalid());
        }
        self.reach_locator(path)?;
        let parent_fd = open_dir(parent).map_err(|e| {
            os_error(
                ErrorCode::BadState,
                format_args!(
                    "cannot reach the snapshot directory '{}' of snapshot '{}'",
                    parent.display(),
                    snapshot.locator
                ),
                e,
                "mount the btrfs filesystem holding it (its top level or the volume) and retry",
            )
        })?;
        match is_btrfs(parent_fd.as_fd()) {
            Ok(true) => Ok((parent_fd, name)),
            Ok(false) => Err(VssError::bad_state(format!(
                "'{}' is not on btrfs, so snapshot '{}' is not reachable there; mount the btrfs \
                 filesystem holding it and retry",
                parent.display(),
                snapshot.locator
            ))),
            Err(e) => Err(os_error(
                ErrorCode::BadState,
                format_args!("cannot statfs '{}'", parent.display()),
                e,
                "check the mount",
            )),
        }
    }

    /// The entries of the snapshot directory (`.vss`) of `volume`'s filesystem, sorted; empty
    /// when it does not exist yet. For reconciling the catalog after a crash. May mount the top
    /// level privately to look.
    pub fn list_snapshot_dirs(&self, volume: &Volume) -> Result<Vec<PathBuf>, VssError> {
        let name = self.snapshot_subvolume_name()?.to_owned();
        let dir = {
            let _guard = self.lock();
            self.top_level(volume)?.join(name)
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!("cannot list '{}': {e}; check the filesystem", dir.display()),
                ));
            }
        };
        let mut paths = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!("cannot list '{}': {e}; check the filesystem", dir.display()),
                )
            })?;
        paths.sort();
        Ok(paths)
    }
}

impl Provider for BtrfsProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: BTRFS_PROVIDER_ID,
            name: "btrfs".into(),
            provider_type: ProviderType::Software,
            version: "1.0".into(),
            atomicity: crate::Atomicity::PerSubvolume,
            needs_freeze: false,
        }
    }

    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<crate::Exposure, VssError> {
        let (parent, name) = self.open_locator(snapshot)?;
        match subvolume_at(parent.as_fd(), &name) {
            Ok(Some(true)) => {}
            Ok(_) => {
                return Err(VssError::not_found(format!(
                    "btrfs snapshot '{}' does not exist (any more); it cannot be exposed",
                    snapshot.locator
                )));
            }
            Err(e) => {
                return Err(os_error(
                    ErrorCode::UnexpectedProviderError,
                    format_args!("cannot examine snapshot '{}'", snapshot.locator),
                    e,
                    "check the filesystem",
                ));
            }
        }
        crate::expose::bind_read_only(Path::new(&snapshot.locator), at)?;
        Ok(crate::Exposure {
            path: at.to_owned(),
            detail: None,
        })
    }

    fn unexpose(
        &self,
        _snapshot: &CommittedSnapshot,
        exposure: &crate::Exposure,
    ) -> Result<(), VssError> {
        crate::expose::unmount_exposure(&exposure.path)
    }

    fn query(&self, volume: &Volume) -> Result<Vec<String>, VssError> {
        let mut found = Vec::new();
        for path in self.list_snapshot_dirs(volume)? {
            let is_subvolume = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_dir() && m.ino() == BTRFS_SUBVOLUME_ROOT_INO);
            if is_subvolume {
                found.push(path.to_string_lossy().into_owned());
            }
        }
        Ok(found)
    }

    fn is_volume_supported(&self, volume: &Volume) -> bool {
        if volume.fs_type != FsType::Btrfs || !volume.btrfs_subvolume_root {
            return false;
        }
        // Check the live path too: the volume may have been resolved a while ago.
        let live = open_dir(&volume.path).and_then(|fd| {
            Ok(is_btrfs(fd.as_fd())? && rustix::fs::fstat(&fd)?.st_ino == BTRFS_SUBVOLUME_ROOT_INO)
        });
        match live {
            Ok(supported) => supported,
            Err(e) => {
                tracing::debug!(path = %volume.path.display(), error = %e, "cannot examine volume");
                false
            }
        }
    }

    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        let volume = &request.volume;
        if !self.is_volume_supported(volume) {
            return Err(VssError::new(
                ErrorCode::VolumeNotSupportedByProvider,
                format!(
                    "'{}' ({}) is not the root of a btrfs subvolume; the btrfs provider only \
                     snapshots btrfs mount points and subvolumes, choose another provider",
                    volume.path.display(),
                    volume.fs_type
                ),
            ));
        }
        let dir = self.reachable_snapshot_dir(volume)?;
        let target = dir.join(request.snapshot_id.hyphenated().to_string());
        if std::fs::symlink_metadata(&target).is_ok() {
            return Err(VssError::new(
                ErrorCode::ObjectAlreadyExists,
                format!(
                    "'{}' already exists; snapshot id {} is in use on this filesystem",
                    target.display(),
                    request.snapshot_id
                ),
            ));
        }
        Ok(())
    }

    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError> {
        let volume = &request.volume;
        let dir = self.reachable_snapshot_dir(volume)?;
        let name = request.snapshot_id.hyphenated().to_string();
        let target = dir.join(&name);
        let veto = |what: String, e: Errno, hint: &str| {
            let code = match e {
                Errno::NOSPC | Errno::DQUOT => ErrorCode::InsufficientStorage,
                Errno::EXIST => ErrorCode::ObjectAlreadyExists,
                _ => ErrorCode::ProviderVeto,
            };
            os_error(code, what, e, hint)
        };
        let source = open_dir(&volume.path).map_err(|e| {
            veto(
                format!("cannot open the volume '{}'", volume.path.display()),
                e,
                "check that the volume is still mounted",
            )
        })?;
        match rustix::fs::fstat(&source) {
            Ok(st) if st.st_ino == BTRFS_SUBVOLUME_ROOT_INO => {}
            Ok(_) => {
                return Err(VssError::new(
                    ErrorCode::ProviderVeto,
                    format!(
                        "'{}' is no longer a btrfs subvolume root (something was mounted over \
                         it?); check the mounts and retry",
                        volume.path.display()
                    ),
                ));
            }
            Err(e) => {
                return Err(veto(
                    format!("cannot stat '{}'", volume.path.display()),
                    e,
                    "retry",
                ));
            }
        }
        let dir_fd = open_dir(&dir).map_err(|e| {
            veto(
                format!("cannot open the snapshot directory '{}'", dir.display()),
                e,
                "check that the filesystem's top level is still mounted",
            )
        })?;
        let started = Instant::now();
        sys::snap_create_readonly(dir_fd.as_fd(), source.as_fd(), &name).map_err(|e| {
            veto(
                format!(
                    "btrfs snapshot (BTRFS_IOC_SNAP_CREATE_V2) of '{}' to '{}' failed",
                    volume.path.display(),
                    target.display()
                ),
                e,
                "check free space (btrfs filesystem usage) and that the filesystem is mounted \
                 read-write and not frozen",
            )
        })?;
        tracing::debug!(
            source = %volume.path.display(),
            snapshot = %target.display(),
            elapsed_us = started.elapsed().as_micros(),
            "btrfs snapshot created"
        );
        let locator = target.to_string_lossy().into_owned();
        Ok(CommittedSnapshot {
            snapshot_id: request.snapshot_id,
            snapshot_path: target,
            locator,
        })
    }

    fn abort(
        &self,
        _request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError> {
        // begin_prepare leaves only shared infrastructure (`.vss`, a private mount) behind.
        committed.map_or(Ok(()), |snapshot| self.delete(snapshot))
    }

    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        let (parent, name) = self.open_locator(snapshot)?;
        let fail = |what: &str, e: Errno| {
            let code = match e {
                Errno::PERM | Errno::ACCESS => ErrorCode::AccessDenied,
                _ => ErrorCode::UnexpectedProviderError,
            };
            os_error(
                code,
                format_args!("{what} '{}'", snapshot.locator),
                e,
                "check that vssd runs as root and that nothing is mounted on the snapshot",
            )
        };
        match subvolume_at(parent.as_fd(), &name) {
            Ok(None) => return Ok(()),
            Ok(Some(true)) => {}
            Ok(Some(false)) => {
                return Err(VssError::bad_state(format!(
                    "'{}' is not a btrfs subvolume, refusing to delete it; remove it by hand if \
                     it is a leftover",
                    snapshot.locator
                )));
            }
            Err(e) => return Err(fail("cannot examine snapshot", e)),
        }
        let started = Instant::now();
        match sys::snap_destroy(parent.as_fd(), &name) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(fail(
                    "btrfs subvolume delete (BTRFS_IOC_SNAP_DESTROY) of",
                    e,
                ));
            }
        }
        tracing::debug!(
            snapshot = %snapshot.locator,
            elapsed_us = started.elapsed().as_micros(),
            "btrfs snapshot deleted"
        );
        match subvolume_at(parent.as_fd(), &name) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!(
                    "'{}' still exists after BTRFS_IOC_SNAP_DESTROY succeeded; check with \
                     `btrfs subvolume list` and retry",
                    snapshot.locator
                ),
            )),
            Err(e) => Err(fail("cannot check the deletion of", e)),
        }
    }

    fn revert(
        &self,
        snapshot: &CommittedSnapshot,
        volume: &Path,
        force_dismount: bool,
    ) -> Result<(), VssError> {
        self.revert_subvolume(snapshot, volume, force_dismount)
    }

    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError> {
        let (parent, name) = self.open_locator(snapshot)?;
        subvolume_at(parent.as_fd(), &name)
            .map(|s| s == Some(true))
            .map_err(|e| {
                os_error(
                    ErrorCode::UnexpectedProviderError,
                    format_args!("cannot examine snapshot '{}'", snapshot.locator),
                    e,
                    "check the filesystem",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::parse_mountinfo;

    #[test]
    fn info_is_fixed() {
        let p = BtrfsProvider::new(ProviderConfig::new(Path::new("/run/vss")));
        let info = p.info();
        assert_eq!(info.id.to_string(), "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01");
        assert_eq!(info.name, "btrfs");
        assert_eq!(info.provider_type, ProviderType::Software);
        assert_eq!(info.version, "1.0");
    }

    #[test]
    fn snapshot_subvolume_name_must_be_one_component() {
        let mut config = ProviderConfig::new(Path::new("/run/vss"));
        for bad in ["", "a/b", "..", "/abs", "."] {
            config.btrfs_snapshot_subvolume = bad.into();
            let err = BtrfsProvider::new(config.clone())
                .snapshot_subvolume_name()
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::ProviderVeto, "{bad}");
        }
        config.btrfs_snapshot_subvolume = ".snaps".into();
        assert_eq!(
            BtrfsProvider::new(config)
                .snapshot_subvolume_name()
                .unwrap(),
            ".snaps"
        );
    }

    #[test]
    fn top_level_mounts_are_recognized() {
        let mounts = parse_mountinfo(
            b"43 27 0:39 / /top rw - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
              44 27 0:39 /data /data rw - btrfs /dev/loop0 rw,subvolid=256,subvol=/data\n\
              45 27 0:39 / /ro ro - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
              46 27 0:39 / /hidden rw - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
              47 27 0:40 / /hidden rw - tmpfs tmpfs rw\n",
        );
        assert!(shows_top_level(&mounts, &mounts[0]));
        assert!(!shows_top_level(&mounts, &mounts[1]), "subvol mount");
        assert!(!shows_top_level(&mounts, &mounts[2]), "read-only");
        assert!(!shows_top_level(&mounts, &mounts[3]), "overmounted");
        assert!(!shows_top_level(&mounts, &mounts[4]), "not btrfs");
    }

    #[test]
    fn ioctl_names_are_validated() {
        let fd = open_dir(Path::new("/")).unwrap();
        assert_eq!(sys::subvol_create(fd.as_fd(), "a/b"), Err(Errno::INVAL));
        assert_eq!(sys::snap_destroy(fd.as_fd(), ".."), Err(Errno::INVAL));
        assert_eq!(sys::snap_destroy(fd.as_fd(), ""), Err(Errno::INVAL));
        let long = "x".repeat(4088);
        assert_eq!(
            sys::snap_destroy(fd.as_fd(), &long),
            Err(Errno::NAMETOOLONG)
        );
    }
}

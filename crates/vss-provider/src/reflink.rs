//! The reflink provider: a directory tree cloned file by file with `FICLONE` (test-machine.md
//! §5), on XFS made with `reflink=1` or on btrfs.
//!
//! **What is snapshotted.** A directory (or a mount point) on XFS with reflink, or a btrfs
//! directory that is not a subvolume root (btrfs subvolume roots go to the btrfs provider, which
//! comes first in [`crate::builtin_providers`]; named explicitly, this provider takes them too).
//! The copy is **atomic per file only** ([`crate::Atomicity::PerFile`]): each `FICLONE` captures
//! one file at one instant, and the tree is walked while the writers are frozen, so the snapshot
//! is consistent for writers that froze, not for anything else writing meanwhile. A tree of
//! 10,000 small files takes about half a second.
//!
//! **Never with FIFREEZE.** `FICLONE` on a frozen filesystem blocks until the thaw, so this
//! provider has `needs_freeze: false` and vssd must never freeze its filesystem around `commit`.
//!
//! **Where snapshots live.** `<mount root>/<reflink_dir_name>/<snapshot id>/` (default
//! `.vss-reflink`), where the mount root is the mount point of the mount that contains the
//! volume: `FICLONE` needs source and target on the same filesystem (before Linux 5.18 also on
//! the same mount, which this layout satisfies too). The store directory is created with mode 0700, owned by root, so that unprivileged users cannot
//! reach the clones (which keep the owners and modes of the originals). While `commit` runs the
//! tree is built as `<snapshot id>.partial` and renamed when complete, so a crash never leaves a
//! half-made tree under a snapshot's name.
//!
//! **What is copied.** Directories, regular files (`FICLONE`, sharing all extents; a source file
//! with `FS_NOCOW_FL` gets the flag on its empty clone first, else btrfs refuses with EINVAL),
//! symbolic links, and hard links among the copied files. Mode, owner, group, access and
//! modification times are kept. Sockets, FIFOs and device nodes are skipped (logged). The store
//! itself and everything on another filesystem or mount (mount points, bind mounts even of the
//! same filesystem, nested btrfs subvolumes) are not descended into; such a directory leaves an
//! empty directory, as a btrfs snapshot does, and a bind-mounted file is left out. Extended
//! attributes and ACLs are not copied.
//!
//! **Read-only.** A clone is an ordinary writable tree to root: `chmod a-w` does not stop root.
//! The snapshot is therefore read-only by contract: vssd never writes to it, the store is
//! closed to other users, and [`Provider::expose`] gives a read-only bind mount
//! ([`crate::expose::bind_read_only`]), which is how a snapshot is meant to be read.
//!
//! **Deleting** removes the tree (never crossing into another filesystem, never following
//! symbolic links), after checking that the locator names a snapshot in a store.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Stat, Timestamps, Uid};
use rustix::io::Errno;
use uuid::Uuid;
use vss_model::{ErrorCode, Id, ProviderType, VssError};

use crate::fsops;
use crate::volume::{FsType, Volume};
use crate::{
    Atomicity, CommittedSnapshot, Exposure, Provider, ProviderConfig, ProviderInfo, SnapshotRequest,
};

/// The fixed id of the reflink provider.
pub const REFLINK_PROVIDER_ID: Id = Uuid::from_u128(0x0b1a5e5c_8f2e_4c6e_9a41_6c1f0b7e2a02);

/// Suffix of a snapshot tree while `commit` builds it.
const PARTIAL_SUFFIX: &str = ".partial";

/// The reflink snapshot provider.
#[derive(Debug)]
pub struct ReflinkProvider {
    config: ProviderConfig,
}

fn os_error(code: ErrorCode, what: impl std::fmt::Display, err: Errno, hint: &str) -> VssError {
    VssError::new(code, format!("{what}: {err}; {hint}"))
}

/// The error code for a failed write to the snapshot store.
fn store_code(e: Errno) -> ErrorCode {
    match e {
        Errno::NOSPC | Errno::DQUOT => ErrorCode::InsufficientStorage,
        Errno::EXIST => ErrorCode::ObjectAlreadyExists,
        Errno::PERM | Errno::ACCESS => ErrorCode::AccessDenied,
        _ => ErrorCode::ProviderVeto,
    }
}

fn timestamps(st: &Stat) -> Timestamps {
    // The field types differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn owner(st: &Stat) -> (Option<Uid>, Option<Gid>) {
    (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
}

fn mode_of(st: &Stat) -> Mode {
    Mode::from_raw_mode(st.st_mode & 0o7777)
}

/// Owner, then mode (a chown clears set-uid bits), then times, on an open file or directory.
fn set_attributes(fd: BorrowedFd<'_>, st: &Stat) -> Result<(), Errno> {
    let (uid, gid) = owner(st);
    rustix::fs::fchown(fd, uid, gid)?;
    rustix::fs::fchmod(fd, mode_of(st))?;
    rustix::fs::futimens(fd, &timestamps(st))
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a source file for cloning without touching its access time where allowed.
fn open_source_file(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        other => other,
    }
}

/// The names in a directory, without `.` and `..`. Read in full first, so that the walk holds
/// two descriptors per level, not three.
fn entries(dir: BorrowedFd<'_>) -> Result<Vec<std::ffi::CString>, Errno> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// What a walk copied, for the log.
#[derive(Debug, Default)]
struct WalkStats {
    files: u64,
    bytes: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    skipped_special: u64,
    skipped_mounts: u64,
    vanished: u64,
}

/// One clone of a tree.
struct TreeClone<'a> {
    /// `st_dev` of the source root: entries on another device are not descended into.
    root_dev: u64,
    /// The store directory (`.vss-reflink`), never copied into itself.
    store: (u64, u64),
    /// The snapshot root being built (for hard links).
    target_root: BorrowedFd<'a>,
    /// Inode → path (relative to the snapshot root) of the first copy of a multiply-linked file.
    links: HashMap<u64, PathBuf>,
    stats: WalkStats,
    source_root: &'a Path,
    /// Mount points below the source root, relative to it: bind mounts of the same filesystem
    /// have the same `st_dev`, yet are other mounts and not part of the tree (and before Linux
    /// 5.18 FICLONE refused to clone across mounts with EXDEV).
    mounts: HashSet<PathBuf>,
}

impl TreeClone<'_> {
    fn fail(&self, rel: &Path, what: &str, e: Errno) -> VssError {
        os_error(
            store_code(e),
            format_args!(
                "reflink copy of '{}': cannot {what}",
                self.source_root.join(rel).display()
            ),
            e,
            "check free space and that both the volume and its mount root are writable",
        )
    }

    /// Copies the entries of the source directory `src` into the (new, empty) directory `dst`.
    fn copy_dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<(), VssError> {
        let names = entries(src).map_err(|e| self.fail(rel, "list the directory", e))?;
        for name in names {
            let child_rel = rel.join(OsStr::from_bytes(name.to_bytes()));
            let st = match rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => {
                    self.stats.vanished += 1;
                    continue;
                }
                Err(e) => return Err(self.fail(&child_rel, "stat", e)),
            };
            #[allow(clippy::unnecessary_cast)]
            let (dev, ino) = (st.st_dev as u64, st.st_ino as u64);
            if (dev, ino) == self.store {
                continue;
            }
            let file_type = FileType::from_raw_mode(st.st_mode);
            if self.mounts.contains(&child_rel) {
                if file_type == FileType::Directory {
                    // An empty directory in its place, as for another filesystem.
                    self.copy_subdir(src, dst, &name, &st, &child_rel, u64::MAX)?;
                } else {
                    self.stats.skipped_mounts += 1;
                }
                continue;
            }
            match file_type {
                FileType::Directory => self.copy_subdir(src, dst, &name, &st, &child_rel, dev)?,
                FileType::RegularFile if dev == self.root_dev => {
                    self.copy_file(src, dst, &name, &st, &child_rel, ino)?;
                }
                FileType::Symlink if dev == self.root_dev => {
                    self.copy_symlink(src, dst, &name, &st, &child_rel)?;
                }
                FileType::RegularFile | FileType::Symlink => {
                    // A file bind-mounted from another filesystem (also in `mounts`, unless
                    // mounted after the walk started): never clone across filesystems.
                    self.stats.skipped_mounts += 1;
                }
                other => {
                    tracing::info!(
                        path = %self.source_root.join(&child_rel).display(),
                        file_type = ?other,
                        "reflink snapshot skips a socket, FIFO or device node"
                    );
                    self.stats.skipped_special += 1;
                }
            }
        }
        Ok(())
    }

    fn copy_subdir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
        dev: u64,
    ) -> Result<(), VssError> {
        rustix::fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.fail(rel, "create the directory in the snapshot", e))?;
        let dst_dir = open_dir_at(dst, name)
            .map_err(|e| self.fail(rel, "open the new directory in the snapshot", e))?;
        if dev == self.root_dev {
            let src_dir = match open_dir_at(src, name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    self.stats.vanished += 1;
                    return Ok(());
                }
                Err(e) => return Err(self.fail(rel, "open the directory", e)),
            };
            self.copy_dir(src_dir.as_fd(), dst_dir.as_fd(), rel)?;
            self.stats.dirs += 1;
        } else {
            // A mount point or a nested btrfs subvolume: an empty directory in its place.
            tracing::debug!(
                path = %self.source_root.join(rel).display(),
                "reflink snapshot does not descend into another filesystem or subvolume"
            );
            self.stats.skipped_mounts += 1;
        }
        set_attributes(dst_dir.as_fd(), st).map_err(|e| {
            self.fail(
                rel,
                "set the owner, mode and times of the directory copy",
                e,
            )
        })
    }

    fn copy_file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
        ino: u64,
    ) -> Result<(), VssError> {
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&ino) {
                rustix::fs::linkat(self.target_root, first, dst, name, AtFlags::empty())
                    .map_err(|e| self.fail(rel, "hard-link the copy", e))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.links.insert(ino, rel.to_owned());
        }
        let source = match open_source_file(src, name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                self.stats.vanished += 1;
                return Ok(());
            }
            Err(e) => return Err(self.fail(rel, "open the file", e)),
        };
        let target = rustix::fs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.fail(rel, "create the file in the snapshot", e))?;
        if fsops::has_nocow(source.as_fd())
            .map_err(|e| self.fail(rel, "read the inode flags", e))?
        {
            fsops::set_nocow(target.as_fd())
                .map_err(|e| self.fail(rel, "set FS_NOCOW_FL on the empty clone", e))?;
        }
        fsops::ficlone(target.as_fd(), source.as_fd())
            .map_err(|e| self.fail(rel, "clone the file (FICLONE)", e))?;
        set_attributes(target.as_fd(), st)
            .map_err(|e| self.fail(rel, "set the owner, mode and times of the clone", e))?;
        self.stats.files += 1;
        #[allow(clippy::unnecessary_cast)]
        {
            self.stats.bytes += st.st_size as u64;
        }
        Ok(())
    }

    fn copy_symlink(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
    ) -> Result<(), VssError> {
        let target = match rustix::fs::readlinkat(src, name, Vec::new()) {
            Ok(t) => t,
            Err(Errno::NOENT) => {
                self.stats.vanished += 1;
                return Ok(());
            }
            Err(e) => return Err(self.fail(rel, "read the symbolic link", e)),
        };
        rustix::fs::symlinkat(target.as_c_str(), dst, name)
            .map_err(|e| self.fail(rel, "create the symbolic link in the snapshot", e))?;
        let (uid, gid) = owner(st);
        rustix::fs::chownat(dst, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fail(rel, "set the owner of the symbolic link", e))?;
        rustix::fs::utimensat(dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fail(rel, "set the times of the symbolic link", e))?;
        self.stats.symlinks += 1;
        Ok(())
    }
}

/// The mount points strictly below `root`, relative to it.
fn mounts_below(root: &Path) -> Result<HashSet<PathBuf>, VssError> {
    let mounts = crate::volume::read_mountinfo().map_err(|e| {
        VssError::new(
            ErrorCode::ProviderVeto,
            format!("cannot read /proc/self/mountinfo: {e}; is /proc mounted?"),
        )
    })?;
    Ok(mounts
        .into_iter()
        .filter_map(|m| {
            m.mount_point
                .strip_prefix(root)
                .ok()
                .filter(|rel| !rel.as_os_str().is_empty())
                .map(Path::to_owned)
        })
        .collect())
}

/// Removes `name` in `dir` recursively, without following symbolic links and refusing to enter
/// a directory on another device than `dev` (a mount on the snapshot): `EBUSY` then.
fn remove_tree(dir: BorrowedFd<'_>, name: &CStr, dev: u64) -> Result<(), Errno> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    #[allow(clippy::unnecessary_cast)]
    if st.st_dev as u64 != dev {
        return Err(Errno::BUSY);
    }
    let sub = open_dir_at(dir, name)?;
    for child in entries(sub.as_fd())? {
        remove_tree(sub.as_fd(), &child, dev)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn c_name(name: &str) -> std::ffi::CString {
    // Names made here are UUIDs and fixed suffixes: never a NUL.
    std::ffi::CString::new(name).unwrap_or_default()
}

impl ReflinkProvider {
    /// A provider with these settings.
    pub fn new(config: ProviderConfig) -> Self {
        ReflinkProvider { config }
    }

    /// The validated store directory name (`.vss-reflink`).
    fn store_name(&self) -> Result<&str, VssError> {
        let name = self.config.reflink_dir_name.as_str();
        let mut components = Path::new(name).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => Ok(name),
            _ => Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "the reflink store name '{name}' is not a single directory name; fix the \
                     provider configuration (default: .vss-reflink)"
                ),
            )),
        }
    }

    /// `<mount root>/<store name>` for a volume.
    fn store_path(&self, volume: &Volume) -> Result<PathBuf, VssError> {
        Ok(volume.mount_point.join(self.store_name()?))
    }

    /// Opens (creating with mode 0700 when missing) the store of `volume`'s mount.
    fn open_store(&self, volume: &Volume, create: bool) -> Result<(OwnedFd, PathBuf), VssError> {
        let name = self.store_name()?;
        let store = self.store_path(volume)?;
        let root = fsops::open_dir(&volume.mount_point).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                format_args!(
                    "cannot open the mount root '{}'",
                    volume.mount_point.display()
                ),
                e,
                "check that the volume is still mounted",
            )
        })?;
        let c = c_name(name);
        if create {
            match rustix::fs::mkdirat(&root, &c, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    tracing::info!(store = %store.display(), "created reflink snapshot store")
                }
                Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(os_error(
                        store_code(e),
                        format_args!(
                            "cannot create the reflink snapshot store '{}'",
                            store.display()
                        ),
                        e,
                        "the mount holding the volume must be writable",
                    ));
                }
            }
        }
        let fd = open_dir_at(root.as_fd(), &c).map_err(|e| {
            let code = if e == Errno::NOENT {
                ErrorCode::ObjectNotFound
            } else {
                ErrorCode::ProviderVeto
            };
            os_error(
                code,
                format_args!(
                    "cannot open the reflink snapshot store '{}'",
                    store.display()
                ),
                e,
                "it must be a directory (not a symbolic link) at the root of the mount",
            )
        })?;
        let root_st = rustix::fs::fstat(&root).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                "cannot stat the mount root",
                e,
                "retry",
            )
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                "cannot stat the reflink store",
                e,
                "retry",
            )
        })?;
        if st.st_dev != root_st.st_dev {
            return Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "'{}' is on another filesystem than its mount root (something is mounted \
                     there); FICLONE cannot clone across filesystems, unmount it",
                    store.display()
                ),
            ));
        }
        Ok((fd, store))
    }

    /// Why `volume` cannot be taken, or `None` if it can.
    fn unsupported_reason(&self, volume: &Volume) -> Option<String> {
        if !matches!(volume.fs_type, FsType::Xfs | FsType::Btrfs) {
            return Some(format!(
                "it is on {}; reflink snapshots need XFS (reflink=1) or btrfs",
                volume.fs_type
            ));
        }
        let store = match self.store_path(volume) {
            Ok(store) => store,
            Err(e) => return Some(e.message),
        };
        if volume.path.starts_with(&store) {
            return Some(format!(
                "it lies inside the reflink snapshot store '{}'",
                store.display()
            ));
        }
        let fd = match fsops::open_dir(&volume.path) {
            Ok(fd) => fd,
            Err(e) => return Some(format!("it cannot be opened: {e}")),
        };
        match fsops::may_reflink(fd.as_fd()) {
            Ok(true) => {}
            Ok(false) => return Some("it is no longer on XFS or btrfs".into()),
            Err(e) => return Some(format!("statfs failed: {e}")),
        }
        // The live mount root must be the recorded one, and its filesystem must clone.
        match fsops::probe_reflink(&volume.mount_point) {
            Ok(()) => None,
            Err(Errno::OPNOTSUPP) => Some(format!(
                "its filesystem cannot clone files (FICLONE: not supported; an XFS made \
                 without reflink=1?) at '{}'",
                volume.mount_point.display()
            )),
            Err(e) => Some(format!(
                "a probe clone in '{}' failed: {e}",
                volume.mount_point.display()
            )),
        }
    }

    /// The store directory and snapshot name a locator names, checked to be a reflink snapshot
    /// locator (`/.../<store name>/<uuid>`), so that a damaged catalog entry can never make
    /// `delete` remove an arbitrary tree.
    fn parse_locator<'a>(&self, locator: &'a str) -> Result<(&'a Path, &'a str), VssError> {
        let path = Path::new(locator);
        let invalid = || {
            VssError::invalid_arg(format!(
                "'{locator}' is not a reflink snapshot locator (an absolute path \
                 '<mount root>/{}/<snapshot id>'); the catalog entry is damaged",
                self.config.reflink_dir_name
            ))
        };
        let store_name = self.store_name()?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(OsStr::to_str))
        else {
            return Err(invalid());
        };
        if !path.is_absolute()
            || parent.file_name() != Some(OsStr::new(store_name))
            || Uuid::parse_str(name).is_err()
        {
            return Err(invalid());
        }
        Ok((parent, name))
    }

    fn delete_in(&self, store: &Path, name: &str) -> Result<(), VssError> {
        let fd = match fsops::open_dir(store) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(os_error(
                    ErrorCode::UnexpectedProviderError,
                    format_args!("cannot open the reflink store '{}'", store.display()),
                    e,
                    "check that the filesystem is mounted",
                ));
            }
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| {
            os_error(
                ErrorCode::UnexpectedProviderError,
                "cannot stat the store",
                e,
                "retry",
            )
        })?;
        #[allow(clippy::unnecessary_cast)]
        let dev = st.st_dev as u64;
        for victim in [name.to_owned(), format!("{name}{PARTIAL_SUFFIX}")] {
            remove_tree(fd.as_fd(), &c_name(&victim), dev).map_err(|e| {
                let hint = if e == Errno::BUSY {
                    "something is mounted inside the snapshot (an exposure?); unexpose it first"
                } else {
                    "check that vssd runs as root"
                };
                os_error(
                    ErrorCode::UnexpectedProviderError,
                    format_args!("cannot remove '{}'", store.join(&victim).display()),
                    e,
                    hint,
                )
            })?;
        }
        Ok(())
    }
}

impl Provider for ReflinkProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: REFLINK_PROVIDER_ID,
            name: "reflink".into(),
            provider_type: ProviderType::Software,
            version: "1.0".into(),
            atomicity: Atomicity::PerFile,
            needs_freeze: false,
        }
    }

    fn is_volume_supported(&self, volume: &Volume) -> bool {
        match self.unsupported_reason(volume) {
            None => true,
            Some(reason) => {
                tracing::debug!(path = %volume.path.display(), %reason, "reflink: not supported");
                false
            }
        }
    }

    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        let volume = &request.volume;
        if let Some(reason) = self.unsupported_reason(volume) {
            return Err(VssError::new(
                ErrorCode::VolumeNotSupportedByProvider,
                format!(
                    "the reflink provider cannot snapshot '{}': {reason}",
                    volume.path.display()
                ),
            ));
        }
        let (store_fd, store) = self.open_store(volume, true)?;
        let name = request.snapshot_id.hyphenated().to_string();
        for candidate in [name.clone(), format!("{name}{PARTIAL_SUFFIX}")] {
            match rustix::fs::statat(&store_fd, c_name(&candidate), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => {}
                Ok(_) => {
                    return Err(VssError::new(
                        ErrorCode::ObjectAlreadyExists,
                        format!(
                            "'{}' already exists; snapshot id {} is in use on this filesystem",
                            store.join(&candidate).display(),
                            request.snapshot_id
                        ),
                    ));
                }
                Err(e) => {
                    return Err(os_error(
                        ErrorCode::ProviderVeto,
                        format_args!("cannot examine '{}'", store.join(&candidate).display()),
                        e,
                        "check the filesystem",
                    ));
                }
            }
        }
        Ok(())
    }

    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError> {
        let volume = &request.volume;
        let started = Instant::now();
        let (store_fd, store) = self.open_store(volume, true)?;
        let name = request.snapshot_id.hyphenated().to_string();
        let partial = format!("{name}{PARTIAL_SUFFIX}");
        let source = fsops::open_dir(&volume.path).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                format_args!("cannot open the volume '{}'", volume.path.display()),
                e,
                "check that it still exists",
            )
        })?;
        let source_st = rustix::fs::fstat(&source).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                "cannot stat the volume",
                e,
                "retry",
            )
        })?;
        let store_st = rustix::fs::fstat(&store_fd).map_err(|e| {
            os_error(
                ErrorCode::ProviderVeto,
                "cannot stat the reflink store",
                e,
                "retry",
            )
        })?;
        rustix::fs::mkdirat(&store_fd, c_name(&partial), Mode::from_raw_mode(0o700)).map_err(|e| {
            os_error(
                store_code(e),
                format_args!("cannot create '{}'", store.join(&partial).display()),
                e,
                "check free space; a leftover of a crashed commit is removed by deleting the snapshot",
            )
        })?;
        let result = (|| {
            let target = open_dir_at(store_fd.as_fd(), &c_name(&partial)).map_err(|e| {
                os_error(
                    ErrorCode::ProviderVeto,
                    "cannot open the new snapshot directory",
                    e,
                    "retry",
                )
            })?;
            #[allow(clippy::unnecessary_cast)]
            let mut walk = TreeClone {
                root_dev: source_st.st_dev as u64,
                store: (store_st.st_dev as u64, store_st.st_ino as u64),
                target_root: target.as_fd(),
                links: HashMap::new(),
                stats: WalkStats::default(),
                source_root: &volume.path,
                mounts: mounts_below(&volume.path)?,
            };
            walk.copy_dir(source.as_fd(), target.as_fd(), Path::new(""))?;
            set_attributes(target.as_fd(), &source_st).map_err(|e| {
                walk.fail(
                    Path::new(""),
                    "set the owner, mode and times of the snapshot root",
                    e,
                )
            })?;
            Ok::<_, VssError>(walk.stats)
        })();
        let stats = match result {
            Ok(stats) => stats,
            Err(e) => {
                if let Err(cleanup) = self.delete_in(&store, &name) {
                    tracing::warn!(error = %cleanup, "cannot remove a failed reflink snapshot");
                }
                return Err(e);
            }
        };
        rustix::fs::renameat(&store_fd, c_name(&partial), &store_fd, c_name(&name)).map_err(
            |e| {
                let _ = self.delete_in(&store, &name);
                os_error(
                    store_code(e),
                    format_args!(
                        "cannot rename '{}' to '{name}'",
                        store.join(&partial).display()
                    ),
                    e,
                    "retry",
                )
            },
        )?;
        // A persistent snapshot must be on disk when commit returns.
        if let Err(e) = rustix::fs::syncfs(&store_fd) {
            tracing::warn!(store = %store.display(), error = %e, "syncfs after a reflink snapshot failed");
        }
        let target = store.join(&name);
        tracing::info!(
            source = %volume.path.display(),
            snapshot = %target.display(),
            files = stats.files,
            bytes = stats.bytes,
            dirs = stats.dirs,
            symlinks = stats.symlinks,
            hardlinks = stats.hardlinks,
            skipped_special = stats.skipped_special,
            skipped_mounts = stats.skipped_mounts,
            vanished = stats.vanished,
            elapsed_ms = started.elapsed().as_millis(),
            "reflink snapshot created"
        );
        Ok(CommittedSnapshot {
            snapshot_id: request.snapshot_id,
            locator: target.to_string_lossy().into_owned(),
            snapshot_path: target,
        })
    }

    fn abort(
        &self,
        request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError> {
        match committed {
            Some(snapshot) => self.delete(snapshot),
            None => self.store_path(&request.volume).and_then(|store| {
                self.delete_in(&store, &request.snapshot_id.hyphenated().to_string())
            }),
        }
    }

    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        let (store, name) = self.parse_locator(&snapshot.locator)?;
        let started = Instant::now();
        self.delete_in(store, name)?;
        tracing::debug!(snapshot = %snapshot.locator, elapsed_us = started.elapsed().as_micros(), "reflink snapshot deleted");
        Ok(())
    }

    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError> {
        self.parse_locator(&snapshot.locator)?;
        match std::fs::symlink_metadata(&snapshot.locator) {
            Ok(meta) => Ok(meta.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!(
                    "cannot examine '{}': {e}; check the mount",
                    snapshot.locator
                ),
            )),
        }
    }

    fn query(&self, volume: &Volume) -> Result<Vec<String>, VssError> {
        let store = self.store_path(volume)?;
        let entries = match std::fs::read_dir(&store) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!(
                        "cannot list '{}': {e}; check the filesystem",
                        store.display()
                    ),
                ));
            }
        };
        let mut found: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| Uuid::parse_str(n).is_ok())
            })
            .map(|e| e.path().to_string_lossy().into_owned())
            .collect();
        found.sort();
        Ok(found)
    }

    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<Exposure, VssError> {
        if !self.exists(snapshot)? {
            return Err(VssError::not_found(format!(
                "reflink snapshot '{}' does not exist (any more); it cannot be exposed",
                snapshot.locator
            )));
        }
        crate::expose::bind_read_only(Path::new(&snapshot.locator), at)?;
        Ok(Exposure {
            path: at.to_owned(),
            detail: None,
        })
    }

    fn unexpose(&self, _snapshot: &CommittedSnapshot, exposure: &Exposure) -> Result<(), VssError> {
        crate::expose::unmount_exposure(&exposure.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ReflinkProvider {
        ReflinkProvider::new(ProviderConfig::new(Path::new("/run/vss")))
    }

    #[test]
    fn info_is_fixed() {
        let info = provider().info();
        assert_eq!(info.id.to_string(), "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a02");
        assert_eq!(info.name, "reflink");
        assert_eq!(info.atomicity, Atomicity::PerFile);
        assert!(!info.needs_freeze, "FICLONE blocks on a frozen filesystem");
        assert_eq!(info.provider_type, ProviderType::Software);
    }

    #[test]
    fn locators_are_checked_before_deleting() {
        let p = provider();
        let id = Uuid::new_v4();
        p.parse_locator(&format!("/mnt/x/.vss-reflink/{id}"))
            .unwrap();
        for bad in [
            format!("relative/.vss-reflink/{id}"),
            format!("/mnt/x/other/{id}"),
            "/mnt/x/.vss-reflink/not-a-uuid".to_owned(),
            "/".to_owned(),
            String::new(),
            "/mnt/x/.vss-reflink".to_owned(),
        ] {
            let err = p.parse_locator(&bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArg, "{bad}");
        }
    }

    #[test]
    fn store_name_must_be_one_component() {
        let mut config = ProviderConfig::new(Path::new("/run/vss"));
        for bad in ["", "a/b", "..", "/abs"] {
            config.reflink_dir_name = bad.into();
            assert!(
                ReflinkProvider::new(config.clone()).store_name().is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn remove_tree_removes_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("keep");
        std::fs::create_dir(&keep).unwrap();
        std::fs::write(keep.join("precious"), b"x").unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(victim.join("a/b")).unwrap();
        std::fs::write(victim.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&keep, victim.join("link")).unwrap();
        let fd = fsops::open_dir(dir.path()).unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        #[allow(clippy::unnecessary_cast)]
        remove_tree(fd.as_fd(), c"victim", dev as u64).unwrap();
        assert!(!victim.exists());
        assert!(keep.join("precious").exists());
        remove_tree(fd.as_fd(), c"victim", dev as u64).unwrap();
    }
}

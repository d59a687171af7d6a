//! RevertToSnapshot for the btrfs provider (vss-model.md §8.6): the volume's subvolume is
//! replaced by a writable copy of the read-only snapshot.
//!
//! # What happens
//!
//! 1. A writable snapshot of the snapshot (`BTRFS_IOC_SNAP_CREATE_V2` without
//!    `BTRFS_SUBVOL_RDONLY`) is made next to the volume's subvolume, as
//!    `.vss-revert-<random id>` in the same directory. The directory is reached through the
//!    filesystem's top level (the volume's own mount, another visible one, or the provider's
//!    private mount), so it works the same for `subvol=` mounts.
//! 2. Subvolumes nested in the volume are not part of its snapshot (btrfs leaves an empty
//!    placeholder directory); they are separate volumes, so the revert keeps them: each is moved
//!    (`renameat`, which btrfs allows for subvolume roots across subvolumes) into the new
//!    subvolume at the same path, replacing the placeholder (or an empty directory), with missing
//!    parent directories created with the owner and mode they have in the volume. If the
//!    snapshot has a file or a non-empty directory at that path, the revert is refused before
//!    anything changes.
//! 3. The two subvolumes swap names with one `renameat2(RENAME_EXCHANGE)`: the volume's path
//!    never goes missing.
//! 4. If the old subvolume was the filesystem's default subvolume (`btrfs subvolume
//!    set-default`), the new one becomes the default.
//! 5. With `forceDismount`, every mount showing the subvolume (or a directory of it) is detached
//!    (`MNT_DETACH`) and replaced by a bind mount of the same path of the new subvolume, with
//!    the same per-mount flags (`ro`, `nosuid`, `nodev`, `noexec`, atime flags, `nosymfollow`,
//!    from `/proc/self/mountinfo`). Filesystem-wide options are the superblock's and do not
//!    change. Propagation is that of a new mount.
//! 6. The old subvolume is deleted (`BTRFS_IOC_SNAP_DESTROY`). If that fails, the revert still
//!    succeeded: the old contents stay as `.vss-revert-*` next to the volume (logged), to be
//!    removed with `btrfs subvolume delete`.
//!
//! The read-only snapshot is not touched: it can be reverted to again, and the catalog is
//! unchanged. The new subvolume has a new subvolume id and UUID.
//!
//! # What is refused
//!
//! * The top-level subvolume (id 5) cannot be replaced: `VSS_E_VOLUME_NOT_SUPPORTED`.
//! * A volume that is mounted (any mount of this mount namespace whose root is the subvolume or
//!   a directory in it), or, when it is not mounted, whose files are open, or that holds the
//!   current or root directory or a mapped file of a process: `VSS_E_VOLUME_IN_USE` unless
//!   `forceDismount`. Processes keep what they have open: the old files, until they close them.
//! * Anything mounted inside the volume (or stacked on its mount point), which a detach would
//!   take away: `VSS_E_VOLUME_IN_USE` even with `forceDismount`; unmount it first.
//! * A nested subvolume where the snapshot has a file or a non-empty directory:
//!   `VSS_E_PROVIDER_VETO` (step 2).
//! * A volume that is gone, no longer a subvolume root, or on another filesystem than the
//!   snapshot: `VSS_E_VOLUME_NOT_SUPPORTED`; a snapshot that is gone: `VSS_E_OBJECT_NOT_FOUND`.
//!
//! Mounts in other mount namespaces are not seen (their processes' open files are): a mount
//! there that does not receive propagation from ours keeps showing the deleted old subvolume.
//!
//! # Failure
//!
//! Every step until the end of step 5 is undone in reverse order when a later one fails (the
//! default subvolume set back, names swapped back, mounts attached again to the old subvolume,
//! nested subvolumes moved back, the new subvolume deleted), so a failed revert leaves the
//! volume as it was. Only a failing undo (reported with `VSS_E_REVERT_VOLUME_LOST` and where
//! everything is) needs the administrator.
//!
//! Needs Linux 4.18 (`BTRFS_IOC_GET_SUBVOL_ROOTREF`, `BTRFS_IOC_INO_LOOKUP_USER`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use uuid::Uuid;
use vss_model::{ErrorCode, VssError};

use super::{BtrfsProvider, mountinfo, open_dir, os_error, sys};
use crate::CommittedSnapshot;
use crate::volume::{BTRFS_SUBVOLUME_ROOT_INO, FsType, MountInfo, containing_mount};

/// The name prefix of the temporary subvolume a revert makes next to the volume. A subvolume
/// with this prefix found later is a leftover of a revert that could not delete the old
/// contents, or was interrupted by a crash.
pub const REVERT_TMP_PREFIX: &str = ".vss-revert-";

/// The inode number of the placeholder a snapshot holds where the source had a nested
/// subvolume (`BTRFS_EMPTY_SUBVOL_DIR_OBJECTID`).
const EMPTY_SUBVOL_DIR_INO: u64 = 2;

/// A step of a revert after which a test makes it fail, to exercise the undo.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertFault {
    /// The new subvolume exists.
    AfterCreate,
    /// Nested subvolumes were moved into it.
    AfterNestedMoved,
    /// The names were swapped.
    AfterExchange,
    /// The mounts were replaced (forceDismount).
    AfterRemount,
}

/// A subvolume nested in the volume: its path relative to the volume's root.
#[derive(Debug)]
struct Nested {
    rel: PathBuf,
}

/// Everything a revert needs, checked before anything changes.
#[derive(Debug)]
struct Plan {
    /// The volume (canonical path), for messages.
    volume: PathBuf,
    /// The snapshot's locator, for messages.
    locator: String,
    /// The read-only snapshot's root directory.
    snapshot: OwnedFd,
    /// The directory holding the volume's subvolume, reached through the top level.
    parent: OwnedFd,
    /// Its path, for messages.
    parent_path: PathBuf,
    /// The subvolume's name in `parent`.
    name: OsString,
    /// The name of the new subvolume before the swap (and of the old one after it).
    tmp: String,
    /// The old subvolume's root directory.
    old: OwnedFd,
    /// The old subvolume's id.
    old_id: u64,
    /// Whether the old subvolume is the filesystem's default subvolume.
    is_default: bool,
    /// Subvolumes nested in the old one, to be moved into the new one.
    nested: Vec<Nested>,
    /// A directory showing the filesystem's top level.
    top: PathBuf,
    /// Mounts to replace (forceDismount): those showing the subvolume or a directory of it.
    remount: Vec<MountInfo>,
}

/// What a revert did so far (for the undo).
#[derive(Debug, Default)]
struct Progress {
    /// The new subvolume's root directory, once made.
    new: Option<OwnedFd>,
    /// Nested subvolumes moved into it (relative paths).
    moved: Vec<PathBuf>,
    /// The names were swapped: the old subvolume is now named `tmp`.
    swapped: bool,
    /// The default subvolume was changed to the new one.
    default_moved: bool,
    /// Indexes into `Plan::remount` of the mounts detached, and whether the new one was
    /// attached there.
    detached: Vec<(usize, bool)>,
}

fn veto(what: impl std::fmt::Display, e: Errno, hint: &str) -> VssError {
    let code = match e {
        Errno::NOSPC | Errno::DQUOT => ErrorCode::InsufficientStorage,
        Errno::PERM | Errno::ACCESS => ErrorCode::AccessDenied,
        _ => ErrorCode::UnexpectedProviderError,
    };
    os_error(code, what, e, hint)
}

fn in_use(message: String) -> VssError {
    VssError::new(ErrorCode::VolumeInUse, message)
}

fn not_supported(message: String) -> VssError {
    VssError::new(ErrorCode::VolumeNotSupported, message)
}

fn open_dir_at(dir: BorrowedFd<'_>, name: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Per-mount flags of a mountinfo `mount_options` field, as `mount(2)` flags.
fn per_mount_flags(options: &str) -> MountFlags {
    let mut flags = MountFlags::empty();
    for option in options.split(',') {
        flags |= match option {
            "ro" => MountFlags::RDONLY,
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "noatime" => MountFlags::NOATIME,
            "nodiratime" => MountFlags::NODIRATIME,
            "relatime" => MountFlags::RELATIME,
            "strictatime" => MountFlags::STRICTATIME,
            "nosymfollow" => MountFlags::NOSYMFOLLOW,
            _ => MountFlags::empty(),
        };
    }
    flags
}

/// The path of `fs_path` (absolute, from the top level) below `top`.
fn below(top: &Path, fs_path: &Path) -> PathBuf {
    match fs_path.strip_prefix("/").unwrap_or(fs_path) {
        // `join("")` would add a trailing slash.
        rel if rel.as_os_str().is_empty() => top.to_owned(),
        rel => top.join(rel),
    }
}

/// The mounts that matter for replacing the subvolume at `fs_path` (absolute, from the top
/// level) of the filesystem of `fs_mount`.
#[derive(Debug, Default, PartialEq, Eq)]
struct MountUse {
    /// Mounts showing the subvolume or a directory of it (not of a nested subvolume).
    affected: Vec<MountInfo>,
    /// Mounts inside the subvolume, wherever it is seen, or stacked on an affected mount: a
    /// detach would take them along, and a swap would leave them on the old subvolume.
    blocking: Vec<MountInfo>,
}

/// Sorts the mount table into [`MountUse`]. `nested` are the relative paths of the subvolumes
/// nested in it (which are moved, not replaced).
fn mount_use(
    mounts: &[MountInfo],
    fs_mount: &MountInfo,
    fs_path: &Path,
    nested: &[PathBuf],
) -> MountUse {
    let same_fs = |m: &MountInfo| m.fs_type == "btrfs" && m.same_filesystem(fs_mount);
    let in_nested = |root: &Path| {
        root.strip_prefix(fs_path)
            .is_ok_and(|rel| nested.iter().any(|n| rel.starts_with(n)))
    };
    let mut result = MountUse::default();
    // Where the subvolume (or a part of it) can be seen, and through which mount.
    let mut views: Vec<(u32, PathBuf)> = Vec::new();
    for m in mounts.iter().filter(|m| same_fs(m)) {
        if m.root.starts_with(fs_path) && !in_nested(&m.root) {
            result.affected.push(m.clone());
            views.push((m.mount_id, m.mount_point.clone()));
        } else if let Ok(rel) = fs_path.strip_prefix(&m.root) {
            views.push((m.mount_id, m.mount_point.join(rel)));
        }
    }
    for m in mounts {
        let inside = views
            .iter()
            .any(|(id, v)| *id != m.mount_id && m.mount_point.starts_with(v));
        if inside {
            result.blocking.push(m.clone());
        }
    }
    let blocking: BTreeSet<u32> = result.blocking.iter().map(|m| m.mount_id).collect();
    result.affected.retain(|m| !blocking.contains(&m.mount_id));
    result
}

/// Processes (other than this one) with a file of the filesystem device `dev` open, mapped, or
/// as current or root directory or executable: "pid (comm)".
fn processes_using(dev: u64) -> Vec<String> {
    let me = std::process::id();
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let on_dev = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.dev() == dev);
    let mut users = Vec::new();
    for entry in proc.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = entry.path();
        let mut uses = ["cwd", "root", "exe"]
            .iter()
            .any(|link| on_dev(&base.join(link)));
        for dir in ["fd", "map_files"] {
            if uses {
                break;
            }
            if let Ok(entries) = std::fs::read_dir(base.join(dir)) {
                uses = entries.flatten().any(|e| on_dev(&e.path()));
            }
        }
        if uses {
            let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
            users.push(format!("{pid} ({})", comm.trim()));
        }
    }
    users
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// What is at `rel` in `dir`: `None` when nothing.
fn stat_at(dir: BorrowedFd<'_>, rel: &Path) -> Result<Option<rustix::fs::Stat>, Errno> {
    match rustix::fs::statat(dir, rel, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode).is_dir()
}

fn is_placeholder(st: &rustix::fs::Stat) -> bool {
    is_dir(st) && st.st_ino == EMPTY_SUBVOL_DIR_INO
}

fn is_empty_dir(dir: BorrowedFd<'_>, rel: &Path) -> Result<bool, Errno> {
    let fd = open_dir_at(dir, rel)?;
    let mut entries = rustix::fs::Dir::read_from(&fd)?;
    for entry in entries.by_ref() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Why a nested subvolume cannot be put at `rel` of the snapshot's copy, if it cannot.
fn nested_conflict(snapshot: BorrowedFd<'_>, rel: &Path) -> Result<Option<String>, Errno> {
    let mut prefix = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            prefix.push(c);
            match stat_at(snapshot, &prefix)? {
                // Missing or a placeholder: made a directory, and so is everything below.
                None => return Ok(None),
                Some(st) if is_placeholder(&st) => return Ok(None),
                Some(st) if is_dir(&st) => {}
                Some(_) => {
                    return Ok(Some(format!(
                        "the snapshot has a file at '{}'",
                        prefix.display()
                    )));
                }
            }
        }
    }
    match stat_at(snapshot, rel)? {
        None => Ok(None),
        Some(st) if is_placeholder(&st) => Ok(None),
        Some(st) if is_dir(&st) => Ok((!is_empty_dir(snapshot, rel)?).then(|| {
            format!(
                "the snapshot has a non-empty directory at '{}'",
                rel.display()
            )
        })),
        Some(_) => Ok(Some(format!(
            "the snapshot has a file at '{}'",
            rel.display()
        ))),
    }
}

/// Makes the directory `rel` in `new` like the one in `old` (owner, mode).
fn make_dir_like(new: BorrowedFd<'_>, old: BorrowedFd<'_>, rel: &Path) -> Result<(), Errno> {
    let st = rustix::fs::statat(old, rel, AtFlags::SYMLINK_NOFOLLOW)?;
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    rustix::fs::mkdirat(new, rel, mode)?;
    rustix::fs::chownat(
        new,
        rel,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    // mkdirat applied the umask; chown may have cleared set-id bits.
    rustix::fs::chmodat(new, rel, mode, AtFlags::empty())
}

/// Prepares `rel` in `new` to receive the nested subvolume: its parent directories exist (made
/// like those of `old` where missing or placeholders), and nothing but an empty directory or
/// a placeholder, which is removed, is at `rel`.
fn prepare_place(new: BorrowedFd<'_>, old: BorrowedFd<'_>, rel: &Path) -> Result<(), Errno> {
    let mut prefix = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            prefix.push(c);
            match stat_at(new, &prefix)? {
                Some(st) if is_placeholder(&st) => {
                    rustix::fs::unlinkat(new, &prefix, AtFlags::REMOVEDIR)?;
                    make_dir_like(new, old, &prefix)?;
                }
                Some(st) if is_dir(&st) => {}
                Some(_) => return Err(Errno::NOTDIR),
                None => make_dir_like(new, old, &prefix)?,
            }
        }
    }
    match stat_at(new, rel)? {
        None => Ok(()),
        Some(st) if is_dir(&st) => rustix::fs::unlinkat(new, rel, AtFlags::REMOVEDIR),
        Some(_) => Err(Errno::EXIST),
    }
}

impl BtrfsProvider {
    /// [`crate::Provider::revert`] for btrfs: see the module documentation.
    pub(super) fn revert_subvolume(
        &self,
        snapshot: &CommittedSnapshot,
        volume: &Path,
        force_dismount: bool,
    ) -> Result<(), VssError> {
        let started = Instant::now();
        let plan = self.plan_revert(snapshot, volume, force_dismount)?;
        let mut progress = Progress::default();
        if let Err(e) = self.carry_out(&plan, &mut progress) {
            return Err(match undo(&plan, &progress) {
                Ok(()) => VssError::new(
                    e.code,
                    format!(
                        "{}; the revert was undone: '{}' holds what it held before",
                        e.message,
                        plan.volume.display()
                    ),
                ),
                Err(undo_errors) => VssError::new(
                    ErrorCode::RevertVolumeLost,
                    format!(
                        "reverting '{}' to snapshot '{}' failed ({}) and undoing it failed too: \
                         {}. The old subvolume is '{}' or '{}/{}', the reverted copy the other \
                         one; check with `btrfs subvolume list`, put the right one at '{}' and \
                         mount it again where needed",
                        plan.volume.display(),
                        plan.locator,
                        e.message,
                        undo_errors.join("; "),
                        below(&plan.parent_path, Path::new(&plan.name)).display(),
                        plan.parent_path.display(),
                        plan.tmp,
                        plan.volume.display()
                    ),
                ),
            });
        }
        self.delete_old(&plan);
        tracing::info!(
            volume = %plan.volume.display(),
            snapshot = %plan.locator,
            remounted = plan.remount.len(),
            nested_kept = plan.nested.len(),
            elapsed_us = started.elapsed().as_micros(),
            "btrfs volume reverted to snapshot"
        );
        Ok(())
    }

    /// Checks everything and opens what the revert needs; changes nothing.
    fn plan_revert(
        &self,
        snapshot: &CommittedSnapshot,
        volume: &Path,
        force: bool,
    ) -> Result<Plan, VssError> {
        let shown = volume.display();
        let locator = snapshot.locator.clone();
        let (snap_parent, snap_name) = self.open_locator(snapshot)?;
        let snap = match open_dir_at(snap_parent.as_fd(), snap_name.as_str()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(VssError::not_found(format!(
                    "btrfs snapshot '{locator}' does not exist any more, so there is nothing to \
                     revert '{shown}' to; delete the snapshot to drop its catalog entry"
                )));
            }
            Err(e) => {
                return Err(veto(
                    format_args!("cannot open btrfs snapshot '{locator}'"),
                    e,
                    "check the filesystem",
                ));
            }
        };
        if rustix::fs::fstat(&snap).map(|st| st.st_ino).ok() != Some(BTRFS_SUBVOLUME_ROOT_INO) {
            return Err(VssError::bad_state(format!(
                "'{locator}' is not a btrfs subvolume; the snapshot was replaced by something \
                 else and cannot be reverted to"
            )));
        }

        let vol = match crate::resolve_volume(&volume.to_string_lossy()) {
            Ok(v) => v,
            Err(e) if e.code == ErrorCode::ObjectNotFound => {
                return Err(not_supported(format!(
                    "volume '{shown}' does not exist any more, so it cannot be reverted; to \
                     bring it back as it was at the snapshot, run `btrfs subvolume snapshot \
                     {locator} {shown}`"
                )));
            }
            Err(e) => return Err(e),
        };
        if vol.fs_type != FsType::Btrfs || !vol.btrfs_subvolume_root {
            return Err(not_supported(format!(
                "'{shown}' is no longer the root of a btrfs subvolume (it is a {} on {}); only a \
                 btrfs subvolume can be reverted to its btrfs snapshot; copy the files back from \
                 the exposed snapshot instead",
                vol.kind.name(),
                vol.fs_type
            )));
        }
        let vol_fd = open_dir(&vol.path).map_err(|e| {
            veto(
                format_args!("cannot open volume '{shown}'"),
                e,
                "check that it is still mounted",
            )
        })?;
        let fsid = |fd: BorrowedFd<'_>, what: &str| {
            sys::fsid(fd).map_err(|e| {
                veto(
                    format_args!("cannot read the btrfs filesystem id of {what}"),
                    e,
                    "check the filesystem",
                )
            })
        };
        if fsid(vol_fd.as_fd(), &format!("'{shown}'"))?
            != fsid(snap.as_fd(), &format!("snapshot '{locator}'"))?
        {
            return Err(not_supported(format!(
                "'{shown}' is on another btrfs filesystem than its snapshot '{locator}' (was the \
                 volume re-created?); a btrfs volume can only be reverted to a snapshot of its \
                 own filesystem"
            )));
        }
        let subvolume_id = |fd: BorrowedFd<'_>, what: &dyn std::fmt::Display| {
            sys::subvolume_id(fd).map_err(|e| {
                veto(
                    format_args!("cannot read the subvolume id of '{what}'"),
                    e,
                    "check the filesystem",
                )
            })
        };
        let old_id = subvolume_id(vol_fd.as_fd(), &shown)?;
        if old_id == sys::BTRFS_FS_TREE_OBJECTID {
            return Err(not_supported(format!(
                "'{shown}' is the top-level subvolume (id 5) of its btrfs filesystem, which \
                 cannot be replaced, so it cannot be reverted. Keep the data in a subvolume \
                 instead (`btrfs subvolume create`, move the files in, mount it with subvol=) \
                 and snapshot that; to get files back from this snapshot, expose it and copy \
                 them"
            )));
        }
        let vol_dev = rustix::fs::fstat(&vol_fd)
            .map(|st| st.st_dev)
            .map_err(|e| veto(format_args!("cannot stat '{shown}'"), e, "retry"))?;

        let top = {
            let _guard = self.lock();
            self.top_level(&vol)?
        };
        let mounts = mountinfo()?;
        let fs_mount = containing_mount(&mounts, &vol.path)
            .filter(|m| m.fs_type == "btrfs")
            .ok_or_else(|| {
                not_supported(format!(
                    "'{shown}' is no longer on a mounted btrfs filesystem; check the mounts"
                ))
            })?
            .clone();
        // The subvolume's path from the top level: the mount's root plus the rest of the path.
        let fs_path = match vol.path.strip_prefix(&fs_mount.mount_point) {
            Ok(rest) if rest.as_os_str().is_empty() => fs_mount.root.clone(),
            Ok(rest) => fs_mount.root.join(rest),
            Err(_) => fs_mount.root.clone(),
        };
        let (Some(parent_rel), Some(name)) = (fs_path.parent(), fs_path.file_name()) else {
            return Err(not_supported(format!(
                "'{shown}' shows the top level of its btrfs filesystem, which cannot be \
                 replaced; keep the data in a subvolume and snapshot that"
            )));
        };
        let parent_path = below(&top, parent_rel);
        let parent = open_dir(&parent_path).map_err(|e| {
            veto(
                format_args!(
                    "cannot open '{}', the directory holding the subvolume of '{shown}'",
                    parent_path.display()
                ),
                e,
                "check that the filesystem's top level is still mounted",
            )
        })?;
        let old = open_dir_at(parent.as_fd(), name).map_err(|e| {
            veto(
                format_args!(
                    "cannot open the subvolume of '{shown}' as '{}'",
                    below(&top, &fs_path).display()
                ),
                e,
                "check the mounts",
            )
        })?;
        if subvolume_id(old.as_fd(), &below(&top, &fs_path).display())? != old_id {
            return Err(VssError::bad_state(format!(
                "'{}' is not the subvolume mounted at '{shown}' although mountinfo says so (a \
                 mount hides the real layout?); check the mounts and retry",
                below(&top, &fs_path).display()
            )));
        }
        drop(vol_fd);

        let nested = self.nested_subvolumes(old.as_fd(), &shown)?;
        for n in &nested {
            let conflict = nested_conflict(snap.as_fd(), &n.rel).map_err(|e| {
                veto(
                    format_args!("cannot examine snapshot '{locator}'"),
                    e,
                    "check the filesystem",
                )
            })?;
            if let Some(why) = conflict {
                return Err(VssError::new(
                    ErrorCode::ProviderVeto,
                    format!(
                        "the subvolume '{}' nested in '{shown}' cannot be kept by the revert: \
                         {why}. Move the nested subvolume out of the volume (mv), revert, and \
                         move it back where you want it",
                        n.rel.display()
                    ),
                ));
            }
        }

        let top_fd = open_dir(&top).map_err(|e| {
            veto(
                format_args!("cannot open the btrfs top level '{}'", top.display()),
                e,
                "check that the filesystem is still mounted",
            )
        })?;
        let default_id = sys::default_subvolume(top_fd.as_fd()).map_err(|e| {
            veto(
                format_args!(
                    "cannot find the default subvolume of btrfs '{}' (BTRFS_IOC_TREE_SEARCH)",
                    top.display()
                ),
                e,
                "vssd needs CAP_SYS_ADMIN",
            )
        })?;

        let nested_rel: Vec<PathBuf> = nested.iter().map(|n| n.rel.clone()).collect();
        let usage = mount_use(&mounts, &fs_mount, &fs_path, &nested_rel);
        if !usage.blocking.is_empty() {
            let points: Vec<String> = usage
                .blocking
                .iter()
                .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
                .collect();
            return Err(in_use(format!(
                "'{shown}' has other mounts inside it or stacked on it: {}; a revert would \
                 leave them on the old contents or take them away, so unmount them (and \
                 unexpose snapshots exposed there) and retry; forceDismount does not unmount \
                 them",
                list(&points)
            )));
        }
        if !force {
            if !usage.affected.is_empty() {
                let points: Vec<String> = usage
                    .affected
                    .iter()
                    .map(|m| m.mount_point.display().to_string())
                    .collect();
                return Err(in_use(format!(
                    "'{shown}' is mounted (at {}); reverting replaces its subvolume, so those \
                     mounts must be detached and mounted again: pass forceDismount to let the \
                     revert do that (processes using the old mount keep its files until they \
                     close them), or unmount them and retry",
                    list(&points)
                )));
            }
            let users = processes_using(vol_dev);
            if !users.is_empty() {
                return Err(in_use(format!(
                    "files of '{shown}' are in use by {}; stop those processes and retry, or \
                     pass forceDismount (they keep the old files until they close them)",
                    list(&users)
                )));
            }
        }
        Ok(Plan {
            volume: vol.path.clone(),
            locator,
            snapshot: snap,
            parent,
            parent_path,
            name: name.to_owned(),
            tmp: format!("{REVERT_TMP_PREFIX}{}", Uuid::new_v4().hyphenated()),
            old,
            old_id,
            is_default: default_id == old_id,
            nested,
            top,
            remount: if force { usage.affected } else { Vec::new() },
        })
    }

    /// The subvolumes directly inside the subvolume whose root is `old`.
    fn nested_subvolumes(
        &self,
        old: BorrowedFd<'_>,
        shown: &dyn std::fmt::Display,
    ) -> Result<Vec<Nested>, VssError> {
        let fail = |e: Errno| {
            veto(
                format_args!("cannot list the subvolumes nested in '{shown}'"),
                e,
                "the kernel must be Linux 4.18 or later (BTRFS_IOC_GET_SUBVOL_ROOTREF)",
            )
        };
        let mut nested = Vec::new();
        for (treeid, dirid) in sys::child_subvolumes(old).map_err(fail)? {
            let rel = sys::child_subvolume_path(old, treeid, dirid).map_err(fail)?;
            nested.push(Nested { rel });
        }
        Ok(nested)
    }

    fn fault(&self, step: RevertFault) -> Result<(), VssError> {
        if self.revert_fault == Some(step) {
            return Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!("injected revert failure after {step:?} (test)"),
            ));
        }
        Ok(())
    }

    /// Steps 1 to 5 of the module documentation, recording each in `progress`.
    fn carry_out(&self, plan: &Plan, progress: &mut Progress) -> Result<(), VssError> {
        let shown = plan.volume.display();
        let parent = plan.parent.as_fd();
        sys::snap_create(parent, plan.snapshot.as_fd(), &plan.tmp, false).map_err(|e| {
            veto(
                format_args!(
                    "cannot make a writable snapshot of '{}' at '{}/{}' \
                     (BTRFS_IOC_SNAP_CREATE_V2)",
                    plan.locator,
                    plan.parent_path.display(),
                    plan.tmp
                ),
                e,
                "check free space (btrfs filesystem usage) and that the filesystem is mounted \
                 read-write",
            )
        })?;
        let new = open_dir_at(parent, plan.tmp.as_str()).map_err(|e| {
            veto(
                format_args!(
                    "cannot open the new subvolume '{}/{}'",
                    plan.parent_path.display(),
                    plan.tmp
                ),
                e,
                "check the filesystem",
            )
        })?;
        let new: &OwnedFd = progress.new.insert(new);
        let new = new.as_fd();
        self.fault(RevertFault::AfterCreate)?;

        for n in &plan.nested {
            let moved = prepare_place(new, plan.old.as_fd(), &n.rel)
                .and_then(|()| rustix::fs::renameat(plan.old.as_fd(), &n.rel, new, &n.rel));
            moved.map_err(|e| {
                veto(
                    format_args!(
                        "cannot move the nested subvolume '{}' of '{shown}' into the reverted \
                         subvolume",
                        n.rel.display()
                    ),
                    e,
                    "check that nothing is mounted on it",
                )
            })?;
            progress.moved.push(n.rel.clone());
        }
        self.fault(RevertFault::AfterNestedMoved)?;

        rustix::fs::renameat_with(
            parent,
            plan.name.as_os_str(),
            parent,
            plan.tmp.as_str(),
            RenameFlags::EXCHANGE,
        )
        .map_err(|e| {
            veto(
                format_args!(
                    "cannot swap '{shown}' with the reverted subvolume (renameat2 \
                     RENAME_EXCHANGE)"
                ),
                e,
                "check the filesystem (btrfs supports it since Linux 4.7)",
            )
        })?;
        progress.swapped = true;
        self.fault(RevertFault::AfterExchange)?;

        if plan.is_default {
            let new_id = sys::subvolume_id(new).map_err(|e| {
                veto(
                    "cannot read the reverted subvolume's id",
                    e,
                    "check the filesystem",
                )
            })?;
            sys::set_default_subvolume(plan.parent.as_fd(), new_id).map_err(|e| {
                veto(
                    format_args!(
                        "cannot make the reverted '{shown}' the default subvolume \
                         (BTRFS_IOC_DEFAULT_SUBVOL)"
                    ),
                    e,
                    "vssd needs CAP_SYS_ADMIN",
                )
            })?;
            progress.default_moved = true;
        }

        for (i, m) in plan.remount.iter().enumerate() {
            rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH).map_err(|e| {
                veto(
                    format_args!("cannot detach the mount at '{}'", m.mount_point.display()),
                    e,
                    "vssd needs CAP_SYS_ADMIN",
                )
            })?;
            progress.detached.push((i, false));
            attach(&plan.top, m)?;
            if let Some(last) = progress.detached.last_mut() {
                last.1 = true;
            }
        }
        self.fault(RevertFault::AfterRemount)?;
        Ok(())
    }

    /// Step 6: deletes the old subvolume; a failure only leaves it behind (logged).
    fn delete_old(&self, plan: &Plan) {
        let old_name = &plan.tmp;
        let started = Instant::now();
        match sys::snap_destroy(plan.parent.as_fd(), old_name) {
            Ok(()) | Err(Errno::NOENT) => tracing::debug!(
                old = %below(&plan.parent_path, Path::new(old_name)).display(),
                elapsed_us = started.elapsed().as_micros(),
                "old subvolume deleted after revert"
            ),
            Err(e) => tracing::warn!(
                volume = %plan.volume.display(),
                old = %below(&plan.parent_path, Path::new(old_name)).display(),
                error = %e,
                "the volume was reverted, but its old contents could not be deleted; delete \
                 them with `btrfs subvolume delete`"
            ),
        }
    }
}

/// Mounts `top`/`m.root` at `m.mount_point` with `m`'s per-mount flags.
fn attach(top: &Path, m: &MountInfo) -> Result<(), VssError> {
    let source = below(top, &m.root);
    rustix::mount::mount_bind(&source, &m.mount_point).map_err(|e| {
        veto(
            format_args!(
                "cannot mount '{}' at '{}' again",
                source.display(),
                m.mount_point.display()
            ),
            e,
            "vssd needs CAP_SYS_ADMIN",
        )
    })?;
    let flags = MountFlags::BIND | per_mount_flags(&m.mount_options);
    if let Err(e) = rustix::mount::mount_remount(&m.mount_point, flags, "") {
        if let Err(undo) = rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH) {
            tracing::error!(at = %m.mount_point.display(), error = %undo, "cannot undo a bind mount");
        }
        return Err(veto(
            format_args!(
                "cannot give the mount at '{}' its options ({}) again",
                m.mount_point.display(),
                m.mount_options
            ),
            e,
            "check the kernel log",
        ));
    }
    Ok(())
}

/// Undoes `progress` in reverse order; every step is tried. Returns what could not be undone.
fn undo(plan: &Plan, progress: &Progress) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let parent = plan.parent.as_fd();
    if progress.default_moved
        && let Err(e) = sys::set_default_subvolume(parent, plan.old_id)
    {
        errors.push(format!(
            "the default subvolume could not be set back to id {}: {e}",
            plan.old_id
        ));
    }
    if progress.swapped
        && let Err(e) = rustix::fs::renameat_with(
            parent,
            plan.name.as_os_str(),
            parent,
            plan.tmp.as_str(),
            RenameFlags::EXCHANGE,
        )
    {
        errors.push(format!("the names could not be swapped back: {e}"));
    }
    for (i, attached) in progress.detached.iter().rev() {
        let m = &plan.remount[*i];
        if *attached && let Err(e) = rustix::mount::unmount(&m.mount_point, UnmountFlags::DETACH) {
            errors.push(format!(
                "the reverted mount at '{}' could not be detached: {e}",
                m.mount_point.display()
            ));
            continue;
        }
        if let Err(e) = attach(&plan.top, m) {
            errors.push(e.message);
        }
    }
    if let Some(new) = &progress.new {
        for rel in progress.moved.iter().rev() {
            if let Err(e) = rustix::fs::renameat(new.as_fd(), rel, plan.old.as_fd(), rel) {
                errors.push(format!(
                    "the nested subvolume '{}' could not be moved back: {e}",
                    rel.display()
                ));
            }
        }
        // Only when everything else was undone is `tmp` surely the unused copy (after a failed
        // swap back it would be the old contents).
        if errors.is_empty()
            && let Err(e) = sys::snap_destroy(parent, &plan.tmp)
        {
            // The volume is as it was; only the unused copy is left.
            tracing::warn!(
                copy = %below(&plan.parent_path, Path::new(&plan.tmp)).display(),
                error = %e,
                "cannot delete the unused copy of a failed revert; delete it with \
                 `btrfs subvolume delete`"
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::parse_mountinfo;

    #[test]
    fn per_mount_flags_are_read_from_mountinfo_options() {
        assert_eq!(per_mount_flags("rw,relatime"), MountFlags::RELATIME);
        assert_eq!(
            per_mount_flags("ro,nosuid,nodev,noexec,noatime"),
            MountFlags::RDONLY
                | MountFlags::NOSUID
                | MountFlags::NODEV
                | MountFlags::NOEXEC
                | MountFlags::NOATIME
        );
        assert_eq!(
            per_mount_flags("rw,nodiratime,strictatime,nosymfollow,idmapped"),
            MountFlags::NODIRATIME | MountFlags::STRICTATIME | MountFlags::NOSYMFOLLOW
        );
    }

    #[test]
    fn mounts_are_sorted_into_affected_and_blocking() {
        let mounts = parse_mountinfo(
            b"27 1 254:0 / / rw - ext4 /dev/vda rw\n\
              43 27 0:39 / /top rw - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
              44 27 0:39 /data /srv/data rw,nosuid - btrfs /dev/loop0 rw,subvol=/data\n\
              45 27 0:39 /data/dir /srv/dir ro - btrfs /dev/loop0 rw,subvol=/data\n\
              46 27 0:39 /data/inner /srv/inner rw - btrfs /dev/loop0 rw,subvol=/data/inner\n\
              47 27 0:39 /data2 /srv/data2 rw - btrfs /dev/loop0 rw,subvol=/data2\n\
              48 44 0:40 / /srv/data/tmp rw - tmpfs tmpfs rw\n\
              49 27 0:41 /data /other rw - btrfs /dev/loop1 rw,subvol=/data\n",
        );
        let top = &mounts[1];
        let u = mount_use(&mounts, top, Path::new("/data"), &[PathBuf::from("inner")]);
        let ids = |v: &[MountInfo]| v.iter().map(|m| m.mount_id).collect::<Vec<_>>();
        // The subvol mount and the bind of a directory of it; not the nested subvolume's mount,
        // not /data2, not another filesystem's /data.
        assert_eq!(ids(&u.affected), [44, 45]);
        // Something mounted inside the volume's mount.
        assert_eq!(ids(&u.blocking), [48]);

        // Through the top level: a mount on a directory of the subvolume there blocks too.
        let mut with_top_child = mounts.clone();
        with_top_child.extend(parse_mountinfo(
            b"50 43 0:42 / /top/data/sub rw - tmpfs tmpfs rw\n\
              51 44 0:39 /data /srv/data rw - btrfs /dev/loop0 rw,subvol=/data\n",
        ));
        let u = mount_use(&with_top_child, top, Path::new("/data"), &[]);
        // 48 and 50 are inside; 44 and 51 are stacked on each other; 46 (no longer said to be
        // nested) is a part of the subvolume.
        assert_eq!(ids(&u.blocking), [44, 48, 50, 51]);
        assert_eq!(ids(&u.affected), [45, 46]);
    }

    #[test]
    fn default_subvolume_is_parsed_from_a_search_result() {
        // One search header (native endian) and one dir item named "default" -> subvolume 258.
        let mut buf = Vec::new();
        let name = b"default";
        let item_len = 30 + name.len();
        buf.extend_from_slice(&7u64.to_ne_bytes()); // transid
        buf.extend_from_slice(&6u64.to_ne_bytes()); // objectid
        buf.extend_from_slice(&0x1234u64.to_ne_bytes()); // offset (name hash)
        buf.extend_from_slice(&84u32.to_ne_bytes()); // type
        buf.extend_from_slice(&(item_len as u32).to_ne_bytes()); // len
        buf.extend_from_slice(&258u64.to_le_bytes()); // location.objectid
        buf.push(132); // location.type (ROOT_ITEM)
        buf.extend_from_slice(&u64::MAX.to_le_bytes()); // location.offset
        buf.extend_from_slice(&7u64.to_le_bytes()); // transid
        buf.extend_from_slice(&0u16.to_le_bytes()); // data_len
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes()); // name_len
        buf.push(2); // type (BTRFS_FT_DIR)
        buf.extend_from_slice(name);
        assert_eq!(sys::default_from_search(&buf, 1), Some(258));
        assert_eq!(sys::default_from_search(&buf, 0), None);
        // A truncated buffer is not read past its end.
        assert_eq!(sys::default_from_search(&buf[..40], 1), None);
    }
}

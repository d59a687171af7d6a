//! The image provider: a filesystem on a loop device is snapshotted by cloning the loop
//! device's backing file with `FICLONE` while vssd holds the filesystem frozen — the way VM disks
//! and test rigs are snapshotted. Crash-consistent even with no writers; atomic across the set
//! (vssd freezes every image volume, commits all, thaws all).
//!
//! **What is snapshotted.** The mount point of a whole filesystem (mount root `/`) of type XFS,
//! ext4 or btrfs whose source is a loop device over a *whole* file (`offset` and `sizelimit` 0
//! in `/sys/block/loopN/loop/`), the backing file lying on a filesystem that can clone it: btrfs,
//! or XFS with `reflink=1` (checked by a probe clone of an invisible `O_TMPFILE`). A btrfs image
//! is a subvolume root, so the btrfs provider (first in [`crate::builtin_providers`]) takes it
//! unless the requester names this provider.
//!
//! **Freeze.** `needs_freeze` is true: vssd freezes the *inner* filesystem (the volume) around
//! `commit`, so the image file is quiet and consistent. `commit` touches only the outer
//! filesystem (the backing file's directory) and `/sys`, never the frozen volume. A set holding
//! both an image volume and the filesystem of its backing file fails with
//! VSS_E_NESTED_VOLUME_LIMIT ([`Provider::underlying_volume`]): freezing the outer filesystem
//! would block the clone.
//!
//! **The snapshot** is the file `<backing file>.vss-<snapshot id>` in the backing file's
//! directory (mode 0600), created empty with `O_CREAT | O_EXCL | O_CLOEXEC`, given
//! `FS_NOCOW_FL` when the backing file has it (else btrfs refuses the clone with EINVAL), then
//! cloned whole and fsynced. `snapshot_path` and `locator` are its path; `delete` unlinks it.
//!
//! **Exposing** attaches the clone to a read-only loop device (`losetup --find --show
//! --read-only`, retried when another process takes the offered device) and mounts it
//! read-only (`nosuid,nodev`) with per-filesystem options: XFS `nouuid,norecovery` (the clone
//! has the original's UUID, and a frozen-then-cloned XFS log still asks for recovery, which a
//! read-only device refuses: plain `ro,nouuid` fails), ext4 plain (falling back to `noload` if
//! the journal needs recovery), btrfs `rescue=nologreplay`. A btrfs clone has the original's
//! fsid; since Linux 6.7 btrfs mounts such a single-device clone with a temporary in-memory fsid
//! ("temp-fsid"), leaving the clone unchanged; older kernels refuse it, which is reported as
//! VSS_E_NOT_SUPPORTED. [`crate::Exposure::detail`] is the loop device; unexposing unmounts and
//! detaches that device (only if it is still backed by the clone).
//!
//! Caveat: while a clone is attached, blkid sees two filesystems with the same UUID; mount
//! originals by device or path, not by `UUID=`.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use uuid::Uuid;
use vss_model::{ErrorCode, Id, ProviderType, VssError};

use crate::fsops;
use crate::volume::{FsType, Volume, VolumeKind, containing_mount, read_mountinfo};
use crate::{
    Atomicity, CommittedSnapshot, Exposure, Provider, ProviderConfig, ProviderInfo, SnapshotRequest,
};

/// The fixed id of the image provider.
pub const IMAGE_PROVIDER_ID: Id = Uuid::from_u128(0x0b1a5e5c_8f2e_4c6e_9a41_6c1f0b7e2a03);

/// The infix between the backing file's name and the snapshot id in a clone's name.
pub const CLONE_INFIX: &str = ".vss-";

/// How a loop device is set up, from `/sys/dev/block/<major>:<minor>/loop/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInfo {
    /// The device node it was found by (`/dev/loop3`).
    pub device: PathBuf,
    /// The backing file as the kernel names it now (`(deleted)` suffix removed, see `deleted`).
    pub backing_file: PathBuf,
    /// Whether the backing file has been unlinked.
    pub deleted: bool,
    /// `offset` in bytes.
    pub offset: u64,
    /// `sizelimit` in bytes (0: none).
    pub sizelimit: u64,
    /// Size of the device in bytes.
    pub size: u64,
}

fn read_sys(dir: &Path, name: &str) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(dir.join(name))?.read_to_string(&mut text)?;
    Ok(text.trim_end_matches('\n').to_owned())
}

/// The loop setup of the block device `device`; `Ok(None)` when it is not a configured loop
/// device (another block device, a partition of a loop device, a detached loop device).
pub fn loop_info(device: &Path) -> std::io::Result<Option<LoopInfo>> {
    let meta = match std::fs::metadata(device) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let rdev = meta.rdev();
    let sys = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        rustix::fs::major(rdev),
        rustix::fs::minor(rdev)
    ));
    let loop_dir = sys.join("loop");
    let backing = match read_sys(&loop_dir, "backing_file") {
        Ok(backing) => backing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let number = |name: &str| -> std::io::Result<u64> {
        read_sys(&loop_dir, name)?
            .trim()
            .parse()
            .map_err(|e| std::io::Error::other(format!("{}/{name}: {e}", loop_dir.display())))
    };
    let (backing_file, deleted) = match backing.strip_suffix(" (deleted)") {
        Some(name) => (name, true),
        None => (backing.as_str(), false),
    };
    let sectors: u64 = read_sys(&sys, "size")?.trim().parse().unwrap_or(0);
    Ok(Some(LoopInfo {
        device: device.to_owned(),
        backing_file: PathBuf::from(backing_file),
        deleted,
        offset: number("offset")?,
        sizelimit: number("sizelimit")?,
        size: sectors * 512,
    }))
}

/// The filesystem in an image file, from its superblock magic: XFS (`XFSB` at 0), ext2/3/4
/// (`0xEF53` at 1080), btrfs (`_BHRfS_M` at 65600).
pub fn detect_fs_type(image: &Path) -> std::io::Result<Option<FsType>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(image)?;
    let read_at = |offset: u64, len: usize| -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; len];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(Some(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    };
    if read_at(0, 4)?.is_some_and(|b| b == b"XFSB") {
        return Ok(Some(FsType::Xfs));
    }
    if read_at(65600, 8)?.is_some_and(|b| b == b"_BHRfS_M") {
        return Ok(Some(FsType::Btrfs));
    }
    if read_at(1080, 2)?.is_some_and(|b| b == [0x53, 0xEF]) {
        return Ok(Some(FsType::Ext4));
    }
    Ok(None)
}

/// The image provider.
#[derive(Debug)]
pub struct ImageProvider {
    config: ProviderConfig,
}

fn os_error(code: ErrorCode, what: impl std::fmt::Display, err: Errno, hint: &str) -> VssError {
    VssError::new(code, format!("{what}: {err}; {hint}"))
}

/// Runs a command with a clean environment and returns its trimmed stdout, or its stderr.
fn run_tool(program: &str, args: &[&OsStr]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ImageProvider {
    /// A provider with these settings.
    pub fn new(config: ProviderConfig) -> Self {
        ImageProvider { config }
    }

    /// The settings.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The loop setup behind `volume`, or why it cannot be taken.
    fn image_of(&self, volume: &Volume) -> Result<LoopInfo, String> {
        if volume.kind != VolumeKind::MountPoint {
            return Err(format!(
                "it is a {}, not the mount point of a filesystem on a loop device",
                volume.kind.name()
            ));
        }
        if !matches!(volume.fs_type, FsType::Xfs | FsType::Ext4 | FsType::Btrfs) {
            return Err(format!(
                "it is {}; image snapshots support XFS, ext4 and btrfs images",
                volume.fs_type
            ));
        }
        let mounts = read_mountinfo().map_err(|e| format!("cannot read mountinfo: {e}"))?;
        let mount = containing_mount(&mounts, &volume.path)
            .filter(|m| m.mount_point == volume.path)
            .ok_or_else(|| "it is no longer a mount point".to_owned())?;
        if mount.root != Path::new("/") {
            return Err(format!(
                "the mount shows '{}' of its filesystem, not the whole filesystem; the image \
                 holds the whole filesystem, snapshot its full mount",
                mount.root.display()
            ));
        }
        let info = loop_info(Path::new(&mount.source))
            .map_err(|e| format!("cannot examine its device {}: {e}", mount.source))?
            .ok_or_else(|| format!("its device {} is not a loop device", mount.source))?;
        if info.offset != 0 || info.sizelimit != 0 {
            return Err(format!(
                "{} maps part of '{}' (offset {}, sizelimit {}); only whole-file loop devices \
                 can be cloned",
                info.device.display(),
                info.backing_file.display(),
                info.offset,
                info.sizelimit
            ));
        }
        if info.deleted {
            return Err(format!(
                "the backing file '{}' of {} has been deleted",
                info.backing_file.display(),
                info.device.display()
            ));
        }
        let meta = std::fs::metadata(&info.backing_file).map_err(|e| {
            format!(
                "the backing file '{}' of {} cannot be examined: {e} (set up in another mount \
                 namespace?)",
                info.backing_file.display(),
                info.device.display()
            )
        })?;
        if !meta.is_file() {
            return Err(format!(
                "the backing file '{}' is not a regular file",
                info.backing_file.display()
            ));
        }
        if meta.len() / 512 * 512 != info.size {
            return Err(format!(
                "'{}' ({} bytes) does not match the size of {} ({} bytes); is it the same file?",
                info.backing_file.display(),
                meta.len(),
                info.device.display(),
                info.size
            ));
        }
        let dir = info
            .backing_file
            .parent()
            .ok_or_else(|| "the backing file has no directory".to_owned())?;
        match fsops::probe_reflink(dir) {
            Ok(()) => Ok(info),
            Err(Errno::OPNOTSUPP) => Err(format!(
                "the backing file '{}' lies on a filesystem that cannot clone files (reflink \
                 needs btrfs or XFS made with reflink=1)",
                info.backing_file.display()
            )),
            Err(e) => Err(format!(
                "a probe clone next to the backing file '{}' failed: {e}",
                info.backing_file.display()
            )),
        }
    }

    /// `<backing file>.vss-<id>`.
    fn clone_path(backing_file: &Path, snapshot_id: Id) -> PathBuf {
        let mut name = backing_file.as_os_str().to_owned();
        name.push(CLONE_INFIX);
        name.push(snapshot_id.hyphenated().to_string());
        PathBuf::from(name)
    }

    /// Checks that a locator names a clone this provider made (an absolute path ending in
    /// `.vss-<uuid>`), so that a damaged catalog entry never unlinks an arbitrary file.
    fn check_locator(locator: &str) -> Result<&Path, VssError> {
        let path = Path::new(locator);
        let valid = path.is_absolute()
            && path
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(|name| name.rsplit_once(CLONE_INFIX))
                .is_some_and(|(base, id)| !base.is_empty() && Uuid::parse_str(id).is_ok());
        if valid {
            Ok(path)
        } else {
            Err(VssError::invalid_arg(format!(
                "'{locator}' is not an image snapshot locator (an absolute path ending in \
                 '{CLONE_INFIX}<snapshot id>'); the catalog entry is damaged"
            )))
        }
    }

    fn not_supported(volume: &Volume, reason: &str) -> VssError {
        VssError::new(
            ErrorCode::VolumeNotSupportedByProvider,
            format!(
                "the image provider cannot snapshot '{}': {reason}",
                volume.path.display()
            ),
        )
    }

    /// Attaches `image` to a free loop device, read-only. Retries a few times, since another
    /// process may take the device `losetup --find` offered.
    fn attach_read_only(image: &Path) -> Result<PathBuf, VssError> {
        let mut last = String::new();
        for attempt in 1..=10u64 {
            match run_tool(
                "losetup",
                &[
                    OsStr::new("--find"),
                    OsStr::new("--show"),
                    OsStr::new("--read-only"),
                    image.as_os_str(),
                ],
            ) {
                Ok(out) if out.starts_with("/dev/") => return Ok(PathBuf::from(out)),
                Ok(out) => last = format!("losetup printed {out:?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20 * attempt));
        }
        Err(VssError::new(
            ErrorCode::ProviderVeto,
            format!(
                "cannot attach '{}' to a read-only loop device: {last}; check that loop devices \
                 are available (modprobe loop)",
                image.display()
            ),
        ))
    }

    /// Detaches `device` if it is still backed by `image`.
    fn detach(device: &Path, image: &Path) -> Result<(), VssError> {
        match loop_info(device) {
            Ok(Some(info)) if info.backing_file == image => {}
            Ok(_) => return Ok(()),
            Err(e) => {
                return Err(VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!("cannot examine loop device {}: {e}", device.display()),
                ));
            }
        }
        let mut last = String::new();
        for attempt in 1..=5u64 {
            match run_tool("losetup", &[OsStr::new("-d"), device.as_os_str()]) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            if !matches!(loop_info(device), Ok(Some(ref i)) if i.backing_file == image) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50 * attempt));
        }
        Err(VssError::new(
            ErrorCode::UnexpectedProviderError,
            format!(
                "cannot detach loop device {}: {last}; detach it by hand (losetup -d)",
                device.display()
            ),
        ))
    }

    /// Mounts the read-only loop device `device` (holding a clone of type `fs_type`) at `at`.
    fn mount_clone(device: &Path, at: &Path, fs_type: &FsType) -> Result<(), VssError> {
        let attempts: &[&str] = match fs_type {
            FsType::Xfs => &["nouuid,norecovery"],
            FsType::Ext4 => &["", "noload"],
            FsType::Btrfs => &["rescue=nologreplay"],
            FsType::Other(_) => &[""],
        };
        let mut last = Errno::INVAL;
        for options in attempts {
            match crate::expose::mount_read_only(device, at, fs_type.name(), options) {
                Ok(()) => {
                    if !options.is_empty() && *options == "noload" {
                        tracing::warn!(
                            device = %device.display(),
                            "ext4 clone mounted without its journal (noload): recovery needed"
                        );
                    }
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        let (code, hint) = match (fs_type, last) {
            (FsType::Btrfs, Errno::EXIST | Errno::BUSY) => (
                ErrorCode::NotSupported,
                "the clone has the same btrfs fsid as the mounted original, and this kernel \
                 cannot mount it with a temporary fsid (needs Linux 6.7 or later); unmount the \
                 original to read the snapshot",
            ),
            _ => (
                ErrorCode::ProviderVeto,
                "see the kernel log (dmesg) for the reason",
            ),
        };
        Err(os_error(
            code,
            format_args!(
                "cannot mount the {fs_type} snapshot on {} read-only at '{}'",
                device.display(),
                at.display()
            ),
            last,
            hint,
        ))
    }
}

impl Provider for ImageProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: IMAGE_PROVIDER_ID,
            name: "image".into(),
            provider_type: ProviderType::Software,
            version: "1.0".into(),
            atomicity: Atomicity::AcrossSet,
            needs_freeze: true,
        }
    }

    fn is_volume_supported(&self, volume: &Volume) -> bool {
        match self.image_of(volume) {
            Ok(_) => true,
            Err(reason) => {
                tracing::debug!(path = %volume.path.display(), %reason, "image: not supported");
                false
            }
        }
    }

    fn underlying_volume(&self, volume: &Volume) -> Option<PathBuf> {
        let info = self.image_of(volume).ok()?;
        let canonical = std::fs::canonicalize(&info.backing_file).ok()?;
        let mounts = read_mountinfo().ok()?;
        containing_mount(&mounts, &canonical).map(|m| m.mount_point.clone())
    }

    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        let volume = &request.volume;
        let info = self
            .image_of(volume)
            .map_err(|reason| Self::not_supported(volume, &reason))?;
        let target = Self::clone_path(&info.backing_file, request.snapshot_id);
        if std::fs::symlink_metadata(&target).is_ok() {
            return Err(VssError::new(
                ErrorCode::ObjectAlreadyExists,
                format!(
                    "'{}' already exists; snapshot id {} is in use",
                    target.display(),
                    request.snapshot_id
                ),
            ));
        }
        Ok(())
    }

    /// Runs while vssd holds the volume frozen: touches only `/proc`, `/sys` and the outer
    /// filesystem.
    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError> {
        let volume = &request.volume;
        let started = Instant::now();
        let info = loop_info(Path::new(&volume.device))
            .map_err(|e| {
                VssError::new(
                    ErrorCode::ProviderVeto,
                    format!("cannot examine loop device {}: {e}", volume.device),
                )
            })?
            .ok_or_else(|| {
                VssError::new(
                    ErrorCode::ProviderVeto,
                    format!("{} is no longer a loop device", volume.device),
                )
            })?;
        if info.deleted || info.offset != 0 || info.sizelimit != 0 {
            return Err(Self::not_supported(
                volume,
                "its loop device changed (deleted backing file, offset or sizelimit)",
            ));
        }
        let backing = &info.backing_file;
        let target = Self::clone_path(backing, request.snapshot_id);
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(Self::not_supported(
                volume,
                "the backing file has no directory",
            ));
        };
        let veto = |what: String, e: Errno| {
            let code = match e {
                Errno::NOSPC | Errno::DQUOT => ErrorCode::InsufficientStorage,
                Errno::EXIST => ErrorCode::ObjectAlreadyExists,
                _ => ErrorCode::ProviderVeto,
            };
            os_error(
                code,
                what,
                e,
                "check free space on the filesystem holding the image and that it is \
                 writable, not frozen, and can reflink",
            )
        };
        let dir_fd = fsops::open_dir(dir)
            .map_err(|e| veto(format!("cannot open '{}'", dir.display()), e))?;
        let source = rustix::fs::open(
            backing,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| {
            veto(
                format!("cannot open the backing file '{}'", backing.display()),
                e,
            )
        })?;
        let clone = rustix::fs::openat(
            &dir_fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| veto(format!("cannot create the clone '{}'", target.display()), e))?;
        let result = (|| {
            if fsops::has_nocow(source.as_fd()).map_err(|e| {
                veto(
                    format!("cannot read the inode flags of '{}'", backing.display()),
                    e,
                )
            })? {
                fsops::set_nocow(clone.as_fd()).map_err(|e| {
                    veto(
                        format!(
                            "cannot set FS_NOCOW_FL on the empty clone '{}'",
                            target.display()
                        ),
                        e,
                    )
                })?;
            }
            fsops::ficlone(clone.as_fd(), source.as_fd()).map_err(|e| {
                veto(
                    format!(
                        "FICLONE of '{}' to '{}' failed",
                        backing.display(),
                        target.display()
                    ),
                    e,
                )
            })?;
            rustix::fs::fsync(&clone)
                .map_err(|e| veto(format!("cannot fsync the clone '{}'", target.display()), e))
        })();
        if let Err(e) = result {
            drop(clone);
            if let Err(cleanup) = rustix::fs::unlinkat(&dir_fd, name, AtFlags::empty()) {
                tracing::warn!(clone = %target.display(), error = %cleanup, "cannot remove a failed clone");
            }
            return Err(e);
        }
        tracing::debug!(
            volume = %volume.path.display(),
            clone = %target.display(),
            elapsed_us = started.elapsed().as_micros(),
            "image clone created"
        );
        Ok(CommittedSnapshot {
            snapshot_id: request.snapshot_id,
            locator: target.to_string_lossy().into_owned(),
            snapshot_path: target,
        })
    }

    fn abort(
        &self,
        _request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError> {
        // begin_prepare creates nothing; a failed commit removes its own clone.
        committed.map_or(Ok(()), |snapshot| self.delete(snapshot))
    }

    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        let path = Self::check_locator(&snapshot.locator)?;
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Ok(meta) if !meta.is_file() => {
                return Err(VssError::bad_state(format!(
                    "'{}' is not a regular file, refusing to delete it",
                    path.display()
                )));
            }
            _ => {}
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!("cannot delete the image clone '{}': {e}", path.display()),
            )),
        }
    }

    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError> {
        let path = Self::check_locator(&snapshot.locator)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!("cannot examine '{}': {e}", path.display()),
            )),
        }
    }

    fn query(&self, volume: &Volume) -> Result<Vec<String>, VssError> {
        let Ok(info) = self.image_of(volume) else {
            return Ok(Vec::new());
        };
        let (Some(dir), Some(base)) = (info.backing_file.parent(), info.backing_file.file_name())
        else {
            return Ok(Vec::new());
        };
        let mut prefix = base.as_bytes().to_vec();
        prefix.extend_from_slice(CLONE_INFIX.as_bytes());
        let entries = std::fs::read_dir(dir).map_err(|e| {
            VssError::new(
                ErrorCode::UnexpectedProviderError,
                format!("cannot list '{}': {e}", dir.display()),
            )
        })?;
        let mut found: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                name.as_bytes()
                    .strip_prefix(prefix.as_slice())
                    .is_some_and(|id| {
                        std::str::from_utf8(id).is_ok_and(|id| Uuid::parse_str(id).is_ok())
                    })
            })
            .map(|e| e.path().to_string_lossy().into_owned())
            .collect();
        found.sort();
        Ok(found)
    }

    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<Exposure, VssError> {
        let image = Self::check_locator(&snapshot.locator)?;
        crate::expose::check_expose_target(at)?;
        if !self.exists(snapshot)? {
            return Err(VssError::not_found(format!(
                "image snapshot '{}' does not exist (any more); it cannot be exposed",
                image.display()
            )));
        }
        let fs_type = detect_fs_type(image)
            .map_err(|e| {
                VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!("cannot read '{}': {e}", image.display()),
                )
            })?
            .ok_or_else(|| {
                VssError::new(
                    ErrorCode::NotSupported,
                    format!(
                        "'{}' holds no XFS, ext4 or btrfs filesystem that could be exposed",
                        image.display()
                    ),
                )
            })?;
        let device = Self::attach_read_only(image)?;
        if let Err(e) = Self::mount_clone(&device, at, &fs_type) {
            if let Err(detach) = Self::detach(&device, image) {
                tracing::warn!(error = %detach, "cannot detach after a failed exposure");
            }
            return Err(e);
        }
        Ok(Exposure {
            path: at.to_owned(),
            detail: Some(device.to_string_lossy().into_owned()),
        })
    }

    fn unexpose(&self, snapshot: &CommittedSnapshot, exposure: &Exposure) -> Result<(), VssError> {
        crate::expose::unmount_exposure(&exposure.path)?;
        match &exposure.detail {
            Some(device) => Self::detach(Path::new(device), Path::new(&snapshot.locator)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_fixed() {
        let p = ImageProvider::new(ProviderConfig::new(Path::new("/run/vss")));
        let info = p.info();
        assert_eq!(info.id.to_string(), "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a03");
        assert_eq!(info.name, "image");
        assert_eq!(info.atomicity, Atomicity::AcrossSet);
        assert!(info.needs_freeze);
    }

    #[test]
    fn clone_names_and_locators() {
        let id = Uuid::new_v4();
        let clone = ImageProvider::clone_path(Path::new("/srv/vm/disk.img"), id);
        assert_eq!(clone, PathBuf::from(format!("/srv/vm/disk.img.vss-{id}")));
        ImageProvider::check_locator(clone.to_str().unwrap()).unwrap();
        for bad in [
            "/srv/vm/disk.img".to_owned(),
            format!("srv/disk.img.vss-{id}"),
            "/srv/vm/disk.img.vss-nope".to_owned(),
            format!("/.vss-{id}"),
        ] {
            assert_eq!(
                ImageProvider::check_locator(&bad).unwrap_err().code,
                ErrorCode::InvalidArg,
                "{bad}"
            );
        }
    }

    #[test]
    fn fs_type_detection() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        let mut data = vec![0u8; 70_000];
        std::fs::write(&f, &data).unwrap();
        assert_eq!(detect_fs_type(&f).unwrap(), None);
        data[1080] = 0x53;
        data[1081] = 0xEF;
        std::fs::write(&f, &data).unwrap();
        assert_eq!(detect_fs_type(&f).unwrap(), Some(FsType::Ext4));
        data[65600..65608].copy_from_slice(b"_BHRfS_M");
        std::fs::write(&f, &data).unwrap();
        assert_eq!(detect_fs_type(&f).unwrap(), Some(FsType::Btrfs));
        data[..4].copy_from_slice(b"XFSB");
        std::fs::write(&f, &data).unwrap();
        assert_eq!(detect_fs_type(&f).unwrap(), Some(FsType::Xfs));
        std::fs::write(&f, b"XF").unwrap();
        assert_eq!(detect_fs_type(&f).unwrap(), None);
    }

    #[test]
    fn non_loop_devices_have_no_loop_info() {
        assert_eq!(loop_info(Path::new("/dev/null")).unwrap(), None);
        assert_eq!(loop_info(Path::new("/nonexistent/dev")).unwrap(), None);
        assert_eq!(loop_info(Path::new("/proc")).unwrap(), None);
    }
}

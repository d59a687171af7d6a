//! Volume resolution: from a path the requester gave to the filesystem that a provider snapshots.
//!
//! A "volume" on Linux is a directory that a snapshot can be taken of as a whole: the mount point
//! of a filesystem, the root of a btrfs subvolume (which btrfs snapshots on its own, mounted or
//! not), or a plain directory tree (which the reflink provider clones file by file; see
//! [`VolumeKind`]). [`resolve_volume`] turns a requester's path into a [`Volume`], or says why
//! the path is no volume. Which provider takes a volume is the daemon's choice (the first in
//! [`crate::builtin_providers`] order whose `is_volume_supported` says yes).
//!
//! [`covering_volume`] answers the opposite question for the daemon's consistency check: which
//! volume boundary (btrfs subvolume root or mount point) captures a given file.
//!
//! The mount table comes from `/proc/self/mountinfo`, parsed by the pure [`parse_mountinfo`] so
//! that the parser can be tested on sample text. Note that on btrfs the `st_dev` of a file is the
//! device number of its *subvolume*, not the `major:minor` of the filesystem shown in mountinfo;
//! mount points are therefore matched by path, never by device number.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use vss_model::{ErrorCode, VssError};

/// `BTRFS_SUPER_MAGIC` from `linux/magic.h`: the `f_type` statfs reports for btrfs.
pub const BTRFS_SUPER_MAGIC: u64 = 0x9123_683E;

/// The inode number of the root directory of every btrfs subvolume (`BTRFS_FIRST_FREE_OBJECTID`).
pub const BTRFS_SUBVOLUME_ROOT_INO: u64 = 256;

/// The filesystem type of a volume, as far as the providers care.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FsType {
    /// btrfs.
    Btrfs,
    /// XFS.
    Xfs,
    /// ext4.
    Ext4,
    /// Anything else, by its mountinfo name (`tmpfs`, `proc`, ...).
    Other(String),
}

impl FsType {
    /// The type for a mountinfo filesystem-type field.
    pub fn from_name(name: &str) -> FsType {
        match name {
            "btrfs" => FsType::Btrfs,
            "xfs" => FsType::Xfs,
            "ext4" => FsType::Ext4,
            other => FsType::Other(other.to_owned()),
        }
    }

    /// The mountinfo name (`btrfs`).
    pub fn name(&self) -> &str {
        match self {
            FsType::Btrfs => "btrfs",
            FsType::Xfs => "xfs",
            FsType::Ext4 => "ext4",
            FsType::Other(name) => name,
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of directory a [`Volume`] is. When several apply, the first listed wins: a btrfs
/// mount point is a `MountPoint` (with [`Volume::btrfs_subvolume_root`] set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    /// A mount point: the whole filesystem shown by that mount (btrfs, image, exec, reflink).
    MountPoint,
    /// The root of a btrfs subvolume that is not itself a mount point (btrfs, reflink).
    SubvolumeRoot,
    /// Any other directory: only a directory tree can be snapshotted (reflink).
    Directory,
}

impl VolumeKind {
    /// A short name for messages (`mount point`).
    pub const fn name(self) -> &'static str {
        match self {
            VolumeKind::MountPoint => "mount point",
            VolumeKind::SubvolumeRoot => "btrfs subvolume root",
            VolumeKind::Directory => "directory",
        }
    }
}

/// A resolved volume: a directory that is a mount point, a btrfs subvolume root, or a plain
/// directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The canonical path (absolute, no symlinks, no `..`).
    pub path: PathBuf,
    /// The filesystem type of the mount containing `path`.
    pub fs_type: FsType,
    /// The mount source from mountinfo (`/dev/loop3`).
    pub device: String,
    /// The mount point of the mount containing `path` (equal to `path` for a mount point).
    pub mount_point: PathBuf,
    /// Whether `path` itself is a mount point.
    pub is_mount_point: bool,
    /// Whether `path` is the root of a btrfs subvolume (inode 256 on btrfs).
    pub btrfs_subvolume_root: bool,
    /// `st_dev` of `path` (on btrfs: the subvolume's anonymous device).
    pub dev: u64,
    /// Mount point, subvolume root, or plain directory.
    pub kind: VolumeKind,
}

/// One line of `/proc/self/mountinfo` (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// Major number of the filesystem's `st_dev` as the superblock has it.
    pub major: u32,
    /// Minor number of the same.
    pub minor: u32,
    /// The directory of the filesystem that forms the root of this mount (`/` for a whole
    /// filesystem, `/data` for a btrfs `subvol=data` mount or a bind mount of `/data`).
    pub root: PathBuf,
    /// Where it is mounted, relative to the process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub mount_options: String,
    /// Filesystem type (`btrfs`), without a `fuse.` style subtype split.
    pub fs_type: String,
    /// Mount source (`/dev/loop3`), or `none`.
    pub source: String,
    /// Per-superblock options (`rw,space_cache=v2,subvolid=5,subvol=/`).
    pub super_options: String,
}

impl MountInfo {
    /// Whether the per-mount options say the mount is read-only.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "ro")
    }

    /// Whether `other` is a mount of the same filesystem (same superblock device number).
    pub fn same_filesystem(&self, other: &MountInfo) -> bool {
        self.major == other.major && self.minor == other.minor
    }
}

/// Decodes the octal escapes mountinfo uses for space, tab, newline and backslash (`\040`).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

fn path_field(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn string_field(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Parses one mountinfo line; `None` for a malformed one.
fn parse_mountinfo_line(line: &[u8]) -> Option<MountInfo> {
    let fields: Vec<&[u8]> = line
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    if fields.len() < 10 {
        return None;
    }
    let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u32>().ok();
    let mount_id = number(fields[0])?;
    let parent_id = number(fields[1])?;
    let (major, minor) = {
        let dev = std::str::from_utf8(fields[2]).ok()?;
        let (ma, mi) = dev.split_once(':')?;
        (ma.parse().ok()?, mi.parse().ok()?)
    };
    // Optional fields (`shared:1 master:2`) run up to the single "-" separator.
    let separator = fields.iter().skip(6).position(|f| *f == b"-")? + 6;
    let rest = &fields[separator + 1..];
    if rest.len() < 2 {
        return None;
    }
    Some(MountInfo {
        mount_id,
        parent_id,
        major,
        minor,
        root: path_field(fields[3]),
        mount_point: path_field(fields[4]),
        mount_options: string_field(fields[5]),
        fs_type: string_field(rest[0]),
        source: string_field(rest[1]),
        super_options: rest.get(2).map(|f| string_field(f)).unwrap_or_default(),
    })
}

/// Parses the text of `/proc/<pid>/mountinfo`, in file order (later mounts stack on earlier
/// ones). Malformed lines are skipped.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountInfo> {
    text.split(|b| *b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect()
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read_mountinfo() -> io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read("/proc/self/mountinfo")?))
}

/// The mount that contains the canonical path `path`: the one with the longest mount point that
/// is a prefix of it (by components), the last one listed when several stack on one point.
pub fn containing_mount<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point) {
            let longer = best.is_none_or(|b| {
                m.mount_point.components().count() >= b.mount_point.components().count()
            });
            if longer {
                best = Some(m);
            }
        }
    }
    best
}

fn io_error(path: &str, what: &str, err: &io::Error) -> VssError {
    let code = match err.kind() {
        io::ErrorKind::NotFound => ErrorCode::ObjectNotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::AccessDenied,
        _ if err.raw_os_error() == Some(libc::ENOTDIR) => ErrorCode::ObjectNotFound,
        _ => ErrorCode::InvalidArg,
    };
    let hint = match code {
        ErrorCode::ObjectNotFound => "check the path; it must name an existing directory",
        ErrorCode::AccessDenied => "run as a user that may read the path (vssd runs as root)",
        _ => "check the path",
    };
    VssError::new(code, format!("cannot {what} '{path}': {err}; {hint}"))
}

/// Resolves a requester's volume name to a [`Volume`].
///
/// The path must be absolute and exist; it is canonicalized (symlinks resolved) and must then be
/// a directory: a mount point, the root of a btrfs subvolume, or any other directory
/// ([`VolumeKind::Directory`], which only the reflink provider takes).
///
/// Errors: `E_INVALIDARG` for a relative path or a non-directory; `VSS_E_OBJECT_NOT_FOUND` for a
/// missing path; `E_ACCESSDENIED` when it cannot be examined.
pub fn resolve_volume(path: &str) -> Result<Volume, VssError> {
    let mounts = read_mountinfo().map_err(|e| {
        VssError::unexpected(format!(
            "cannot read /proc/self/mountinfo to resolve '{path}': {e}; is /proc mounted?"
        ))
    })?;
    resolve_volume_with(path, &mounts)
}

/// [`resolve_volume`] against a given mount table (which must describe this machine; the path is
/// still examined on the real filesystem).
pub fn resolve_volume_with(path: &str, mounts: &[MountInfo]) -> Result<Volume, VssError> {
    if path.is_empty() || !Path::new(path).is_absolute() {
        return Err(VssError::invalid_arg(format!(
            "volume '{path}' is not an absolute path; give an absolute path such as /srv/data"
        )));
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| io_error(path, "resolve", &e))?;
    let shown = canonical.display().to_string();
    // Volumes are named by their real path: no `..`, no symbolic link (one could point to
    // another filesystem than the name suggests). `//` and a trailing `/` are harmless.
    let lexical: std::path::PathBuf = Path::new(path).components().collect();
    if lexical != canonical {
        return Err(VssError::invalid_arg(format!(
            "'{path}' is not a real path: it contains '..' or a symbolic link and resolves to \
             '{shown}'; give that path if it is the volume you mean"
        )));
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| io_error(&shown, "stat", &e))?;
    if !meta.is_dir() {
        return Err(VssError::invalid_arg(format!(
            "'{shown}' is not a directory; give the mount point of the filesystem or the \
             directory tree to snapshot"
        )));
    }
    let mount = containing_mount(mounts, &canonical).ok_or_else(|| {
        VssError::unexpected(format!(
            "no mount in /proc/self/mountinfo contains '{shown}'; is the path in this mount \
             namespace?"
        ))
    })?;
    let fs_type = FsType::from_name(&mount.fs_type);
    let is_mount_point = mount.mount_point == canonical;
    let btrfs_subvolume_root = fs_type == FsType::Btrfs && meta.ino() == BTRFS_SUBVOLUME_ROOT_INO;
    let kind = if is_mount_point {
        VolumeKind::MountPoint
    } else if btrfs_subvolume_root {
        VolumeKind::SubvolumeRoot
    } else {
        VolumeKind::Directory
    };
    Ok(Volume {
        path: canonical,
        fs_type,
        device: mount.source.clone(),
        mount_point: mount.mount_point.clone(),
        is_mount_point,
        btrfs_subvolume_root,
        dev: meta.dev(),
        kind,
    })
}

/// The volume boundary that captures `path` (a file or directory that exists): on btrfs the
/// root of the subvolume containing it (a snapshot of an enclosing subvolume does not include a
/// nested one), elsewhere the mount point of the mount containing it. The daemon uses it to
/// find writer files that no volume of the set captures (VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT).
///
/// On btrfs the walk goes up from `path` while `st_dev` stays that of `path` and stops at the
/// first directory with inode 256 ([`BTRFS_SUBVOLUME_ROOT_INO`]); if it reaches the mount point
/// first (a bind mount of a plain directory), that is the answer. `path` is canonicalized first.
pub fn covering_volume(path: &Path) -> io::Result<PathBuf> {
    covering_volume_in(&read_mountinfo()?, path)
}

/// [`covering_volume`] with the mount table already read ([`read_mountinfo`]): a caller
/// resolving many paths (every file of every writer) reads it once, not once per path.
pub fn covering_volume_in(mounts: &[MountInfo], path: &Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(path)?;
    let mount = containing_mount(mounts, &canonical).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no mount contains '{}'", canonical.display()),
        )
    })?;
    if mount.fs_type != "btrfs" {
        return Ok(mount.mount_point.clone());
    }
    Ok(btrfs_subvolume_root_of(&canonical, &mount.mount_point)?
        .unwrap_or_else(|| mount.mount_point.clone()))
}

/// The root of the btrfs subvolume holding the canonical path `path`, not looking above
/// `mount_point`; `None` when the walk reaches the mount point without finding one.
pub(crate) fn btrfs_subvolume_root_of(
    path: &Path,
    mount_point: &Path,
) -> io::Result<Option<PathBuf>> {
    let start = std::fs::symlink_metadata(path)?;
    let dev = start.dev();
    let mut current = Some(path);
    while let Some(dir) = current {
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.dev() != dev {
            break;
        }
        if meta.is_dir() && meta.ino() == BTRFS_SUBVOLUME_ROOT_INO {
            return Ok(Some(dir.to_owned()));
        }
        if dir == mount_point {
            break;
        }
        current = dir.parent();
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
43 27 0:39 / /mnt/my\\040disk rw,relatime shared:5 master:2 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=5,subvol=/
44 27 0:39 /data /srv/data rw,noatime - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/data
45 27 0:39 /dir\\011x /srv/bind ro,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/
46 27 0:40 / /srv/data rw - tmpfs tmp\\134fs rw
garbage line
";

    #[test]
    fn parses_fields_and_optional_fields() {
        let mounts = parse_mountinfo(SAMPLE.as_bytes());
        assert_eq!(mounts.len(), 6);
        let root = &mounts[1];
        assert_eq!(
            (root.mount_id, root.parent_id, root.major, root.minor),
            (27, 1, 254, 0)
        );
        assert_eq!(root.root, Path::new("/"));
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, "/dev/vda");
        assert_eq!(root.super_options, "rw,discard");
        assert_eq!(mounts[2].fs_type, "btrfs");
        assert_eq!(
            mounts[2].super_options,
            "rw,space_cache=v2,subvolid=5,subvol=/"
        );
    }

    #[test]
    fn decodes_octal_escapes() {
        let mounts = parse_mountinfo(SAMPLE.as_bytes());
        assert_eq!(mounts[2].mount_point, Path::new("/mnt/my disk"));
        assert_eq!(mounts[4].root, Path::new("/dir\tx"));
        assert_eq!(mounts[5].source, "tmp\\fs");
        assert_eq!(unescape(b"a\\012b"), b"a\nb");
        // Not an escape: kept as is.
        assert_eq!(unescape(b"a\\9b\\"), b"a\\9b\\");
    }

    #[test]
    fn bind_and_subvolume_mounts_keep_their_root() {
        let mounts = parse_mountinfo(SAMPLE.as_bytes());
        let sub = &mounts[3];
        assert_eq!(sub.root, Path::new("/data"));
        assert!(sub.same_filesystem(&mounts[2]));
        assert!(!sub.is_read_only());
        let bind = &mounts[4];
        assert_eq!(bind.mount_point, Path::new("/srv/bind"));
        assert!(bind.is_read_only());
        assert!(!bind.same_filesystem(&mounts[1]));
    }

    #[test]
    fn containing_mount_is_longest_prefix_and_last_on_stacks() {
        let mounts = parse_mountinfo(SAMPLE.as_bytes());
        let m = containing_mount(&mounts, Path::new("/mnt/my disk/x/y")).unwrap();
        assert_eq!(m.mount_id, 43);
        // Component-wise: /mnt/my disk2 is not under /mnt/my disk.
        assert_eq!(
            containing_mount(&mounts, Path::new("/mnt/my disk2"))
                .unwrap()
                .mount_id,
            27
        );
        // /srv/data is stacked: the later tmpfs hides the btrfs subvolume.
        assert_eq!(
            containing_mount(&mounts, Path::new("/srv/data/f"))
                .unwrap()
                .mount_id,
            46
        );
        assert_eq!(
            containing_mount(&mounts, Path::new("/proc"))
                .unwrap()
                .mount_id,
            22
        );
        assert_eq!(containing_mount(&[], Path::new("/")), None);
    }

    #[test]
    fn fs_type_names_round_trip() {
        for name in ["btrfs", "xfs", "ext4", "tmpfs"] {
            assert_eq!(FsType::from_name(name).name(), name);
        }
        assert_eq!(FsType::from_name("zfs"), FsType::Other("zfs".into()));
    }

    #[test]
    fn relative_path_is_invalid_arg() {
        for p in ["", "relative/dir", "./x"] {
            let err = resolve_volume(p).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArg, "{p}");
            assert!(err.message.contains("absolute path"), "{}", err.message);
        }
    }

    #[test]
    fn missing_path_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = resolve_volume(missing.to_str().unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::ObjectNotFound, "{err}");
        assert!(err.message.contains("nope"), "{}", err.message);
    }

    #[test]
    fn plain_directory_is_a_directory_volume() {
        let dir = tempfile::tempdir().unwrap();
        let v = resolve_volume(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(v.kind, VolumeKind::Directory);
        assert_eq!(v.path, std::fs::canonicalize(dir.path()).unwrap());
        assert!(!v.is_mount_point);
        assert!(!v.btrfs_subvolume_root);
        assert!(v.path.starts_with(&v.mount_point));
        assert_ne!(v.mount_point, v.path);
    }

    #[test]
    fn covering_volume_off_btrfs_is_the_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let v = resolve_volume(dir.path().to_str().unwrap()).unwrap();
        if v.fs_type != FsType::Btrfs {
            assert_eq!(covering_volume(&file).unwrap(), v.mount_point);
        }
        assert_eq!(
            covering_volume(Path::new("/proc/self")).unwrap(),
            Path::new("/proc")
        );
        assert_eq!(
            covering_volume(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn file_is_invalid_arg() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = resolve_volume(file.to_str().unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArg, "{err}");
        assert!(err.message.contains("not a directory"), "{}", err.message);
    }

    #[test]
    fn proc_and_root_are_mount_points() {
        let proc = resolve_volume("/proc").unwrap();
        assert_eq!(proc.path, Path::new("/proc"));
        assert!(proc.is_mount_point);
        assert_eq!(proc.kind, VolumeKind::MountPoint);
        assert_eq!(proc.mount_point, Path::new("/proc"));
        assert_eq!(proc.fs_type, FsType::Other("proc".into()));
        assert!(!proc.btrfs_subvolume_root);
        let root = resolve_volume("/").unwrap();
        assert!(root.is_mount_point);
        assert_eq!(root.path, Path::new("/"));
    }

    #[test]
    fn symlinks_and_dotdot_are_refused_with_the_real_path() {
        // A volume is named by its real path: a link could point to another filesystem than
        // its name suggests (issue 6, bad input).
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/proc", &link).unwrap();
        let e = resolve_volume(link.to_str().unwrap()).unwrap_err();
        assert_eq!(e.code, vss_model::ErrorCode::InvalidArg);
        assert!(e.message.contains("'/proc'"), "{}", e.message);
        let e = resolve_volume("/proc/self/..").unwrap_err();
        assert_eq!(e.code, vss_model::ErrorCode::InvalidArg);
        // Harmless spellings of the real path are fine.
        assert_eq!(resolve_volume("/proc/").unwrap().path, Path::new("/proc"));
        assert_eq!(resolve_volume("//proc").unwrap().path, Path::new("/proc"));
    }
}

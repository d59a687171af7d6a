//! Drop guards for tests that need root: loop devices, scratch filesystems on them, mounts.
//!
//! Every resource a test makes is owned by a guard whose `Drop` releases exactly that resource,
//! also when the test panics:
//!
//! * [`LoopDevice`]: a sparse backing file in a fresh temporary directory, attached with
//!   `losetup --find --show`; dropping detaches *that* device (`losetup -d /dev/loopN`) and
//!   removes the file.
//! * [`Mount`]: a filesystem mounted on a fresh temporary directory; dropping thaws it (in case a
//!   test froze it), unmounts it (lazily if it is busy) and removes the directory.
//! * [`Mounted`]: a loop device with a new filesystem (`btrfs`, `xfs`, `ext4`) mounted.
//! * [`ScratchDir`]: a temporary directory that unmounts whatever is mounted below it before it
//!   is removed (for code under test that mounts things there itself).
//! * [`Mounted::image_in`]: a filesystem in an image file inside another (scratch) filesystem,
//!   on a loop device of its own, optionally created with `FS_NOCOW_FL` (`chattr +C`).
//! * [`Frozen`] (from [`freeze`]): a scratch filesystem frozen with `FIFREEZE`, thawed on drop.
//!   [`Frozen::thaw_checked`] says whether it was still frozen.
//!   [`freeze`] refuses filesystems that are not a loop-device mount or that hold `/`, the temp
//!   directory, `/var/tmp`, the working directory or the test binary.
//! * [`LoopCleanup`]: detaches loop devices that the code under test attached over files below a
//!   directory (e.g. read-only loop devices over image clones), unmounting them first.
//!
//! Rules these helpers follow and tests must keep:
//!
//! * Tests never use fixed loop device numbers (`/dev/loop0`): the kernel hands out a free one,
//!   so tests can run in parallel with each other and with other users of loop devices.
//! * Tests never freeze (`FIFREEZE`) the filesystem holding `/tmp`, `/var/tmp` or `target/`:
//!   the test binary, cargo and the rest of the machine would block on it. Only a [`Mounted`]
//!   scratch filesystem may be frozen, and its guard thaws it on drop.
//! * Root-only tests start with `if !require_root() { return; }` (and check [`have_tool`] for
//!   the mkfs they need), so an unprivileged `cargo test` skips them instead of failing.
//!
//! Declare guards in the order they depend on each other: locals drop in reverse order, so a
//! [`Mounted`] declared first outlives a [`Mount`] of the same device or a [`ScratchDir`]
//! holding mounts of it that are declared after it.

pub mod proc;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

/// Runs a command and returns its standard output; a non-zero exit is an error carrying the
/// command line and its standard error.
pub fn run<I, S>(program: &str, args: I) -> io::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the process runs as root; prints "skipping: needs root" when not.
///
/// Root-only tests begin with `if !require_root() { return; }`.
pub fn require_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipping: needs root");
    }
    root
}

/// Whether an executable `name` is on `PATH` or in the sbin directories.
pub fn have_tool(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where backing files go: `/var/tmp` (disk-backed on most systems), else the temp directory.
fn scratch_parent() -> PathBuf {
    let var_tmp = Path::new("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// A loop device over a sparse file; detached (only this device) and the file removed on drop.
#[derive(Debug)]
pub struct LoopDevice {
    device: PathBuf,
    file: PathBuf,
    /// Holds the backing file; dropped after the device is detached.
    _dir: TempDir,
}

impl LoopDevice {
    /// Attaches a new sparse file of `size_bytes` to a free loop device. `losetup` is retried up
    /// to 10 times, as a device the kernel offered can be taken by someone else first.
    pub fn new(size_bytes: u64) -> io::Result<LoopDevice> {
        Self::new_in(&scratch_parent(), size_bytes, false)
    }

    /// Like [`LoopDevice::new`], with the backing file in a fresh temporary directory below
    /// `parent` (for example inside a scratch filesystem). With `nocow` the empty file gets
    /// `FS_NOCOW_FL` (`chattr +C`, btrfs only) before it is sized.
    pub fn new_in(parent: &Path, size_bytes: u64, nocow: bool) -> io::Result<LoopDevice> {
        let dir = tempfile::Builder::new()
            .prefix("vss-loop-")
            .tempdir_in(parent)?;
        let file = dir.path().join("disk.img");
        let created = File::create(&file)?;
        if nocow {
            let flags = rustix::fs::ioctl_getflags(&created)?;
            rustix::fs::ioctl_setflags(&created, flags | rustix::fs::IFlags::NOCOW)?;
        }
        created.set_len(size_bytes)?;
        drop(created);
        let mut last_error = None;
        for attempt in 1..=10u64 {
            match run(
                "losetup",
                [OsStr::new("--find"), OsStr::new("--show"), file.as_os_str()],
            ) {
                Ok(out) if out.trim().starts_with("/dev/") => {
                    return Ok(LoopDevice {
                        device: PathBuf::from(out.trim()),
                        file,
                        _dir: dir,
                    });
                }
                Ok(out) => {
                    last_error = Some(io::Error::other(format!("losetup printed {out:?}")));
                }
                Err(e) => last_error = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20 * attempt));
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("losetup failed")))
    }

    /// The device node (`/dev/loop7`).
    pub fn path(&self) -> &Path {
        &self.device
    }

    /// The backing file.
    pub fn backing_file(&self) -> &Path {
        &self.file
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        for attempt in 1..=5u64 {
            match run("losetup", [OsStr::new("-d"), self.device.as_os_str()]) {
                Ok(_) => return,
                Err(e) if attempt == 5 => {
                    eprintln!(
                        "vss-test-support: cannot detach {}: {e}",
                        self.device.display()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50 * attempt)),
            }
        }
    }
}

/// `FITHAW` on the filesystem at `path`; "not frozen" (`EINVAL`) is no error.
pub fn thaw(path: &Path) -> io::Result<()> {
    use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};
    const FITHAW: Opcode = opcode::read_write::<std::ffi::c_int>(b'X', 120);
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: FITHAW is `_IOWR('X', 120, int)`; the kernel ignores its argument, so passing none
    // (a null pointer) is fine, and it touches no memory of ours.
    match unsafe { ioctl(&fd, NoArg::<FITHAW>::new()) } {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A filesystem frozen by [`freeze`]; thawed (`FITHAW`) on drop.
#[derive(Debug)]
pub struct Frozen {
    path: PathBuf,
    frozen: bool,
}

impl Frozen {
    /// The mount point that is frozen.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Thaws now, reporting failure.
    pub fn thaw(mut self) -> io::Result<()> {
        self.frozen = false;
        thaw(&self.path)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if std::mem::take(&mut self.frozen)
            && let Err(e) = thaw(&self.path)
        {
            eprintln!("vss-test-support: FITHAW {}: {e}", self.path.display());
        }
    }
}

/// `FIFREEZE` on the filesystem mounted at `mount_point`, which must be the mount point of a
/// loop device (a scratch filesystem) and must not hold `/`, the temp directory, `/var/tmp`,
/// the working directory or the test binary: freezing those would hang the test run.
pub fn freeze(mount_point: &Path) -> io::Result<Frozen> {
    use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};
    use std::os::unix::fs::MetadataExt;
    const FIFREEZE: Opcode = opcode::read_write::<std::ffi::c_int>(b'X', 119);
    let canonical = std::fs::canonicalize(mount_point)?;
    let text = std::fs::read("/proc/self/mountinfo")?;
    let is_loop_mount = text.split(|b| *b == b'\n').any(|line| {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let on_point = fields
            .get(4)
            .is_some_and(|f| OsString::from_vec(unescape(f)) == canonical);
        let source = fields
            .iter()
            .position(|f| *f == b"-")
            .and_then(|i| fields.get(i + 2));
        on_point && source.is_some_and(|s| s.starts_with(b"/dev/loop"))
    });
    if !is_loop_mount {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to freeze {}: not the mount point of a loop device",
                canonical.display()
            ),
        ));
    }
    let dev = std::fs::metadata(&canonical)?.dev();
    let mut protected = vec![
        PathBuf::from("/"),
        std::env::temp_dir(),
        PathBuf::from("/var/tmp"),
    ];
    protected.extend(std::env::current_dir());
    protected.extend(std::env::current_exe());
    for p in protected {
        if std::fs::metadata(&p).is_ok_and(|m| m.dev() == dev) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to freeze {}: it holds {}",
                    canonical.display(),
                    p.display()
                ),
            ));
        }
    }
    let fd = rustix::fs::open(
        &canonical,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: FIFREEZE is `_IOWR('X', 119, int)`; the kernel ignores its argument, so passing
    // none (a null pointer) is fine, and it touches no memory of ours.
    unsafe { ioctl(&fd, NoArg::<FIFREEZE>::new()) }?;
    Ok(Frozen {
        path: canonical,
        frozen: true,
    })
}

impl Frozen {
    /// Thaws now and says whether the filesystem was still frozen: `Ok(true)` when `FITHAW`
    /// thawed it, `Ok(false)` when it was not frozen any more (`EINVAL`, someone thawed it).
    pub fn thaw_checked(mut self) -> io::Result<bool> {
        self.frozen = false;
        fithaw_checked(&self.path)
    }
}

/// `FITHAW` on the filesystem at `path`: `Ok(true)` if it was frozen and is thawed now,
/// `Ok(false)` if it was not frozen (`EINVAL`).
pub fn fithaw_checked(path: &Path) -> io::Result<bool> {
    use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};
    const FITHAW: Opcode = opcode::read_write::<std::ffi::c_int>(b'X', 120);
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: as in `thaw`: FITHAW ignores its argument and touches no memory of ours.
    match unsafe { ioctl(&fd, NoArg::<FITHAW>::new()) } {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The attached loop devices with their backing files, from `/sys/block/loop*/loop/backing_file`
/// (a ` (deleted)` suffix is kept).
pub fn attached_loop_devices() -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block")? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        found.push((
            Path::new("/dev").join(&name),
            PathBuf::from(backing.trim_end_matches('\n')),
        ));
    }
    found.sort();
    Ok(found)
}

/// A guard that, when dropped, unmounts what is mounted from and detaches the loop devices over
/// files below a directory whose names contain a marker: for loop devices that the code under test attaches and a failing test may leave behind.
/// Declare it *before* the filesystem holding those files is dropped (i.e. after it).
#[derive(Debug)]
pub struct LoopCleanup {
    dir: PathBuf,
    name_part: String,
}

impl LoopCleanup {
    /// Cleans up loop devices over files below `dir` whose names contain `name_part`.
    pub fn new(dir: &Path, name_part: &str) -> LoopCleanup {
        LoopCleanup {
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned()),
            name_part: name_part.to_owned(),
        }
    }
}

impl Drop for LoopCleanup {
    fn drop(&mut self) {
        let Ok(devices) = attached_loop_devices() else {
            return;
        };
        for (device, backing) in devices {
            let matches = backing.starts_with(&self.dir)
                && backing
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(&self.name_part));
            if !matches {
                continue;
            }
            // Mounted somewhere? Unmount it first (lazily), or the detach is only deferred.
            let dev_text = device.to_string_lossy().into_owned();
            if let Ok(text) = std::fs::read_to_string("/proc/self/mounts") {
                for line in text.lines() {
                    let mut fields = line.split(' ');
                    if fields.next() == Some(dev_text.as_str())
                        && let Some(at) = fields.next()
                    {
                        let at = PathBuf::from(OsString::from_vec(unescape(at.as_bytes())));
                        eprintln!(
                            "vss-test-support: unmounting leftover {} at {}",
                            device.display(),
                            at.display()
                        );
                        let _ = unmount(&at);
                    }
                }
            }
            eprintln!(
                "vss-test-support: detaching leftover {} ({})",
                device.display(),
                backing.display()
            );
            if let Err(e) = run("losetup", [OsStr::new("-d"), device.as_os_str()]) {
                eprintln!("vss-test-support: cannot detach {}: {e}", device.display());
            }
        }
    }
}

/// The loop devices (`/dev/loopN`) whose backing file is `file` (`losetup -j`).
pub fn loop_devices_of(file: &Path) -> io::Result<Vec<PathBuf>> {
    let out = run("losetup", [OsStr::new("-j"), file.as_os_str()])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|d| d.starts_with("/dev/"))
        .map(PathBuf::from)
        .collect())
}

/// Whether `path` (canonicalized) is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    mount_points().is_ok_and(|m| m.contains(&path))
}

/// Unmounts `path`, lazily (`MNT_DETACH`) if a normal unmount fails.
fn unmount(path: &Path) -> io::Result<()> {
    use rustix::mount::UnmountFlags;
    match rustix::mount::unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!(
                "vss-test-support: umount {}: {e}; unmounting lazily",
                path.display()
            );
            rustix::mount::unmount(path, UnmountFlags::DETACH).map_err(io::Error::from)
        }
    }
}

/// A filesystem mounted on a fresh temporary directory; thawed, unmounted and the directory
/// removed on drop.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    mounted: bool,
    /// The mount point; removed after the unmount.
    _dir: TempDir,
}

impl Mount {
    /// `mount [-o options] device <fresh dir>`.
    pub fn new(device: &Path, options: Option<&str>) -> io::Result<Mount> {
        let dir = tempfile::Builder::new().prefix("vss-mnt-").tempdir()?;
        let path = std::fs::canonicalize(dir.path())?;
        let mut args: Vec<&OsStr> = Vec::new();
        if let Some(options) = options {
            args.extend([OsStr::new("-o"), OsStr::new(options)]);
        }
        args.extend([device.as_os_str(), path.as_os_str()]);
        run("mount", args)?;
        Ok(Mount {
            path,
            mounted: true,
            _dir: dir,
        })
    }

    /// The mount point (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts now (thawing first), reporting failure instead of only printing it.
    pub fn unmount(mut self) -> io::Result<()> {
        self.release()
    }

    fn release(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.mounted) {
            return Ok(());
        }
        if let Err(e) = thaw(&self.path) {
            eprintln!("vss-test-support: FITHAW {}: {e}", self.path.display());
        }
        unmount(&self.path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            eprintln!(
                "vss-test-support: cannot unmount {}: {e}",
                self.path.display()
            );
        }
    }
}

/// A scratch filesystem: a [`LoopDevice`] with a new filesystem, mounted on a fresh directory.
/// Dropping thaws and unmounts it, then detaches the device.
#[derive(Debug)]
pub struct Mounted {
    // Field order is drop order: the mount goes before the device.
    mount: Option<Mount>,
    fs_type: &'static str,
    loop_device: LoopDevice,
}

impl Mounted {
    /// A btrfs (`mkfs.btrfs -q -f`) of `size_bytes` (at least ~120 MiB), mounted.
    pub fn btrfs(size_bytes: u64) -> io::Result<Mounted> {
        Self::make("btrfs", "mkfs.btrfs", &["-q", "-f"], size_bytes)
    }

    /// An XFS with reflink (`mkfs.xfs -q -f -m reflink=1`) of `size_bytes` (at least 300 MiB),
    /// mounted.
    pub fn xfs(size_bytes: u64) -> io::Result<Mounted> {
        Self::make(
            "xfs",
            "mkfs.xfs",
            &["-q", "-f", "-m", "reflink=1"],
            size_bytes,
        )
    }

    /// An ext4 (`mkfs.ext4 -q -F`) of `size_bytes`, mounted.
    pub fn ext4(size_bytes: u64) -> io::Result<Mounted> {
        Self::make("ext4", "mkfs.ext4", &["-q", "-F"], size_bytes)
    }

    /// A filesystem of `fs_type` (`btrfs`, `xfs` with reflink, `ext4`) in an image file of
    /// `size_bytes` in a fresh directory below `parent` (typically inside another [`Mounted`],
    /// which must then be declared first so that it outlives this one), on a loop device of its
    /// own, mounted. With `nocow` the image file is created with `FS_NOCOW_FL`.
    pub fn image_in(
        parent: &Path,
        fs_type: &str,
        size_bytes: u64,
        nocow: bool,
    ) -> io::Result<Mounted> {
        let (fs_type, mkfs, args): (&'static str, &str, &[&str]) = match fs_type {
            "btrfs" => ("btrfs", "mkfs.btrfs", &["-q", "-f"]),
            "xfs" => ("xfs", "mkfs.xfs", &["-q", "-f", "-m", "reflink=1"]),
            "ext4" => ("ext4", "mkfs.ext4", &["-q", "-F"]),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no image of type {other}: btrfs, xfs or ext4"),
                ));
            }
        };
        let loop_device = LoopDevice::new_in(parent, size_bytes, nocow)?;
        Self::make_on(loop_device, fs_type, mkfs, args)
    }

    fn make(
        fs_type: &'static str,
        mkfs: &str,
        args: &[&str],
        size_bytes: u64,
    ) -> io::Result<Mounted> {
        Self::make_on(LoopDevice::new(size_bytes)?, fs_type, mkfs, args)
    }

    fn make_on(
        loop_device: LoopDevice,
        fs_type: &'static str,
        mkfs: &str,
        args: &[&str],
    ) -> io::Result<Mounted> {
        let mut mkfs_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        mkfs_args.push(loop_device.path().as_os_str());
        run(mkfs, mkfs_args)?;
        let mount = Mount::new(loop_device.path(), None)?;
        Ok(Mounted {
            mount: Some(mount),
            fs_type,
            loop_device,
        })
    }

    /// The mount point. Panics after [`Mounted::unmount`].
    pub fn path(&self) -> &Path {
        self.mount
            .as_ref()
            .expect("the scratch filesystem was unmounted")
            .path()
    }

    /// The loop device.
    pub fn device(&self) -> &Path {
        self.loop_device.path()
    }

    /// The image file behind the loop device.
    pub fn backing_file(&self) -> &Path {
        self.loop_device.backing_file()
    }

    /// `btrfs`, `xfs` or `ext4`.
    pub fn fs_type(&self) -> &str {
        self.fs_type
    }

    /// `btrfs subvolume create <mount>/<name>`; returns its path. Panics on failure (test setup).
    pub fn create_subvolume(&self, name: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Err(e) = run(
            "btrfs",
            [
                OsStr::new("subvolume"),
                OsStr::new("create"),
                path.as_os_str(),
            ],
        ) {
            panic!("cannot create btrfs subvolume {}: {e}", path.display());
        }
        path
    }

    /// Mounts the same device once more on a fresh directory (`Some("subvol=data")` for a btrfs
    /// subvolume). Drop the returned guard before this one.
    pub fn mount_again(&self, options: Option<&str>) -> io::Result<Mount> {
        Mount::new(self.device(), options)
    }

    /// Unmounts the primary mount now (the device stays attached until drop).
    pub fn unmount(&mut self) -> io::Result<()> {
        match self.mount.take() {
            Some(mount) => mount.unmount(),
            None => Ok(()),
        }
    }
}

/// Decodes mountinfo's octal escapes (`\040`).
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
            let v = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, b| a * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(v) {
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

/// Mount points of this process, in mountinfo order.
fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape(field))))
        .collect())
}

/// Unmounts everything mounted at or below `dir`, innermost and latest first (lazily where a
/// normal unmount fails). Returns how many mounts it removed.
pub fn unmount_all_under(dir: &Path) -> io::Result<usize> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut count = 0;
    // Stacked mounts show up once per layer; a few rounds take them all.
    for _ in 0..16 {
        let below: Vec<PathBuf> = mount_points()?
            .into_iter()
            .filter(|m| m.starts_with(&dir))
            .collect();
        if below.is_empty() {
            return Ok(count);
        }
        for m in below.iter().rev() {
            unmount(m)?;
            count += 1;
        }
    }
    Err(io::Error::other(format!(
        "mounts below {} do not go away",
        dir.display()
    )))
}

/// A temporary directory that unmounts everything mounted below it before it is removed: the
/// run directory of code under test that makes mounts of its own.
#[derive(Debug)]
pub struct ScratchDir {
    dir: TempDir,
}

impl ScratchDir {
    /// A fresh directory in the temp directory.
    pub fn new() -> io::Result<ScratchDir> {
        Ok(ScratchDir {
            dir: tempfile::Builder::new().prefix("vss-run-").tempdir()?,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = unmount_all_under(self.dir.path()) {
            eprintln!(
                "vss-test-support: unmounting below {}: {e}",
                self.dir.path().display()
            );
        }
    }
}

/// Every file of the committed fuzz corpus of `target` (`fuzz/corpus/<target>/`) as (path,
/// bytes), sorted by name, for the replay tests. A missing or empty corpus fails: the replay
/// would otherwise pass without testing anything.
pub fn fuzz_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("a corpus entry").path();
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path.display().to_string(), data)
        })
        .collect();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(b"/mnt/a\\040b"), b"/mnt/a b");
        assert_eq!(unescape(b"x\\"), b"x\\");
    }

    #[test]
    fn finds_common_tools() {
        assert!(have_tool("sh"));
        assert!(!have_tool("surely-no-such-tool-here"));
    }

    #[test]
    fn run_reports_failures() {
        assert_eq!(run("echo", ["hi"]).unwrap(), "hi\n");
        let err = run("false", [] as [&str; 0]).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[test]
    fn loop_device_round_trip() {
        if !require_root() || !have_tool("losetup") || !have_tool("mkfs.ext4") {
            return;
        }
        let fs = Mounted::ext4(64 << 20).unwrap();
        let device = fs.device().to_owned();
        let mount_point = fs.path().to_owned();
        let file = fs.loop_device.backing_file().to_owned();
        assert!(mount_points().unwrap().contains(&mount_point));
        std::fs::write(mount_point.join("f"), b"x").unwrap();
        drop(fs);
        assert!(!mount_points().unwrap().contains(&mount_point));
        assert!(!mount_point.exists());
        assert!(!file.exists());
        // The kernel may finish a detach asynchronously (autoclear while udev still holds the
        // device), so poll with a generous margin.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let attached = run("losetup", ["-a"]).unwrap();
            if !attached.contains(file.to_str().unwrap()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} still attached: {attached}",
                device.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn makes_each_filesystem_type() {
        if !require_root() {
            return;
        }
        type Make = fn(u64) -> io::Result<Mounted>;
        let kinds: [(&str, &str, Make, u64); 3] = [
            ("btrfs", "mkfs.btrfs", Mounted::btrfs, 256 << 20),
            ("xfs", "mkfs.xfs", Mounted::xfs, 512 << 20),
            ("ext4", "mkfs.ext4", Mounted::ext4, 64 << 20),
        ];
        for (fs_type, mkfs, make, size) in kinds {
            if !have_tool(mkfs) {
                eprintln!("skipping {fs_type}: no {mkfs}");
                continue;
            }
            let fs = make(size).unwrap();
            assert_eq!(fs.fs_type(), fs_type);
            let mounts = run(
                "findmnt",
                ["-n", "-o", "FSTYPE", fs.path().to_str().unwrap()],
            );
            if let Ok(found) = mounts {
                assert_eq!(found.trim(), fs_type);
            }
            if fs_type == "btrfs" {
                let sub = fs.create_subvolume("sub");
                assert!(sub.is_dir());
            }
        }
    }

    #[test]
    fn drop_thaws_a_frozen_scratch_filesystem() {
        if !require_root() || !have_tool("mkfs.ext4") || !have_tool("fsfreeze") {
            return;
        }
        let fs = Mounted::ext4(64 << 20).unwrap();
        let mount_point = fs.path().to_owned();
        // Only ever freeze the scratch filesystem, never the one holding /tmp or target/.
        run("fsfreeze", [OsStr::new("-f"), mount_point.as_os_str()]).unwrap();
        drop(fs);
        assert!(!mount_points().unwrap().contains(&mount_point));
    }

    #[test]
    fn scratch_dir_unmounts_below() {
        if !require_root() {
            return;
        }
        let scratch = ScratchDir::new().unwrap();
        let inner = scratch.path().join("a b");
        std::fs::create_dir(&inner).unwrap();
        run(
            "mount",
            [
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("tmpfs"),
                inner.as_os_str(),
            ],
        )
        .unwrap();
        let canonical = std::fs::canonicalize(&inner).unwrap();
        assert!(mount_points().unwrap().contains(&canonical));
        assert_eq!(unmount_all_under(scratch.path()).unwrap(), 1);
        assert!(!mount_points().unwrap().contains(&canonical));
    }

    #[test]
    fn freeze_refuses_non_scratch_filesystems() {
        for path in [Path::new("/"), &std::env::temp_dir(), Path::new("/proc")] {
            let err = freeze(path).unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidInput,
                "{}: {err}",
                path.display()
            );
        }
    }

    #[test]
    fn image_inside_a_scratch_filesystem_freezes_and_thaws() {
        if !require_root() || !have_tool("mkfs.xfs") || !have_tool("mkfs.ext4") {
            return;
        }
        let outer = Mounted::xfs(512 << 20).unwrap();
        let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).unwrap();
        assert!(inner.backing_file().starts_with(outer.path()));
        assert_eq!(
            loop_devices_of(inner.backing_file()).unwrap(),
            [inner.device().to_owned()]
        );
        assert!(is_mounted(inner.path()));
        let frozen = freeze(inner.path()).unwrap();
        assert_eq!(frozen.path(), inner.path());
        // Frozen twice: EBUSY.
        assert!(freeze(inner.path()).is_err());
        drop(frozen);
        std::fs::write(inner.path().join("f"), b"x").unwrap();
        let file = inner.backing_file().to_owned();
        let mount_point = inner.path().to_owned();
        drop(inner);
        assert!(!is_mounted(&mount_point));
        assert!(!file.exists());
        assert!(Mounted::image_in(outer.path(), "vfat", 1 << 20, false).is_err());
    }
}

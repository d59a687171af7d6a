//! `vss backup --in-place`: the backup program runs in a private mount namespace where every
//! snapshot is mounted read-only over its original volume, so that restic, borg or kopia
//! record the original paths (and find their parent snapshot).
//!
//! The namespace is made in the command's own process, between fork and exec (a `pre_exec`
//! hook), with raw system calls only: everything the hook needs (paths as C strings, the slots
//! for the mount file descriptors, the pipe that reports a failed step) is prepared before the
//! fork, because the parent runs several threads and the forked child may not allocate.
//!
//! In the child:
//!
//! 1. `unshare(CLONE_NEWNS)`, then `mount(NULL, "/", NULL, MS_REC | MS_SLAVE)`: without the
//!    second step the mounts below would propagate back into the host's namespace (its mounts
//!    are shared).
//! 2. Every snapshot is cloned first (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`) and made
//!    read-only (`mount_setattr(MOUNT_ATTR_RDONLY)`, recursively): a snapshot stored under its
//!    own volume (btrfs: `VOLUME/.vss/ID`) is no longer reachable once the volume is covered.
//! 3. Each clone is moved over its original (`move_mount`), parents first.
//! 4. The working directory is entered again, so that a command started inside a volume sees
//!    the snapshot there too.
//!
//! The host's mount table never changes. A step that fails is reported through a pipe (the
//! step and the volume) and the command is not run.
//!
//! Refused: callers that are not root (`E_ACCESSDENIED`) and the volume `/`
//! (`E_INVALIDARG`: covering `/` needs pivot_root with /proc, /sys, /dev, /run and the backup
//! tool's repository and cache bound in, which is not done yet).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MountPropagationFlags, MoveMountFlags, OpenTreeFlags};
use vss_model::{ErrorCode, VssError};

use crate::child::Readable;
use crate::exit::CliError;

/// `mount_setattr`'s `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `AT_EMPTY_PATH`.
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
/// `AT_RECURSIVE`.
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// The steps of the namespace set-up, as reported through the pipe.
const STEP_UNSHARE: u8 = 1;
const STEP_SLAVE: u8 = 2;
const STEP_CLONE: u8 = 3;
const STEP_READ_ONLY: u8 = 4;
const STEP_MOVE: u8 = 5;

/// Fails unless the caller is root (`E_ACCESSDENIED`, exit code 7).
pub fn check_caller() -> Result<(), CliError> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Err(CliError::from_vss(VssError::new(
        ErrorCode::AccessDenied,
        "--in-place needs root: it mounts the snapshots over the volumes in a private mount \
         namespace",
    )))
}

/// Fails for the volume `/` (`E_INVALIDARG`, exit code 7).
pub fn check_volume(volume: &Path) -> Result<(), CliError> {
    let abs = std::path::absolute(volume).unwrap_or_else(|_| volume.to_owned());
    let resolved = std::fs::canonicalize(&abs).unwrap_or(abs);
    if resolved == Path::new("/") {
        return Err(CliError::from_vss(VssError::new(
            ErrorCode::InvalidArg,
            "in-place backup of / is not supported yet (run without --in-place: the snapshot \
             of / is read at VSS_SNAPSHOT_1)",
        )));
    }
    Ok(())
}

/// One snapshot and the path it covers, parents first.
#[derive(Debug)]
struct Mapping {
    snapshot: CString,
    original: CString,
}

/// The order in which the snapshots are mounted: parents before the volumes below them.
fn order(pairs: &mut [(PathBuf, PathBuf)]) {
    pairs.sort_by_key(|(_, original)| original.components().count());
}

fn c_path(p: &Path) -> Result<CString, CliError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CliError::other(format!("{} contains a NUL byte", p.display())))
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub struct InPlace {
    maps: Vec<Mapping>,
    /// The working directory, entered again after the mounts.
    cwd: Option<CString>,
}

/// What the parent keeps to explain a failed set-up after the spawn.
#[derive(Debug)]
pub struct Report {
    reader: std::io::PipeReader,
    /// `(snapshot, original)` per mapping, for messages.
    names: Vec<(String, String)>,
}

impl InPlace {
    /// The plan for the snapshots as `readable` found them (`path` = the snapshot, `volume` =
    /// the original).
    pub fn new(snaps: &[Readable]) -> Result<InPlace, CliError> {
        let mut pairs: Vec<(PathBuf, PathBuf)> = snaps
            .iter()
            .map(|s| {
                let original =
                    std::fs::canonicalize(&s.volume).unwrap_or_else(|_| PathBuf::from(&s.volume));
                (PathBuf::from(&s.path), original)
            })
            .collect();
        order(&mut pairs);
        let mut maps = Vec::with_capacity(pairs.len());
        for (snapshot, original) in &pairs {
            if original == Path::new("/") {
                check_volume(original)?;
            }
            maps.push(Mapping {
                snapshot: c_path(snapshot)?,
                original: c_path(original)?,
            });
        }
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| CString::new(d.as_os_str().as_bytes()).ok());
        Ok(InPlace { maps, cwd })
    }

    /// Installs the hook that makes the namespace in the command's process. The returned
    /// [`Report`] explains a failed spawn.
    pub fn install(self, cmd: &mut tokio::process::Command) -> Result<Report, CliError> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| CliError::other(format!("cannot create a pipe: {e}")))?;
        rustix::io::ioctl_fionbio(&reader, true)
            .map_err(|e| CliError::other(format!("cannot set up a pipe: {e}")))?;
        let names = self
            .maps
            .iter()
            .map(|m| {
                (
                    m.snapshot.to_string_lossy().into_owned(),
                    m.original.to_string_lossy().into_owned(),
                )
            })
            .collect();
        let mut fds: Vec<Option<OwnedFd>> = Vec::with_capacity(self.maps.len());
        fds.resize_with(self.maps.len(), || None);
        let hook = move || -> std::io::Result<()> {
            self.enter(&mut fds).map_err(|(step, index, errno)| {
                let index = u8::try_from(index).unwrap_or(u8::MAX);
                let _ = rustix::io::write(&writer, &[step, index]);
                std::io::Error::from(errno)
            })
        };
        // SAFETY: the hook runs in the forked child before exec and only makes system calls
        // (unshare, mount, open_tree, mount_setattr, move_mount, chdir, write, close) on data
        // prepared before the fork: it neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(hook);
        }
        Ok(Report { reader, names })
    }

    /// The set-up, in the child: `Err((step, mapping index, errno))`. No allocation.
    fn enter(&self, fds: &mut [Option<OwnedFd>]) -> Result<(), (u8, usize, rustix::io::Errno)> {
        // SAFETY: the child is single-threaded between fork and exec, so leaving the mount
        // namespace affects exactly the process that will run the command.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .map_err(|e| (STEP_UNSHARE, 0, e))?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )
        .map_err(|e| (STEP_SLAVE, 0, e))?;
        for (i, (m, slot)) in self.maps.iter().zip(fds.iter_mut()).enumerate() {
            let fd = rustix::mount::open_tree(
                CWD,
                m.snapshot.as_c_str(),
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_RECURSIVE,
            )
            .map_err(|e| (STEP_CLONE, i, e))?;
            read_only(&fd).map_err(|e| (STEP_READ_ONLY, i, e))?;
            *slot = Some(fd);
        }
        for (i, (m, slot)) in self.maps.iter().zip(fds.iter()).enumerate() {
            let Some(fd) = slot else { continue };
            rustix::mount::move_mount(
                fd,
                c"",
                CWD,
                m.original.as_c_str(),
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .map_err(|e| (STEP_MOVE, i, e))?;
        }
        if let Some(cwd) = &self.cwd {
            let _ = rustix::process::chdir(cwd.as_c_str());
        }
        Ok(())
    }
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, {MOUNT_ATTR_RDONLY})` on a detached
/// clone.
fn read_only(fd: &OwnedFd) -> Result<(), rustix::io::Errno> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes from `attr`, which lives for
    // the call; the path is a valid NUL-terminated empty string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_fd().as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(rustix::io::Errno::from_raw_os_error(errno));
    }
    Ok(())
}

impl Report {
    /// After a failed spawn: the set-up failure the child reported, if it was one (otherwise
    /// the command itself could not be executed).
    pub fn failure(mut self, err: &std::io::Error) -> Option<CliError> {
        let mut buf = [0u8; 2];
        let n = self.reader.read(&mut buf).unwrap_or(0);
        if n < 2 {
            return None;
        }
        let (snapshot, original) = self
            .names
            .get(usize::from(buf[1]))
            .cloned()
            .unwrap_or_default();
        let what = match buf[0] {
            STEP_UNSHARE => "cannot make a private mount namespace".to_owned(),
            STEP_SLAVE => "cannot make / a recursive slave mount".to_owned(),
            STEP_CLONE => format!("cannot clone the snapshot {snapshot}"),
            STEP_READ_ONLY => format!("cannot make the clone of {snapshot} read-only"),
            STEP_MOVE => format!("cannot mount the snapshot {snapshot} over {original}"),
            _ => "the in-place set-up failed".to_owned(),
        };
        Some(CliError::other(format!("--in-place: {what}: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_first() {
        let mut v = vec![
            (PathBuf::from("/s/2"), PathBuf::from("/srv/a/b")),
            (PathBuf::from("/s/1"), PathBuf::from("/srv")),
            (PathBuf::from("/s/3"), PathBuf::from("/srv/a")),
        ];
        order(&mut v);
        let o: Vec<_> = v.iter().map(|(_, o)| o.to_str().unwrap()).collect();
        assert_eq!(o, ["/srv", "/srv/a", "/srv/a/b"]);
    }

    #[test]
    fn root_volume_is_refused() {
        let e = check_volume(Path::new("/")).unwrap_err();
        assert_eq!(e.exit, crate::exit::OTHER);
        assert_eq!(e.to_json()["code"], "E_INVALIDARG");
        assert!(check_volume(Path::new("/tmp")).is_ok());
    }
}

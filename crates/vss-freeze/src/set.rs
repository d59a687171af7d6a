//! [`FreezeSet`]: the frozen filesystems of one snapshot set, held under a guard process.
//!
//! Why the steps come in this order (issue 3 §4, linux-peers.md §17, §19):
//!
//! 1. **Everything that needs a filesystem happens first**: mount points are resolved and opened,
//!    the journal entry is written and fsynced, the guard is spawned and armed. Between the first
//!    `FIFREEZE` and the last `FITHAW` this code reads and writes only the guard's pipes and
//!    issues ioctls on fds it already holds. It logs nothing then either: a log line to a file
//!    (or to a journald that writes to) a frozen filesystem blocks until thaw, and the thaw is
//!    ours to do. Callers must keep to the same rule (vssd holds its logs in memory meanwhile).
//! 2. **One `FIFREEZE` per superblock**, in the order given: two mount points of one filesystem
//!    (bind mounts, btrfs subvolumes) would otherwise fail with `EBUSY` on the second.
//! 3. **`EBUSY` is someone else's freeze**: the set fails with `VSS_E_VOLUME_IN_USE`, what *we*
//!    froze is thawed in reverse order, and that filesystem is never thawed by us or our guard
//!    (`forget N` tells the guard at once).
//! 4. **The guard must confirm it covers the freeze** (`frozen` → `ok`), otherwise a guard whose
//!    deadline passed during a slow `FIFREEZE` could have exited, leaving later freezes unguarded.
//! 5. **Thaw in reverse order, then tell the guard `done`**, then remove the journal entry: the
//!    journal is touched only before the first `FIFREEZE` and after the last `FITHAW`.
//! 6. **Drop thaws** a set that was not thawed explicitly (a panic, an early `?` return): never
//!    leave a freeze behind.
//!
//! The owner must ignore SIGPIPE (every Rust program does): a message to a guard that has exited
//! must fail with `EPIPE`, not kill the owner.

use std::fs::DirBuilder;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use uuid::Uuid;
use vss_model::{ErrorCode, VssError};

use crate::fs::{Thawed, fifreeze, fithaw, open_dir, superblock_of_fd, superblock_of_path};
use crate::guard::GuardArgs;
use crate::journal::{JournalEntry, JournalLock, now_unix_ms};
use crate::protocol::{ARMED, DONE, FORGET, FROZEN, GuardExit, OK, THAWING};

/// The commit window when none is configured (VSS's 10 s for the freeze-to-thaw interval).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// The guard program's file name.
pub const GUARD_BINARY_NAME: &str = "vss-freeze-guard";
/// How long the guard may take to arm.
const ARM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the guard may take to answer `frozen` or `thawing` (it answers in microseconds).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the guard may take to exit after `done` or SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// How to freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeConfig {
    /// The `vss-freeze-guard` program.
    pub guard_binary: PathBuf,
    /// Where freeze journal entries go. Must be on a filesystem that is never frozen: under
    /// `/run` or the state directory (see [`crate::journal`]); created if missing (mode 0700).
    pub journal_dir: PathBuf,
    /// The longest a set stays frozen: the guard thaws this long after it is armed.
    pub window: Duration,
}

impl FreezeConfig {
    /// The default guard and window with this journal directory.
    pub fn new(journal_dir: impl Into<PathBuf>) -> FreezeConfig {
        FreezeConfig {
            guard_binary: default_guard_binary(),
            journal_dir: journal_dir.into(),
            window: DEFAULT_WINDOW,
        }
    }
}

/// `vss-freeze-guard` next to the running program; from a test in `target/<profile>/deps/`,
/// the one in `target/<profile>/`.
pub fn default_guard_binary() -> PathBuf {
    let Ok(exe) = std::env::current_exe() else {
        return PathBuf::from(GUARD_BINARY_NAME);
    };
    let Some(dir) = exe.parent() else {
        return PathBuf::from(GUARD_BINARY_NAME);
    };
    let beside = dir.join(GUARD_BINARY_NAME);
    if !beside.exists()
        && dir.file_name().is_some_and(|n| n == "deps")
        && let Some(up) = dir.parent().map(|p| p.join(GUARD_BINARY_NAME))
        && up.exists()
    {
        return up;
    }
    beside
}

/// What [`FreezeSet::thaw`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThawReport {
    /// From the first `FIFREEZE` to the last `FITHAW` (to the thaw call, if the guard had thawed
    /// already).
    pub frozen_for: Duration,
    /// The guard had thawed the set before [`FreezeSet::thaw`] (its deadline passed, or it got
    /// SIGTERM/SIGINT/SIGHUP): the filesystems were not frozen for the whole commit, so what was
    /// committed is not trustworthy.
    pub guard_thawed: bool,
}

/// The frozen filesystems of one snapshot set, held by a guard process.
#[derive(Debug)]
pub struct FreezeSet {
    set_id: Uuid,
    /// One mount point per filesystem, canonical, in freezing order.
    frozen: Vec<PathBuf>,
    /// Their open directories (the only way we touch them until thawed).
    fds: Vec<OwnedFd>,
    frozen_at: Instant,
    /// `None` once thawed.
    guard: Option<Guard>,
    journal: Option<JournalLock>,
}

impl FreezeSet {
    /// Journals the intent, spawns and arms the guard (waits for `armed`), then `FIFREEZE`s
    /// each distinct filesystem once (deduplicated by superblock), in the order given.
    ///
    /// Errors: a mount point that does not exist (`VSS_E_OBJECT_NOT_FOUND`); a journal directory
    /// on a filesystem of the set (`VSS_E_VOLUME_NOT_SUPPORTED`); a set frozen already
    /// (`VSS_E_SNAPSHOT_SET_IN_PROGRESS`); a guard that cannot start or arm within 5 s
    /// (`VSS_E_UNEXPECTED`); a filesystem frozen by someone else (`VSS_E_VOLUME_IN_USE`, and it
    /// is left frozen); any other `FIFREEZE` failure (`VSS_E_PROVIDER_VETO`); freezing that took
    /// longer than the window (`VSS_E_FLUSH_WRITES_TIMEOUT`). On every error nothing is left
    /// frozen by us.
    pub fn freeze(
        config: &FreezeConfig,
        set_id: Uuid,
        mount_points: &[PathBuf],
    ) -> Result<FreezeSet, VssError> {
        if mount_points.is_empty() {
            return Err(VssError::invalid_arg("no mount points to freeze"));
        }
        if config.window.is_zero() {
            return Err(VssError::invalid_arg("the commit window must not be zero"));
        }
        // 1. Open every filesystem, once per superblock.
        let mut frozen = Vec::new();
        let mut fds = Vec::new();
        let mut superblocks = Vec::new();
        for mount in mount_points {
            let path = std::fs::canonicalize(mount).map_err(|e| {
                VssError::not_found(format!("mount point {}: {e}", mount.display()))
            })?;
            let fd = open_dir(&path).map_err(|e| {
                VssError::not_found(format!("cannot open mount point {}: {e}", path.display()))
            })?;
            let sb = superblock_of_fd(&fd).map_err(|e| {
                VssError::unexpected(format!("cannot stat {}: {e}", path.display()))
            })?;
            if !superblocks.contains(&sb) {
                superblocks.push(sb);
                frozen.push(path);
                fds.push(fd);
            }
        }
        // 2. The journal, on a filesystem we do not freeze.
        let dir = &config.journal_dir;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                VssError::unexpected(format!(
                    "cannot create the freeze journal directory {}: {e}",
                    dir.display()
                ))
            })?;
        let journal_sb = superblock_of_path(dir)
            .map_err(|e| VssError::unexpected(format!("cannot stat {}: {e}", dir.display())))?;
        if let Some(i) = superblocks.iter().position(|sb| *sb == journal_sb) {
            return Err(VssError::new(
                ErrorCode::VolumeNotSupported,
                format!(
                    "{} is on the filesystem of the freeze journal {}; the journal must be on a \
                     filesystem that is never frozen (under /run or the state directory)",
                    frozen[i].display(),
                    dir.display()
                ),
            ));
        }
        let entry = JournalEntry {
            set_id,
            owner_pid: std::process::id(),
            mount_points: frozen.clone(),
            created_unix_ms: now_unix_ms(),
        };
        let journal = JournalLock::create(dir, &entry).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                VssError::new(
                    ErrorCode::SnapshotSetInProgress,
                    format!("snapshot set {set_id} is being frozen already: {e}"),
                )
            } else {
                VssError::unexpected(format!(
                    "cannot write the freeze journal in {}: {e}",
                    dir.display()
                ))
            }
        })?;
        // 3. The guard, armed before anything is frozen.
        let mut guard = match Guard::spawn(&config.guard_binary, config.window, &frozen) {
            Ok(g) => g,
            Err(e) => {
                let _ = journal.remove();
                return Err(VssError::unexpected(format!(
                    "cannot start the freeze guard {}: {e}",
                    config.guard_binary.display()
                )));
            }
        };
        match guard.read_line(ARM_TIMEOUT) {
            Ok(Some(line)) if line == ARMED => {}
            other => {
                let status = guard.kill();
                let _ = journal.remove();
                let what = match other {
                    Ok(Some(line)) => format!("said {line:?}"),
                    Ok(None) => format!("exited ({})", describe(status)),
                    Err(e) => format!("{e}"),
                };
                return Err(VssError::unexpected(format!(
                    "the freeze guard {} did not arm within {ARM_TIMEOUT:?}: {what}; nothing was frozen",
                    config.guard_binary.display()
                )));
            }
        }
        // 4. Freeze. From here until every FITHAW: no logging, no files, no paths.
        let frozen_at = Instant::now();
        let mut set = FreezeSet {
            set_id,
            frozen,
            fds,
            frozen_at,
            guard: Some(guard),
            journal: Some(journal),
        };
        for i in 0..set.fds.len() {
            if let Err(e) = fifreeze(&set.fds[i]) {
                let guard = set.guard.as_mut().expect("guard present while freezing");
                if e == Errno::BUSY {
                    // Not ours: the guard must not thaw it (say so before anything else).
                    let _ = guard.send(&format!("{FORGET} {i}"));
                }
                let path = set.frozen[i].clone();
                let unwound = set.unwind(i);
                let error = if e == Errno::BUSY {
                    VssError::new(
                        ErrorCode::VolumeInUse,
                        format!(
                            "{} is already frozen by another process (FIFREEZE: {e}); it is left as it is",
                            path.display()
                        ),
                    )
                } else {
                    VssError::new(
                        ErrorCode::ProviderVeto,
                        format!("cannot freeze {} (FIFREEZE: {e})", path.display()),
                    )
                };
                return Err(with_unwind(error, unwound));
            }
        }
        // 5. The guard confirms that it covers all of it.
        let guard = set.guard.as_mut().expect("guard present while freezing");
        if !guard.ask(FROZEN) {
            let n = set.fds.len();
            let status = set.guard.as_mut().map(|g| g.wait(EXIT_TIMEOUT));
            let deadline =
                status.flatten().and_then(GuardExit::from_status) == Some(GuardExit::Deadline);
            let unwound = set.unwind(n);
            let error = if deadline {
                VssError::new(
                    ErrorCode::FlushWritesTimeout,
                    format!(
                        "freezing {} filesystem(s) took longer than the commit window of {:?} \
                         (dirty data to flush?); the freeze guard thawed them",
                        n, config.window
                    ),
                )
            } else {
                VssError::unexpected("the freeze guard stopped answering while freezing")
            };
            return Err(with_unwind(error, unwound));
        }
        Ok(set)
    }

    /// `FITHAW`s in reverse order, tells the guard `done`, reaps it, and removes the journal
    /// entry. If the guard had thawed already (deadline, signal), nothing is thawed again and
    /// [`ThawReport::guard_thawed`] says so. A `FITHAW` failing other than "not frozen" is
    /// `VSS_E_UNEXPECTED`; the guard is then told to thaw too and the journal entry is kept for
    /// the next recovery.
    pub fn thaw(mut self) -> Result<ThawReport, VssError> {
        self.thaw_now()
    }

    /// The mount points frozen, one per filesystem, canonical, in freezing order.
    pub fn frozen(&self) -> &[PathBuf] {
        &self.frozen
    }

    /// When the first `FIFREEZE` began.
    pub fn frozen_at(&self) -> Instant {
        self.frozen_at
    }

    /// The snapshot set.
    pub fn set_id(&self) -> Uuid {
        self.set_id
    }

    /// The guard's process id (for diagnostics and tests); `None` once thawed.
    pub fn guard_pid(&self) -> Option<u32> {
        self.guard.as_ref().map(|g| g.child.id())
    }

    /// The journal entry's file (for diagnostics and tests).
    pub fn journal_file(&self) -> Option<&Path> {
        self.journal.as_ref().map(|j| j.path())
    }

    fn thaw_now(&mut self) -> Result<ThawReport, VssError> {
        let Some(mut guard) = self.guard.take() else {
            return Err(VssError::bad_state("the freeze set was thawed already"));
        };
        let mut failures = Vec::new();
        let guard_thawed;
        if guard.ask(THAWING) {
            // The guard holds off its deadline: the thaw is ours alone.
            failures = thaw_fds(&self.fds, &self.frozen);
            guard_thawed = false;
        } else {
            // The guard has exited (or hangs): did it thaw?
            let status = guard.wait(EXIT_TIMEOUT).or_else(|| guard.kill());
            guard_thawed = status
                .and_then(GuardExit::from_status)
                .is_some_and(GuardExit::thawed);
            if !guard_thawed {
                failures = thaw_fds(&self.fds, &self.frozen);
            }
        }
        let frozen_for = self.frozen_at.elapsed();
        // Nothing of ours is frozen any more (or a FITHAW failed): files and logs are fine now.
        let journal = self.journal.take();
        if failures.is_empty() {
            let _ = guard.send(DONE);
            if guard.wait(EXIT_TIMEOUT).is_none() {
                guard.kill();
            }
            if let Some(journal) = journal
                && let Err(e) = journal.remove()
            {
                tracing::warn!(set = %self.set_id, "cannot remove the freeze journal entry: {e}");
            }
            tracing::debug!(set = %self.set_id, ?frozen_for, guard_thawed, "thawed");
            Ok(ThawReport {
                frozen_for,
                guard_thawed,
            })
        } else {
            // A second try from the guard; the journal entry stays for recovery.
            let status = guard.terminate();
            drop(journal);
            let message = format!(
                "cannot thaw {}; the freeze guard tried again ({}); the freeze journal keeps the \
                 entry, so vssd's next start tries once more",
                failures.join(", "),
                describe(status)
            );
            tracing::error!(set = %self.set_id, "{message}");
            Err(VssError::unexpected(message))
        }
    }

    /// After a failed freeze of mount point `failed_at`: thaw what we froze (`..failed_at`) in
    /// reverse, end the guard, remove the journal entry. Returns what could not be undone.
    fn unwind(&mut self, failed_at: usize) -> Vec<String> {
        let failures = thaw_fds(&self.fds[..failed_at], &self.frozen[..failed_at]);
        let mut guard = self.guard.take().expect("guard present while freezing");
        let journal = self.journal.take();
        if failures.is_empty() {
            let _ = guard.send(DONE);
            if guard.wait(EXIT_TIMEOUT).is_none() {
                guard.kill();
            }
            if let Some(j) = journal {
                let _ = j.remove();
            }
        } else {
            // The guard tries too (it skips what it was told to forget); keep the journal.
            guard.terminate();
            drop(journal);
        }
        failures
    }
}

impl Drop for FreezeSet {
    fn drop(&mut self) {
        if self.guard.is_some()
            && let Err(e) = self.thaw_now()
        {
            tracing::error!(set = %self.set_id, "thawing a dropped freeze set: {e}");
        }
    }
}

/// `FITHAW` in reverse order; "not frozen" is fine. Returns the failures.
fn thaw_fds(fds: &[OwnedFd], paths: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for (fd, path) in fds.iter().zip(paths).rev() {
        match fithaw(fd) {
            Ok(Thawed::Thawed | Thawed::NotFrozen) => {}
            Err(e) => failures.push(format!("{} (FITHAW: {e})", path.display())),
        }
    }
    failures
}

fn with_unwind(error: VssError, unwound: Vec<String>) -> VssError {
    if unwound.is_empty() {
        return error;
    }
    VssError::new(
        error.code,
        format!(
            "{}; and undoing the freeze failed: {} (the guard was told to thaw them; the journal \
             keeps the entry)",
            error.message,
            unwound.join(", ")
        ),
    )
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match GuardExit::from_status(s) {
            Some(e) => format!("{s}: {e:?}"),
            None => s.to_string(),
        },
        None => "still running".to_owned(),
    }
}

/// The owner's end of a guard process.
#[derive(Debug)]
struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buf: Vec<u8>,
}

impl Guard {
    fn spawn(binary: &Path, window: Duration, mounts: &[PathBuf]) -> io::Result<Guard> {
        let args = GuardArgs {
            owner_pid: i32::try_from(std::process::id()).map_err(io::Error::other)?,
            window,
            mount_points: mounts.to_vec(),
        };
        // std makes the pipes O_CLOEXEC in this process, so no other child inherits them.
        let mut child = Command::new(binary)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        Ok(Guard {
            child,
            stdin,
            stdout,
            buf: Vec::new(),
        })
    }

    /// The next line from the guard: `Ok(None)` at end of file, `TimedOut` after `timeout`.
    fn read_line(&mut self, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(Some(
                    String::from_utf8_lossy(&line[..end]).trim().to_owned(),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
            }
            let wait = deadline - now;
            let timeout = Timespec {
                tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: wait.subsec_nanos().into(),
            };
            let mut fds = [PollFd::new(&self.stdout, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            let mut chunk = [0u8; 256];
            match self.stdout.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("no stdin pipe"))?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()
    }

    /// Sends `line` and whether the guard answered `ok`.
    fn ask(&mut self, line: &str) -> bool {
        self.send(line).is_ok() && matches!(self.read_line(REPLY_TIMEOUT), Ok(Some(l)) if l == OK)
    }

    /// Waits up to `timeout` for the guard to exit.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => return None,
            }
        }
    }

    /// SIGTERM (the guard thaws what it was not told to forget), then waits for it.
    fn terminate(&mut self) -> Option<ExitStatus> {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.wait(EXIT_TIMEOUT).or_else(|| self.kill())
    }

    /// SIGKILL and reap (only for a guard that is not needed: never armed, or done).
    fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

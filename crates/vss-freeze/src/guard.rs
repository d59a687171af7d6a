//! The guard process (`vss-freeze-guard --owner-pid PID --window-ms N MOUNTPOINT...`): it owns
//! the freezes of one set and thaws them when the commit window ends, the moment the owner dies
//! (SIGKILL included), or on SIGTERM/SIGINT/SIGHUP.
//!
//! Why a separate process, and why each of its steps (linux-peers.md §17, §19; issue 3 §4):
//!
//! * A freeze outlives the process that made it, and the kernel has no timeout. "Left frozen" is
//!   the dominant failure of every Linux freezer: the second message (thaw) never comes because
//!   the process that should send it crashed, hung or was killed. A thread of the owner cannot
//!   help when the owner is SIGKILLed; a separate, minimal process can.
//! * **pidfd, not `PR_SET_PDEATHSIG`**: the parent-death signal fires when the *thread* that
//!   spawned the child exits, and tokio's blocking threads exit when idle, so a guard spawned
//!   from `spawn_blocking` would thaw in the middle of a healthy commit. A pidfd becomes
//!   readable when the owner *process* exits, however it exits.
//! * **Not a pipe alone**: EOF on the owner's pipe arrives only when *every* copy of its write
//!   end is closed, and a child the owner spawned may hold one. So EOF on stdin is a hint, never
//!   a reason; the pidfd and the deadline are the reasons (see [`crate::protocol`]).
//! * **Armed before the first FIFREEZE**: every mount point is opened, the pidfd taken and the
//!   signals routed before `armed` is printed, and the owner freezes only after reading it. The
//!   guard then needs nothing from any filesystem: it thaws through the pre-opened directory
//!   fds with `FITHAW` and touches no path.
//! * **setsid()**: a Ctrl-C or a hangup of the owner's terminal or process group must not kill
//!   the guard together with the owner (it would thaw nothing then).
//! * **oom_score_adj -1000** and `mlockall`: the OOM killer must not pick the guard while memory
//!   is short (a frozen filesystem cannot write back dirty pages, so memory *is* short), and its
//!   pages must not need reading back in when it has to act.
//! * **Signals through a signalfd**: SIGTERM/SIGINT/SIGHUP are blocked and read in the same
//!   `poll` as everything else, so they thaw instead of killing the guard (an `init` shutdown
//!   or an administrator's `kill` must leave nothing frozen).
//! * **Every fd O_CLOEXEC**, and fds inherited by accident closed first: the guard must not keep
//!   the owner's sockets or journal lock alive (a held journal lock would make recovery think
//!   the dead owner still lives).
//! * **No logging until it has thawed**: stderr might be a file on a frozen filesystem, and a
//!   write there would block the guard in uninterruptible sleep until... the guard thaws. Notes
//!   are kept in memory and printed after the last `FITHAW`.
//! * **Owner already dead before arming**: the owner freezes only after `armed`, so nothing of
//!   ours can be frozen yet; the guard exits (status 3) *without* thawing, since a freeze found
//!   then belongs to someone else.

use std::ffi::{OsString, c_int};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};

use crate::fs::{Thawed, fithaw, open_dir};
use crate::protocol::{ARMED, DONE, FORGET, FROZEN, GuardExit, OK, THAWING};

/// The guard's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardArgs {
    /// The process whose death thaws (must be the guard's parent).
    pub owner_pid: i32,
    /// How long after arming the guard thaws by itself.
    pub window: Duration,
    /// What to thaw, in freezing order (the guard thaws in reverse).
    pub mount_points: Vec<PathBuf>,
}

impl GuardArgs {
    /// The arguments for `Command::args`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--owner-pid".into(),
            self.owner_pid.to_string().into(),
            "--window-ms".into(),
            self.window.as_millis().max(1).to_string().into(),
            "--".into(),
        ];
        v.extend(self.mount_points.iter().map(|p| p.as_os_str().to_owned()));
        v
    }

    /// Parses `--owner-pid PID --window-ms N [--] MOUNTPOINT...`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<GuardArgs, String> {
        let mut owner_pid = None;
        let mut window = None;
        let mut mount_points = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--owner-pid") => {
                    let v = args.next().ok_or("--owner-pid needs a value")?;
                    let pid = v
                        .to_str()
                        .and_then(|s| s.parse::<i32>().ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("--owner-pid: not a process id: {v:?}"))?;
                    owner_pid = Some(pid);
                }
                Some("--window-ms") => {
                    let v = args.next().ok_or("--window-ms needs a value")?;
                    let ms = v
                        .to_str()
                        .and_then(|s| s.parse::<u64>().ok())
                        .filter(|ms| *ms > 0)
                        .ok_or_else(|| format!("--window-ms: not a positive number: {v:?}"))?;
                    window = Some(Duration::from_millis(ms));
                }
                Some("--") => {
                    mount_points.extend(args.by_ref().map(PathBuf::from));
                }
                Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}")),
                _ => mount_points.push(PathBuf::from(arg)),
            }
        }
        if mount_points.is_empty() {
            return Err("no mount points".into());
        }
        Ok(GuardArgs {
            owner_pid: owner_pid.ok_or("--owner-pid is required")?,
            window: window.ok_or("--window-ms is required")?,
            mount_points,
        })
    }
}

/// The usage line.
pub const USAGE: &str = "usage: vss-freeze-guard --owner-pid PID --window-ms N [--] MOUNTPOINT...\n\
     Started by the process that freezes (FIFREEZE) the mount points, before it freezes them: \
     prints `armed`, then thaws them all when N ms have passed, when that process exits, or on \
     SIGTERM/SIGINT/SIGHUP; stdin `done` makes it exit without thawing.\n\
     Exit status: 0 done, 1 setup failed, 2 thawed at the deadline, 3 thawed because the owner \
     died, 4 thawed on a signal, 5 a thaw failed.";

/// The guard's `main`: runs it and exits with its [`GuardExit`] status.
pub fn main() -> ! {
    let code = run(std::env::args_os().skip(1));
    std::process::exit(code.code())
}

/// Runs the guard with these arguments (without the program name) until it is done.
pub fn run(args: impl IntoIterator<Item = OsString>) -> GuardExit {
    // Before anything else: no fd of the owner's may live on in us.
    close_inherited_fds();
    // Signals first, so that from here on SIGTERM/SIGINT/SIGHUP cannot kill us silently.
    let signals = match SignalFd::new(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]) {
        Ok(s) => s,
        Err(e) => return setup_failed(&format!("cannot route signals to a signalfd: {e}")),
    };
    let args = match GuardArgs::parse(args) {
        Ok(a) => a,
        Err(e) => return setup_failed(&format!("{e}\n{USAGE}")),
    };
    // Fails only if we already lead a process group, which then is our own anyway.
    let _ = rustix::process::setsid();
    // Our working directory must not keep any filesystem busy (or be one we freeze).
    let _ = std::env::set_current_dir("/");
    let mut warnings = Vec::new();
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        warnings.push(format!("cannot set oom_score_adj to -1000: {e}"));
    }
    if rustix::process::geteuid().is_root() {
        use rustix::mm::{MlockAllFlags, mlockall};
        if let Err(e) = mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE) {
            warnings.push(format!("mlockall: {e}"));
        }
    }
    let mut mounts = Vec::with_capacity(args.mount_points.len());
    for path in &args.mount_points {
        match open_dir(path) {
            Ok(fd) => mounts.push((path.clone(), fd)),
            Err(e) => return setup_failed(&format!("cannot open {}: {e}", path.display())),
        }
    }
    let Some(owner_pid) = Pid::from_raw(args.owner_pid) else {
        return setup_failed("--owner-pid must be positive");
    };
    let owner = match rustix::process::pidfd_open(owner_pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return owner_gone_before_arming(args.owner_pid),
        Err(e) => return setup_failed(&format!("pidfd_open({}): {e}", args.owner_pid)),
    };
    // The pid might have been reused if the owner died before pidfd_open; the owner is our
    // parent, so if we were re-parented, it is gone.
    if rustix::process::getppid() != Some(owner_pid) {
        return owner_gone_before_arming(args.owner_pid);
    }
    mark_all_fds_cloexec();
    // Warnings may go out now: nothing is frozen before `armed`.
    for w in &warnings {
        let _ = writeln!(io::stderr(), "vss-freeze-guard: warning: {w}");
    }
    if reply(ARMED).is_err() {
        // Nobody reads: the owner will not freeze (it waits for this line).
        return setup_failed("cannot write `armed` to stdout");
    }
    let n = mounts.len();
    Watch {
        armed_at: Instant::now(),
        deadline: Instant::now() + args.window,
        window: args.window,
        owner_pid: args.owner_pid,
        mounts,
        forgotten: vec![false; n],
        owner,
        signals,
        stdin_open: true,
        line: Vec::with_capacity(256),
        notes: Vec::new(),
    }
    .run()
}

fn setup_failed(message: &str) -> GuardExit {
    let _ = writeln!(io::stderr(), "vss-freeze-guard: {message}");
    GuardExit::Setup
}

fn owner_gone_before_arming(pid: i32) -> GuardExit {
    let _ = writeln!(
        io::stderr(),
        "vss-freeze-guard: the owner (pid {pid}) exited before the guard was armed; \
         it cannot have frozen anything, so nothing is thawed"
    );
    GuardExit::OwnerDied
}

/// One line to the owner; errors (the owner is gone) are the caller's to judge.
fn reply(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The armed guard.
struct Watch {
    armed_at: Instant,
    deadline: Instant,
    window: Duration,
    owner_pid: i32,
    mounts: Vec<(PathBuf, OwnedFd)>,
    /// Mount points the owner found frozen by someone else (`forget N`).
    forgotten: Vec<bool>,
    owner: OwnedFd,
    signals: SignalFd,
    stdin_open: bool,
    line: Vec<u8>,
    /// Said only after thawing (stderr may be on a frozen filesystem).
    notes: Vec<String>,
}

/// What a line from the owner asks for.
enum Next {
    Continue,
    Exit(GuardExit),
}

impl Watch {
    fn run(mut self) -> GuardExit {
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                let why = format!(
                    "the commit window of {:?} ended (armed {:?} ago)",
                    self.window,
                    now - self.armed_at
                );
                return self.thaw(GuardExit::Deadline, why);
            }
            let wait = self.deadline - now;
            let timeout = Timespec {
                tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: wait.subsec_nanos().into(),
            };
            let stdin = io::stdin();
            let stdin_fd = stdin.as_fd();
            let mut fds = vec![
                PollFd::new(&self.owner, PollFlags::IN),
                PollFd::new(&self.signals.fd, PollFlags::IN),
            ];
            if self.stdin_open {
                fds.push(PollFd::new(&stdin_fd, PollFlags::IN));
            }
            match poll(&mut fds, Some(&timeout)) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => {
                    // A guard that cannot watch must not keep anything frozen.
                    return self.thaw(GuardExit::Deadline, format!("poll failed ({e})"));
                }
            }
            let owner_gone = !fds[0].revents().is_empty();
            let signalled = !fds[1].revents().is_empty();
            let input = fds.get(2).is_some_and(|f| !f.revents().is_empty());
            drop(fds);
            // The owner's words first: a `done` or `forget` it wrote just before dying counts.
            if input && let Next::Exit(e) = self.read_input(stdin_fd) {
                return e;
            }
            if owner_gone {
                if let Next::Exit(e) = self.drain_input(stdin_fd) {
                    return e;
                }
                let why = format!("the owner (pid {}) exited", self.owner_pid);
                return self.thaw(GuardExit::OwnerDied, why);
            }
            if signalled {
                let why = match self.signals.read() {
                    Some((signo, pid)) => format!("signal {signo} from pid {pid}"),
                    None => "a signal".to_owned(),
                };
                return self.thaw(GuardExit::Signal, why);
            }
        }
    }

    /// Reads what is there (poll said so) and acts on every complete line.
    fn read_input(&mut self, stdin: BorrowedFd<'_>) -> Next {
        let mut buf = [0u8; 512];
        let n = match rustix::io::read(stdin, &mut buf) {
            Ok(n) => n,
            Err(Errno::INTR | Errno::AGAIN) => return Next::Continue,
            Err(e) => {
                self.notes.push(format!("stdin: {e}; no longer read"));
                self.stdin_open = false;
                return Next::Continue;
            }
        };
        if n == 0 {
            // Only a hint (see the protocol docs): keep watching the pidfd and the deadline.
            self.stdin_open = false;
            return Next::Continue;
        }
        self.line.extend_from_slice(&buf[..n]);
        while let Some(end) = self.line.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).trim().to_owned();
            if let Next::Exit(e) = self.handle(&line) {
                return Next::Exit(e);
            }
        }
        if self.line.len() > 4096 {
            self.notes
                .push("discarded an overlong line on stdin".into());
            self.line.clear();
        }
        Next::Continue
    }

    /// After the owner died: whatever it wrote before dying, without waiting.
    fn drain_input(&mut self, stdin: BorrowedFd<'_>) -> Next {
        while self.stdin_open {
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            match poll(&mut fds, Some(&Timespec::default())) {
                Ok(1..) => {}
                Err(Errno::INTR) => continue,
                _ => break,
            }
            if let Next::Exit(e) = self.read_input(stdin) {
                return Next::Exit(e);
            }
        }
        Next::Continue
    }

    fn handle(&mut self, line: &str) -> Next {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some(DONE), None) => return Next::Exit(GuardExit::Done),
            (Some(FORGET), Some(n)) => match n.parse::<usize>() {
                Ok(i) if i < self.forgotten.len() => self.forgotten[i] = true,
                _ => self
                    .notes
                    .push(format!("ignored {line:?}: no such mount point")),
            },
            (Some(FROZEN), None) => {
                let _ = reply(OK);
            }
            (Some(THAWING), None) => {
                // The owner thaws now; a deadline thaw must not race it.
                self.deadline = self.deadline.max(Instant::now() + self.window);
                let _ = reply(OK);
            }
            _ => self.notes.push(format!("ignored {line:?}")),
        }
        Next::Continue
    }

    /// FITHAW every mount point not forgotten, in reverse order; only then say anything.
    fn thaw(self, reason: GuardExit, why: String) -> GuardExit {
        let started = Instant::now();
        let mut results = Vec::with_capacity(self.mounts.len());
        let mut failed = false;
        for (i, (path, fd)) in self.mounts.iter().enumerate().rev() {
            if self.forgotten[i] {
                results.push(format!(
                    "{}: left as it is (frozen by someone else)",
                    path.display()
                ));
                continue;
            }
            let mut result = fithaw(fd);
            for _ in 0..3 {
                if !matches!(result, Err(Errno::INTR | Errno::AGAIN)) {
                    break;
                }
                result = fithaw(fd);
            }
            match result {
                Ok(Thawed::Thawed) => results.push(format!("{}: thawed", path.display())),
                Ok(Thawed::NotFrozen) => {
                    results.push(format!("{}: was not frozen", path.display()));
                }
                Err(e) => {
                    failed = true;
                    results.push(format!("{}: FITHAW failed: {e}", path.display()));
                }
            }
        }
        let took = started.elapsed();
        let mut err = io::stderr().lock();
        let _ = writeln!(
            err,
            "vss-freeze-guard: {why}; thawing took {took:?}: {}",
            results.join(", ")
        );
        for note in &self.notes {
            let _ = writeln!(err, "vss-freeze-guard: {note}");
        }
        if failed {
            GuardExit::ThawFailed
        } else {
            reason
        }
    }
}

/// SIGTERM/SIGINT/SIGHUP, blocked and readable as a file descriptor.
struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    fn new(signals: &[c_int]) -> io::Result<SignalFd> {
        // SAFETY: sigset_t is plain data that sigemptyset initialises; the pointers are to
        // that local; sigprocmask only reads the set (the guard has one thread, so the process
        // mask is this thread's mask); signalfd returns a new fd that we then own alone.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in signals {
                libc::sigaddset(&mut set, *s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The pending signal's number and sender.
    fn read(&self) -> Option<(u32, u32)> {
        let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        let n = rustix::io::read(&self.fd, &mut buf).ok()?;
        if n < 16 {
            return None;
        }
        // struct signalfd_siginfo starts: u32 ssi_signo, i32 ssi_errno, i32 ssi_code, u32 ssi_pid.
        let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        Some((word(0), word(12)))
    }
}

/// `close_range(3, ~0, 0)`: fds the owner leaked to us (without O_CLOEXEC) must not live on in
/// the guard. Best effort; a kernel without close_range (before 5.9) keeps them.
fn close_inherited_fds() {
    // SAFETY: close_range takes plain integers. Nothing in this process uses fds >= 3 yet
    // (this runs first thing in `run`, before the guard opens anything), so no owner of an fd
    // is left with a dangling one.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

/// Every open fd gets O_CLOEXEC (the guard executes nothing, but if it ever did, nothing of
/// its own should leak into that program).
fn mark_all_fds_cloexec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds; it closes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            0u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    // Before Linux 5.11: one by one.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        if let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<c_int>().ok())
        {
            // SAFETY: F_GETFD/F_SETFD only read and set the close-on-exec flag of an fd
            // number; on a number that is not open (the directory's own fd, closed meanwhile)
            // they fail with EBADF and do nothing.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_and_renders_arguments() {
        let a = GuardArgs::parse(os(&[
            "--owner-pid",
            "42",
            "--window-ms",
            "300",
            "/mnt/a",
            "--",
            "-odd",
        ]))
        .unwrap();
        assert_eq!(a.owner_pid, 42);
        assert_eq!(a.window, Duration::from_millis(300));
        assert_eq!(
            a.mount_points,
            vec![PathBuf::from("/mnt/a"), PathBuf::from("-odd")]
        );
        assert_eq!(GuardArgs::parse(a.to_args()).unwrap(), a);
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            &["--window-ms", "10", "/m"][..],
            &["--owner-pid", "1", "/m"],
            &["--owner-pid", "0", "--window-ms", "10", "/m"],
            &["--owner-pid", "1", "--window-ms", "0", "/m"],
            &["--owner-pid", "1", "--window-ms", "10"],
            &["--owner-pid", "1", "--window-ms", "10", "--bogus", "/m"],
            &["--owner-pid"],
        ] {
            assert!(GuardArgs::parse(os(bad)).is_err(), "{bad:?}");
        }
    }
}

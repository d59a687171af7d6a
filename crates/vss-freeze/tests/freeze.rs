//! Freeze safety on real filesystems (root only; skipped otherwise): XFS and ext4 on loop
//! devices from vss-test-support.
//!
//! Why the tests look the way they do:
//!
//! * Only scratch loop filesystems are ever frozen ([`assert_scratch`] checks before every
//!   freeze): freezing the filesystem of `/tmp`, `/var/tmp`, `target/` or the cargo home would
//!   hang the test run and the machine.
//! * "Is it frozen?" has no read-only answer, so writability is observed from a *child process*
//!   that writes (a write to a frozen filesystem sleeps uninterruptibly, even through SIGKILL,
//!   until thaw), never from the test thread. "Still frozen" is probed with `FIFREEZE` (`EBUSY`
//!   means frozen; success means it was not, and the probe thaws at once).
//! * Every guard drops before the filesystem it may have frozen; `Mounted`'s drop thaws before
//!   unmounting, and [`Writer`]'s drop thaws so a blocked writer can always be reaped.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};
use uuid::Uuid;
use vss_freeze::{
    FreezeConfig, FreezeSet, JournalEntry, RecoveryOutcome, recover, same_filesystem,
};
use vss_model::ErrorCode;
use vss_test_support::{Mounted, ScratchDir, have_tool, require_root, run};

const GUARD: &str = env!("CARGO_BIN_EXE_vss-freeze-guard");
const OWNER: &str = env!("CARGO_BIN_EXE_vss-freeze-test-owner");

fn config(journal: &Path, window: Duration) -> FreezeConfig {
    FreezeConfig {
        guard_binary: PathBuf::from(GUARD),
        journal_dir: journal.to_owned(),
        window,
    }
}

/// Panics unless `path` is on a filesystem nothing else needs (a scratch loop mount).
fn assert_scratch(path: &Path) {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let exe = std::env::current_exe().unwrap();
    let needed = [
        PathBuf::from("/"),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        cargo_home,
        exe,
    ];
    for n in needed.iter().filter(|n| n.exists()) {
        assert!(
            !same_filesystem(path, n).unwrap(),
            "refusing to freeze {}: it is the filesystem of {}",
            path.display(),
            n.display()
        );
    }
}

fn scratch(make: fn(u64) -> std::io::Result<Mounted>, mkfs: &str, size: u64) -> Option<Mounted> {
    if !have_tool(mkfs) {
        eprintln!("skipping: no {mkfs}");
        return None;
    }
    let fs = make(size).unwrap();
    assert_scratch(fs.path());
    Some(fs)
}

fn xfs() -> Option<Mounted> {
    scratch(Mounted::xfs, "mkfs.xfs", 512 << 20)
}

fn ext4() -> Option<Mounted> {
    scratch(Mounted::ext4, "mkfs.ext4", 64 << 20)
}

const FIFREEZE: Opcode = opcode::read_write::<std::ffi::c_int>(b'X', 119);
const FITHAW: Opcode = opcode::read_write::<std::ffi::c_int>(b'X', 120);

fn open_dir(path: &Path) -> OwnedFd {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// A freeze that is nobody's (no guard, no journal), as another program would make it.
fn raw_freeze(path: &Path) -> Result<(), Errno> {
    assert_scratch(path);
    // SAFETY: FIFREEZE ignores its argument; no memory of ours is touched.
    unsafe { ioctl(open_dir(path), NoArg::<FIFREEZE>::new()) }
}

fn raw_thaw(path: &Path) -> Result<(), Errno> {
    // SAFETY: FITHAW ignores its argument; no memory of ours is touched.
    unsafe { ioctl(open_dir(path), NoArg::<FITHAW>::new()) }
}

/// Whether `path`'s filesystem is frozen: FIFREEZE answers EBUSY if so; if it succeeds, it was
/// not, and it is thawed again at once.
fn is_frozen(path: &Path) -> bool {
    match raw_freeze(path) {
        Err(Errno::BUSY) => true,
        Ok(()) => {
            raw_thaw(path).unwrap();
            false
        }
        Err(e) => panic!("FIFREEZE {}: {e}", path.display()),
    }
}

/// A child process writing a new file on a filesystem (blocks while it is frozen).
struct Writer {
    child: Option<Child>,
    mount: PathBuf,
    started: Instant,
}

static WRITES: AtomicUsize = AtomicUsize::new(0);

impl Writer {
    fn start(dir: &Path) -> Writer {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let file = dir.join(format!("write-{}-{n}", std::process::id()));
        let child = Command::new("/bin/sh")
            .args(["-c", "printf x > \"$1\"", "sh"])
            .arg(&file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Writer {
            child: Some(child),
            mount: dir.to_owned(),
            started: Instant::now(),
        }
    }

    /// When the write finished (it must succeed), or `None` if it is still blocked after
    /// `timeout`.
    fn finished_within(&mut self, timeout: Duration) -> Option<Instant> {
        let child = self.child.as_mut().expect("writer reaped already");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let at = Instant::now();
                assert!(status.success(), "the write failed: {status}");
                self.child = None;
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    #[track_caller]
    fn assert_finishes(&mut self, timeout: Duration) -> Instant {
        self.finished_within(timeout).unwrap_or_else(|| {
            panic!(
                "a write to {} is still blocked after {:?}",
                self.mount.display(),
                self.started.elapsed()
            )
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Still blocked (a failing test): thaw so that it can be reaped.
            let _ = vss_test_support::thaw(&self.mount);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a writer and checks that it blocks (the filesystem is frozen).
#[track_caller]
fn assert_blocked(dir: &Path) -> Writer {
    let mut w = Writer::start(dir);
    assert!(
        w.finished_within(Duration::from_millis(300)).is_none(),
        "a write to {} went through: it is not frozen",
        dir.display()
    );
    w
}

#[track_caller]
fn assert_writable(dir: &Path) {
    Writer::start(dir).assert_finishes(Duration::from_secs(5));
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn journal_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn round_trip(fs: &Mounted) {
    let journal = tempfile::tempdir().unwrap();
    let set = FreezeSet::freeze(
        &config(journal.path(), Duration::from_secs(10)),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    )
    .unwrap();
    assert_eq!(set.frozen(), [fs.path().to_owned()]);
    let journal_file = set.journal_file().unwrap().to_owned();
    assert!(journal_file.exists());
    let guard_pid = set.guard_pid().unwrap();
    assert!(pid_alive(guard_pid));
    let mut writer = assert_blocked(fs.path());
    let report = set.thaw().unwrap();
    let thawed_at = Instant::now();
    assert!(!report.guard_thawed);
    assert!(
        report.frozen_for >= Duration::from_millis(300),
        "{report:?}"
    );
    let done = writer.assert_finishes(Duration::from_secs(5));
    eprintln!(
        "{}: frozen for {:?}; the blocked write finished {:?} after thaw() returned",
        fs.fs_type(),
        report.frozen_for,
        done.saturating_duration_since(thawed_at)
    );
    assert!(!journal_file.exists());
    assert!(!pid_alive(guard_pid), "the guard was not reaped");
    assert!(!is_frozen(fs.path()));
    assert_writable(fs.path());
}

#[test]
fn freeze_and_thaw_xfs() {
    if !require_root() {
        return;
    }
    let Some(fs) = xfs() else { return };
    round_trip(&fs);
}

#[test]
fn freeze_and_thaw_ext4() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    round_trip(&fs);
}

#[test]
fn frozen_by_someone_else_fails_and_stays_frozen() {
    if !require_root() {
        return;
    }
    let (Some(ours), Some(theirs)) = (ext4(), xfs()) else {
        return;
    };
    let journal = tempfile::tempdir().unwrap();
    let config = config(journal.path(), Duration::from_secs(10));
    raw_freeze(theirs.path()).unwrap();
    // Theirs second: ours is frozen first and must be thawed again.
    for order in [
        [ours.path().to_owned(), theirs.path().to_owned()],
        [theirs.path().to_owned(), ours.path().to_owned()],
    ] {
        let err = FreezeSet::freeze(&config, Uuid::new_v4(), &order).unwrap_err();
        assert_eq!(err.code, ErrorCode::VolumeInUse, "{err}");
        assert!(err.message.contains("already frozen"), "{err}");
        assert_writable(ours.path());
        assert_eq!(journal_entries(journal.path()), 0);
    }
    // The guard exited without touching theirs; give a stray thaw time to show.
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_frozen(theirs.path()), "we thawed someone else's freeze");
    let mut blocked = assert_blocked(theirs.path());
    raw_thaw(theirs.path()).unwrap();
    blocked.assert_finishes(Duration::from_secs(5));
}

#[test]
fn two_mounts_of_one_filesystem_are_frozen_once() {
    if !require_root() {
        return;
    }
    let Some(fs) = xfs() else { return };
    let binds = ScratchDir::new().unwrap();
    let sub = fs.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let bind = binds.path().join("bind");
    std::fs::create_dir(&bind).unwrap();
    run(
        "mount",
        ["--bind".as_ref(), sub.as_os_str(), bind.as_os_str()],
    )
    .unwrap();
    let journal = tempfile::tempdir().unwrap();
    let set = FreezeSet::freeze(
        &config(journal.path(), Duration::from_secs(10)),
        Uuid::new_v4(),
        &[fs.path().to_owned(), bind.clone(), fs.path().to_owned()],
    )
    .unwrap();
    assert_eq!(set.frozen(), [fs.path().to_owned()]);
    let mut writer = assert_blocked(&bind);
    set.thaw().unwrap();
    writer.assert_finishes(Duration::from_secs(5));
}

#[test]
fn btrfs_subvolumes_of_one_filesystem_are_frozen_once() {
    if !require_root() {
        return;
    }
    let Some(fs) = scratch(Mounted::btrfs, "mkfs.btrfs", 256 << 20) else {
        return;
    };
    fs.create_subvolume("data");
    let data = fs.mount_again(Some("subvol=data")).unwrap();
    // st_dev differs (each subvolume has its own), the superblock is the same.
    let dev = |p: &Path| rustix::fs::stat(p).unwrap().st_dev;
    assert_ne!(dev(fs.path()), dev(data.path()));
    assert!(same_filesystem(fs.path(), data.path()).unwrap());
    let journal = tempfile::tempdir().unwrap();
    let set = FreezeSet::freeze(
        &config(journal.path(), Duration::from_secs(10)),
        Uuid::new_v4(),
        &[data.path().to_owned(), fs.path().to_owned()],
    )
    .unwrap();
    assert_eq!(set.frozen(), [data.path().to_owned()]);
    let mut writer = assert_blocked(fs.path());
    set.thaw().unwrap();
    writer.assert_finishes(Duration::from_secs(5));
}

#[test]
fn the_guard_thaws_at_the_deadline() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let journal = tempfile::tempdir().unwrap();
    let window = Duration::from_millis(300);
    let set = FreezeSet::freeze(
        &config(journal.path(), window),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    )
    .unwrap();
    let mut writer = Writer::start(fs.path());
    let done = writer.assert_finishes(window * 6);
    let after = done - set.frozen_at();
    eprintln!(
        "deadline: window {window:?}; the blocked write finished {after:?} after the first \
         FIFREEZE ({:?} past the window)",
        after.saturating_sub(window)
    );
    assert!(after >= window - Duration::from_millis(20), "{after:?}");
    let report = set.thaw().unwrap();
    assert!(report.guard_thawed, "{report:?}");
    assert_eq!(journal_entries(journal.path()), 0);
    assert!(!is_frozen(fs.path()));
}

/// Kills its child on drop (a failing test must not leave the owner behind).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_guard_thaws_when_the_owner_is_killed() {
    if !require_root() {
        return;
    }
    let Some(fs) = xfs() else { return };
    // The guard is the owner's child; once the owner dies it is re-parented to us, so we can
    // read its exit status.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let mut owner = KillOnDrop(
        Command::new(OWNER)
            .args(["--guard", GUARD, "--window-ms", "30000", "--journal"])
            .arg(journal.path())
            .arg(fs.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(owner.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"frozen"), "owner said {line:?}");
    let guard_pid: i32 = words[1].parse().unwrap();
    let journal_file = PathBuf::from(words[2]);
    assert!(journal_file.exists());
    let mut writer = assert_blocked(fs.path());
    let killed = Instant::now();
    owner.0.kill().unwrap();
    let done = writer.assert_finishes(Duration::from_secs(5));
    let latency = done - killed;
    eprintln!("owner SIGKILL → blocked write finished after {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    owner.0.wait().unwrap();
    // The guard's verdict: 3, the owner died.
    let guard = rustix::process::Pid::from_raw(guard_pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match rustix::process::waitpid(Some(guard), rustix::process::WaitOptions::NOHANG) {
            Ok(Some((_, status))) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => panic!("the guard did not exit: {other:?}"),
        }
    };
    assert_eq!(status.exit_status(), Some(3), "{status:?}");
    // The dead owner's journal entry is what recovery is for; nothing is frozen any more.
    assert!(journal_file.exists());
    let recovered = recover(journal.path());
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        recovered[0].outcome,
        RecoveryOutcome::Thawed {
            thawed: vec![],
            not_frozen: vec![fs.path().to_owned()],
            missing: vec![],
            failed: vec![],
        }
    );
    assert!(!journal_file.exists());
}

#[test]
fn an_owner_that_thaws_itself_dismisses_its_guard() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let journal = tempfile::tempdir().unwrap();
    let mut owner = KillOnDrop(
        Command::new(OWNER)
            .args(["--guard", GUARD, "--window-ms", "30000", "--journal"])
            .arg(journal.path())
            .arg(fs.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(owner.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("frozen "), "owner said {line:?}");
    let mut writer = assert_blocked(fs.path());
    writeln!(owner.0.stdin.as_mut().unwrap(), "thaw").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "thawed false");
    writer.assert_finishes(Duration::from_secs(5));
    assert!(owner.0.wait().unwrap().success());
    assert_eq!(journal_entries(journal.path()), 0);
}

#[test]
fn sigterm_to_the_guard_thaws() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let journal = tempfile::tempdir().unwrap();
    let set = FreezeSet::freeze(
        &config(journal.path(), Duration::from_secs(30)),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    )
    .unwrap();
    let mut writer = assert_blocked(fs.path());
    let guard = rustix::process::Pid::from_raw(set.guard_pid().unwrap() as i32).unwrap();
    let sent = Instant::now();
    rustix::process::kill_process(guard, rustix::process::Signal::TERM).unwrap();
    let done = writer.assert_finishes(Duration::from_secs(5));
    eprintln!(
        "guard SIGTERM → blocked write finished after {:?}",
        done - sent
    );
    let report = set.thaw().unwrap();
    assert!(report.guard_thawed, "{report:?}");
    assert_eq!(journal_entries(journal.path()), 0);
}

#[test]
fn dropping_an_unthawed_set_thaws() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let journal = tempfile::tempdir().unwrap();
    let set = FreezeSet::freeze(
        &config(journal.path(), Duration::from_secs(30)),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    )
    .unwrap();
    let guard_pid = set.guard_pid().unwrap();
    let mut writer = assert_blocked(fs.path());
    drop(set);
    writer.assert_finishes(Duration::from_secs(5));
    assert!(!pid_alive(guard_pid));
    assert_eq!(journal_entries(journal.path()), 0);
}

#[test]
fn recovery_thaws_only_for_dead_owners() {
    if !require_root() {
        return;
    }
    let (Some(dead), Some(alive)) = (ext4(), ext4()) else {
        return;
    };
    let journal = tempfile::tempdir().unwrap();
    let write_entry = |mount: &Path| {
        let entry = JournalEntry {
            set_id: Uuid::new_v4(),
            owner_pid: 999_999,
            mount_points: vec![mount.to_owned()],
            created_unix_ms: 0,
        };
        let path = journal.path().join(format!("{}.freeze", entry.set_id));
        std::fs::write(&path, serde_json::to_vec(&entry).unwrap()).unwrap();
        path
    };
    let dead_entry = write_entry(dead.path());
    let alive_entry = write_entry(alive.path());
    // The living owner holds its entry's lock.
    let lock = std::fs::File::open(&alive_entry).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    raw_freeze(dead.path()).unwrap();
    raw_freeze(alive.path()).unwrap();
    let mut alive_blocked = assert_blocked(alive.path());

    let recovered = recover(journal.path());
    assert_eq!(recovered.len(), 2, "{recovered:?}");
    let outcome = |file: &Path| {
        recovered
            .iter()
            .find(|r| r.journal_file == file)
            .map(|r| r.outcome.clone())
            .unwrap()
    };
    assert_eq!(
        outcome(&dead_entry),
        RecoveryOutcome::Thawed {
            thawed: vec![dead.path().to_owned()],
            not_frozen: vec![],
            missing: vec![],
            failed: vec![],
        }
    );
    assert_eq!(outcome(&alive_entry), RecoveryOutcome::OwnerAlive);
    assert!(!dead_entry.exists());
    assert!(alive_entry.exists());
    assert_writable(dead.path());
    assert!(
        is_frozen(alive.path()),
        "recovery thawed a living owner's freeze"
    );

    // The owner dies (its lock goes): the next recovery thaws.
    drop(lock);
    let recovered = recover(journal.path());
    assert!(
        matches!(
            &recovered[..],
            [r] if matches!(&r.outcome, RecoveryOutcome::Thawed { thawed, .. } if thawed == &[alive.path().to_owned()])
        ),
        "{recovered:?}"
    );
    alive_blocked.assert_finishes(Duration::from_secs(5));
    assert_writable(alive.path());
    assert_eq!(journal_entries(journal.path()), 0);
}

#[test]
fn a_journal_on_a_filesystem_of_the_set_is_refused() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let err = FreezeSet::freeze(
        &config(&fs.path().join("journal"), Duration::from_secs(10)),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupported, "{err}");
    assert!(!is_frozen(fs.path()));
}

#[test]
fn a_guard_that_does_not_arm_fails_the_set_before_freezing() {
    if !require_root() {
        return;
    }
    let Some(fs) = ext4() else { return };
    let journal = tempfile::tempdir().unwrap();
    for guard in ["/nonexistent/vss-freeze-guard", "/bin/true"] {
        let mut config = config(journal.path(), Duration::from_secs(10));
        config.guard_binary = PathBuf::from(guard);
        let err = FreezeSet::freeze(&config, Uuid::new_v4(), &[fs.path().to_owned()]).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unexpected, "{err}");
        assert!(!is_frozen(fs.path()));
        assert_eq!(journal_entries(journal.path()), 0);
    }
}

#[test]
fn a_window_shorter_than_the_freeze_leaves_nothing_frozen() {
    if !require_root() {
        return;
    }
    let Some(fs) = xfs() else { return };
    // Dirty data makes FIFREEZE flush for a while; the 1 ms window ends during it.
    let mut f = std::fs::File::create(fs.path().join("dirty")).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..64 {
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let journal = tempfile::tempdir().unwrap();
    match FreezeSet::freeze(
        &config(journal.path(), Duration::from_millis(1)),
        Uuid::new_v4(),
        &[fs.path().to_owned()],
    ) {
        Err(e) => {
            eprintln!("1 ms window: {e}");
            assert_eq!(e.code, ErrorCode::FlushWritesTimeout, "{e}");
        }
        Ok(set) => {
            // The freeze beat the deadline; the guard thawed right after.
            let report = set.thaw().unwrap();
            eprintln!("1 ms window: froze in time, {report:?}");
            assert!(report.guard_thawed, "{report:?}");
        }
    }
    assert_eq!(journal_entries(journal.path()), 0);
    assert!(!is_frozen(fs.path()));
    assert_writable(fs.path());
}

#[test]
fn a_guard_whose_owner_is_gone_before_arming_thaws_nothing() {
    // No freezing here: the guard must exit (3) without arming and without any FITHAW.
    let dir = tempfile::tempdir().unwrap();
    let mut gone = Command::new("/bin/true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let out = Command::new(GUARD)
        .args(["--owner-pid", &pid.to_string(), "--window-ms", "100000"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let bad = Command::new(GUARD).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn the_default_guard_is_found_from_a_test_binary() {
    // Tests run from target/<profile>/deps/; the guard is in target/<profile>/.
    let found = vss_freeze::default_guard_binary();
    assert_eq!(
        std::fs::canonicalize(found).unwrap(),
        std::fs::canonicalize(GUARD).unwrap()
    );
}

//! The end-to-end harness: a btrfs filesystem on a loop device, vssd as a child process, writer
//! processes (the SDK test writer and the Python writer), each test with its own state
//! directory, writers directory, socket and lock. Everything is torn down by Drop guards, also
//! when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use vss_test_support::proc::{ChildGuard, bin, wait_for, wait_until};
pub use vss_test_support::{Mounted, require_root};

/// One test's world.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub fs: Mounted,
    pub vssd: Option<ChildGuard>,
    pub writers: Vec<ChildGuard>,
}

impl Env {
    /// A fresh btrfs volume (256 MiB) and directories. `None` when not root.
    pub fn new() -> Option<Env> {
        if !require_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vss-e2e-")
            .tempdir()
            .expect("tempdir");
        for d in ["writers", "state", "run", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let fs = Mounted::btrfs(256 << 20).expect("btrfs on a loop device");
        Some(Env {
            dir,
            fs,
            vssd: None,
            writers: Vec::new(),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("vssd.sock")
    }
    pub fn writers_dir(&self) -> PathBuf {
        self.dir.path().join("writers")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.jsonl"))
    }
    /// The volume to snapshot: the btrfs mount point.
    pub fn volume(&self) -> PathBuf {
        self.fs.path().to_owned()
    }

    /// Starts vssd with extra arguments (e.g. `--timeout Freeze=2000`) and waits for its socket.
    pub fn start_vssd(&mut self, extra: &[&str]) {
        self.start_vssd_with_env(extra, &[]);
    }

    /// [`Env::start_vssd`] with extra environment variables (e.g. `VSSD_FAULT`).
    pub fn start_vssd_with_env(&mut self, extra: &[&str], envs: &[(&str, &str)]) {
        let d = self.dir.path();
        let stderr = std::fs::File::create(d.join("logs").join("vssd.stderr")).unwrap();
        let child = Command::new(bin("vssd"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--run-dir")
            .arg(d.join("run"))
            .arg("--lock-file")
            .arg(d.join("set.lock"))
            .args(extra)
            .envs(envs.iter().copied())
            .env("VSSD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vssd");
        self.vssd = Some(ChildGuard {
            child,
            name: "vssd".into(),
        });
        wait_for(
            Duration::from_secs(20),
            || self.socket().exists(),
            "vssd socket",
        );
    }

    pub fn vssd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join("vssd.stderr"))
            .unwrap_or_default()
    }

    /// Starts the SDK test writer `name` with extra flags; waits for its `ready` line.
    pub fn start_writer(&mut self, name: &str, extra: &[&str]) {
        let mut cmd = Command::new(bin("vss-test-writer"));
        cmd.arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--name")
            .arg(name)
            .arg("--events-log")
            .arg(self.log(name))
            .args(extra);
        self.spawn_writer(name, cmd);
    }

    /// Starts the Python writer (examples/python-writer) `name`; `false` if Python's varlink
    /// package is missing (the caller then fails: CI installs it).
    pub fn start_python_writer(&mut self, name: &str, extra: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/python-writer/vss_writer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--name")
            .arg(name)
            .arg("--events-log")
            .arg(self.log(name))
            .args(extra);
        self.spawn_writer(name, cmd);
    }

    fn spawn_writer(&mut self, name: &str, mut cmd: Command) {
        let stderr =
            std::fs::File::create(self.dir.path().join("logs").join(format!("{name}.stderr")))
                .unwrap();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard {
            child,
            name: name.into(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "writer {name} did not print ready: {}",
                    self.stderr_of(name)
                )
            });
        assert!(line.starts_with("ready "), "writer {name} printed {line}");
        self.writers.push(guard);
    }

    pub fn stderr_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.stderr")))
            .unwrap_or_default()
    }

    pub fn writer(&mut self, name: &str) -> &mut ChildGuard {
        self.writers
            .iter_mut()
            .find(|w| w.name == name)
            .expect("writer")
    }

    /// The events writer `name` logged, in order. A last line without its newline is still
    /// being written (the test writer writes a line in many small writes) and is left out.
    pub fn events(&self, name: &str) -> Vec<(String, serde_json::Value)> {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}"));
                (
                    v["event"].as_str().unwrap_or("").to_owned(),
                    v["params"].clone(),
                )
            })
            .collect()
    }

    pub fn event_names(&self, name: &str) -> Vec<String> {
        self.events(name).into_iter().map(|(e, _)| e).collect()
    }

    /// Connects a requester session.
    pub async fn requester(&self) -> vss_client::BackupComponents {
        vss_client::BackupComponents::connect(self.socket())
            .await
            .expect("connect to vssd")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Writers and vssd first (they may hold files on the volume), then the volume.
        self.writers.clear();
        if let Some(mut v) = self.vssd.take() {
            v.terminate(Duration::from_secs(10));
        }
        let _ = vss_test_support::unmount_all_under(&self.dir.path().join("run"));
        if std::thread::panicking() {
            eprintln!("--- vssd log ---\n{}", self.vssd_log());
        }
    }
}

// ----- helpers for the failure-path tests ---------------------------------------------------

impl Env {
    /// Starts the SDK test writer `name` logging its events to `log` (which other writers may
    /// share) instead of its own log file; waits for its `ready` line.
    pub fn start_writer_with_log(&mut self, name: &str, log: &Path, extra: &[&str]) {
        let mut cmd = Command::new(bin("vss-test-writer"));
        cmd.arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--name")
            .arg(name)
            .arg("--events-log")
            .arg(log)
            .args(extra);
        self.spawn_writer(name, cmd);
    }

    /// The volume as a string, for `add_to_snapshot_set`.
    pub fn volume_str(&self) -> String {
        self.volume()
            .to_str()
            .expect("utf-8 volume path")
            .to_owned()
    }

    /// The pid of writer `name`.
    pub fn writer_pid(&self, name: &str) -> u32 {
        self.writers
            .iter()
            .find(|w| w.name == name)
            .expect("writer")
            .pid()
    }

    /// Waits (polling, up to `t`) until writer `name`'s log contains `event`.
    pub async fn wait_for_event(&self, name: &str, event: &str, t: Duration) {
        wait_until(
            t,
            || self.event_names(name).iter().any(|e| e == event),
            &format!("{name} to log {event}"),
        )
        .await;
    }

    /// Waits (polling, up to `t`) until writer `name`'s last logged event is `event`.
    pub async fn wait_for_last_event(&self, name: &str, event: &str, t: Duration) {
        wait_until(
            t,
            || self.event_names(name).last().map(String::as_str) == Some(event),
            &format!("{name}'s last event to be {event}"),
        )
        .await;
    }

    /// Starts `vss-test-requester` against this vssd with extra flags (`--stop-after snapshot`,
    /// `--persistent`, ...), snapshotting [`Env::volume`].
    pub fn start_requester(&self, extra: &[&str]) -> RequesterChild {
        self.start_requester_on(&self.volume_str(), extra)
    }

    /// [`Env::start_requester`] on another volume.
    pub fn start_requester_on(&self, volume: &str, extra: &[&str]) -> RequesterChild {
        let stderr =
            std::fs::File::create(self.dir.path().join("logs").join("requester.stderr")).unwrap();
        let mut child = Command::new(bin("vss-test-requester"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--volume")
            .arg(volume)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn vss-test-requester");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RequesterChild {
            guard: ChildGuard {
                child,
                name: "vss-test-requester".into(),
            },
            lines: rx,
            seen: Vec::new(),
        }
    }
}

/// A `vss-test-requester` child process and the JSON lines it printed.
pub struct RequesterChild {
    pub guard: ChildGuard,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<serde_json::Value>,
}

impl RequesterChild {
    /// Reads lines until the milestone `step` (returned), within `t`. Panics on an `error` line,
    /// on the end of its output, or on timeout.
    pub fn wait_step(&mut self, step: &str, t: Duration) -> serde_json::Value {
        let deadline = Instant::now() + t;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!(
                    "vss-test-requester: no step '{step}' ({e}); it printed {:?}",
                    self.seen
                ),
            };
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("vss-test-requester printed {line}: {e}"));
            self.seen.push(v.clone());
            match v["step"].as_str() {
                Some(s) if s == step => return v,
                Some("error") => panic!("vss-test-requester failed before '{step}': {v}"),
                _ => {}
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// The next line it prints, within `t`: `Err(true)` when its output ended (it exited),
    /// `Err(false)` on timeout.
    pub fn next_line(&mut self, t: Duration) -> Result<serde_json::Value, bool> {
        match self.lines.recv_timeout(t) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("vss-test-requester printed {line}: {e}"));
                self.seen.push(v.clone());
                Ok(v)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(true),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(false),
        }
    }
}

/// A requester session prepared for DoSnapshotSet: InitializeForBackup, SetBackupState(FULL),
/// GatherWriterMetadata, in component mode every component of every writer whose name is in
/// `include` (all writers when `include` is `None`), StartSnapshotSet, AddToSnapshotSet(volume),
/// PrepareForBackup. Returns the writers' metadata, the set id and the snapshot id.
pub struct Prepared {
    pub writers: Vec<vss_client::WriterMetadata>,
    pub set: uuid::Uuid,
    pub snapshot: uuid::Uuid,
}

pub async fn prepare_backup(
    bc: &mut vss_client::BackupComponents,
    volume: &str,
    select_components: bool,
    include: Option<&[&str]>,
) -> Prepared {
    bc.initialize_for_backup(None)
        .await
        .expect("InitializeForBackup");
    bc.set_backup_state(
        select_components,
        false,
        vss_client::BackupType::Full,
        false,
    )
    .await
    .expect("SetBackupState");
    bc.gather_writer_metadata()
        .await
        .expect("GatherWriterMetadata")
        .await
        .expect("GatherWriterMetadata's operation");
    let writers = bc.get_writer_metadata().await.expect("GetWriterMetadata");
    if select_components {
        for w in &writers {
            if include.is_some_and(|names| !names.contains(&w.writer_name.as_str())) {
                continue;
            }
            for c in &w.components {
                bc.add_component(
                    w.instance_id,
                    w.writer_id,
                    c.component_type,
                    &c.logical_path,
                    &c.name,
                )
                .await
                .expect("AddComponent");
            }
        }
    }
    let set = bc.start_snapshot_set().await.expect("StartSnapshotSet");
    let snapshot = bc
        .add_to_snapshot_set(volume, None)
        .await
        .expect("AddToSnapshotSet");
    bc.prepare_for_backup()
        .await
        .expect("PrepareForBackup")
        .await
        .expect("PrepareForBackup's operation");
    Prepared {
        writers,
        set,
        snapshot,
    }
}

/// GatherWriterStatus, then GetWriterStatus.
pub async fn writer_status(bc: &mut vss_client::BackupComponents) -> Vec<vss_client::WriterStatus> {
    bc.gather_writer_status()
        .await
        .expect("GatherWriterStatus")
        .await
        .expect("GatherWriterStatus's operation");
    bc.get_writer_status().await.expect("GetWriterStatus")
}

/// The status of writer `name` in `all`.
pub fn status_of<'a>(
    all: &'a [vss_client::WriterStatus],
    name: &str,
) -> &'a vss_client::WriterStatus {
    all.iter()
        .find(|s| s.writer_name == name)
        .unwrap_or_else(|| panic!("no status for writer {name}: {all:?}"))
}

/// A `--component` flag for the test writer: `:NAME:selectable:PATH`.
pub fn component(name: &str, path: &Path) -> String {
    format!(":{name}:selectable:{}", path.display())
}

/// The entries of `<top>/.vss` (the btrfs provider's snapshot subvolumes), sorted; empty when
/// the directory does not exist.
pub fn vss_snapshots(top: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(top.join(".vss"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The image provider's clones of the image `backing` (files `<name>.vss-*` beside it).
pub fn clones_next_to(backing: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.vss-", backing.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(backing.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Mount points (from this process's mountinfo) at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// The events in a log that several writers share: `(event, pid)` of every line that parses.
/// The test writer writes a line in many small writes, so lines of events that two writers log
/// at the same time may be garbled (and are skipped); lines logged while no other writer logs
/// (Freeze and Thaw go one wave at a time) are intact.
pub fn shared_log_events(log: &Path) -> Vec<(String, u32)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["event"].as_str()?.to_owned(),
                u32::try_from(v["pid"].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// One raw `vss.Requester` call on a fresh connection: the decoded reply, or the error name and
/// parameters.
pub async fn raw_call(
    socket: &Path,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, (String, serde_json::Value)> {
    let mut conn = vss_protocol::transport::connect(socket)
        .await
        .expect("connect to vssd");
    raw_call_on(&mut conn, method, params).await
}

/// [`raw_call`] on a given connection.
pub async fn raw_call_on(
    conn: &mut vss_protocol::transport::Connection,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, (String, serde_json::Value)> {
    match vss_protocol::transport::call::<_, serde_json::Value>(conn, method, &params)
        .await
        .expect("a reply")
    {
        vss_protocol::Decoded::Ok(v) => Ok(v),
        vss_protocol::Decoded::Error { name, parameters } => Err((name, parameters)),
    }
}

// ----- helpers for the provider and freeze-fault tests -------------------------------------

/// `VSS_CTX_BACKUP`: auto-release, with writers.
pub const CTX_BACKUP: i64 = 0;
/// `VSS_CTX_APP_ROLLBACK`: persistent, with writers.
pub const CTX_APP_ROLLBACK: i64 = 0x9;
/// `VSS_CTX_NAS_ROLLBACK`: persistent, without writers.
pub const CTX_NAS_ROLLBACK: i64 = 0x19;

/// The fixed provider ids (vss-provider's `*_PROVIDER_ID`).
pub const BTRFS_PROVIDER: &str = "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01";
pub const REFLINK_PROVIDER: &str = "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a02";
pub const IMAGE_PROVIDER: &str = "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a03";
pub const EXEC_PROVIDER: &str = "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a04";

impl Env {
    /// A world whose volume is `fs`, a filesystem the caller made (after `require_root`).
    /// Filesystems the test makes besides must be declared before the `Env`, so that vssd and
    /// the writers are stopped before they are unmounted.
    pub fn with_fs(fs: Mounted) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("vss-e2e-")
            .tempdir()
            .expect("tempdir");
        for d in ["writers", "state", "run", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Env {
            dir,
            fs,
            vssd: None,
            writers: Vec::new(),
        }
    }

    /// vssd's state directory (the catalog).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// vssd's run directory (the freeze journal is `<run>/freeze`).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Every complete line of writer `name`'s events log, as JSON (including the FreezeDone and
    /// Resumed lines of `--write-continuously`).
    pub fn raw_events(&self, name: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}")))
            .collect()
    }

    /// Writer `name`'s last line for `event` (e.g. `FreezeDone`), if any.
    pub fn last_raw_event(&self, name: &str, event: &str) -> Option<serde_json::Value> {
        self.raw_events(name)
            .into_iter()
            .rev()
            .find(|v| v["event"] == event)
    }

    /// The `lastSeq` writer `name` logged with its last FreezeDone (panics if none).
    pub fn last_seq_at_freeze(&self, name: &str) -> u64 {
        let line = self
            .last_raw_event(name, "FreezeDone")
            .unwrap_or_else(|| panic!("{name} logged no FreezeDone: {:?}", self.raw_events(name)));
        line["lastSeq"].as_u64().expect("lastSeq")
    }

    /// Waits until vssd (started by this Env) has exited, up to `t`; returns how long it took.
    pub fn wait_vssd_exit(&mut self, t: Duration) -> Duration {
        let started = Instant::now();
        let v = self.vssd.as_mut().expect("vssd");
        loop {
            if let Ok(Some(_)) = v.child.try_wait() {
                return started.elapsed();
            }
            assert!(started.elapsed() < t, "vssd did not exit within {t:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `seq 1\n` … `seq n\n`: what a `--write-continuously` file holds after `n` lines.
pub fn seq_lines(n: u64) -> String {
    (1..=n).map(|i| format!("seq {i}\n")).collect()
}

/// Asserts that `content` is exactly the lines `seq 1` … `seq n`, each complete.
pub fn assert_seq_exact(content: &str, n: u64, what: &str) {
    assert!(n > 0, "{what}: the writer wrote nothing before Freeze");
    if content != seq_lines(n) {
        let tail: Vec<&str> = content.lines().rev().take(3).collect();
        panic!(
            "{what}: expected exactly `seq 1` .. `seq {n}` ({} bytes), found {} bytes ending {:?}{}",
            seq_lines(n).len(),
            content.len(),
            tail,
            if content.ends_with('\n') {
                ""
            } else {
                " (an incomplete last line)"
            }
        );
    }
}

/// The number of lines of a `--write-continuously` file, checking that they are `seq 1` …
/// `seq N` in order and complete (a crash-consistent copy of it must be such a prefix).
pub fn seq_prefix_len(content: &str, what: &str) -> u64 {
    assert!(
        content.is_empty() || content.ends_with('\n'),
        "{what}: incomplete last line"
    );
    let mut n = 0;
    for line in content.lines() {
        n += 1;
        assert_eq!(line, format!("seq {n}"), "{what}: line {n}");
    }
    n
}

/// The N of the last complete `seq N` line of `file` (0 when there is none). The file may be
/// growing.
pub fn last_seq_in(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("seq "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Appends a line to `file` from a child process (`timeout T sh -c 'echo probe >> FILE'`) and
/// returns how long that took, or an error if it did not finish within `t` (the filesystem is
/// still frozen: a process writing to it sleeps until the thaw, so the test thread never
/// writes there itself). A child that is still blocked is reaped by a thread later.
pub fn writable_within(file: &Path, t: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new("timeout")
        .arg(format!("{}", t.as_secs() + 1))
        .args(["sh", "-c", "echo probe >> \"$1\"", "sh"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writability probe");
    loop {
        if let Some(status) = child.try_wait().expect("wait for the probe") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return if status.success() {
                Ok(started.elapsed())
            } else {
                Err(format!(
                    "writing to {} failed ({status}): {err}",
                    file.display()
                ))
            };
        }
        if started.elapsed() >= t {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Err(format!(
                "writing to {} did not finish within {t:?}: the filesystem is still frozen",
                file.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Processes whose command line (arguments joined by spaces) contains every one of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ");
        if !cmdline.is_empty() && needles.iter().all(|n| cmdline.contains(n)) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The catalog's rows as (snapshot id, state), also those Query does not show (PREPARING,
/// COMMITTED), read straight from the SQLite file (read-only; vssd may have it open). Always
/// `Some` (it was `None` when this needed the `sqlite3` tool).
pub fn catalog_rows(state_dir: &Path) -> Option<Vec<(String, String)>> {
    let db = state_dir.join("catalog.sqlite");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening the catalog {}: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn
        .prepare("SELECT snapshot_id, state FROM snapshots ORDER BY snapshot_id")
        .unwrap_or_else(|e| panic!("reading the catalog: {e}"));
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("reading the catalog: {e}"));
    Some(rows)
}

/// A fresh connection to vssd with InitializeForBackup done (for calls the client library does
/// not offer: ExposeSnapshot, UnexposeSnapshot, BreakSnapshotSet, DeleteVolumeSnapshots).
pub async fn raw_session(socket: &Path) -> vss_protocol::transport::Connection {
    let mut conn = vss_protocol::transport::connect(socket)
        .await
        .expect("connect to vssd");
    raw_call_on(
        &mut conn,
        "vss.Requester.InitializeForBackup",
        serde_json::json!({}),
    )
    .await
    .expect("InitializeForBackup");
    conn
}

/// The `code` of a raw `vss.Requester.VssError` reply.
pub fn raw_code(reply: &Result<serde_json::Value, (String, serde_json::Value)>) -> String {
    match reply {
        Ok(v) => panic!("expected a VssError, got {v}"),
        Err((name, params)) => {
            assert_eq!(name, "vss.Requester.VssError", "{params}");
            params["code"].as_str().unwrap_or_default().to_owned()
        }
    }
}

/// A requester session up to DoSnapshotSet: InitializeForBackup, SetContext(`context`), and for
/// contexts with writers SetBackupState (component mode, FULL), GatherWriterMetadata and every
/// component of every writer; then StartSnapshotSet, AddToSnapshotSet for each volume (vssd
/// chooses the provider), and PrepareForBackup where writers take part. Returns the set and
/// the snapshot ids.
pub async fn prepare_set(
    bc: &mut vss_client::BackupComponents,
    context: i64,
    volumes: &[&str],
) -> (uuid::Uuid, Vec<uuid::Uuid>) {
    let with_writers = context & 0x10 == 0;
    bc.initialize_for_backup(None)
        .await
        .expect("InitializeForBackup");
    bc.set_context(context).await.expect("SetContext");
    if with_writers {
        bc.set_backup_state(true, false, vss_client::BackupType::Full, false)
            .await
            .expect("SetBackupState");
        bc.gather_writer_metadata()
            .await
            .expect("GatherWriterMetadata")
            .await
            .expect("GatherWriterMetadata's operation");
        for w in bc.get_writer_metadata().await.expect("GetWriterMetadata") {
            for c in &w.components {
                bc.add_component(
                    w.instance_id,
                    w.writer_id,
                    c.component_type,
                    &c.logical_path,
                    &c.name,
                )
                .await
                .expect("AddComponent");
            }
        }
    }
    let set = bc.start_snapshot_set().await.expect("StartSnapshotSet");
    let mut snapshots = Vec::new();
    for v in volumes {
        snapshots.push(
            bc.add_to_snapshot_set(v, None)
                .await
                .unwrap_or_else(|e| panic!("AddToSnapshotSet({v}): {e}")),
        );
    }
    if with_writers {
        bc.prepare_for_backup()
            .await
            .expect("PrepareForBackup")
            .await
            .expect("PrepareForBackup's operation");
    }
    (set, snapshots)
}

/// What the exec provider's test command is told to do.
#[derive(Debug, Default)]
pub struct ExecBehaviour {
    /// `supported` answers 0 for exactly these mount points.
    pub supported: Vec<PathBuf>,
    /// `create` fails (exit 3) for this volume.
    pub fail_create_on: Option<PathBuf>,
    /// `create` hangs (`sleep` [`EXEC_HANG_SECONDS`]) after logging.
    pub hang_create: bool,
}

/// The odd `sleep` argument of a hanging exec command, to find it among processes.
pub const EXEC_HANG_SECONDS: &str = "600.4242";

/// One run of the exec test command, as it logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCall {
    pub action: String,
    pub volume: String,
    pub snapshot_id: String,
    /// `date +%s%N` when it started.
    pub unix_ns: u64,
    pub locator: String,
    /// For `create`: `yes` if the volume was frozen (a second FIFREEZE got EBUSY), `no` if not.
    pub frozen: String,
}

/// A shell script serving as vssd's `--exec-command`: it logs every run
/// (`ACTION|VOLUME|SNAPSHOT_ID|UNIX_NS|LOCATOR|FROZEN` to a file outside the volumes) and, for
/// `create`, prints `snap-<snapshot id>` as the snapshot's identity. It never writes to the
/// volume: to learn whether the volume is frozen during `create` it asks for a second freeze
/// (`fsfreeze --freeze`), which fails with EBUSY on a frozen filesystem (and is undone at once
/// if it was not frozen, which would be the bug under test).
pub struct ExecScript {
    pub path: PathBuf,
    pub log: PathBuf,
}

impl ExecScript {
    /// Writes the script into `dir`.
    pub fn new(dir: &Path, behaviour: &ExecBehaviour) -> ExecScript {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("exec-provider.sh");
        let log = dir.join("exec-provider.log");
        let quote = |p: &Path| format!("'{}'", p.display());
        let supported = if behaviour.supported.is_empty() {
            "exit 1".to_owned()
        } else {
            let list: Vec<String> = behaviour.supported.iter().map(|p| quote(p)).collect();
            format!(
                "case \"$VSS_VOLUME\" in\n        {}) exit 0 ;;\n    esac\n    exit 1",
                list.join("|")
            )
        };
        let hang = if behaviour.hang_create {
            format!("sleep {EXEC_HANG_SECONDS}\n    ")
        } else {
            String::new()
        };
        let fail = match &behaviour.fail_create_on {
            Some(v) => format!(
                "if [ \"$VSS_VOLUME\" = {} ]; then\n        echo \"test: refusing to snapshot $VSS_VOLUME\" >&2\n        exit 3\n    fi\n    ",
                quote(v)
            ),
            None => String::new(),
        };
        let script = format!(
            r#"#!/bin/sh
# The exec provider's command for vss-tests: logs every run, never writes to the volume.
log={log}
frozen=-
if [ "$VSS_ACTION" = create ]; then
    if out=$(fsfreeze --freeze "$VSS_VOLUME" 2>&1); then
        fsfreeze --unfreeze "$VSS_VOLUME"
        frozen=no
    else
        case "$out" in
            *busy*|*Busy*) frozen=yes ;;
            *) frozen=error ;;
        esac
    fi
fi
echo "$VSS_ACTION|${{VSS_VOLUME:-}}|${{VSS_SNAPSHOT_ID:-}}|$(date +%s%N)|${{VSS_LOCATOR:-}}|$frozen" >> "$log"
case "$VSS_ACTION" in
supported)
    {supported}
    ;;
create)
    {hang}{fail}echo "snap-$VSS_SNAPSHOT_ID"
    exit 0
    ;;
esac
exit 0
"#,
            log = quote(&log),
        );
        std::fs::write(&path, script).expect("write the exec script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the exec script");
        ExecScript { path, log }
    }

    /// Every run logged so far (the `supported` probes too).
    pub fn calls(&self) -> Vec<ExecCall> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let [action, volume, snapshot_id, ns, locator, frozen] = f[..] else {
                    return None;
                };
                Some(ExecCall {
                    action: action.to_owned(),
                    volume: volume.to_owned(),
                    snapshot_id: snapshot_id.to_owned(),
                    unix_ns: ns.parse().unwrap_or(0),
                    locator: locator.to_owned(),
                    frozen: frozen.to_owned(),
                })
            })
            .collect()
    }

    /// The runs of `action`.
    pub fn calls_of(&self, action: &str) -> Vec<ExecCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }
}

//! The end-to-end harness: a btrfs filesystem on a loop device, vssd as a child process, writer
//! processes (the SDK test writer and the Python writer), each test with its own state
//! directory, writers directory, socket and lock. Everything is torn down by Drop guards, also
//! when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use vss_test_support::{Mounted, require_root};

/// A built binary of the workspace (target/debug/NAME, next to the test executable's deps/).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    /// Sends SIGKILL now (simulating a crash) and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `t` for the process to exit.
    pub fn terminate(&mut self, t: Duration) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

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

/// Polls `f` every 20 ms until it is true or `t` passes (then panics naming `what`).
pub fn wait_for(t: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {t:?} waiting for {what}");
}

/// Async version of [`wait_for`].
pub async fn wait_until(t: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {t:?} waiting for {what}");
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

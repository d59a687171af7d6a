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
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --bins` first", p.display());
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
        let dir = tempfile::Builder::new().prefix("vss-e2e-").tempdir().expect("tempdir");
        for d in ["writers", "state", "run", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let fs = Mounted::btrfs(256 << 20).expect("btrfs on a loop device");
        Some(Env { dir, fs, vssd: None, writers: Vec::new() })
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
        let d = self.dir.path();
        let stderr = std::fs::File::create(d.join("logs").join("vssd.stderr")).unwrap();
        let child = Command::new(bin("vssd"))
            .arg("--socket").arg(self.socket())
            .arg("--writers-dir").arg(self.writers_dir())
            .arg("--state-dir").arg(d.join("state"))
            .arg("--run-dir").arg(d.join("run"))
            .arg("--lock-file").arg(d.join("set.lock"))
            .args(extra)
            .env("VSSD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vssd");
        self.vssd = Some(ChildGuard { child, name: "vssd".into() });
        wait_for(Duration::from_secs(20), || self.socket().exists(), "vssd socket");
    }

    pub fn vssd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join("vssd.stderr")).unwrap_or_default()
    }

    /// Starts the SDK test writer `name` with extra flags; waits for its `ready` line.
    pub fn start_writer(&mut self, name: &str, extra: &[&str]) {
        let mut cmd = Command::new(bin("vss-test-writer"));
        cmd.arg("--writers-dir").arg(self.writers_dir()).arg("--name").arg(name).arg("--events-log").arg(self.log(name)).args(extra);
        self.spawn_writer(name, cmd);
    }

    /// Starts the Python writer (examples/python-writer) `name`; `false` if Python's varlink
    /// package is missing (the caller then fails: CI installs it).
    pub fn start_python_writer(&mut self, name: &str, extra: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-writer/vss_writer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--writers-dir").arg(self.writers_dir()).arg("--name").arg(name).arg("--events-log").arg(self.log(name)).args(extra);
        self.spawn_writer(name, cmd);
    }

    fn spawn_writer(&mut self, name: &str, mut cmd: Command) {
        let stderr = std::fs::File::create(self.dir.path().join("logs").join(format!("{name}.stderr"))).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard { child, name: name.into() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            panic!("writer {name} did not print ready: {}", self.stderr_of(name))
        });
        assert!(line.starts_with("ready "), "writer {name} printed {line}");
        self.writers.push(guard);
    }

    pub fn stderr_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.stderr"))).unwrap_or_default()
    }

    pub fn writer(&mut self, name: &str) -> &mut ChildGuard {
        self.writers.iter_mut().find(|w| w.name == name).expect("writer")
    }

    /// The events writer `name` logged, in order.
    pub fn events(&self, name: &str) -> Vec<(String, serde_json::Value)> {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}"));
                (v["event"].as_str().unwrap_or("").to_owned(), v["params"].clone())
            })
            .collect()
    }

    pub fn event_names(&self, name: &str) -> Vec<String> {
        self.events(name).into_iter().map(|(e, _)| e).collect()
    }

    /// Connects a requester session.
    pub async fn requester(&self) -> vss_client::BackupComponents {
        vss_client::BackupComponents::connect(self.socket()).await.expect("connect to vssd")
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

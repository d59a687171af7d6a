//! The harness of the `vss` command-line tests, built on the ideas of the end-to-end harness
//! (crates/vss-tests/tests/common): a btrfs filesystem on a loop device, `vss-test-writer`
//! processes, and vssd as a child process or not at all (then `vss` runs the engine
//! in-process). Each test has its own directories, socket, lock file and run directory, and
//! everything is torn down by Drop guards, also when a test fails.
//!
//! `vss` runs as a real process with `--socket`, `--writers-dir`, `--state-dir`, `--run-dir`
//! and `--lock-file` pointing into the test's directory, killed if it outlives a deadline.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use vss_test_support::proc::{ChildGuard, bin, wait_for};
pub use vss_test_support::{Mounted, require_root};

/// How long one `vss` run may take before the test kills it (5x what the slowest takes).
pub const VSS_TIMEOUT: Duration = Duration::from_secs(30);

/// The `vss` binary under test.
pub fn vss_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vss"))
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Whether the engine is vssd (a child process) or runs inside `vss` (embedded mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// vssd runs; `vss` connects to it.
    Daemon,
    /// Nothing listens on the socket; `vss` runs the engine in-process.
    Embedded,
}

/// One finished `vss` run.
#[derive(Debug)]
pub struct VssRun {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl VssRun {
    /// Standard output parsed as one JSON document (panics otherwise).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "vss did not print one JSON document ({e}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "vss exited {} (expected {code})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// One test's world.
pub struct Env {
    pub mode: Mode,
    pub dir: tempfile::TempDir,
    pub fs: Mounted,
    pub vssd: Option<ChildGuard>,
    pub writers: Vec<ChildGuard>,
}

impl Env {
    /// A fresh btrfs volume (256 MiB) with `data/file` ("hello"), the directories, and vssd
    /// started in [`Mode::Daemon`]. `None` when not root.
    pub fn new(mode: Mode) -> Option<Env> {
        if !require_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vss-cli-")
            .tempdir()
            .expect("tempdir");
        for d in ["writers", "state", "run", "logs", "expose", "out"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let fs = Mounted::btrfs(256 << 20).expect("btrfs on a loop device");
        std::fs::create_dir(fs.path().join("data")).unwrap();
        std::fs::write(fs.path().join("data/file"), "hello").unwrap();
        let mut env = Env {
            mode,
            dir,
            fs,
            vssd: None,
            writers: Vec::new(),
        };
        if mode == Mode::Daemon {
            env.start_vssd();
        }
        Some(env)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn socket(&self) -> PathBuf {
        self.path("vssd.sock")
    }
    pub fn writers_dir(&self) -> PathBuf {
        self.path("writers")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.path("logs").join(format!("{name}.jsonl"))
    }
    /// The volume to snapshot: the btrfs mount point (canonical).
    pub fn volume(&self) -> PathBuf {
        self.fs.path().to_owned()
    }
    pub fn volume_str(&self) -> String {
        self.volume().to_str().expect("utf-8").to_owned()
    }

    /// Starts vssd on this test's directories and waits for its socket.
    pub fn start_vssd(&mut self) {
        let stderr = std::fs::File::create(self.path("logs/vssd.stderr")).unwrap();
        let child = Command::new(bin("vssd"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--run-dir")
            .arg(self.path("run"))
            .arg("--lock-file")
            .arg(self.path("set.lock"))
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
        std::fs::read_to_string(self.path("logs/vssd.stderr")).unwrap_or_default()
    }

    /// Starts `vss-test-writer --name NAME` with a selectable component `comp` covering
    /// `<volume>/data`, plus `extra` flags; waits for its `ready` line.
    pub fn start_writer(&mut self, name: &str, extra: &[&str]) {
        let component = format!(":comp:selectable:{}", self.volume().join("data").display());
        let mut cmd = Command::new(bin("vss-test-writer"));
        cmd.arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--name")
            .arg(name)
            .arg("--events-log")
            .arg(self.log(name))
            .arg("--component")
            .arg(component)
            .args(extra);
        let stderr =
            std::fs::File::create(self.path("logs").join(format!("{name}.stderr"))).unwrap();
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
            .unwrap_or_else(|_| panic!("writer {name} did not print ready"));
        assert!(line.starts_with("ready "), "writer {name} printed {line}");
        self.writers.push(guard);
    }

    /// The events writer `name` logged, in order (complete lines only).
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

    /// The `backupSucceeded` flags of the last BackupComplete writer `name` received.
    pub fn last_backup_succeeded(&self, name: &str) -> Vec<bool> {
        let (_, params) = self
            .events(name)
            .into_iter()
            .rev()
            .find(|(e, _)| e == "BackupComplete")
            .unwrap_or_else(|| {
                panic!("{name} got no BackupComplete: {:?}", self.event_names(name))
            });
        params["components"]
            .as_array()
            .expect("components")
            .iter()
            .map(|c| c["backupSucceeded"].as_bool().expect("backupSucceeded"))
            .collect()
    }

    /// The `vss` command with this test's global options.
    pub fn vss_command(&self) -> Command {
        let mut cmd = Command::new(vss_bin());
        cmd.arg("--socket")
            .arg(self.socket())
            .arg("--writers-dir")
            .arg(self.writers_dir())
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--run-dir")
            .arg(self.path("run"))
            .arg("--lock-file")
            .arg(self.path("set.lock"))
            .env_remove("VSS_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `vss ARGS...` to its end (killed after [`VSS_TIMEOUT`]).
    pub fn vss<S: AsRef<OsStr>>(&self, args: &[S]) -> VssRun {
        let mut cmd = self.vss_command();
        cmd.args(args);
        run_to_end(cmd, VSS_TIMEOUT)
    }

    /// `vss --json ARGS...`, expecting exit code `code`; the parsed document.
    pub fn vss_json<S: AsRef<OsStr>>(&self, args: &[S], code: i32) -> serde_json::Value {
        let mut all: Vec<&OsStr> = vec![OsStr::new("--json")];
        all.extend(args.iter().map(|a| a.as_ref()));
        let r = self.vss(&all);
        r.expect_code(code);
        let v = r.json();
        assert_eq!(v["exitCode"], code, "{v}");
        if code == 0 {
            assert_eq!(
                v["embedded"],
                self.mode == Mode::Embedded,
                "embedded mode as expected: {v}"
            );
        }
        v
    }

    /// The snapshots of every context (`vss --json list shadows`).
    pub fn shadows(&self) -> Vec<serde_json::Value> {
        self.vss_json(&["list", "shadows"], 0)["snapshots"]
            .as_array()
            .expect("snapshots")
            .clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Writers and vssd first (they may hold files on the volume), then mounts under the
        // test directory (exposures, private btrfs mounts), then the volume.
        self.writers.clear();
        if let Some(mut v) = self.vssd.take() {
            v.terminate(Duration::from_secs(10));
        }
        let _ = vss_test_support::unmount_all_under(self.dir.path());
        if std::thread::panicking() {
            eprintln!("--- vssd log ---\n{}", self.vssd_log());
        }
    }
}

/// Runs `cmd` with piped output to its end, killing it after `t`.
pub fn run_to_end(cmd: Command, t: Duration) -> VssRun {
    let f = vss_test_support::proc::run_with_timeout(cmd, t);
    VssRun {
        code: f.code,
        stdout: f.stdout,
        stderr: f.stderr,
    }
}

/// The entries of `<top>/.vss` (the btrfs provider's snapshot subvolumes), sorted.
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

/// The lines of `/proc/PID/mountinfo` (`self` when `None`) whose mount point is `under` or
/// below it, in order.
pub fn mounts_under(pid: Option<u32>, under: &Path) -> Vec<String> {
    let file = match pid {
        Some(p) => format!("/proc/{p}/mountinfo"),
        None => "/proc/self/mountinfo".to_owned(),
    };
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    mountinfo_under(&text, under)
}

/// The lines of a mountinfo text whose mount point is `under` or below it.
pub fn mountinfo_under(text: &str, under: &Path) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| Path::new(m).starts_with(under))
        })
        .map(str::to_owned)
        .collect()
}

/// The `restic` program when it is installed (scripts/deps.sh installs it from Debian).
pub fn restic() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("restic"))
        .find(|p| p.is_file())
}

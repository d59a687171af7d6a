//! The end-to-end harness of the SQLite writer, adapted from crates/vss-tests/tests/common: a
//! btrfs filesystem on a loop device, vssd and vss-writer-sqlite as child processes, and a
//! load process (python3's sqlite3 module) committing continuously. Everything is torn down by
//! Drop guards, also when a test fails.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use vss_test_support::proc::{ChildGuard, bin, wait_for};
pub use vss_test_support::{Mounted, require_root};

/// One test's world.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub writers: Vec<ChildGuard>,
    pub load: Option<ChildGuard>,
    pub vssd: Option<ChildGuard>,
    /// Declared last: dropped after every process that may hold files on it.
    pub fs: Mounted,
}

impl Env {
    /// A fresh btrfs volume (256 MiB) and directories. `None` when not root.
    pub fn new() -> Option<Env> {
        if !require_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vss-sqlite-e2e-")
            .tempdir()
            .expect("tempdir");
        for d in ["writers", "state", "run", "logs", "copy"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let fs = Mounted::btrfs(256 << 20).expect("btrfs on a loop device");
        Some(Env {
            dir,
            writers: Vec::new(),
            load: None,
            vssd: None,
            fs,
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("vssd.sock")
    }
    pub fn writers_dir(&self) -> PathBuf {
        self.dir.path().join("writers")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    /// The volume to snapshot: the btrfs mount point.
    pub fn volume(&self) -> PathBuf {
        self.fs.path().to_owned()
    }
    pub fn volume_str(&self) -> String {
        self.volume().to_str().expect("utf-8 volume").to_owned()
    }

    /// Starts vssd and waits for its socket.
    pub fn start_vssd(&mut self) {
        let d = self.dir.path();
        let stderr = std::fs::File::create(self.logs().join("vssd.stderr")).unwrap();
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
        std::fs::read_to_string(self.logs().join("vssd.stderr")).unwrap_or_default()
    }

    /// Starts `vss-writer-sqlite` with `args` (logged as `name`) and waits for its `ready` line.
    pub fn start_sqlite_writer(&mut self, name: &str, args: &[&str]) {
        let stderr = std::fs::File::create(self.logs().join(format!("{name}.stderr"))).unwrap();
        let mut child = Command::new(bin("vss-writer-sqlite"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn vss-writer-sqlite");
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
            .unwrap_or_else(|_| panic!("{name} did not print ready: {}", self.stderr_of(name)));
        assert!(line.starts_with("ready "), "{name} printed {line}");
        self.writers.push(guard);
    }

    pub fn stderr_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs().join(format!("{name}.stderr"))).unwrap_or_default()
    }

    /// Starts the load: a python3 process committing `INSERT INTO t(seq) VALUES (n)` for
    /// n = 1, 2, ... each in its own transaction, logging `n unix_ns` (fsynced) to
    /// [`Env::load_log`] after each COMMIT returned. Waits until it has committed `min` rows.
    pub fn start_load(&mut self, db: &Path, min: u64) {
        let log = self.load_log();
        let stderr = std::fs::File::create(self.logs().join("load.stderr")).unwrap();
        let child = Command::new("python3")
            .arg("-c")
            .arg(LOAD_SCRIPT)
            .arg(db)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn python3");
        self.load = Some(ChildGuard {
            child,
            name: "load".into(),
        });
        wait_for(
            Duration::from_secs(30),
            || self.load_entries().len() as u64 >= min,
            "the load to commit",
        );
    }

    pub fn load_log(&self) -> PathBuf {
        self.logs().join("load.log")
    }

    /// `(n, unix_ns)` of every commit the load logged (complete lines only).
    pub fn load_entries(&self) -> Vec<(u64, u128)> {
        let text = std::fs::read_to_string(self.load_log()).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .filter_map(|l| {
                let (n, t) = l.split_once(' ')?;
                Some((n.parse().ok()?, t.parse().ok()?))
            })
            .collect()
    }

    /// The load's stderr (a traceback if it failed).
    pub fn load_stderr(&self) -> String {
        std::fs::read_to_string(self.logs().join("load.stderr")).unwrap_or_default()
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
        if std::thread::panicking() {
            eprintln!("--- vssd log ---\n{}", self.vssd_log());
            for w in &self.writers {
                eprintln!("--- {} ---\n{}", w.name, self.stderr_of(&w.name));
            }
            eprintln!("--- load ---\n{}", self.load_stderr());
        }
        // Processes first (they hold files on the volume), then the volume.
        self.load = None;
        for mut w in self.writers.drain(..) {
            w.terminate(Duration::from_secs(10));
        }
        if let Some(mut v) = self.vssd.take() {
            v.terminate(Duration::from_secs(10));
        }
        let _ = vss_test_support::unmount_all_under(&self.dir.path().join("run"));
    }
}

/// The load process (python3 -c SCRIPT DB LOG).
const LOAD_SCRIPT: &str = r#"
import os, sqlite3, sys, time
db, log = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db, timeout=120, isolation_level=None)
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    n += 1
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t(seq) VALUES (?)", (n,))
    conn.execute("COMMIT")
    os.write(fd, b"%d %d\n" % (n, time.time_ns()))
    os.fsync(fd)
    time.sleep(0.002)
"#;

/// Creates `db` with table `t(seq)` in `journal_mode` (WAL or DELETE), from this process, which
/// closes it before anything else starts.
pub fn create_db(db: &Path, journal_mode: &str) {
    let conn = rusqlite::Connection::open(db).expect("create the database");
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |r| {
            r.get(0)
        })
        .expect("journal_mode");
    assert_eq!(mode.to_lowercase(), journal_mode.to_lowercase());
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE)")
        .expect("create table");
}

/// Copies `db` and whichever of its `-wal` and `-journal` exist from `from_dir` (a read-only
/// snapshot, where a WAL database cannot be opened) to `to_dir`; returns the copy's path.
pub fn copy_db_out(from_dir: &Path, name: &str, to_dir: &Path) -> PathBuf {
    for suffix in ["", "-wal", "-journal"] {
        let src = from_dir.join(format!("{name}{suffix}"));
        if src.exists() {
            std::fs::copy(&src, to_dir.join(format!("{name}{suffix}")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
    to_dir.join(name)
}

/// Checks a copied database: `PRAGMA integrity_check` is ok and the seqs are exactly 1..=k;
/// returns k.
pub fn check_prefix(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).expect("open the copy");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "integrity_check of {}", db.display());
    let mut stmt = conn.prepare("SELECT seq FROM t ORDER BY seq").unwrap();
    let seqs: Vec<u64> = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect();
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "the seqs are not a prefix 1..=k");
    }
    seqs.len() as u64
}

/// The `unix_ns=` of the first stderr line of `log` containing `needle`.
pub fn logged_unix_ns(log: &str, needle: &str) -> Option<u128> {
    log.lines().filter(|l| l.contains(needle)).find_map(|l| {
        let rest = &l[l.find("unix_ns=")? + "unix_ns=".len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

//! The end-to-end harness (the parts of crates/vss-tests/tests/common/mod.rs this crate needs):
//! a btrfs filesystem on a loop device, vssd as a child process, the script writer, each test
//! with its own directories. Everything is torn down by Drop guards, also when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use vss_test_support::proc::{ChildGuard, bin, wait_for, wait_until};
pub use vss_test_support::{Mounted, require_root};

/// One test's world.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub fs: Mounted,
    pub vssd: Option<ChildGuard>,
    pub writers: Vec<ChildGuard>,
    /// Pids of background processes the test's scripts left (killed on drop).
    pub pid_files: Vec<PathBuf>,
}

impl Env {
    /// A fresh btrfs volume (256 MiB) and directories. `None` when not root.
    pub fn new() -> Option<Env> {
        if !require_root() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vss-script-e2e-")
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
            pid_files: Vec::new(),
        })
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
    pub fn volume(&self) -> PathBuf {
        self.fs.path().to_owned()
    }
    pub fn volume_str(&self) -> String {
        self.volume().to_str().expect("utf-8 volume").to_owned()
    }

    /// Starts vssd with extra arguments and waits for its socket.
    pub fn start_vssd(&mut self, extra: &[&str]) {
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

    pub fn writer_log(&self) -> String {
        std::fs::read_to_string(self.path("logs/writer.stderr")).unwrap_or_default()
    }

    /// Starts `vss-writer-script` with `args` and waits for the socket `<name>.sock`.
    pub fn start_script_writer(&mut self, name: &str, args: &[&str]) {
        let stderr = std::fs::File::create(self.path("logs/writer.stderr")).unwrap();
        let child = Command::new(bin("vss-writer-script"))
            .arg("--writers-dir")
            .arg(self.writers_dir())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vss-writer-script");
        self.writers.push(ChildGuard {
            child,
            name: "writer".into(),
        });
        let sock = self.writers_dir().join(format!("{name}.sock"));
        wait_for(
            Duration::from_secs(20),
            || sock.exists(),
            "the script writer's socket",
        );
    }

    /// Connects a requester session. vssd's socket file appears at bind(), a moment before
    /// listen(), and `start_vssd` only waits for the file: on a loaded machine the first
    /// connection can be refused, so a refused connection is retried for a while.
    pub async fn requester(&self) -> vss_client::BackupComponents {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match vss_client::BackupComponents::connect(self.socket()).await {
                Ok(bc) => return bc,
                Err(vss_client::ClientError::Connect { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("connect to vssd: {e}"),
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.writers.clear();
        if let Some(mut v) = self.vssd.take() {
            v.terminate(Duration::from_secs(10));
        }
        for f in &self.pid_files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for pid in text
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        let _ = vss_test_support::unmount_all_under(&self.dir.path().join("run"));
        if std::thread::panicking() {
            eprintln!("--- vssd log ---\n{}", self.vssd_log());
            eprintln!("--- writer log ---\n{}", self.writer_log());
        }
    }
}

/// A session prepared for DoSnapshotSet: InitializeForBackup, SetBackupState(FULL),
/// GatherWriterMetadata, in component mode every top-level selectable component of every
/// writer (VShadow-style), StartSnapshotSet, AddToSnapshotSet(volume), PrepareForBackup.
pub async fn prepare_backup(
    bc: &mut vss_client::BackupComponents,
    volume: &str,
    select_components: bool,
) -> Vec<vss_client::WriterMetadata> {
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
            for c in w
                .components
                .iter()
                .filter(|c| c.selectable && c.logical_path.is_empty())
            {
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
    bc.start_snapshot_set().await.expect("StartSnapshotSet");
    bc.add_to_snapshot_set(volume, None)
        .await
        .expect("AddToSnapshotSet");
    bc.prepare_for_backup()
        .await
        .expect("PrepareForBackup")
        .await
        .expect("PrepareForBackup's operation");
    writers
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

/// Writes an executable file (0755, or `mode`).
pub fn write_script(dir: &Path, name: &str, body: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A hook script shaped like qemu-guest-agent's fsfreeze-hook.d samples: `case "$1" in
/// freeze) ... ;; thaw) ... ;; esac`, appending "<script> <arg> <time>" to `log`.
pub fn qemu_style_script(log: &Path, freeze_extra: &str) -> String {
    format!(
        r#"#!/bin/sh
LOG={log}
NAME=$(basename "$0")
case "$1" in
    freeze)
        echo "$NAME freeze $(date +%s.%N)" >> "$LOG"
        {freeze_extra}
        ;;
    thaw)
        echo "$NAME thaw $(date +%s.%N)" >> "$LOG"
        ;;
    *)
        echo "$NAME unexpected:$1 $(date +%s.%N)" >> "$LOG"
        ;;
esac
"#,
        log = log.display()
    )
}

/// A vss hook script: appends "<script> <arg> <time>" and the VSS_* variables to `log`.
pub fn vss_style_script(log: &Path) -> String {
    format!(
        r#"#!/bin/sh
echo "$(basename "$0") $1 $(date +%s.%N) set=$VSS_SNAPSHOT_SET_ID type=$VSS_BACKUP_TYPE vols=$(echo "$VSS_VOLUMES" | tr '\n' ,) home=${{HOME:-unset}}" >> {log}
"#,
        log = log.display()
    )
}

/// The log's lines as (script, arg, time).
pub fn log_lines(log: &Path) -> Vec<(String, String, f64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

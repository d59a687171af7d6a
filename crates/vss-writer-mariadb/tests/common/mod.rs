//! The end-to-end harness for the MariaDB writer, copied and trimmed from
//! crates/vss-writer-postgres/tests/common/mod.rs: btrfs on loop devices, vssd and the writer
//! as child processes, MariaDB servers run as `mysql`, all torn down by Drop guards, also when
//! a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use vss_test_support::proc::{ChildGuard, bin, wait_for};
pub use vss_test_support::{Mounted, require_root};

/// MariaDB's server program.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";

/// Whether the tests can run here: root, and MariaDB installed.
pub fn can_run() -> bool {
    if !require_root() {
        return false;
    }
    if !Path::new(MARIADBD).exists() {
        eprintln!("skipping: mariadbd is not installed (apt-get install mariadb-server)");
        return false;
    }
    true
}

/// Runs `cmd`, panicking with its output unless it exits 0; returns its stdout.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `chown -R mysql:mysql path`.
pub fn chown_mysql(path: &Path) {
    run_ok(
        Command::new("chown").arg("-R").arg("mysql:mysql").arg(path),
        "chown",
    );
}

/// A fresh directory `NAME.tmp` in `dir`, owned by mysql, for a server's temporary files.
fn private_tmp(dir: &Path, name: &str) -> PathBuf {
    let t = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(&t).unwrap();
    chown_mysql(&t);
    t
}

/// A MariaDB server on a data directory, listening only on a Unix socket. Dropping it kills it
/// (SIGKILL: a crash, like `pg_ctl stop -m immediate`).
#[derive(Debug)]
pub struct MariaServer {
    pub data: PathBuf,
    pub sock: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl MariaServer {
    /// `mariadb-install-db` into `data` (created and owned by mysql), with a temporary
    /// directory of its own in `tmp` (bootstraps running in parallel must not share /tmp).
    pub fn install(data: &Path, tmp: &Path) {
        std::fs::create_dir_all(data).unwrap();
        chown_mysql(data);
        let tmp = private_tmp(tmp, "install");
        run_ok(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .args([
                    "--user=mysql",
                    "--skip-test-db",
                    "--auth-root-authentication-method=socket",
                ]),
            "mariadb-install-db",
        );
    }

    /// Starts a server on `data` with its socket in `dir` (named NAME.sock), its log and pid
    /// file there too, and waits until it answers.
    pub fn start(data: &Path, dir: &Path, name: &str, extra: &[&str]) -> MariaServer {
        let sock = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.err"));
        let _ = std::fs::remove_file(&log);
        let child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!(
                "--pid-file={}",
                dir.join(format!("{name}.pid")).display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--tmpdir={}", private_tmp(dir, name).display()))
            .args([
                "--port=0",
                "--skip-networking",
                "--user=mysql",
                "--innodb-buffer-pool-size=64M",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd");
        let mut server = MariaServer {
            data: data.to_owned(),
            sock,
            log,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.sock.exists() && server.try_sql("SELECT 1").is_ok() {
                break;
            }
            let exited = server
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let text = server.log_text();
                server.stop();
                panic!("the server on {} did not start:\n{text}", data.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `mariadb -S sock -N -B -e sql` as root; the output or the error.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg("-S")
            .arg(&self.sock)
            .args(["-u", "root", "-N", "-B", "-e"])
            .arg(sql)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`MariaServer::try_sql`], panicking on an error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The server's error log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server now.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One test's world. Drop order: the load, the writer, vssd, the servers, the directories,
/// the volumes.
pub struct World {
    pub load: Option<ChildGuard>,
    pub writer: Option<ChildGuard>,
    pub vssd: Option<ChildGuard>,
    pub servers: Vec<MariaServer>,
    pub dir: tempfile::TempDir,
    pub volumes: Vec<Mounted>,
}

impl World {
    /// Fresh directories and `n` btrfs volumes of `size` bytes each. `None` when the tests
    /// cannot run here.
    pub fn new(n: usize, size: u64) -> Option<World> {
        if !can_run() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("vss-mariadb-")
            .tempdir()
            .expect("tempdir");
        for d in ["writers", "state", "run", "logs", "sock"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // The servers write their sockets and logs here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        chown_mysql(&dir.path().join("sock"));
        chown_mysql(&dir.path().join("logs"));
        let volumes = (0..n)
            .map(|_| Mounted::btrfs(size).expect("btrfs on a loop device"))
            .collect();
        Some(World {
            load: None,
            writer: None,
            vssd: None,
            servers: Vec::new(),
            dir,
            volumes,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("vssd.sock")
    }

    /// A btrfs subvolume `name` on volume `i`, owned by mysql.
    pub fn subvolume(&self, i: usize, name: &str) -> PathBuf {
        let p = self.volumes[i].create_subvolume(name);
        chown_mysql(&p);
        p
    }

    /// Starts vssd and waits for its socket.
    pub fn start_vssd(&mut self) {
        self.start_vssd_with_env(&[]);
    }

    /// [`World::start_vssd`] with extra environment variables (e.g. `VSSD_FAULT`).
    pub fn start_vssd_with_env(&mut self, envs: &[(&str, &str)]) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(self.socket());
        let stderr = std::fs::File::create(d.join("logs").join("vssd.stderr")).unwrap();
        let child = Command::new(bin("vssd"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--writers-dir")
            .arg(d.join("writers"))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--run-dir")
            .arg(d.join("run"))
            .arg("--lock-file")
            .arg(d.join("set.lock"))
            .env("VSSD_LOG", "debug")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vssd");
        self.vssd = Some(ChildGuard {
            child,
            name: "vssd".into(),
        });
        let sock = self.socket();
        wait_for(Duration::from_secs(20), || sock.exists(), "vssd socket");
    }

    /// Starts `vss-writer-mariadb --name NAME --socket-path SOCK` and waits for its socket.
    pub fn start_writer(&mut self, name: &str, server_sock: &Path, extra: &[&str]) {
        let d = self.dir.path();
        let sock = d.join("writers").join(format!("{name}.sock"));
        // A writer killed before left its socket behind.
        let _ = std::fs::remove_file(&sock);
        let stderr = std::fs::File::create(self.writer_log_path()).unwrap();
        let child = Command::new(bin("vss-writer-mariadb"))
            .arg("--writers-dir")
            .arg(d.join("writers"))
            .args(["--name", name, "--connect-wait", "20", "--socket-path"])
            .arg(server_sock)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vss-writer-mariadb");
        let mut guard = ChildGuard {
            child,
            name: name.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            assert!(guard.running(), "the writer exited:\n{}", self.writer_log());
            assert!(Instant::now() < deadline, "no writer socket after 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.writer = Some(guard);
    }

    fn writer_log_path(&self) -> PathBuf {
        self.path("logs").join("writer.stderr")
    }

    pub fn writer_log(&self) -> String {
        std::fs::read_to_string(self.writer_log_path()).unwrap_or_default()
    }

    pub fn vssd_log(&self) -> String {
        std::fs::read_to_string(self.path("logs").join("vssd.stderr")).unwrap_or_default()
    }

    /// Connects a requester session.
    pub async fn requester(&self) -> vss_client::BackupComponents {
        vss_client::BackupComponents::connect(self.socket())
            .await
            .expect("connect to vssd")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.load.take();
        self.writer.take();
        if let Some(mut v) = self.vssd.take() {
            v.terminate(Duration::from_secs(10));
        }
        let _ = vss_test_support::unmount_all_under(&self.path("run"));
        if std::thread::panicking() {
            eprintln!("--- vssd log (tail) ---\n{}", tail(&self.vssd_log(), 60));
            eprintln!("--- writer log ---\n{}", self.writer_log());
            for s in &self.servers {
                eprintln!("--- {} ---\n{}", s.log.display(), tail(&s.log_text(), 40));
            }
        }
        for s in &mut self.servers {
            s.stop();
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// InitializeForBackup, component mode (full), GatherWriterMetadata, AddComponent for every
/// component of the writers named in `include`, StartSnapshotSet, AddToSnapshotSet for each of
/// `volumes`, PrepareForBackup. Returns the writers' metadata and the snapshot ids.
pub async fn prepare_backup(
    bc: &mut vss_client::BackupComponents,
    volumes: &[&Path],
    include: &[&str],
) -> (Vec<vss_client::WriterMetadata>, Vec<uuid::Uuid>) {
    bc.initialize_for_backup(None)
        .await
        .expect("InitializeForBackup");
    bc.set_backup_state(true, false, vss_client::BackupType::Full, false)
        .await
        .expect("SetBackupState");
    bc.gather_writer_metadata()
        .await
        .expect("GatherWriterMetadata")
        .await
        .expect("GatherWriterMetadata's operation");
    let writers = bc.get_writer_metadata().await.expect("GetWriterMetadata");
    for w in &writers {
        if !include.contains(&w.writer_name.as_str()) {
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
    bc.start_snapshot_set().await.expect("StartSnapshotSet");
    let mut snaps = Vec::new();
    for v in volumes {
        snaps.push(
            bc.add_to_snapshot_set(v.to_str().unwrap(), None)
                .await
                .expect("AddToSnapshotSet"),
        );
    }
    bc.prepare_for_backup()
        .await
        .expect("PrepareForBackup")
        .await
        .expect("PrepareForBackup's operation");
    (writers, snaps)
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

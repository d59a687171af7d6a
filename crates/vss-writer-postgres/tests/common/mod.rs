//! The end-to-end harness for the PostgreSQL writer, copied and trimmed from
//! crates/vss-tests/tests/common/mod.rs: btrfs on loop devices, vssd and the writer as child
//! processes, PostgreSQL servers run as `postgres`, all torn down by Drop guards, also when a
//! test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use vss_test_support::proc::{ChildGuard, bin, wait_for};
pub use vss_test_support::{Mounted, require_root};

/// PostgreSQL's programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL program.
pub fn pg(name: &str) -> PathBuf {
    Path::new(PG_BIN).join(name)
}

/// Whether the tests can run here: root, and PostgreSQL 15 installed.
pub fn can_run() -> bool {
    if !require_root() {
        return false;
    }
    if !pg("initdb").exists() {
        eprintln!("skipping: PostgreSQL 15 is not installed in {PG_BIN}");
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

/// A command run as the `postgres` user.
pub fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

/// `chown -R postgres:postgres path`.
pub fn chown_postgres(path: &Path) {
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path),
        "chown",
    );
}

/// A PostgreSQL server on a data directory, listening only on a Unix socket in `sock`.
/// Dropping it stops it with `pg_ctl stop -m immediate`.
#[derive(Debug)]
pub struct PgServer {
    pub data: PathBuf,
    pub port: u16,
    pub sock: PathBuf,
    pub log: PathBuf,
    running: bool,
}

impl PgServer {
    /// `initdb` (trust, user postgres) into `data`, with extra arguments (e.g. `--waldir`).
    pub fn initdb(data: &Path, extra: &[&str]) {
        run_ok(
            as_postgres(&pg("initdb"))
                .arg("-D")
                .arg(data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .args(extra),
            "initdb",
        );
    }

    /// Starts a server on `data` (port `port`, socket directory `sock`, log `log`).
    pub fn start(data: &Path, port: u16, sock: &Path, log: &Path, settings: &[&str]) -> PgServer {
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses='' -c max_wal_size=256MB",
            sock.display()
        );
        for s in settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let mut server = PgServer {
            data: data.to_owned(),
            port,
            sock: sock.to_owned(),
            log: log.to_owned(),
            running: true,
        };
        let out = as_postgres(&pg("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log)
            .arg("-o")
            .arg(&opts)
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl start");
        if !out.status.success() {
            server.running = false;
            panic!(
                "the server on {} did not start ({}):\n{}\n--- log ---\n{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        server
    }

    /// The libpq connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sock.display(),
            self.port
        )
    }

    /// A client program with -h, -p, -U set.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(pg(program));
        c.arg("-h")
            .arg(&self.sock)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres"]);
        c
    }

    /// `psql -X -At -c sql` on database postgres; the trimmed output.
    pub fn psql(&self, sql: &str) -> String {
        run_ok(
            self.client("psql")
                .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c"])
                .arg(sql),
            &format!("psql -c {sql}"),
        )
        .trim()
        .to_owned()
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server now (immediate).
    pub fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            let _ = as_postgres(&pg("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PgServer {
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
    pub servers: Vec<PgServer>,
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
            .prefix("vss-pg-")
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
        chown_postgres(&dir.path().join("sock"));
        chown_postgres(&dir.path().join("logs"));
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

    /// A server socket directory of its own, owned by postgres.
    pub fn sock_dir(&self, name: &str) -> PathBuf {
        let d = self.path("sock").join(name);
        std::fs::create_dir_all(&d).unwrap();
        chown_postgres(&d);
        d
    }

    /// A log file path for a server (in a directory postgres may write).
    pub fn server_log(&self, name: &str) -> PathBuf {
        self.path("logs").join(format!("{name}.log"))
    }

    /// A btrfs subvolume `name` on volume `i`, owned by postgres.
    pub fn subvolume(&self, i: usize, name: &str) -> PathBuf {
        let p = self.volumes[i].create_subvolume(name);
        chown_postgres(&p);
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

    /// Starts `vss-writer-postgres --name NAME --connection CONNINFO` and waits for its socket.
    pub fn start_writer(&mut self, name: &str, conninfo: &str) {
        self.start_writer_with(name, conninfo, &[]);
    }

    /// [`World::start_writer`] with extra arguments (e.g. `--restore-command`).
    pub fn start_writer_with(&mut self, name: &str, conninfo: &str, extra: &[&str]) {
        let d = self.dir.path();
        let sock = d.join("writers").join(format!("{name}.sock"));
        // A writer killed before left its socket behind.
        let _ = std::fs::remove_file(&sock);
        let stderr = std::fs::File::create(self.writer_log_path()).unwrap();
        let child = Command::new(bin("vss-writer-postgres"))
            .arg("--writers-dir")
            .arg(d.join("writers"))
            .args([
                "--name",
                name,
                "--connection",
                conninfo,
                "--connect-wait",
                "20",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vss-writer-postgres");
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

    /// Runs `vss --json ARGS...` against this world's vssd (killed after `timeout`); returns
    /// its exit code and the JSON document it printed.
    pub fn vss(&self, args: &[&str], timeout: Duration) -> (i32, serde_json::Value) {
        let d = self.dir.path();
        let mut cmd = Command::new(bin("vss"));
        cmd.arg("--socket")
            .arg(self.socket())
            .arg("--writers-dir")
            .arg(d.join("writers"))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--run-dir")
            .arg(d.join("run"))
            .arg("--lock-file")
            .arg(d.join("set.lock"))
            .arg("--json")
            .args(args);
        let vss_test_support::proc::Finished {
            code,
            stdout,
            stderr,
        } = vss_test_support::proc::run_with_timeout(cmd, timeout);
        let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "vss {args:?} printed no JSON document ({e}):\n{stdout}\n--- stderr ---\n{stderr}"
            )
        });
        eprintln!(
            "--- vss {} (exit {code}) stderr ---\n{stderr}",
            args.first().unwrap_or(&"")
        );
        (code, doc)
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

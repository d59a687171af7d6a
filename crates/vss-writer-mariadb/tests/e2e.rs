//! End-to-end: real MariaDB servers on btrfs loop volumes, vssd and the writer as child
//! processes, a requester through vss-client. Root only, and skipped without `mariadbd`
//! (package mariadb-server); build the binaries first (`cargo build --workspace --bins`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mysql::prelude::Queryable;

const WRITER: &str = "vss-writer-mariadb";

/// A thread inserting seq = 1, 2, 3, ... each in its own autocommit transaction, logging each
/// seq (with the time the INSERT returned) after the INSERT returned, in memory and to a file
/// outside the volumes. Stopped and joined when dropped.
struct Load {
    stop: Arc<AtomicBool>,
    committed: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Load {
    fn start(sock: &Path, log: PathBuf) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Mutex::new(Vec::new()));
        let opts = mysql::OptsBuilder::new()
            .socket(Some(sock.display().to_string()))
            .user(Some("root"));
        let mut conn = mysql::Conn::new(opts).expect("the load connects");
        conn.query_drop("CREATE DATABASE IF NOT EXISTS wl; CREATE TABLE wl.t (seq BIGINT PRIMARY KEY, pad VARCHAR(200)) ENGINE=InnoDB")
            .expect("create the table");
        let (s, c) = (stop.clone(), committed.clone());
        let thread = std::thread::spawn(move || {
            let mut file = std::fs::File::create(log).map_err(|e| e.to_string())?;
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                seq += 1;
                conn.exec_drop("INSERT INTO wl.t VALUES (?, REPEAT('x', 200))", (seq,))
                    .map_err(|e| format!("INSERT {seq}: {e}"))?;
                let now = Instant::now();
                writeln!(file, "{seq}").map_err(|e| e.to_string())?;
                c.lock().unwrap().push((seq, now));
            }
            Ok(())
        });
        Load {
            stop,
            committed,
            thread: Some(thread),
        }
    }

    /// The last seq whose INSERT returned before `t`.
    fn last_before(&self, t: Instant) -> u64 {
        self.committed
            .lock()
            .unwrap()
            .iter()
            .take_while(|(_, at)| *at < t)
            .last()
            .map_or(0, |(s, _)| *s)
    }

    fn count(&self) -> usize {
        self.committed.lock().unwrap().len()
    }

    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn stop(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err("the load panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Deletes every `#sql*` file or directory under `dir` (temporary tables of statements in
/// flight, meaningless in a copy).
fn remove_sql_temporaries(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let is_dir = entry.file_type().unwrap().is_dir();
        if entry.file_name().to_string_lossy().starts_with("#sql") {
            eprintln!("removing {}", path.display());
            if is_dir {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        } else if is_dir {
            remove_sql_temporaries(&path);
        }
    }
}

/// A server in subvolume `db` of volume 0 (data directory `db/data`), started.
fn server(w: &mut World) -> (PathBuf, usize) {
    let sub = w.subvolume(0, "db");
    let data = sub.join("data");
    MariaServer::install(&data, &w.path("sock"));
    let server = MariaServer::start(&data, &w.path("sock"), "main", &[]);
    w.servers.push(server);
    (sub, w.servers.len() - 1)
}

/// A backup under a write load: the snapshot's data directory, copied out, starts (InnoDB crash
/// recovery), and holds every row whose INSERT returned before DoSnapshotSet started, as a
/// prefix 1..=N of the sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_restores_every_committed_row() {
    let t0 = Instant::now();
    let Some(mut w) = World::new(1, 2 << 30) else {
        return;
    };
    let (sub, main) = server(&mut w);
    let mut load = Load::start(&w.servers[main].sock, w.path("logs").join("load.seq"));
    std::thread::sleep(Duration::from_secs(2));
    w.start_vssd();
    let sock = w.servers[main].sock.clone();
    w.start_writer("db", &sock, &[]);

    let mut bc = w.requester().await;
    let (writers, snaps) = prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
    let wm = writers.iter().find(|m| m.writer_name == WRITER).unwrap();
    assert_eq!(wm.components.len(), 1);
    assert_eq!(wm.components[0].name, "server");
    let started = Instant::now();
    bc.do_snapshot_set()
        .await
        .expect("DoSnapshotSet")
        .await
        .expect("DoSnapshotSet's operation");
    let took_snapshot = started.elapsed();
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(
        (st.state_name.as_str(), st.failure),
        ("VSS_WS_WAITING_FOR_BACKUP_COMPLETE", 0),
        "{st:?}"
    );
    assert!(
        load.running(),
        "the load was still writing after the snapshot"
    );
    let must_have = load.last_before(started);
    assert!(must_have > 0, "the load committed rows before the backup");
    std::thread::sleep(Duration::from_millis(500));
    let load_rows = load.count();
    load.stop().expect("the load ran without errors");
    let log = w.writer_log();
    assert!(
        log.contains("frozen: BACKUP STAGE BLOCK_COMMIT") && log.contains("thawed"),
        "{log}"
    );
    let bcd = bc.save_as_xml().await.expect("SaveAsXml");
    assert!(
        bcd.contains("BLOCK_COMMIT"),
        "the BCD records the method: {bcd}"
    );
    let props = bc
        .get_snapshot_properties(snaps[0])
        .await
        .expect("snapshot properties");
    let snap = PathBuf::from(&props.snapshot_path);
    let took = t0.elapsed();

    // Restore: copy the data directory out, delete #sql* files, start a second server.
    let restored = w.volumes[0].path().join("restored");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(snap.join("data"))
            .arg(&restored),
        "cp -a",
    );
    remove_sql_temporaries(&restored);
    chown_mysql(&restored);
    let rserver = MariaServer::start(&restored, &w.path("sock"), "restored", &[]);
    w.servers.push(rserver);
    let r = w.servers.last().unwrap();
    let out = r.sql("SELECT COUNT(*), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM wl.t");
    let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let (count, min, max) = (v[0], v[1], v[2]);
    assert!(
        count == max && (count == 0 || min == 1),
        "the copy holds a prefix 1..=N of the sequence: count {count}, min {min}, max {max}"
    );
    assert!(
        max >= must_have,
        "every row committed before DoSnapshotSet started is in the copy: max {max} < {must_have}"
    );
    let check = r.sql("CHECK TABLE wl.t");
    assert!(check.contains("OK"), "CHECK TABLE: {check}");
    bc.backup_complete().await.unwrap().await.unwrap();
    for line in w
        .writer_log()
        .lines()
        .filter(|l| l.contains("prepared") || l.contains("frozen") || l.contains("thawed"))
    {
        eprintln!("writer: {line}");
    }
    eprintln!(
        "mariadb: DoSnapshotSet took {took_snapshot:?}; backup done at {took:?}, restore checked at {:?}; \
         {max} rows in the copy, {must_have} committed before DoSnapshotSet, {load_rows} in all",
        t0.elapsed()
    );
}

/// A set that does not hold the server's volume: the writer fails PrepareForSnapshot with
/// INCONSISTENTSNAPSHOT. And the binary log on another volume, with both volumes in the set:
/// the same failure (the directories cannot be captured at one instant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_misses_or_splits_the_server_fails_inconsistent_snapshot() {
    let Some(mut w) = World::new(2, 1 << 30) else {
        return;
    };
    let sub = w.subvolume(0, "db");
    let other = w.subvolume(0, "other");
    let binlog = w.volumes[1].path().join("binlog");
    std::fs::create_dir(&binlog).unwrap();
    chown_mysql(&binlog);
    let data = sub.join("data");
    MariaServer::install(&data, &w.path("sock"));
    let log_bin = format!("--log-bin={}/mariadb-bin", binlog.display());
    let server = MariaServer::start(&data, &w.path("sock"), "main", &[&log_bin, "--server-id=1"]);
    w.servers.push(server);
    w.start_vssd();
    let sock = w.servers[0].sock.clone();
    w.start_writer("db", &sock, &[]);

    for (what, vols) in [
        ("only another volume", vec![other.as_path()]),
        (
            "the binlog on a second volume",
            vec![sub.as_path(), w.volumes[1].path()],
        ),
    ] {
        let mut bc = w.requester().await;
        let (writers, _) = prepare_backup(&mut bc, &vols, &[WRITER]).await;
        let wm = writers.iter().find(|m| m.writer_name == WRITER).unwrap();
        let files: Vec<&str> = wm.components[0]
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert!(
            files.contains(&binlog.to_str().unwrap()),
            "Identify names the binlog directory: {files:?}"
        );
        bc.do_snapshot_set().await.unwrap().await.unwrap();
        let status = writer_status(&mut bc).await;
        let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
        assert_eq!(
            (st.state_name.as_str(), st.failure_name.as_str()),
            (
                "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
                "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT"
            ),
            "{what}: {st:?}"
        );
        bc.backup_complete().await.unwrap().await.unwrap();
    }
}

/// The coordinator dies while the server is frozen (after the commit, before Thaw): the
/// writer's runtime aborts, which ends the backup stage on the held connection, so the load's
/// commits resume; the next backup, with a new vssd, succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_lock_is_released_when_the_coordinator_dies() {
    let Some(mut w) = World::new(1, 1 << 30) else {
        return;
    };
    let (sub, main) = server(&mut w);
    let mut load = Load::start(&w.servers[main].sock, w.path("logs").join("load.seq"));
    w.start_vssd_with_env(&[("VSSD_FAULT", "after-commit")]);
    let sock = w.servers[main].sock.clone();
    w.start_writer("db", &sock, &[]);
    {
        let mut bc = w.requester().await;
        prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
        let _ = bc.do_snapshot_set().await.map(|op| async { op.await });
        let vssd = w.vssd.as_mut().unwrap();
        wait_for(
            Duration::from_secs(20),
            || !vssd.running(),
            "vssd to die after the commit, before Thaw",
        );
    }
    wait_for(
        Duration::from_secs(20),
        || w.writer_log().contains("releasing the server (abort)"),
        "the writer to release the server",
    );
    let n = load.count();
    wait_for(
        Duration::from_secs(10),
        || load.count() > n + 10,
        "the load's commits to resume",
    );
    assert!(load.running(), "the load kept running");

    w.vssd.take();
    w.start_vssd();
    let mut bc = w.requester().await;
    prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(
        (st.state_name.as_str(), st.failure),
        ("VSS_WS_WAITING_FOR_BACKUP_COMPLETE", 0),
        "{st:?}"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    load.stop().expect("the load ran without errors");
}

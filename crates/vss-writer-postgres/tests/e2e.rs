//! End-to-end: real PostgreSQL 15 servers on btrfs loop volumes, vssd and the writer as child
//! processes, a requester through vss-client. Root only (skipped otherwise); build the binaries
//! first (`cargo build --workspace --bins`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WRITER: &str = "vss-writer-postgres";

/// pgbench's invariant: every balance change is in the history.
const INVARIANT: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)";

/// A cluster in subvolume `pg` of volume 0 (data directory `pg/data`), started, with pgbench
/// tables at scale 2.
fn cluster(w: &mut World, port: u16) -> (PathBuf, usize) {
    let sub = w.subvolume(0, "pg");
    let data = sub.join("data");
    PgServer::initdb(&data, &[]);
    let sock = w.sock_dir("main");
    let log = w.server_log("main");
    let server = PgServer::start(&data, port, &sock, &log, &[]);
    run_ok(
        server
            .client("pgbench")
            .args(["-i", "-q", "-s", "2", "postgres"]),
        "pgbench -i",
    );
    w.servers.push(server);
    (sub, w.servers.len() - 1)
}

/// `pgbench -c 2 -T 30` in the background.
fn start_load(w: &mut World, server: usize) {
    let log = std::fs::File::create(w.path("logs").join("pgbench.out")).unwrap();
    let child = w.servers[server]
        .client("pgbench")
        .args(["-c", "2", "-T", "30", "postgres"])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench");
    w.load = Some(ChildGuard {
        child,
        name: "pgbench".into(),
    });
}

/// Copies `src` (a data directory in a snapshot) to `dst` with `cp -a`, removes
/// postmaster.pid, starts a server on it and checks it: it starts, pg_amcheck finds nothing,
/// pgbench's invariant holds. Returns the server's index and the history rows.
fn restore_and_check(w: &mut World, src: &Path, dst: &Path, port: u16) -> (usize, u64) {
    run_ok(Command::new("cp").arg("-a").arg(src).arg(dst), "cp -a");
    let _ = std::fs::remove_file(dst.join("postmaster.pid"));
    let sock = w.sock_dir("restored");
    let log = w.server_log("restored");
    let server = PgServer::start(dst, port, &sock, &log, &[]);
    w.servers.push(server);
    let idx = w.servers.len() - 1;
    let s = &w.servers[idx];
    run_ok(
        s.client("pg_amcheck").args(["--all", "--install-missing"]),
        "pg_amcheck --all",
    );
    assert_eq!(s.psql(INVARIANT), "t", "pgbench's invariant");
    let history: u64 = s
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    (idx, history)
}

/// Atomic mode: the whole cluster in one btrfs subvolume, backed up under pgbench; the
/// snapshot's copy starts with crash recovery, is clean and consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_mode_backup_under_pgbench_restores() {
    let t0 = Instant::now();
    let Some(mut w) = World::new(1, 2 << 30) else {
        return;
    };
    let (sub, main) = cluster(&mut w, 5433);
    start_load(&mut w, main);
    std::thread::sleep(Duration::from_secs(2));
    w.start_vssd();
    let conninfo = w.servers[main].conninfo();
    w.start_writer("pg", &conninfo);

    let mut bc = w.requester().await;
    let (writers, snaps) = prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
    let wm = writers.iter().find(|m| m.writer_name == WRITER).unwrap();
    assert_eq!(wm.components.len(), 1);
    assert_eq!(wm.components[0].name, "cluster");
    let history_before: u64 = w.servers[main]
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    bc.do_snapshot_set()
        .await
        .expect("DoSnapshotSet")
        .await
        .expect("DoSnapshotSet's operation");
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(
        (st.state_name.as_str(), st.failure),
        ("VSS_WS_WAITING_FOR_BACKUP_COMPLETE", 0),
        "{st:?}"
    );
    assert!(
        w.load.as_mut().unwrap().running(),
        "pgbench was still writing when the snapshot was taken"
    );
    let bcd = bc.save_as_xml().await.expect("SaveAsXml");
    assert!(bcd.contains("atomic"), "the BCD records the mode: {bcd}");
    let props = bc
        .get_snapshot_properties(snaps[0])
        .await
        .expect("snapshot properties");
    let snap = PathBuf::from(&props.snapshot_path);
    let took = t0.elapsed();

    let restored = w.volumes[0].path().join("restored");
    let (idx, history) = restore_and_check(&mut w, &snap.join("data"), &restored, 5434);
    let log = w.servers[idx].log_text();
    assert!(
        log.contains("database system was not properly shut down; automatic recovery in progress"),
        "the restore is crash recovery:\n{log}"
    );
    assert!(
        history > history_before,
        "the snapshot holds transactions committed during the backup ({history} > {history_before})"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    eprintln!(
        "atomic mode: backup done at {took:?}, restore checked at {:?}; {history} pgbench transactions in the copy",
        t0.elapsed()
    );
}

/// The set does not hold the cluster's volume: the writer fails PrepareForSnapshot with
/// INCONSISTENTSNAPSHOT (vssd's own span check says the same), and a tablespace created on
/// another volume after the writer started (so Identify did not name it) is caught by the
/// writer itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_that_misses_the_cluster_fails_inconsistent_snapshot() {
    let Some(mut w) = World::new(1, 1 << 30) else {
        return;
    };
    let (sub, main) = cluster(&mut w, 5435);
    let other = w.subvolume(0, "other");
    w.start_vssd();
    let conninfo = w.servers[main].conninfo();
    w.start_writer("pg", &conninfo);

    // 1. Only another volume in the set.
    let mut bc = w.requester().await;
    prepare_backup(&mut bc, &[&other], &[WRITER]).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(st.state_name, "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT", "{st:?}");
    assert_eq!(
        st.failure_name, "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
        "{st:?}"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    drop(bc);

    // 2. A tablespace on a volume outside the set, created after Identify was answered.
    let ts = w.subvolume(0, "ts");
    w.servers[main].psql(&format!(
        "CREATE TABLESPACE extra LOCATION '{}'",
        ts.display()
    ));
    w.servers[main]
        .psql("CREATE TABLE t_extra (x int) TABLESPACE extra; INSERT INTO t_extra VALUES (1)");
    let mut bc = w.requester().await;
    prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(
        (st.state_name.as_str(), st.failure_name.as_str()),
        (
            "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
            "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT"
        ),
        "{st:?}"
    );
    let msg = st.failure_message.clone().unwrap_or_default();
    assert!(
        msg.contains(&ts.display().to_string()),
        "the writer names the tablespace: {msg}"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
}

/// The `cluster` component's backup metadata in the BCD (SaveAsXml), as JSON.
fn bcd_metadata(xml: &str) -> serde_json::Value {
    let bcd = vss_model::bcd::BackupComponents::from_xml(xml).expect("the BCD parses");
    let meta = bcd
        .writers
        .iter()
        .flat_map(|w| w.components.iter())
        .find(|c| c.name == "cluster")
        .and_then(|c| c.backup_metadata.clone())
        .unwrap_or_else(|| panic!("no backup metadata for the cluster component: {xml}"));
    serde_json::from_str(&meta).expect("the backup metadata is JSON")
}

/// Archive mode: pg_wal on a second volume (initdb --waldir), WAL archived to a directory.
/// The backup under pgbench holds the data directory's volume only; the restore uses the
/// backup_label from the BCD, recovery.signal, restore_command and recovery_target =
/// 'immediate'. Before that, the same cluster without archive_mode fails PrepareForBackup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_mode_backup_with_wal_on_a_second_volume_restores() {
    let t0 = Instant::now();
    let Some(mut w) = World::new(2, 1 << 30) else {
        return;
    };
    let sub = w.subvolume(0, "pg");
    let data = sub.join("data");
    let wal = w.volumes[1].path().join("wal");
    let archive = w.volumes[1].path().join("archive");
    for d in [&wal, &archive] {
        std::fs::create_dir(d).unwrap();
        chown_postgres(d);
    }
    PgServer::initdb(&data, &["--waldir", wal.to_str().unwrap()]);
    let sock = w.sock_dir("main");
    let log = w.server_log("main");

    // 1. archive_mode off: PrepareForBackup fails, non-retryable.
    let server = PgServer::start(&data, 5436, &sock, &log, &[]);
    w.servers.push(server);
    w.start_vssd();
    let conninfo = w.servers[0].conninfo();
    w.start_writer("pg", &conninfo);
    {
        let mut bc = w.requester().await;
        prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
        let status = writer_status(&mut bc).await;
        let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
        assert_eq!(
            (st.state_name.as_str(), st.failure_name.as_str()),
            (
                "VSS_WS_FAILED_AT_PREPARE_BACKUP",
                "VSS_E_WRITERERROR_NONRETRYABLE"
            ),
            "{st:?}"
        );
        assert!(
            st.failure_message
                .as_deref()
                .unwrap_or_default()
                .contains("archive_mode"),
            "{st:?}"
        );
        let _ = bc.abort_backup().await;
    }
    if let Some(mut wr) = w.writer.take() {
        wr.kill();
    }
    w.servers[0].stop();

    // 2. archive_mode on.
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        format!(
            "archive_mode = on\narchive_command = 'test ! -f {a}/%f && cp %p {a}/%f'\n",
            a = archive.display()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(conf);
    w.servers.clear();
    let server = PgServer::start(&data, 5436, &sock, &log, &[]);
    run_ok(
        server
            .client("pgbench")
            .args(["-i", "-q", "-s", "2", "postgres"]),
        "pgbench -i",
    );
    w.servers.push(server);
    start_load(&mut w, 0);
    std::thread::sleep(Duration::from_secs(2));
    w.start_writer("pg", &conninfo);

    let mut bc = w.requester().await;
    let (_, snaps) = prepare_backup(&mut bc, &[&sub], &[WRITER]).await;
    let history_before: u64 = w.servers[0]
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    bc.do_snapshot_set()
        .await
        .expect("DoSnapshotSet")
        .await
        .expect("DoSnapshotSet's operation");
    let status = writer_status(&mut bc).await;
    let st = status.iter().find(|s| s.writer_name == WRITER).unwrap();
    assert_eq!(
        (st.state_name.as_str(), st.failure),
        ("VSS_WS_WAITING_FOR_BACKUP_COMPLETE", 0),
        "{st:?}"
    );
    assert!(
        w.load.as_mut().unwrap().running(),
        "pgbench was still writing when the backup ended"
    );
    let meta = bcd_metadata(&bc.save_as_xml().await.expect("SaveAsXml"));
    assert_eq!(meta["mode"], "archive", "{meta}");
    let label = meta["labelFile"].as_str().unwrap().to_owned();
    assert!(label.starts_with("START WAL LOCATION:"), "{meta}");
    assert!(!meta["stopLsn"].as_str().unwrap().is_empty(), "{meta}");
    let spcmap = meta["tablespaceMap"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let props = bc
        .get_snapshot_properties(snaps[0])
        .await
        .expect("snapshot properties");
    let snap = PathBuf::from(&props.snapshot_path);
    let took = t0.elapsed();

    // Restore: the data directory from the snapshot, WAL from the archive.
    let restored = w.volumes[0].path().join("restored");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(snap.join("data"))
            .arg(&restored),
        "cp -a",
    );
    let _ = std::fs::remove_file(restored.join("postmaster.pid"));
    std::fs::remove_file(restored.join("pg_wal")).expect("pg_wal is a symlink to the live WAL");
    std::fs::create_dir(restored.join("pg_wal")).unwrap();
    std::fs::write(restored.join("backup_label"), &label).unwrap();
    if !spcmap.is_empty() {
        std::fs::write(restored.join("tablespace_map"), &spcmap).unwrap();
    }
    std::fs::write(restored.join("recovery.signal"), "").unwrap();
    let mut auto = std::fs::OpenOptions::new()
        .append(true)
        .open(restored.join("postgresql.auto.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut auto,
        format!(
            "restore_command = 'cp {}/%f %p'\nrecovery_target = 'immediate'\n\
             recovery_target_action = 'promote'\narchive_mode = off\n",
            archive.display()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(auto);
    chown_postgres(&restored);
    std::fs::set_permissions(
        restored.join("pg_wal"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let rsock = w.sock_dir("restored");
    let rlog = w.server_log("restored");
    let server = PgServer::start(&restored, 5437, &rsock, &rlog, &[]);
    w.servers.push(server);
    let s = w.servers.last().unwrap();
    wait_for(
        Duration::from_secs(30),
        || s.psql("SELECT pg_is_in_recovery()") == "f",
        "the restored server to finish recovery",
    );
    let rlog_text = s.log_text();
    assert!(
        rlog_text.contains("consistent recovery state reached")
            && rlog_text.contains("recovery stopping after reaching consistency"),
        "backup recovery from the label:\n{rlog_text}"
    );
    run_ok(
        s.client("pg_amcheck").args(["--all", "--install-missing"]),
        "pg_amcheck --all",
    );
    assert_eq!(s.psql(INVARIANT), "t", "pgbench's invariant");
    let history: u64 = s
        .psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(
        history > history_before,
        "the restore holds transactions committed during the backup ({history} > {history_before})"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    eprintln!(
        "archive mode: backup done at {took:?}, restore checked at {:?}; {history} pgbench transactions in the copy",
        t0.elapsed()
    );
}

/// Archive mode, coordinator death while frozen: the writer's runtime aborts it, which ends the
/// backup on the held connection (pg_backup_stop without waiting); the next backup, with a new
/// vssd, starts a fresh one and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_mode_backup_is_ended_when_the_coordinator_dies() {
    let Some(mut w) = World::new(2, 1 << 30) else {
        return;
    };
    let sub = w.subvolume(0, "pg");
    let data = sub.join("data");
    let wal = w.volumes[1].path().join("wal");
    let archive = w.volumes[1].path().join("archive");
    for d in [&wal, &archive] {
        std::fs::create_dir(d).unwrap();
        chown_postgres(d);
    }
    PgServer::initdb(&data, &["--waldir", wal.to_str().unwrap()]);
    let sock = w.sock_dir("main");
    let log = w.server_log("main");
    let command = format!("archive_command='cp %p {}/%f'", archive.display());
    let server = PgServer::start(&data, 5438, &sock, &log, &["archive_mode=on", &command]);
    w.servers.push(server);
    w.start_vssd_with_env(&[("VSSD_FAULT", "after-commit")]);
    let conninfo = w.servers[0].conninfo();
    w.start_writer("pg", &conninfo);

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
        || w.writer_log().contains("ending the backup (abort)"),
        "the writer to end the backup",
    );
    assert!(
        !w.servers[0]
            .log_text()
            .contains("aborting backup due to backend exiting"),
        "the writer stopped the backup itself:\n{}",
        w.servers[0].log_text()
    );

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
    let meta = bcd_metadata(&bc.save_as_xml().await.unwrap());
    assert_eq!(meta["mode"], "archive", "{meta}");
    bc.backup_complete().await.unwrap().await.unwrap();
}

//! Backup and restore of a PostgreSQL 15 cluster under pgbench with the command line:
//! `vss backup --save-bcd` copies the snapshot's data directory, `vss restore --mapping` copies
//! it to a new place, and the writer's PreRestore/PostRestore make it recoverable: the server
//! started there recovers, pg_amcheck finds nothing and pgbench's invariant holds. vssd and the
//! writer run as child processes on btrfs loop volumes. Root only (skipped otherwise); build
//! the binaries first (`cargo build --workspace --bins`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const WRITER: &str = "vss-writer-postgres";

/// How long one `vss` run may take: a backup under load (CHECKPOINT, pg_backup_stop waiting
/// for the archiver, copying ~60 MB) takes a few seconds here.
const VSS_TIMEOUT: Duration = Duration::from_secs(120);

/// pgbench's invariant: every balance change is in the history.
const INVARIANT: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) \
     AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)";

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

fn history(s: &PgServer) -> u64 {
    s.psql("SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap()
}

/// The writer's final status in a `vss --json` document.
fn writer_status(doc: &serde_json::Value) -> (String, String) {
    let w = doc["writers"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["writerName"] == WRITER))
        .unwrap_or_else(|| panic!("no {WRITER} status: {doc}"));
    (
        w["stateName"].as_str().unwrap_or_default().to_owned(),
        w["failureName"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `vss backup --save-bcd REPO/pg.bcd VOLUME -- sh -c 'cp -a "$VSS_SNAPSHOT_1/data" REPO/data'`
/// while pgbench runs; checks that it succeeded under load. Returns the BCD and the copy.
fn backup(w: &mut World, volume: &Path) -> (PathBuf, PathBuf, Duration) {
    let repo = w.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let bcd = repo.join("pg.bcd");
    let copy = repo.join("data");
    let t = Instant::now();
    let (code, doc) = w.vss(
        &[
            "backup",
            "--save-bcd",
            bcd.to_str().unwrap(),
            volume.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!("cp -a \"$VSS_SNAPSHOT_1/data\" {}", copy.display()),
        ],
        VSS_TIMEOUT,
    );
    let took = t.elapsed();
    assert_eq!(code, 0, "vss backup: {doc}");
    assert_eq!(
        writer_status(&doc),
        ("VSS_WS_STABLE".to_owned(), "S_OK".to_owned())
    );
    assert_eq!(doc["components"][0]["name"], "cluster", "{doc}");
    assert!(
        w.load.as_mut().unwrap().running(),
        "pgbench was still writing when the backup ended"
    );
    (bcd, copy, took)
}

/// `vss restore --bcd BCD --mapping DATA=NEW -- cp -a COPY NEW`; checks that it succeeded.
fn restore_to(w: &World, bcd: &Path, data: &Path, copy: &Path, new: &Path) -> Duration {
    let t = Instant::now();
    let (code, doc) = w.vss(
        &[
            "restore",
            "--bcd",
            bcd.to_str().unwrap(),
            "--mapping",
            &format!("{}={}", data.display(), new.display()),
            "--",
            "cp",
            "-a",
            copy.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
        VSS_TIMEOUT,
    );
    let took = t.elapsed();
    assert_eq!(code, 0, "vss restore: {doc}");
    assert_eq!(doc["fileRestoreStatus"], "VSS_RS_ALL", "{doc}");
    assert_eq!(
        writer_status(&doc),
        ("VSS_WS_STABLE".to_owned(), "S_OK".to_owned())
    );
    assert_eq!(
        doc["components"][0]["alternateLocations"][0]["destination"],
        new.to_str().unwrap(),
        "{doc}"
    );
    took
}

/// Starts a server on the restored directory and checks it: pg_amcheck finds nothing,
/// pgbench's invariant holds, and it holds more history than before the backup.
fn check_restored(w: &mut World, new: &Path, port: u16, history_before: u64) -> usize {
    let sock = w.sock_dir("restored");
    let log = w.server_log("restored");
    let server = PgServer::start(new, port, &sock, &log, &[]);
    w.servers.push(server);
    let s = w.servers.last().unwrap();
    wait_for(
        Duration::from_secs(30),
        || s.psql("SELECT pg_is_in_recovery()") == "f",
        "the restored server to finish recovery",
    );
    run_ok(
        s.client("pg_amcheck").args(["--all", "--install-missing"]),
        "pg_amcheck --all",
    );
    assert_eq!(s.psql(INVARIANT), "t", "pgbench's invariant");
    let h = history(s);
    assert!(
        h > history_before,
        "the restore holds transactions committed during the backup ({h} > {history_before})"
    );
    w.servers.len() - 1
}

/// Archive mode (pg_wal on a second volume, WAL archived): the backup's BCD holds the label
/// file; PreRestore refuses a restore over the running cluster; a restore to a new place gets
/// backup_label, recovery.signal, an empty pg_wal and the writer's restore_command, and the
/// server recovers to the backup's consistent point.
#[test]
fn archive_mode_backup_and_restore_to_a_new_place_with_the_cli() {
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
    let data = std::fs::canonicalize(&data).unwrap();
    let command = format!(
        "archive_command='test ! -f {a}/%f && cp %p {a}/%f'",
        a = archive.display()
    );
    let server = PgServer::start(
        &data,
        5441,
        &w.sock_dir("main"),
        &w.server_log("main"),
        &["archive_mode=on", &command],
    );
    run_ok(
        server
            .client("pgbench")
            .args(["-i", "-q", "-s", "2", "postgres"]),
        "pgbench -i",
    );
    w.servers.push(server);
    start_load(&mut w, 0);
    std::thread::sleep(Duration::from_secs(2));
    w.start_vssd();
    let conninfo = w.servers[0].conninfo();
    let restore_command = format!("cp {}/%f %p", archive.display());
    w.start_writer_with("pg", &conninfo, &["--restore-command", &restore_command]);

    let history_before = history(&w.servers[0]);
    let (bcd, copy, backup_took) = backup(&mut w, &sub);
    let xml = std::fs::read_to_string(&bcd).unwrap();
    assert!(
        xml.contains("START WAL LOCATION"),
        "the saved BCD holds the label file: {xml}"
    );

    // Over the running cluster: PreRestore refuses, the COMMAND never runs.
    let marker = w.path("repo/ran");
    let (code, doc) = w.vss(
        &[
            "restore",
            "--bcd",
            bcd.to_str().unwrap(),
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        VSS_TIMEOUT,
    );
    assert_eq!(code, 4, "{doc}");
    assert!(!marker.exists(), "the restore command did not run");
    assert_eq!(
        writer_status(&doc),
        (
            "VSS_WS_FAILED_AT_PRE_RESTORE".to_owned(),
            "VSS_E_WRITERERROR_NONRETRYABLE".to_owned()
        )
    );
    let msg = doc["writers"][0]["failureMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("would overwrite"), "{doc}");

    // To a new place.
    let new = w.volumes[0].path().join("restored");
    let restore_took = restore_to(&w, &bcd, &data, &copy, &new);
    let label = std::fs::read_to_string(new.join("backup_label")).unwrap();
    assert!(label.starts_with("START WAL LOCATION:"), "{label}");
    assert!(new.join("recovery.signal").exists());
    assert!(!new.join("postmaster.pid").exists());
    let pg_wal = std::fs::symlink_metadata(new.join("pg_wal")).unwrap();
    assert!(
        pg_wal.is_dir(),
        "pg_wal is a directory of its own, not the original's WAL volume"
    );
    let auto = std::fs::read_to_string(new.join("postgresql.auto.conf")).unwrap();
    for want in [
        format!("restore_command = '{restore_command}'"),
        "recovery_target = 'immediate'".to_owned(),
        "archive_mode = off".to_owned(),
    ] {
        assert!(auto.lines().any(|l| l == want), "{want} not in\n{auto}");
    }
    assert!(
        w.writer_log().contains("restore ready"),
        "{}",
        w.writer_log()
    );

    let idx = check_restored(&mut w, &new, 5442, history_before);
    let log = w.servers[idx].log_text();
    assert!(
        log.contains("starting backup recovery")
            && log.contains("from archive")
            && log.contains("consistent recovery state reached")
            && log.contains("recovery stopping after reaching consistency"),
        "backup recovery from the label, WAL from the archive, to the consistent point:\n{log}"
    );
    eprintln!(
        "archive mode: vss backup {backup_took:?}, vss restore {restore_took:?}, all checked at {:?}",
        t0.elapsed()
    );
}

/// Atomic mode (the whole cluster in one subvolume): the restore to a new place is the
/// snapshot's files with crash recovery; PostRestore only removes the stale postmaster.pid and
/// keeps the copy from archiving.
#[test]
fn atomic_mode_backup_and_restore_to_a_new_place_with_the_cli() {
    let t0 = Instant::now();
    let Some(mut w) = World::new(1, 2 << 30) else {
        return;
    };
    let sub = w.subvolume(0, "pg");
    let data = sub.join("data");
    PgServer::initdb(&data, &[]);
    let data = std::fs::canonicalize(&data).unwrap();
    // Archiving in the configuration file, which the copy inherits.
    let archive = w.volumes[0].path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    chown_postgres(&archive);
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        format!(
            "archive_mode = on\narchive_command = 'cp %p {}/%f'\n",
            archive.display()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(conf);
    let server = PgServer::start(&data, 5443, &w.sock_dir("main"), &w.server_log("main"), &[]);
    run_ok(
        server
            .client("pgbench")
            .args(["-i", "-q", "-s", "2", "postgres"]),
        "pgbench -i",
    );
    w.servers.push(server);
    start_load(&mut w, 0);
    std::thread::sleep(Duration::from_secs(2));
    w.start_vssd();
    let conninfo = w.servers[0].conninfo();
    w.start_writer("pg", &conninfo);

    let history_before = history(&w.servers[0]);
    let (bcd, copy, backup_took) = backup(&mut w, &sub);
    assert!(
        std::fs::read_to_string(&bcd).unwrap().contains("atomic"),
        "the saved BCD records the mode"
    );
    let new = w.volumes[0].path().join("restored");
    let restore_took = restore_to(&w, &bcd, &data, &copy, &new);
    assert!(!new.join("backup_label").exists(), "crash recovery only");
    assert!(!new.join("postmaster.pid").exists());

    let idx = check_restored(&mut w, &new, 5444, history_before);
    let log = w.servers[idx].log_text();
    assert!(
        log.contains("database system was not properly shut down; automatic recovery in progress"),
        "the restore is crash recovery:\n{log}"
    );
    // The original archives; the copy does not (into the original's archive).
    assert_eq!(w.servers[0].psql("SHOW archive_mode"), "on");
    assert_eq!(w.servers[idx].psql("SHOW archive_mode"), "off");
    eprintln!(
        "atomic mode: vss backup {backup_took:?}, vss restore {restore_took:?}, all checked at {:?}",
        t0.elapsed()
    );
}

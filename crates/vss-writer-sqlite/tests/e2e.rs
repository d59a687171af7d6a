//! End-to-end: vssd, vss-writer-sqlite and a process committing continuously to a SQLite
//! database on a btrfs loop volume; a component-mode backup through vss-client; the snapshot's
//! database copied out and checked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use vss_client::BackupType;

/// A full component-mode backup of the volume with every component of every writer; returns
/// the snapshot's path (the snapshot is released when the session ends).
async fn backup(env: &Env) -> (vss_client::BackupComponents, PathBuf) {
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let writers = bc.get_writer_metadata().await.unwrap();
    assert_eq!(writers.len(), 1, "{writers:?}");
    let w = &writers[0];
    assert_eq!(w.writer_name, "vss-writer-sqlite");
    assert_eq!(w.components.len(), 1, "{:?}", w.components);
    assert_eq!(w.components[0].name, "app.db");
    for c in &w.components {
        bc.add_component(
            w.instance_id,
            w.writer_id,
            c.component_type,
            &c.logical_path,
            &c.name,
        )
        .await
        .unwrap();
    }
    bc.start_snapshot_set().await.unwrap();
    let snap = bc
        .add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    assert!(
        status.iter().all(|s| s.state == 5 && s.failure == 0),
        "the writer succeeded: {status:?}"
    );
    let props = bc.get_snapshot_properties(snap).await.unwrap();
    (bc, PathBuf::from(props.snapshot_path))
}

/// The whole check for one journal mode.
async fn backup_under_load(journal_mode: &str) {
    let Some(mut env) = Env::new() else { return };
    let data = env.volume().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("app.db");
    create_db(&db, journal_mode);
    env.start_vssd();
    let writers_dir = env.writers_dir();
    env.start_sqlite_writer(
        "sqlite",
        &[
            "--database",
            db.to_str().unwrap(),
            "--name",
            "app",
            "--writers-dir",
            writers_dir.to_str().unwrap(),
        ],
    );
    assert!(writers_dir.join("app.sock").exists());
    env.start_load(&db, 50);

    let started = Instant::now();
    let (mut bc, snap) = backup(&env).await;
    eprintln!("backup ({journal_mode}) took {:?}", started.elapsed());

    // The writer's Freeze answer and its Thaw, as it logged them.
    let log = env.stderr_of("sqlite");
    let frozen = logged_unix_ns(&log, "frozen: write locks held").expect("a Freeze line");
    let thawed = logged_unix_ns(&log, "thawed: write locks released").expect("a Thaw line");
    assert!(thawed > frozen);
    eprintln!(
        "write lock held from Freeze to Thaw for {:?}",
        Duration::from_nanos((thawed - frozen) as u64)
    );

    // The snapshot's database, copied out (a WAL database cannot be opened read-only in
    // place): integrity ok, seqs 1..=k, and k covers every commit logged before Freeze's
    // answer.
    let copy = copy_db_out(&snap.join("data"), "app.db", &env.dir.path().join("copy"));
    let k = check_prefix(&copy);
    let entries = env.load_entries();
    let before: Vec<u64> = entries
        .iter()
        .filter(|(_, t)| *t < frozen)
        .map(|(n, _)| *n)
        .collect();
    let max_before = before.iter().copied().max().expect("commits before Freeze");
    assert!(
        k >= max_before,
        "the snapshot holds seqs 1..={k}, but {max_before} was committed before Freeze"
    );
    // Commits are blocked from Freeze to Thaw: none returned in between beyond the snapshot's.
    let during: Vec<u64> = entries
        .iter()
        .filter(|(n, t)| *t > frozen && *t < thawed && *n > k)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        during.len() <= 1,
        "commits returned while the writer held the lock: {during:?}"
    );
    let stall = entries
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .max()
        .unwrap_or(0);
    eprintln!(
        "snapshot holds 1..={k}; last commit logged before Freeze: {max_before}; the load's longest stall {:?}",
        Duration::from_nanos(stall as u64)
    );

    bc.backup_complete().await.unwrap().await.unwrap();
    drop(bc);

    // The load resumed after Thaw.
    let last = entries.last().map_or(0, |e| e.0);
    wait_for(
        Duration::from_secs(20),
        || {
            env.load_entries()
                .last()
                .is_some_and(|e| e.0 >= last.max(k) + 20)
        },
        "the load to resume after Thaw",
    );
    // Stop the load and look at the live database: every logged commit is there.
    let logged = {
        env.load = None;
        env.load_entries().last().map_or(0, |e| e.0)
    };
    let conn = rusqlite::Connection::open(&db).unwrap();
    let live: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert!(
        live as u64 >= logged && logged > k,
        "live {live}, logged {logged}, snapshot {k}"
    );
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_database_under_load_snapshot_holds_a_prefix() {
    backup_under_load("WAL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_journal_database_under_load_snapshot_holds_a_prefix() {
    backup_under_load("DELETE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_with_two_instances_serves_two_sockets() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    let (a, b, c) = (vol.join("a.db"), vol.join("b.db"), vol.join("sub/b.db"));
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    for db in [&a, &b, &c] {
        create_db(db, "WAL");
    }
    let config = env.dir.path().join("writers.toml");
    std::fs::write(
        &config,
        format!(
            r#"
writers_dir = "{writers}"

[[postgres]]
name = "not-mine"
anything = true

[[sqlite]]
name = "one"
databases = ["{a}"]

[[sqlite]]
name = "two"
databases = ["{b}", "{c}"]
freeze_timeout_ms = 5000
"#,
            writers = env.writers_dir().display(),
            a = a.display(),
            b = b.display(),
            c = c.display(),
        ),
    )
    .unwrap();
    env.start_vssd();
    env.start_sqlite_writer("sqlite", &["--config", config.to_str().unwrap()]);
    assert!(env.writers_dir().join("one.sock").exists());
    assert!(env.writers_dir().join("two.sock").exists());

    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let mut writers = bc.get_writer_metadata().await.unwrap();
    writers.sort_by(|x, y| x.instance_name.cmp(&y.instance_name));
    assert_eq!(writers.len(), 2, "{writers:?}");
    assert_eq!(writers[0].instance_name, "one");
    assert_eq!(writers[1].instance_name, "two");
    assert_eq!(
        writers[0].writer_id, writers[1].writer_id,
        "one writer class"
    );
    assert_ne!(writers[0].instance_id, writers[1].instance_id);
    assert_eq!(writers[1].freeze_timeout_ms, 5000);
    let names: Vec<&str> = writers[1]
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    // Two databases named b.db in one instance: named by their full paths.
    assert_eq!(names, [b.to_str().unwrap(), c.to_str().unwrap()]);
    assert_eq!(writers[0].components[0].name, "a.db");
    let files: Vec<String> = writers[0].components[0]
        .files
        .iter()
        .map(|f| format!("{}/{}", f.path, f.filespec))
        .collect();
    let a_str = a.display().to_string();
    assert_eq!(
        files,
        [
            a_str.clone(),
            format!("{a_str}-wal"),
            format!("{a_str}-journal")
        ]
    );
    drop(bc);
}

fn run_with_config(dir: &Path, text: &str) -> (bool, String) {
    let config = dir.join("writers.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(bin("vss-writer-sqlite"))
        .arg("--config")
        .arg(&config)
        .arg("--writers-dir")
        .arg(dir.join("writers"))
        .output()
        .expect("run vss-writer-sqlite");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = run_with_config(
        dir.path(),
        "[[sqlite]]\nname = \"x\"\ndatabases = [\"/nonexistent/x.db\"]\nbusy_timeout = 5\n",
    );
    assert!(!ok);
    assert!(
        err.contains("unknown field") && err.contains("busy_timeout"),
        "{err}"
    );
    let (ok, err) = run_with_config(dir.path(), "[[postgres]]\nname = \"pg\"\n");
    assert!(!ok);
    assert!(err.contains("no [[sqlite]] instance"), "{err}");
    let (ok, err) = run_with_config(
        dir.path(),
        "[[sqlite]]\nname = \"x\"\ndatabases = [\"x.db\"]\n",
    );
    assert!(!ok);
    assert!(err.contains("not an absolute path"), "{err}");
    assert!(
        !dir.path().join("writers/x.sock").exists(),
        "no socket on a bad configuration"
    );
}

/// Event parameters as vssd sends them.
fn event(set: &str) -> serde_json::Value {
    serde_json::json!({
        "snapshotSetId": set,
        "context": 0,
        "backupType": "VSS_BT_FULL",
        "selectComponents": true,
        "bootableSystemState": false,
        "partialFileSupport": false,
        "volumes": [],
        "components": null,
    })
}

async fn call(
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

/// Drives the writer's socket directly (as vssd does): while frozen, the load's commits stall
/// for as long as the test keeps it frozen; after Thaw they resume; and when another process
/// holds the write lock longer than busy_timeout_ms, Freeze fails with
/// VSS_E_WRITERERROR_RETRYABLE and SQLite's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_blocks_commits_until_thaw_and_busy_fails_retryable() {
    let Some(mut env) = Env::new() else { return };
    let db = env.volume().join("app.db");
    create_db(&db, "WAL");
    let writers_dir = env.writers_dir();
    env.start_sqlite_writer(
        "sqlite",
        &[
            "--database",
            db.to_str().unwrap(),
            "--name",
            "app",
            "--writers-dir",
            writers_dir.to_str().unwrap(),
            "--freeze-timeout-ms",
            "20000",
            "--busy-timeout-ms",
            "500",
        ],
    );
    env.start_load(&db, 20);
    let mut conn = vss_protocol::transport::connect(&writers_dir.join("app.sock"))
        .await
        .unwrap();
    let set = "6d1c7c36-1a8c-4c59-9d3e-3f1f2a5b0c01";
    call(&mut conn, "vss.Writer.PrepareForSnapshot", event(set))
        .await
        .unwrap();
    call(&mut conn, "vss.Writer.Freeze", event(set))
        .await
        .unwrap();
    let at_freeze = env.load_entries().last().unwrap().0;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = env.load_entries().last().unwrap().0;
    assert!(
        after <= at_freeze + 1,
        "the load committed {at_freeze} -> {after} while frozen"
    );
    call(&mut conn, "vss.Writer.Thaw", event(set))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        || env.load_entries().last().unwrap().0 > after + 10,
        "the load to resume after Thaw",
    );

    // Another process holds the write lock for 30 s: Freeze gives up after busy_timeout_ms.
    env.load = None;
    let holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1],isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked',flush=True)\n\
             time.sleep(30)",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = ChildGuard {
        child: holder,
        name: "holder".into(),
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let set2 = "6d1c7c36-1a8c-4c59-9d3e-3f1f2a5b0c02";
    call(&mut conn, "vss.Writer.PrepareForSnapshot", event(set2))
        .await
        .unwrap();
    let started = Instant::now();
    let (name, params) = call(&mut conn, "vss.Writer.Freeze", event(set2))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(name, "vss.Writer.WriterFailure", "{params}");
    let text = params.to_string();
    assert!(text.contains("VSS_E_WRITERERROR_RETRYABLE"), "{text}");
    assert!(
        text.contains("BEGIN IMMEDIATE") && text.contains("locked"),
        "{text}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "Freeze gave up after {took:?}"
    );
    // After the holder goes, the writer freezes again (its connection survived the failure).
    holder.kill();
    call(&mut conn, "vss.Writer.Abort", event(set2)).await.ok();
    let set3 = "6d1c7c36-1a8c-4c59-9d3e-3f1f2a5b0c03";
    call(&mut conn, "vss.Writer.Freeze", event(set3))
        .await
        .unwrap();
    call(&mut conn, "vss.Writer.Thaw", event(set3))
        .await
        .unwrap();
}

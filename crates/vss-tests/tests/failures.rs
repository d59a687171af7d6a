//! End-to-end failure paths: writers that hang, fail, crash or vanish at each stage of a backup,
//! requesters that die, two requesters racing for the host-wide snapshot-set lock, and
//! AbortBackup after a snapshot was made. Each test has its own btrfs volume, vssd and writers.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use vss_client::{AsyncStatus, ClientError, ErrorCode, ObjectType};

/// Every event of a writer that took part in a full backup, in order.
const FULL_ORDER: [&str; 8] = [
    "Identify",
    "PrepareForBackup",
    "PrepareForSnapshot",
    "Freeze",
    "Thaw",
    "PostSnapshot",
    "BackupComplete",
    "BackupShutdown",
];

/// Generous bound for things that should take well under a second.
const QUICK: Duration = Duration::from_secs(30);

/// The code of a failed operation status (panics on any other status).
fn failure_code(st: &AsyncStatus) -> ErrorCode {
    match st {
        AsyncStatus::Failed(e) => e.code,
        other => panic!("the operation should have failed, got {other:?}"),
    }
}

fn assert_status(all: &[vss_client::WriterStatus], name: &str, state: &str, failure: ErrorCode) {
    let s = status_of(all, name);
    assert_eq!(s.state_name, state, "{name}: {s:?}");
    assert_eq!(s.failure_name, failure.name(), "{name}: {s:?}");
    assert_eq!(s.failure, failure.hresult(), "{name}: {s:?}");
}

fn assert_ok_status(all: &[vss_client::WriterStatus], name: &str, state: &str) {
    let s = status_of(all, name);
    assert_eq!(s.state_name, state, "{name}: {s:?}");
    assert_eq!(
        (s.failure, s.failure_name.as_str()),
        (0, "S_OK"),
        "{name}: {s:?}"
    );
}

/// QueryStatus of `operation` on a fresh connection, until vssd no longer knows it (the session
/// that started it has been released completely), within `t`.
async fn wait_operation_forgotten(env: &Env, operation: &str, t: Duration) {
    let deadline = Instant::now() + t;
    loop {
        match raw_call(
            &env.socket(),
            "vss.Requester.QueryStatus",
            serde_json::json!({ "operation": operation }),
        )
        .await
        {
            Err((name, p))
                if name == "vss.Requester.VssError" && p["code"] == "VSS_E_OBJECT_NOT_FOUND" =>
            {
                return;
            }
            Ok(_) => {}
            Err(other) => panic!("QueryStatus({operation}) failed with {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "vssd still knows operation {operation} after {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A writer hangs in Freeze and its own freeze window (1 s) runs out: the set is aborted with
/// VSS_E_WRITERERROR_TIMEOUT, nothing is left behind, and the other participant gets Abort and
/// is STABLE again. The host lock is released with the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_hanging_in_freeze_past_its_freeze_window_aborts_the_set() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "hang",
        &[
            "--component",
            &component("db", &vol),
            "--hang-at",
            "Freeze",
            "--freeze-timeout-ms",
            "1000",
        ],
    );
    env.start_writer("healthy", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;

    let started = Instant::now();
    let op = bc.do_snapshot_set().await.unwrap();
    let st = op.wait(None).await.unwrap();
    let took = started.elapsed();
    assert_eq!(failure_code(&st), ErrorCode::WriterErrorTimeout, "{st:?}");
    assert!(
        took >= Duration::from_millis(1000),
        "failed before the 1 s freeze window ran out: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "a 1 s freeze window took {took:?} to fail the set"
    );
    assert_eq!(
        op.query_status().await.unwrap(),
        st,
        "QueryStatus reports the same failure"
    );

    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "hang",
        "VSS_WS_FAILED_AT_FREEZE",
        ErrorCode::WriterErrorTimeout,
    );
    assert_ok_status(&status, "healthy", "VSS_WS_STABLE");

    // No snapshot remains, in the catalog or on the volume.
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(
        vss_snapshots(&vol).is_empty(),
        "left in .vss: {:?}",
        vss_snapshots(&vol)
    );

    let before_thaw = [
        "Identify",
        "PrepareForBackup",
        "PrepareForSnapshot",
        "Freeze",
        "Abort",
    ];
    assert_eq!(
        env.event_names("healthy"),
        before_thaw,
        "the healthy writer was frozen, then aborted"
    );
    assert_eq!(
        env.event_names("hang"),
        before_thaw,
        "the hanging writer got Abort while still in Freeze"
    );

    // The host-wide lock went with the failure: another session can start a set at once.
    let mut other = env.requester().await;
    other.initialize_for_backup(None).await.unwrap();
    other
        .start_snapshot_set()
        .await
        .expect("the lock is released when DoSnapshotSet fails");
    drop(other);

    // The session ends: BackupShutdown, and no second Abort (a writer gets Abort once).
    drop(bc);
    for w in ["healthy", "hang"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
        let mut expected = before_thaw.to_vec();
        expected.push("BackupShutdown");
        assert_eq!(env.event_names(w), expected, "{w}");
    }
}

/// A writer hangs in Freeze with the default (60 s) freeze window, but vssd's Freeze deadline is
/// 1 s: the writer is not responding, and so is the set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_hanging_past_the_freeze_deadline_is_not_responding() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&["--timeout", "Freeze=1000"]);
    env.start_writer(
        "hang",
        &["--component", &component("db", &vol), "--hang-at", "Freeze"],
    );
    env.start_writer("healthy", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;

    let started = Instant::now();
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(failure_code(&st), ErrorCode::WriterNotResponding, "{st:?}");
    assert!(
        took < Duration::from_secs(5),
        "a 1 s Freeze deadline took {took:?} to fail the set"
    );

    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "hang",
        "VSS_WS_FAILED_AT_FREEZE",
        ErrorCode::WriterNotResponding,
    );
    assert_ok_status(&status, "healthy", "VSS_WS_STABLE");
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(vss_snapshots(&vol).is_empty());
    assert_eq!(
        env.event_names("healthy").last().map(String::as_str),
        Some("Abort")
    );
}

/// A writer is killed (SIGKILL) after PrepareForBackup: it misses PrepareForSnapshot
/// (FAILED_AT_PREPARE_SNAPSHOT, VSS_E_WRITER_NOT_RESPONDING), which does not abort the set; the
/// other writer gets every event and BackupComplete works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_after_prepare_for_backup_does_not_stop_the_set() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("victim", &["--component", &component("db", &vol)]);
    env.start_writer("survivor", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, &env.volume_str(), true, None).await;

    env.writer("victim").kill();
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("the set completes without the dead writer");
    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "victim",
        "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
        ErrorCode::WriterNotResponding,
    );
    assert_ok_status(&status, "survivor", "VSS_WS_WAITING_FOR_BACKUP_COMPLETE");
    let props = bc.get_snapshot_properties(p.snapshot).await.unwrap();
    let snap = PathBuf::from(&props.snapshot_path);
    assert!(snap.is_dir(), "{} is not there", snap.display());

    let st = bc
        .backup_complete()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    assert_eq!(st, AsyncStatus::Finished);
    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "victim",
        "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
        ErrorCode::WriterNotResponding,
    );
    assert_ok_status(&status, "survivor", "VSS_WS_STABLE");

    drop(bc);
    env.wait_for_last_event("survivor", "BackupShutdown", QUICK)
        .await;
    assert_eq!(env.event_names("survivor"), FULL_ORDER);
    assert_eq!(env.event_names("victim"), ["Identify", "PrepareForBackup"]);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
}

/// A writer process exits inside Freeze: FAILED_AT_FREEZE with VSS_E_WRITER_NOT_RESPONDING, the
/// set is aborted and the other writer gets Abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_exiting_inside_freeze_aborts_the_set() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "crasher",
        &["--component", &component("db", &vol), "--exit-at", "Freeze"],
    );
    env.start_writer("healthy", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;

    let started = Instant::now();
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    assert_eq!(failure_code(&st), ErrorCode::WriterNotResponding, "{st:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a vanished writer took {:?} to notice",
        started.elapsed()
    );
    let exit = env.writer("crasher").child.try_wait().unwrap();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(9),
        "the writer exited inside Freeze"
    );

    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "crasher",
        "VSS_WS_FAILED_AT_FREEZE",
        ErrorCode::WriterNotResponding,
    );
    assert_ok_status(&status, "healthy", "VSS_WS_STABLE");
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(vss_snapshots(&vol).is_empty());
    assert_eq!(
        env.event_names("crasher"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze"
        ]
    );
    assert_eq!(
        env.event_names("healthy"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Abort"
        ]
    );
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "BackupComplete after a failed DoSnapshotSet"
    );
    drop(bc);
    env.wait_for_last_event("healthy", "BackupShutdown", QUICK)
        .await;
    assert_eq!(
        env.event_names("healthy"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Abort",
            "BackupShutdown"
        ],
        "after the session: BackupShutdown, no second Abort"
    );
}

/// The requester's connection closes while DoSnapshotSet runs (a writer hangs in Freeze): vssd
/// lets the set fail at the Freeze deadline, aborts it (every participant gets Abort, once),
/// sends BackupShutdown, leaves no snapshot and releases the host lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_vanishing_during_snapshot_set_aborts_it() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&["--timeout", "Freeze=2000"]);
    env.start_writer(
        "hang",
        &["--component", &component("db", &vol), "--hang-at", "Freeze"],
    );
    env.start_writer("healthy", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    let op = bc.do_snapshot_set().await.unwrap();
    env.wait_for_event("hang", "Freeze", QUICK).await;
    drop(bc);

    for w in ["healthy", "hang"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
        assert_eq!(
            env.event_names(w),
            [
                "Identify",
                "PrepareForBackup",
                "PrepareForSnapshot",
                "Freeze",
                "Abort",
                "BackupShutdown"
            ],
            "{w}"
        );
    }
    wait_operation_forgotten(&env, op.operation(), QUICK).await;
    assert!(
        vss_snapshots(&vol).is_empty(),
        "left in .vss: {:?}",
        vss_snapshots(&vol)
    );
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    bc.start_snapshot_set()
        .await
        .expect("the host lock was released with the session");
}

/// The requester process is killed after DoSnapshotSet: its session ends, the writers get
/// BackupShutdown (and no BackupComplete), and the auto-release snapshot is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_killed_after_snapshot_releases_its_session() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("alpha", &["--component", &component("db", &vol)]);
    env.start_writer("beta", &["--component", &component("files", &vol)]);
    let mut rq = env.start_requester(&["--stop-after", "snapshot"]);
    let line = rq.wait_step("snapshot", QUICK);
    let snap = PathBuf::from(line["snapshotPath"].as_str().expect("snapshotPath"));
    let operation = line["operation"].as_str().expect("operation").to_owned();
    assert!(
        snap.is_dir(),
        "the snapshot {} exists while the requester lives",
        snap.display()
    );

    rq.kill();
    for w in ["alpha", "beta"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
    }
    wait_operation_forgotten(&env, &operation, QUICK).await;
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;

    let expected = [
        "Identify",
        "PrepareForBackup",
        "PrepareForSnapshot",
        "Freeze",
        "Thaw",
        "PostSnapshot",
        "BackupShutdown",
    ];
    for w in ["alpha", "beta"] {
        assert_eq!(
            env.event_names(w),
            expected,
            "{w}: no BackupComplete, no Abort"
        );
    }
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(
        vss_snapshots(&vol).is_empty(),
        "left in .vss: {:?}",
        vss_snapshots(&vol)
    );
}

/// With VSS_CTX_APP_ROLLBACK the snapshot survives its killed requester; a new session lists it
/// (Query with VSS_CTX_ALL) and deletes it with DeleteSnapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_snapshot_survives_a_killed_requester() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("alpha", &["--component", &component("db", &vol)]);
    let mut rq = env.start_requester(&["--stop-after", "snapshot", "--persistent"]);
    let line = rq.wait_step("snapshot", QUICK);
    let snap = PathBuf::from(line["snapshotPath"].as_str().expect("snapshotPath"));
    let operation = line["operation"].as_str().expect("operation").to_owned();
    let set: uuid::Uuid = line["snapshotSetId"].as_str().unwrap().parse().unwrap();
    let id: uuid::Uuid = line["snapshotId"].as_str().unwrap().parse().unwrap();

    rq.kill();
    env.wait_for_last_event("alpha", "BackupShutdown", QUICK)
        .await;
    wait_operation_forgotten(&env, &operation, QUICK).await;
    assert!(
        snap.is_dir(),
        "the persistent snapshot {} survives its session",
        snap.display()
    );

    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    let listed = bc.query(Some(-1), None, None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].snapshot_id, id.to_string());
    assert_eq!(listed[0].snapshot_set_id, set.to_string());
    assert_eq!(PathBuf::from(&listed[0].snapshot_path), snap);
    assert_eq!(
        listed[0].attributes & 0x9,
        0x9,
        "persistent, no auto-release: {:?}",
        listed[0]
    );

    let out = bc
        .delete_snapshots(set, ObjectType::SnapshotSet, false)
        .await
        .unwrap();
    assert_eq!((out.deleted, out.non_deleted), (1, None));
    assert!(!snap.exists(), "DeleteSnapshots removed {}", snap.display());
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(vss_snapshots(&vol).is_empty());
    let e = bc
        .delete_snapshots(set, ObjectType::SnapshotSet, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ObjectNotFound), "the set is gone");
}

/// One requester holds the host-wide lock (it sleeps after StartSnapshotSet): a second session's
/// StartSnapshotSet gets VSS_E_SNAPSHOT_SET_IN_PROGRESS, and succeeds once the first is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_requester_gets_snapshot_set_in_progress_until_the_first_dies() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("alpha", &["--component", &component("db", &vol)]);
    let mut rq = env.start_requester(&["--stop-after", "start"]);
    rq.wait_step("start", QUICK);

    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, vss_client::BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    for _ in 0..2 {
        let e = bc.start_snapshot_set().await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::SnapshotSetInProgress), "{e}");
    }
    // The refusal changed nothing in the session: it cannot add a volume yet.
    let e = bc
        .add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "{e}");

    rq.kill();
    let deadline = Instant::now() + QUICK;
    let set = loop {
        match bc.start_snapshot_set().await {
            Ok(set) => break set,
            Err(e)
                if e.code() == Some(ErrorCode::SnapshotSetInProgress)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("StartSnapshotSet after the first requester died: {e}"),
        }
    };
    assert!(!set.is_nil());
    bc.add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("the second requester's backup works");
}

/// BackupComplete with one writer failing it, one gone and one healthy: the operation still
/// finishes; the failing writer keeps its code, the gone one is not responding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_complete_finishes_when_writers_fail_it_or_are_gone() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "failing",
        &[
            "--component",
            &component("db", &vol),
            "--fail-at",
            "BackupComplete:NONRETRYABLE",
        ],
    );
    env.start_writer("gone", &["--component", &component("logs", &vol)]);
    env.start_writer("healthy", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    env.writer("gone").kill();

    let op = bc.backup_complete().await.unwrap();
    let st = op.wait(None).await.unwrap();
    assert_eq!(
        st,
        AsyncStatus::Finished,
        "BackupComplete finishes whatever the writers did"
    );
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Finished);
    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "failing",
        "VSS_WS_FAILED_AT_BACKUP_COMPLETE",
        ErrorCode::WriterErrorNonRetryable,
    );
    assert_status(
        &status,
        "gone",
        "VSS_WS_FAILED_AT_BACKUP_COMPLETE",
        ErrorCode::WriterNotResponding,
    );
    assert_ok_status(&status, "healthy", "VSS_WS_STABLE");
    assert_eq!(status.len(), 3);

    drop(bc);
    env.wait_for_last_event("healthy", "BackupShutdown", QUICK)
        .await;
    env.wait_for_last_event("failing", "BackupShutdown", QUICK)
        .await;
    assert_eq!(env.event_names("healthy"), FULL_ORDER);
    assert_eq!(env.event_names("failing"), FULL_ORDER);
    assert_eq!(env.event_names("gone"), FULL_ORDER[..6]);
}

/// AbortBackup after a successful DoSnapshotSet: the writers are past PostSnapshot and get no
/// Abort, only BackupShutdown when the session ends; BackupComplete is then VSS_E_BAD_STATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_backup_after_snapshot_sends_no_abort() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("alpha", &["--component", &component("db", &vol)]);
    env.start_writer("beta", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let snap = PathBuf::from(
        bc.get_snapshot_properties(p.snapshot)
            .await
            .unwrap()
            .snapshot_path,
    );

    bc.abort_backup().await.unwrap();
    bc.abort_backup()
        .await
        .expect("a second AbortBackup is harmless");
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "BackupComplete after AbortBackup: {e}"
    );
    let status = writer_status(&mut bc).await;
    for w in ["alpha", "beta"] {
        assert_ok_status(&status, w, "VSS_WS_WAITING_FOR_BACKUP_COMPLETE");
    }

    drop(bc);
    let expected = [
        "Identify",
        "PrepareForBackup",
        "PrepareForSnapshot",
        "Freeze",
        "Thaw",
        "PostSnapshot",
        "BackupShutdown",
    ];
    for w in ["alpha", "beta"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
        assert_eq!(env.event_names(w), expected, "{w}");
    }
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
}

/// Awaiting a failed DoSnapshotSet through the library gives the failing writer's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_failed_snapshot_set_gives_the_writers_code() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "w",
        &[
            "--component",
            &component("db", &vol),
            "--fail-at",
            "Thaw:VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
        ],
    );
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    let e = bc.do_snapshot_set().await.unwrap().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Vss(v) if v.code == ErrorCode::WriterErrorInconsistentSnapshot),
        "{e:?}"
    );
    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "w",
        "VSS_WS_FAILED_AT_THAW",
        ErrorCode::WriterErrorInconsistentSnapshot,
    );
    // A set that failed after its commit deleted what it committed.
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(
        vss_snapshots(&vol).is_empty(),
        "left in .vss: {:?}",
        vss_snapshots(&vol)
    );
    assert_eq!(
        env.event_names("w"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Thaw",
            "Abort"
        ]
    );
}

/// Failures in PrepareForSnapshot and PostSnapshot mark the writer (FAILED_AT_PREPARE_SNAPSHOT,
/// FAILED_AT_POST_SNAPSHOT), do not abort the set and bring no Abort; such writers get no
/// further event but BackupShutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_snapshot_and_post_snapshot_failures_do_not_abort_the_set() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "pfs",
        &[
            "--component",
            &component("a", &vol),
            "--fail-at",
            "PrepareForSnapshot",
        ],
    );
    env.start_writer(
        "post",
        &[
            "--component",
            &component("b", &vol),
            "--fail-at",
            "PostSnapshot:OUTOFRESOURCES",
        ],
    );
    env.start_writer("healthy", &["--component", &component("c", &vol)]);
    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("the set completes");
    let snap = PathBuf::from(
        bc.get_snapshot_properties(p.snapshot)
            .await
            .unwrap()
            .snapshot_path,
    );
    assert!(snap.is_dir());
    bc.backup_complete().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    assert_status(
        &status,
        "pfs",
        "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
        ErrorCode::WriterErrorRetryable,
    );
    assert_status(
        &status,
        "post",
        "VSS_WS_FAILED_AT_POST_SNAPSHOT",
        ErrorCode::WriterErrorOutOfResources,
    );
    assert_ok_status(&status, "healthy", "VSS_WS_STABLE");

    drop(bc);
    for w in ["pfs", "post", "healthy"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
    }
    assert_eq!(
        env.event_names("pfs"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "BackupShutdown"
        ]
    );
    assert_eq!(
        env.event_names("post"),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Thaw",
            "PostSnapshot",
            "BackupShutdown"
        ]
    );
    assert_eq!(env.event_names("healthy"), FULL_ORDER);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
}

//! Asynchronous operations end to end (IVssAsync, vss-model.md §2.5): Wait with a timeout,
//! QueryStatus/Wait/Cancel from other connections than the session's, Cancel of BackupComplete
//! while a writer hangs in it, and the errors of the calls themselves (unknown or malformed
//! operation ids, unknown methods).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vss_client::{AsyncStatus, BackupType, CancelOutcome, ClientError, ErrorCode};

const QUICK: Duration = Duration::from_secs(30);

/// `(code, hresult)` of a QueryStatus/Wait/Cancel reply.
fn status_reply(v: &serde_json::Value) -> (String, u64) {
    (
        v["code"].as_str().expect("code").to_owned(),
        v["hresult"].as_u64().expect("hresult"),
    )
}

/// The VSS code of a `vss.Requester.VssError` reply (panics on anything else).
fn vss_error(r: Result<serde_json::Value, (String, serde_json::Value)>) -> (String, u64) {
    match r {
        Err((name, p)) if name == "vss.Requester.VssError" => status_reply(&p),
        other => panic!("expected vss.Requester.VssError, got {other:?}"),
    }
}

const PENDING: (&str, u64) = ("VSS_S_ASYNC_PENDING", 0x0004_2309);
const FINISHED: (&str, u64) = ("VSS_S_ASYNC_FINISHED", 0x0004_230A);
const CANCELLED: (&str, u64) = ("VSS_S_ASYNC_CANCELLED", 0x0004_230B);

fn is(reply: (String, u64), expected: (&str, u64)) -> bool {
    reply.0 == expected.0 && reply.1 == expected.1
}

/// A PrepareForBackup that hangs (its writer never answers): Wait with a timeout answers
/// PENDING in time, on the library's connections and on raw ones; QueryStatus and Wait work
/// from any connection while the session's own connection keeps answering; when the writer dies
/// the operation finishes and every connection sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_with_timeout_and_status_from_other_connections() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "hang",
        &[
            "--component",
            &component("db", &vol),
            "--hang-at",
            "PrepareForBackup",
        ],
    );
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let w = bc.get_writer_metadata().await.unwrap().remove(0);
    bc.add_component(
        w.instance_id,
        w.writer_id,
        w.components[0].component_type,
        "",
        "db",
    )
    .await
    .unwrap();
    bc.start_snapshot_set().await.unwrap();
    bc.add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap();
    let op = bc.prepare_for_backup().await.unwrap();
    env.wait_for_event("hang", "PrepareForBackup", QUICK).await;
    let id = op.operation().to_owned();

    // Wait with a timeout, through the library (a fresh connection of its own).
    let t = Duration::from_millis(300);
    let started = Instant::now();
    assert_eq!(op.wait(Some(t)).await.unwrap(), AsyncStatus::Pending);
    let took = started.elapsed();
    assert!(
        took >= t && took < t * 5,
        "Wait(300 ms) answered after {took:?}"
    );
    // QueryStatus through the library.
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Pending);

    // The same through raw calls on a connection that never initialized a session.
    let mut conn = vss_protocol::transport::connect(&env.socket())
        .await
        .unwrap();
    let started = Instant::now();
    let r = raw_call_on(
        &mut conn,
        "vss.Requester.Wait",
        json!({ "operation": id, "timeoutMs": 300 }),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(is(status_reply(&r), PENDING), "{r}");
    assert!(
        took >= t && took < t * 5,
        "raw Wait(300 ms) answered after {took:?}"
    );
    let r = raw_call_on(
        &mut conn,
        "vss.Requester.QueryStatus",
        json!({ "operation": id }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), PENDING), "{r}");
    // Wait with timeoutMs 0 is a poll.
    let started = Instant::now();
    let r = raw_call_on(
        &mut conn,
        "vss.Requester.Wait",
        json!({ "operation": id, "timeoutMs": 0 }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), PENDING), "{r}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A Wait without timeout blocks its own connection only: the session keeps answering.
    let socket = env.socket();
    let id2 = id.clone();
    let waiter = tokio::spawn(async move {
        let r = raw_call(&socket, "vss.Requester.Wait", json!({ "operation": id2 })).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "Wait without timeout returned while the operation is pending"
    );
    assert!(
        bc.save_as_xml().await.unwrap().contains("db"),
        "the session answers during the Wait"
    );
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    // The session itself refuses a new operation while this one runs.
    let e = bc.do_snapshot_set().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "{e}");

    // The writer dies: PrepareForBackup finishes (the writer is marked, the operation is not).
    let killed = Instant::now();
    env.writer("hang").kill();
    let (r, woke) = waiter.await.unwrap();
    let r = r.unwrap();
    assert!(is(status_reply(&r), FINISHED), "{r}");
    assert!(
        woke.duration_since(killed) < Duration::from_secs(5),
        "the blocked Wait woke after {:?}",
        woke - killed
    );
    let r = raw_call_on(
        &mut conn,
        "vss.Requester.QueryStatus",
        json!({ "operation": id }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), FINISHED), "{r}");
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Finished);
    assert_eq!(
        op.cancel().await.unwrap(),
        CancelOutcome::NotCancelled(AsyncStatus::Finished)
    );
    let r = raw_call_on(
        &mut conn,
        "vss.Requester.Cancel",
        json!({ "operation": id }),
    )
    .await
    .unwrap();
    assert!(
        is(status_reply(&r), FINISHED),
        "Cancel of a finished operation: {r}"
    );
    op.clone().await.expect("awaiting a finished operation");

    let status = writer_status(&mut bc).await;
    let s = status_of(&status, "hang");
    assert_eq!(
        (s.state_name.as_str(), s.failure_name.as_str()),
        (
            "VSS_WS_FAILED_AT_PREPARE_BACKUP",
            "VSS_E_WRITER_NOT_RESPONDING"
        )
    );

    // Once the session is released, its operations are forgotten.
    drop(bc);
    let deadline = Instant::now() + QUICK;
    loop {
        match op.query_status().await {
            Err(e) if e.code() == Some(ErrorCode::ObjectNotFound) => break,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("QueryStatus after the session ended: {other:?}"),
        }
    }
}

/// The calls themselves fail for unknown or malformed operation ids, bad parameters and unknown
/// methods; a connection that got such an error keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_operations_and_unknown_methods() {
    let Some(mut env) = Env::new() else { return };
    env.start_vssd(&[]);
    let mut conn = vss_protocol::transport::connect(&env.socket())
        .await
        .unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    let not_found = ("VSS_E_OBJECT_NOT_FOUND", 0x8004_2308);
    let invalid = ("E_INVALIDARG", 0x8007_0057);
    for method in ["QueryStatus", "Wait", "Cancel"] {
        let m = format!("vss.Requester.{method}");
        let r = vss_error(raw_call_on(&mut conn, &m, json!({ "operation": unknown })).await);
        assert!(is(r.clone(), not_found), "{method}(unknown id): {r:?}");
        let r = vss_error(raw_call_on(&mut conn, &m, json!({ "operation": "not-an-id" })).await);
        assert!(is(r.clone(), invalid), "{method}(malformed id): {r:?}");
        let r = vss_error(raw_call_on(&mut conn, &m, json!({})).await);
        assert!(is(r.clone(), invalid), "{method} without operation: {r:?}");
        let r = vss_error(raw_call_on(&mut conn, &m, json!({ "operation": 42 })).await);
        assert!(is(r.clone(), invalid), "{method}(operation: 42): {r:?}");
    }
    let r = vss_error(
        raw_call_on(
            &mut conn,
            "vss.Requester.Wait",
            json!({ "operation": unknown, "timeoutMs": -1 }),
        )
        .await,
    );
    assert!(is(r.clone(), invalid), "Wait(timeoutMs -1): {r:?}");

    match raw_call_on(&mut conn, "vss.Requester.NoSuchMethod", json!({})).await {
        Err((name, _)) => assert_eq!(name, "org.varlink.service.MethodNotFound"),
        Ok(v) => panic!("an unknown method answered {v}"),
    }
    // The connection still works after all these errors.
    let r = raw_call_on(&mut conn, "vss.Requester.InitializeForBackup", json!({})).await;
    assert!(r.is_ok(), "{r:?}");
    let r = raw_call_on(&mut conn, "vss.Requester.GetProtocolVersion", json!({}))
        .await
        .unwrap();
    assert_eq!(r["version"], 1, "{r}");

    // Through the library: a real operation of one session is visible to a fresh connection,
    // an unknown one is not.
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    let op = bc.gather_writer_metadata().await.unwrap();
    op.clone().await.unwrap();
    let r = raw_call(
        &env.socket(),
        "vss.Requester.QueryStatus",
        json!({ "operation": op.operation() }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), FINISHED), "{r}");
    match bc.get_writer_metadata().await {
        Ok(w) => assert!(w.is_empty()),
        Err(e) => panic!("{e}"),
    }
    let e: ClientError = bc.initialize_for_backup(None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState));
}

/// Cancel of BackupComplete's operation while a writer hangs in BackupComplete: Cancel answers
/// at once (cancelled now), QueryStatus and Wait say VSS_S_ASYNC_CANCELLED, a second Cancel
/// reports the earlier cancellation, and awaiting the handle is `ClientError::Cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_backup_complete_while_a_writer_hangs_in_it() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&["--timeout", "BackupComplete=20000"]);
    env.start_writer(
        "hang",
        &[
            "--component",
            &component("db", &vol),
            "--hang-at",
            "BackupComplete",
        ],
    );
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let op = bc.backup_complete().await.unwrap();
    env.wait_for_event("hang", "BackupComplete", QUICK).await;
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Pending);

    let started = Instant::now();
    assert_eq!(op.cancel().await.unwrap(), CancelOutcome::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Cancelled);
    let r = raw_call(
        &env.socket(),
        "vss.Requester.QueryStatus",
        json!({ "operation": op.operation() }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), CANCELLED), "{r}");
    let started = Instant::now();
    assert_eq!(op.wait(None).await.unwrap(), AsyncStatus::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Wait after Cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(
        op.cancel().await.unwrap(),
        CancelOutcome::NotCancelled(AsyncStatus::Cancelled)
    );
    let r = raw_call(
        &env.socket(),
        "vss.Requester.Cancel",
        json!({ "operation": op.operation() }),
    )
    .await
    .unwrap();
    assert!(is(status_reply(&r), CANCELLED), "a second Cancel: {r}");
    assert!(matches!(op.clone().await, Err(ClientError::Cancelled)));

    // The requester gave up: its session must let it go on (read the writers' status, abort)
    // without waiting for the hanging writer's 20 s BackupComplete deadline. Allowed: 4 s (5x
    // margin below the deadline).
    let started = Instant::now();
    let gathered = loop {
        match bc.gather_writer_status().await {
            Ok(op) => break op,
            Err(e)
                if e.code() == Some(ErrorCode::BadState)
                    && started.elapsed() < Duration::from_secs(4) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!(
                "GatherWriterStatus after BackupComplete was cancelled still fails after {:?}: {e}",
                started.elapsed()
            ),
        }
    };
    gathered.await.unwrap();
    assert_eq!(bc.get_writer_status().await.unwrap().len(), 1);
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "BackupComplete after a cancelled one: {e}"
    );
    bc.abort_backup().await.unwrap();
}

/// Cancel of DoSnapshotSet while a writer hangs in PrepareForSnapshot (before the commit, so
/// Cancel is allowed): Cancel answers cancelled, and the requester can then call AbortBackup and
/// the host-wide lock is free for others, without waiting for the writer's 20 s
/// PrepareForSnapshot deadline (allowed: 4 s, a 5x margin below it). No snapshot is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_do_snapshot_set_before_the_commit_frees_the_session_and_the_lock() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&["--timeout", "PrepareForSnapshot=20000"]);
    env.start_writer(
        "hang",
        &[
            "--component",
            &component("db", &vol),
            "--hang-at",
            "PrepareForSnapshot",
        ],
    );
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    let op = bc.do_snapshot_set().await.unwrap();
    env.wait_for_event("hang", "PrepareForSnapshot", QUICK)
        .await;

    assert_eq!(op.cancel().await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Cancelled);
    let started = Instant::now();
    loop {
        match bc.abort_backup().await {
            Ok(()) => break,
            Err(e)
                if e.code() == Some(ErrorCode::BadState)
                    && started.elapsed() < Duration::from_secs(4) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!(
                "AbortBackup after DoSnapshotSet was cancelled still fails after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    let mut other = env.requester().await;
    other.initialize_for_backup(None).await.unwrap();
    other
        .start_snapshot_set()
        .await
        .expect("the host lock is free once DoSnapshotSet was cancelled and the backup aborted");
    assert!(other.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(vss_snapshots(&vol).is_empty());
}

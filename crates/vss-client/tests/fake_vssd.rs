//! Unit tests of the client against a **fake** vssd: a scripted varlink server on a temporary
//! socket that records every call it receives and answers from a script.
//!
//! These tests check the client's side of the contract only: the exact method names and
//! parameter JSON it sends, how it decodes replies and maps errors, that [`Async`] handles use
//! connections of their own, and that the blocking facade works from a plain thread. They say
//! nothing about vssd's behaviour; the end-to-end tests against the real daemon live elsewhere.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;
use vss_client::{
    AsyncStatus, BackupComponents, BackupType, CancelOutcome, ClientError, ComponentType,
    ErrorCode, ObjectType, SnapshotContext, VssError,
};
use vss_protocol::requester::ERROR_VSS;
use vss_protocol::transport::{self, Connection};

const SET: &str = "11111111-1111-4111-8111-111111111111";
const SNAP: &str = "22222222-2222-4222-8222-222222222222";
const OP: &str = "33333333-3333-4333-8333-333333333333";
const WRITER: &str = "44444444-4444-4444-8444-444444444444";
const INSTANCE: &str = "55555555-5555-4555-8555-555555555555";
const PROVIDER: &str = "66666666-6666-4666-8666-666666666666";

/// How the fake answers one call.
enum Answer {
    /// A successful reply with these parameters.
    Ok(Value),
    /// A `vss.Requester.VssError` reply.
    Vss(VssError),
    /// `org.varlink.service.MethodNotFound`.
    MethodNotFound,
    /// No reply at all (the call hangs).
    Hang,
}

/// The script: method name (without the interface) and parameters in, answer out.
type Script = Arc<dyn Fn(&str, &Value) -> Answer + Send + Sync>;

/// One received call: the connection it came on (numbered from 0 in accept order) and the call
/// as JSON, `{"method": ..., "parameters": ...}`.
#[derive(Debug, Clone)]
struct Logged {
    conn: usize,
    call: Value,
}

/// What the fake saw.
#[derive(Debug, Default)]
struct Log {
    calls: Vec<Logged>,
    /// Connections that the client closed (EOF), in order.
    closed: Vec<usize>,
}

/// A scripted fake vssd on a temporary socket.
struct FakeVssd {
    _dir: TempDir,
    socket: PathBuf,
    log: Arc<Mutex<Log>>,
}

impl FakeVssd {
    /// Binds a socket and serves `script` on every connection. Must run inside a Tokio runtime,
    /// which keeps serving for as long as it lives.
    fn start(script: impl Fn(&str, &Value) -> Answer + Send + Sync + 'static) -> FakeVssd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vssd.sock");
        let listener = vss_protocol::transport::Listener::bind(&socket, 0o600).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let script: Script = Arc::new(script);
        let server_log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut next = 0;
            while let Ok(conn) = listener.accept().await {
                tokio::spawn(serve(
                    conn,
                    next,
                    Arc::clone(&script),
                    Arc::clone(&server_log),
                ));
                next += 1;
            }
        });
        FakeVssd {
            _dir: dir,
            socket,
            log,
        }
    }

    fn calls(&self) -> Vec<Logged> {
        self.log.lock().unwrap().calls.clone()
    }

    fn methods(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| c.call["method"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The single logged call of `method` (full name).
    fn call_of(&self, method: &str) -> Logged {
        let mut found = self
            .calls()
            .into_iter()
            .filter(|c| c.call["method"] == method);
        let first = found
            .next()
            .unwrap_or_else(|| panic!("{method} was not called"));
        assert!(found.next().is_none(), "{method} was called more than once");
        first
    }

    fn closed(&self) -> Vec<usize> {
        self.log.lock().unwrap().closed.clone()
    }
}

/// Serves one connection until the client closes it.
async fn serve(mut conn: Connection, index: usize, script: Script, log: Arc<Mutex<Log>>) {
    while let Ok(Some(call)) = transport::receive_call(&mut conn).await {
        log.lock().unwrap().calls.push(Logged {
            conn: index,
            call: serde_json::to_value(&call).unwrap(),
        });
        let method = call
            .method
            .strip_prefix("vss.Requester.")
            .unwrap_or(&call.method)
            .to_owned();
        let params = call.parameters.clone().unwrap_or_else(|| json!({}));
        let sent = match script(&method, &params) {
            Answer::Ok(v) => transport::reply(&mut conn, &v).await,
            Answer::Vss(e) => transport::reply_error(&mut conn, ERROR_VSS, &e).await,
            Answer::MethodNotFound => {
                transport::reply_method_not_found(&mut conn, &call.method).await
            }
            Answer::Hang => std::future::pending().await,
        };
        sent.unwrap();
    }
    log.lock().unwrap().closed.push(index);
}

fn status(code: &str, hresult: u32) -> Answer {
    Answer::Ok(json!({ "code": code, "hresult": hresult }))
}

fn snapshot_props() -> Value {
    json!({
        "snapshotId": SNAP,
        "snapshotSetId": SET,
        "snapshotsCount": 1,
        "snapshotPath": "/run/vss/snapshots/2222",
        "originalVolume": "/srv",
        "providerId": PROVIDER,
        "attributes": 0,
        "attributeNames": [],
        "context": 0,
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "status": "VSS_SS_CREATED"
    })
}

/// The happy path of every requester method.
fn happy(method: &str, _params: &Value) -> Answer {
    Answer::Ok(match method {
        "GetProtocolVersion" => {
            json!({ "version": 1, "product": "vss for Linux", "productVersion": "0.1.0" })
        }
        "GatherWriterMetadata"
        | "PrepareForBackup"
        | "DoSnapshotSet"
        | "BackupComplete"
        | "GatherWriterStatus" => {
            json!({ "operation": OP })
        }
        "GetWriterMetadata" => json!({ "writers": [{
            "writerId": WRITER,
            "instanceId": INSTANCE,
            "writerName": "Test Writer",
            "instanceName": "",
            "usageType": "VSS_UT_USERDATA",
            "sourceType": "VSS_ST_TRANSACTEDDB",
            "applicationLevel": "VSS_APP_BACK_END",
            "freezeTimeoutMs": 60000,
            "restoreMethod": "VSS_RME_RESTORE_IF_CAN_REPLACE",
            "writerRestore": "VSS_WRE_NEVER",
            "backupSchema": 0,
            "components": [{
                "componentType": "VSS_CT_DATABASE",
                "logicalPath": "db",
                "name": "main",
                "caption": "Main database",
                "selectable": true,
                "files": [{ "path": "/srv/db", "filespec": "*.db", "recursive": false, "backupTypeMask": 3855 }]
            }]
        }]}),
        "StartSnapshotSet" => json!({ "snapshotSetId": SET }),
        "AddToSnapshotSet" => json!({ "snapshotId": SNAP }),
        "GetSnapshotProperties" => snapshot_props(),
        "GetWriterStatus" => json!({ "writers": [{
            "writerId": WRITER,
            "instanceId": INSTANCE,
            "writerName": "Test Writer",
            "instanceName": "",
            "state": 1,
            "stateName": "VSS_WS_STABLE",
            "failure": 0,
            "failureName": "S_OK",
            "failureMessage": null
        }]}),
        "SaveAsXml" => json!({ "bcd": "<BACKUP_COMPONENTS/>" }),
        "Query" => json!({ "snapshots": [snapshot_props()] }),
        "DeleteSnapshots" => json!({ "deleted": 1, "nonDeletedSnapshotId": null }),
        "QueryStatus" | "Wait" => return status("VSS_S_ASYNC_FINISHED", AsyncStatus::FINISHED),
        "Cancel" => return status("VSS_S_ASYNC_FINISHED", AsyncStatus::FINISHED),
        _ => json!({}),
    })
}

fn uuid(s: &str) -> Uuid {
    s.parse().unwrap()
}

#[tokio::test]
async fn full_backup_sends_the_documented_calls() {
    let fake = FakeVssd::start(happy);
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();

    let v = bc.get_protocol_version().await.unwrap();
    assert_eq!((v.version, v.product.as_str()), (1, "vss for Linux"));
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_snapshot_context(SnapshotContext::APP_ROLLBACK)
        .await
        .unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let writers = bc.get_writer_metadata().await.unwrap();
    assert_eq!(writers.len(), 1);
    let (w, c) = (&writers[0], &writers[0].components[0]);
    assert_eq!((w.writer_id, w.instance_id), (uuid(WRITER), uuid(INSTANCE)));
    assert_eq!(c.component_type, ComponentType::Database);
    bc.add_component(
        w.instance_id,
        w.writer_id,
        c.component_type,
        &c.logical_path,
        &c.name,
    )
    .await
    .unwrap();
    assert_eq!(bc.start_snapshot_set().await.unwrap(), uuid(SET));
    assert_eq!(
        bc.add_to_snapshot_set("/srv", None).await.unwrap(),
        uuid(SNAP)
    );
    bc.add_to_snapshot_set("/var", Some(uuid(PROVIDER)))
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let props = bc.get_snapshot_properties(uuid(SNAP)).await.unwrap();
    assert_eq!(props.snapshot_path, "/run/vss/snapshots/2222");
    bc.set_backup_succeeded(
        w.instance_id,
        w.writer_id,
        c.component_type,
        &c.logical_path,
        &c.name,
        true,
    )
    .await
    .unwrap();
    assert_eq!(bc.save_as_xml().await.unwrap(), "<BACKUP_COMPONENTS/>");
    bc.backup_complete().await.unwrap().await.unwrap();
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    assert_eq!(
        (status[0].state_name.as_str(), status[0].failure),
        ("VSS_WS_STABLE", 0)
    );
    assert_eq!(
        bc.query(Some(-1), Some(uuid(SET)), Some("/srv"))
            .await
            .unwrap()
            .len(),
        1
    );
    bc.query(None, None, None).await.unwrap();
    let out = bc
        .delete_snapshots(uuid(SET), ObjectType::SnapshotSet, true)
        .await
        .unwrap();
    assert_eq!((out.deleted, out.non_deleted), (1, None));
    bc.abort_backup().await.unwrap();
    bc.initialize_for_restore("<BACKUP_COMPONENTS/>")
        .await
        .unwrap();
    bc.set_context(0x10).await.unwrap();

    // Every call of the session, in order, as JSON on the wire. The Wait calls of the awaited
    // handles went over other connections and are checked below.
    let session: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c.conn == 0)
        .map(|c| c.call)
        .collect();
    let expected = vec![
        json!({"method": "vss.Requester.GetProtocolVersion"}),
        json!({"method": "vss.Requester.InitializeForBackup", "parameters": {"bcd": null}}),
        json!({"method": "vss.Requester.SetContext", "parameters": {"context": 9}}),
        json!({"method": "vss.Requester.SetBackupState", "parameters": {
            "selectComponents": true, "bootableSystemState": false,
            "backupType": "VSS_BT_FULL", "partialFileSupport": false}}),
        json!({"method": "vss.Requester.GatherWriterMetadata"}),
        json!({"method": "vss.Requester.GetWriterMetadata"}),
        json!({"method": "vss.Requester.AddComponent", "parameters": {
            "instanceId": INSTANCE, "writerId": WRITER, "componentType": "VSS_CT_DATABASE",
            "logicalPath": "db", "name": "main"}}),
        json!({"method": "vss.Requester.StartSnapshotSet"}),
        json!({"method": "vss.Requester.AddToSnapshotSet", "parameters": {"volume": "/srv", "providerId": null}}),
        json!({"method": "vss.Requester.AddToSnapshotSet", "parameters": {"volume": "/var", "providerId": PROVIDER}}),
        json!({"method": "vss.Requester.PrepareForBackup"}),
        json!({"method": "vss.Requester.DoSnapshotSet"}),
        json!({"method": "vss.Requester.GetSnapshotProperties", "parameters": {"snapshotId": SNAP}}),
        json!({"method": "vss.Requester.SetBackupSucceeded", "parameters": {
            "instanceId": INSTANCE, "writerId": WRITER, "componentType": "VSS_CT_DATABASE",
            "logicalPath": "db", "name": "main", "succeeded": true}}),
        json!({"method": "vss.Requester.SaveAsXml"}),
        json!({"method": "vss.Requester.BackupComplete"}),
        json!({"method": "vss.Requester.GatherWriterStatus"}),
        json!({"method": "vss.Requester.GetWriterStatus"}),
        json!({"method": "vss.Requester.Query", "parameters": {
            "context": -1, "snapshotSetId": SET, "volume": "/srv"}}),
        json!({"method": "vss.Requester.Query", "parameters": {
            "context": null, "snapshotSetId": null, "volume": null}}),
        json!({"method": "vss.Requester.DeleteSnapshots", "parameters": {
            "sourceId": SET, "sourceType": "VSS_OBJECT_SNAPSHOT_SET", "forceDelete": true}}),
        json!({"method": "vss.Requester.AbortBackup"}),
        json!({"method": "vss.Requester.InitializeForRestore", "parameters": {"bcd": "<BACKUP_COMPONENTS/>"}}),
        json!({"method": "vss.Requester.SetContext", "parameters": {"context": 16}}),
    ];
    assert_eq!(session, expected);

    // Each awaited handle sent one unbounded Wait, each on a connection of its own.
    let waits: Vec<Logged> = fake.calls().into_iter().filter(|c| c.conn != 0).collect();
    assert_eq!(waits.len(), 5);
    for (i, w) in waits.iter().enumerate() {
        assert_eq!(
            w.call,
            json!({"method": "vss.Requester.Wait", "parameters": {"operation": OP, "timeoutMs": null}})
        );
        assert_eq!(w.conn, i + 1);
    }

    // Dropping the session closes its connection (Release).
    drop(bc);
    for _ in 0..200 {
        if fake.closed().contains(&0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the session connection was not closed: {:?}", fake.closed());
}

#[tokio::test]
async fn vss_errors_map_to_client_error_vss() {
    let fake = FakeVssd::start(|method, params| match method {
        "PrepareForBackup" => Answer::Vss(VssError::bad_state(
            "PrepareForBackup before StartSnapshotSet",
        )),
        "AddToSnapshotSet" if params["volume"] == "/nope" => Answer::Vss(VssError::new(
            ErrorCode::VolumeNotSupported,
            "/nope is not a mount point",
        )),
        "SaveAsXml" => Answer::MethodNotFound,
        other => happy(other, params),
    });
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();

    let e = bc.prepare_for_backup().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState));
    let ClientError::Vss(v) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(v.message, "PrepareForBackup before StartSnapshotSet");
    assert_eq!(
        e.to_string(),
        "VSS_E_BAD_STATE (0x80042301): PrepareForBackup before StartSnapshotSet"
    );

    let e = bc.add_to_snapshot_set("/nope", None).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::VolumeNotSupported));

    // A standard varlink error (an older vssd without the method) maps to the VSS error
    // that means the same: MethodNotFound is E_NOTIMPL, naming the method.
    let e = bc.save_as_xml().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotImpl), "{e:?}");
    assert!(e.to_string().contains("MethodNotFound"), "{e:?}");

    // The session is still usable after error replies.
    assert_eq!(bc.start_snapshot_set().await.unwrap(), uuid(SET));
}

#[tokio::test]
async fn malformed_replies_are_protocol_errors() {
    let fake = FakeVssd::start(|method, params| match method {
        "StartSnapshotSet" => Answer::Ok(json!({ "snapshotSetId": "not-a-uuid" })),
        "GetSnapshotProperties" => Answer::Ok(json!({ "snapshotId": SNAP })),
        "DoSnapshotSet" => Answer::Ok(json!({ "operation": "op-7" })),
        "DeleteSnapshots" => Answer::Ok(json!({ "deleted": -1 })),
        other => happy(other, params),
    });
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    assert!(matches!(
        bc.start_snapshot_set().await,
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        bc.get_snapshot_properties(uuid(SNAP)).await,
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        bc.do_snapshot_set().await,
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        bc.delete_snapshots(uuid(SNAP), ObjectType::Snapshot, false)
            .await,
        Err(ClientError::Protocol(_))
    ));
    // Replies of methods without results may carry fields a later protocol version adds.
    bc.abort_backup().await.unwrap();
}

#[tokio::test]
async fn connect_failure_keeps_the_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let e = BackupComponents::connect(&path).await.unwrap_err();
    let ClientError::Connect { path: p, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(p, &path);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(e.code(), None);
}

#[tokio::test]
async fn an_interrupted_call_makes_the_session_refuse_further_calls() {
    let fake = FakeVssd::start(|method, params| match method {
        "SaveAsXml" => Answer::Hang,
        other => happy(other, params),
    });
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), bc.save_as_xml())
            .await
            .is_err()
    );
    let e = bc.start_snapshot_set().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Io(m) if m.contains("interrupted")),
        "{e:?}"
    );
    // The refused call never reached the server.
    assert_eq!(fake.methods(), ["vss.Requester.SaveAsXml"]);
}

/// The operation state of the fake for the async tests: how many Waits to answer PENDING before
/// the final status.
#[derive(Debug)]
struct OpState {
    pending_waits: usize,
    end: (&'static str, u32),
}

fn async_fake(pending_waits: usize, end: (&'static str, u32)) -> FakeVssd {
    let state = Mutex::new(OpState { pending_waits, end });
    FakeVssd::start(move |method, params| {
        let mut s = state.lock().unwrap();
        match method {
            "QueryStatus" => status("VSS_S_ASYNC_PENDING", AsyncStatus::PENDING),
            "Wait" if s.pending_waits > 0 => {
                s.pending_waits -= 1;
                status("VSS_S_ASYNC_PENDING", AsyncStatus::PENDING)
            }
            "Wait" => status(s.end.0, s.end.1),
            "Cancel" if s.end.0 == "VSS_S_ASYNC_PENDING" => {
                s.end = ("VSS_S_ASYNC_CANCELLED", AsyncStatus::CANCELLED);
                status("S_OK", 0)
            }
            "Cancel" => status(s.end.0, s.end.1),
            other => happy(other, params),
        }
    })
}

#[tokio::test]
async fn async_query_wait_cancel_use_their_own_connections() {
    let fake = async_fake(0, ("VSS_S_ASYNC_PENDING", AsyncStatus::PENDING));
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    let op = bc.do_snapshot_set().await.unwrap();
    assert_eq!(op.id(), uuid(OP));
    assert_eq!(op.operation(), OP);
    assert_eq!(op.method(), "DoSnapshotSet");

    assert_eq!(op.query_status().await.unwrap(), AsyncStatus::Pending);
    assert_eq!(
        op.wait(Some(Duration::from_millis(1500))).await.unwrap(),
        AsyncStatus::Pending
    );
    assert_eq!(op.cancel().await.unwrap(), CancelOutcome::Cancelled);
    // Cancelling again reports the status it already has.
    assert_eq!(
        op.cancel().await.unwrap(),
        CancelOutcome::NotCancelled(AsyncStatus::Cancelled)
    );
    assert_eq!(op.wait(None).await.unwrap(), AsyncStatus::Cancelled);
    // The session connection is free all along.
    bc.save_as_xml().await.unwrap();

    let calls = fake.calls();
    let expected = [
        (0, json!({"method": "vss.Requester.DoSnapshotSet"})),
        (
            1,
            json!({"method": "vss.Requester.QueryStatus", "parameters": {"operation": OP}}),
        ),
        (
            2,
            json!({"method": "vss.Requester.Wait", "parameters": {"operation": OP, "timeoutMs": 1500}}),
        ),
        (
            3,
            json!({"method": "vss.Requester.Cancel", "parameters": {"operation": OP}}),
        ),
        (
            4,
            json!({"method": "vss.Requester.Cancel", "parameters": {"operation": OP}}),
        ),
        (
            5,
            json!({"method": "vss.Requester.Wait", "parameters": {"operation": OP, "timeoutMs": null}}),
        ),
        (0, json!({"method": "vss.Requester.SaveAsXml"})),
    ];
    let got: Vec<(usize, Value)> = calls.into_iter().map(|c| (c.conn, c.call)).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn awaiting_a_handle_maps_the_outcome() {
    // Finished after two PENDING answers to unbounded Waits (a server may cap a Wait).
    let fake = async_fake(2, ("VSS_S_ASYNC_FINISHED", AsyncStatus::FINISHED));
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    let waits: Vec<usize> = fake
        .calls()
        .iter()
        .filter(|c| c.call["method"] == "vss.Requester.Wait")
        .map(|c| c.conn)
        .collect();
    assert_eq!(waits, [1, 1, 1], "one connection for the whole wait");

    // A failed operation is ClientError::Vss with its code.
    let fake = async_fake(
        0,
        (
            "VSS_E_WRITERERROR_TIMEOUT",
            ErrorCode::WriterErrorTimeout.hresult(),
        ),
    );
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    let e = bc.do_snapshot_set().await.unwrap().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::WriterErrorTimeout));
    assert!(e.to_string().contains("DoSnapshotSet"), "{e}");

    // A cancelled operation is ClientError::Cancelled.
    let fake = async_fake(0, ("VSS_S_ASYNC_CANCELLED", AsyncStatus::CANCELLED));
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    let e = bc.backup_complete().await.unwrap().await.unwrap_err();
    assert!(matches!(e, ClientError::Cancelled), "{e:?}");

    // The handle outlives the session and can be awaited from another task.
    let fake = async_fake(0, ("VSS_S_ASYNC_FINISHED", AsyncStatus::FINISHED));
    let mut bc = BackupComponents::connect(&fake.socket).await.unwrap();
    let op = bc.gather_writer_metadata().await.unwrap();
    drop(bc);
    tokio::spawn(op.into_future()).await.unwrap().unwrap();
}

#[test]
fn blocking_facade_works_from_a_plain_thread() {
    use vss_client::blocking;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(async { async_fake(0, ("VSS_S_ASYNC_PENDING", AsyncStatus::PENDING)) });
    let socket = fake.socket.clone();

    let calls = std::thread::spawn(move || {
        let mut bc = blocking::BackupComponents::connect(&socket).unwrap();
        assert_eq!(bc.socket(), socket.as_path());
        bc.initialize_for_backup(Some("<BCD/>")).unwrap();
        bc.set_backup_state(false, true, BackupType::Copy, true)
            .unwrap();
        assert_eq!(bc.start_snapshot_set().unwrap(), uuid(SET));
        let snap = bc.add_to_snapshot_set("/srv", None).unwrap();
        let props = bc.get_snapshot_properties(snap).unwrap();
        assert_eq!(props.original_volume, "/srv");

        let op = bc.do_snapshot_set().unwrap();
        assert_eq!(op.id(), uuid(OP));
        assert_eq!(op.query_status().unwrap(), AsyncStatus::Pending);
        assert_eq!(
            op.wait(Some(Duration::from_millis(10))).unwrap(),
            AsyncStatus::Pending
        );
        // Cancel from another plain thread while this one holds the session.
        let other = op.clone();
        assert_eq!(
            std::thread::spawn(move || other.cancel().unwrap())
                .join()
                .unwrap(),
            CancelOutcome::Cancelled
        );
        assert!(matches!(op.join(), Err(ClientError::Cancelled)));

        let e =
            blocking::BackupComponents::connect(socket.with_file_name("absent.sock")).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        drop(bc);
    })
    .join();
    calls.unwrap();

    let methods = fake.methods();
    assert_eq!(
        methods,
        [
            "vss.Requester.InitializeForBackup",
            "vss.Requester.SetBackupState",
            "vss.Requester.StartSnapshotSet",
            "vss.Requester.AddToSnapshotSet",
            "vss.Requester.GetSnapshotProperties",
            "vss.Requester.DoSnapshotSet",
            "vss.Requester.QueryStatus",
            "vss.Requester.Wait",
            "vss.Requester.Cancel",
            "vss.Requester.Wait",
        ]
    );
    assert_eq!(
        fake.call_of("vss.Requester.SetBackupState").call["parameters"],
        json!({"selectComponents": false, "bootableSystemState": true, "backupType": "VSS_BT_COPY",
               "partialFileSupport": true})
    );
    assert_eq!(
        fake.call_of("vss.Requester.InitializeForBackup").call["parameters"],
        json!({"bcd": "<BCD/>"})
    );
    drop(rt);
}

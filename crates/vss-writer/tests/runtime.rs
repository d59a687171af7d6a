//! The runtime over a real socket: a recording writer served in a tempdir, driven by a real
//! varlink client connection (`vss_protocol::transport`).

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use vss_protocol::Empty;
use vss_protocol::writer::BackupShutdownParams;
use vss_writer::*;

/// What a hook of the [`Recorder`] does besides recording.
#[derive(Clone)]
enum Behave {
    Fail(VssError),
    Panic,
    Sleep(Duration),
}

/// A writer that records every hook call as "Hook set" ("Abort -" for `abort(None)`).
struct Recorder {
    calls: Mutex<Vec<String>>,
    behave: HashMap<&'static str, Behave>,
    freeze_timeout_ms: u64,
}

impl Recorder {
    fn new(freeze_timeout_ms: u64, behave: &[(&'static str, Behave)]) -> Arc<Self> {
        Arc::new(Recorder {
            calls: Mutex::new(Vec::new()),
            behave: behave.iter().cloned().collect(),
            freeze_timeout_ms,
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn hook(&self, name: &'static str, set: &str) -> Result<(), VssError> {
        self.calls.lock().unwrap().push(format!("{name} {set}"));
        match self.behave.get(name) {
            None => Ok(()),
            Some(Behave::Fail(e)) => Err(e.clone()),
            Some(Behave::Panic) => panic!("{name} exploded"),
            Some(Behave::Sleep(d)) => {
                std::thread::sleep(*d);
                Ok(())
            }
        }
    }
}

impl Writer for Recorder {
    fn metadata(&self) -> WriterMetadata {
        WriterMetadata {
            writer_id: Uuid::from_u128(0x1234),
            instance_id: Uuid::from_u128(0x5678),
            writer_name: "recorder".into(),
            instance_name: String::new(),
            usage_type: UsageType::UserData,
            source_type: SourceType::Other,
            application_level: ApplicationLevel::FrontEnd,
            freeze_timeout_ms: self.freeze_timeout_ms,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            writer_restore: WriterRestore::Never,
            restore_service: None,
            backup_schema: 0,
            version: Some("1.0".into()),
            exclude_files: vec![],
            components: vec![WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: "data".into(),
                caption: "Data".into(),
                selectable: true,
                selectable_for_restore: false,
                notify_on_backup_complete: true,
                restore_metadata: false,
                component_flags: 0,
                files: vec![FileSpec {
                    path: "/srv/data".into(),
                    filespec: "*".into(),
                    recursive: true,
                    alternate_path: None,
                    backup_type_mask: 0xF0F,
                }],
                log_files: vec![],
                dependencies: vec![],
            }],
        }
    }
    fn prepare_for_backup(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        self.hook("PrepareForBackup", &ev.snapshot_set_id)?;
        Ok(vec![ComponentUpdate {
            logical_path: String::new(),
            name: "data".into(),
            backup_metadata: Some("meta".into()),
            ..Default::default()
        }])
    }
    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("PrepareForSnapshot", &ev.snapshot_set_id)
    }
    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("Freeze", &ev.snapshot_set_id)
    }
    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("Thaw", &ev.snapshot_set_id)
    }
    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        self.hook("PostSnapshot", &ev.snapshot_set_id)
            .map(|()| vec![])
    }
    fn abort(&self, ev: Option<&EventParams>) {
        let set = ev
            .map(|e| e.snapshot_set_id.clone())
            .unwrap_or_else(|| "-".into());
        let _ = self.hook("Abort", &set);
    }
    fn backup_complete(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("BackupComplete", &ev.snapshot_set_id)
    }
    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let _ = self.hook("BackupShutdown", &snapshot_set_id.to_string());
    }
    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("PreRestore", &ev.snapshot_set_id)
    }
    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        self.hook("PostRestore", &ev.snapshot_set_id)
    }
}

/// A runtime serving a writer in a tempdir.
struct Served {
    dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    async fn start(writer: Arc<Recorder>) -> Served {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, writer, None).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        writer: Arc<Recorder>,
        coordinator_uid: Option<u32>,
    ) -> Served {
        let config = RuntimeConfig {
            writers_dir: dir.path().join("writers"),
            socket_name: "recorder.sock".into(),
            coordinator_uid,
        };
        let runtime = WriterRuntime::bind(config).await.expect("bind");
        let path = runtime.socket_path().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(runtime.run(writer, async move {
            let _ = stopped.await;
        }));
        Served {
            dir,
            path,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

fn writer_error(code: ErrorCode) -> VssError {
    VssError::new(code, format!("test failure {}", code.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_and_the_standard_interface() {
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start(rec.clone()).await;
    let mode = std::fs::metadata(&served.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(served.path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o755, "writers dir mode {dir_mode:o}");

    let mut conn = connect(&served.path).await;
    let reply = ok(&mut conn, "Identify", &Empty {}).await;
    let metadata: WriterMetadata = serde_json::from_value(reply["metadata"].clone()).unwrap();
    assert_eq!(metadata, rec.metadata());
    assert_eq!(reply["metadata"]["applicationLevel"], "VSS_APP_FRONT_END");

    let info = call(&mut conn, "org.varlink.service.GetInfo", &Empty {})
        .await
        .unwrap();
    assert_eq!(
        info["interfaces"],
        json!(["org.varlink.service", "vss.Writer"])
    );
    let d = call(
        &mut conn,
        "org.varlink.service.GetInterfaceDescription",
        &json!({"interface": "vss.Writer"}),
    )
    .await
    .unwrap();
    assert_eq!(d["description"].as_str().unwrap(), vss_protocol::WRITER_IDL);
    let e = call(
        &mut conn,
        "org.varlink.service.GetInterfaceDescription",
        &json!({"interface": "x.Y"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.0, "org.varlink.service.InterfaceNotFound");
    assert!(
        rec.calls().is_empty(),
        "Identify calls no event hook: {:?}",
        rec.calls()
    );

    let path = served.path.clone();
    drop(conn);
    served.stop().await;
    assert!(!path.exists(), "the socket is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_and_bad_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let writers = dir.path().join("writers");
    std::fs::create_dir(&writers).unwrap();
    // A stale socket: bound, then its listener closed.
    drop(std::os::unix::net::UnixListener::bind(writers.join("recorder.sock")).unwrap());
    let served = Served::start_in(dir, Recorder::new(60_000, &[]), None).await;
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Identify", &Empty {}).await;
    drop(conn);

    let file = served.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let config = RuntimeConfig {
        writers_dir: served.dir.path().to_owned(),
        socket_name: "file".into(),
        coordinator_uid: None,
    };
    let err = WriterRuntime::bind(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "x",
        "a non-socket is never removed"
    );
    for bad in ["", "a/b", ".."] {
        let err = WriterRuntime::bind(RuntimeConfig {
            socket_name: bad.into(),
            ..config.clone()
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_and_restore_sequence() {
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start(rec.clone()).await;
    let set = new_set();
    let ev = event(&set);
    let mut conn = connect(&served.path).await;

    let r = ok(&mut conn, "PrepareForBackup", &ev).await;
    assert_eq!(
        r,
        json!({"components": [{"logicalPath": "", "name": "data", "backupMetadata": "meta"}]})
    );
    assert_eq!(ok(&mut conn, "PrepareForSnapshot", &ev).await, json!({}));
    assert_eq!(ok(&mut conn, "Freeze", &ev).await, json!({}));
    assert_eq!(ok(&mut conn, "Thaw", &ev).await, json!({}));
    assert_eq!(
        ok(&mut conn, "PostSnapshot", &ev).await,
        json!({}),
        "no updates: components absent"
    );
    assert_eq!(ok(&mut conn, "BackupComplete", &ev).await, json!({}));
    ok(
        &mut conn,
        "BackupShutdown",
        &BackupShutdownParams {
            snapshot_set_id: set.clone(),
        },
    )
    .await;
    let restore = event_without_components(&new_set());
    ok(&mut conn, "PreRestore", &restore).await;
    ok(&mut conn, "PostRestore", &restore).await;
    let rs = &restore.snapshot_set_id;
    assert_eq!(
        rec.calls(),
        vec![
            format!("PrepareForBackup {set}"),
            format!("PrepareForSnapshot {set}"),
            format!("Freeze {set}"),
            format!("Thaw {set}"),
            format!("PostSnapshot {set}"),
            format!("BackupComplete {set}"),
            format!("BackupShutdown {set}"),
            format!("PreRestore {rs}"),
            format!("PostRestore {rs}"),
        ]
    );
    // Closing the connection after Thaw aborts nothing.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.count("Abort"), 0);
    served.stop().await;
    assert_eq!(rec.count("Abort"), 0, "nothing frozen at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hooks_reply_writer_failure() {
    let rec = Recorder::new(
        60_000,
        &[
            (
                "Freeze",
                Behave::Fail(writer_error(ErrorCode::WriterErrorRetryable)),
            ),
            (
                "PrepareForBackup",
                Behave::Fail(writer_error(ErrorCode::WriterErrorOutOfResources)),
            ),
            (
                "PrepareForSnapshot",
                Behave::Fail(VssError::new(ErrorCode::Fail, "disk on fire")),
            ),
            ("PostSnapshot", Behave::Panic),
        ],
    );
    let served = Served::start(rec.clone()).await;
    let ev = event(&new_set());
    let mut conn = connect(&served.path).await;

    let (code, hresult, message) = failure(&mut conn, "Freeze", &ev).await;
    assert_eq!(code, "VSS_E_WRITERERROR_RETRYABLE");
    assert_eq!(hresult, 0x8004_23F3);
    assert_eq!(hresult, 2_147_754_995);
    assert!(message.contains("test failure"), "{message}");

    let (code, hresult, _) = failure(&mut conn, "PrepareForBackup", &ev).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_OUTOFRESOURCES", 0x8004_23F1)
    );

    let (code, hresult, message) = failure(&mut conn, "PrepareForSnapshot", &ev).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_NONRETRYABLE", 0x8004_23F4)
    );
    assert!(
        message.contains("E_FAIL") && message.contains("disk on fire"),
        "{message}"
    );

    let (code, _, message) = failure(&mut conn, "PostSnapshot", &ev).await;
    assert_eq!(code, "VSS_E_WRITERERROR_NONRETRYABLE");
    assert!(
        message.contains("panicked") && message.contains("PostSnapshot exploded"),
        "{message}"
    );

    // The connection still works after failures and a panic; a failed Freeze froze nothing.
    ok(&mut conn, "Identify", &Empty {}).await;
    ok(&mut conn, "Abort", &ev).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.count("Abort"), 1, "{:?}", rec.calls());
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_bad_parameters() {
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start(rec.clone()).await;
    let mut conn = connect(&served.path).await;

    let (name, params) = call(&mut conn, "vss.Writer.Explode", &Empty {})
        .await
        .unwrap_err();
    assert_eq!(name, "org.varlink.service.MethodNotFound");
    assert_eq!(params["method"], "vss.Writer.Explode");
    let (name, _) = call(&mut conn, "com.example.Nope", &Empty {})
        .await
        .unwrap_err();
    assert_eq!(name, "org.varlink.service.InterfaceNotFound");

    let mut bad = serde_json::to_value(event(&new_set())).unwrap();
    bad["backupType"] = json!("VSS_BT_SOMETIMES");
    let (name, params) = call(&mut conn, "vss.Writer.Freeze", &bad)
        .await
        .unwrap_err();
    assert_eq!(name, "org.varlink.service.InvalidParameter");
    assert_eq!(params, json!({"parameter": "backupType"}));
    let (name, params) = call(&mut conn, "vss.Writer.Thaw", &Empty {})
        .await
        .unwrap_err();
    assert_eq!(name, "org.varlink.service.InvalidParameter");
    assert_eq!(params, json!({"parameter": "snapshotSetId"}));
    let (name, _) = call(
        &mut conn,
        "vss.Writer.BackupShutdown",
        &json!({"snapshotSetId": "not-a-uuid"}),
    )
    .await
    .unwrap_err();
    assert_eq!(name, "org.varlink.service.InvalidParameter");

    // components: null is fine.
    ok(
        &mut conn,
        "PrepareForBackup",
        &event_without_components(&new_set()),
    )
    .await;
    assert_eq!(
        rec.calls().len(),
        1,
        "bad calls reach no hook: {:?}",
        rec.calls()
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_timeout_aborts_and_late_thaw_fails() {
    let rec = Recorder::new(200, &[]);
    let served = Served::start(rec.clone()).await;
    let set = new_set();
    let ev = event(&set);
    let mut conn = connect(&served.path).await;

    let start = Instant::now();
    ok(&mut conn, "Freeze", &ev).await;
    let took = wait_until(Duration::from_secs(5), || rec.count("Abort") > 0)
        .await
        .expect("abort hook called");
    let since_freeze = start.elapsed();
    assert!(
        since_freeze >= Duration::from_millis(200),
        "aborted before the timeout: {since_freeze:?}"
    );
    assert!(
        took <= Duration::from_millis(1000),
        "abort came {took:?} after Freeze's reply (timeout 200 ms)"
    );
    assert_eq!(
        rec.calls().last().unwrap(),
        &format!("Abort {set}"),
        "abort gets Freeze's parameters"
    );

    let (code, hresult, _) = failure(&mut conn, "Thaw", &ev).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_TIMEOUT", 0x8004_23F2)
    );
    assert_eq!(
        rec.count("Thaw"),
        0,
        "the thaw hook is not called after the timeout"
    );
    // The coordinator's Abort afterwards is acknowledged without a second abort.
    ok(&mut conn, "Abort", &ev).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.count("Abort"), 1, "{:?}", rec.calls());
    served.stop().await;
    assert_eq!(rec.count("Abort"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thaw_in_time_stops_the_timer() {
    let rec = Recorder::new(200, &[]);
    let served = Served::start(rec.clone()).await;
    let ev = event(&new_set());
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Freeze", &ev).await;
    ok(&mut conn, "Thaw", &ev).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.count("Abort"), 0, "{:?}", rec.calls());
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_while_frozen_aborts_at_once() {
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start(rec.clone()).await;
    let ev = event(&new_set());
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Freeze", &ev).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rec.count("Abort"), 0);
    drop(conn);
    let took = wait_until(Duration::from_secs(5), || rec.count("Abort") > 0)
        .await
        .expect("abort hook called");
    assert!(took < Duration::from_millis(1000), "abort took {took:?}");
    assert_eq!(
        rec.calls().last().unwrap(),
        "Abort -",
        "abort(None): the coordinator vanished"
    );

    // The coordinator, back, aborts the set: acknowledged, not called again; Thaw is refused.
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Abort", &ev).await;
    let (code, _, _) = failure(&mut conn, "Thaw", &ev).await;
    assert_eq!(code, "VSS_E_WRITERERROR_NONRETRYABLE");
    assert_eq!(rec.count("Abort"), 1);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_another_connection_while_frozen() {
    let rec = Recorder::new(300, &[]);
    let served = Served::start(rec.clone()).await;
    let set = new_set();
    let ev = event(&set);
    let mut freeze_conn = connect(&served.path).await;
    ok(&mut freeze_conn, "Freeze", &ev).await;
    let mut abort_conn = connect(&served.path).await;
    ok(&mut abort_conn, "Abort", &ev).await;
    assert_eq!(rec.count("Abort"), 1);
    ok(&mut abort_conn, "Abort", &ev).await;
    drop(freeze_conn);
    // Neither the second Abort, nor the Freeze connection closing, nor the timer aborts again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rec.calls(),
        vec![format!("Freeze {set}"), format!("Abort {set}")]
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_frozen_aborts() {
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start(rec.clone()).await;
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Freeze", &event(&new_set())).await;
    served.stop().await;
    assert_eq!(rec.calls().last().unwrap(), "Abort -");
    assert_eq!(rec.count("Abort"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hook_does_not_block_other_connections() {
    let rec = Recorder::new(
        60_000,
        &[(
            "PrepareForSnapshot",
            Behave::Sleep(Duration::from_millis(1500)),
        )],
    );
    let served = Served::start(rec.clone()).await;
    let path = served.path.clone();
    let slow = tokio::spawn(async move {
        let mut conn = connect(&path).await;
        ok(&mut conn, "PrepareForSnapshot", &event(&new_set())).await;
    });
    wait_until(Duration::from_secs(5), || {
        rec.count("PrepareForSnapshot") > 0
    })
    .await
    .unwrap();
    let start = Instant::now();
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Identify", &Empty {}).await;
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "Identify waited {:?}",
        start.elapsed()
    );
    slow.await.unwrap();
    served.stop().await;
}

/// Run as uid 65534 by [`peers_other_than_root_and_the_coordinator_are_refused`]: connects and
/// sends Freeze; the writer must close the connection without answering. Passes trivially when
/// run on its own.
#[test]
fn helper_non_root_client() {
    use std::io::{Read, Write};
    let Ok(path) = std::env::var("VSS_WRITER_TEST_SOCKET") else {
        return;
    };
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect as a non-root user");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let call = json!({"method": "vss.Writer.Freeze", "parameters": event(&new_set())});
    let _ = s.write_all(format!("{call}\0").as_bytes());
    let mut buf = Vec::new();
    if std::env::var("VSS_WRITER_TEST_EXPECT").as_deref() == Ok("reply") {
        let mut byte = [0u8; 1];
        while s.read(&mut byte).expect("read the reply") == 1 && byte[0] != 0 {
            buf.push(byte[0]);
        }
        let reply: serde_json::Value = serde_json::from_slice(&buf).expect("a JSON reply");
        assert_eq!(reply["parameters"], json!({}), "{reply}");
        return;
    }
    match s.read_to_end(&mut buf) {
        Ok(_) => assert!(
            buf.is_empty(),
            "got a reply: {}",
            String::from_utf8_lossy(&buf)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// Runs [`helper_non_root_client`] as uid 65534 against `socket`; panics unless it passed.
async fn client_as_nobody(socket: &std::path::Path, expect: &str) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "helper_non_root_client",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("VSS_WRITER_TEST_SOCKET", socket)
    .env("VSS_WRITER_TEST_EXPECT", expect)
    .uid(65534)
    .gid(65534);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the client run as uid 65534 (expecting {expect}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_other_than_root_and_the_coordinator_are_refused() {
    if !rustix::process::getuid().is_root() {
        println!("skipped: needs root to run a client as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start_in(dir, rec.clone(), Some(4242)).await;
    // Loosen the mode so that only the credential check stands in the way.
    std::fs::set_permissions(&served.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    client_as_nobody(&served.path, "close").await;
    assert!(rec.calls().is_empty(), "{:?}", rec.calls());
    // Root is still served.
    let mut conn = connect(&served.path).await;
    ok(&mut conn, "Identify", &Empty {}).await;
    drop(conn);
    served.stop().await;

    // The same user, configured as the coordinator, is served.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rec = Recorder::new(60_000, &[]);
    let served = Served::start_in(dir, rec.clone(), Some(65534)).await;
    std::fs::set_permissions(&served.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    client_as_nobody(&served.path, "reply").await;
    assert_eq!(rec.count("Freeze"), 1);
    served.stop().await;
}

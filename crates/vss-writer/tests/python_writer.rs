//! The Python example writer (examples/python-writer/vss_writer.py, on the `varlink` package
//! from PyPI) driven through `vss_protocol::transport`, as vssd would drive it: this checks
//! that the Python library serves vss.Writer.varlink as written, and that the wire formats of
//! both sides agree. Skipped (with a message) when `python3 -c 'import varlink'` fails.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use vss_protocol::Empty;
use vss_protocol::writer::BackupShutdownParams;
use vss_writer::{ApplicationLevel, WriterMetadata};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-writer/vss_writer.py")
}

fn python_varlink_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import varlink"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "skipped: python3 with the varlink package is not available (pip install varlink)"
        );
    }
    ok
}

/// A running vss_writer.py; killed on drop.
struct PyWriter {
    child: Child,
    socket: PathBuf,
    events_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyWriter {
    fn start(name: &str, extra: &[&str]) -> PyWriter {
        let dir = tempfile::tempdir().unwrap();
        let events_log = dir.path().join("events.jsonl");
        let mut child = Command::new("python3")
            .arg(script())
            .arg("--writers-dir")
            .arg(dir.path().join("writers"))
            .args(["--name", name])
            .arg("--events-log")
            .arg(&events_log)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("vss_writer.py printed no 'ready' line");
        let socket = PathBuf::from(
            line.trim_end()
                .strip_prefix("ready ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}")),
        );
        PyWriter {
            child,
            socket,
            events_log,
            _dir: dir,
        }
    }

    /// The events logged so far: (event, params).
    fn events(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(&self.events_log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}"));
                assert_eq!(v["pid"], json!(self.child.id()));
                (v["event"].as_str().unwrap().to_owned(), v["params"].clone())
            })
            .collect()
    }

    fn event_names(&self) -> Vec<String> {
        self.events().into_iter().map(|(e, _)| e).collect()
    }
}

impl Drop for PyWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_writer_serves_the_idl_as_written() {
    if !python_varlink_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("frozen-marker");
    let mut w = PyWriter::start(
        "py",
        &[
            "--component",
            ":data:selectable:/srv/data,/srv/more",
            "--component",
            "app\\logs:journal:fixed:/var/log/app",
            "--level",
            "VSS_APP_BACK_END",
            "--fail-at",
            "PreRestore",
            "--fail-at",
            "PostRestore:NONRETRYABLE",
            "--write-on-freeze",
            marker.to_str().unwrap(),
        ],
    );
    let mode = std::fs::metadata(&w.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let mut conn = connect(&w.socket).await;
    // Identify: the Rust side decodes the Python writer's metadata.
    let reply = ok(&mut conn, "Identify", &Empty {}).await;
    let metadata: WriterMetadata = serde_json::from_value(reply["metadata"].clone())
        .unwrap_or_else(|e| panic!("metadata does not decode: {e}: {reply}"));
    metadata.validate().unwrap();
    assert_eq!(metadata.writer_name, "py");
    assert_eq!(metadata.application_level, ApplicationLevel::BackEnd);
    assert_eq!(metadata.components.len(), 2);
    assert_eq!(metadata.components[0].files.len(), 2);
    assert_eq!(metadata.components[1].logical_path, "app\\logs");
    assert!(!metadata.components[1].selectable);

    let info = call(&mut conn, "org.varlink.service.GetInfo", &Empty {})
        .await
        .unwrap();
    assert!(
        info["interfaces"]
            .as_array()
            .unwrap()
            .contains(&json!("vss.Writer")),
        "{info}"
    );

    // The full backup sequence, in component mode and (PrepareForBackup) with components: null.
    let set = new_set();
    let ev = event(&set);
    ok(
        &mut conn,
        "PrepareForBackup",
        &event_without_components(&set),
    )
    .await;
    ok(&mut conn, "PrepareForSnapshot", &ev).await;
    ok(&mut conn, "Freeze", &ev).await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "freeze");
    ok(&mut conn, "Thaw", &ev).await;
    let mut post = ev.clone();
    post.volumes[0].snapshot_path = Some("/run/vss/snapshots/x".into());
    let r = ok(&mut conn, "PostSnapshot", &post).await;
    assert!(r.get("components").is_none_or(Value::is_null), "{r}");
    ok(&mut conn, "BackupComplete", &ev).await;
    ok(
        &mut conn,
        "BackupShutdown",
        &BackupShutdownParams {
            snapshot_set_id: set.clone(),
        },
    )
    .await;

    // Failures carry code, unsigned hresult and message.
    let restore = event(&new_set());
    let (code, hresult, message) = failure(&mut conn, "PreRestore", &restore).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_RETRYABLE", 2_147_754_995)
    );
    assert!(message.contains("--fail-at"), "{message}");
    let (code, hresult, _) = failure(&mut conn, "PostRestore", &restore).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_NONRETRYABLE", 0x8004_23F4)
    );
    let (name, _) = call(&mut conn, "vss.Writer.Explode", &Empty {})
        .await
        .unwrap_err();
    assert_eq!(name, "org.varlink.service.MethodNotFound");

    assert_eq!(
        w.event_names(),
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Thaw",
            "PostSnapshot",
            "BackupComplete",
            "BackupShutdown",
            "PreRestore",
            "PostRestore"
        ]
    );
    let events = w.events();
    assert_eq!(
        events[1].1["components"],
        Value::Null,
        "PrepareForBackup was sent components: null"
    );
    assert_eq!(events[3].1["snapshotSetId"], json!(set));
    assert_eq!(events[3].1["components"][0]["name"], "data");
    assert_eq!(events[7].1, json!({"snapshotSetId": set}));

    // Closing after Thaw aborts nothing; SIGTERM stops it cleanly and removes the socket.
    drop(conn);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(w.child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "vss_writer.py ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(!w.socket.exists(), "socket left behind");
    assert!(!w.event_names().contains(&"Abort".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_writer_freeze_timeout_and_coordinator_death() {
    if !python_varlink_available() {
        return;
    }
    let w = PyWriter::start("pyfreeze", &["--freeze-timeout-ms", "200"]);
    let set = new_set();
    let ev = event(&set);
    let mut conn = connect(&w.socket).await;
    ok(&mut conn, "Freeze", &ev).await;
    let aborted = wait_until(Duration::from_secs(5), || {
        w.event_names().contains(&"Abort".to_owned())
    })
    .await;
    let took = aborted.expect("the Python writer aborted itself after the freeze timeout");
    assert!(
        took <= Duration::from_millis(1000),
        "abort came {took:?} after Freeze (timeout 200 ms)"
    );
    let (code, hresult, _) = failure(&mut conn, "Thaw", &ev).await;
    assert_eq!(
        (code.as_str(), hresult),
        ("VSS_E_WRITERERROR_TIMEOUT", 0x8004_23F2)
    );
    ok(&mut conn, "Abort", &ev).await;
    assert_eq!(
        w.event_names(),
        ["Freeze", "Abort"],
        "abort at most once per set"
    );

    drop(conn);

    // Frozen on a connection that then closes (the coordinator died): aborted at once, with
    // params null.
    let w = PyWriter::start("pydrop", &[]);
    let mut conn = connect(&w.socket).await;
    ok(&mut conn, "Freeze", &event(&new_set())).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(w.event_names(), ["Freeze"]);
    drop(conn);
    let took = wait_until(Duration::from_secs(5), || w.event_names().len() == 2).await;
    assert!(took.expect("abort after the connection closed") < Duration::from_millis(1000));
    let events = w.events();
    assert_eq!(events[1], ("Abort".to_owned(), Value::Null));
}

//! Every row of docs/bad-input.md: a bad input gets a VSS error (or varlink's own error where
//! the table says so) and changes nothing: the same session goes on and ends with a good backup.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::*;
use serde_json::{Value, json};

/// Sends one raw message (bytes, NUL added) and reads one reply.
fn raw(s: &mut UnixStream, msg: &[u8]) -> Value {
    s.write_all(msg).unwrap();
    s.write_all(b"\0").unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 && b[0] != 0 {
        buf.push(b[0]);
    }
    serde_json::from_slice(&buf)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)))
}

fn call(s: &mut UnixStream, method: &str, params: Value) -> Value {
    raw(
        s,
        json!({ "method": format!("vss.Requester.{method}"), "parameters": params })
            .to_string()
            .as_bytes(),
    )
}

/// The VSS code of an error reply (panics on success).
fn code(v: &Value) -> String {
    assert_eq!(
        v["error"], "vss.Requester.VssError",
        "expected a VssError, got {v}"
    );
    v["parameters"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_answer_and_changes_nothing() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume_str();
    let plain = env.fs.path().join("dir");
    std::fs::create_dir(&plain).unwrap();
    let link = env.dir.path().join("link-to-volume");
    std::os::unix::fs::symlink(&vol, &link).unwrap();
    env.start_vssd(&[]);
    let mut s = UnixStream::connect(env.socket()).unwrap();

    // Messages that are not varlink calls.
    assert_eq!(code(&raw(&mut s, b"{not json")), "E_INVALIDARG");
    assert_eq!(code(&raw(&mut s, b"[1,2,3]")), "E_INVALIDARG");
    assert_eq!(code(&raw(&mut s, br#"{"parameters":{}}"#)), "E_INVALIDARG");
    // Unknown methods and interfaces: varlink's own errors.
    let v = call(&mut s, "NoSuchMethod", json!({}));
    assert_eq!(v["error"], "org.varlink.service.MethodNotFound", "{v}");
    let v = raw(&mut s, br#"{"method":"vss.Nope.X"}"#);
    assert_eq!(v["error"], "org.varlink.service.InterfaceNotFound", "{v}");

    assert!(
        call(&mut s, "InitializeForBackup", json!({}))
            .get("error")
            .is_none()
    );
    let rows: Vec<(&str, Value, &str)> = vec![
        ("SetContext", json!({ "context": "backup" }), "E_INVALIDARG"),
        ("SetContext", json!({ "context": 12345 }), "E_INVALIDARG"),
        ("SetContext", json!({}), "E_INVALIDARG"),
        (
            "SetContext",
            json!({ "context": 0, "extra": 1 }),
            "E_INVALIDARG",
        ),
        (
            "SetBackupState",
            json!({ "selectComponents": true, "bootableSystemState": false, "backupType": "FULL", "partialFileSupport": false }),
            "E_INVALIDARG",
        ),
        (
            "AddComponent",
            json!({ "instanceId": "nope", "writerId": "nope", "componentType": "VSS_CT_FILEGROUP", "name": "x" }),
            "E_INVALIDARG",
        ),
        (
            "QueryStatus",
            json!({ "operation": "not-a-uuid" }),
            "E_INVALIDARG",
        ),
        (
            "QueryStatus",
            json!({ "operation": "6ba7b810-9dad-11d1-80b4-00c04fd430c8" }),
            "VSS_E_OBJECT_NOT_FOUND",
        ),
        (
            "GetSnapshotProperties",
            json!({ "snapshotId": 7 }),
            "E_INVALIDARG",
        ),
        (
            "DeleteSnapshots",
            json!({ "sourceId": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "sourceType": "VSS_OBJECT_VOLUME", "forceDelete": false }),
            "E_INVALIDARG",
        ),
        (
            "DeleteSnapshots",
            json!({ "sourceId": "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "sourceType": "VSS_OBJECT_SNAPSHOT", "forceDelete": false }),
            "VSS_E_OBJECT_NOT_FOUND",
        ),
        (
            "AddToSnapshotSet",
            json!({ "volume": vol }),
            "VSS_E_BAD_STATE",
        ),
    ];
    for (method, params, want) in &rows {
        let v = call(&mut s, method, params.clone());
        assert_eq!(&code(&v), want, "{method}({params}) -> {v}");
    }
    let set = call(&mut s, "StartSnapshotSet", json!({}));
    assert!(set.get("error").is_none(), "{set}");
    let volume_rows: Vec<(String, &str)> = vec![
        ("relative/path".into(), "E_INVALIDARG"),
        (
            format!(
                "{vol}/../{}",
                std::path::Path::new(&vol)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            ),
            "E_INVALIDARG",
        ),
        (link.to_str().unwrap().into(), "E_INVALIDARG"),
        (format!("{vol}/missing"), "VSS_E_OBJECT_NOT_FOUND"),
        ("/proc".into(), "VSS_E_VOLUME_NOT_SUPPORTED"),
    ];
    for (volume, want) in &volume_rows {
        let v = call(&mut s, "AddToSnapshotSet", json!({ "volume": volume }));
        assert_eq!(&code(&v), want, "AddToSnapshotSet({volume}) -> {v}");
    }
    let v = call(
        &mut s,
        "AddToSnapshotSet",
        json!({ "volume": vol, "providerId": "not-a-uuid" }),
    );
    assert_eq!(code(&v), "E_INVALIDARG");
    // Nothing above changed the session: the set is empty and the good volume goes in once.
    let good = call(&mut s, "AddToSnapshotSet", json!({ "volume": vol }));
    assert!(good.get("error").is_none(), "{good}");
    let v = call(&mut s, "DoSnapshotSet", json!({}));
    assert_eq!(
        code(&v),
        "VSS_E_BAD_STATE",
        "writers context without PrepareForBackup: {v}"
    );
    drop(s);

    // A BCD that is not valid XML, on a fresh session.
    let mut r = UnixStream::connect(env.socket()).unwrap();
    let v = call(
        &mut r,
        "InitializeForRestore",
        json!({ "bcd": "<BACKUP_COMPONENTS" }),
    );
    assert_eq!(code(&v), "VSS_E_INVALID_XML_DOCUMENT");
    let v = call(
        &mut r,
        "InitializeForBackup",
        json!({ "bcd": "<WRITER_METADATA version=\"1\"/>" }),
    );
    assert_eq!(code(&v), "VSS_E_INVALID_XML_DOCUMENT");
    // ... and the session can still be initialized.
    assert!(
        call(&mut r, "InitializeForBackup", json!({}))
            .get("error")
            .is_none()
    );
    let _ = plain;
}

/// A session may start at most 256 asynchronous operations (GatherWriterStatus can repeat);
/// beyond that the call fails with E_OUTOFMEMORY and the session still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_per_session_are_limited() {
    let Some(mut env) = Env::new() else { return };
    env.start_vssd(&[]);
    let mut s = UnixStream::connect(env.socket()).unwrap();
    assert!(
        call(&mut s, "InitializeForBackup", json!({}))
            .get("error")
            .is_none()
    );
    let mut started = 0;
    let mut refused = None;
    for method in std::iter::once("GatherWriterMetadata")
        .chain(std::iter::repeat("GatherWriterStatus"))
        .take(300)
    {
        let v = call(&mut s, method, json!({}));
        match v["parameters"]["operation"].as_str() {
            Some(op) => {
                started += 1;
                let w = call(&mut s, "Wait", json!({ "operation": op }));
                assert_eq!(w["parameters"]["code"], "VSS_S_ASYNC_FINISHED", "{w}");
            }
            None => {
                refused = Some(code(&v));
                break;
            }
        }
    }
    assert_eq!(started, 256);
    assert_eq!(refused.as_deref(), Some("E_OUTOFMEMORY"));
    // Reads still work.
    assert!(
        call(&mut s, "GetWriterStatus", json!({}))
            .get("error")
            .is_none()
    );
}

/// vssd's resident memory in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A message larger than 4 MiB is refused while it arrives: vssd reads about 4 MiB of it,
/// answers E_INVALIDARG and closes the connection, so the sender cannot push the rest (64 MiB
/// here) and vssd's memory does not grow by it. Other connections are served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_4_mib_is_refused_as_it_arrives() {
    let Some(mut env) = Env::new() else { return };
    env.start_vssd(&[]);
    let pid = env.vssd.as_ref().unwrap().pid();
    let before = rss_kib(pid);
    let mut s = UnixStream::connect(env.socket()).unwrap();
    s.set_write_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // A call whose parameters never end: 64 MiB of a JSON string.
    let mut sent = 0usize;
    let mut refused = None;
    let head = br#"{"method":"vss.Requester.InitializeForBackup","parameters":{"bcd":""#;
    s.write_all(head).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    while sent < 64 << 20 {
        if let Err(e) = s.write_all(&chunk) {
            refused = Some(e);
            break;
        }
        sent += chunk.len();
    }
    let e = refused.expect("vssd took 64 MiB of one message");
    assert!(sent < 16 << 20, "vssd read {sent} bytes of one message");
    eprintln!("the sender was cut off after {sent} bytes: {e}");
    // The answer vssd sent before closing.
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let reply: Value = serde_json::from_slice(buf.split(|b| *b == 0).next().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
    assert_eq!(code(&reply), "E_INVALIDARG", "{reply}");
    assert!(
        reply["parameters"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 4194304 bytes"),
        "{reply}"
    );
    let after = rss_kib(pid);
    eprintln!("vssd RSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + 32 * 1024,
        "vssd's memory grew from {before} to {after} KiB"
    );
    // vssd goes on serving.
    let mut s = UnixStream::connect(env.socket()).unwrap();
    assert!(
        call(&mut s, "InitializeForBackup", json!({}))
            .get("error")
            .is_none()
    );
}

//! Helpers shared by the integration tests: event parameters and a raw client.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use vss_protocol::Decoded;
use vss_protocol::transport::{self, Connection};
use vss_writer::{BackupType, ComponentType, EventComponent, EventParams, EventVolume};

/// A reply: the parameters, or the error name and its parameters.
pub type Reply = Result<Value, (String, Value)>;

/// Parameters of an event for set `set`, in component mode with one component.
pub fn event(set: &str) -> EventParams {
    EventParams {
        snapshot_set_id: set.to_owned(),
        context: 0,
        backup_type: BackupType::Full,
        select_components: true,
        bootable_system_state: false,
        partial_file_support: false,
        volumes: vec![EventVolume {
            volume: "/".to_owned(),
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            snapshot_path: None,
        }],
        components: Some(vec![EventComponent {
            component_type: ComponentType::FileGroup,
            logical_path: String::new(),
            name: "data".to_owned(),
            backup_options: None,
            previous_backup_stamp: None,
            backup_stamp: None,
            backup_metadata: None,
            backup_succeeded: None,
            restore_options: None,
            additional_restores: None,
            file_restore_status: None,
            restore_target: None,
            alternate_locations: None,
        }]),
    }
}

/// The same without components (non-component mode: `components: null`).
pub fn event_without_components(set: &str) -> EventParams {
    EventParams {
        components: None,
        select_components: false,
        ..event(set)
    }
}

/// A new set id.
pub fn new_set() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Connects to a writer socket.
pub async fn connect(path: &Path) -> Connection {
    transport::connect(path)
        .await
        .expect("connect to the writer")
}

/// Calls `method` (fully qualified) with `params`, with a 10 s deadline.
pub async fn call<P: Serialize>(conn: &mut Connection, method: &str, params: &P) -> Reply {
    match transport::call_with_timeout::<_, Value>(conn, method, params, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
    {
        Decoded::Ok(v) => Ok(v),
        Decoded::Error { name, parameters } => Err((name, parameters)),
    }
}

/// Calls the event `name` of vss.Writer with `params`, expecting success.
pub async fn ok<P: Serialize>(conn: &mut Connection, name: &str, params: &P) -> Value {
    call(conn, &format!("vss.Writer.{name}"), params)
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e:?}"))
}

/// Calls the event `name`, expecting a WriterFailure; returns (code, hresult, message).
pub async fn failure<P: Serialize>(
    conn: &mut Connection,
    name: &str,
    params: &P,
) -> (String, u64, String) {
    match call(conn, &format!("vss.Writer.{name}"), params).await {
        Ok(v) => panic!("{name} succeeded with {v} but should have failed"),
        Err((error, p)) => {
            assert_eq!(error, "vss.Writer.WriterFailure", "{p}");
            (
                p["code"].as_str().expect("code").to_owned(),
                p["hresult"].as_u64().expect("hresult"),
                p["message"].as_str().unwrap_or_default().to_owned(),
            )
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns how long it took.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

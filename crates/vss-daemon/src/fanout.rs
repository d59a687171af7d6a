//! Delivering events to writers: enumerate the writers directory, call each writer with a
//! deadline, in parallel, and turn every reply (or its absence) into an [`EventOutcome`].
//!
//! **Architecture Invariant:** nothing here decides *who* gets an event or what a failure means
//! for the session; that is the model's (`vss_model::writers`, `vss_model::session`). This
//! module only talks to sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use vss_model::{ErrorCode, Id, VssError, WriterEvent, wmd::WriterMetadata, writers::EventOutcome};
use vss_protocol::{
    Decoded,
    transport::{self, CallError, Connection},
    writer::{ComponentsReply, ERROR_WRITER_FAILURE, IdentifyReply},
};

/// The uids vssd talks to as writers (the socket's owner and the peer process), set once when
/// the engine starts; root only by default.
static WRITER_UIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

/// Sets the writer allow-list (the first call wins; one engine per process).
pub fn set_writer_uids(uids: Vec<u32>) {
    let _ = WRITER_UIDS.set(uids);
}

fn writer_uid_allowed(uid: u32) -> bool {
    WRITER_UIDS.get().map_or(uid == 0, |u| u.contains(&uid))
}

/// Connects to a writer socket if it is owned by, and served by a process running as, an
/// allowed uid (like an unauthorized VSS writer, anything else is skipped and logged).
async fn connect_writer(path: &Path) -> Result<Connection, CallError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        tracing::warn!(socket = %path.display(), "skipping writer: {why}");
        CallError::Connect {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
        }
    };
    let owner = std::fs::symlink_metadata(path)
        .map_err(|e| CallError::Connect {
            path: path.to_owned(),
            source: e,
        })?
        .uid();
    if !writer_uid_allowed(owner) {
        return Err(refuse(format!(
            "the socket is owned by uid {owner}, which is not in the writer allow-list"
        )));
    }
    let mut conn = transport::connect(path).await?;
    let peer = conn
        .peer_credentials()
        .await
        .map_err(|e| CallError::Io(format!("peer credentials of {}: {e}", path.display())))?
        .unix_user_id()
        .as_raw();
    if !writer_uid_allowed(peer) {
        return Err(refuse(format!(
            "the writer process runs as uid {peer}, which is not in the writer allow-list"
        )));
    }
    Ok(conn)
}

/// A writer socket found in the writers directory.
#[derive(Debug, Clone)]
pub struct WriterSocket {
    /// Its path.
    pub path: PathBuf,
}

/// Lists the sockets in the writers directory (entries that are Unix sockets), sorted by name
/// so that every broadcast sees writers in the same order.
pub fn enumerate(writers_dir: &Path) -> Vec<WriterSocket> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(rd) = std::fs::read_dir(writers_dir) else {
        tracing::warn!(dir = %writers_dir.display(), "writers directory is not readable; no writers");
        return Vec::new();
    };
    let mut out: Vec<WriterSocket> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_socket()).unwrap_or(false))
        .map(|e| WriterSocket { path: e.path() })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    if out.len() > MAX_WRITERS {
        tracing::warn!(
            dir = %writers_dir.display(),
            sockets = out.len(),
            "more writer sockets than vssd talks to; the first {MAX_WRITERS} by name are used"
        );
        out.truncate(MAX_WRITERS);
    }
    out
}

/// The most writer sockets one Identify broadcast reaches.
pub const MAX_WRITERS: usize = 4096;

/// The result of one writer's Identify.
#[derive(Debug)]
pub enum Identified {
    /// Valid metadata.
    Ok(WriterMetadata),
    /// The writer answered with metadata that fails validation (e.g. level AUTO): it fails
    /// Identify.
    Invalid(WriterMetadata, VssError),
    /// No usable answer; the writer is simply absent.
    Absent(String),
}

/// Broadcasts Identify to every socket in the directory, in parallel.
pub async fn identify_all(
    writers_dir: &Path,
    deadline: Duration,
) -> Vec<(WriterSocket, Identified)> {
    let mut set = JoinSet::new();
    for (i, sock) in enumerate(writers_dir).into_iter().enumerate() {
        set.spawn(async move {
            let r = identify_one(&sock.path, deadline).await;
            (i, sock, r)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(x) = joined {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, s, r)| (s, r)).collect()
}

async fn identify_one(path: &Path, deadline: Duration) -> Identified {
    let fut = async {
        let mut conn = connect_writer(path).await?;
        transport::call::<_, IdentifyReply>(
            &mut conn,
            &WriterEvent::Identify.method(),
            &vss_protocol::Empty {},
        )
        .await
    };
    match tokio::time::timeout(deadline, fut).await {
        Err(_) => Identified::Absent(format!("no reply to Identify within {deadline:?}")),
        Ok(Err(e)) => Identified::Absent(e.to_string()),
        Ok(Ok(Decoded::Error { name, parameters })) => {
            Identified::Absent(format!("Identify failed: {name} {parameters}"))
        }
        Ok(Ok(Decoded::Ok(reply))) => match reply.metadata.validate() {
            Ok(()) => Identified::Ok(reply.metadata),
            Err(e) => Identified::Invalid(reply.metadata, e),
        },
    }
}

/// The outcome of one event call, with the reply's component updates if any.
#[derive(Debug)]
pub struct Delivered {
    /// What happened.
    pub outcome: EventOutcome,
    /// PrepareForBackup and PostSnapshot replies.
    pub updates: Option<ComponentsReply>,
    /// How long the writer took (connect and call).
    pub elapsed: Duration,
}

/// Turns a call result into an outcome. `what` names the event for messages.
pub fn interpret(
    event: WriterEvent,
    r: Result<Decoded<serde_json::Value>, CallError>,
) -> Delivered {
    let none = |outcome| Delivered {
        outcome,
        updates: None,
        elapsed: Duration::ZERO,
    };
    match r {
        Ok(Decoded::Ok(v)) => {
            let updates = match event {
                WriterEvent::PrepareForBackup | WriterEvent::PostSnapshot => {
                    match serde_json::from_value::<ComponentsReply>(v) {
                        Ok(u) => Some(u),
                        Err(e) => {
                            return none(EventOutcome::Failed(VssError::new(
                                ErrorCode::WriterErrorNonRetryable,
                                format!("the writer's {event} reply is malformed: {e}"),
                            )));
                        }
                    }
                }
                _ => None,
            };
            Delivered {
                outcome: EventOutcome::Succeeded,
                updates,
                elapsed: Duration::ZERO,
            }
        }
        Ok(Decoded::Error { name, parameters }) => {
            let mut err = transport::error_reply_to_vss(
                &name,
                &parameters,
                ErrorCode::WriterErrorNonRetryable,
            );
            if name != ERROR_WRITER_FAILURE || !err.code.is_writer_failure() {
                // A writer may only report writer-failure codes; anything else (including
                // varlink's own errors) is a non-retryable failure of that writer.
                err = VssError::new(
                    ErrorCode::WriterErrorNonRetryable,
                    format!(
                        "{event} failed with {} ({}): {}",
                        name,
                        err.code.name(),
                        err.message
                    ),
                );
            }
            none(EventOutcome::Failed(err))
        }
        Err(CallError::Timeout(d)) => none(EventOutcome::NotResponding(format!(
            "no reply to {event} within {d:?}"
        ))),
        Err(CallError::Malformed(m)) => none(EventOutcome::Failed(VssError::new(
            ErrorCode::WriterErrorNonRetryable,
            format!("malformed reply to {event}: {m}"),
        ))),
        Err(e @ CallError::TooLarge) => none(EventOutcome::Failed(VssError::new(
            ErrorCode::WriterErrorNonRetryable,
            format!("reply to {event}: {e}"),
        ))),
        Err(e @ (CallError::Io(_) | CallError::Connect { .. })) => {
            none(EventOutcome::NotResponding(format!("{event}: {e}")))
        }
    }
}

/// Calls `event` on a held connection with a deadline.
pub async fn call_on<P: Serialize>(
    conn: &mut Connection,
    event: WriterEvent,
    params: &P,
    deadline: Duration,
) -> Delivered {
    let started = std::time::Instant::now();
    let r = transport::call_with_timeout(conn, &event.method(), params, deadline).await;
    let mut d = interpret(event, r);
    d.elapsed = started.elapsed();
    d
}

/// Connects and calls `event`, the whole within `deadline`. Returns the connection when the
/// call succeeded, so that it can be held for the next events.
pub async fn connect_and_call<P: Serialize>(
    socket: &Path,
    event: WriterEvent,
    params: &P,
    deadline: Duration,
) -> (Delivered, Option<Connection>) {
    let fut = async {
        let mut conn = match connect_writer(socket).await {
            Ok(c) => c,
            Err(e) => return (interpret(event, Err(e)), None),
        };
        let d = call_on(&mut conn, event, params, deadline).await;
        (d, Some(conn))
    };
    match tokio::time::timeout(deadline, fut).await {
        Ok((d, conn)) => {
            let keep = matches!(d.outcome, EventOutcome::Succeeded);
            (d, if keep { conn } else { None })
        }
        Err(_) => (interpret(event, Err(CallError::Timeout(deadline))), None),
    }
}

/// One target of a broadcast: a writer instance, its socket and its event parameters.
#[derive(Debug, Clone)]
pub struct Target {
    /// Writer instance.
    pub instance_id: Id,
    /// Its socket.
    pub socket: PathBuf,
    /// The event parameters for it (JSON object).
    pub params: serde_json::Value,
}

/// Sends `event` to every target in parallel, each on a fresh connection. When `cancel`
/// resolves, calls still in flight are dropped and writers not yet reached get nothing (Cancel);
/// the outcomes collected so far are returned.
pub async fn broadcast(
    targets: Vec<Target>,
    event: WriterEvent,
    deadline: Duration,
    cancel: impl std::future::Future<Output = ()>,
) -> Vec<(Id, Delivered)> {
    let mut set = JoinSet::new();
    for t in targets {
        set.spawn(async move {
            let (d, _conn) = connect_and_call(&t.socket, event, &t.params, deadline).await;
            (t.instance_id, d)
        });
    }
    let mut out = Vec::new();
    tokio::pin!(cancel);
    loop {
        tokio::select! {
            j = set.join_next() => match j {
                None => break,
                Some(Ok(x)) => out.push(x),
                Some(Err(e)) => tracing::error!("event task for {event} failed: {e}"),
            },
            _ = &mut cancel => {
                tracing::info!(%event, "cancelled; {} writer(s) not waited for", set.len());
                set.abort_all();
                break;
            }
        }
    }
    out
}

/// A cancel future that never resolves.
pub async fn never() {
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failure(
        name: &str,
        code: &str,
        hresult: u32,
    ) -> Result<Decoded<serde_json::Value>, CallError> {
        Ok(Decoded::Error {
            name: name.into(),
            parameters: json!({ "code": code, "hresult": hresult, "message": "m" }),
        })
    }

    #[test]
    fn replies_become_outcomes() {
        let ok = interpret(WriterEvent::Freeze, Ok(Decoded::Ok(json!({}))));
        assert_eq!(ok.outcome, EventOutcome::Succeeded);
        assert!(ok.updates.is_none());

        let upd = interpret(
            WriterEvent::PostSnapshot,
            Ok(Decoded::Ok(
                json!({ "components": [{ "logicalPath": "", "name": "db", "backupStamp": "s" }] }),
            )),
        );
        assert_eq!(upd.outcome, EventOutcome::Succeeded);
        assert_eq!(
            upd.updates.unwrap().components.unwrap()[0]
                .backup_stamp
                .as_deref(),
            Some("s")
        );

        // A malformed PostSnapshot reply is a non-retryable failure of that writer.
        let bad = interpret(
            WriterEvent::PostSnapshot,
            Ok(Decoded::Ok(json!({ "components": 7 }))),
        );
        assert!(
            matches!(bad.outcome, EventOutcome::Failed(ref e) if e.code == ErrorCode::WriterErrorNonRetryable)
        );

        // A writer failure keeps its code.
        let f = interpret(
            WriterEvent::Freeze,
            failure(
                ERROR_WRITER_FAILURE,
                "VSS_E_WRITERERROR_RETRYABLE",
                0x8004_23F3,
            ),
        );
        assert!(
            matches!(f.outcome, EventOutcome::Failed(ref e) if e.code == ErrorCode::WriterErrorRetryable)
        );

        // A code a writer may not report, or another error name, is NONRETRYABLE.
        let f = interpret(
            WriterEvent::Freeze,
            failure(ERROR_WRITER_FAILURE, "VSS_E_BAD_STATE", 0x8004_2301),
        );
        assert!(
            matches!(f.outcome, EventOutcome::Failed(ref e) if e.code == ErrorCode::WriterErrorNonRetryable && e.message.contains("VSS_E_BAD_STATE"))
        );
        let f = interpret(
            WriterEvent::Thaw,
            Ok(Decoded::Error {
                name: "org.varlink.service.MethodNotFound".into(),
                parameters: json!({"method": "vss.Writer.Thaw"}),
            }),
        );
        assert!(
            matches!(f.outcome, EventOutcome::Failed(ref e) if e.code == ErrorCode::WriterErrorNonRetryable)
        );

        // Silence and broken connections are "not responding".
        let t = interpret(
            WriterEvent::Freeze,
            Err(CallError::Timeout(Duration::from_secs(1))),
        );
        assert!(matches!(t.outcome, EventOutcome::NotResponding(_)));
        let io = interpret(
            WriterEvent::BackupComplete,
            Err(CallError::Io("reset".into())),
        );
        assert!(matches!(io.outcome, EventOutcome::NotResponding(_)));
    }

    #[test]
    fn enumerate_lists_only_sockets_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("not-a-socket.sock"), b"").unwrap();
        let _b = std::os::unix::net::UnixListener::bind(dir.path().join("b.sock")).unwrap();
        let _a = std::os::unix::net::UnixListener::bind(dir.path().join("a.sock")).unwrap();
        let names: Vec<_> = enumerate(dir.path())
            .into_iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.sock", "b.sock"]);
        assert!(enumerate(&dir.path().join("missing")).is_empty());
    }
}

//! [`Async`]: a handle on one asynchronous operation of vssd, like `IVssAsync` (vss-model.md
//! §2.5).
//!
//! GatherWriterMetadata, PrepareForBackup, DoSnapshotSet, BackupComplete and GatherWriterStatus
//! return at once with an operation id; the operation runs in vssd. The handle asks about it with
//! `QueryStatus`, `Wait` and `Cancel`.
//!
//! Each of those calls opens a **fresh connection** of its own instead of using the session's:
//! the protocol lets any connection of the same uid ask about an operation id, and so a long
//! `Wait` never blocks the session connection, and an [`Async`] can be cloned into another task
//! (to cancel while someone waits) or outlive the [`crate::BackupComponents`] that started it
//! (though dropping that ends the session, which aborts what is still running).
//!
//! Awaiting an [`Async`] (it implements [`IntoFuture`]) waits for the end and turns it into a
//! `Result`: finished is `Ok(())`, a failure is [`ClientError::Vss`], a cancellation is
//! [`ClientError::Cancelled`].

use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;
use vss_model::{AsyncStatus, ErrorCode, VssError};
use vss_protocol::requester::{OperationParam, StatusReply, WaitParam};
use vss_protocol::transport::Connection;

use crate::{ClientError, wire};

/// How long [`Async::join`] pauses before asking again when an unbounded `Wait` nevertheless
/// came back `VSS_S_ASYNC_PENDING` (a server may cap how long one `Wait` blocks).
const PENDING_RETRY: Duration = Duration::from_millis(50);

/// An asynchronous operation running in vssd (`IVssAsync`).
#[derive(Debug, Clone)]
pub struct Async {
    /// The operation id, parsed.
    id: Uuid,
    /// The operation id exactly as vssd sent it; sent back verbatim.
    operation: String,
    /// The IVssBackupComponents method that started it, for messages.
    method: &'static str,
    /// vssd's socket, for the fresh connections.
    socket: PathBuf,
}

/// What [`Async::cancel`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The operation was running and is cancelled now (`S_OK`).
    Cancelled,
    /// The operation was not cancelled by this call; this is the status it already had
    /// (`VSS_S_ASYNC_FINISHED`, `VSS_S_ASYNC_CANCELLED` if cancelled earlier, or its failure).
    NotCancelled(AsyncStatus),
}

impl Async {
    /// A handle on the operation `operation` (an id as sent by vssd) started by `method`.
    pub(crate) fn new(
        socket: &Path,
        method: &'static str,
        operation: String,
    ) -> Result<Self, ClientError> {
        let id = wire::parse_id(&format!("operation id returned by {method}"), &operation)?;
        Ok(Async {
            id,
            operation,
            method,
            socket: socket.to_owned(),
        })
    }

    /// The operation id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The operation id as vssd sent it (the `operation` string of the protocol).
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The `vss.Requester` method that started the operation, e.g. `"DoSnapshotSet"`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The socket of the vssd running the operation.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `IVssAsync::QueryStatus`: the operation's status now, without waiting.
    pub async fn query_status(&self) -> Result<AsyncStatus, ClientError> {
        let mut conn = wire::connect(&self.socket).await?;
        let reply: StatusReply = wire::call(
            &mut conn,
            "QueryStatus",
            &OperationParam {
                operation: self.operation.clone(),
            },
        )
        .await?;
        self.status(&reply)
    }

    /// `IVssAsync::Wait`: waits until the operation ends or `timeout` elapses (`None` waits as
    /// long as it takes), then returns its status, which is [`AsyncStatus::Pending`] if the
    /// timeout elapsed first. Like `IVssAsync::Wait`, success of this call says nothing about
    /// the operation: look at the status (or await the handle instead).
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<AsyncStatus, ClientError> {
        let mut conn = wire::connect(&self.socket).await?;
        self.wait_on(&mut conn, timeout).await
    }

    /// `IVssAsync::Cancel`: asks vssd to cancel the operation. Whether that happened, or what
    /// state the operation already was in, is the [`CancelOutcome`].
    pub async fn cancel(&self) -> Result<CancelOutcome, ClientError> {
        let mut conn = wire::connect(&self.socket).await?;
        let reply: StatusReply = wire::call(
            &mut conn,
            "Cancel",
            &OperationParam {
                operation: self.operation.clone(),
            },
        )
        .await?;
        if reply.code == "S_OK" {
            return Ok(CancelOutcome::Cancelled);
        }
        self.status(&reply).map(CancelOutcome::NotCancelled)
    }

    /// Waits without a timeout for the operation to end and turns its outcome into a `Result`:
    /// `VSS_S_ASYNC_FINISHED` is `Ok(())`, a failure is [`ClientError::Vss`] with its code,
    /// `VSS_S_ASYNC_CANCELLED` is [`ClientError::Cancelled`]. This is what awaiting the handle
    /// does.
    pub async fn join(self) -> Result<(), ClientError> {
        let mut conn = wire::connect(&self.socket).await?;
        loop {
            match self.wait_on(&mut conn, None).await? {
                AsyncStatus::Finished => return Ok(()),
                AsyncStatus::Cancelled => return Err(ClientError::Cancelled),
                AsyncStatus::Failed(e) => return Err(ClientError::Vss(e)),
                AsyncStatus::Pending => tokio::time::sleep(PENDING_RETRY).await,
            }
        }
    }

    /// One `Wait` call on `conn`.
    async fn wait_on(
        &self,
        conn: &mut Connection,
        timeout: Option<Duration>,
    ) -> Result<AsyncStatus, ClientError> {
        let params = WaitParam {
            operation: self.operation.clone(),
            timeout_ms: timeout.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let reply: StatusReply = wire::call(conn, "Wait", &params).await?;
        self.status(&reply)
    }

    /// Interprets a status reply of this operation.
    fn status(&self, reply: &StatusReply) -> Result<AsyncStatus, ClientError> {
        status_from_reply(
            reply,
            &format!("{} (operation {})", self.method, self.operation),
        )
    }
}

impl IntoFuture for Async {
    type Output = Result<(), ClientError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'static>>;

    /// See [`Async::join`].
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.join())
    }
}

/// Maps a wire `StatusReply` to an [`AsyncStatus`]: the three `VSS_S_ASYNC_*` codes by name (or,
/// failing that, by HRESULT), any other known error code (by name, else by HRESULT) as
/// [`AsyncStatus::Failed`]. An unknown failure HRESULT is a failure with `VSS_E_UNEXPECTED`; a
/// success code that is not one of the three (e.g. `S_OK`) is a protocol violation.
pub(crate) fn status_from_reply(
    reply: &StatusReply,
    what: &str,
) -> Result<AsyncStatus, ClientError> {
    let failed = |code: ErrorCode| {
        let message = match &reply.message {
            Some(m) => format!("{what} failed: {m}"),
            None => format!("{what} failed"),
        };
        Ok(AsyncStatus::Failed(VssError::new(code, message)))
    };
    match reply.code.as_str() {
        "VSS_S_ASYNC_PENDING" => return Ok(AsyncStatus::Pending),
        "VSS_S_ASYNC_FINISHED" => return Ok(AsyncStatus::Finished),
        "VSS_S_ASYNC_CANCELLED" => return Ok(AsyncStatus::Cancelled),
        name => {
            if let Some(code) = ErrorCode::from_name(name) {
                return failed(code);
            }
        }
    }
    match reply.hresult {
        AsyncStatus::PENDING => Ok(AsyncStatus::Pending),
        AsyncStatus::FINISHED => Ok(AsyncStatus::Finished),
        AsyncStatus::CANCELLED => Ok(AsyncStatus::Cancelled),
        hr => match ErrorCode::from_hresult(hr) {
            Some(code) => failed(code),
            None if hr & 0x8000_0000 != 0 => {
                Ok(AsyncStatus::Failed(VssError::unexpected(format!(
                    "{what} failed with unknown code {} ({hr:#010x})",
                    reply.code
                ))))
            }
            None => Err(ClientError::Protocol(format!(
                "{what}: status {} ({hr:#010x}) is not an IVssAsync status",
                reply.code
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: &str, hresult: u32) -> StatusReply {
        StatusReply {
            code: code.to_owned(),
            hresult,
            message: None,
        }
    }

    fn map(code: &str, hresult: u32) -> Result<AsyncStatus, ClientError> {
        status_from_reply(&reply(code, hresult), "DoSnapshotSet (operation x)")
    }

    #[test]
    fn async_codes_by_name_or_hresult() {
        assert_eq!(
            map("VSS_S_ASYNC_PENDING", 0x0004_2309).unwrap(),
            AsyncStatus::Pending
        );
        assert_eq!(
            map("VSS_S_ASYNC_FINISHED", 0x0004_230A).unwrap(),
            AsyncStatus::Finished
        );
        assert_eq!(
            map("VSS_S_ASYNC_CANCELLED", 0x0004_230B).unwrap(),
            AsyncStatus::Cancelled
        );
        // An unknown name falls back to the HRESULT.
        assert_eq!(
            map("SOMETHING", 0x0004_230A).unwrap(),
            AsyncStatus::Finished
        );
    }

    #[test]
    fn failures_keep_their_code() {
        let AsyncStatus::Failed(e) = map("VSS_E_WRITERERROR_TIMEOUT", 0x8004_23F2).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::WriterErrorTimeout);
        assert_eq!(e.message, "DoSnapshotSet (operation x) failed");
        // The name wins over a disagreeing HRESULT; an unknown name uses the HRESULT.
        let AsyncStatus::Failed(e) = map("VSS_E_BAD_STATE", 0x8004_23F2).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::BadState);
        let AsyncStatus::Failed(e) = map("VSS_E_SOMETHING_NEW", 0x8004_2301).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::BadState);
        let AsyncStatus::Failed(e) = map("VSS_E_SOMETHING_NEW", 0x8004_2FFF).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::Unexpected);
        assert!(e.message.contains("VSS_E_SOMETHING_NEW"), "{}", e.message);
    }

    #[test]
    fn other_success_codes_are_protocol_errors() {
        assert!(matches!(map("S_OK", 0), Err(ClientError::Protocol(_))));
    }

    #[test]
    fn operation_ids_must_be_uuids() {
        let a = Async::new(
            Path::new("/s"),
            "DoSnapshotSet",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}".into(),
        )
        .unwrap();
        assert_eq!(a.id().to_string(), "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
        assert_eq!(a.operation(), "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}");
        assert_eq!(a.method(), "DoSnapshotSet");
        assert!(matches!(
            Async::new(Path::new("/s"), "DoSnapshotSet", "op-1".into()),
            Err(ClientError::Protocol(_))
        ));
    }
}

//! The plumbing shared by [`crate::BackupComponents`] and [`crate::Async`]: connecting, calling
//! one `vss.Requester` method and decoding its reply, parsing ids out of replies.
//!
//! Everything here maps failures onto [`ClientError`]: a `VssError` reply becomes
//! [`ClientError::Vss`] (any other error reply, e.g. `org.varlink.service.MethodNotFound`, becomes
//! `VSS_E_UNEXPECTED` naming it), a broken connection [`ClientError::Io`], and a reply that does
//! not decode [`ClientError::Protocol`].

use std::path::Path;

use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;
use vss_model::ErrorCode;
use vss_protocol::requester::INTERFACE;
use vss_protocol::transport::{self, Connection};

use crate::ClientError;

/// Connects to vssd's requester socket, keeping the `io::Error` so that callers can tell "no
/// daemon" from "not allowed".
pub(crate) async fn connect(socket: &Path) -> Result<Connection, ClientError> {
    tracing::debug!(socket = %socket.display(), "connecting to vssd");
    // vssd's replies may pass the 4 MiB vssd takes in (a Query of many snapshots).
    transport::connect_with_limit(socket, vss_protocol::MAX_REPLY_FROM_VSSD_BYTES)
        .await
        .map_err(ClientError::from_call)
}

/// Calls `vss.Requester.<method>(params)` and decodes the reply as `R`.
pub(crate) async fn call<P: Serialize, R: DeserializeOwned>(
    conn: &mut Connection,
    method: &str,
    params: &P,
) -> Result<R, ClientError> {
    // A bare name is a vss.Requester method; a qualified one (`vss.Admin.ListWriters`) is used
    // as it is.
    let full = if method.contains('.') {
        method.to_owned()
    } else {
        format!("{INTERFACE}.{method}")
    };
    tracing::debug!(method = %full, "calling vssd");
    let decoded = transport::call::<P, R>(conn, &full, params)
        .await
        .map_err(ClientError::from_call)?;
    transport::into_result(decoded, ErrorCode::Unexpected).map_err(|e| {
        tracing::debug!(method = %full, error = %e, "vssd refused the call");
        ClientError::Vss(e)
    })
}

/// Parses an id in a reply; a reply with a bad id is a protocol violation, not a VSS error.
pub(crate) fn parse_id(what: &str, s: &str) -> Result<Uuid, ClientError> {
    vss_protocol::parse_id(what, s).map_err(|e| ClientError::Protocol(e.message))
}

/// Parses an optional id in a reply.
pub(crate) fn parse_opt_id(what: &str, s: Option<&str>) -> Result<Option<Uuid>, ClientError> {
    s.map(|s| parse_id(what, s)).transpose()
}

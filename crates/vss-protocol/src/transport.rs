//! Thin helpers over `zlink::Connection` for both directions of both interfaces: send a call and
//! read its reply as raw JSON, read a call, send a reply or an error.
//!
//! Everything is decoded in two steps (see [`crate::RawCall`]) so that a peer's bad message is a
//! VSS error, not a torn-down connection. Every read here refuses messages larger than
//! [`crate::MAX_MESSAGE_BYTES`] (zlink's own cap is far larger).

use std::path::Path;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use vss_model::{ErrorCode, VssError};
use zlink::{Call, Reply};

use crate::{Decoded, ErrorReply, RawCall, RawReply, WireError};

/// A varlink connection over a Unix stream socket.
pub type Connection = zlink::tokio::unix::Connection;

/// Why a call to a peer did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket could not be connected to (kind NotFound/ConnectionRefused: nobody serves
    /// it; PermissionDenied: not allowed).
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke (peer dead, EOF).
    #[error("connection failed: {0}")]
    Io(String),
    /// No reply within the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The peer sent something that is not a valid reply for this method.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// Connects to a varlink socket.
pub async fn connect(path: &Path) -> Result<Connection, CallError> {
    match tokio::net::UnixStream::connect(path).await {
        Ok(stream) => {
            let stream = zlink::tokio::unix::Stream::try_from(stream).map_err(io)?;
            Ok(Connection::new(stream))
        }
        Err(source) => Err(CallError::Connect {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Sends `method(params)` and reads the reply as `R` or as an error reply.
pub async fn call<P: Serialize, R: DeserializeOwned>(
    conn: &mut Connection,
    method: &str,
    params: &P,
) -> Result<Decoded<R>, CallError> {
    let raw = RawCall::new(method, params);
    conn.send_call(&Call::new(&raw), vec![]).await.map_err(io)?;
    let reply = match conn
        .receive_reply::<serde_json::Value, ErrorReply<serde_json::Value>>()
        .await
    {
        Ok((reply, _fds)) => reply,
        // Standard org.varlink.service errors (MethodNotFound from an older peer, ...) come back
        // as error replies like any other, so callers can map them to VSS errors.
        Err(zlink::Error::VarlinkService(e)) => {
            let (name, parameters) = varlink_service_error(e.inner());
            Err(ErrorReply {
                error: name.to_owned(),
                parameters,
            })
        }
        Err(zlink::Error::UnknownErrorReply(name)) => Err(ErrorReply {
            error: name,
            parameters: serde_json::Value::Null,
        }),
        Err(other) => return Err(io(other)),
    };
    let raw = match reply {
        Ok(r) => RawReply {
            error: None,
            parameters: r.into_parameters(),
            continues: None,
        },
        Err(e) => RawReply {
            error: Some(e.error),
            parameters: Some(e.parameters),
            continues: None,
        },
    };
    let size = raw
        .parameters
        .as_ref()
        .map(|p| p.to_string().len())
        .unwrap_or(0);
    if size > crate::MAX_MESSAGE_BYTES {
        return Err(CallError::Malformed(format!(
            "reply of {size} bytes exceeds the limit"
        )));
    }
    raw.decode::<R>()
        .map_err(|e| CallError::Malformed(format!("{method}: {e}")))
}

/// [`call`] with a deadline.
pub async fn call_with_timeout<P: Serialize, R: DeserializeOwned>(
    conn: &mut Connection,
    method: &str,
    params: &P,
    timeout: Duration,
) -> Result<Decoded<R>, CallError> {
    match tokio::time::timeout(timeout, call(conn, method, params)).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

/// Reads the next call. `Ok(None)` is a clean end of the connection (EOF); a message that is
/// not a varlink call is an error.
pub async fn receive_call(conn: &mut Connection) -> Result<Option<RawCall>, CallError> {
    match conn.receive_call::<RawCall>().await {
        Ok((call, _fds)) => {
            let raw = call.method().clone();
            let size = raw
                .parameters
                .as_ref()
                .map(|p| p.to_string().len())
                .unwrap_or(0);
            if size > crate::MAX_MESSAGE_BYTES {
                return Err(CallError::Malformed(format!(
                    "call of {size} bytes exceeds the limit"
                )));
            }
            Ok(Some(raw))
        }
        Err(zlink::Error::UnexpectedEof) => Ok(None),
        Err(zlink::Error::Io(e)) if is_disconnect(&e) => Ok(None),
        Err(zlink::Error::Json(e)) => Err(CallError::Malformed(e.to_string())),
        Err(e) => Err(io(e)),
    }
}

/// Sends a successful reply with parameters `params`.
pub async fn reply<T: Serialize + std::fmt::Debug>(
    conn: &mut Connection,
    params: &T,
) -> Result<(), CallError> {
    let v = serde_json::to_value(params).map_err(|e| CallError::Malformed(e.to_string()))?;
    conn.send_reply(&Reply::new(Some(v)), vec![])
        .await
        .map_err(io)
}

/// Sends an error reply `name(code, hresult, message)`.
pub async fn reply_error(
    conn: &mut Connection,
    name: &str,
    error: &VssError,
) -> Result<(), CallError> {
    let e = ErrorReply {
        error: name.to_owned(),
        parameters: WireError::from(error),
    };
    conn.send_error(&e, vec![]).await.map_err(io)
}

/// Sends the standard `org.varlink.service.MethodNotFound` error.
pub async fn reply_method_not_found(conn: &mut Connection, method: &str) -> Result<(), CallError> {
    let e = ErrorReply {
        error: "org.varlink.service.MethodNotFound".to_owned(),
        parameters: serde_json::json!({ "method": method }),
    };
    conn.send_error(&e, vec![]).await.map_err(io)
}

/// Sends any varlink error with JSON parameters (e.g. `org.varlink.service.InterfaceNotFound`).
pub async fn reply_varlink_error(
    conn: &mut Connection,
    name: &str,
    parameters: serde_json::Value,
) -> Result<(), CallError> {
    let e = ErrorReply {
        error: name.to_owned(),
        parameters,
    };
    conn.send_error(&e, vec![]).await.map_err(io)
}

/// Interprets an error reply of either interface as a [`VssError`]; errors that are not ours
/// (e.g. `org.varlink.service.MethodNotFound`) become `fallback` with the name in the message.
pub fn error_reply_to_vss(
    name: &str,
    parameters: &serde_json::Value,
    fallback: ErrorCode,
) -> VssError {
    match serde_json::from_value::<WireError>(parameters.clone()) {
        Ok(w) if name.ends_with(".VssError") || name.ends_with(".WriterFailure") => {
            w.to_vss_error(fallback)
        }
        _ => {
            let code = match name {
                "org.varlink.service.MethodNotFound"
                | "org.varlink.service.MethodNotImplemented"
                | "org.varlink.service.InterfaceNotFound" => ErrorCode::NotImpl,
                "org.varlink.service.InvalidParameter" => ErrorCode::InvalidArg,
                "org.varlink.service.PermissionDenied" => ErrorCode::AccessDenied,
                _ => fallback,
            };
            VssError::new(code, format!("peer replied {name} {parameters}"))
        }
    }
}

/// Unwraps a decoded reply whose errors are VSS errors.
pub fn into_result<T>(d: Decoded<T>, fallback: ErrorCode) -> Result<T, VssError> {
    match d {
        Decoded::Ok(t) => Ok(t),
        Decoded::Error { name, parameters } => {
            Err(error_reply_to_vss(&name, &parameters, fallback))
        }
    }
}

fn varlink_service_error(
    e: &zlink::varlink_service::Error<'_>,
) -> (&'static str, serde_json::Value) {
    use zlink::varlink_service::Error as E;
    match e {
        E::InterfaceNotFound { interface } => (
            "org.varlink.service.InterfaceNotFound",
            serde_json::json!({ "interface": interface }),
        ),
        E::MethodNotFound { method } => (
            "org.varlink.service.MethodNotFound",
            serde_json::json!({ "method": method }),
        ),
        E::MethodNotImplemented { method } => (
            "org.varlink.service.MethodNotImplemented",
            serde_json::json!({ "method": method }),
        ),
        E::InvalidParameter { parameter } => (
            "org.varlink.service.InvalidParameter",
            serde_json::json!({ "parameter": parameter }),
        ),
        E::PermissionDenied => (
            "org.varlink.service.PermissionDenied",
            serde_json::json!({}),
        ),
        _ => ("org.varlink.service.Error", serde_json::json!({})),
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    )
}

fn io(e: zlink::Error) -> CallError {
    CallError::Io(e.to_string())
}

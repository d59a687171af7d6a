//! Thin helpers over `zlink::Connection` for both directions of both interfaces: send a call and
//! read its reply as raw JSON, read a call, send a reply or an error.
//!
//! Everything is decoded in two steps (see [`crate::RawCall`]) so that a peer's bad message is a
//! VSS error, not a torn-down connection.
//!
//! Every connection made here ([`connect`], [`Listener::accept`], [`from_stream`]) reads through
//! [`Limited`], which counts the bytes of the message being received as they arrive and fails the
//! read as soon as one passes [`crate::MAX_MESSAGE_BYTES`]: a peer can make us buffer at most
//! 4 MiB, not zlink's own 100 MB cap. The rest of such a message is never read, so the
//! connection cannot go on: the receiver answers [`CallError::TooLarge`] and closes it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use vss_model::{ErrorCode, VssError};
use zlink::{Call, Reply};

use crate::{Decoded, ErrorReply, RawCall, RawReply, WireError};

/// A varlink connection over a Unix stream socket, reading through [`Limited`].
pub type Connection = zlink::Connection<Limited>;

/// A Unix stream socket for zlink whose read half refuses a message longer than
/// [`crate::MAX_MESSAGE_BYTES`] while it arrives, and whose write half can also send a whole
/// message serialized beforehand (see [`send_message`]). It passes no file descriptors: none of
/// our interfaces uses them.
#[derive(Debug)]
pub struct Limited(tokio::net::UnixStream, usize);

impl zlink::connection::Socket for Limited {
    type ReadHalf = LimitedRead;
    type WriteHalf = PlainWrite;

    fn split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        let (read, write) = self.0.into_split();
        (
            LimitedRead {
                inner: read,
                pending: 0,
                limit: self.1,
            },
            PlainWrite(write),
        )
    }
}

/// The read half of [`Limited`].
#[derive(Debug)]
pub struct LimitedRead {
    inner: tokio::net::unix::OwnedReadHalf,
    /// Bytes of the message in progress (since the last NUL terminator).
    pending: usize,
    limit: usize,
}

/// The error a [`LimitedRead`] fails with (inside an `io::Error`), recognised by
/// [`receive_call`] and [`call`].
#[derive(Debug, thiserror::Error)]
#[error("a message exceeds the limit of {limit} bytes")]
struct MessageTooLarge {
    limit: usize,
}

impl LimitedRead {
    /// Accounts for `data` just read; `false` when the message in progress passed the limit.
    fn account(&mut self, data: &[u8]) -> bool {
        for (i, segment) in data.split(|b| *b == 0).enumerate() {
            // Every segment after the first starts a new message.
            if i > 0 {
                self.pending = 0;
            }
            self.pending += segment.len();
            if self.pending > self.limit {
                return false;
            }
        }
        true
    }
}

impl zlink::connection::socket::ReadHalf for LimitedRead {
    async fn read(
        &mut self,
        buf: &mut [u8],
    ) -> zlink::Result<zlink::connection::socket::ReadResult> {
        use tokio::io::AsyncReadExt;
        // Cancel safe: a tokio read that did not complete consumed nothing.
        let n = self.inner.read(buf).await?;
        if !self.account(&buf[..n]) {
            return Err(zlink::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                MessageTooLarge { limit: self.limit },
            )));
        }
        Ok(zlink::connection::socket::ReadResult::new(n))
    }
}

impl AsFd for LimitedRead {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_ref().as_fd()
    }
}

// Peer credentials (SO_PEERCRED) are read through the read half's descriptor.
impl zlink::connection::socket::UnixSocket for LimitedRead {}

/// The write half of [`Limited`].
#[derive(Debug)]
pub struct PlainWrite(tokio::net::unix::OwnedWriteHalf);

impl PlainWrite {
    /// Writes `bytes` (whole messages, NUL-terminated) through a shared reference, which is all
    /// zlink lets us have of its write half.
    async fn write_message(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut pos = 0;
        while pos < bytes.len() {
            self.0.writable().await?;
            match self.0.try_write(&bytes[pos..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl zlink::connection::socket::WriteHalf for PlainWrite {
    async fn write(
        &mut self,
        buf: &[u8],
        fds: &[impl AsFd],
        credentials: Option<&zlink::connection::PassedCredentials>,
    ) -> zlink::Result<()> {
        if !fds.is_empty() || credentials.is_some() {
            return Err(zlink::Error::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "passing file descriptors or credentials is not supported",
            )));
        }
        self.write_message(buf).await.map_err(zlink::Error::Io)
    }
}

/// Sends one message, serialized here in one pass. zlink's own sending serializes into a buffer
/// that grows 256 bytes at a time and starts over each time, which is quadratic in the size of
/// the message: seconds of CPU for a reply of a few hundred KiB (a long event log, a large
/// Query). Everything this module sends goes through here.
pub async fn send_message<T: Serialize>(conn: &Connection, message: &T) -> Result<(), CallError> {
    let mut bytes = serde_json::to_vec(message).map_err(|e| CallError::Malformed(e.to_string()))?;
    bytes.push(0);
    conn.write()
        .write_half()
        .write_message(&bytes)
        .await
        .map_err(|e| CallError::Io(e.to_string()))
}

/// A connection over an already connected Unix stream (messages up to
/// [`crate::MAX_MESSAGE_BYTES`]).
pub fn from_stream(stream: tokio::net::UnixStream) -> Result<Connection, CallError> {
    from_stream_with_limit(stream, crate::MAX_MESSAGE_BYTES)
}

/// [`from_stream`] reading messages of up to `limit` bytes.
pub fn from_stream_with_limit(
    stream: tokio::net::UnixStream,
    limit: usize,
) -> Result<Connection, CallError> {
    Ok(Connection::new(Limited(stream, limit)))
}

/// A listening Unix socket whose connections read through [`Limited`].
#[derive(Debug)]
pub struct Listener(tokio::net::UnixListener);

impl Listener {
    /// Binds `path` (which must not exist) with permissions `mode`. The socket is made under a
    /// temporary name in the same directory, listening and with its mode set, then renamed into
    /// place: whoever sees `path` can connect at once (a plain bind shows the file before
    /// `listen`, and a client that connects then is refused).
    pub fn bind(path: &Path, mode: u32) -> std::io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        let name = path.file_name().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a socket path", path.display()),
            )
        })?;
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let listener = tokio::net::UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Listener(listener))
    }

    /// Takes over a listening socket (socket activation).
    pub fn from_fd(fd: OwnedFd) -> std::io::Result<Listener> {
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(std).map(Listener)
    }

    /// The next connection.
    pub async fn accept(&self) -> Result<Connection, CallError> {
        let (stream, _) = self
            .0
            .accept()
            .await
            .map_err(|e| CallError::Io(format!("accept: {e}")))?;
        from_stream(stream)
    }
}

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
    /// The peer's message passed [`crate::MAX_MESSAGE_BYTES`] before its end; the rest of it
    /// was not read, so the connection cannot be used for reading any more.
    #[error("a message exceeds the limit of {} bytes", crate::MAX_MESSAGE_BYTES)]
    TooLarge,
}

/// Connects to a varlink socket.
pub async fn connect(path: &Path) -> Result<Connection, CallError> {
    connect_with_limit(path, crate::MAX_MESSAGE_BYTES).await
}

/// [`connect`], accepting messages of up to `limit` bytes (requesters reading vssd's replies:
/// [`crate::MAX_REPLY_FROM_VSSD_BYTES`]).
pub async fn connect_with_limit(path: &Path, limit: usize) -> Result<Connection, CallError> {
    match tokio::net::UnixStream::connect(path).await {
        Ok(stream) => from_stream_with_limit(stream, limit),
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
    send_message(conn, &Call::new(&raw)).await?;
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
        // The size was bounded while the message arrived (see `Limited`).
        Ok((call, _fds)) => Ok(Some(call.method().clone())),
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
    send_message(conn, &Reply::new(Some(params))).await
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
    send_message(conn, &e).await
}

/// Sends the standard `org.varlink.service.MethodNotFound` error.
pub async fn reply_method_not_found(conn: &mut Connection, method: &str) -> Result<(), CallError> {
    let e = ErrorReply {
        error: "org.varlink.service.MethodNotFound".to_owned(),
        parameters: serde_json::json!({ "method": method }),
    };
    send_message(conn, &e).await
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
    send_message(conn, &e).await
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
    if let zlink::Error::Io(io) = &e
        && io
            .get_ref()
            .is_some_and(|inner| inner.is::<MessageTooLarge>())
    {
        return CallError::TooLarge;
    }
    CallError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The accounting itself, on a socket pair's read half.
    #[tokio::test]
    async fn the_limit_counts_bytes_since_the_last_terminator() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let (inner, _w) = a.into_split();
        let mut r = LimitedRead {
            inner,
            pending: 0,
            limit: 10,
        };
        for (chunk, ok) in [
            (&b"0123456789"[..], true), // exactly the limit
            (b"\0", true),              // ends it
            (b"01234\0", true),
            (b"0123456789\x00012345", true), // a full message, then 6 bytes of the next
            (b"6789", true),                 // 10
            (b"X", false),                   // 11: over
        ] {
            assert_eq!(r.account(chunk), ok, "{chunk:?}");
        }
    }

    /// A peer streaming a message with no end is cut off once it passes the limit: the reader
    /// gets `TooLarge` having buffered no more than about the limit, while the peer is still
    /// writing.
    #[tokio::test]
    async fn an_endless_message_is_refused_at_the_limit() {
        let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = from_stream(ours).unwrap();
        let writer = tokio::spawn(async move {
            let (_r, mut w) = peer.into_split();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0usize;
            // 64 MiB of whitespace, never a NUL: far more than the limit.
            while sent < 64 << 20 {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        // Without the limit zlink would buffer all 64 MiB and go on waiting for the end.
        let r = tokio::time::timeout(Duration::from_secs(30), receive_call(&mut conn))
            .await
            .expect("the reader gave up at the limit, not waiting for the end");
        assert!(matches!(r, Err(CallError::TooLarge)), "{r:?}");
        drop(conn);
        let sent = writer.await.unwrap();
        assert!(
            sent < 16 << 20,
            "the peer could write {sent} bytes before the connection closed"
        );
    }

    /// A call just under the limit still goes through, and the next one too.
    #[tokio::test]
    async fn a_large_call_under_the_limit_is_read() {
        let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = from_stream(ours).unwrap();
        let big = "x".repeat(crate::MAX_MESSAGE_BYTES - 1024);
        let msg = format!(
            "{{\"method\":\"vss.Requester.SetContext\",\"parameters\":{{\"pad\":\"{big}\"}}}}\0{{\"method\":\"vss.Requester.X\"}}\0"
        );
        let writer = tokio::spawn(async move {
            let (_r, mut w) = peer.into_split();
            w.write_all(msg.as_bytes()).await.unwrap();
            w
        });
        let first = receive_call(&mut conn).await.unwrap().unwrap();
        assert_eq!(first.method, "vss.Requester.SetContext");
        let second = receive_call(&mut conn).await.unwrap().unwrap();
        assert_eq!(second.method, "vss.Requester.X");
        drop(writer.await.unwrap());
    }

    /// The caller's side too: a peer (a writer, for vssd) replying without end makes the call
    /// fail with `TooLarge` instead of buffering the reply.
    #[tokio::test]
    async fn an_endless_reply_fails_the_call() {
        let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
        let mut conn = from_stream(ours).unwrap();
        let peer = tokio::spawn(async move {
            let (_r, mut w) = peer.into_split();
            let _ = w.write_all(b"{\"parameters\":{\"x\":\"").await;
            let chunk = vec![b'y'; 64 * 1024];
            for _ in 0..1024 {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            call::<_, serde_json::Value>(&mut conn, "vss.Writer.Identify", &serde_json::json!({})),
        )
        .await
        .expect("the call gave up at the limit");
        assert!(matches!(r, Err(CallError::TooLarge)), "{r:?}");
        drop(conn);
        peer.await.unwrap();
    }

    /// A reply of 3 MiB (under the limit) arrives whole. Sent through zlink's own writer, whose
    /// buffer grows 256 bytes per attempt and reserializes each time, it took minutes of CPU.
    #[tokio::test]
    async fn a_large_reply_goes_through_whole() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (mut client, mut server) = (from_stream(a).unwrap(), from_stream(b).unwrap());
        let items: Vec<String> = (0..30_000).map(|i| format!("{i:0>96}")).collect();
        let expected = items.len();
        let serve = tokio::spawn(async move {
            let call = receive_call(&mut server).await.unwrap().unwrap();
            assert_eq!(call.method, "vss.Admin.Events");
            reply(&mut server, &serde_json::json!({ "items": items }))
                .await
                .unwrap();
            server
        });
        let r =
            call::<_, serde_json::Value>(&mut client, "vss.Admin.Events", &serde_json::json!({}))
                .await
                .unwrap();
        match r {
            Decoded::Ok(v) => assert_eq!(v["items"].as_array().unwrap().len(), expected),
            other => panic!("{other:?}"),
        }
        drop(serve.await.unwrap());
    }

    /// A requester reads vssd's replies with the larger limit: a 6 MiB reply (a Query of
    /// about 9,000 snapshots) arrives whole, where the 4 MiB limit would refuse it.
    #[tokio::test]
    async fn a_requester_takes_replies_over_4_mib() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut client = from_stream_with_limit(a, crate::MAX_REPLY_FROM_VSSD_BYTES).unwrap();
        let mut server = from_stream(b).unwrap();
        let items: Vec<String> = (0..64_000).map(|i| format!("{i:0>96}")).collect();
        let serve = tokio::spawn(async move {
            receive_call(&mut server).await.unwrap().unwrap();
            reply(&mut server, &serde_json::json!({ "snapshots": items }))
                .await
                .unwrap();
            server
        });
        let r = call::<_, serde_json::Value>(
            &mut client,
            "vss.Requester.Query",
            &serde_json::json!({}),
        )
        .await
        .unwrap();
        match r {
            Decoded::Ok(v) => assert_eq!(v["snapshots"].as_array().unwrap().len(), 64_000),
            other => panic!("{other:?}"),
        }
        drop(serve.await.unwrap());
    }
}

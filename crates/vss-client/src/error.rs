//! [`ClientError`]: why a requester call did not succeed.
//!
//! A call fails in one of two ways. Either vssd answered with a VSS error (the call was
//! understood and refused or failed: [`ClientError::Vss`], carrying the same [`ErrorCode`]
//! IVssBackupComponents would return), or the conversation itself broke (no daemon, a dropped
//! connection, a reply that does not parse). Only the first kind says anything about the backup;
//! the second says something about the plumbing.

use std::io;
use std::path::PathBuf;

use vss_model::{ErrorCode, VssError};
use vss_protocol::transport::CallError;

/// Why a call of the requester library failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The call reached vssd and failed with a VSS error (`VSS_E_BAD_STATE`,
    /// `VSS_E_WRITERERROR_TIMEOUT`, `E_ACCESSDENIED`, ...). For an asynchronous operation this is
    /// also how a failed operation is reported by awaiting its [`crate::Async`].
    #[error("{0}")]
    Vss(#[from] VssError),
    /// The socket could not be connected to: no vssd listening (`NotFound`,
    /// `ConnectionRefused`) or not allowed (`PermissionDenied`).
    #[error("cannot connect to vssd at {}: {source}", path.display())]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// What the connect failed with.
        #[source]
        source: io::Error,
    },
    /// The connection broke during a call (vssd exited, reset, EOF), or is no longer usable.
    #[error("connection to vssd failed: {0}")]
    Io(String),
    /// vssd sent a reply that is not what the protocol promises for this method.
    #[error("malformed reply from vssd: {0}")]
    Protocol(String),
    /// The asynchronous operation was cancelled (`VSS_S_ASYNC_CANCELLED`) before it finished.
    #[error("the operation was cancelled (VSS_S_ASYNC_CANCELLED)")]
    Cancelled,
}

impl ClientError {
    /// The VSS error code, when the failure is a VSS error ([`ClientError::Vss`]); `None` for
    /// failures of the connection or the protocol and for a cancelled operation.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Vss(e) => Some(e.code),
            ClientError::Connect { .. }
            | ClientError::Io(_)
            | ClientError::Protocol(_)
            | ClientError::Cancelled => None,
        }
    }

    /// Maps a transport failure of a call.
    pub(crate) fn from_call(e: CallError) -> Self {
        match e {
            CallError::Io(s) => ClientError::Io(s),
            CallError::Connect { path, source } => ClientError::Connect { path, source },
            CallError::Timeout(d) => ClientError::Io(format!("no reply within {d:?}")),
            CallError::Malformed(s) => ClientError::Protocol(s),
            e @ CallError::TooLarge => ClientError::Protocol(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_only_for_vss_errors() {
        let e = ClientError::Vss(VssError::bad_state("x"));
        assert_eq!(e.code(), Some(ErrorCode::BadState));
        assert_eq!(e.to_string(), "VSS_E_BAD_STATE (0x80042301): x");
        assert_eq!(ClientError::Cancelled.code(), None);
        assert_eq!(ClientError::Protocol("p".into()).code(), None);
        let c = ClientError::Connect {
            path: "/nope".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(c.code(), None);
        assert!(
            c.to_string()
                .starts_with("cannot connect to vssd at /nope: ")
        );
    }

    #[test]
    fn transport_failures_map_to_io_or_protocol() {
        assert!(
            matches!(ClientError::from_call(CallError::Io("eof".into())), ClientError::Io(s) if s == "eof")
        );
        assert!(matches!(
            ClientError::from_call(CallError::Malformed("m".into())),
            ClientError::Protocol(_)
        ));
        assert!(matches!(
            ClientError::from_call(CallError::Timeout(std::time::Duration::from_secs(1))),
            ClientError::Io(_)
        ));
    }
}

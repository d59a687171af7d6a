//! Exit codes and the one error type of the command line, [`CliError`].
//!
//! Every failure carries the exit code it ends `vss` with. The codes are a public contract,
//! printed by `vss --help` ([`HELP`]) and described in docs/cli.md:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 2 | usage error (bad or missing arguments; clap's own code) |
//! | 3 | no such volume, snapshot, set, writer, component or provider; or the volume is not supported |
//! | 4 | a selected writer failed (the snapshot may still have been made; restore: PreRestore or PostRestore) |
//! | 5 | the snapshot set could not be made |
//! | 6 | vssd is unreachable and the engine cannot run in this process (embedded mode) |
//! | 7 | any other VSS error, or a broken conversation with the engine |
//!
//! `vss` itself never exits with 1, so `vss backup ... -- false` exiting 1 can only be the
//! command's status, which `backup`, `restore` and `create ... -- COMMAND` pass through.

use std::fmt;

use serde_json::{Value, json};
use vss_client::ClientError;
use vss_model::{ErrorCode, VssError};

/// Success.
pub const OK: u8 = 0;
/// A usage error: clap's code for bad arguments, also used for the checks `vss` makes itself.
pub const USAGE: u8 = 2;
/// No such object (volume, snapshot, set, writer, component, provider), or not supported.
pub const NOT_FOUND: u8 = 3;
/// A selected writer failed.
pub const WRITER_FAILED: u8 = 4;
/// The snapshot set could not be made.
pub const SNAPSHOT_FAILED: u8 = 5;
/// vssd is unreachable and embedded mode is impossible.
pub const UNREACHABLE: u8 = 6;
/// Any other VSS error.
pub const OTHER: u8 = 7;
/// The command `backup`, `restore` and `create` run was not found (the shell's convention).
pub const COMMAND_NOT_FOUND: u8 = 127;
/// The command `backup`, `restore` and `create` run could not be executed (the shell's
/// convention).
pub const COMMAND_NOT_EXECUTABLE: u8 = 126;

/// The exit-code table as `vss --help` prints it after the options.
pub const HELP: &str = "\
Exit status:
  0    success
  2    usage error (bad or missing arguments)
  3    no such volume, snapshot, set, writer, component or provider, or the volume is not
       supported by any provider
  4    a selected writer failed (vss backup / create: the snapshot may still have been made;
       vss restore: PreRestore, and the COMMAND did not run, or PostRestore)
  5    the snapshot set could not be made
  6    vssd is unreachable and the engine cannot run in this process (embedded mode)
  7    any other VSS error (vss restore: the file is not a Backup Components Document)
  backup, restore, and create with a COMMAND, exit with the COMMAND's own status when it ran
  and failed (126/127: it could not be executed / was not found; 128+N: killed by signal N).
  vss never exits with 1 by itself.

Environment: VSS_SOCKET, VSS_WRITERS_DIR, VSS_STATE_DIR, VSS_RUN_DIR, VSS_LOCK_FILE (the
options of the same names), VSS_LOG (log filter for the in-process engine, default warn).
When nothing answers on the socket, vss runs the engine in this process (embedded mode).
See docs/cli.md.";

/// Why `vss` fails, and with which exit code.
#[derive(Debug, Clone)]
pub struct CliError {
    /// The exit code.
    pub exit: u8,
    /// What happened and what to do.
    pub message: String,
    /// The VSS error behind it, if any.
    pub vss: Option<VssError>,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// An error with an exit code and a message.
    pub fn new(exit: u8, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            vss: None,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// Not found / not supported (exit 3).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, message)
    }

    /// vssd unreachable and no embedded mode (exit 6).
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(UNREACHABLE, message)
    }

    /// Anything else (exit 7).
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(OTHER, message)
    }

    /// A VSS error from the engine, classified by its code: not-found and not-supported codes
    /// are 3, writer failures 4, the rest 7.
    pub fn from_vss(e: VssError) -> Self {
        let exit = match e.code {
            ErrorCode::ObjectNotFound
            | ErrorCode::VolumeNotSupported
            | ErrorCode::VolumeNotSupportedByProvider
            | ErrorCode::ProviderNotRegistered
            | ErrorCode::NotSupported => NOT_FOUND,
            c if c.is_writer_failure() => WRITER_FAILED,
            _ => OTHER,
        };
        CliError {
            exit,
            message: e.to_string(),
            vss: Some(e),
        }
    }

    /// A failure of the requester library: VSS errors as [`CliError::from_vss`], a failed
    /// connect 6, everything else 7.
    pub fn from_client(e: ClientError) -> Self {
        match e {
            ClientError::Vss(v) => Self::from_vss(v),
            ClientError::Connect { .. } => Self::unreachable(e.to_string()),
            other => Self::other(other.to_string()),
        }
    }

    /// A failure while the snapshot set was being made (StartSnapshotSet to DoSnapshotSet):
    /// not-found, not-supported and writer codes keep their class, everything else is 5.
    pub fn snapshot_stage(e: ClientError) -> Self {
        let mut c = Self::from_client(e);
        if c.exit == OTHER {
            c.exit = SNAPSHOT_FAILED;
        }
        c
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The error as the `error` member of a `--json` document.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "exitCode": self.exit,
            "message": self.message,
        });
        if let Some(e) = &self.vss {
            v["code"] = json!(e.code.name());
            v["hresult"] = json!(e.code.hresult());
        }
        v
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        Self::from_client(e)
    }
}

impl From<VssError> for CliError {
    fn from(e: VssError) -> Self {
        Self::from_vss(e)
    }
}

/// The exit code for a finished child process: its status, or 128 + the signal that killed it.
pub fn status_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(u8::MAX),
        (None, Some(s)) => u8::try_from((128 + s) & 0xff).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vss_codes_are_classified() {
        let c = |code| CliError::from_vss(VssError::new(code, "x")).exit;
        assert_eq!(c(ErrorCode::ObjectNotFound), NOT_FOUND);
        assert_eq!(c(ErrorCode::VolumeNotSupported), NOT_FOUND);
        assert_eq!(c(ErrorCode::VolumeNotSupportedByProvider), NOT_FOUND);
        assert_eq!(c(ErrorCode::WriterErrorRetryable), WRITER_FAILED);
        assert_eq!(c(ErrorCode::WriterNotResponding), WRITER_FAILED);
        assert_eq!(c(ErrorCode::BadState), OTHER);
        let s = CliError::snapshot_stage(ClientError::Vss(VssError::new(
            ErrorCode::SnapshotSetInProgress,
            "busy",
        )));
        assert_eq!(s.exit, SNAPSHOT_FAILED);
        let s = CliError::snapshot_stage(ClientError::Vss(VssError::new(
            ErrorCode::WriterErrorTimeout,
            "t",
        )));
        assert_eq!(s.exit, WRITER_FAILED);
    }

    #[test]
    fn json_carries_the_code() {
        let e = CliError::from_vss(VssError::not_found("no snapshot"));
        let v = e.to_json();
        assert_eq!(v["exitCode"], 3);
        assert_eq!(v["code"], "VSS_E_OBJECT_NOT_FOUND");
        assert_eq!(v["hresult"], 0x8004_2308u32);
        assert_eq!(CliError::usage("u").to_json()["code"], Value::Null);
    }

    #[test]
    fn child_statuses() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status_code(std::process::ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(status_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}

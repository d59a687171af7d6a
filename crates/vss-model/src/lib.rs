//! The pure core of vss for Linux: the VSS vocabulary, the two XML documents, the error list and
//! the state machines of the requester session and of writers.
//!
//! **Architecture Invariant:** nothing in this crate does I/O, reads a clock, spawns or awaits.
//! Everything is plain data and pure functions, so the whole VSS contract is unit-testable in
//! microseconds. The daemon (`vss-daemon`) feeds it events and carries out what it decides.

pub mod bcd;
pub mod context;
pub mod enums;
pub mod error;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod session;
pub mod wmd;
pub mod writers;
mod xml;

pub use context::{SnapshotContext, attr};
pub use enums::*;
pub use error::{AsyncStatus, ErrorCode, S_OK, VssError};
pub use event::WriterEvent;

/// Identifiers are UUIDs, as VSS's GUIDs are (writer class, writer instance, snapshot, set,
/// provider, operation).
pub type Id = uuid::Uuid;

/// The largest number of volumes in one snapshot set (§9).
pub const MAX_VOLUMES_PER_SET: usize = 64;

/// The most components one session may include (AddComponent); beyond it `E_OUTOFMEMORY`.
pub const MAX_COMPONENTS_PER_SESSION: usize = 4096;

/// The default Freeze→Thaw window of a writer (§5.5).
pub const DEFAULT_FREEZE_TIMEOUT_MS: u64 = 60_000;

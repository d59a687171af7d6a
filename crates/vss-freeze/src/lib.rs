//! Freeze safety: every `FIFREEZE` of vss for Linux is owned by a guard process that thaws when
//! the commit window ends or the moment the freezing process dies (issue 3 §4).
//!
//! Why this crate exists: a filesystem freeze outlives the process that made it, the kernel
//! never thaws by itself, and a frozen filesystem blocks every writer in uninterruptible sleep
//! (test-machine.md §4). "Left frozen" is the dominant failure of every Linux freezer
//! (linux-peers.md §17): the thaw depends on a second message that never comes when the
//! freezing process crashes, hangs or is killed. So:
//!
//! * [`FreezeSet::freeze`] journals the intent ([`journal`]), starts `vss-freeze-guard`
//!   ([`guard`]) and waits until it is armed, and only then freezes each filesystem once.
//!   [`FreezeSet::thaw`] (or dropping the set) thaws in reverse order and dismisses the guard.
//! * The guard thaws by itself at the deadline, when the owner process exits (pidfd, so SIGKILL
//!   too), and on SIGTERM/SIGINT/SIGHUP ([`protocol`] describes the conversation).
//! * [`recover`] (at vssd's start) thaws what the journal says a *dead* owner may have left
//!   frozen, and leaves a live owner's freeze alone (flock).
//! * [`same_filesystem`] lets vssd refuse to freeze the filesystem of its own state, writers
//!   directory or socket.
//!
//! Synchronous, no tokio: vssd calls it on a blocking thread. Between the first `FIFREEZE` and
//! the last `FITHAW` this crate writes no file and no log line, and its callers must not either.

mod fs;
pub mod guard;
pub mod journal;
pub mod protocol;
mod set;

pub use fs::same_filesystem;
pub use journal::{JournalEntry, RecoveredEntry, RecoveryOutcome, recover};
pub use protocol::GuardExit;
pub use set::{
    DEFAULT_WINDOW, FreezeConfig, FreezeSet, GUARD_BINARY_NAME, ThawReport, default_guard_binary,
};

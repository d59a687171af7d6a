//! The writer SDK of vss for Linux: write a VSS writer by implementing [`Writer`], and let
//! [`WriterRuntime`] serve it.
//!
//! # The model
//!
//! A *writer* is an application (a database, a mail server, a service with state on disk) that
//! takes part in snapshot creation so that the snapshot holds a consistent copy of its data
//! (vss-model.md §5). The coordinator `vssd` drives every writer through the same events, in
//! this order for a backup:
//!
//! ```text
//! (Identify)* → PrepareForBackup → PrepareForSnapshot → Freeze → Thaw → PostSnapshot
//!             → BackupComplete → BackupShutdown
//! ```
//!
//! and `(Identify)* → PreRestore → PostRestore` for a restore. Identify may come at any time, any
//! number of times; Abort may come at any point after PrepareForBackup and undoes everything.
//! Freeze must be short: the filesystems are about to be snapshotted and the writer must hold its
//! writes until Thaw, which comes within the writer's freeze timeout (60 s by default).
//!
//! Each writer serves the varlink interface `vss.Writer` (crates/vss-protocol/interfaces) on its
//! own Unix socket in the writers directory (`/run/vss/writers/<name>.sock`), and `vssd` is the
//! client. This crate does all of that: a writer author implements the synchronous hooks of
//! [`Writer`] and calls [`WriterRuntime::run_blocking`] (or [`WriterRuntime::serve`] from async
//! code). The runtime
//!
//! * runs every hook on `tokio::task::spawn_blocking`, so a slow hook never stalls other
//!   connections, and turns a hook's error into a `vss.Writer.WriterFailure` reply (a code that
//!   is not a `VSS_E_WRITERERROR_*` code, or a panic, becomes `VSS_E_WRITERERROR_NONRETRYABLE`);
//! * serves only root and the configured coordinator uid, so no local user can freeze the
//!   application;
//! * enforces the freeze contract by itself: after a successful Freeze, if Thaw does not come
//!   within the freeze timeout, or the connection that delivered Freeze closes first (the
//!   coordinator died), it calls [`Writer::abort`]; a late Thaw then fails with
//!   `VSS_E_WRITERERROR_TIMEOUT`. Abort is called at most once per snapshot set (see
//!   [`freeze`] for the one exception).
//!
//! Hooks must not log to files on volumes the writer may have frozen; the runtime logs with
//! `tracing` only.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use vss_writer::*;
//!
//! struct MyWriter;
//!
//! impl Writer for MyWriter {
//!     fn metadata(&self) -> WriterMetadata {
//!         todo!("describe the writer and its components")
//!     }
//!     fn prepare_for_snapshot(&self, _ev: &EventParams) -> Result<(), VssError> {
//!         Ok(()) // flush caches, checkpoint
//!     }
//!     fn freeze(&self, _ev: &EventParams) -> Result<(), VssError> {
//!         Ok(()) // stop writing
//!     }
//!     fn thaw(&self, _ev: &EventParams) -> Result<(), VssError> {
//!         Ok(()) // resume writing
//!     }
//!     fn abort(&self, _ev: Option<&EventParams>) {
//!         // undo prepare_for_snapshot and freeze
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let config = RuntimeConfig { socket_name: "my-writer.sock".into(), ..Default::default() };
//!     WriterRuntime::run_blocking(Arc::new(MyWriter), config)
//! }
//! ```

pub mod access;
pub mod failure;
pub mod freeze;
#[doc(hidden)]
pub mod fuzzing;
pub mod runtime;
mod service;

pub use runtime::{RuntimeConfig, WriterRuntime, run_instances_blocking, shutdown_signal};

pub use uuid::Uuid;
pub use vss_model::wmd::{Dependency, FileSpec, WmdComponent, full_path};
pub use vss_model::{
    ApplicationLevel, BackupType, ComponentType, DEFAULT_FREEZE_TIMEOUT_MS, ErrorCode,
    FileRestoreStatus, RestoreMethod, RestoreTarget, SourceType, UsageType, VssError,
    WriterRestore,
};
pub use vss_protocol::writer::{
    AlternateLocation, ComponentUpdate, Event, EventComponent, EventParams, EventVolume,
    WriterMetadata,
};

/// A VSS writer: the hooks the coordinator's events call.
///
/// The hooks are synchronous and may block (sync files, wait for the application); the runtime
/// calls each one on a blocking thread. They may be called concurrently from different
/// connections (an Identify during a backup, an Abort on a fresh connection while Freeze is
/// running), so keep state behind a lock and keyed by snapshot set where it matters.
///
/// A hook fails by returning a [`VssError`] whose code is one of the `VSS_E_WRITERERROR_*`
/// codes (vss-model.md §5.4): `WriterErrorRetryable` for a transient problem,
/// `WriterErrorNonRetryable`, `WriterErrorOutOfResources`, `WriterErrorInconsistentSnapshot`,
/// `WriterErrorTimeout`, `WriterErrorPartialFailure`. Any other code is reported as
/// `VSS_E_WRITERERROR_NONRETRYABLE` with the original code in the message, and so is a panic.
///
/// As with `CVssWriter`, `prepare_for_snapshot`, `freeze`, `thaw` and `abort` have no default
/// (OnPrepareSnapshot/OnFreeze/OnThaw/OnAbort are pure virtual); the rest default to success.
pub trait Writer: Send + Sync + 'static {
    /// Identify: the Writer Metadata Document. Must be deterministic (same answer every call
    /// for the life of the process) and must not depend on a backup in progress; it may be
    /// called at any time, even between Freeze and Thaw.
    fn metadata(&self) -> WriterMetadata;

    /// The Freeze→Thaw window in milliseconds, for a Freeze that arrives before any Identify
    /// was answered. Normally the runtime enforces the `freeze_timeout_ms` of the metadata it
    /// last served in Identify (the coordinator identifies writers before every backup) and
    /// never calls this. Defaults to `metadata().freeze_timeout_ms` (0 counts as the 60 s
    /// default); override it if calling [`Writer::metadata`] has side effects.
    fn freeze_timeout_ms(&self) -> u64 {
        match self.metadata().freeze_timeout_ms {
            0 => DEFAULT_FREEZE_TIMEOUT_MS,
            ms => ms,
        }
    }

    /// PrepareForBackup: look at the selected components (`ev.components`), the backup type,
    /// previous stamps; return updates (backup metadata, stamps) to store in the backup
    /// components document.
    fn prepare_for_backup(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        let _ = ev;
        Ok(Vec::new())
    }

    /// PrepareForSnapshot: heavy preparation before Freeze (flush, checkpoint, drain queues).
    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError>;

    /// Freeze: stop writing to the volumes of `ev.volumes`, quickly. The last chance to veto.
    /// After it succeeds, [`Writer::thaw`] or [`Writer::abort`] is guaranteed to follow.
    fn freeze(&self, ev: &EventParams) -> Result<(), VssError>;

    /// Thaw: the snapshots exist (or failed); resume normal writes.
    fn thaw(&self, ev: &EventParams) -> Result<(), VssError>;

    /// PostSnapshot: the snapshots are readable at `ev.volumes[..].snapshot_path`; return final
    /// updates for the backup components document (e.g. backup stamps).
    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        let _ = ev;
        Ok(Vec::new())
    }

    /// Abort: undo everything done for the operation (PrepareForSnapshot, Freeze). Cannot fail.
    ///
    /// `ev` is the Abort event's parameters, or Freeze's when the runtime aborts by itself
    /// because the freeze timeout expired. It is `None` when the coordinator vanished (the
    /// connection that delivered Freeze closed before Thaw) or the runtime is shutting down
    /// while frozen: then undo the freeze in progress (only one snapshot set is frozen at a
    /// time).
    fn abort(&self, ev: Option<&EventParams>);

    /// BackupComplete: the backup is done; `ev.components[..].backup_succeeded` says whether
    /// each component was backed up (e.g. truncate logs only then).
    fn backup_complete(&self, ev: &EventParams) -> Result<(), VssError> {
        let _ = ev;
        Ok(())
    }

    /// BackupShutdown: the requester's session ended (possibly by crashing). Free per-set
    /// state; the set id may be nil or belong to another backup.
    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let _ = snapshot_set_id;
    }

    /// PreRestore: prepare for files to be restored (close files, stop services).
    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        let _ = ev;
        Ok(())
    }

    /// PostRestore: files were restored; reopen, restart, recover.
    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        let _ = ev;
        Ok(())
    }
}

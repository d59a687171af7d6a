//! The requester library of vss for Linux: `IVssBackupComponents` and `IVssAsync` over the
//! `vss.Requester` varlink interface that `vssd` serves (vss-model.md §2).
//!
//! **API Boundary:** backup programs build on this crate. It speaks to vssd only through the
//! protocol (`vss-protocol`) and never depends on the daemon.
//!
//! # Layout
//!
//! - [`BackupComponents`]: one session with vssd (one connection is one backup-components
//!   object; dropping it is `Release()`), one method per `vss.Requester` method, named after
//!   IVssBackupComponents in snake case.
//! - [`Async`]: a handle on an asynchronous operation (`IVssAsync`), with [`Async::wait`],
//!   [`Async::query_status`] and [`Async::cancel`] on a connection of its own; awaiting it yields
//!   `Ok(())` when the operation finished.
//! - [`ClientError`]: a VSS error from vssd ([`ClientError::Vss`], with the [`ErrorCode`]) or a
//!   failure of the connection or the protocol.
//! - [`blocking`]: the same API for programs without an async runtime.
//!
//! # A full backup
//!
//! The sequence of vss-model.md §2.3, in component mode. An error after `prepare_for_backup`
//! should be followed by `abort_backup`; dropping the session in any case makes vssd release
//! it, deleting the auto-release snapshots.
//!
//! ```no_run
//! use vss_client::{BackupComponents, BackupType, ClientError};
//!
//! async fn backup(volume: &str) -> Result<String, ClientError> {
//!     let mut bc = BackupComponents::connect_default().await?;
//!     bc.initialize_for_backup(None).await?;
//!     bc.set_backup_state(true, false, BackupType::Full, false).await?;
//!
//!     // Discovery: every writer describes its components.
//!     bc.gather_writer_metadata().await?.await?;
//!     let writers = bc.get_writer_metadata().await?;
//!     let mut selected = Vec::new();
//!     for w in &writers {
//!         for c in w.components.iter().filter(|c| c.selectable) {
//!             bc.add_component(w.instance_id, w.writer_id, c.component_type, &c.logical_path, &c.name)
//!                 .await?;
//!             selected.push((w.instance_id, w.writer_id, c.clone()));
//!         }
//!     }
//!
//!     // The snapshot set.
//!     let _set = bc.start_snapshot_set().await?;
//!     let snapshot = bc.add_to_snapshot_set(volume, None).await?;
//!     bc.prepare_for_backup().await?.await?;
//!     if let Err(e) = bc.do_snapshot_set().await?.await {
//!         bc.abort_backup().await?;
//!         return Err(e);
//!     }
//!     let props = bc.get_snapshot_properties(snapshot).await?;
//!     println!("{} is readable at {}", props.original_volume, props.snapshot_path);
//!
//!     // ... copy the files from props.snapshot_path ...
//!
//!     for (instance, writer, c) in &selected {
//!         bc.set_backup_succeeded(*instance, *writer, c.component_type, &c.logical_path, &c.name, true)
//!             .await?;
//!     }
//!     let bcd = bc.save_as_xml().await?; // store it with the backup, with every writer's metadata
//!     bc.backup_complete().await?.await?;
//!     bc.gather_writer_status().await?.await?;
//!     for s in bc.get_writer_status().await? {
//!         println!("{}: {} ({})", s.writer_name, s.state_name, s.failure_name);
//!     }
//!     Ok(bcd) // dropping `bc` ends the session
//! }
//! ```

#![deny(missing_docs)]

pub mod blocking;
mod components;
mod error;
mod operation;
mod wire;

pub use components::{
    BackupComponents, ComponentRef, DEFAULT_SOCKET, DeleteOutcome, ObjectType, SOCKET_ENV,
    default_socket,
};
pub use error::ClientError;
pub use operation::{Async, CancelOutcome};

pub use vss_model::wmd::WriterMetadata;
pub use vss_model::{
    AsyncStatus, BackupType, ComponentType, ErrorCode, FileRestoreStatus, RestoreType,
    SnapshotContext, VssError,
};
pub use vss_protocol::requester::{ProtocolVersion, SnapshotProperties, WriterStatus};

//! A blocking facade over the async client, for programs without an async runtime.
//!
//! [`BackupComponents`] and [`Async`] offer the same methods as their async counterparts
//! ([`crate::BackupComponents`], [`crate::Async`]) and block until vssd answers. Each session
//! owns a single-threaded Tokio runtime (the mini-redis `BlockingClient` pattern) that drives the
//! async client; the [`Async`] handles it returns share that runtime, so they stay usable after
//! the session is dropped.
//!
//! Call these from ordinary threads. Like every blocking wrapper over Tokio, they panic when
//! called from inside an async runtime (use the async client there).
//!
//! ```no_run
//! use vss_client::blocking::BackupComponents;
//! use vss_client::{BackupType, ClientError};
//!
//! fn snapshot(volume: &str) -> Result<String, ClientError> {
//!     let mut bc = BackupComponents::connect_default()?;
//!     bc.initialize_for_backup(None)?;
//!     bc.set_backup_state(false, false, BackupType::Full, false)?;
//!     bc.gather_writer_metadata()?.join()?;
//!     bc.start_snapshot_set()?;
//!     let snapshot = bc.add_to_snapshot_set(volume, None)?;
//!     bc.prepare_for_backup()?.join()?;
//!     if let Err(e) = bc.do_snapshot_set()?.join() {
//!         bc.abort_backup()?;
//!         return Err(e);
//!     }
//!     Ok(bc.get_snapshot_properties(snapshot)?.snapshot_path)
//! }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use uuid::Uuid;
use vss_model::wmd::WriterMetadata;
use vss_model::{
    AsyncStatus, BackupType, ComponentType, FileRestoreStatus, RestoreType, SnapshotContext,
};
use vss_protocol::requester::{ProtocolVersion, SnapshotProperties, WriterStatus};

use crate::{CancelOutcome, ClientError, ComponentRef, DeleteOutcome, ObjectType};

/// A blocking requester session with vssd; see [`crate::BackupComponents`].
#[derive(Debug)]
pub struct BackupComponents {
    /// The async session. Declared before `rt` so that it is dropped (and its socket closed)
    /// while the runtime that registered the socket still exists.
    inner: crate::BackupComponents,
    /// The runtime every call of this session, and of its [`Async`] handles, runs on.
    rt: Arc<Runtime>,
}

/// A blocking handle on an asynchronous operation; see [`crate::Async`].
#[derive(Debug, Clone)]
pub struct Async {
    /// The async handle.
    inner: crate::Async,
    /// The runtime of the session that started the operation.
    rt: Arc<Runtime>,
}

/// A single-threaded runtime with I/O and timers.
fn runtime() -> Result<Arc<Runtime>, ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| ClientError::Io(format!("cannot start the client runtime: {e}")))
}

impl BackupComponents {
    /// Connects to vssd at `socket`; see [`crate::BackupComponents::connect`].
    pub fn connect(socket: impl AsRef<Path>) -> Result<Self, ClientError> {
        let rt = runtime()?;
        let inner = rt.block_on(crate::BackupComponents::connect(socket))?;
        Ok(BackupComponents { inner, rt })
    }

    /// Connects to vssd at [`crate::default_socket`]; see
    /// [`crate::BackupComponents::connect_default`].
    pub fn connect_default() -> Result<Self, ClientError> {
        Self::connect(crate::default_socket())
    }

    /// The socket this session is connected to.
    pub fn socket(&self) -> &Path {
        self.inner.socket()
    }

    /// Wraps an async handle of this session.
    fn handle(&self, r: Result<crate::Async, ClientError>) -> Result<Async, ClientError> {
        r.map(|inner| Async {
            inner,
            rt: Arc::clone(&self.rt),
        })
    }

    /// See [`crate::BackupComponents::get_protocol_version`].
    pub fn get_protocol_version(&mut self) -> Result<ProtocolVersion, ClientError> {
        self.rt.block_on(self.inner.get_protocol_version())
    }

    /// See [`crate::BackupComponents::initialize_for_backup`].
    pub fn initialize_for_backup(&mut self, bcd: Option<&str>) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.initialize_for_backup(bcd))
    }

    /// See [`crate::BackupComponents::initialize_for_restore`].
    pub fn initialize_for_restore(&mut self, bcd: &str) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.initialize_for_restore(bcd))
    }

    /// See [`crate::BackupComponents::set_context`].
    pub fn set_context(&mut self, context: i64) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.set_context(context))
    }

    /// See [`crate::BackupComponents::set_snapshot_context`].
    pub fn set_snapshot_context(&mut self, context: SnapshotContext) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.set_snapshot_context(context))
    }

    /// See [`crate::BackupComponents::set_backup_state`].
    pub fn set_backup_state(
        &mut self,
        select_components: bool,
        bootable_system_state: bool,
        backup_type: BackupType,
        partial_file_support: bool,
    ) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.set_backup_state(
            select_components,
            bootable_system_state,
            backup_type,
            partial_file_support,
        ))
    }

    /// See [`crate::BackupComponents::gather_writer_metadata`].
    pub fn gather_writer_metadata(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.gather_writer_metadata());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::get_writer_metadata`].
    pub fn get_writer_metadata(&mut self) -> Result<Vec<WriterMetadata>, ClientError> {
        self.rt.block_on(self.inner.get_writer_metadata())
    }

    /// See [`crate::BackupComponents::add_component`].
    pub fn add_component(
        &mut self,
        instance_id: Uuid,
        writer_id: Uuid,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.add_component(
            instance_id,
            writer_id,
            component_type,
            logical_path,
            name,
        ))
    }

    /// See [`crate::BackupComponents::start_snapshot_set`].
    pub fn start_snapshot_set(&mut self) -> Result<Uuid, ClientError> {
        self.rt.block_on(self.inner.start_snapshot_set())
    }

    /// See [`crate::BackupComponents::add_to_snapshot_set`].
    pub fn add_to_snapshot_set(
        &mut self,
        volume: &str,
        provider_id: Option<Uuid>,
    ) -> Result<Uuid, ClientError> {
        self.rt
            .block_on(self.inner.add_to_snapshot_set(volume, provider_id))
    }

    /// See [`crate::BackupComponents::prepare_for_backup`].
    pub fn prepare_for_backup(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.prepare_for_backup());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::do_snapshot_set`].
    pub fn do_snapshot_set(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.do_snapshot_set());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::get_snapshot_properties`].
    pub fn get_snapshot_properties(
        &mut self,
        snapshot_id: Uuid,
    ) -> Result<SnapshotProperties, ClientError> {
        self.rt
            .block_on(self.inner.get_snapshot_properties(snapshot_id))
    }

    /// See [`crate::BackupComponents::set_backup_succeeded`].
    pub fn set_backup_succeeded(
        &mut self,
        instance_id: Uuid,
        writer_id: Uuid,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
        succeeded: bool,
    ) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.set_backup_succeeded(
            instance_id,
            writer_id,
            component_type,
            logical_path,
            name,
            succeeded,
        ))
    }

    /// See [`crate::BackupComponents::backup_complete`].
    pub fn backup_complete(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.backup_complete());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::gather_writer_status`].
    pub fn gather_writer_status(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.gather_writer_status());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::get_writer_status`].
    pub fn get_writer_status(&mut self) -> Result<Vec<WriterStatus>, ClientError> {
        self.rt.block_on(self.inner.get_writer_status())
    }

    /// See [`crate::BackupComponents::abort_backup`].
    pub fn abort_backup(&mut self) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.abort_backup())
    }

    /// See [`crate::BackupComponents::save_as_xml`].
    pub fn save_as_xml(&mut self) -> Result<String, ClientError> {
        self.rt.block_on(self.inner.save_as_xml())
    }

    /// See [`crate::BackupComponents::query`].
    pub fn query(
        &mut self,
        context: Option<i64>,
        snapshot_set_id: Option<Uuid>,
        volume: Option<&str>,
    ) -> Result<Vec<SnapshotProperties>, ClientError> {
        self.rt
            .block_on(self.inner.query(context, snapshot_set_id, volume))
    }

    /// See [`crate::BackupComponents::delete_snapshots`].
    pub fn delete_snapshots(
        &mut self,
        source_id: Uuid,
        kind: ObjectType,
        force: bool,
    ) -> Result<DeleteOutcome, ClientError> {
        self.rt
            .block_on(self.inner.delete_snapshots(source_id, kind, force))
    }

    /// See [`crate::BackupComponents::delete_volume_snapshots`].
    pub fn delete_volume_snapshots(
        &mut self,
        volume: &str,
        oldest_only: bool,
    ) -> Result<u64, ClientError> {
        self.rt
            .block_on(self.inner.delete_volume_snapshots(volume, oldest_only))
    }

    /// See [`crate::BackupComponents::expose_snapshot`].
    pub fn expose_snapshot(
        &mut self,
        snapshot_id: Uuid,
        path: &str,
    ) -> Result<String, ClientError> {
        self.rt
            .block_on(self.inner.expose_snapshot(snapshot_id, path))
    }

    /// See [`crate::BackupComponents::unexpose_snapshot`].
    pub fn unexpose_snapshot(&mut self, snapshot_id: Uuid) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.unexpose_snapshot(snapshot_id))
    }

    /// See [`crate::BackupComponents::set_restore_state`].
    pub fn set_restore_state(&mut self, restore_type: RestoreType) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.set_restore_state(restore_type))
    }

    /// See [`crate::BackupComponents::set_selected_for_restore`].
    pub fn set_selected_for_restore(
        &mut self,
        component: &ComponentRef,
        selected: bool,
        instance_id: Option<Uuid>,
    ) -> Result<(), ClientError> {
        self.rt.block_on(
            self.inner
                .set_selected_for_restore(component, selected, instance_id),
        )
    }

    /// See [`crate::BackupComponents::set_restore_options`].
    pub fn set_restore_options(
        &mut self,
        component: &ComponentRef,
        options: &str,
    ) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.set_restore_options(component, options))
    }

    /// See [`crate::BackupComponents::set_additional_restores`].
    pub fn set_additional_restores(
        &mut self,
        component: &ComponentRef,
        additional: bool,
    ) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.set_additional_restores(component, additional))
    }

    /// See [`crate::BackupComponents::pre_restore`].
    pub fn pre_restore(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.pre_restore());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::add_alternative_location_mapping`].
    pub fn add_alternative_location_mapping(
        &mut self,
        component: &ComponentRef,
        path: &str,
        filespec: &str,
        recursive: bool,
        destination: &str,
    ) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.add_alternative_location_mapping(
                component,
                path,
                filespec,
                recursive,
                destination,
            ))
    }

    /// See [`crate::BackupComponents::set_file_restore_status`].
    pub fn set_file_restore_status(
        &mut self,
        component: &ComponentRef,
        status: FileRestoreStatus,
    ) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.set_file_restore_status(component, status))
    }

    /// See [`crate::BackupComponents::post_restore`].
    pub fn post_restore(&mut self) -> Result<Async, ClientError> {
        let r = self.rt.block_on(self.inner.post_restore());
        self.handle(r)
    }

    /// See [`crate::BackupComponents::revert_to_snapshot`].
    pub fn revert_to_snapshot(
        &mut self,
        snapshot_id: Uuid,
        force_dismount: bool,
    ) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.revert_to_snapshot(snapshot_id, force_dismount))
    }

    /// See [`crate::BackupComponents::break_snapshot_set`].
    pub fn break_snapshot_set(&mut self, snapshot_set_id: Uuid) -> Result<(), ClientError> {
        self.rt
            .block_on(self.inner.break_snapshot_set(snapshot_set_id))
    }

    /// See [`crate::BackupComponents::list_writers`].
    pub fn list_writers(&mut self) -> Result<Vec<WriterStatus>, ClientError> {
        self.rt.block_on(self.inner.list_writers())
    }

    /// See [`crate::BackupComponents::list_providers`].
    pub fn list_providers(&mut self) -> Result<Vec<vss_protocol::admin::Provider>, ClientError> {
        self.rt.block_on(self.inner.list_providers())
    }
}

impl Async {
    /// See [`crate::Async::id`].
    pub fn id(&self) -> Uuid {
        self.inner.id()
    }

    /// See [`crate::Async::operation`].
    pub fn operation(&self) -> &str {
        self.inner.operation()
    }

    /// See [`crate::Async::method`].
    pub fn method(&self) -> &'static str {
        self.inner.method()
    }

    /// See [`crate::Async::query_status`].
    pub fn query_status(&self) -> Result<AsyncStatus, ClientError> {
        self.rt.block_on(self.inner.query_status())
    }

    /// See [`crate::Async::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<AsyncStatus, ClientError> {
        self.rt.block_on(self.inner.wait(timeout))
    }

    /// See [`crate::Async::cancel`].
    pub fn cancel(&self) -> Result<CancelOutcome, ClientError> {
        self.rt.block_on(self.inner.cancel())
    }

    /// Waits for the end and returns `Ok(())` only if the operation finished; see
    /// [`crate::Async::join`].
    pub fn join(self) -> Result<(), ClientError> {
        self.rt.block_on(self.inner.join())
    }
}

//! [`BackupComponents`]: one requester session with vssd, like `IVssBackupComponents`
//! (vss-model.md §2.2, §2.3).
//!
//! One value is one connection to vssd is one backup-components object. The methods are the
//! `vss.Requester` methods, named as IVssBackupComponents names them, in snake case, with typed
//! arguments and results; vssd enforces the call order and answers an out-of-sequence call with
//! `VSS_E_BAD_STATE`. Dropping the value closes the connection, which is `Release()`: vssd sends
//! BackupShutdown to the writers and deletes the session's auto-release snapshots.
//!
//! Calls on one session are sequential (each method takes `&mut self`). A call whose future is
//! dropped before its reply arrived (a `select!` or `timeout` around it) leaves the reply unread
//! on the connection; the session then refuses further calls with [`ClientError::Io`] rather
//! than pairing the next call with a stale reply.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use uuid::Uuid;
use vss_model::wmd::WriterMetadata;
use vss_model::{BackupType, ComponentType, FileRestoreStatus, RestoreType, SnapshotContext};
use vss_protocol::Empty;
use vss_protocol::requester::{
    self as rq, DeleteSnapshotsReply, OperationReply, ProtocolVersion, QueryReply, SaveAsXmlReply,
    SnapshotProperties, StartSnapshotSetReply, WriterMetadataList, WriterStatus, WriterStatusList,
};
use vss_protocol::transport::Connection;

use crate::{Async, ClientError, wire};

/// A component of a saved Backup Components Document, as the restore calls name it: the
/// writer class and the component (any live instance of the writer restores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRef {
    /// Writer class id.
    pub writer_id: Uuid,
    /// Component type.
    pub component_type: ComponentType,
    /// Logical path ("" at the root).
    pub logical_path: String,
    /// Component name.
    pub name: String,
}

/// vssd's requester socket when [`SOCKET_ENV`] is not set.
pub const DEFAULT_SOCKET: &str = "/run/vss/vssd.sock";

/// The environment variable that overrides [`DEFAULT_SOCKET`] for
/// [`BackupComponents::connect_default`].
pub const SOCKET_ENV: &str = "VSS_SOCKET";

/// The socket [`BackupComponents::connect_default`] uses: `$VSS_SOCKET` if set and not empty,
/// else [`DEFAULT_SOCKET`].
pub fn default_socket() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// The kind of object [`BackupComponents::delete_snapshots`] deletes (`VSS_OBJECT_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// One snapshot (`VSS_OBJECT_SNAPSHOT`).
    Snapshot,
    /// Every snapshot of a set (`VSS_OBJECT_SNAPSHOT_SET`).
    SnapshotSet,
}

impl ObjectType {
    /// The symbolic name used on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            ObjectType::Snapshot => "VSS_OBJECT_SNAPSHOT",
            ObjectType::SnapshotSet => "VSS_OBJECT_SNAPSHOT_SET",
        }
    }
}

/// The result of [`BackupComponents::delete_snapshots`]. Deletion is sequential and stops at the
/// first snapshot that cannot be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOutcome {
    /// How many snapshots were deleted.
    pub deleted: u64,
    /// The snapshot deletion stopped at, if one could not be deleted.
    pub non_deleted: Option<Uuid>,
}

/// A requester session with vssd (`IVssBackupComponents`).
///
/// See the [crate documentation](crate) for a full backup sequence.
#[derive(Debug)]
pub struct BackupComponents {
    /// The session connection; vssd ties the session to it.
    conn: Connection,
    /// Where it was connected, for the fresh connections of [`Async`] handles.
    socket: PathBuf,
    /// Set while a call is between sending and receiving its reply. Still set at the start of a
    /// call means an earlier call's future was dropped mid-way and its reply may be unread.
    in_call: bool,
}

impl BackupComponents {
    /// Connects to vssd at `socket`, creating a backup-components object
    /// (`CreateVssBackupComponents`).
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, ClientError> {
        let socket = socket.as_ref();
        let conn = wire::connect(socket).await?;
        Ok(BackupComponents {
            conn,
            socket: socket.to_owned(),
            in_call: false,
        })
    }

    /// Connects to vssd at [`default_socket`] (`$VSS_SOCKET`, else `/run/vss/vssd.sock`).
    pub async fn connect_default() -> Result<Self, ClientError> {
        Self::connect(default_socket()).await
    }

    /// The socket this session is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One call on the session connection, guarded against use after an interrupted call.
    async fn call<P, R>(&mut self, method: &'static str, params: &P) -> Result<R, ClientError>
    where
        P: serde::Serialize,
        R: serde::de::DeserializeOwned,
    {
        if self.in_call {
            return Err(ClientError::Io(format!(
                "cannot call {method}: an earlier call on this session was interrupted before its reply \
                 arrived; drop the session and connect again"
            )));
        }
        self.in_call = true;
        let r = wire::call(&mut self.conn, method, params).await;
        // A transport failure leaves the connection broken anyway; a VSS error or a reply that
        // did not decode was read in full, so the connection stays usable.
        self.in_call = false;
        r
    }

    /// A call that returns nothing.
    async fn call_unit<P: serde::Serialize>(
        &mut self,
        method: &'static str,
        params: &P,
    ) -> Result<(), ClientError> {
        // Any reply object is accepted: later protocol versions may add fields.
        self.call::<P, IgnoredAny>(method, params).await.map(drop)
    }

    /// A call that starts an asynchronous operation.
    async fn call_async(&mut self, method: &'static str) -> Result<Async, ClientError> {
        let r: OperationReply = self.call(method, &Empty {}).await?;
        Async::new(&self.socket, method, r.operation)
    }

    /// The protocol version vssd speaks and its product version (`GetProtocolVersion`).
    pub async fn get_protocol_version(&mut self) -> Result<ProtocolVersion, ClientError> {
        self.call("GetProtocolVersion", &Empty {}).await
    }

    /// Puts the session in backup mode; `bcd` is a saved Backup Components Document, if any
    /// (`InitializeForBackup`). The first call of a backup.
    pub async fn initialize_for_backup(&mut self, bcd: Option<&str>) -> Result<(), ClientError> {
        self.call_unit(
            "InitializeForBackup",
            &rq::InitializeForBackup {
                bcd: bcd.map(str::to_owned),
            },
        )
        .await
    }

    /// Puts the session in restore mode with the BCD saved at backup time
    /// (`InitializeForRestore`).
    pub async fn initialize_for_restore(&mut self, bcd: &str) -> Result<(), ClientError> {
        self.call_unit(
            "InitializeForRestore",
            &rq::InitializeForRestore {
                bcd: bcd.to_owned(),
            },
        )
        .await
    }

    /// Selects the snapshot context, a `VSS_SNAPSHOT_CONTEXT` optionally OR'd with attribute
    /// bits (`SetContext`). Once, right after `initialize_for_backup`; the default is
    /// `VSS_CTX_BACKUP`.
    pub async fn set_context(&mut self, context: i64) -> Result<(), ClientError> {
        self.call_unit("SetContext", &rq::SetContext { context })
            .await
    }

    /// [`Self::set_context`] with a typed context.
    pub async fn set_snapshot_context(
        &mut self,
        context: SnapshotContext,
    ) -> Result<(), ClientError> {
        self.set_context(i64::from(context.value())).await
    }

    /// Records component mode, bootable system state, backup type and partial-file support in
    /// the BCD (`SetBackupState`). Before `gather_writer_metadata`.
    pub async fn set_backup_state(
        &mut self,
        select_components: bool,
        bootable_system_state: bool,
        backup_type: BackupType,
        partial_file_support: bool,
    ) -> Result<(), ClientError> {
        let params = rq::SetBackupState {
            select_components,
            bootable_system_state,
            backup_type: backup_type.name().to_owned(),
            partial_file_support,
        };
        self.call_unit("SetBackupState", &params).await
    }

    /// Asks every writer for its metadata (the Identify event; `GatherWriterMetadata`).
    pub async fn gather_writer_metadata(&mut self) -> Result<Async, ClientError> {
        self.call_async("GatherWriterMetadata").await
    }

    /// The metadata of every writer that answered Identify (`GetWriterMetadata`).
    pub async fn get_writer_metadata(&mut self) -> Result<Vec<WriterMetadata>, ClientError> {
        let r: WriterMetadataList = self.call("GetWriterMetadata", &Empty {}).await?;
        Ok(r.writers)
    }

    /// Includes a component in the backup (`AddComponent`). `logical_path` is `""` at the root.
    pub async fn add_component(
        &mut self,
        instance_id: Uuid,
        writer_id: Uuid,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        let params = rq::AddComponent {
            instance_id: instance_id.to_string(),
            writer_id: writer_id.to_string(),
            component_type: component_type.name().to_owned(),
            logical_path: Some(logical_path.to_owned()),
            name: name.to_owned(),
        };
        self.call_unit("AddComponent", &params).await
    }

    /// Starts a new snapshot set and returns its id (`StartSnapshotSet`).
    pub async fn start_snapshot_set(&mut self) -> Result<Uuid, ClientError> {
        let r: StartSnapshotSetReply = self.call("StartSnapshotSet", &Empty {}).await?;
        wire::parse_id("snapshotSetId", &r.snapshot_set_id)
    }

    /// Adds a volume (absolute path of a mount point or subvolume) to the set and returns the
    /// id its snapshot will have (`AddToSnapshotSet`). `None` lets vssd choose the provider.
    pub async fn add_to_snapshot_set(
        &mut self,
        volume: &str,
        provider_id: Option<Uuid>,
    ) -> Result<Uuid, ClientError> {
        let params = rq::AddToSnapshotSet {
            volume: volume.to_owned(),
            provider_id: provider_id.map(|p| p.to_string()),
        };
        let r: rq::AddToSnapshotSetReply = self.call("AddToSnapshotSet", &params).await?;
        wire::parse_id("snapshotId", &r.snapshot_id)
    }

    /// Tells the writers what will be backed up (the PrepareForBackup event;
    /// `PrepareForBackup`).
    pub async fn prepare_for_backup(&mut self) -> Result<Async, ClientError> {
        self.call_async("PrepareForBackup").await
    }

    /// Creates the snapshots of the set at one instant: PrepareForSnapshot, Freeze, commit,
    /// Thaw, PostSnapshot (`DoSnapshotSet`). If it fails, call [`Self::abort_backup`].
    pub async fn do_snapshot_set(&mut self) -> Result<Async, ClientError> {
        self.call_async("DoSnapshotSet").await
    }

    /// The properties of a snapshot, among them the path it is readable at
    /// (`GetSnapshotProperties`).
    pub async fn get_snapshot_properties(
        &mut self,
        snapshot_id: Uuid,
    ) -> Result<SnapshotProperties, ClientError> {
        self.call(
            "GetSnapshotProperties",
            &rq::SnapshotIdParam {
                snapshot_id: snapshot_id.to_string(),
            },
        )
        .await
    }

    /// Records whether the backup of an explicitly included component succeeded
    /// (`SetBackupSucceeded`). Before `backup_complete`.
    pub async fn set_backup_succeeded(
        &mut self,
        instance_id: Uuid,
        writer_id: Uuid,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
        succeeded: bool,
    ) -> Result<(), ClientError> {
        let params = rq::SetBackupSucceeded {
            instance_id: instance_id.to_string(),
            writer_id: writer_id.to_string(),
            component_type: component_type.name().to_owned(),
            logical_path: Some(logical_path.to_owned()),
            name: name.to_owned(),
            succeeded,
        };
        self.call_unit("SetBackupSucceeded", &params).await
    }

    /// Tells the writers the backup is over (the BackupComplete event; `BackupComplete`).
    pub async fn backup_complete(&mut self) -> Result<Async, ClientError> {
        self.call_async("BackupComplete").await
    }

    /// Collects every writer's state (`GatherWriterStatus`).
    pub async fn gather_writer_status(&mut self) -> Result<Async, ClientError> {
        self.call_async("GatherWriterStatus").await
    }

    /// The writer states collected by the last `gather_writer_status` (`GetWriterStatus`).
    pub async fn get_writer_status(&mut self) -> Result<Vec<WriterStatus>, ClientError> {
        let r: WriterStatusList = self.call("GetWriterStatus", &Empty {}).await?;
        Ok(r.writers)
    }

    /// Abandons the backup: the writers get Abort (`AbortBackup`). Required after a failure
    /// once `prepare_for_backup` has been issued.
    pub async fn abort_backup(&mut self) -> Result<(), ClientError> {
        self.call_unit("AbortBackup", &Empty {}).await
    }

    /// The Backup Components Document as XML, to store with the backup (`SaveAsXML`).
    pub async fn save_as_xml(&mut self) -> Result<String, ClientError> {
        let r: SaveAsXmlReply = self.call("SaveAsXml", &Empty {}).await?;
        Ok(r.bcd)
    }

    /// Lists snapshots (`Query`): those visible in `context` (default the session's; `-1` is
    /// `VSS_CTX_ALL`), optionally only of one set or one original volume.
    pub async fn query(
        &mut self,
        context: Option<i64>,
        snapshot_set_id: Option<Uuid>,
        volume: Option<&str>,
    ) -> Result<Vec<SnapshotProperties>, ClientError> {
        let params = rq::Query {
            context,
            snapshot_set_id: snapshot_set_id.map(|s| s.to_string()),
            volume: volume.map(str::to_owned),
        };
        let r: QueryReply = self.call("Query", &params).await?;
        Ok(r.snapshots)
    }

    /// Deletes a snapshot or every snapshot of a set (`DeleteSnapshots`); `force` deletes even
    /// exposed snapshots.
    pub async fn delete_snapshots(
        &mut self,
        source_id: Uuid,
        kind: ObjectType,
        force: bool,
    ) -> Result<DeleteOutcome, ClientError> {
        let params = rq::DeleteSnapshots {
            source_id: source_id.to_string(),
            source_type: kind.name().to_owned(),
            force_delete: force,
        };
        let r: DeleteSnapshotsReply = self.call("DeleteSnapshots", &params).await?;
        let deleted = u64::try_from(r.deleted).map_err(|_| {
            ClientError::Protocol(format!(
                "DeleteSnapshots: deleted = {} is negative",
                r.deleted
            ))
        })?;
        let non_deleted =
            wire::parse_opt_id("nonDeletedSnapshotId", r.non_deleted_snapshot_id.as_deref())?;
        Ok(DeleteOutcome {
            deleted,
            non_deleted,
        })
    }

    /// Deletes the oldest snapshot of `volume`, or all of them (`DeleteVolumeSnapshots`);
    /// returns how many were deleted.
    pub async fn delete_volume_snapshots(
        &mut self,
        volume: &str,
        oldest_only: bool,
    ) -> Result<u64, ClientError> {
        let params = rq::DeleteVolumeSnapshots {
            volume: volume.to_owned(),
            oldest_only,
        };
        let r: rq::DeletedCount = self.call("DeleteVolumeSnapshots", &params).await?;
        u64::try_from(r.deleted).map_err(|_| {
            ClientError::Protocol(format!(
                "DeleteVolumeSnapshots: deleted = {} is negative",
                r.deleted
            ))
        })
    }

    /// Mounts a persistent snapshot read-only at `path`, an existing empty directory
    /// (`ExposeSnapshot`); returns where it is exposed.
    pub async fn expose_snapshot(
        &mut self,
        snapshot_id: Uuid,
        path: &str,
    ) -> Result<String, ClientError> {
        let params = rq::ExposeSnapshot {
            snapshot_id: snapshot_id.to_string(),
            path: path.to_owned(),
        };
        let r: rq::ExposeReply = self.call("ExposeSnapshot", &params).await?;
        Ok(r.exposed_name)
    }

    /// Undoes [`Self::expose_snapshot`] (`UnexposeSnapshot`).
    pub async fn unexpose_snapshot(&mut self, snapshot_id: Uuid) -> Result<(), ClientError> {
        let params = rq::SnapshotIdParam {
            snapshot_id: snapshot_id.to_string(),
        };
        self.call_unit("UnexposeSnapshot", &params).await
    }

    /// Hands a set made by a hardware-type provider over to the administrator
    /// (`BreakSnapshotSet`).
    pub async fn break_snapshot_set(&mut self, snapshot_set_id: Uuid) -> Result<(), ClientError> {
        let params = rq::SetIdParam {
            snapshot_set_id: snapshot_set_id.to_string(),
        };
        self.call_unit("BreakSnapshotSet", &params).await
    }

    /// Sets the kind of restore (`SetRestoreState`). Restore sessions, before `pre_restore`.
    pub async fn set_restore_state(
        &mut self,
        restore_type: RestoreType,
    ) -> Result<(), ClientError> {
        let params = rq::SetRestoreState {
            restore_type: restore_type.name().to_owned(),
        };
        self.call_unit("SetRestoreState", &params).await
    }

    /// Selects a component of the saved BCD for restore, or unselects it
    /// (`SetSelectedForRestore`; with `instance_id`, SetSelectedForRestoreEx: that live writer
    /// instance restores it). After `gather_writer_metadata`, before `pre_restore`.
    pub async fn set_selected_for_restore(
        &mut self,
        component: &ComponentRef,
        selected: bool,
        instance_id: Option<Uuid>,
    ) -> Result<(), ClientError> {
        let params = rq::SetSelectedForRestore {
            writer_id: component.writer_id.to_string(),
            component_type: component.component_type.name().to_owned(),
            logical_path: Some(component.logical_path.clone()),
            name: component.name.clone(),
            selected,
            instance_id: instance_id.map(|i| i.to_string()),
        };
        self.call_unit("SetSelectedForRestore", &params).await
    }

    /// Writer-private restore options of a component (`SetRestoreOptions`).
    pub async fn set_restore_options(
        &mut self,
        component: &ComponentRef,
        options: &str,
    ) -> Result<(), ClientError> {
        let params = rq::SetRestoreOptions {
            writer_id: component.writer_id.to_string(),
            component_type: component.component_type.name().to_owned(),
            logical_path: Some(component.logical_path.clone()),
            name: component.name.clone(),
            options: options.to_owned(),
        };
        self.call_unit("SetRestoreOptions", &params).await
    }

    /// Tells the writer more restores of the component follow (`SetAdditionalRestores`).
    pub async fn set_additional_restores(
        &mut self,
        component: &ComponentRef,
        additional: bool,
    ) -> Result<(), ClientError> {
        let params = rq::SetAdditionalRestores {
            writer_id: component.writer_id.to_string(),
            component_type: component.component_type.name().to_owned(),
            logical_path: Some(component.logical_path.clone()),
            name: component.name.clone(),
            additional,
        };
        self.call_unit("SetAdditionalRestores", &params).await
    }

    /// Tells the writers what is about to be restored (the PreRestore event; `PreRestore`).
    pub async fn pre_restore(&mut self) -> Result<Async, ClientError> {
        self.call_async("PreRestore").await
    }

    /// Records that a file set of a component was restored to `destination`
    /// (`AddAlternativeLocationMapping`). After `pre_restore`, before `post_restore`.
    pub async fn add_alternative_location_mapping(
        &mut self,
        component: &ComponentRef,
        path: &str,
        filespec: &str,
        recursive: bool,
        destination: &str,
    ) -> Result<(), ClientError> {
        let params = rq::AddAlternativeLocationMapping {
            writer_id: component.writer_id.to_string(),
            component_type: component.component_type.name().to_owned(),
            logical_path: Some(component.logical_path.clone()),
            name: component.name.clone(),
            path: path.to_owned(),
            filespec: filespec.to_owned(),
            recursive,
            destination: destination.to_owned(),
        };
        self.call_unit("AddAlternativeLocationMapping", &params)
            .await
    }

    /// How the copy of a component's files went (`SetFileRestoreStatus`). After `pre_restore`,
    /// before `post_restore`.
    pub async fn set_file_restore_status(
        &mut self,
        component: &ComponentRef,
        status: FileRestoreStatus,
    ) -> Result<(), ClientError> {
        let params = rq::SetFileRestoreStatus {
            writer_id: component.writer_id.to_string(),
            component_type: component.component_type.name().to_owned(),
            logical_path: Some(component.logical_path.clone()),
            name: component.name.clone(),
            status: status.name().to_owned(),
        };
        self.call_unit("SetFileRestoreStatus", &params).await
    }

    /// Tells the writers the files are restored (the PostRestore event; `PostRestore`).
    pub async fn post_restore(&mut self) -> Result<Async, ClientError> {
        self.call_async("PostRestore").await
    }

    /// Makes a persistent snapshot's volume hold the snapshot's contents again
    /// (`RevertToSnapshot`; btrfs only). Backup-mode sessions.
    pub async fn revert_to_snapshot(
        &mut self,
        snapshot_id: Uuid,
        force_dismount: bool,
    ) -> Result<(), ClientError> {
        let params = rq::RevertToSnapshot {
            snapshot_id: snapshot_id.to_string(),
            force_dismount,
        };
        self.call_unit("RevertToSnapshot", &params).await
    }

    /// Every writer instance vssd has met, with its last state (`vss.Admin.ListWriters`; needs
    /// no initialization).
    pub async fn list_writers(&mut self) -> Result<Vec<WriterStatus>, ClientError> {
        let r: vss_protocol::admin::WriterList =
            self.call("vss.Admin.ListWriters", &Empty {}).await?;
        Ok(r.writers)
    }

    /// The registered providers in the order of automatic choice (`vss.Admin.ListProviders`).
    pub async fn list_providers(
        &mut self,
    ) -> Result<Vec<vss_protocol::admin::Provider>, ClientError> {
        let r: vss_protocol::admin::ProviderList =
            self.call("vss.Admin.ListProviders", &Empty {}).await?;
        Ok(r.providers)
    }

    /// What vssd did lately, after sequence number `after` (`vss.Admin.Events`): writer events
    /// with their outcomes and durations, commits, freeze windows, operation ends. Returns the
    /// events and the last sequence number (pass it as `after` next time).
    pub async fn events(
        &mut self,
        after: Option<i64>,
    ) -> Result<(Vec<vss_protocol::admin::Event>, i64), ClientError> {
        let r: vss_protocol::admin::EventList = self
            .call(
                "vss.Admin.Events",
                &vss_protocol::admin::EventsParam { after },
            )
            .await?;
        Ok((r.events, r.last))
    }
}

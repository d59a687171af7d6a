//! `vss.Requester`: parameters and replies of each method (see interfaces/vss.Requester.varlink).
//!
//! Every input type denies unknown fields, so that a misspelt parameter is an error, not
//! silently ignored.

use serde::{Deserialize, Serialize};
pub use vss_model::wmd::WriterMetadata;

/// The interface name.
pub const INTERFACE: &str = "vss.Requester";
/// The default requester socket.
pub const DEFAULT_SOCKET: &str = "/run/vss/vssd.sock";
/// The environment variable that overrides [`DEFAULT_SOCKET`] for clients.
pub const SOCKET_ENV: &str = "VSS_SOCKET";
/// The error every failed call returns.
pub const ERROR_VSS: &str = "vss.Requester.VssError";

/// Every method of the interface (without the interface prefix).
pub const METHODS: &[&str] = &[
    "GetProtocolVersion",
    "InitializeForBackup",
    "InitializeForRestore",
    "SetContext",
    "SetBackupState",
    "GatherWriterMetadata",
    "GetWriterMetadata",
    "AddComponent",
    "StartSnapshotSet",
    "AddToSnapshotSet",
    "PrepareForBackup",
    "DoSnapshotSet",
    "GetSnapshotProperties",
    "SetBackupSucceeded",
    "BackupComplete",
    "GatherWriterStatus",
    "GetWriterStatus",
    "AbortBackup",
    "SaveAsXml",
    "Query",
    "DeleteSnapshots",
    "DeleteVolumeSnapshots",
    "ExposeSnapshot",
    "UnexposeSnapshot",
    "BreakSnapshotSet",
    "RevertToSnapshot",
    "SetRestoreState",
    "SetSelectedForRestore",
    "SetRestoreOptions",
    "SetAdditionalRestores",
    "PreRestore",
    "AddAlternativeLocationMapping",
    "SetFileRestoreStatus",
    "PostRestore",
    "QueryStatus",
    "Wait",
    "Cancel",
];

/// Reply of GetProtocolVersion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolVersion {
    /// [`crate::PROTOCOL_VERSION`] of the server.
    pub version: i64,
    /// "vss for Linux".
    pub product: String,
    /// The server's package version.
    pub product_version: String,
}

/// InitializeForBackup parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitializeForBackup {
    /// A saved BCD, or none.
    #[serde(default)]
    pub bcd: Option<String>,
}

/// InitializeForRestore parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitializeForRestore {
    /// The BCD saved at backup time.
    pub bcd: String,
}

/// SetContext parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetContext {
    /// `VSS_SNAPSHOT_CONTEXT`, optionally OR'd with attribute bits.
    pub context: i64,
}

/// SetBackupState parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetBackupState {
    /// Component mode.
    pub select_components: bool,
    /// Bootable system state.
    pub bootable_system_state: bool,
    /// "VSS_BT_FULL", "VSS_BT_COPY", ...
    pub backup_type: String,
    /// Partial-file support.
    pub partial_file_support: bool,
}

/// Reply of the asynchronous methods.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperationReply {
    /// The operation id, for QueryStatus, Wait and Cancel.
    pub operation: String,
}

/// Reply of GetWriterMetadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriterMetadataList {
    /// The metadata of every writer that answered Identify.
    pub writers: Vec<WriterMetadata>,
}

/// AddComponent parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddComponent {
    /// Writer instance id.
    pub instance_id: String,
    /// Writer class id.
    pub writer_id: String,
    /// "VSS_CT_FILEGROUP" or "VSS_CT_DATABASE".
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
}

/// Reply of StartSnapshotSet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StartSnapshotSetReply {
    /// The new set's id.
    pub snapshot_set_id: String,
}

/// AddToSnapshotSet parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddToSnapshotSet {
    /// Absolute path of a mount point or btrfs subvolume root.
    pub volume: String,
    /// Provider id; null chooses automatically.
    #[serde(default)]
    pub provider_id: Option<String>,
}

/// Reply of AddToSnapshotSet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AddToSnapshotSetReply {
    /// The snapshot's id.
    pub snapshot_id: String,
}

/// GetSnapshotProperties parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotIdParam {
    /// Snapshot id.
    pub snapshot_id: String,
}

/// A snapshot's properties (`VSS_SNAPSHOT_PROP`); also the reply of GetSnapshotProperties.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotProperties {
    /// Snapshot id.
    pub snapshot_id: String,
    /// Its set.
    pub snapshot_set_id: String,
    /// Volumes in the set at creation.
    pub snapshots_count: i64,
    /// Where the snapshot is readable.
    pub snapshot_path: String,
    /// The original volume.
    pub original_volume: String,
    /// The provider that made it.
    pub provider_id: String,
    /// `VSS_VOLUME_SNAPSHOT_ATTRIBUTES` bits.
    pub attributes: i64,
    /// The names of the bits.
    pub attribute_names: Vec<String>,
    /// The context it was made in.
    pub context: i64,
    /// RFC 3339 creation time (UTC).
    pub creation_timestamp: String,
    /// `VSS_SNAPSHOT_STATE` name.
    pub status: String,
    /// Where it is exposed (ExposeSnapshot), if it is.
    #[serde(default)]
    pub exposed_name: Option<String>,
    /// The provider's atomicity: `per-subvolume`, `per-file` or `across-set`.
    #[serde(default)]
    pub atomicity: Option<String>,
    /// The consistency record.
    #[serde(default)]
    pub consistency: Option<Consistency>,
}

/// How consistent a snapshot is, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    /// `application-consistent`, `filesystem-consistent` or `crash-consistent`.
    pub level: String,
    /// Writers that froze and thawed.
    #[serde(default)]
    pub writers_frozen: Vec<String>,
    /// Writers that took part and failed (name: state failure).
    #[serde(default)]
    pub writers_failed: Vec<String>,
    /// Writers of the session that did not take part.
    #[serde(default)]
    pub writers_skipped: Vec<String>,
    /// Microseconds between the first and the last commit of the set.
    #[serde(default)]
    pub commit_skew_us: u64,
    /// Whether the filesystems were frozen (FIFREEZE) for the commit.
    #[serde(default)]
    pub filesystem_frozen: bool,
}

/// DeleteVolumeSnapshots parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteVolumeSnapshots {
    /// The original volume.
    pub volume: String,
    /// Only the oldest snapshot.
    pub oldest_only: bool,
}

/// Reply of DeleteVolumeSnapshots.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeletedCount {
    /// How many were deleted.
    pub deleted: i64,
}

/// ExposeSnapshot parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExposeSnapshot {
    /// The snapshot.
    pub snapshot_id: String,
    /// An existing empty directory.
    pub path: String,
}

/// Reply of ExposeSnapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExposeReply {
    /// Where it is now readable.
    pub exposed_name: String,
}

/// BreakSnapshotSet parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetIdParam {
    /// The set.
    pub snapshot_set_id: String,
}

/// SetBackupSucceeded parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetBackupSucceeded {
    /// Writer instance id.
    pub instance_id: String,
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// Whether its backup succeeded.
    pub succeeded: bool,
}

/// SetRestoreState parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetRestoreState {
    /// `VSS_RESTORE_TYPE` name (`VSS_RTYPE_BY_COPY`, `VSS_RTYPE_IMPORT`, `VSS_RTYPE_OTHER`).
    pub restore_type: String,
}

/// SetSelectedForRestore parameters (with `instanceId`: SetSelectedForRestoreEx).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSelectedForRestore {
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// Selected or not.
    pub selected: bool,
    /// The live writer instance that restores it (restore with move); default: the writer's.
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// SetRestoreOptions parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetRestoreOptions {
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// Writer-private restore options.
    pub options: String,
}

/// SetAdditionalRestores parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetAdditionalRestores {
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// More restores (incremental, differential) follow.
    pub additional: bool,
}

/// AddAlternativeLocationMapping parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddAlternativeLocationMapping {
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// The file set's original directory (absolute).
    pub path: String,
    /// Its file specification.
    pub filespec: String,
    /// Whether it includes subdirectories.
    pub recursive: bool,
    /// Where its files were restored (absolute).
    pub destination: String,
}

/// SetFileRestoreStatus parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetFileRestoreStatus {
    /// Writer class id.
    pub writer_id: String,
    /// Component type name.
    pub component_type: String,
    /// Logical path; null or "" at the root.
    #[serde(default)]
    pub logical_path: Option<String>,
    /// Component name.
    pub name: String,
    /// `VSS_RS_ALL`, `VSS_RS_NONE` or `VSS_RS_FAILED`.
    pub status: String,
}

/// RevertToSnapshot parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevertToSnapshot {
    /// The persistent snapshot to revert its volume to.
    pub snapshot_id: String,
    /// Revert even if the volume is in use (its mount is lazily detached and mounted again).
    pub force_dismount: bool,
}

/// One writer's status (`GetWriterStatus`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WriterStatus {
    /// Writer class id.
    pub writer_id: String,
    /// Writer instance id.
    pub instance_id: String,
    /// Writer name.
    pub writer_name: String,
    /// Instance name.
    #[serde(default)]
    pub instance_name: String,
    /// `VSS_WRITER_STATE` value.
    pub state: u32,
    /// `VSS_WRITER_STATE` name.
    pub state_name: String,
    /// Failure HRESULT (0 = S_OK).
    pub failure: u32,
    /// Failure name ("S_OK" when none).
    pub failure_name: String,
    /// The writer's message, if it gave one.
    #[serde(default)]
    pub failure_message: Option<String>,
}

/// Reply of GetWriterStatus.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriterStatusList {
    /// One entry per writer of the session.
    pub writers: Vec<WriterStatus>,
}

/// Reply of SaveAsXml.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveAsXmlReply {
    /// The BCD as XML.
    pub bcd: String,
}

/// Query parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Query {
    /// Context to query; default the session's; -1 or 4294967295 = VSS_CTX_ALL.
    #[serde(default)]
    pub context: Option<i64>,
    /// Only this set.
    #[serde(default)]
    pub snapshot_set_id: Option<String>,
    /// Only snapshots of this original volume.
    #[serde(default)]
    pub volume: Option<String>,
}

/// Reply of Query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryReply {
    /// Matching snapshots.
    pub snapshots: Vec<SnapshotProperties>,
}

/// DeleteSnapshots parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteSnapshots {
    /// Snapshot or set id.
    pub source_id: String,
    /// "VSS_OBJECT_SNAPSHOT" or "VSS_OBJECT_SNAPSHOT_SET".
    pub source_type: String,
    /// Delete even if exposed.
    #[serde(default)]
    pub force_delete: bool,
}

/// Reply of DeleteSnapshots.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteSnapshotsReply {
    /// How many were deleted.
    pub deleted: i64,
    /// The first that could not be deleted.
    #[serde(default)]
    pub non_deleted_snapshot_id: Option<String>,
}

/// QueryStatus and Cancel parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationParam {
    /// Operation id.
    pub operation: String,
}

/// Wait parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitParam {
    /// Operation id.
    pub operation: String,
    /// Give up waiting after this long (the reply is then VSS_S_ASYNC_PENDING); none = forever.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
}

/// Reply of QueryStatus, Wait and Cancel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReply {
    /// Symbolic name (VSS_S_ASYNC_FINISHED, VSS_E_..., S_OK).
    pub code: String,
    /// Its HRESULT.
    pub hresult: u32,
    /// For a failed operation, what went wrong (added in protocol version 1; may be absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<&vss_model::AsyncStatus> for StatusReply {
    fn from(s: &vss_model::AsyncStatus) -> Self {
        let message = match s {
            vss_model::AsyncStatus::Failed(e) => Some(e.message.clone()),
            _ => None,
        };
        StatusReply {
            code: s.name().to_owned(),
            hresult: s.hresult(),
            message,
        }
    }
}

//! `vss.Writer`: the events vssd sends to writers and their replies (see
//! interfaces/vss.Writer.varlink).

use serde::{Deserialize, Serialize};
pub use vss_model::wmd::WriterMetadata;
use vss_model::{BackupType, ComponentType};

/// The interface name.
pub const INTERFACE: &str = "vss.Writer";
/// The default writers directory, where each writer puts its socket.
pub const DEFAULT_WRITERS_DIR: &str = "/run/vss/writers";
/// The error a writer fails an event with.
pub const ERROR_WRITER_FAILURE: &str = "vss.Writer.WriterFailure";

/// Every method of the interface (without the interface prefix).
pub const METHODS: &[&str] = &[
    "Identify",
    "PrepareForBackup",
    "PrepareForSnapshot",
    "Freeze",
    "Thaw",
    "PostSnapshot",
    "Abort",
    "BackupComplete",
    "BackupShutdown",
    "PreRestore",
    "PostRestore",
];

/// The events, one per method of `vss.Writer` (defined in the model, where the writer state
/// machine uses them).
pub use vss_model::WriterEvent as Event;

/// Reply of Identify.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifyReply {
    /// The writer's metadata document.
    pub metadata: WriterMetadata,
}

/// A volume of the snapshot set as events show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventVolume {
    /// Original volume (absolute path).
    pub volume: String,
    /// Its snapshot's id.
    pub snapshot_id: String,
    /// Where the snapshot is readable (from PostSnapshot on).
    #[serde(default)]
    pub snapshot_path: Option<String>,
}

/// An explicitly included component as events show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventComponent {
    /// Component type.
    pub component_type: ComponentType,
    /// Logical path ("" at the root).
    #[serde(default)]
    pub logical_path: String,
    /// Name.
    pub name: String,
    /// Requester's backup options.
    #[serde(default)]
    pub backup_options: Option<String>,
    /// Stamp of the previous backup.
    #[serde(default)]
    pub previous_backup_stamp: Option<String>,
    /// Stamp the writer set for this backup.
    #[serde(default)]
    pub backup_stamp: Option<String>,
    /// Metadata the writer stored for this backup.
    #[serde(default)]
    pub backup_metadata: Option<String>,
    /// BackupComplete only: the flag the requester set with SetBackupSucceeded (false if never).
    #[serde(default)]
    pub backup_succeeded: Option<bool>,
    /// Restore events: the requester's restore options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_options: Option<String>,
    /// Restore events: more restores follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_restores: Option<bool>,
    /// PostRestore: how the file copy went (null: the requester never said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_restore_status: Option<vss_model::FileRestoreStatus>,
    /// Restore events: where the files go (null: the original location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_target: Option<vss_model::RestoreTarget>,
    /// Restore events: file sets restored to other directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_locations: Option<Vec<AlternateLocation>>,
}

/// A file set restored to another directory (AddAlternativeLocationMapping).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AlternateLocation {
    /// The file set's original directory.
    pub path: String,
    /// Its file specification.
    pub filespec: String,
    /// Whether it includes subdirectories.
    pub recursive: bool,
    /// Where its files were restored.
    pub destination: String,
}

/// The parameters of every event but Identify and BackupShutdown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventParams {
    /// The snapshot set.
    pub snapshot_set_id: String,
    /// `VSS_SNAPSHOT_CONTEXT`.
    pub context: i64,
    /// Backup type.
    pub backup_type: BackupType,
    /// Component mode.
    pub select_components: bool,
    /// Bootable system state.
    #[serde(default)]
    pub bootable_system_state: bool,
    /// Partial files allowed.
    #[serde(default)]
    pub partial_file_support: bool,
    /// The volumes of the set.
    #[serde(default)]
    pub volumes: Vec<EventVolume>,
    /// This writer's explicitly included components; null in non-component mode.
    #[serde(default)]
    pub components: Option<Vec<EventComponent>>,
}

/// BackupShutdown parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupShutdownParams {
    /// The set of the session that ended (may be the nil UUID if none was started).
    pub snapshot_set_id: String,
}

/// What a writer writes back into the BCD for one component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentUpdate {
    /// Logical path ("" at the root).
    #[serde(default)]
    pub logical_path: String,
    /// Name.
    pub name: String,
    /// Private metadata to store with the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_metadata: Option<String>,
    /// Backup stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_stamp: Option<String>,
    /// Failure message for this component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// Reply of PrepareForBackup and PostSnapshot (the other events reply `{}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsReply {
    /// Updates, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentUpdate>>,
}

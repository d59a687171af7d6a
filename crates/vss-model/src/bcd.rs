//! The Backup Components Document (vss-model.md §6.3, §7): the requester session's record of the
//! explicitly included components, the backup state and the snapshot set. The requester and, in
//! PrepareForBackup and PostSnapshot, the writers modify it; SaveAsXml serializes it, and
//! InitializeForRestore loads it back.

use crate::{BackupType, ComponentType, FileRestoreStatus, Id, RestoreType, SnapshotContext};

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupComponents {
    /// Component mode (`SetBackupState(selectComponents)`).
    pub select_components: bool,
    /// Bootable system state is backed up.
    pub bootable_system_state: bool,
    /// `VSS_BACKUP_TYPE` of the session.
    pub backup_type: Option<BackupType>,
    /// Partial files allowed.
    pub partial_file_support: bool,
    /// `VSS_RESTORE_TYPE`, in a restore session.
    pub restore_type: Option<RestoreType>,
    /// The session's snapshot context.
    pub context: SnapshotContext,
    /// The snapshot set, once StartSnapshotSet was called.
    pub snapshot_set: Option<SnapshotSetDescription>,
    /// Explicitly included components, grouped by writer instance.
    pub writers: Vec<WriterComponents>,
}

/// `SNAPSHOT_SET_DESCRIPTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSetDescription {
    /// The set id.
    pub snapshot_set_id: Id,
    /// One `SNAPSHOT_DESCRIPTION` per volume.
    pub snapshots: Vec<SnapshotDescription>,
}

/// `SNAPSHOT_DESCRIPTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDescription {
    /// Snapshot id.
    pub snapshot_id: Id,
    /// Original volume (absolute path).
    pub original_volume: String,
    /// Provider that made it.
    pub provider_id: Id,
}

/// `WRITER_COMPONENTS`: one writer instance's explicitly included components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterComponents {
    /// Writer class id.
    pub writer_id: Id,
    /// Writer instance id.
    pub instance_id: Id,
    /// Its components.
    pub components: Vec<BcdComponent>,
}

/// `COMPONENT`: the runtime record of one explicitly included component (`IVssComponent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BcdComponent {
    /// Component type.
    pub component_type: ComponentType,
    /// Logical path (empty at the root).
    pub logical_path: String,
    /// Component name.
    pub name: String,
    /// Set by SetBackupSucceeded; false until then.
    pub backup_succeeded: bool,
    /// Requester's writer-private backup options.
    pub backup_options: Option<String>,
    /// Stamp of the previous backup (incremental/differential).
    pub previous_backup_stamp: Option<String>,
    /// Stamp of this backup, set by the writer.
    pub backup_stamp: Option<String>,
    /// Writer-private metadata stored with the backup.
    pub backup_metadata: Option<String>,
    /// Failure message from PrepareForBackup.
    pub prepare_for_backup_failure_msg: Option<String>,
    /// Failure message from PostSnapshot.
    pub post_snapshot_failure_msg: Option<String>,
    /// Restore: selected for restore.
    pub selected_for_restore: bool,
    /// Restore: requester's restore options.
    pub restore_options: Option<String>,
    /// Restore: more restores follow.
    pub additional_restores: bool,
    /// Restore: outcome of the file copy.
    pub file_restore_status: Option<FileRestoreStatus>,
    /// Restore: writer-private restore metadata.
    pub restore_metadata: Option<String>,
    /// Restore: failure message from PreRestore.
    pub pre_restore_failure_msg: Option<String>,
    /// Restore: failure message from PostRestore.
    pub post_restore_failure_msg: Option<String>,
}

impl BcdComponent {
    /// A freshly added component (AddComponent).
    pub fn new(component_type: ComponentType, logical_path: &str, name: &str) -> Self {
        BcdComponent {
            component_type,
            logical_path: logical_path.to_owned(),
            name: name.to_owned(),
            backup_succeeded: false,
            backup_options: None,
            previous_backup_stamp: None,
            backup_stamp: None,
            backup_metadata: None,
            prepare_for_backup_failure_msg: None,
            post_snapshot_failure_msg: None,
            selected_for_restore: false,
            restore_options: None,
            additional_restores: false,
            file_restore_status: None,
            restore_metadata: None,
            pre_restore_failure_msg: None,
            post_restore_failure_msg: None,
        }
    }
}

impl BackupComponents {
    /// The components of one writer instance.
    pub fn writer(&self, instance_id: Id) -> Option<&WriterComponents> {
        self.writers.iter().find(|w| w.instance_id == instance_id)
    }

    /// The component of a writer instance with this logical path and name.
    pub fn component_mut(
        &mut self,
        instance_id: Id,
        logical_path: &str,
        name: &str,
    ) -> Option<&mut BcdComponent> {
        self.writers
            .iter_mut()
            .find(|w| w.instance_id == instance_id)?
            .components
            .iter_mut()
            .find(|c| c.logical_path == logical_path && c.name == name)
    }
}

//! The Writer Metadata Document (vss-model.md §6.2, §7): what a writer says about itself in
//! Identify. Read-only once produced.
//!
//! The same type is the `WriterMetadata` of the varlink protocol (with the `serde` feature, as
//! camelCase JSON) and serializes to XML with the element names of §7.2 (`WRITER_METADATA`,
//! `IDENTIFICATION`, `RESTORE_METHOD`, `BACKUP_LOCATIONS`, `FILE_GROUP`, `DATABASE`, ...).

use crate::{
    ApplicationLevel, ComponentType, ErrorCode, Id, RestoreMethod, SourceType, UsageType,
    VssError, WriterRestore,
};

/// The default `filespecBackupType` mask (`0xF0F`, §6.4).
pub const DEFAULT_FILESPEC_BACKUP_TYPE: u32 = 0xF0F;

/// One writer's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct WriterMetadata {
    /// Writer class id.
    pub writer_id: Id,
    /// Writer instance id (one per running instance).
    pub instance_id: Id,
    /// Friendly name of the writer class.
    pub writer_name: String,
    /// Name of this instance (unique among instances of the class).
    #[cfg_attr(feature = "serde", serde(default))]
    pub instance_name: String,
    /// `VSS_USAGE_TYPE`.
    pub usage_type: UsageType,
    /// `VSS_SOURCE_TYPE`.
    pub source_type: SourceType,
    /// `VSS_APPLICATION_LEVEL`: decides the freeze wave.
    pub application_level: ApplicationLevel,
    /// Longest time from Freeze to Thaw the writer accepts, in ms (60 000 by default).
    #[cfg_attr(feature = "serde", serde(default = "default_freeze_timeout"))]
    pub freeze_timeout_ms: u64,
    /// Restore method of the writer.
    pub restore_method: RestoreMethod,
    /// Whether the writer needs restore events.
    pub writer_restore: WriterRestore,
    /// Service name for the STOP_RESTORE_START family of methods.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub restore_service: Option<String>,
    /// `VSS_BACKUP_SCHEMA` mask.
    #[cfg_attr(feature = "serde", serde(default))]
    pub backup_schema: u32,
    /// Writer version, `major.minor`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub version: Option<String>,
    /// Files that must never be backed up (override every component's files).
    #[cfg_attr(feature = "serde", serde(default))]
    pub exclude_files: Vec<FileSpec>,
    /// The components the writer could back up.
    pub components: Vec<WmdComponent>,
}

#[cfg(feature = "serde")]
fn default_freeze_timeout() -> u64 {
    crate::DEFAULT_FREEZE_TIMEOUT_MS
}

/// A component as declared in the WMD.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct WmdComponent {
    /// `VSS_CT_DATABASE` or `VSS_CT_FILEGROUP`.
    pub component_type: ComponentType,
    /// Backslash-separated logical path; empty for the root.
    #[cfg_attr(feature = "serde", serde(default))]
    pub logical_path: String,
    /// Component name (unique within the logical path).
    pub name: String,
    /// Display caption.
    #[cfg_attr(feature = "serde", serde(default))]
    pub caption: String,
    /// Selectable for backup (the requester chooses it) or not (it comes along).
    pub selectable: bool,
    /// Selectable for restore on its own.
    #[cfg_attr(feature = "serde", serde(default))]
    pub selectable_for_restore: bool,
    /// The writer wants BackupComplete for this component.
    #[cfg_attr(feature = "serde", serde(default = "yes"))]
    pub notify_on_backup_complete: bool,
    /// The writer stores restore metadata for this component.
    #[cfg_attr(feature = "serde", serde(default))]
    pub restore_metadata: bool,
    /// `VSS_COMPONENT_FLAGS`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub component_flags: u32,
    /// File sets (file groups) or database files (databases).
    #[cfg_attr(feature = "serde", serde(default))]
    pub files: Vec<FileSpec>,
    /// Database log files (databases only).
    #[cfg_attr(feature = "serde", serde(default))]
    pub log_files: Vec<FileSpec>,
    /// Components this one depends on.
    #[cfg_attr(feature = "serde", serde(default))]
    pub dependencies: Vec<Dependency>,
}

#[cfg(feature = "serde")]
fn yes() -> bool {
    true
}

/// A file set: directory, wildcard pattern, recursion.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct FileSpec {
    /// Absolute directory.
    pub path: String,
    /// Pattern with `*` and `?`.
    pub filespec: String,
    /// Include subdirectories.
    #[cfg_attr(feature = "serde", serde(default))]
    pub recursive: bool,
    /// Where to copy from instead of the original (file groups only).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub alternate_path: Option<String>,
    /// `VSS_FILE_SPEC_BACKUP_TYPE` mask (0xF0F by default).
    #[cfg_attr(feature = "serde", serde(default = "default_mask"))]
    pub backup_type_mask: u32,
}

#[cfg(feature = "serde")]
fn default_mask() -> u32 {
    DEFAULT_FILESPEC_BACKUP_TYPE
}

/// A dependency of one component on another (possibly another writer's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct Dependency {
    /// Writer class of the component depended on.
    pub writer_id: Id,
    /// Its logical path.
    #[cfg_attr(feature = "serde", serde(default))]
    pub logical_path: String,
    /// Its name.
    pub name: String,
}

impl WmdComponent {
    /// The full logical path of the component: `logical_path\name` (or `name` at the root).
    pub fn full_path(&self) -> String {
        full_path(&self.logical_path, &self.name)
    }

    /// Every file set of the component, database and log files included.
    pub fn all_files(&self) -> impl Iterator<Item = &FileSpec> {
        self.files.iter().chain(self.log_files.iter())
    }
}

/// `logical_path\name`, or `name` when the logical path is empty.
pub fn full_path(logical_path: &str, name: &str) -> String {
    if logical_path.is_empty() {
        name.to_owned()
    } else {
        format!("{}\\{}", logical_path.trim_end_matches('\\'), name)
    }
}

impl WriterMetadata {
    /// Checks what Identify must satisfy: a known application level (not UNKNOWN or AUTO), a
    /// defined usage and source type, a restore method, and component names that are unique per
    /// logical path. A writer whose metadata fails this fails Identify.
    pub fn validate(&self) -> Result<(), VssError> {
        let bad = |m: String| Err(VssError::new(ErrorCode::InvalidXmlDocument, m));
        if self.application_level.freeze_wave().is_none() {
            return bad(format!(
                "writer '{}' declares application level {}, which is not allowed; declare \
                 VSS_APP_FRONT_END, VSS_APP_BACK_END, VSS_APP_SYSTEM or VSS_APP_SYSTEM_RM",
                self.writer_name, self.application_level
            ));
        }
        if self.writer_name.is_empty() {
            return bad("the writer name is empty".into());
        }
        if self.freeze_timeout_ms == 0 {
            return bad(format!("writer '{}' declares a freeze timeout of 0 ms", self.writer_name));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.components {
            if c.name.is_empty() {
                return bad(format!("writer '{}' has a component without a name", self.writer_name));
            }
            if c.component_type == ComponentType::Undefined {
                return bad(format!("component '{}' has type VSS_CT_UNDEFINED", c.full_path()));
            }
            if !seen.insert((c.logical_path.clone(), c.name.clone())) {
                return bad(format!("component '{}' is declared twice", c.full_path()));
            }
            for f in c.all_files() {
                if !f.path.starts_with('/') {
                    return bad(format!(
                        "component '{}' names the relative path '{}'; file paths must be absolute",
                        c.full_path(),
                        f.path
                    ));
                }
            }
        }
        Ok(())
    }

    /// The component with this logical path and name.
    pub fn component(&self, logical_path: &str, name: &str) -> Option<&WmdComponent> {
        self.components.iter().find(|c| c.logical_path == logical_path && c.name == name)
    }
}

//! The Writer Metadata Document (vss-model.md §6.2, §7): what a writer says about itself in
//! Identify. Read-only once produced.
//!
//! The same type is the `WriterMetadata` of the varlink protocol (with the `serde` feature, as
//! camelCase JSON) and serializes to XML with the element names of §7.2 (`WRITER_METADATA`,
//! `IDENTIFICATION`, `RESTORE_METHOD`, `BACKUP_LOCATIONS`, `FILE_GROUP`, `DATABASE`, ...).

use crate::{
    ApplicationLevel, ComponentType, ErrorCode, Id, RestoreMethod, SourceType, UsageType, VssError,
    WriterRestore,
};

/// The IDL marks optional fields nullable (`?int`): an explicit `null` means the default.
#[cfg(feature = "serde")]
mod nullable {
    use serde::{Deserialize, Deserializer};

    pub(super) fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    pub(super) fn freeze_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.unwrap_or(crate::DEFAULT_FREEZE_TIMEOUT_MS))
    }

    pub(super) fn yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
    }

    pub(super) fn mask<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        Ok(Option::<u32>::deserialize(d)?.unwrap_or(super::DEFAULT_FILESPEC_BACKUP_TYPE))
    }
}

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
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub instance_name: String,
    /// `VSS_USAGE_TYPE`.
    pub usage_type: UsageType,
    /// `VSS_SOURCE_TYPE`.
    pub source_type: SourceType,
    /// `VSS_APPLICATION_LEVEL`: decides the freeze wave.
    pub application_level: ApplicationLevel,
    /// Longest time from Freeze to Thaw the writer accepts, in ms (60 000 by default).
    #[cfg_attr(
        feature = "serde",
        serde(
            default = "default_freeze_timeout",
            deserialize_with = "nullable::freeze_timeout"
        )
    )]
    pub freeze_timeout_ms: u64,
    /// Restore method of the writer.
    pub restore_method: RestoreMethod,
    /// Whether the writer needs restore events.
    pub writer_restore: WriterRestore,
    /// Service name for the STOP_RESTORE_START family of methods.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub restore_service: Option<String>,
    /// `VSS_BACKUP_SCHEMA` mask.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub backup_schema: u32,
    /// Writer version, `major.minor`.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub version: Option<String>,
    /// Files that must never be backed up (override every component's files).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
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
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub logical_path: String,
    /// Component name (unique within the logical path).
    pub name: String,
    /// Display caption.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub caption: String,
    /// Selectable for backup (the requester chooses it) or not (it comes along).
    pub selectable: bool,
    /// Selectable for restore on its own.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub selectable_for_restore: bool,
    /// The writer wants BackupComplete for this component.
    #[cfg_attr(
        feature = "serde",
        serde(default = "yes", deserialize_with = "nullable::yes")
    )]
    pub notify_on_backup_complete: bool,
    /// The writer stores restore metadata for this component.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub restore_metadata: bool,
    /// `VSS_COMPONENT_FLAGS`.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub component_flags: u32,
    /// File sets (file groups) or database files (databases).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub files: Vec<FileSpec>,
    /// Database log files (databases only).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub log_files: Vec<FileSpec>,
    /// Components this one depends on.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
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
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
    pub recursive: bool,
    /// Where to copy from instead of the original (file groups only).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub alternate_path: Option<String>,
    /// `VSS_FILE_SPEC_BACKUP_TYPE` mask (0xF0F by default).
    #[cfg_attr(
        feature = "serde",
        serde(default = "default_mask", deserialize_with = "nullable::mask")
    )]
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
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "nullable::or_default")
    )]
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
            return bad(format!(
                "writer '{}' declares a freeze timeout of 0 ms",
                self.writer_name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.components {
            if c.name.is_empty() {
                return bad(format!(
                    "writer '{}' has a component without a name",
                    self.writer_name
                ));
            }
            if c.component_type == ComponentType::Undefined {
                return bad(format!(
                    "component '{}' has type VSS_CT_UNDEFINED",
                    c.full_path()
                ));
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
        self.components
            .iter()
            .find(|c| c.logical_path == logical_path && c.name == name)
    }
}

// ------------------------------------------------------------------------------------------------
// XML (vss-model.md §7.2; conventions in `crate::xml`)

use crate::xml::{Element, Tag, XmlWriter};

const WMD_ROOT: &str = "WRITER_METADATA";

impl FileSpec {
    fn to_tag(&self, element: &'static str) -> Tag {
        Tag::new(element)
            .attr("path", &self.path)
            .attr("filespec", &self.filespec)
            .flag("recursive", self.recursive)
            .opt("alternatePath", self.alternate_path.as_deref())
            .num("filespecBackupType", self.backup_type_mask)
    }

    fn from_element(e: &Element) -> Result<Self, VssError> {
        Ok(FileSpec {
            path: e.string("path")?,
            filespec: e.string("filespec")?,
            recursive: e.flag_or("recursive", false)?,
            alternate_path: e.opt_string("alternatePath"),
            backup_type_mask: e.num_or("filespecBackupType", DEFAULT_FILESPEC_BACKUP_TYPE)?,
        })
    }
}

impl WmdComponent {
    /// `DATABASE` for databases, `FILE_GROUP` otherwise (an UNDEFINED type is written as a file
    /// group; `validate` refuses it anyway).
    fn element_names(&self) -> (&'static str, &'static str) {
        match self.component_type {
            ComponentType::Database => ("DATABASE", "DATABASE_FILES"),
            ComponentType::FileGroup | ComponentType::Undefined => ("FILE_GROUP", "FILE_LIST"),
        }
    }

    fn write(&self, w: &mut XmlWriter) {
        let (element, files) = self.element_names();
        let tag = Tag::new(element)
            .attr("logicalPath", &self.logical_path)
            .attr("componentName", &self.name)
            .attr("caption", &self.caption)
            .flag("restoreMetadata", self.restore_metadata)
            .flag("notifyOnBackupComplete", self.notify_on_backup_complete)
            .flag("selectable", self.selectable)
            .flag("selectableForRestore", self.selectable_for_restore)
            .num("componentFlags", self.component_flags);
        let has_children =
            !(self.files.is_empty() && self.log_files.is_empty() && self.dependencies.is_empty());
        w.element(tag, has_children, |w| {
            for f in &self.files {
                w.leaf(f.to_tag(files));
            }
            for f in &self.log_files {
                w.leaf(f.to_tag("DATABASE_LOGFILES"));
            }
            for d in &self.dependencies {
                w.leaf(
                    Tag::new("DEPENDENCY")
                        .id("writerId", d.writer_id)
                        .attr("logicalPath", &d.logical_path)
                        .attr("componentName", &d.name),
                );
            }
        });
    }

    /// Reads a `FILE_GROUP` or `DATABASE`; both `FILE_LIST` and `DATABASE_FILES` children count
    /// as `files`.
    fn from_element(e: &Element, component_type: ComponentType) -> Result<Self, VssError> {
        let file_sets = |names: &[&str]| {
            e.children
                .iter()
                .filter(|c| names.contains(&c.name.as_str()))
                .map(FileSpec::from_element)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(WmdComponent {
            component_type,
            logical_path: e.string_or("logicalPath", ""),
            name: e.string("componentName")?,
            caption: e.string_or("caption", ""),
            selectable: e.flag("selectable")?,
            selectable_for_restore: e.flag_or("selectableForRestore", false)?,
            notify_on_backup_complete: e.flag_or("notifyOnBackupComplete", true)?,
            restore_metadata: e.flag_or("restoreMetadata", false)?,
            component_flags: e.num_or("componentFlags", 0)?,
            files: file_sets(&["FILE_LIST", "DATABASE_FILES"])?,
            log_files: file_sets(&["DATABASE_LOGFILES"])?,
            dependencies: e
                .children("DEPENDENCY")
                .map(|d| {
                    Ok(Dependency {
                        writer_id: d.id("writerId")?,
                        logical_path: d.string_or("logicalPath", ""),
                        name: d.string("componentName")?,
                    })
                })
                .collect::<Result<_, VssError>>()?,
        })
    }
}

impl WriterMetadata {
    /// Serializes the document as indented UTF-8 XML (`WRITER_METADATA version="1"`, §7.2).
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        let root = Tag::new(WMD_ROOT).attr("version", crate::xml::FORMAT_VERSION);
        w.element(root, true, |w| {
            w.leaf(
                Tag::new("IDENTIFICATION")
                    .id("writerId", self.writer_id)
                    .id("instanceId", self.instance_id)
                    .attr("friendlyName", &self.writer_name)
                    .attr("instanceName", &self.instance_name)
                    .sym("usage", self.usage_type)
                    .sym("dataSource", self.source_type)
                    .sym("applicationLevel", self.application_level)
                    .num("freezeTimeoutMs", self.freeze_timeout_ms)
                    .opt("version", self.version.as_deref()),
            );
            w.leaf(
                Tag::new("RESTORE_METHOD")
                    .sym("method", self.restore_method)
                    .sym("writerRestore", self.writer_restore)
                    .opt("service", self.restore_service.as_deref()),
            );
            w.leaf(Tag::new("BACKUP_SCHEMA").num("mask", self.backup_schema));
            for f in &self.exclude_files {
                w.leaf(f.to_tag("EXCLUDE_FILES"));
            }
            w.element(
                Tag::new("BACKUP_LOCATIONS"),
                !self.components.is_empty(),
                |w| {
                    for c in &self.components {
                        c.write(w);
                    }
                },
            );
        });
        w.finish()
    }

    /// Parses a document written by [`Self::to_xml`]. Unknown attributes and elements are
    /// ignored; anything malformed or missing is `VSS_E_INVALID_XML_DOCUMENT`. The result is not
    /// [validated](Self::validate).
    pub fn from_xml(xml: &str) -> Result<WriterMetadata, VssError> {
        let root = crate::xml::parse(xml, WMD_ROOT)?;
        let id = root.required_child("IDENTIFICATION")?;
        let restore = root.required_child("RESTORE_METHOD")?;
        let mut components = Vec::new();
        if let Some(locations) = root.child("BACKUP_LOCATIONS")? {
            for c in &locations.children {
                let ct = match c.name.as_str() {
                    "FILE_GROUP" => ComponentType::FileGroup,
                    "DATABASE" => ComponentType::Database,
                    _ => continue,
                };
                components.push(WmdComponent::from_element(c, ct)?);
            }
        }
        Ok(WriterMetadata {
            writer_id: id.id("writerId")?,
            instance_id: id.id("instanceId")?,
            writer_name: id.string("friendlyName")?,
            instance_name: id.string_or("instanceName", ""),
            usage_type: id.sym("usage")?,
            source_type: id.sym("dataSource")?,
            application_level: id.sym("applicationLevel")?,
            freeze_timeout_ms: id.num_or("freezeTimeoutMs", crate::DEFAULT_FREEZE_TIMEOUT_MS)?,
            restore_method: restore.sym("method")?,
            writer_restore: restore.sym("writerRestore")?,
            restore_service: restore.opt_string("service"),
            backup_schema: match root.child("BACKUP_SCHEMA")? {
                Some(s) => s.num("mask")?,
                None => 0,
            },
            version: id.opt_string("version"),
            exclude_files: root
                .children("EXCLUDE_FILES")
                .map(FileSpec::from_element)
                .collect::<Result<_, _>>()?,
            components,
        })
    }
}

#[cfg(test)]
mod xml_tests {
    use super::*;
    use uuid::uuid;

    fn spec(path: &str, filespec: &str, recursive: bool, alt: Option<&str>, mask: u32) -> FileSpec {
        FileSpec {
            path: path.into(),
            filespec: filespec.into(),
            recursive,
            alternate_path: alt.map(Into::into),
            backup_type_mask: mask,
        }
    }

    fn rich() -> WriterMetadata {
        WriterMetadata {
            writer_id: uuid!("a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"),
            instance_id: uuid!("0b4e1c2d-3f5a-4b6c-8d7e-9f0a1b2c3d4e"),
            writer_name: "PostgreSQL Writer <pg & co> \"main\"".into(),
            instance_name: "cluster 16/main ✓".into(),
            usage_type: UsageType::SystemService,
            source_type: SourceType::TransactedDb,
            application_level: ApplicationLevel::BackEnd,
            freeze_timeout_ms: 123_456,
            restore_method: RestoreMethod::StopRestoreStart,
            writer_restore: WriterRestore::Always,
            restore_service: Some("postgresql@16-main.service".into()),
            backup_schema: 0x1 | 0x2 | 0x20 | 0x100,
            version: Some("16.2".into()),
            exclude_files: vec![
                spec(
                    "/var/lib/postgresql/16/main",
                    "postmaster.pid",
                    false,
                    None,
                    0xF0F,
                ),
                spec(
                    "/var/lib/postgresql/16/main/pg_stat_tmp",
                    "*",
                    true,
                    None,
                    0xF0F,
                ),
            ],
            components: vec![
                WmdComponent {
                    component_type: ComponentType::Database,
                    logical_path: String::new(),
                    name: "main".into(),
                    caption: "Main cluster".into(),
                    selectable: true,
                    selectable_for_restore: false,
                    notify_on_backup_complete: true,
                    restore_metadata: true,
                    component_flags: 3,
                    files: vec![spec("/var/lib/postgresql/16/main", "*", false, None, 0xF0F)],
                    log_files: vec![
                        spec(
                            "/var/lib/postgresql/16/main/pg_wal",
                            "0*",
                            false,
                            None,
                            0x808,
                        ),
                        spec(
                            "/var/lib/postgresql/16/main/pg_wal",
                            "*.history",
                            false,
                            None,
                            3855,
                        ),
                    ],
                    dependencies: vec![],
                },
                WmdComponent {
                    component_type: ComponentType::FileGroup,
                    logical_path: "main\\Config\\Nested path".into(),
                    name: "conf files".into(),
                    caption: " padded caption with\ttab and\nnewline ".into(),
                    selectable: false,
                    selectable_for_restore: true,
                    notify_on_backup_complete: false,
                    restore_metadata: false,
                    component_flags: 4,
                    files: vec![
                        spec(
                            "/etc/postgresql/16/main",
                            "*.conf",
                            true,
                            Some("/srv/alt/conf"),
                            0xF0F,
                        ),
                        spec("/etc/postgresql-common", "?g_*", false, Some(""), 0x10001),
                    ],
                    log_files: vec![],
                    dependencies: vec![
                        Dependency {
                            writer_id: uuid!("e8132975-6f93-4464-a53e-1050253ae220"),
                            logical_path: "System Files\\etc".into(),
                            name: "ssl".into(),
                        },
                        Dependency {
                            writer_id: uuid!("a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"),
                            logical_path: String::new(),
                            name: "main".into(),
                        },
                    ],
                },
                WmdComponent {
                    component_type: ComponentType::FileGroup,
                    logical_path: "main\\".into(),
                    name: "empty anchor".into(),
                    caption: String::new(),
                    selectable: true,
                    selectable_for_restore: false,
                    notify_on_backup_complete: true,
                    restore_metadata: false,
                    component_flags: 0,
                    files: vec![],
                    log_files: vec![],
                    dependencies: vec![],
                },
                WmdComponent {
                    component_type: ComponentType::Database,
                    logical_path: "main\\Databases".into(),
                    name: "app_db".into(),
                    caption: "Application DB".into(),
                    selectable: false,
                    selectable_for_restore: true,
                    notify_on_backup_complete: false,
                    restore_metadata: true,
                    component_flags: 1,
                    files: vec![spec("/var/lib/app", "app.db", false, None, 0x101)],
                    log_files: vec![spec("/var/lib/app", "app.db-wal", false, None, 0xF0F)],
                    dependencies: vec![Dependency {
                        writer_id: uuid!("a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"),
                        logical_path: "main\\Config\\Nested path".into(),
                        name: "conf files".into(),
                    }],
                },
            ],
        }
    }

    #[test]
    fn rich_wmd_round_trips() {
        let wmd = rich();
        let xml = wmd.to_xml();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            "{xml}"
        );
        assert!(
            xml.contains("\n<WRITER_METADATA version=\"1\">\n  <IDENTIFICATION "),
            "{xml}"
        );
        assert!(xml.contains("usage=\"VSS_UT_SYSTEMSERVICE\""), "{xml}");
        assert!(xml.contains("selectable=\"yes\""), "{xml}");
        assert!(xml.contains("filespecBackupType=\"3855\""), "{xml}");
        assert!(xml.contains("<DATABASE_LOGFILES "), "{xml}");
        assert!(xml.contains("<FILE_LIST "), "{xml}");
        assert!(
            xml.contains("logicalPath=\"main\\Config\\Nested path\""),
            "{xml}"
        );
        let back = WriterMetadata::from_xml(&xml).unwrap();
        assert_eq!(back, wmd);
        // Serializing again gives the same bytes.
        assert_eq!(back.to_xml(), xml);
    }

    #[test]
    fn minimal_wmd_round_trips_and_defaults_apply() {
        let mut wmd = rich();
        wmd.components.clear();
        wmd.exclude_files.clear();
        wmd.restore_service = None;
        wmd.version = None;
        wmd.instance_name = String::new();
        wmd.backup_schema = 0;
        let xml = wmd.to_xml();
        assert!(xml.contains("<BACKUP_LOCATIONS/>"), "{xml}");
        assert_eq!(WriterMetadata::from_xml(&xml).unwrap(), wmd);

        // Optional attributes and elements left out take their defaults.
        let xml = r#"<WRITER_METADATA>
            <IDENTIFICATION writerId="a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"
                instanceId="0b4e1c2d-3f5a-4b6c-8d7e-9f0a1b2c3d4e" friendlyName="w"
                usage="VSS_UT_USERDATA" dataSource="VSS_ST_OTHER"
                applicationLevel="VSS_APP_SYSTEM"/>
            <RESTORE_METHOD method="VSS_RME_CUSTOM" writerRestore="VSS_WRE_NEVER"/>
            <BACKUP_LOCATIONS><FILE_GROUP componentName="c" selectable="no">
                <FILE_LIST path="/p" filespec="*"/></FILE_GROUP></BACKUP_LOCATIONS>
        </WRITER_METADATA>"#;
        let wmd = WriterMetadata::from_xml(xml).unwrap();
        assert_eq!(wmd.freeze_timeout_ms, crate::DEFAULT_FREEZE_TIMEOUT_MS);
        assert_eq!(wmd.backup_schema, 0);
        assert_eq!(wmd.instance_name, "");
        let c = &wmd.components[0];
        assert_eq!((c.logical_path.as_str(), c.caption.as_str()), ("", ""));
        assert!(c.notify_on_backup_complete && !c.restore_metadata && !c.selectable_for_restore);
        assert_eq!(
            c.files,
            vec![spec("/p", "*", false, None, DEFAULT_FILESPEC_BACKUP_TYPE)]
        );
    }

    #[test]
    fn every_enum_variant_round_trips() {
        let base = rich();
        for &usage_type in UsageType::ALL {
            let w = WriterMetadata {
                usage_type,
                ..base.clone()
            };
            assert_eq!(WriterMetadata::from_xml(&w.to_xml()).unwrap(), w);
        }
        for &source_type in SourceType::ALL {
            let w = WriterMetadata {
                source_type,
                ..base.clone()
            };
            assert_eq!(WriterMetadata::from_xml(&w.to_xml()).unwrap(), w);
        }
        for &application_level in ApplicationLevel::ALL {
            let w = WriterMetadata {
                application_level,
                ..base.clone()
            };
            assert_eq!(WriterMetadata::from_xml(&w.to_xml()).unwrap(), w);
        }
        for &restore_method in RestoreMethod::ALL {
            let w = WriterMetadata {
                restore_method,
                ..base.clone()
            };
            assert_eq!(WriterMetadata::from_xml(&w.to_xml()).unwrap(), w);
        }
        for &writer_restore in WriterRestore::ALL {
            let w = WriterMetadata {
                writer_restore,
                ..base.clone()
            };
            assert_eq!(WriterMetadata::from_xml(&w.to_xml()).unwrap(), w);
        }
        for &component_type in ComponentType::ALL {
            let mut w = base.clone();
            w.components[1].component_type = component_type;
            let back = WriterMetadata::from_xml(&w.to_xml()).unwrap();
            // UNDEFINED has no element of its own and is written as a FILE_GROUP.
            if component_type == ComponentType::Undefined {
                w.components[1].component_type = ComponentType::FileGroup;
            }
            assert_eq!(back, w);
        }
    }

    #[test]
    fn malformed_wmd_is_invalid_xml_document() {
        let good = rich().to_xml();
        let writer_id = "writerId=\"a65faa63-5ea8-4ebc-9dbd-a0c4db26912a\"";
        let huge = format!(
            "{good}<!--{}-->",
            " ".repeat(crate::xml::MAX_DOCUMENT_BYTES)
        );
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "no root element"),
            (
                "not XML",
                "this is not XML at all".into(),
                "outside the root",
            ),
            (
                "garbage markup",
                "<WRITER_METADATA <<>>".into(),
                "malformed",
            ),
            (
                "truncated",
                good[..good.len() / 2].into(),
                "WRITER_METADATA",
            ),
            (
                "truncated between tags",
                good[..good.find("</BACKUP_LOCATIONS>").unwrap()].into(),
                "BACKUP_LOCATIONS (line 8): the document ends before this element is closed",
            ),
            (
                "wrong root",
                good.replace("WRITER_METADATA", "WRITER_METADATUM"),
                "root element",
            ),
            (
                "bad version",
                good.replacen("version=\"1\"", "version=\"2\"", 1),
                "version '2'",
            ),
            (
                "missing writerId",
                good.replacen(writer_id, "", 1),
                "missing required attribute writerId",
            ),
            (
                "bad uuid",
                good.replacen("a65faa63-5ea8", "a65faa63-XXXX", 1),
                "is not a UUID",
            ),
            (
                "unknown usage",
                good.replace("VSS_UT_SYSTEMSERVICE", "VSS_UT_NOPE"),
                "VSS_USAGE_TYPE",
            ),
            (
                "bad boolean",
                good.replacen("selectable=\"yes\"", "selectable=\"maybe\"", 1),
                "'maybe' is not yes or no",
            ),
            (
                "bad mask",
                good.replacen("mask=\"291\"", "mask=\"lots\"", 1),
                "attribute mask 'lots'",
            ),
            (
                "negative mask",
                good.replacen("mask=\"291\"", "mask=\"-1\"", 1),
                "attribute mask '-1'",
            ),
            (
                "mask overflow",
                good.replacen("mask=\"291\"", "mask=\"4294967296\"", 1),
                "in range",
            ),
            (
                "no identification",
                good.replace("<IDENTIFICATION", "<IDENT"),
                "missing required element IDENTIFICATION",
            ),
            (
                "two restore methods",
                good.replace("<BACKUP_SCHEMA", "<RESTORE_METHOD/><BACKUP_SCHEMA"),
                "more than one RESTORE_METHOD",
            ),
            (
                "mismatched end",
                good.replace("</BACKUP_LOCATIONS>", "</BACKUP_LOCATION>"),
                "malformed",
            ),
            (
                "missing component name",
                good.replacen("componentName=\"main\"", "", 1),
                "componentName",
            ),
            ("huge", huge, "16 MiB"),
        ];
        for (what, xml, needle) in cases {
            let e = WriterMetadata::from_xml(&xml).expect_err(what);
            assert_eq!(e.code, ErrorCode::InvalidXmlDocument, "{what}: {e}");
            assert!(
                e.message.contains(needle),
                "{what}: {:?} lacks {needle:?}",
                e.message
            );
        }
    }

    #[test]
    fn unknown_attributes_and_elements_are_ignored() {
        let wmd = rich();
        let additions = [
            (
                r#"<WRITER_METADATA version="1">"#,
                r#"<WRITER_METADATA version="1" future="x"><NEW a="b"><DEEPER/>text</NEW>"#,
            ),
            ("<IDENTIFICATION ", r#"<IDENTIFICATION icon="AAAA" "#),
            (
                "<BACKUP_LOCATIONS>",
                r#"<BACKUP_LOCATIONS><!-- c --><SERVICE componentName="x"/>"#,
            ),
            ("<DEPENDENCY ", r#"<DEPENDENCY strength="hard" "#),
            ("<FILE_LIST ", r#"<PARTIAL_FILE/><FILE_LIST extra="1" "#),
            (
                "</WRITER_METADATA>",
                "<ALTERNATE_LOCATION_MAPPING/></WRITER_METADATA>",
            ),
        ];
        let mut xml = wmd.to_xml();
        for (from, to) in additions {
            assert!(xml.contains(from), "{from}");
            xml = xml.replace(from, to);
        }
        assert_eq!(WriterMetadata::from_xml(&xml).unwrap(), wmd);

        // A missing version attribute means version 1.
        let xml = wmd.to_xml().replacen(" version=\"1\"", "", 1);
        assert_eq!(WriterMetadata::from_xml(&xml).unwrap(), wmd);
    }
}

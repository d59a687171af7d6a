//! The Backup Components Document (vss-model.md §6.3, §7): the requester session's record of the
//! explicitly included components, the backup state and the snapshot set. The requester and, in
//! PrepareForBackup and PostSnapshot, the writers modify it; SaveAsXml serializes it, and
//! InitializeForRestore loads it back.

use crate::{
    BackupType, ComponentType, FileRestoreStatus, Id, RestoreTarget, RestoreType, SnapshotContext,
};

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
    /// Restore: where the files go (`VSS_RT_ORIGINAL` unless the requester or writer says).
    pub restore_target: Option<RestoreTarget>,
    /// Restore: file sets the requester restored somewhere else (AddAlternativeLocationMapping).
    pub alternate_locations: Vec<AlternateLocation>,
}

/// `ALTERNATE_LOCATION_MAPPING`: a file set of a component restored to another directory.
#[derive(Debug, Clone, PartialEq, Eq)]
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
            restore_target: None,
            alternate_locations: Vec::new(),
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

// ------------------------------------------------------------------------------------------------
// XML (vss-model.md §7.2; conventions in `crate::xml`)

use crate::VssError;
use crate::xml::{Element, Tag, XmlWriter};

const BCD_ROOT: &str = "BACKUP_COMPONENTS";

impl BcdComponent {
    fn write(&self, w: &mut XmlWriter) {
        let tag = Tag::new("COMPONENT")
            .sym("componentType", self.component_type)
            .attr("logicalPath", &self.logical_path)
            .attr("componentName", &self.name)
            .flag("backupSucceeded", self.backup_succeeded)
            .flag("selectedForRestore", self.selected_for_restore)
            .flag("additionalRestores", self.additional_restores)
            .opt_sym("fileRestoreStatus", self.file_restore_status)
            .opt_sym("restoreTarget", self.restore_target)
            .opt("backupOptions", self.backup_options.as_deref())
            .opt("previousBackupStamp", self.previous_backup_stamp.as_deref())
            .opt("backupStamp", self.backup_stamp.as_deref())
            .opt("restoreOptions", self.restore_options.as_deref())
            .opt(
                "prepareForBackupFailureMsg",
                self.prepare_for_backup_failure_msg.as_deref(),
            )
            .opt(
                "postSnapshotFailureMsg",
                self.post_snapshot_failure_msg.as_deref(),
            )
            .opt(
                "preRestoreFailureMsg",
                self.pre_restore_failure_msg.as_deref(),
            )
            .opt(
                "postRestoreFailureMsg",
                self.post_restore_failure_msg.as_deref(),
            );
        let has_children = self.backup_metadata.is_some()
            || self.restore_metadata.is_some()
            || !self.alternate_locations.is_empty();
        w.element(tag, has_children, |w| {
            w.opt_text_element("BACKUP_METADATA", self.backup_metadata.as_deref());
            w.opt_text_element("RESTORE_METADATA", self.restore_metadata.as_deref());
            for a in &self.alternate_locations {
                w.leaf(
                    Tag::new("ALTERNATE_LOCATION_MAPPING")
                        .attr("path", &a.path)
                        .attr("filespec", &a.filespec)
                        .flag("recursive", a.recursive)
                        .attr("destination", &a.destination),
                );
            }
        });
    }

    fn from_element(e: &Element) -> Result<Self, VssError> {
        Ok(BcdComponent {
            component_type: e.sym("componentType")?,
            logical_path: e.string_or("logicalPath", ""),
            name: e.string("componentName")?,
            backup_succeeded: e.flag_or("backupSucceeded", false)?,
            backup_options: e.opt_string("backupOptions"),
            previous_backup_stamp: e.opt_string("previousBackupStamp"),
            backup_stamp: e.opt_string("backupStamp"),
            backup_metadata: e.child_text("BACKUP_METADATA")?,
            prepare_for_backup_failure_msg: e.opt_string("prepareForBackupFailureMsg"),
            post_snapshot_failure_msg: e.opt_string("postSnapshotFailureMsg"),
            selected_for_restore: e.flag_or("selectedForRestore", false)?,
            restore_options: e.opt_string("restoreOptions"),
            additional_restores: e.flag_or("additionalRestores", false)?,
            file_restore_status: e.opt_sym("fileRestoreStatus")?,
            restore_metadata: e.child_text("RESTORE_METADATA")?,
            pre_restore_failure_msg: e.opt_string("preRestoreFailureMsg"),
            post_restore_failure_msg: e.opt_string("postRestoreFailureMsg"),
            restore_target: e.opt_sym("restoreTarget")?,
            alternate_locations: e
                .children("ALTERNATE_LOCATION_MAPPING")
                .map(|a| {
                    Ok(AlternateLocation {
                        path: a.string("path")?,
                        filespec: a.string("filespec")?,
                        recursive: a.flag_or("recursive", false)?,
                        destination: a.string("destination")?,
                    })
                })
                .collect::<Result<_, VssError>>()?,
        })
    }
}

impl BackupComponents {
    /// Serializes the document as indented UTF-8 XML (`BACKUP_COMPONENTS version="1"`, §7.2).
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        let root = Tag::new(BCD_ROOT)
            .attr("version", crate::xml::FORMAT_VERSION)
            .flag("selectComponents", self.select_components)
            .flag("bootableSystemStateBackup", self.bootable_system_state)
            .opt_sym("backupType", self.backup_type)
            .flag("partialFileSupport", self.partial_file_support)
            .opt_sym("restoreType", self.restore_type)
            .num("context", self.context.value());
        let has_children = self.snapshot_set.is_some() || !self.writers.is_empty();
        w.element(root, has_children, |w| {
            if let Some(set) = &self.snapshot_set {
                let tag =
                    Tag::new("SNAPSHOT_SET_DESCRIPTION").id("snapshotSetId", set.snapshot_set_id);
                w.element(tag, !set.snapshots.is_empty(), |w| {
                    for s in &set.snapshots {
                        w.leaf(
                            Tag::new("SNAPSHOT_DESCRIPTION")
                                .id("snapshotId", s.snapshot_id)
                                .attr("originalVolumeName", &s.original_volume)
                                .id("providerId", s.provider_id),
                        );
                    }
                });
            }
            for wc in &self.writers {
                let tag = Tag::new("WRITER_COMPONENTS")
                    .id("writerId", wc.writer_id)
                    .id("instanceId", wc.instance_id);
                w.element(tag, !wc.components.is_empty(), |w| {
                    for c in &wc.components {
                        c.write(w);
                    }
                });
            }
        });
        w.finish()
    }

    /// Parses a document written by [`Self::to_xml`] (InitializeForRestore). Unknown attributes
    /// and elements are ignored; anything malformed or missing is `VSS_E_INVALID_XML_DOCUMENT`.
    pub fn from_xml(xml: &str) -> Result<BackupComponents, VssError> {
        let root = crate::xml::parse(xml, BCD_ROOT)?;
        let snapshot_set = match root.child("SNAPSHOT_SET_DESCRIPTION")? {
            None => None,
            Some(set) => Some(SnapshotSetDescription {
                snapshot_set_id: set.id("snapshotSetId")?,
                snapshots: set
                    .children("SNAPSHOT_DESCRIPTION")
                    .map(|s| {
                        Ok(SnapshotDescription {
                            snapshot_id: s.id("snapshotId")?,
                            original_volume: s.string("originalVolumeName")?,
                            provider_id: s.id("providerId")?,
                        })
                    })
                    .collect::<Result<_, VssError>>()?,
            }),
        };
        let writers = root
            .children("WRITER_COMPONENTS")
            .map(|wc| {
                Ok(WriterComponents {
                    writer_id: wc.id("writerId")?,
                    instance_id: wc.id("instanceId")?,
                    components: wc
                        .children("COMPONENT")
                        .map(BcdComponent::from_element)
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<_, VssError>>()?;
        Ok(BackupComponents {
            select_components: root.flag_or("selectComponents", false)?,
            bootable_system_state: root.flag_or("bootableSystemStateBackup", false)?,
            backup_type: root.opt_sym("backupType")?,
            partial_file_support: root.flag_or("partialFileSupport", false)?,
            restore_type: root.opt_sym("restoreType")?,
            context: SnapshotContext(root.num_or("context", SnapshotContext::BACKUP.value())?),
            snapshot_set,
            writers,
        })
    }
}

#[cfg(test)]
mod xml_tests {
    use super::*;
    use crate::ErrorCode;
    use uuid::uuid;

    const NASTY: &str =
        "  <meta a=\"1\" b='2'> & &amp; ]]> \r\n\tline 2\rline 3\n héllo wörld ✓ 😀 \u{a0} ";

    fn full_component() -> BcdComponent {
        BcdComponent {
            component_type: ComponentType::Database,
            logical_path: "main\\Databases".into(),
            name: "app_db".into(),
            backup_succeeded: true,
            backup_options: Some("opt=1; <fast> & \"quiet\"".into()),
            previous_backup_stamp: Some("lsn:0/16B3740".into()),
            backup_stamp: Some("lsn:0/2000028\n".into()),
            backup_metadata: Some(NASTY.into()),
            prepare_for_backup_failure_msg: Some("  leading and trailing  ".into()),
            post_snapshot_failure_msg: Some(String::new()),
            selected_for_restore: true,
            restore_options: Some("multi\nline\r\noptions\twith tab".into()),
            additional_restores: true,
            file_restore_status: Some(FileRestoreStatus::Failed),
            restore_metadata: Some("<x>&'\"</x>\nÄ".into()),
            pre_restore_failure_msg: Some("pré-restore ✗".into()),
            post_restore_failure_msg: Some("'post'".into()),
            restore_target: Some(RestoreTarget::Alternate),
            alternate_locations: vec![
                AlternateLocation {
                    path: "/var/lib/app".into(),
                    filespec: "*.db".into(),
                    recursive: true,
                    destination: "/restore/app <1> & \"x\"".into(),
                },
                AlternateLocation {
                    path: "/var/lib/app/wal".into(),
                    filespec: "*".into(),
                    recursive: false,
                    destination: "/restore/wal".into(),
                },
            ],
        }
    }

    fn rich() -> BackupComponents {
        let mut bare = BcdComponent::new(ComponentType::FileGroup, "", "conf files");
        bare.backup_metadata = Some(String::new());
        BackupComponents {
            select_components: true,
            bootable_system_state: true,
            backup_type: Some(BackupType::Differential),
            partial_file_support: true,
            restore_type: Some(RestoreType::Import),
            context: SnapshotContext(
                SnapshotContext::APP_ROLLBACK.value() | crate::attr::DIFFERENTIAL,
            ),
            snapshot_set: Some(SnapshotSetDescription {
                snapshot_set_id: uuid!("11111111-2222-4333-8444-555555555555"),
                snapshots: vec![
                    SnapshotDescription {
                        snapshot_id: uuid!("aaaaaaaa-0000-4000-8000-000000000001"),
                        original_volume: "/".into(),
                        provider_id: uuid!("b5946137-7b9f-4925-af80-51abd60b20d5"),
                    },
                    SnapshotDescription {
                        snapshot_id: uuid!("aaaaaaaa-0000-4000-8000-000000000002"),
                        original_volume: "/srv/data with space & <amp>".into(),
                        provider_id: uuid!("c0ffee00-0000-4000-8000-0000000000ff"),
                    },
                ],
            }),
            writers: vec![
                WriterComponents {
                    writer_id: uuid!("a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"),
                    instance_id: uuid!("0b4e1c2d-3f5a-4b6c-8d7e-9f0a1b2c3d4e"),
                    components: vec![
                        full_component(),
                        bare,
                        BcdComponent::new(ComponentType::Database, "main\\", "main"),
                    ],
                },
                WriterComponents {
                    writer_id: uuid!("e8132975-6f93-4464-a53e-1050253ae220"),
                    instance_id: uuid!("f0e1d2c3-b4a5-4697-8899-aabbccddeeff"),
                    components: vec![BcdComponent {
                        file_restore_status: Some(FileRestoreStatus::All),
                        restore_metadata: Some(NASTY.into()),
                        ..BcdComponent::new(ComponentType::FileGroup, "System Files\\etc", "ssl")
                    }],
                },
            ],
        }
    }

    #[test]
    fn rich_bcd_round_trips() {
        let bcd = rich();
        let xml = bcd.to_xml();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            "{xml}"
        );
        assert!(
            xml.contains("\n<BACKUP_COMPONENTS version=\"1\" selectComponents=\"yes\""),
            "{xml}"
        );
        assert!(xml.contains("backupType=\"VSS_BT_DIFFERENTIAL\""), "{xml}");
        assert!(xml.contains("context=\"131081\""), "{xml}");
        assert!(
            xml.contains("\n  <SNAPSHOT_SET_DESCRIPTION snapshotSetId="),
            "{xml}"
        );
        assert!(
            xml.contains("\n    <SNAPSHOT_DESCRIPTION snapshotId="),
            "{xml}"
        );
        assert!(xml.contains("<BACKUP_METADATA></BACKUP_METADATA>"), "{xml}");
        assert!(xml.contains("fileRestoreStatus=\"VSS_RS_FAILED\""), "{xml}");
        let back = BackupComponents::from_xml(&xml).unwrap();
        assert_eq!(back, bcd);
        assert_eq!(back.to_xml(), xml);
        // None and Some("") stay distinct.
        let bare = &back.writers[0].components[1];
        assert_eq!(bare.backup_metadata.as_deref(), Some(""));
        assert_eq!(bare.restore_metadata, None);
        assert_eq!(
            back.writers[0].components[0]
                .post_snapshot_failure_msg
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn empty_bcd_round_trips() {
        let bcd = BackupComponents::default();
        let xml = bcd.to_xml();
        assert!(xml.ends_with("context=\"0\"/>\n"), "{xml}");
        assert_eq!(BackupComponents::from_xml(&xml).unwrap(), bcd);
        let minimal = "<BACKUP_COMPONENTS/>";
        assert_eq!(BackupComponents::from_xml(minimal).unwrap(), bcd);
        let set_only = BackupComponents {
            snapshot_set: Some(SnapshotSetDescription {
                snapshot_set_id: uuid!("11111111-2222-4333-8444-555555555555"),
                snapshots: vec![],
            }),
            ..BackupComponents::default()
        };
        assert_eq!(
            BackupComponents::from_xml(&set_only.to_xml()).unwrap(),
            set_only
        );
    }

    #[test]
    fn metadata_text_round_trips_for_awkward_strings() {
        let samples = [
            "",
            " ",
            "\n",
            "\r",
            "\r\n",
            "\t",
            "  x  ",
            "]]>",
            "<![CDATA[x]]>",
            "&amp;",
            "&#10;",
            "<!-- not a comment -->",
            "\"'",
            "a\u{0085}b\u{2028}c",
            "\u{feff}bom",
            "emoji 😀",
        ];
        for s in samples {
            let mut c = BcdComponent::new(ComponentType::FileGroup, s, s);
            c.backup_metadata = Some(s.into());
            c.restore_metadata = Some(s.into());
            c.backup_options = Some(s.into());
            c.backup_stamp = Some(s.into());
            let bcd = BackupComponents {
                writers: vec![WriterComponents {
                    writer_id: uuid!("a65faa63-5ea8-4ebc-9dbd-a0c4db26912a"),
                    instance_id: uuid!("0b4e1c2d-3f5a-4b6c-8d7e-9f0a1b2c3d4e"),
                    components: vec![c],
                }],
                ..BackupComponents::default()
            };
            assert_eq!(
                BackupComponents::from_xml(&bcd.to_xml()).unwrap(),
                bcd,
                "{s:?}"
            );
        }
    }

    #[test]
    fn every_enum_variant_round_trips() {
        let base = rich();
        for &backup_type in BackupType::ALL {
            let b = BackupComponents {
                backup_type: Some(backup_type),
                ..base.clone()
            };
            assert_eq!(BackupComponents::from_xml(&b.to_xml()).unwrap(), b);
        }
        for &restore_type in RestoreType::ALL {
            let b = BackupComponents {
                restore_type: Some(restore_type),
                ..base.clone()
            };
            assert_eq!(BackupComponents::from_xml(&b.to_xml()).unwrap(), b);
        }
        for &status in FileRestoreStatus::ALL {
            let mut b = base.clone();
            b.writers[1].components[0].file_restore_status = Some(status);
            assert_eq!(BackupComponents::from_xml(&b.to_xml()).unwrap(), b);
        }
        for &component_type in ComponentType::ALL {
            let mut b = base.clone();
            b.writers[0].components[0].component_type = component_type;
            assert_eq!(BackupComponents::from_xml(&b.to_xml()).unwrap(), b);
        }
        for context in [
            SnapshotContext::BACKUP,
            SnapshotContext::NAS_ROLLBACK,
            SnapshotContext::ALL,
        ] {
            let b = BackupComponents {
                context,
                ..base.clone()
            };
            assert_eq!(BackupComponents::from_xml(&b.to_xml()).unwrap(), b);
        }
    }

    #[test]
    fn malformed_bcd_is_invalid_xml_document() {
        let good = rich().to_xml();
        let huge = format!("{good}{}", "\n".repeat(crate::xml::MAX_DOCUMENT_BYTES));
        let set_id = "snapshotSetId=\"11111111-2222-4333-8444-555555555555\"";
        let cases: Vec<(&str, String, &str)> = vec![
            ("not XML", "{\"json\": true}".into(), "outside the root"),
            (
                "truncated",
                good[..good.len() - 40].into(),
                "BACKUP_COMPONENTS",
            ),
            (
                "wrong root",
                good.replace("BACKUP_COMPONENTS", "WRITER_METADATA"),
                "must be BACKUP_COMPONENTS",
            ),
            (
                "bad version",
                good.replacen("version=\"1\"", "version=\"1.0\"", 1),
                "version '1.0'",
            ),
            (
                "bad backup type",
                good.replace("VSS_BT_DIFFERENTIAL", "X"),
                "attribute backupType 'X' is not a VSS_BACKUP_TYPE",
            ),
            (
                "bad restore type",
                good.replace("VSS_RTYPE_IMPORT", "import"),
                "VSS_RESTORE_TYPE",
            ),
            (
                "bad file status",
                good.replace("VSS_RS_FAILED", "VSS_RS_MEH"),
                "VSS_FILE_RESTORE_STATUS",
            ),
            (
                "bad component type",
                good.replacen("VSS_CT_DATABASE", "DATABASE", 1),
                "VSS_COMPONENT_TYPE",
            ),
            (
                "bad boolean",
                good.replacen("selectComponents=\"yes\"", "selectComponents=\"maybe\"", 1),
                "'maybe' is not yes or no",
            ),
            (
                "bad boolean case",
                good.replacen("backupSucceeded=\"yes\"", "backupSucceeded=\"YES\"", 1),
                "is not yes or no",
            ),
            (
                "bad context",
                good.replacen("context=\"131081\"", "context=\"0x9\"", 1),
                "attribute context '0x9'",
            ),
            (
                "missing set id",
                good.replacen(set_id, "", 1),
                "missing required attribute snapshotSetId",
            ),
            (
                "bad snapshot id",
                good.replacen("aaaaaaaa-0000-4000-8000-000000000002", "{nope}", 1),
                "is not a UUID",
            ),
            (
                "missing writerId",
                good.replacen("writerId=\"a65faa63-5ea8-4ebc-9dbd-a0c4db26912a\"", "", 1),
                "missing required attribute writerId",
            ),
            (
                "missing component name",
                good.replacen("componentName=\"ssl\"", "", 1),
                "componentName",
            ),
            (
                "two snapshot sets",
                good.replacen(
                    "<WRITER_COMPONENTS",
                    &format!("<SNAPSHOT_SET_DESCRIPTION {set_id}/><WRITER_COMPONENTS"),
                    1,
                ),
                "more than one SNAPSHOT_SET_DESCRIPTION",
            ),
            (
                "unknown entity",
                good.replacen("&amp;", "&nbsp;", 1),
                "entity",
            ),
            (
                "doctype",
                good.replacen(
                    "<BACKUP_COMPONENTS",
                    "<!DOCTYPE BACKUP_COMPONENTS>\n<BACKUP_COMPONENTS",
                    1,
                ),
                "DOCTYPE",
            ),
            (
                "two roots",
                format!("{good}<BACKUP_COMPONENTS/>"),
                "second root",
            ),
            ("huge", huge, "16 MiB"),
        ];
        for (what, xml, needle) in cases {
            let e = BackupComponents::from_xml(&xml).expect_err(what);
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
        let bcd = rich();
        let additions = [
            (
                "<BACKUP_COMPONENTS ",
                r#"<BACKUP_COMPONENTS rangesFile="/tmp/r" "#,
            ),
            (
                "<SNAPSHOT_DESCRIPTION ",
                r#"<SNAPSHOT_DESCRIPTION timestamp="1" "#,
            ),
            ("<COMPONENT ", r#"<COMPONENT restoreName="later" "#),
            (
                "<BACKUP_METADATA>",
                r#"<PARTIAL_FILE path="/x" ranges="0:10"/><BACKUP_METADATA>"#,
            ),
            (
                "<SNAPSHOT_DESCRIPTION ",
                "<LUN_MAPPING><DESTINATION_LUN/></LUN_MAPPING><SNAPSHOT_DESCRIPTION ",
            ),
            (
                "</BACKUP_COMPONENTS>",
                "<?pi x?><!-- c --><EXTENSION a=\"b\">text</EXTENSION></BACKUP_COMPONENTS>",
            ),
        ];
        let mut xml = bcd.to_xml();
        for (from, to) in additions {
            assert!(xml.contains(from), "{from}");
            xml = xml.replace(from, to);
        }
        assert_eq!(BackupComponents::from_xml(&xml).unwrap(), bcd);
        let xml = bcd.to_xml().replacen(" version=\"1\"", "", 1);
        assert_eq!(BackupComponents::from_xml(&xml).unwrap(), bcd);
    }
}

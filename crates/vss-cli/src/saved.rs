//! The documents a backup keeps for its restore (vss-model.md §2.3 step 18, §2.4 steps 2–3):
//! the Backup Components Document (SaveAsXml) and the Writer Metadata Document of each writer
//! with included components.
//!
//! `vss backup --save-bcd FILE` writes the BCD to FILE; `--save-dir DIR` writes `DIR/bcd.xml`
//! and one `DIR/wmd-<writer>[-<instance name>].xml` per writer. The files are written twice:
//! after DoSnapshotSet, before the COMMAND runs (so that the backup program can store them with
//! its data: `VSS_BCD` names the BCD), and again after BackupComplete, when the BCD also holds
//! each component's backup result. The writers' backup metadata and stamps are in both (writers
//! set them in PrepareForBackup and PostSnapshot). Every file is written to a temporary name and
//! renamed, so a reader never sees half a document.
//!
//! `vss restore --bcd FILE` reads the BCD back, and the WMDs beside it ([`load_beside`]): a
//! saved WMD says which file sets a component had at backup time, which `--mapping` needs.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vss_client::{BackupComponents, WriterMetadata};

use crate::exit::CliError;
use crate::select::Selected;

/// The BCD's file name in a `--save-dir` directory.
pub const BCD_FILE: &str = "bcd.xml";

/// Where `vss backup` saves the documents.
#[derive(Debug, Clone, Default)]
pub struct SaveTo {
    /// `--save-bcd FILE`.
    pub bcd: Option<PathBuf>,
    /// `--save-dir DIR`.
    pub dir: Option<PathBuf>,
}

/// What was written, for the `saved` member of `--json` output.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The BCD files.
    pub bcd: Vec<PathBuf>,
    /// The WMD files.
    pub wmd: Vec<PathBuf>,
}

impl SaveTo {
    /// Whether anything is to be saved.
    pub fn any(&self) -> bool {
        self.bcd.is_some() || self.dir.is_some()
    }

    /// The BCD paths (absolute): `--save-bcd`, then `DIR/bcd.xml`.
    pub fn bcd_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.bcd.iter().map(|p| absolute(p)).collect();
        if let Some(d) = &self.dir {
            v.push(absolute(d).join(BCD_FILE));
        }
        v
    }

    /// The environment the backup COMMAND gets: `VSS_BCD` (the first BCD path) and
    /// `VSS_SAVE_DIR` (with `--save-dir`).
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(p) = self.bcd_paths().first() {
            env.push(("VSS_BCD".to_owned(), p.to_string_lossy().into_owned()));
        }
        if let Some(d) = &self.dir {
            env.push((
                "VSS_SAVE_DIR".to_owned(),
                absolute(d).to_string_lossy().into_owned(),
            ));
        }
        env
    }

    /// Saves the session's BCD (SaveAsXml) and, with `--save-dir`, the WMD of every writer that
    /// has a component in `selected` (from `writers`, the metadata GatherWriterMetadata
    /// returned).
    pub async fn save(
        &self,
        bc: &mut BackupComponents,
        writers: &[WriterMetadata],
        selected: &[Selected],
    ) -> Result<Written, CliError> {
        let xml = bc
            .save_as_xml()
            .await
            .map_err(|e| CliError::from_client(e).context("SaveAsXml"))?;
        let mut written = Written::default();
        if let Some(d) = &self.dir {
            let d = absolute(d);
            std::fs::create_dir_all(&d).map_err(|e| {
                CliError::other(format!(
                    "cannot create the --save-dir directory {}: {e}",
                    d.display()
                ))
            })?;
        }
        for p in self.bcd_paths() {
            write_atomic(&p, &xml)?;
            written.bcd.push(p);
        }
        if let Some(d) = &self.dir {
            let d = absolute(d);
            let mut names: Vec<String> = Vec::new();
            for w in writers
                .iter()
                .filter(|w| selected.iter().any(|s| s.instance_id == w.instance_id))
            {
                let name = wmd_file_name(w, &names);
                let p = d.join(&name);
                write_atomic(&p, &w.to_xml())?;
                names.push(name);
                written.wmd.push(p);
            }
        }
        Ok(written)
    }
}

/// The absolute form of a path given on the command line (not resolved further).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// `wmd-<writer name>[-<instance name>].xml` (no instance name when it is empty or the writer's
/// name), with characters that do not belong in a file name
/// replaced by `_`; the instance id is added when another writer took the name already.
pub fn wmd_file_name(w: &WriterMetadata, taken: &[String]) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@+".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut base = format!("wmd-{}", clean(&w.writer_name));
    if !w.instance_name.is_empty() && w.instance_name != w.writer_name {
        base.push('-');
        base.push_str(&clean(&w.instance_name));
    }
    let name = format!("{base}.xml");
    if taken.contains(&name) {
        format!("{base}-{}.xml", w.instance_id)
    } else {
        name
    }
}

/// Writes `text` to `path` through a temporary file in the same directory (mode 0600: the
/// documents may hold writer-private metadata), then renames it over `path`.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::other(format!(
            "cannot write {}: {e}; check that its directory exists and is writable",
            path.display()
        ))
    };
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// The writers' metadata saved beside a BCD (`wmd-*.xml` in its directory) that belong to it:
/// those whose instance id is one of the BCD's writer instances. Files that do not parse are
/// ignored with a note (they may belong to something else).
pub fn load_beside(bcd_path: &Path, bcd: &vss_model::bcd::BackupComponents) -> Vec<WriterMetadata> {
    let Some(dir) = bcd_path.parent() else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wmd-") && n.ends_with(".xml"))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        match WriterMetadata::from_xml(&text) {
            Ok(w) if bcd.writers.iter().any(|e| e.instance_id == w.instance_id) => out.push(w),
            Ok(_) => {}
            Err(e) => crate::output::note(format!("ignoring {}: {e}", p.display())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn writer(name: &str, instance: &str) -> WriterMetadata {
        serde_json::from_value(json!({
            "writerId": uuid::Uuid::new_v4().to_string(),
            "instanceId": uuid::Uuid::new_v4().to_string(),
            "writerName": name,
            "instanceName": instance,
            "usageType": "VSS_UT_USERDATA",
            "sourceType": "VSS_ST_OTHER",
            "applicationLevel": "VSS_APP_FRONT_END",
            "restoreMethod": "VSS_RME_RESTORE_IF_CAN_REPLACE",
            "writerRestore": "VSS_WRE_ALWAYS",
            "components": [],
        }))
        .expect("writer metadata")
    }

    #[test]
    fn wmd_names_are_file_names_and_unique() {
        let a = writer("vss-writer-postgres", "main");
        assert_eq!(wmd_file_name(&a, &[]), "wmd-vss-writer-postgres-main.xml");
        let b = writer("odd/name", "");
        assert_eq!(wmd_file_name(&b, &[]), "wmd-odd_name.xml");
        let b = writer("tw", "tw");
        assert_eq!(wmd_file_name(&b, &[]), "wmd-tw.xml");
        let taken = vec!["wmd-vss-writer-postgres-main.xml".to_owned()];
        let c = writer("vss-writer-postgres", "main");
        assert_eq!(
            wmd_file_name(&c, &taken),
            format!("wmd-vss-writer-postgres-main-{}.xml", c.instance_id)
        );
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bcd.xml");
        write_atomic(&p, "one").unwrap();
        write_atomic(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = write_atomic(&d.path().join("missing/bcd.xml"), "x").unwrap_err();
        assert_eq!(e.exit, crate::exit::OTHER);
        assert!(e.message.contains("missing/bcd.xml"), "{}", e.message);
    }

    #[test]
    fn saved_wmds_are_matched_by_instance() {
        let d = tempfile::tempdir().unwrap();
        let ours = writer("tw", "");
        let other = writer("tw", "");
        std::fs::write(d.path().join("wmd-tw.xml"), ours.to_xml()).unwrap();
        std::fs::write(d.path().join("wmd-other.xml"), other.to_xml()).unwrap();
        std::fs::write(d.path().join("wmd-bad.xml"), "not xml").unwrap();
        let bcd = vss_model::bcd::BackupComponents {
            writers: vec![vss_model::bcd::WriterComponents {
                writer_id: ours.writer_id,
                instance_id: ours.instance_id,
                components: vec![],
            }],
            ..Default::default()
        };
        let got = load_beside(&d.path().join(BCD_FILE), &bcd);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].instance_id, ours.instance_id);
    }
}

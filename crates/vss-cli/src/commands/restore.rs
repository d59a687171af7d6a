//! `vss restore --bcd FILE [--component WRITER:PATH]... [--mapping FROM=TO]... -- COMMAND [ARG...]`:
//! the VSS restore sequence (vss-model.md §2.4, VShadow's `-r`) around a restore program.
//!
//! InitializeForRestore with the saved Backup Components Document, SetRestoreState
//! (`VSS_RTYPE_BY_COPY`), GatherWriterMetadata, SetSelectedForRestore for the chosen components
//! (each restored by the live instance of its writer, [`choose`]), AddAlternativeLocationMapping
//! for every file set `--mapping` moves (before PreRestore, so that a writer knows in
//! PreRestore whether its live files are about to be overwritten), PreRestore; then the COMMAND
//! copies the files back; SetFileRestoreStatus for every chosen component from the COMMAND's
//! exit status (`VSS_RS_ALL` on 0, `VSS_RS_NONE` when it could not be started, `VSS_RS_FAILED`
//! otherwise), PostRestore, GatherWriterStatus, and the writers' final statuses are printed.
//!
//! When a selected writer fails PreRestore, the COMMAND does not run: every component is
//! reported `VSS_RS_NONE`, PostRestore goes to the other writers, and `vss` exits 4.
//!
//! Exit code: 3 for a BCD file, writer or component that does not exist or a writer that is not
//! running; 7 for a file that is not a BCD (`VSS_E_INVALID_XML_DOCUMENT`); 4 when a selected
//! writer failed PreRestore (the COMMAND did not run); else the COMMAND's status when it failed;
//! else 4 when a selected writer failed PostRestore; else 0.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Args;
use serde_json::{Value, json};
use uuid::Uuid;
use vss_client::{ComponentRef, FileRestoreStatus, RestoreType, WriterMetadata};
use vss_model::bcd::{BackupComponents as Bcd, WriterComponents};
use vss_model::wmd::FileSpec;
use vss_protocol::writer::AlternateLocation;

use crate::child;
use crate::connection::Engine;
use crate::exit::{self, CliError};
use crate::output::{self, Out};
use crate::saved;
use crate::select::{ComponentSpec, Selected};
use crate::sequence;
use crate::signals::Signals;

/// `vss restore`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  vss restore --bcd /backup/docs/bcd.xml -- cp -a /backup/data/. /srv/data/
  vss restore --bcd /backup/pg.bcd --mapping /srv/pg/data=/srv/pg/restored \\
      -- cp -a /backup/pg/data /srv/pg/restored

The COMMAND gets VSS_BCD, VSS_SNAPSHOT_SET_ID and VSS_VOLUME_COUNT/VSS_VOLUME_i of the backup,
VSS_COMPONENT_COUNT/VSS_COMPONENT_i (WRITER:PATH of each component restored) and
VSS_MAPPING_COUNT/VSS_MAPPING_i_FROM/VSS_MAPPING_i_TO.")]
pub struct RestoreArgs {
    /// The Backup Components Document the backup saved (`vss backup --save-bcd FILE`, or
    /// DIR/bcd.xml of --save-dir; the writers' metadata saved beside it is used too).
    #[arg(long, value_name = "FILE")]
    pub bcd: PathBuf,
    /// Restore only this writer's components, or only this component: WRITER (name, writer id
    /// or instance id), WRITER:LOGICALPATH\NAME or WRITER:NAME. Repeatable. Default: every
    /// component of the BCD whose writer is running.
    #[arg(long = "component", value_name = "WRITER:PATH")]
    pub components: Vec<ComponentSpec>,
    /// The COMMAND restores what was under FROM (at backup time) to TO: the writers are told
    /// (AddAlternativeLocationMapping for each file set of the components under FROM). Repeatable.
    #[arg(long = "mapping", value_name = "FROM=TO")]
    pub mappings: Vec<Mapping>,
    /// The restore program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// `--mapping FROM=TO` (both made absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Where the files were at backup time.
    pub from: PathBuf,
    /// Where the COMMAND puts them.
    pub to: PathBuf,
}

impl FromStr for Mapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((from, to)) = s.split_once('=') else {
            return Err(format!("'{s}' is not FROM=TO"));
        };
        if from.is_empty() || to.is_empty() {
            return Err(format!("'{s}' is not FROM=TO (both paths are needed)"));
        }
        let abs = |p: &str| saved::absolute(Path::new(p));
        Ok(Mapping {
            from: abs(from),
            to: abs(to),
        })
    }
}

/// A component of the BCD chosen for restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The component, with the live instance that restores it (`instance_id`).
    pub sel: Selected,
    /// The writer instance that backed it up (the BCD's).
    pub backup_instance: Uuid,
    /// Whether the BCD says its backup succeeded.
    pub backup_succeeded: bool,
    /// Its file sets at backup time (saved WMD), else as the live writer declares them.
    pub files: Vec<FileSpec>,
    /// Where `--mapping` sends its file sets.
    pub locations: Vec<AlternateLocation>,
}

impl Chosen {
    fn component_ref(&self) -> ComponentRef {
        ComponentRef {
            writer_id: self.sel.writer_id,
            component_type: self.sel.component_type,
            logical_path: self.sel.logical_path.clone(),
            name: self.sel.name.clone(),
        }
    }

    fn label(&self) -> String {
        format!("{}:{}", self.sel.writer_name, self.sel.full_path())
    }

    fn to_json(&self) -> Value {
        let mut v = self.sel.to_json();
        v["backupInstanceId"] = json!(self.backup_instance.to_string());
        v["backupSucceeded"] = json!(self.backup_succeeded);
        v["alternateLocations"] = serde_json::to_value(&self.locations).unwrap_or(Value::Null);
        v
    }
}

impl RestoreArgs {
    /// The BCD file must exist (checked before an engine is started for nothing).
    pub fn check(&self) -> Result<(), CliError> {
        if let Err(e) = std::fs::metadata(&self.bcd) {
            return Err(CliError::not_found(format!(
                "cannot read the backup components document {}: {e}; save one with `vss backup \
                 --save-bcd`",
                self.bcd.display()
            )));
        }
        Ok(())
    }

    /// Runs it.
    pub async fn run(
        &self,
        engine: &Engine,
        out: &mut Out,
        signals: &Signals,
    ) -> Result<u8, CliError> {
        let bcd_path = saved::absolute(&self.bcd);
        let xml = std::fs::read_to_string(&bcd_path).map_err(|e| {
            let what = format!(
                "cannot read the backup components document {}: {e}",
                bcd_path.display()
            );
            if e.kind() == std::io::ErrorKind::NotFound {
                CliError::not_found(format!("{what}; save one with `vss backup --save-bcd`"))
            } else {
                CliError::other(what)
            }
        })?;
        out.set("bcd", json!(bcd_path.to_string_lossy()));
        let mut bc = engine.session().await?;
        bc.initialize_for_restore(&xml).await.map_err(|e| {
            CliError::from_client(e)
                .context(format!("InitializeForRestore with {}", bcd_path.display()))
        })?;
        // The engine accepted it, so it parses here too (one parser, vss-model's).
        let doc =
            Bcd::from_xml(&xml).map_err(|e| CliError::from_vss(e).context(bcd_path.display()))?;
        describe_backup(&bcd_path, &doc, out);
        bc.set_restore_state(RestoreType::ByCopy).await?;
        bc.gather_writer_metadata()
            .await?
            .await
            .map_err(|e| CliError::from_client(e).context("GatherWriterMetadata"))?;
        let live = bc.get_writer_metadata().await?;
        let saved_wmds = saved::load_beside(&bcd_path, &doc);
        let (mut chosen, notes) = choose(&doc, &live, &saved_wmds, &self.components)?;
        for n in notes {
            output::note(n);
        }
        plan_mappings(&mut chosen, &self.mappings)?;
        out.line(format!(
            "{} writer(s) answered; {} component(s) selected for restore{}",
            live.len(),
            chosen.len(),
            if chosen.is_empty() { "" } else { ":" }
        ));
        for c in &chosen {
            out.line(format!(
                "  {} (instance {{{}}}){}",
                c.label(),
                c.sel.instance_id,
                if c.backup_succeeded {
                    ""
                } else {
                    ", backed up without a recorded success"
                }
            ));
            for l in &c.locations {
                out.line(format!("    {} -> {}", l.path, l.destination));
            }
        }
        out.set(
            "components",
            Value::Array(chosen.iter().map(Chosen::to_json).collect()),
        );
        out.set(
            "mappings",
            Value::Array(
                self.mappings
                    .iter()
                    .map(
                        |m| json!({"from": m.from.to_string_lossy(), "to": m.to.to_string_lossy()}),
                    )
                    .collect(),
            ),
        );
        for c in &chosen {
            let cref = c.component_ref();
            bc.set_selected_for_restore(&cref, true, Some(c.sel.instance_id))
                .await
                .map_err(|e| {
                    CliError::from_client(e).context(format!("selecting {} for restore", c.label()))
                })?;
            for l in &c.locations {
                bc.add_alternative_location_mapping(
                    &cref,
                    &l.path,
                    &l.filespec,
                    l.recursive,
                    &l.destination,
                )
                .await
                .map_err(|e| {
                    CliError::from_client(e).context(format!(
                        "AddAlternativeLocationMapping {} -> {} for {}",
                        l.path,
                        l.destination,
                        c.label()
                    ))
                })?;
            }
        }
        let selected: Vec<Selected> = chosen.iter().map(|c| c.sel.clone()).collect();

        bc.pre_restore()
            .await?
            .await
            .map_err(|e| CliError::from_client(e).context("PreRestore"))?;
        let statuses = sequence::writer_status(&mut bc)
            .await
            .map_err(|e| CliError::from_client(e).context("GatherWriterStatus"))?;
        let failed = sequence::failed_selected(&statuses, &selected);
        if !failed.is_empty() {
            for s in statuses.iter().filter(|s| output::writer_failed(s)) {
                if let Some(m) = s.failure_message.as_deref().filter(|m| !m.is_empty()) {
                    output::note(format!("writer '{}': {m}", s.writer_name));
                }
            }
            out.line(format!(
                "PreRestore failed: {}; the command is not run, nothing is restored.",
                failed.join(", ")
            ));
            finish(&mut bc, &chosen, FileRestoreStatus::None, out).await?;
            output::note(format!(
                "selected writer(s) failed PreRestore, so the command did not run: {}",
                failed.join(", ")
            ));
            return Ok(exit::WRITER_FAILED);
        }

        let argv: Vec<String> = self
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        out.line(format!("Running {}", child::display(&self.command)));
        let env = environment(&bcd_path, &doc, &chosen, &self.mappings);
        let status = child::run_env(&self.command, &env, out.is_json(), signals).await?;
        let file_status = match status {
            0 => FileRestoreStatus::All,
            exit::COMMAND_NOT_FOUND | exit::COMMAND_NOT_EXECUTABLE => FileRestoreStatus::None,
            _ => FileRestoreStatus::Failed,
        };
        out.line(format!(
            "The command exited with status {status}; reporting the files as {} ({}) to the writers.",
            match file_status {
                FileRestoreStatus::All => "restored",
                FileRestoreStatus::None => "not restored",
                _ => "partly restored",
            },
            file_status.name()
        ));
        out.set(
            "command",
            json!({"argv": argv, "status": status, "succeeded": status == 0}),
        );
        let statuses = finish(&mut bc, &chosen, file_status, out).await?;
        if status != 0 {
            return Ok(status);
        }
        let failed = sequence::failed_selected(&statuses, &selected);
        if !failed.is_empty() {
            output::note(format!(
                "selected writer(s) failed PostRestore: {}",
                failed.join(", ")
            ));
            return Ok(exit::WRITER_FAILED);
        }
        Ok(exit::OK)
    }
}

/// Records the file restore status of every chosen component, sends PostRestore, gathers and
/// reports the writers' statuses.
async fn finish(
    bc: &mut vss_client::BackupComponents,
    chosen: &[Chosen],
    status: FileRestoreStatus,
    out: &mut Out,
) -> Result<Vec<vss_client::WriterStatus>, CliError> {
    for c in chosen {
        let cref = c.component_ref();
        bc.set_file_restore_status(&cref, status)
            .await
            .map_err(|e| {
                CliError::from_client(e).context(format!("SetFileRestoreStatus for {}", c.label()))
            })?;
    }
    out.set("fileRestoreStatus", json!(status.name()));
    bc.post_restore()
        .await?
        .await
        .map_err(|e| CliError::from_client(e).context("PostRestore"))?;
    let statuses = sequence::writer_status(bc)
        .await
        .map_err(|e| CliError::from_client(e).context("GatherWriterStatus"))?;
    sequence::report_statuses(&statuses, out);
    Ok(statuses)
}

/// Prints what the BCD says about the backup.
fn describe_backup(path: &Path, doc: &Bcd, out: &mut Out) {
    let volumes: Vec<&str> = doc
        .snapshot_set
        .iter()
        .flat_map(|s| s.snapshots.iter().map(|d| d.original_volume.as_str()))
        .collect();
    out.line(format!(
        "Restoring from {}: backup of {} ({}{})",
        path.display(),
        if volumes.is_empty() {
            "no volume".to_owned()
        } else {
            volumes.join(", ")
        },
        doc.backup_type.map_or("VSS_BT_UNDEFINED", |t| t.name()),
        doc.snapshot_set
            .as_ref()
            .map(|s| format!(", snapshot set {{{}}}", s.snapshot_set_id))
            .unwrap_or_default()
    ));
    if let Some(s) = &doc.snapshot_set {
        out.set("snapshotSetId", json!(s.snapshot_set_id.to_string()));
    }
}

/// The COMMAND's environment (see the command's help).
fn environment(
    bcd: &Path,
    doc: &Bcd,
    chosen: &[Chosen],
    mappings: &[Mapping],
) -> Vec<(String, String)> {
    let mut env = vec![("VSS_BCD".to_owned(), bcd.to_string_lossy().into_owned())];
    if let Some(s) = &doc.snapshot_set {
        env.push(("VSS_SNAPSHOT_SET_ID".into(), s.snapshot_set_id.to_string()));
        env.push(("VSS_VOLUME_COUNT".into(), s.snapshots.len().to_string()));
        for (i, d) in s.snapshots.iter().enumerate() {
            env.push((format!("VSS_VOLUME_{}", i + 1), d.original_volume.clone()));
        }
    }
    env.push(("VSS_COMPONENT_COUNT".into(), chosen.len().to_string()));
    for (i, c) in chosen.iter().enumerate() {
        env.push((format!("VSS_COMPONENT_{}", i + 1), c.label()));
    }
    env.push(("VSS_MAPPING_COUNT".into(), mappings.len().to_string()));
    for (i, m) in mappings.iter().enumerate() {
        env.push((
            format!("VSS_MAPPING_{}_FROM", i + 1),
            m.from.to_string_lossy().into_owned(),
        ));
        env.push((
            format!("VSS_MAPPING_{}_TO", i + 1),
            m.to.to_string_lossy().into_owned(),
        ));
    }
    env
}

fn strip_braces(s: &str) -> &str {
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s)
}

/// How `spec` names a BCD entry: not at all (`None`), or yes, possibly pinning the live
/// instance that restores it (`Some(Some(id))` when the spec is a live instance id).
fn names_entry(
    spec: &str,
    entry: &WriterComponents,
    class_live: &[&WriterMetadata],
    saved: Option<&WriterMetadata>,
) -> Option<Option<Uuid>> {
    if class_live.iter().any(|w| w.writer_name == spec)
        || saved.is_some_and(|w| w.writer_name == spec)
    {
        return Some(None);
    }
    let id = Uuid::parse_str(strip_braces(spec)).ok()?;
    if id == entry.writer_id || id == entry.instance_id {
        return Some(None);
    }
    class_live
        .iter()
        .find(|w| w.instance_id == id)
        .map(|w| Some(w.instance_id))
}

/// The live instance that restores a BCD entry: the same instance if it still runs, else the
/// one with the saved instance name, else the only one; several candidates are a usage error.
fn restoring_instance<'a>(
    entry: &WriterComponents,
    class_live: &[&'a WriterMetadata],
    saved: Option<&WriterMetadata>,
    name: &str,
) -> Result<Option<&'a WriterMetadata>, CliError> {
    if let Some(w) = class_live
        .iter()
        .find(|w| w.instance_id == entry.instance_id)
    {
        return Ok(Some(w));
    }
    if let Some(s) = saved {
        let same: Vec<_> = class_live
            .iter()
            .filter(|w| w.instance_name == s.instance_name)
            .collect();
        if same.len() == 1 {
            return Ok(Some(same[0]));
        }
    }
    match class_live {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(CliError::usage(format!(
            "several instances of writer '{name}' run ({}); name the one that restores instance \
             {} of the backup: --component INSTANCE_ID[:PATH]",
            many.iter()
                .map(|w| format!("{} '{}'", w.instance_id, w.instance_name))
                .collect::<Vec<_>>()
                .join(", "),
            entry.instance_id
        ))),
    }
}

/// The components to restore: every component of the BCD whose writer runs, or those `specs`
/// name (WRITER or WRITER:PATH as `vss backup --component`, matched against the BCD). Returns
/// them and notes about what is left out.
pub fn choose(
    doc: &Bcd,
    live: &[WriterMetadata],
    saved: &[WriterMetadata],
    specs: &[ComponentSpec],
) -> Result<(Vec<Chosen>, Vec<String>), CliError> {
    let mut chosen: Vec<Chosen> = Vec::new();
    let mut notes = Vec::new();
    let mut spec_used = vec![false; specs.len()];
    for entry in doc.writers.iter().filter(|e| !e.components.is_empty()) {
        let saved_wmd = saved.iter().find(|w| w.instance_id == entry.instance_id);
        let class_live: Vec<&WriterMetadata> = live
            .iter()
            .filter(|w| w.writer_id == entry.writer_id)
            .collect();
        let name = class_live
            .first()
            .map(|w| w.writer_name.clone())
            .or_else(|| saved_wmd.map(|w| w.writer_name.clone()))
            .unwrap_or_else(|| entry.writer_id.to_string());
        // Which components, and a pinned live instance if a spec named one.
        let mut wanted: Vec<usize> = Vec::new();
        let mut pinned: Option<Uuid> = None;
        if specs.is_empty() {
            wanted = (0..entry.components.len()).collect();
        }
        for (i, spec) in specs.iter().enumerate() {
            let Some(pin) = names_entry(&spec.writer, entry, &class_live, saved_wmd) else {
                continue;
            };
            spec_used[i] = true;
            pinned = pinned.or(pin);
            match &spec.path {
                None => wanted.extend(0..entry.components.len()),
                Some(p) => {
                    let find = |p: &str| {
                        entry
                            .components
                            .iter()
                            .position(|c| vss_model::wmd::full_path(&c.logical_path, &c.name) == p)
                    };
                    let j = find(p).or_else(|| find(&p.replace('/', "\\"))).ok_or_else(|| {
                        CliError::not_found(format!(
                            "the backup holds no component '{p}' of writer '{name}' (it holds: {})",
                            entry
                                .components
                                .iter()
                                .map(|c| vss_model::wmd::full_path(&c.logical_path, &c.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    wanted.push(j);
                }
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            continue;
        }
        let instance = match pinned {
            Some(id) => class_live.iter().copied().find(|w| w.instance_id == id),
            None => restoring_instance(entry, &class_live, saved_wmd, &name)?,
        };
        let Some(instance) = instance else {
            let comps: Vec<String> = wanted
                .iter()
                .map(|&j| {
                    let c = &entry.components[j];
                    format!(
                        "{name}:{}",
                        vss_model::wmd::full_path(&c.logical_path, &c.name)
                    )
                })
                .collect();
            if specs.is_empty() {
                notes.push(format!(
                    "writer '{name}' is not running: not restoring {} (start the writer to restore them through it)",
                    comps.join(", ")
                ));
                continue;
            }
            return Err(CliError::not_found(format!(
                "writer '{name}' is not running, so it cannot restore {}; start it and run vss restore again",
                comps.join(", ")
            )));
        };
        if chosen.iter().any(|c| {
            c.sel.instance_id == instance.instance_id && c.backup_instance != entry.instance_id
        }) {
            return Err(CliError::not_found(format!(
                "the backup holds components of two instances of writer '{name}' and only instance {} runs to restore them; restore one instance at a time with --component",
                instance.instance_id
            )));
        }
        for j in wanted {
            let c = &entry.components[j];
            let wmd_comp = saved_wmd
                .and_then(|w| w.component(&c.logical_path, &c.name))
                .or_else(|| instance.component(&c.logical_path, &c.name));
            chosen.push(Chosen {
                sel: Selected {
                    writer_name: instance.writer_name.clone(),
                    instance_id: instance.instance_id,
                    writer_id: entry.writer_id,
                    component_type: c.component_type,
                    logical_path: c.logical_path.clone(),
                    name: c.name.clone(),
                },
                backup_instance: entry.instance_id,
                backup_succeeded: c.backup_succeeded,
                files: wmd_comp
                    .map(|w| w.all_files().cloned().collect())
                    .unwrap_or_default(),
                locations: Vec::new(),
            });
        }
    }
    if let Some(i) = spec_used.iter().position(|u| !u) {
        return Err(CliError::not_found(format!(
            "the backup holds no component of writer '{}'",
            specs[i].writer
        )));
    }
    Ok((chosen, notes))
}

/// Where each `--mapping` sends the chosen components' file sets: a file set at or below FROM
/// goes to the same place below TO; a FROM inside a recursive file set moves that part
/// (`FROM`, `*`, recursive). A mapping that touches no file set is an error (exit 3).
pub fn plan_mappings(chosen: &mut [Chosen], mappings: &[Mapping]) -> Result<(), CliError> {
    for m in mappings {
        let mut used = false;
        for c in chosen.iter_mut() {
            let mut found = Vec::new();
            for f in &c.files {
                let p = Path::new(&f.path);
                if let Ok(rest) = p.strip_prefix(&m.from) {
                    // `join("")` would add a trailing slash.
                    let dest = if rest.as_os_str().is_empty() {
                        m.to.clone()
                    } else {
                        m.to.join(rest)
                    };
                    found.push(AlternateLocation {
                        path: f.path.clone(),
                        filespec: f.filespec.clone(),
                        recursive: f.recursive,
                        destination: dest.to_string_lossy().into_owned(),
                    });
                } else if f.recursive && m.from.starts_with(p) {
                    found.push(AlternateLocation {
                        path: m.from.to_string_lossy().into_owned(),
                        filespec: "*".into(),
                        recursive: true,
                        destination: m.to.to_string_lossy().into_owned(),
                    });
                }
            }
            for l in found {
                used = true;
                if !c.locations.contains(&l) {
                    c.locations.push(l);
                }
            }
        }
        if !used {
            let sets: Vec<String> = chosen
                .iter()
                .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
                .collect();
            return Err(CliError::not_found(format!(
                "--mapping {}={}: no file set of the components being restored lies at or under {} (their file sets: {})",
                m.from.display(),
                m.to.display(),
                m.from.display(),
                if sets.is_empty() {
                    "none".to_owned()
                } else {
                    sets.join(", ")
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vss_model::ComponentType;
    use vss_model::bcd::BcdComponent;

    fn wmd(name: &str, instance_name: &str, writer_id: Uuid, files: &[&str]) -> WriterMetadata {
        let files: Vec<_> = files
            .iter()
            .map(|p| json!({"path": p, "filespec": "*", "recursive": true}))
            .collect();
        serde_json::from_value(json!({
            "writerId": writer_id.to_string(),
            "instanceId": Uuid::new_v4().to_string(),
            "writerName": name,
            "instanceName": instance_name,
            "usageType": "VSS_UT_USERDATA",
            "sourceType": "VSS_ST_OTHER",
            "applicationLevel": "VSS_APP_FRONT_END",
            "restoreMethod": "VSS_RME_RESTORE_IF_CAN_REPLACE",
            "writerRestore": "VSS_WRE_ALWAYS",
            "components": [{
                "componentType": "VSS_CT_FILEGROUP",
                "logicalPath": "",
                "name": "cluster",
                "selectable": true,
                "files": files,
            }, {
                "componentType": "VSS_CT_FILEGROUP",
                "logicalPath": "logs",
                "name": "today",
                "selectable": true,
                "files": [],
            }],
        }))
        .expect("writer metadata")
    }

    fn entry(writer_id: Uuid, instance_id: Uuid, names: &[(&str, &str)]) -> WriterComponents {
        WriterComponents {
            writer_id,
            instance_id,
            components: names
                .iter()
                .map(|(lp, n)| BcdComponent::new(ComponentType::FileGroup, lp, n))
                .collect(),
        }
    }

    fn labels(c: &[Chosen]) -> Vec<String> {
        c.iter().map(Chosen::label).collect()
    }

    fn spec(s: &str) -> ComponentSpec {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_every_component_of_a_running_writer() {
        let pg = Uuid::new_v4();
        let gone = Uuid::new_v4();
        let live = wmd("pg", "main", pg, &["/srv/pg/data"]);
        let doc = Bcd {
            writers: vec![
                entry(pg, Uuid::new_v4(), &[("", "cluster"), ("logs", "today")]),
                entry(gone, Uuid::new_v4(), &[("", "x")]),
            ],
            ..Default::default()
        };
        let (c, notes) = choose(&doc, std::slice::from_ref(&live), &[], &[]).unwrap();
        assert_eq!(labels(&c), ["pg:cluster", "pg:logs\\today"]);
        assert_eq!(
            c[0].sel.instance_id, live.instance_id,
            "the live instance restores"
        );
        assert_eq!(
            c[0].files[0].path, "/srv/pg/data",
            "file sets from the live writer"
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("is not running"), "{notes:?}");
    }

    #[test]
    fn specs_narrow_and_unknowns_are_not_found() {
        let pg = Uuid::new_v4();
        let live = wmd("pg", "main", pg, &["/srv/pg/data"]);
        let backed = Uuid::new_v4();
        let doc = Bcd {
            writers: vec![entry(pg, backed, &[("", "cluster"), ("logs", "today")])],
            ..Default::default()
        };
        let one = |s: &[&str]| {
            let specs: Vec<_> = s.iter().map(|s| spec(s)).collect();
            choose(&doc, std::slice::from_ref(&live), &[], &specs)
        };
        assert_eq!(
            labels(&one(&["pg:logs/today"]).unwrap().0),
            ["pg:logs\\today"]
        );
        assert_eq!(labels(&one(&[&backed.to_string()]).unwrap().0).len(), 2);
        assert_eq!(
            labels(&one(&[&format!("{{{pg}}}:cluster")]).unwrap().0),
            ["pg:cluster"]
        );
        assert_eq!(one(&["pg:nope"]).unwrap_err().exit, exit::NOT_FOUND);
        assert_eq!(one(&["other"]).unwrap_err().exit, exit::NOT_FOUND);
        // Not running and named: an error, not a note.
        let e = choose(&doc, &[], &[], &[spec(&pg.to_string())]).unwrap_err();
        assert_eq!(e.exit, exit::NOT_FOUND);
        assert!(e.message.contains("not running"), "{}", e.message);
    }

    #[test]
    fn the_restoring_instance_is_found_or_must_be_named() {
        let pg = Uuid::new_v4();
        let a = wmd("pg", "main", pg, &["/a"]);
        let b = wmd("pg", "second", pg, &["/b"]);
        let mut saved = wmd("pg", "second", pg, &["/b-at-backup"]);
        let backed = Uuid::new_v4();
        saved.instance_id = backed;
        let doc = Bcd {
            writers: vec![entry(pg, backed, &[("", "cluster")])],
            ..Default::default()
        };
        let live = [a.clone(), b.clone()];
        // Two live instances, nothing to tell them apart: name one.
        let e = choose(&doc, &live, &[], &[]).unwrap_err();
        assert_eq!(e.exit, exit::USAGE);
        // The saved WMD's instance name tells; its file sets are the backup's.
        let (c, _) = choose(&doc, &live, std::slice::from_ref(&saved), &[]).unwrap();
        assert_eq!(c[0].sel.instance_id, b.instance_id);
        assert_eq!(c[0].files[0].path, "/b-at-backup");
        // A live instance id pins it.
        let (c, _) = choose(&doc, &live, &[], &[spec(&a.instance_id.to_string())]).unwrap();
        assert_eq!(c[0].sel.instance_id, a.instance_id);
    }

    #[test]
    fn mappings_move_file_sets() {
        let pg = Uuid::new_v4();
        let live = wmd("pg", "", pg, &["/srv/pg/data", "/srv/ts/one"]);
        let doc = Bcd {
            writers: vec![entry(pg, Uuid::new_v4(), &[("", "cluster")])],
            ..Default::default()
        };
        let (mut c, _) = choose(&doc, &[live], &[], &[]).unwrap();
        let m = |s: &str| s.parse::<Mapping>().unwrap();
        plan_mappings(
            &mut c,
            &[
                m("/srv/pg=/new/pg"),
                m("/srv/ts/one/sub=/x"),
                m("/srv/ts/one=/y"),
            ],
        )
        .unwrap();
        let got: Vec<(String, String, String)> = c[0]
            .locations
            .iter()
            .map(|l| (l.path.clone(), l.filespec.clone(), l.destination.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("/srv/pg/data".into(), "*".into(), "/new/pg/data".into()),
                ("/srv/ts/one/sub".into(), "*".into(), "/x".into()),
                ("/srv/ts/one".into(), "*".into(), "/y".into()),
            ]
        );
        let e = plan_mappings(&mut c, &[m("/srv/p=/y")]).unwrap_err();
        assert_eq!(e.exit, exit::NOT_FOUND, "components, not string prefixes");
        assert!(e.message.contains("/srv/pg/data"), "{}", e.message);
        assert!("nothing".parse::<Mapping>().is_err());
        assert!("=/x".parse::<Mapping>().is_err());
    }
}

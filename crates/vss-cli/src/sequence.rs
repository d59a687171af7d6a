//! The requester sequence `create` and `backup` share (vss-model.md §2.3, VShadow's order):
//! InitializeForBackup, SetContext, and with writers SetBackupState (component mode),
//! GatherWriterMetadata and AddComponent for the selected components; StartSnapshotSet,
//! AddToSnapshotSet per volume, PrepareForBackup (with writers), DoSnapshotSet,
//! GetSnapshotProperties ([`make_set`]); later SetBackupSucceeded per component, BackupComplete
//! and GatherWriterStatus ([`complete`]).
//!
//! A failure after PrepareForBackup is followed by AbortBackup, and the writers' statuses are
//! reported. Exit codes: 3 for a volume that does not exist or no provider supports, 4 when
//! DoSnapshotSet failed because of a writer, 5 for any other failure to make the set.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use uuid::Uuid;
use vss_client::{
    BackupComponents, BackupType, ClientError, SnapshotProperties, WriterMetadata, WriterStatus,
};
use vss_model::attr;
use vss_protocol::admin::Provider;

use crate::child::Readable;
use crate::connection::Engine;
use crate::exit::CliError;
use crate::output::{self, Out};
use crate::progress::Spinner;
use crate::raw::AdminSession;
use crate::select::{self, ComponentSpec, Selected};

/// Which components to include.
#[derive(Debug, Clone)]
pub enum Selection {
    /// VShadow's default selection for the set's volumes.
    Default,
    /// Only these (`--component`).
    Explicit(Vec<ComponentSpec>),
}

/// What to make.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The snapshot context (`VSS_CTX_*`).
    pub context: i64,
    /// The backup type for SetBackupState.
    pub backup_type: BackupType,
    /// The components, when writers take part.
    pub selection: Selection,
    /// Absolute volume paths.
    pub volumes: Vec<String>,
    /// The provider to use, or automatic choice.
    pub provider: Option<Uuid>,
}

impl Plan {
    /// Whether writers take part (the context has no `NO_WRITERS` bit).
    pub fn with_writers(&self) -> bool {
        self.context & i64::from(attr::NO_WRITERS) == 0
    }

    /// Whether the snapshots survive the session.
    pub fn persistent(&self) -> bool {
        self.context & i64::from(attr::PERSISTENT) != 0
    }
}

/// One snapshot of the made set.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The volume as added.
    pub volume: String,
    /// Its properties after DoSnapshotSet.
    pub props: SnapshotProperties,
}

/// A snapshot set that DoSnapshotSet made, with its open session.
#[derive(Debug)]
pub struct MadeSet {
    /// The session; dropping it releases the set (auto-release snapshots are deleted).
    pub bc: BackupComponents,
    /// The set id.
    pub set_id: Uuid,
    /// Its snapshots, in the order of the volumes.
    pub snapshots: Vec<Snapshot>,
    /// The included components.
    pub selected: Vec<Selected>,
    /// The writers' metadata (GatherWriterMetadata), empty without writers.
    pub writers: Vec<WriterMetadata>,
    /// Whether writers take part.
    pub with_writers: bool,
}

/// The absolute form of a volume argument (not resolved further: vssd resolves it).
pub fn absolute_volume(v: &Path) -> String {
    std::path::absolute(v)
        .unwrap_or_else(|_| v.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// The providers the engine has (for names in output).
pub async fn providers(engine: &Engine) -> Vec<Provider> {
    match engine.admin().await {
        Ok(mut a) => a.list_providers().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Aborts the backup and reports the writers' statuses, after a failure past PrepareForBackup.
async fn abort_and_report(bc: &mut BackupComponents, out: &mut Out) {
    if let Err(e) = bc.abort_backup().await {
        output::note(format!("AbortBackup failed: {e}"));
    }
    if let Ok(statuses) = writer_status(bc).await {
        report_statuses(&statuses, out);
    }
}

/// GatherWriterStatus, then GetWriterStatus.
pub async fn writer_status(bc: &mut BackupComponents) -> Result<Vec<WriterStatus>, ClientError> {
    bc.gather_writer_status().await?.await?;
    bc.get_writer_status().await
}

/// Prints VShadow's writer status blocks and records `writers` in the JSON document.
pub fn report_statuses(statuses: &[WriterStatus], out: &mut Out) {
    for s in statuses {
        for l in output::writer_status_lines(s) {
            out.line(l);
        }
    }
    out.set(
        "writers",
        Value::Array(statuses.iter().map(output::writer_json).collect()),
    );
}

/// Runs the sequence up to a completed snapshot set.
pub async fn make_set(
    engine: &Engine,
    plan: &Plan,
    out: &mut Out,
    providers: &[Provider],
) -> Result<MadeSet, CliError> {
    let mut bc = engine.session().await?;
    bc.initialize_for_backup(None).await?;
    if plan.context != 0 {
        bc.set_context(plan.context).await?;
    }
    let with_writers = plan.with_writers();
    out.set("context", json!(plan.context));
    let mut selected = Vec::new();
    let mut writers = Vec::new();
    if with_writers {
        bc.set_backup_state(true, false, plan.backup_type, false)
            .await?;
        bc.gather_writer_metadata()
            .await?
            .await
            .map_err(|e| CliError::from_client(e).context("GatherWriterMetadata"))?;
        writers = bc.get_writer_metadata().await?;
        let volumes: Vec<PathBuf> = plan
            .volumes
            .iter()
            .map(|v| select::canonical(Path::new(v)))
            .collect();
        selected = match &plan.selection {
            Selection::Default => select::default_selection(&writers, &volumes),
            Selection::Explicit(specs) => select::explicit_selection(&writers, specs, &volumes)?,
        };
        out.line(format!(
            "{} writer(s) answered; {} component(s) included{}",
            writers.len(),
            selected.len(),
            if selected.is_empty() { "" } else { ":" }
        ));
        for s in &selected {
            out.line(format!("  {}:{}", s.writer_name, s.full_path()));
            bc.add_component(
                s.instance_id,
                s.writer_id,
                s.component_type,
                &s.logical_path,
                &s.name,
            )
            .await
            .map_err(|e| {
                CliError::from_client(e).context(format!(
                    "including {}:{}",
                    s.writer_name,
                    s.full_path()
                ))
            })?;
        }
        out.set(
            "components",
            Value::Array(selected.iter().map(Selected::to_json).collect()),
        );
    }
    let set_id = bc
        .start_snapshot_set()
        .await
        .map_err(|e| CliError::snapshot_stage(e).context("StartSnapshotSet"))?;
    let mut ids = Vec::new();
    for v in &plan.volumes {
        let id = bc
            .add_to_snapshot_set(v, plan.provider)
            .await
            .map_err(|e| CliError::snapshot_stage(e).context(format!("adding {v}")))?;
        ids.push((v.clone(), id));
    }
    if with_writers {
        let prepared = match bc.prepare_for_backup().await {
            Ok(op) => op.await,
            Err(e) => Err(e),
        };
        if let Err(e) = prepared {
            abort_and_report(&mut bc, out).await;
            return Err(CliError::snapshot_stage(e).context("PrepareForBackup"));
        }
    }
    let made = {
        let _spinner = Spinner::start(out.is_json(), "Creating the snapshot set");
        match bc.do_snapshot_set().await {
            Ok(op) => op.await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = made {
        if with_writers {
            abort_and_report(&mut bc, out).await;
        }
        return Err(CliError::snapshot_stage(e).context("DoSnapshotSet"));
    }
    let mut snapshots = Vec::new();
    for (volume, id) in ids {
        let props = bc.get_snapshot_properties(id).await?;
        snapshots.push(Snapshot { volume, props });
    }
    out.line(format!("* SNAPSHOT SET ID = {{{set_id}}}"));
    for s in &snapshots {
        let p = &s.props;
        out.line(format!("* SNAPSHOT ID = {{{}}}", p.snapshot_id));
        out.line(format!("   - Original volume: {}", p.original_volume));
        out.line(format!("   - Snapshot path: {}", p.snapshot_path));
        out.line(format!(
            "   - Provider: {}",
            output::provider_name(providers, &p.provider_id)
        ));
        out.line(format!(
            "   - Attributes: {}",
            if p.attribute_names.is_empty() {
                "Auto release".to_owned()
            } else {
                p.attribute_names.join(", ")
            }
        ));
        if let Some(c) = &p.consistency {
            out.line(format!(
                "   - Consistency: {}{}",
                c.level,
                p.atomicity
                    .as_deref()
                    .map(|a| format!(" (atomicity {a})"))
                    .unwrap_or_default()
            ));
        }
    }
    out.set("snapshotSetId", json!(set_id.to_string()));
    out.set(
        "snapshots",
        Value::Array(
            snapshots
                .iter()
                .map(|s| output::snapshot_json(&s.props, providers))
                .collect(),
        ),
    );
    Ok(MadeSet {
        bc,
        set_id,
        snapshots,
        selected,
        writers,
        with_writers,
    })
}

/// Snapshots exposed for the command by `vss` itself, unexposed by [`Exposures::release`].
#[derive(Debug, Default)]
pub struct Exposures {
    /// The private directory holding the mount points.
    dir: Option<PathBuf>,
    /// The exposed snapshots.
    ids: Vec<Uuid>,
}

impl Exposures {
    /// Unexposes what was exposed and removes the directory.
    pub async fn release(self, engine: &Engine) {
        if !self.ids.is_empty() {
            match engine.admin().await {
                Ok(mut a) => {
                    for id in &self.ids {
                        if let Err(e) = a.unexpose(*id).await {
                            output::note(format!("cannot unexpose snapshot {id}: {e}"));
                        }
                    }
                }
                Err(e) => output::note(format!("cannot unexpose the snapshots: {e}")),
            }
        }
        if let Some(d) = self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Where the command can read each snapshot: its path when that is a directory (btrfs,
/// reflink); otherwise (an image file, an exec provider's locator) an exposure in a private
/// directory, which vssd allows for persistent snapshots only. A non-persistent snapshot that is
/// not a directory is an error (exit 3).
pub async fn readable(
    engine: &Engine,
    made: &MadeSet,
    persistent: bool,
    exposures: &mut Exposures,
) -> Result<Vec<Readable>, CliError> {
    let mut out = Vec::new();
    for (i, s) in made.snapshots.iter().enumerate() {
        let path = &s.props.snapshot_path;
        if Path::new(path).is_dir() {
            out.push(Readable {
                volume: s.volume.clone(),
                path: path.clone(),
            });
            continue;
        }
        if !persistent {
            return Err(CliError::not_found(format!(
                "the snapshot of {} is not a directory ({path}: an image or hardware snapshot \
                 must be exposed to be read), and vssd exposes only persistent snapshots; use \
                 `vss create --persistent {} -- COMMAND`, which exposes it for the command",
                s.volume, s.volume
            )));
        }
        let dir = match &exposures.dir {
            Some(d) => d.clone(),
            None => {
                let d = crate::connection::private_dir().map_err(|e| {
                    CliError::other(format!("cannot create a directory to expose into: {e}"))
                })?;
                exposures.dir = Some(d.clone());
                d
            }
        };
        let at = dir.join((i + 1).to_string());
        std::fs::create_dir(&at)
            .map_err(|e| CliError::other(format!("cannot create {}: {e}", at.display())))?;
        let mut admin: AdminSession = engine.admin().await?;
        let id = Uuid::parse_str(&s.props.snapshot_id)
            .map_err(|e| CliError::other(format!("snapshot id {}: {e}", s.props.snapshot_id)))?;
        let name = admin
            .expose(id, &at.to_string_lossy())
            .await
            .map_err(|e| e.context(format!("exposing the snapshot of {}", s.volume)))?;
        exposures.ids.push(id);
        out.push(Readable {
            volume: s.volume.clone(),
            path: name,
        });
    }
    Ok(out)
}

/// Reports every included component's result (SetBackupSucceeded), sends BackupComplete,
/// gathers and reports the writers' statuses. Returns the statuses.
pub async fn complete(
    made: &mut MadeSet,
    succeeded: bool,
    out: &mut Out,
) -> Result<Vec<WriterStatus>, CliError> {
    for s in &made.selected {
        made.bc
            .set_backup_succeeded(
                s.instance_id,
                s.writer_id,
                s.component_type,
                &s.logical_path,
                &s.name,
                succeeded,
            )
            .await
            .map_err(|e| {
                CliError::from_client(e).context(format!(
                    "SetBackupSucceeded for {}:{}",
                    s.writer_name,
                    s.full_path()
                ))
            })?;
    }
    made.bc
        .backup_complete()
        .await?
        .await
        .map_err(|e| CliError::from_client(e).context("BackupComplete"))?;
    let statuses = writer_status(&mut made.bc)
        .await
        .map_err(|e| CliError::from_client(e).context("GatherWriterStatus"))?;
    report_statuses(&statuses, out);
    Ok(statuses)
}

/// The names of the selected writers that failed, if any.
pub fn failed_selected(statuses: &[WriterStatus], selected: &[Selected]) -> Vec<String> {
    let mut v: Vec<String> = statuses
        .iter()
        .filter(|s| {
            selected.iter().any(|c| {
                c.instance_id
                    .to_string()
                    .eq_ignore_ascii_case(&s.instance_id)
            }) && output::writer_failed(s)
        })
        .map(|s| format!("{} ({}, {})", s.writer_name, s.state_name, s.failure_name))
        .collect();
    v.dedup();
    v
}

//! The `vss.Writer` hooks for one PostgreSQL cluster: backup (atomic or archive mode) and
//! restore (the checks and files of `restore.rs`, around the live server).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vss_writer::{
    ApplicationLevel, ComponentType, ComponentUpdate, ErrorCode, EventParams, FileSpec,
    RestoreMethod, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer, WriterMetadata,
    WriterRestore,
};

use crate::layout::{Capture, Layout, classify, volume_root};
use crate::pg::Db;
use crate::restore::{self, BackupMeta, Location, Mappings};

/// The writer's name, and the seed of its class id.
pub const WRITER_NAME: &str = "vss-writer-postgres";

/// The one component: the whole cluster.
pub const COMPONENT: &str = "cluster";

/// How long a query may take (CHECKPOINT under load included).
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// The writer class id: uuid v5 (DNS namespace) of "vss-writer-postgres".
pub fn writer_class_id() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, WRITER_NAME.as_bytes())
}

/// How long PreRestore waits for the server to say whether it runs (a stopped server's socket
/// refuses at once; this bounds a hung one).
const LIVE_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How many seconds pg_backup_stop may wait for the archiver.
const STOP_TIMEOUT_S: u64 = 240;

/// How the set in progress captures the cluster.
#[derive(Debug)]
enum Mode {
    /// Everything on one volume: CHECKPOINT, then crash recovery at restore.
    Atomic { volume: PathBuf },
    /// A backup started with pg_backup_start on the backup connection, not stopped yet
    /// (`stopped`: PostSnapshot ended it).
    Archive {
        label: String,
        start_lsn: String,
        stopped: bool,
    },
}

/// What the writer does for the set in progress.
#[derive(Debug)]
struct Active {
    set_id: String,
    layout: Layout,
    mode: Mode,
}

/// One cluster's writer.
#[derive(Debug)]
pub struct PostgresWriter {
    name: String,
    db: Db,
    /// The layout found at start, which Identify declares (Identify must be deterministic).
    layout: Layout,
    freeze_timeout_ms: u64,
    /// The restore_command PostRestore writes for archive-mode backups.
    restore_command: Option<String>,
    instance_id: Uuid,
    active: Mutex<Option<Active>>,
}

fn error(code: ErrorCode, message: String) -> VssError {
    VssError::new(code, message)
}

fn file_spec(dir: &Path) -> FileSpec {
    FileSpec {
        path: dir.display().to_string(),
        filespec: "*".to_owned(),
        recursive: true,
        alternate_path: None,
        backup_type_mask: 0xF0F,
    }
}

impl PostgresWriter {
    /// A writer for the cluster behind `db`, whose layout was discovered as `layout`.
    pub fn new(
        name: String,
        db: Db,
        layout: Layout,
        freeze_timeout_ms: u64,
        restore_command: Option<String>,
    ) -> PostgresWriter {
        PostgresWriter {
            name,
            db,
            layout,
            freeze_timeout_ms,
            restore_command,
            instance_id: Uuid::new_v4(),
            active: Mutex::new(None),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this writer takes part: in component mode only when `cluster` is included.
    fn included(ev: &EventParams) -> bool {
        match &ev.components {
            None => true,
            Some(c) => c
                .iter()
                .any(|c| c.name == COMPONENT && c.logical_path.is_empty()),
        }
    }

    /// The `cluster` components of a restore event, with their backup metadata and where the
    /// restore puts their directories.
    fn restore_components(
        &self,
        ev: &EventParams,
    ) -> Result<Vec<(BackupMeta, Mappings, bool)>, VssError> {
        let mut v = Vec::new();
        for c in ev.components.iter().flatten() {
            if c.name != COMPONENT || !c.logical_path.is_empty() {
                continue;
            }
            let meta = BackupMeta::parse(c.backup_metadata.as_deref()).map_err(|e| {
                error(
                    ErrorCode::WriterErrorNonRetryable,
                    format!("PostgreSQL cluster '{}': {e}", self.name),
                )
            })?;
            let recorded = c
                .alternate_locations
                .iter()
                .flatten()
                .map(|a| Location {
                    path: a.path.clone().into(),
                    recursive: a.recursive,
                    destination: a.destination.clone().into(),
                })
                .collect();
            let maps = Mappings::new(recorded);
            // VSS_RS_ALL: the requester restored every file.
            let all = c
                .file_restore_status
                .is_some_and(|s| s == vss_writer::FileRestoreStatus::All);
            v.push((meta, maps, all));
        }
        Ok(v)
    }

    /// The directories of the writer's server if it runs (answers now), data directory first.
    fn live_directories(&self) -> Option<Vec<PathBuf>> {
        let layout = Layout::discover(&self.db, LIVE_CHECK_TIMEOUT).ok()?;
        let mut dirs = vec![layout.data_dir.clone(), layout.wal_dir.clone()];
        dirs.extend(layout.tablespaces.iter().cloned());
        Some(dirs)
    }

    /// Whether the server archives WAL (archive_mode on or always, with an archive command or
    /// library): the archive mode needs it.
    fn check_archiving(&self) -> Result<String, VssError> {
        let rows = self
            .db
            .query(
                "SELECT current_setting('archive_mode'), current_setting('archive_command'), \
                 current_setting('archive_library')",
                QUERY_TIMEOUT,
            )
            .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
        let row = rows.into_iter().next().unwrap_or_default();
        let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (mode, command, library) = (get(0), get(1), get(2));
        if mode != "on" && mode != "always" {
            return Err(error(
                ErrorCode::WriterErrorNonRetryable,
                format!(
                    "PostgreSQL cluster '{}': its directories are not on one volume of the set, which needs the archive mode (pg_backup_start/pg_backup_stop), and that needs archive_mode = on (it is {mode})",
                    self.name
                ),
            ));
        }
        if command.is_empty() && library.is_empty() {
            return Err(error(
                ErrorCode::WriterErrorNonRetryable,
                format!(
                    "PostgreSQL cluster '{}': archive_mode is on but neither archive_command nor archive_library is set: pg_backup_stop would wait forever",
                    self.name
                ),
            ));
        }
        Ok(if command.is_empty() {
            format!("archive_library={library}")
        } else {
            command
        })
    }

    /// Ends the archive-mode backup of `active`, if one is running, without waiting for the
    /// archiver.
    fn cancel_backup(&self, active: &mut Option<Active>) {
        if let Some(Active {
            mode:
                Mode::Archive {
                    stopped: false,
                    label,
                    ..
                },
            ..
        }) = active.as_ref()
        {
            warn!(instance = %self.name, %label, "ending the backup (abort)");
            self.db
                .backup_cancel("SELECT pg_backup_stop(wait_for_archive => false)");
        }
        *active = None;
    }

    /// How the set of `ev` captures `layout`'s directories.
    fn capture(layout: &Layout, ev: &EventParams) -> Result<Capture, VssError> {
        let mut dir_roots = Vec::new();
        for dir in layout.directories() {
            let root = volume_root(dir).map_err(|e| {
                error(
                    ErrorCode::WriterErrorRetryable,
                    format!("cannot find the volume of {}: {e}", dir.display()),
                )
            })?;
            dir_roots.push((dir.to_path_buf(), root));
        }
        let set_roots: Vec<PathBuf> = ev
            .volumes
            .iter()
            .map(|v| {
                let p = Path::new(&v.volume);
                volume_root(p).unwrap_or_else(|_| p.to_path_buf())
            })
            .collect();
        Ok(classify(&dir_roots, &set_roots, layout.wal_separate))
    }
}

impl Writer for PostgresWriter {
    fn metadata(&self) -> WriterMetadata {
        let dirs = self.layout.directories();
        WriterMetadata {
            writer_id: writer_class_id(),
            instance_id: self.instance_id,
            writer_name: WRITER_NAME.to_owned(),
            instance_name: self.name.clone(),
            usage_type: UsageType::UserData,
            source_type: SourceType::TransactedDb,
            application_level: ApplicationLevel::FrontEnd,
            freeze_timeout_ms: self.freeze_timeout_ms,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            // PreRestore guards the live server, PostRestore prepares recovery.
            writer_restore: WriterRestore::Always,
            restore_service: None,
            backup_schema: 0,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            // The running server's pid file means nothing in a copy (a restore removes it).
            exclude_files: vec![FileSpec {
                path: self.layout.data_dir.display().to_string(),
                filespec: "postmaster.pid".to_owned(),
                recursive: false,
                alternate_path: None,
                backup_type_mask: 0xF0F,
            }],
            components: vec![WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: COMPONENT.to_owned(),
                caption: format!("PostgreSQL cluster in {}", self.layout.data_dir.display()),
                selectable: true,
                selectable_for_restore: true,
                notify_on_backup_complete: false,
                restore_metadata: false,
                component_flags: 0,
                files: dirs.into_iter().map(file_spec).collect(),
                log_files: vec![],
                dependencies: vec![],
            }],
        }
    }

    fn freeze_timeout_ms(&self) -> u64 {
        self.freeze_timeout_ms
    }

    /// In component mode with the cluster included: when the set (or, before volumes are
    /// added, the layout) needs the archive mode, check that the server archives WAL.
    fn prepare_for_backup(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        if !Self::included(ev) {
            return Ok(Vec::new());
        }
        let archive = if ev.volumes.is_empty() {
            self.layout.spans_volumes()
        } else {
            matches!(Self::capture(&self.layout, ev)?, Capture::Spread { .. })
        };
        if archive {
            self.check_archiving()?;
        }
        Ok(Vec::new())
    }

    /// Checks that the set captures every directory of the cluster, then: all on one volume
    /// (atomic mode), CHECKPOINT; else (archive mode) pg_backup_start on the backup
    /// connection, held until PostSnapshot or Abort.
    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        let mut active = self.active();
        self.cancel_backup(&mut active);
        if !Self::included(ev) {
            info!(instance = %self.name, set = %ev.snapshot_set_id, "component not included: nothing to do");
            return Ok(());
        }
        // Ask again: a tablespace may have been created since Identify.
        let layout = Layout::discover(&self.db, QUERY_TIMEOUT)
            .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
        if layout != self.layout {
            warn!(instance = %self.name, ?layout, "the cluster's directories changed since the writer started");
        }
        let start = Instant::now();
        let mode = match Self::capture(&layout, ev)? {
            Capture::Missing { dir, volume } => {
                return Err(error(
                    ErrorCode::WriterErrorInconsistentSnapshot,
                    format!(
                        "PostgreSQL cluster '{}': {} lies on volume {}, which is not in the snapshot set; add it",
                        self.name,
                        dir.display(),
                        volume.display()
                    ),
                ));
            }
            Capture::Atomic { volume } => {
                self.db
                    .query("CHECKPOINT", QUERY_TIMEOUT)
                    .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
                info!(instance = %self.name, set = %ev.snapshot_set_id, volume = %volume.display(), elapsed = ?start.elapsed(), "atomic mode: checkpoint done");
                Mode::Atomic { volume }
            }
            Capture::Spread { volumes } => {
                self.check_archiving()?;
                let label = format!("vss-{}", ev.snapshot_set_id);
                let sql = format!(
                    "SELECT pg_backup_start('{}', fast => true)",
                    label.replace('\'', "''")
                );
                let rows = self
                    .db
                    .backup_begin(&sql, QUERY_TIMEOUT)
                    .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
                let start_lsn = rows
                    .into_iter()
                    .next()
                    .and_then(|r| r.into_iter().next().flatten())
                    .unwrap_or_default();
                info!(instance = %self.name, set = %ev.snapshot_set_id, ?volumes, %start_lsn, elapsed = ?start.elapsed(), "archive mode: backup started");
                Mode::Archive {
                    label,
                    start_lsn,
                    stopped: false,
                }
            }
        };
        *active = Some(Active {
            set_id: ev.snapshot_set_id.clone(),
            layout,
            mode,
        });
        Ok(())
    }

    /// Nothing to hold: the set's volume is snapshotted at one instant (crash consistent).
    fn freeze(&self, _ev: &EventParams) -> Result<(), VssError> {
        Ok(())
    }

    fn thaw(&self, _ev: &EventParams) -> Result<(), VssError> {
        Ok(())
    }

    /// Atomic mode: records the mode. Archive mode: pg_backup_stop(wait_for_archive => true)
    /// on the backup connection; the label file, tablespace map and stop position go into the
    /// component's backup metadata.
    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        let mut active = self.active();
        let Some(a) = active.as_mut().filter(|a| a.set_id == ev.snapshot_set_id) else {
            return Ok(Vec::new());
        };
        let dirs = serde_json::json!({
            "dataDirectory": a.layout.data_dir.display().to_string(),
            "walDirectory": a.layout.wal_dir.display().to_string(),
            "tablespaces": a.layout.tablespaces.iter().map(|t| t.display().to_string()).collect::<Vec<_>>(),
        });
        let mut meta = match &mut a.mode {
            Mode::Atomic { volume } => serde_json::json!({
                "mode": "atomic",
                "volume": volume.display().to_string(),
                "restore": "copy the directories back, remove postmaster.pid and start the server: it runs crash recovery",
            }),
            Mode::Archive {
                label,
                start_lsn,
                stopped,
            } => {
                let start = Instant::now();
                *stopped = true;
                let sql = format!(
                    "SET statement_timeout = '{STOP_TIMEOUT_S}s'; \
                     SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(wait_for_archive => true)"
                );
                let rows = self
                    .db
                    .backup_end(&sql, QUERY_TIMEOUT)
                    .map_err(|e| error(ErrorCode::WriterErrorNonRetryable, e))?;
                let row = rows.into_iter().next().unwrap_or_default();
                let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                let archive = self.check_archiving().unwrap_or_default();
                info!(instance = %self.name, set = %ev.snapshot_set_id, stop_lsn = %get(0), elapsed = ?start.elapsed(), "archive mode: backup stopped, WAL archived");
                serde_json::json!({
                    "mode": "archive",
                    "label": label,
                    "startLsn": start_lsn,
                    "stopLsn": get(0),
                    "labelFile": get(1),
                    "tablespaceMap": get(2),
                    "archive": archive,
                    "restore": "copy the data directory and tablespaces back; replace pg_wal with an empty directory; write labelFile to backup_label and a non-empty tablespaceMap to tablespace_map; remove postmaster.pid; create recovery.signal; set restore_command (fetching from the archive) and recovery_target = 'immediate'; start the server",
                })
            }
        };
        if let (Some(m), Some(d)) = (meta.as_object_mut(), dirs.as_object()) {
            m.extend(d.clone());
        }
        Ok(vec![ComponentUpdate {
            logical_path: String::new(),
            name: COMPONENT.to_owned(),
            backup_metadata: Some(meta.to_string()),
            backup_stamp: None,
            failure_message: None,
        }])
    }

    /// Ends a backup still in progress (archive mode) and forgets the set.
    fn abort(&self, _ev: Option<&EventParams>) {
        let mut active = self.active();
        self.cancel_backup(&mut active);
    }

    /// Refuses a restore that would overwrite a directory a running server uses (the files
    /// would be replaced under it); restoring over this writer's own (stopped) cluster, closes
    /// the writer's connection to it.
    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        let comps = self.restore_components(ev)?;
        if comps.is_empty() {
            return Ok(());
        }
        let live = self.live_directories();
        for (meta, maps, _) in &comps {
            let target = restore::pre_restore_check(meta, maps, live.as_deref()).map_err(|e| {
                error(
                    ErrorCode::WriterErrorNonRetryable,
                    format!("PostgreSQL cluster '{}': {e}", self.name),
                )
            })?;
            info!(instance = %self.name, mode = %meta.mode, from = %meta.data_directory.display(), to = %target.display(), server_running = live.is_some(), "restore prepared");
            if restore::same_dir(&target, &self.layout.data_dir) {
                self.db.disconnect(LIVE_CHECK_TIMEOUT);
            }
        }
        Ok(())
    }

    /// Once every file is restored (VSS_RS_ALL), puts in place what the server needs to
    /// recover to the backup's consistent point; otherwise leaves the files alone.
    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        for (meta, maps, all) in self.restore_components(ev)? {
            if !all {
                warn!(instance = %self.name, "the requester did not report every file restored (VSS_RS_ALL): recovery is not prepared");
                continue;
            }
            let done = restore::post_restore(&meta, &maps, self.restore_command.as_deref())
                .map_err(|e| {
                    error(
                        ErrorCode::WriterErrorNonRetryable,
                        format!("PostgreSQL cluster '{}': {e}", self.name),
                    )
                })?;
            info!(instance = %self.name, mode = %meta.mode, data = %maps.map(&meta.data_directory).display(), ?done, "restore ready: start the server");
        }
        Ok(())
    }

    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let mut active = self.active();
        if active
            .as_ref()
            .is_some_and(|a| a.set_id == snapshot_set_id.to_string())
        {
            self.cancel_backup(&mut active);
        }
    }
}

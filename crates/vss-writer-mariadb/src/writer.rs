//! The `vss.Writer` hooks for one MariaDB / MySQL server.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vss_writer::{
    ApplicationLevel, ComponentType, ComponentUpdate, ErrorCode, EventParams, FileSpec,
    RestoreMethod, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer, WriterMetadata,
    WriterRestore,
};

use crate::db::Db;
use crate::layout::{Capture, Flavor, Layout, classify, volume_root};

/// The writer's name, and the seed of its class id.
pub const WRITER_NAME: &str = "vss-writer-mariadb";

/// The one component: the whole server.
pub const COMPONENT: &str = "server";

/// How long a plain query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The writer class id: uuid v5 (DNS namespace) of "vss-writer-mariadb".
pub fn writer_class_id() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, WRITER_NAME.as_bytes())
}

/// What the writer holds for the set in progress.
#[derive(Debug)]
struct Active {
    set_id: String,
    layout: Layout,
    volume: PathBuf,
    /// The held connection is open (until Thaw or Abort).
    held: bool,
    /// Freeze took the commit lock.
    frozen: bool,
}

/// One server's writer.
#[derive(Debug)]
pub struct MariaDbWriter {
    name: String,
    db: Db,
    /// The layout found at start, which Identify declares (Identify must be deterministic).
    layout: Layout,
    freeze_timeout_ms: u64,
    lock_wait_timeout_s: u64,
    instance_id: Uuid,
    active: Mutex<Option<Active>>,
}

fn error(code: ErrorCode, message: String) -> VssError {
    VssError::new(code, message)
}

fn file_spec(dir: &Path, filespec: &str) -> FileSpec {
    FileSpec {
        path: dir.display().to_string(),
        filespec: filespec.to_owned(),
        recursive: true,
        alternate_path: None,
        backup_type_mask: 0xF0F,
    }
}

/// The statement that releases what `flavor` holds.
fn release_sql(flavor: &Flavor) -> &'static str {
    match flavor {
        Flavor::MariaDb => "BACKUP STAGE END",
        Flavor::MySql => "UNLOCK TABLES",
    }
}

impl MariaDbWriter {
    /// A writer for the server behind `db`, whose layout was discovered as `layout`.
    pub fn new(
        name: String,
        db: Db,
        layout: Layout,
        freeze_timeout_ms: u64,
        lock_wait_timeout_s: u64,
    ) -> MariaDbWriter {
        MariaDbWriter {
            name,
            db,
            layout,
            freeze_timeout_ms,
            lock_wait_timeout_s,
            instance_id: Uuid::new_v4(),
            active: Mutex::new(None),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this writer takes part: in component mode only when `server` is included.
    fn included(ev: &EventParams) -> bool {
        match &ev.components {
            None => true,
            Some(c) => c
                .iter()
                .any(|c| c.name == COMPONENT && c.logical_path.is_empty()),
        }
    }

    /// Releases what the held connection holds (without waiting) and forgets the set.
    fn release(&self, active: &mut Option<Active>) {
        if let Some(a) = active.take().filter(|a| a.held) {
            warn!(instance = %self.name, set = %a.set_id, frozen = a.frozen, "releasing the server (abort)");
            self.db.release_nowait(&[release_sql(&a.layout.flavor)]);
        }
    }

    /// How long a statement that waits for locks may take before the hook gives up.
    fn lock_timeout(&self) -> Duration {
        Duration::from_secs(self.lock_wait_timeout_s + 10)
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
        Ok(classify(&dir_roots, &set_roots))
    }
}

impl Writer for MariaDbWriter {
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
            writer_restore: WriterRestore::Never,
            restore_service: None,
            backup_schema: 0,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            // Temporary tables of statements in flight mean nothing in a copy.
            exclude_files: vec![file_spec(&self.layout.data_dir, "#sql*")],
            components: vec![WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: COMPONENT.to_owned(),
                caption: format!(
                    "{} server in {}",
                    match self.layout.flavor {
                        Flavor::MariaDb => "MariaDB",
                        Flavor::MySql => "MySQL",
                    },
                    self.layout.data_dir.display()
                ),
                selectable: true,
                selectable_for_restore: true,
                notify_on_backup_complete: false,
                restore_metadata: false,
                component_flags: 0,
                files: dirs.into_iter().map(|d| file_spec(d, "*")).collect(),
                log_files: vec![],
                dependencies: vec![],
            }],
        }
    }

    fn freeze_timeout_ms(&self) -> u64 {
        self.freeze_timeout_ms
    }

    /// Checks that one volume of the set holds every directory of the server, then opens the
    /// held connection: `SET SESSION lock_wait_timeout`, and on MariaDB `BACKUP STAGE START`.
    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        let mut active = self.active();
        self.release(&mut active);
        if !Self::included(ev) {
            info!(instance = %self.name, set = %ev.snapshot_set_id, "component not included: nothing to do");
            return Ok(());
        }
        // Ask again: the configuration may have changed since Identify.
        let layout = Layout::discover(&self.db, QUERY_TIMEOUT)
            .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
        if layout != self.layout {
            warn!(instance = %self.name, ?layout, "the server's directories changed since the writer started");
        }
        let volume = match Self::capture(&layout, ev)? {
            Capture::Atomic { volume } => volume,
            Capture::Missing { dir, volume } => {
                return Err(error(
                    ErrorCode::WriterErrorInconsistentSnapshot,
                    format!(
                        "server '{}': {} lies on volume {}, which is not in the snapshot set; add it",
                        self.name,
                        dir.display(),
                        volume.display()
                    ),
                ));
            }
            Capture::Spread { volumes } => {
                return Err(error(
                    ErrorCode::WriterErrorInconsistentSnapshot,
                    format!(
                        "server '{}': its directories ({}) lie on several volumes ({}); InnoDB keeps writing under the backup lock, so they must all be on one volume to be captured at one instant",
                        self.name,
                        layout
                            .directories()
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        volumes
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        let start = Instant::now();
        let set_timeout = format!(
            "SET SESSION lock_wait_timeout = {}",
            self.lock_wait_timeout_s
        );
        let mut stmts = vec![set_timeout.as_str()];
        if layout.flavor == Flavor::MariaDb {
            stmts.push("BACKUP STAGE START");
        }
        self.db
            .hold(&stmts, self.lock_timeout())
            .map_err(|e| error(ErrorCode::WriterErrorRetryable, e))?;
        info!(instance = %self.name, set = %ev.snapshot_set_id, volume = %volume.display(), flavor = ?layout.flavor, elapsed = ?start.elapsed(), "prepared: connection held");
        *active = Some(Active {
            set_id: ev.snapshot_set_id.clone(),
            layout,
            volume,
            held: true,
            frozen: false,
        });
        Ok(())
    }

    /// MariaDB: `BACKUP STAGE BLOCK_COMMIT` (the stages in between run on the way); MySQL:
    /// `FLUSH TABLES WITH READ LOCK`. Both wait at most lock_wait_timeout for locks.
    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        let mut active = self.active();
        let Some(a) = active.as_mut() else {
            if Self::included(ev) {
                return Err(error(
                    ErrorCode::WriterErrorRetryable,
                    format!("server '{}': Freeze without PrepareForSnapshot", self.name),
                ));
            }
            return Ok(());
        };
        if a.set_id != ev.snapshot_set_id {
            return Err(error(
                ErrorCode::WriterErrorRetryable,
                format!(
                    "server '{}': Freeze for set {} while set {} is prepared",
                    self.name, ev.snapshot_set_id, a.set_id
                ),
            ));
        }
        let sql = match a.layout.flavor {
            Flavor::MariaDb => "BACKUP STAGE BLOCK_COMMIT",
            Flavor::MySql => "FLUSH TABLES WITH READ LOCK",
        };
        let start = Instant::now();
        match self.db.on_held(sql, self.lock_timeout()) {
            Ok(_) => {
                a.frozen = true;
                info!(instance = %self.name, set = %ev.snapshot_set_id, elapsed = ?start.elapsed(), "frozen: {sql}");
                Ok(())
            }
            Err(e) => {
                // Whatever was taken goes with the connection.
                self.release(&mut active);
                let code = if e.contains("Lock wait timeout") || e.contains("no answer") {
                    ErrorCode::WriterErrorTimeout
                } else {
                    ErrorCode::WriterErrorRetryable
                };
                Err(error(code, format!("server '{}': {e}", self.name)))
            }
        }
    }

    /// `BACKUP STAGE END` / `UNLOCK TABLES` on the held connection, then closes it. That the
    /// statement succeeds on the same session proves the lock was held throughout.
    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        let mut active = self.active();
        let Some(a) = active.take_if(|a| a.set_id == ev.snapshot_set_id) else {
            return Ok(());
        };
        let start = Instant::now();
        self.db
            .release(&[release_sql(&a.layout.flavor)], QUERY_TIMEOUT)
            .map_err(|e| {
                error(
                    ErrorCode::WriterErrorRetryable,
                    format!(
                        "server '{}': the backup lock was lost before Thaw: {e}",
                        self.name
                    ),
                )
            })?;
        info!(instance = %self.name, set = %ev.snapshot_set_id, elapsed = ?start.elapsed(), "thawed");
        *active = Some(Active {
            held: false,
            frozen: false,
            ..a
        });
        Ok(())
    }

    /// Records the server's directories and version in the component's backup metadata.
    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        let mut active = self.active();
        let Some(a) = active.take_if(|a| a.set_id == ev.snapshot_set_id) else {
            return Ok(Vec::new());
        };
        let meta = serde_json::json!({
            "flavor": match a.layout.flavor { Flavor::MariaDb => "mariadb", Flavor::MySql => "mysql" },
            "method": match a.layout.flavor {
                Flavor::MariaDb => "BACKUP STAGE BLOCK_COMMIT",
                Flavor::MySql => "FLUSH TABLES WITH READ LOCK",
            },
            "version": a.layout.version,
            "dataDirectory": a.layout.data_dir.display().to_string(),
            "otherDirectories": a.layout.others.iter().map(|(what, p)| serde_json::json!({"what": what, "path": p.display().to_string()})).collect::<Vec<_>>(),
            "volume": a.volume.display().to_string(),
            "restore": "copy the directories back, delete #sql* files, remove the pid file and start the server: InnoDB runs crash recovery",
        });
        Ok(vec![ComponentUpdate {
            logical_path: String::new(),
            name: COMPONENT.to_owned(),
            backup_metadata: Some(meta.to_string()),
            backup_stamp: None,
            failure_message: None,
        }])
    }

    /// Releases the server and forgets the set.
    fn abort(&self, _ev: Option<&EventParams>) {
        let mut active = self.active();
        self.release(&mut active);
    }

    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let mut active = self.active();
        if active
            .as_ref()
            .is_some_and(|a| a.set_id == snapshot_set_id.to_string())
        {
            self.release(&mut active);
        }
    }
}

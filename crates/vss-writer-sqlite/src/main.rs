//! `vss-writer-sqlite`: the SQLite VSS writer.
//!
//! One process serves every configured instance (`[[sqlite]]` entries of the shared writers
//! configuration, or one instance from `--database`/`--name`), each on its own socket
//! `WRITERS_DIR/NAME.sock`, all in one tokio runtime.
//!
//! Per database of an instance:
//!
//! * **Identify**: one selectable FILE_GROUP component, logical path "", named after the
//!   database's file name (its full path when two databases of the instance share a file
//!   name). Its files are one FileSpec per file, all non-recursive, in the database's
//!   directory: the database itself, `NAME-wal` and `NAME-journal` (exact names, no wildcard, so
//!   `NAME.bak` or `NAME2` are never swept in). `NAME-shm` (the WAL index, shared memory that
//!   SQLite rebuilds from the WAL on the first open) is listed in the writer's excluded files.
//! * **PrepareForSnapshot**: `PRAGMA wal_checkpoint(PASSIVE)`, so the WAL the snapshot holds is
//!   short; SQLITE_BUSY (or a partial checkpoint) is not a failure. A no-op for a database in
//!   rollback-journal mode.
//! * **Freeze**: `BEGIN IMMEDIATE` on the writer's connection, with `busy_timeout` below the
//!   freeze timeout: the database's write lock (RESERVED in rollback mode, the WAL write lock in
//!   WAL mode) is held, so no other process can commit until Thaw. The database file, its WAL or
//!   journal are then a committed state. Busy → `VSS_E_WRITERERROR_RETRYABLE`, any other error →
//!   `VSS_E_WRITERERROR_NONRETRYABLE` with SQLite's message.
//! * **Thaw**: `COMMIT` (nothing was written), `ROLLBACK` if that fails. **Abort**: the same,
//!   if the lock is held.
//!
//! The writer keeps exactly one SQLite connection per database for the life of the process,
//! opened at first use (PrepareForSnapshot or Freeze, never Identify) and never closed; nothing
//! else in the process opens the database files, because close() of any descriptor of a file
//! drops every POSIX lock the process holds on it, the connection's included.

mod config;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clap::Parser;
use rusqlite::{Connection, OpenFlags};
use tracing::{error, info, warn};
use vss_writer::{
    ApplicationLevel, ComponentType, ErrorCode, EventParams, FileSpec, RestoreMethod,
    RuntimeConfig, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer, WriterMetadata,
    WriterRestore, WriterRuntime,
};

use crate::config::{Instance, Settings};

/// The writer's name, and the seed of its class id.
const WRITER_NAME: &str = "vss-writer-sqlite";

/// The writer class id: uuid v5 (DNS namespace) of "vss-writer-sqlite".
fn writer_class_id() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, WRITER_NAME.as_bytes())
}

#[derive(Debug, Parser)]
#[command(
    name = "vss-writer-sqlite",
    version,
    about = "The SQLite VSS writer: holds each database's write lock from Freeze to Thaw.",
    long_about = "The SQLite VSS writer.\n\n\
        Serves every [[sqlite]] instance of the configuration file (or one instance given by \
        --database and --name) as vss.Writer on WRITERS_DIR/NAME.sock.\n\n\
        PrepareForSnapshot: PRAGMA wal_checkpoint(PASSIVE) (busy is not a failure).\n\
        Freeze: BEGIN IMMEDIATE (the database's write lock; busy_timeout below the freeze timeout).\n\
        Thaw / Abort: COMMIT (ROLLBACK if that fails): writers resume.\n\n\
        Configuration (TOML; only [[sqlite]], writers_dir and coordinator_uid are read):\n\
        \n  writers_dir = \"/run/vss/writers\"\n  coordinator_uid = 0        # optional\n\
        \n  [[sqlite]]\n  name = \"app\"               # socket app.sock\n  databases = [\"/srv/app/app.db\"]\n  freeze_timeout_ms = 60000  # optional\n  busy_timeout_ms = 10000    # optional, default min(freeze/2, 10000)\n\n\
        Stop it with SIGINT or SIGTERM."
)]
struct Args {
    /// The configuration file (ignored when --database is given).
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,

    /// Serve one instance protecting this database (repeatable) instead of the configuration
    /// file's instances.
    #[arg(long, value_name = "PATH")]
    database: Vec<PathBuf>,

    /// The instance name with --database; the socket is NAME.sock.
    #[arg(long, value_name = "NAME", default_value = "sqlite")]
    name: String,

    /// Where to put the sockets (overrides the file's writers_dir).
    #[arg(long, value_name = "DIR")]
    writers_dir: Option<PathBuf>,

    /// Also serve this uid (vssd's, when it does not run as root); overrides the file's.
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,

    /// The freeze timeout with --database, in milliseconds.
    #[arg(long, value_name = "MS")]
    freeze_timeout_ms: Option<u64>,

    /// The busy timeout of Freeze's BEGIN IMMEDIATE with --database, in milliseconds.
    #[arg(long, value_name = "MS")]
    busy_timeout_ms: Option<u64>,
}

/// One database of an instance: its path and the connection, opened at first use.
#[derive(Debug)]
struct Database {
    path: PathBuf,
    component: String,
    state: Mutex<DbState>,
}

#[derive(Debug, Default)]
struct DbState {
    conn: Option<Connection>,
    /// `BEGIN IMMEDIATE` succeeded and was not yet ended.
    locked: bool,
}

impl Database {
    fn state(&self) -> MutexGuard<'_, DbState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One writer instance: a set of databases behind one socket.
#[derive(Debug)]
struct SqliteWriter {
    name: String,
    instance_id: Uuid,
    freeze_timeout_ms: u64,
    busy_timeout: Duration,
    databases: Vec<Database>,
}

fn nonretryable(message: String) -> VssError {
    VssError::new(ErrorCode::WriterErrorNonRetryable, message)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A SQLite error as a writer failure: busy/locked is retryable, anything else is not.
fn sqlite_failure(what: &str, path: &Path, e: &rusqlite::Error) -> VssError {
    let code = if is_busy(e) {
        ErrorCode::WriterErrorRetryable
    } else {
        ErrorCode::WriterErrorNonRetryable
    };
    VssError::new(code, format!("{what} on {}: {e}", path.display()))
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

impl SqliteWriter {
    fn new(inst: Instance) -> SqliteWriter {
        let names: Vec<String> = inst
            .databases
            .iter()
            .map(|p| {
                p.file_name()
                    .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
            })
            .collect();
        let databases = inst
            .databases
            .iter()
            .zip(&names)
            .map(|(path, name)| {
                let unique = names.iter().filter(|n| *n == name).count() == 1;
                Database {
                    path: path.clone(),
                    component: if unique {
                        name.clone()
                    } else {
                        path.display().to_string()
                    },
                    state: Mutex::new(DbState::default()),
                }
            })
            .collect();
        SqliteWriter {
            name: inst.name,
            instance_id: Uuid::new_v4(),
            freeze_timeout_ms: inst.freeze_timeout_ms,
            busy_timeout: Duration::from_millis(inst.busy_timeout_ms),
            databases,
        }
    }

    /// The database's connection, opened now if this is its first use. The database must exist
    /// (the writer never creates one).
    fn connection<'a>(
        &self,
        db: &Database,
        state: &'a mut DbState,
    ) -> Result<&'a mut Connection, VssError> {
        if state.conn.is_none() {
            let conn = Connection::open_with_flags(
                &db.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sqlite_failure("cannot open the database", &db.path, &e))?;
            conn.busy_timeout(self.busy_timeout)
                .map_err(|e| sqlite_failure("cannot set busy_timeout", &db.path, &e))?;
            // Reading the header now makes a file that is not a database fail here, clearly.
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .map_err(|e| sqlite_failure("cannot read the journal mode", &db.path, &e))?;
            info!(instance = %self.name, db = %db.path.display(), journal_mode = %mode, "database opened");
            state.conn = Some(conn);
        }
        Ok(state.conn.as_mut().expect("just opened"))
    }

    /// Ends the write transaction of `db` if one is held: COMMIT, or ROLLBACK if COMMIT fails.
    fn release(&self, db: &Database) -> Result<bool, VssError> {
        let mut state = db.state();
        if !state.locked {
            return Ok(false);
        }
        state.locked = false;
        let Some(conn) = state.conn.as_mut() else {
            return Ok(false);
        };
        match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(true),
            Err(commit) => {
                warn!(db = %db.path.display(), error = %commit, "COMMIT failed; rolling back");
                match conn.execute_batch("ROLLBACK") {
                    Ok(()) => Ok(true),
                    Err(rollback) if conn.is_autocommit() => {
                        // The transaction is gone anyway: the lock is released.
                        warn!(db = %db.path.display(), error = %rollback, "ROLLBACK failed, but no transaction is open");
                        Ok(true)
                    }
                    Err(rollback) => Err(nonretryable(format!(
                        "cannot release the write lock of {}: COMMIT: {commit}; ROLLBACK: {rollback}",
                        db.path.display()
                    ))),
                }
            }
        }
    }

    /// Releases every held lock; the first failure is returned after trying all.
    fn release_all(&self) -> Result<usize, VssError> {
        let mut released = 0;
        let mut first_err = None;
        for db in &self.databases {
            match self.release(db) {
                Ok(true) => released += 1,
                Ok(false) => {}
                Err(e) => {
                    error!(instance = %self.name, error = %e.message, "release failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    fn lock(&self, db: &Database) -> Result<(), VssError> {
        let mut state = db.state();
        if state.locked {
            return Ok(());
        }
        let conn = self.connection(db, &mut state)?;
        if !conn.is_autocommit() {
            // A transaction left over (should not happen): end it before locking again.
            let _ = conn.execute_batch("ROLLBACK");
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
            sqlite_failure(
                &format!(
                    "cannot take the write lock (BEGIN IMMEDIATE, busy_timeout {} ms)",
                    self.busy_timeout.as_millis()
                ),
                &db.path,
                &e,
            )
        })?;
        state.locked = true;
        Ok(())
    }
}

impl Writer for SqliteWriter {
    fn metadata(&self) -> WriterMetadata {
        let mut components = Vec::new();
        let mut exclude_files = Vec::new();
        for db in &self.databases {
            let dir = db
                .path
                .parent()
                .map_or_else(|| "/".to_owned(), |d| d.display().to_string());
            let file = db
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let spec = |filespec: String| FileSpec {
                path: dir.clone(),
                filespec,
                recursive: false,
                alternate_path: None,
                backup_type_mask: 0xF0F,
            };
            components.push(WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: db.component.clone(),
                caption: format!("SQLite database {}", db.path.display()),
                selectable: true,
                selectable_for_restore: true,
                notify_on_backup_complete: false,
                restore_metadata: false,
                component_flags: 0,
                files: vec![
                    spec(file.clone()),
                    spec(format!("{file}-wal")),
                    spec(format!("{file}-journal")),
                ],
                log_files: vec![],
                dependencies: vec![],
            });
            exclude_files.push(spec(format!("{file}-shm")));
        }
        WriterMetadata {
            writer_id: writer_class_id(),
            instance_id: self.instance_id,
            writer_name: WRITER_NAME.to_owned(),
            instance_name: self.name.clone(),
            usage_type: UsageType::UserData,
            source_type: SourceType::TransactedDb,
            application_level: ApplicationLevel::BackEnd,
            freeze_timeout_ms: self.freeze_timeout_ms,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            writer_restore: WriterRestore::Never,
            restore_service: None,
            backup_schema: 0,
            version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            exclude_files,
            components,
        }
    }

    fn freeze_timeout_ms(&self) -> u64 {
        self.freeze_timeout_ms
    }

    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        for db in &self.databases {
            let mut state = db.state();
            let conn = self.connection(db, &mut state)?;
            let started = Instant::now();
            let row = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
            match row {
                Ok((busy, log, done)) => info!(
                    instance = %self.name, set = %ev.snapshot_set_id, db = %db.path.display(),
                    busy, wal_frames = log, checkpointed = done, elapsed = ?started.elapsed(),
                    "passive checkpoint"
                ),
                Err(e) if is_busy(&e) => info!(
                    instance = %self.name, db = %db.path.display(), error = %e,
                    "passive checkpoint: busy (not a failure)"
                ),
                Err(e) => {
                    return Err(sqlite_failure(
                        "PRAGMA wal_checkpoint(PASSIVE)",
                        &db.path,
                        &e,
                    ));
                }
            }
        }
        Ok(())
    }

    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        let started = Instant::now();
        for db in &self.databases {
            if let Err(e) = self.lock(db) {
                error!(instance = %self.name, set = %ev.snapshot_set_id, error = %e.message, "freeze failed");
                if let Err(r) = self.release_all() {
                    error!(instance = %self.name, error = %r.message, "releasing after the failed freeze");
                }
                return Err(e);
            }
        }
        info!(
            instance = %self.name, set = %ev.snapshot_set_id, databases = self.databases.len(),
            elapsed = ?started.elapsed(), unix_ns = %unix_ns(),
            "frozen: write locks held"
        );
        Ok(())
    }

    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        let released = self.release_all()?;
        info!(
            instance = %self.name, set = %ev.snapshot_set_id, released, unix_ns = %unix_ns(),
            "thawed: write locks released"
        );
        Ok(())
    }

    fn abort(&self, ev: Option<&EventParams>) {
        let set = ev
            .map(|e| e.snapshot_set_id.to_string())
            .unwrap_or_default();
        match self.release_all() {
            Ok(released) => {
                info!(instance = %self.name, set = %set, released, unix_ns = %unix_ns(), "aborted: write locks released");
            }
            Err(e) => error!(instance = %self.name, set = %set, error = %e.message, "abort"),
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vss-writer-sqlite: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let settings = if args.database.is_empty() {
        let mut s = Settings::load(&args.config)?;
        if let Some(d) = args.writers_dir {
            s.writers_dir = d;
        }
        if args.coordinator_uid.is_some() {
            s.coordinator_uid = args.coordinator_uid;
        }
        s
    } else {
        Settings::single(
            args.name,
            args.database,
            args.freeze_timeout_ms,
            args.busy_timeout_ms,
            args.writers_dir,
            args.coordinator_uid,
        )?
    };
    anyhow::ensure!(
        !settings.instances.is_empty(),
        "no [[sqlite]] instance in {} (and no --database)",
        args.config.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = rt.block_on(serve_all(settings));
    // A hook may still be blocked (it cannot be cancelled); do not wait for it forever.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn serve_all(settings: Settings) -> anyhow::Result<()> {
    let mut bound = Vec::new();
    for inst in settings.instances {
        let config = RuntimeConfig {
            writers_dir: settings.writers_dir.clone(),
            socket_name: format!("{}.sock", inst.name),
            coordinator_uid: settings.coordinator_uid,
        };
        let runtime = WriterRuntime::bind(config)
            .await
            .with_context(|| format!("instance {}", inst.name))?;
        bound.push((runtime, Arc::new(SqliteWriter::new(inst))));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for (runtime, writer) in bound {
        let path = runtime.socket_path().display().to_string();
        sockets.push(path.clone());
        info!(
            instance = %writer.name,
            socket = %path,
            databases = ?writer.databases.iter().map(|d| d.path.display().to_string()).collect::<Vec<_>>(),
            "serving"
        );
        let mut rx = rx.clone();
        tasks.spawn(async move {
            let name = writer.name.clone();
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            runtime
                .run(writer, shutdown)
                .await
                .with_context(|| format!("instance {name}"))
        });
    }
    // Every instance listens now: tell whoever started us.
    println!("ready {}", sockets.join(" "));
    let mut failure = None;
    tokio::select! {
        () = vss_writer::shutdown_signal() => {}
        Some(done) = tasks.join_next() => {
            failure = Some(done.map_err(anyhow::Error::from).and_then(|r| r).err()
                .unwrap_or_else(|| anyhow::anyhow!("an instance stopped serving")));
        }
    }
    let _ = tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            error!(error = %format!("{e:#}"), "instance");
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

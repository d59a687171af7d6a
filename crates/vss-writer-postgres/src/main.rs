//! `vss-writer-postgres`: the PostgreSQL VSS writer (see the crate description and `--help`).

mod config;
mod layout;
mod pg;
mod restore;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};
use vss_writer::DEFAULT_FREEZE_TIMEOUT_MS;

use crate::config::{DEFAULT_CONFIG, FileConfig, Instance};
use crate::layout::Layout;
use crate::pg::Db;
use crate::writer::PostgresWriter;

#[derive(Debug, Parser)]
#[command(
    name = "vss-writer-postgres",
    version,
    about = "The PostgreSQL VSS writer: atomic mode (one volume) or archive mode (backup API).",
    long_about = "The PostgreSQL VSS writer.\n\n\
        Serves every [[postgres]] instance of the configuration file (or one instance given by \
        --name and --connection) as vss.Writer on WRITERS_DIR/NAME.sock.\n\n\
        Identify: one FILE_GROUP component, \"cluster\", naming the data directory, every \
        tablespace and the WAL directory (pg_wal, its symlink followed; only when it lies on the \
        data directory's volume), as the server reports them.\n\
        PrepareForSnapshot: a directory on a volume outside the set fails with \
        VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT. Everything (WAL included) on ONE volume of the set: \
        atomic mode, CHECKPOINT; the snapshot is crash consistent and a restore is crash recovery. \
        Otherwise archive mode (needs archive_mode = on, else PrepareForBackup fails with \
        VSS_E_WRITERERROR_NONRETRYABLE): pg_backup_start(label, fast => true) on a connection held \
        until PostSnapshot, which runs pg_backup_stop(wait_for_archive => true) (Abort ends the \
        backup without waiting).\n\
        Freeze / Thaw: nothing to do.\n\
        PostSnapshot: the component's backup metadata (JSON) records the mode and directories, and \
        in archive mode the label file, tablespace map and start/stop positions that a restore \
        needs.\n\n\
        Restore (writerRestore ALWAYS; the files go where the alternate location mappings say, \
        else back where they were):\n\
        PreRestore: fails (VSS_E_WRITERERROR_NONRETRYABLE) when a running server uses a directory \
        the restore would overwrite; restoring in place, the writer closes its connection.\n\
        PostRestore (files reported VSS_RS_ALL): removes the snapshot's postmaster.pid. Atomic \
        backups need nothing more (crash recovery). Archive backups get backup_label and \
        tablespace_map from the backup metadata, recovery.signal, an empty pg_wal, and \
        restore_command, recovery_target = 'immediate' and recovery_target_action = 'promote' in \
        postgresql.auto.conf: the server recovers to the backup's consistent point. A copy restored \
        to another place gets archive_mode = off, and its links to the WAL directory and \
        tablespaces must follow mappings. The server is not started.\n\n\
        Configuration (TOML; only [[postgres]], writers_dir and coordinator_uid are read):\n\
        \n  writers_dir = \"/run/vss/writers\"\n  coordinator_uid = 0        # optional\n\
        \n  [[postgres]]\n  name = \"main\"              # socket main.sock\n  \
        connection = \"host=/var/run/postgresql port=5432 user=postgres\"\n  \
        freeze_timeout_ms = 60000  # optional\n  \
        restore_command = \"cp /var/lib/postgresql/archive/%f %p\"  # archive-mode restores\n\n\
        Stop it with SIGINT or SIGTERM."
)]
struct Args {
    /// The configuration file (ignored when --connection is given).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    /// One instance without a configuration file: its name (the socket is NAME.sock).
    #[arg(long, value_name = "NAME", requires = "connection")]
    name: Option<String>,

    /// One instance without a configuration file: its libpq-style connection string.
    #[arg(long, value_name = "CONNINFO")]
    connection: Option<String>,

    /// Where to put the sockets (overrides the file's writers_dir; default /run/vss/writers).
    #[arg(long, value_name = "DIR")]
    writers_dir: Option<PathBuf>,

    /// One instance without a configuration file: the restore_command PostRestore writes for
    /// archive-mode backups (e.g. 'cp /archive/%f %p').
    #[arg(long, value_name = "COMMAND", requires = "connection")]
    restore_command: Option<String>,

    /// Also serve this uid (vssd's, when it does not run as root).
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,

    /// How long to wait at start for each server to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    connect_wait: u64,
}

/// Connects and discovers `inst`'s layout, retrying until `wait` has passed.
fn start_instance(inst: &Instance, wait: Duration) -> Result<PostgresWriter, String> {
    let db = Db::start(&inst.name, &inst.connection)?;
    let deadline = Instant::now() + wait;
    let layout = loop {
        match Layout::discover(&db, Duration::from_secs(30)) {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                warn!(instance = %inst.name, error = %e, "the server does not answer yet; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    info!(instance = %inst.name, ?layout, "cluster found");
    let freeze = match inst.freeze_timeout_ms {
        None | Some(0) => DEFAULT_FREEZE_TIMEOUT_MS,
        Some(ms) => ms,
    };
    Ok(PostgresWriter::new(
        inst.name.clone(),
        db,
        layout,
        freeze,
        inst.restore_command.clone(),
    ))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut file = if let Some(connection) = &args.connection {
        FileConfig {
            postgres: vec![Instance {
                name: args.name.clone().unwrap_or_else(|| "postgres".to_owned()),
                connection: connection.clone(),
                freeze_timeout_ms: None,
                restore_command: args.restore_command.clone(),
            }],
            ..Default::default()
        }
    } else {
        match FileConfig::load(&args.config) {
            Ok(f) => f,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if file.postgres.is_empty() {
        error!("no [[postgres]] instance is configured");
        return ExitCode::FAILURE;
    }
    let writers_dir = args
        .writers_dir
        .or(file.writers_dir.take())
        .unwrap_or_else(|| PathBuf::from(vss_writer::runtime::DEFAULT_WRITERS_DIR));
    let coordinator_uid = args.coordinator_uid.or(file.coordinator_uid);

    let mut writers = Vec::new();
    for inst in &file.postgres {
        match start_instance(inst, Duration::from_secs(args.connect_wait)) {
            Ok(w) => writers.push((inst.name.clone(), Arc::new(w))),
            Err(e) => {
                error!(instance = %inst.name, "{e}");
                return ExitCode::FAILURE;
            }
        }
    }

    match vss_writer::run_instances_blocking(writers, writers_dir, coordinator_uid) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

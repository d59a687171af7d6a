//! `vss-writer-mariadb`: the MariaDB / MySQL VSS writer (see the crate description and
//! `--help`).

mod config;
mod db;
mod layout;
mod writer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tracing::{error, info, warn};

use crate::config::{DEFAULT_CONFIG, FileConfig, Instance};
use crate::db::{Db, Target};
use crate::layout::Layout;
use crate::writer::MariaDbWriter;

#[derive(Debug, Parser)]
#[command(
    name = "vss-writer-mariadb",
    version,
    about = "The MariaDB / MySQL VSS writer: BACKUP STAGE (or FLUSH TABLES WITH READ LOCK) on one held connection.",
    long_about = "The MariaDB / MySQL VSS writer.\n\n\
        Serves every [[mariadb]] instance of the configuration file (or one instance given by \
        --name and --socket-path or --url) as vss.Writer on WRITERS_DIR/NAME.sock.\n\n\
        Identify: one FILE_GROUP component, \"server\", naming the data directory (@@datadir) \
        and, when they lie elsewhere, the binary log, InnoDB redo and undo and Aria log \
        directories, as the server reports them.\n\
        PrepareForSnapshot: InnoDB keeps writing under the backup lock, so every directory must \
        lie on ONE volume of the set (else VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT). Opens a \
        connection held until Thaw or Abort, sets its lock_wait_timeout (below the freeze \
        timeout) and, on MariaDB, runs BACKUP STAGE START.\n\
        Freeze: BACKUP STAGE BLOCK_COMMIT (MariaDB) or FLUSH TABLES WITH READ LOCK (MySQL).\n\
        Thaw / Abort: BACKUP STAGE END or UNLOCK TABLES, and the connection is closed.\n\
        A restore copies the directories back, deletes #sql* files and the pid file, and starts \
        the server (InnoDB crash recovery).\n\n\
        Configuration (TOML; only [[mariadb]], writers_dir and coordinator_uid are read):\n\
        \n  writers_dir = \"/run/vss/writers\"\n  coordinator_uid = 0        # optional\n\
        \n  [[mariadb]]\n  name = \"main\"              # socket main.sock\n  \
        socket = \"/run/mysqld/mysqld.sock\"   # as root (unix_socket auth); or\n  \
        # url = \"mysql://backup:secret@127.0.0.1:3306\"\n  \
        freeze_timeout_ms = 60000  # optional\n  \
        lock_wait_timeout_s = 30   # optional, default min(freeze/2, 30)\n\n\
        Stop it with SIGINT or SIGTERM."
)]
struct Args {
    /// The configuration file (ignored when --socket-path or --url is given).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    /// One instance without a configuration file: its name (the socket is NAME.sock).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// One instance without a configuration file: the server's Unix socket.
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    socket_path: Option<PathBuf>,

    /// One instance without a configuration file: a mysql:// connection URL.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// The user for --socket-path (default root).
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// The freeze timeout of the one instance, in milliseconds.
    #[arg(long, value_name = "MS")]
    freeze_timeout_ms: Option<u64>,

    /// Where to put the sockets (overrides the file's writers_dir; default /run/vss/writers).
    #[arg(long, value_name = "DIR")]
    writers_dir: Option<PathBuf>,

    /// Also serve this uid (vssd's, when it does not run as root).
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,

    /// How long to wait at start for each server to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    connect_wait: u64,
}

/// Connects and discovers `inst`'s layout, retrying until `wait` has passed.
fn start_instance(inst: &Instance, wait: Duration) -> Result<MariaDbWriter, String> {
    let target = match (&inst.socket, &inst.url) {
        (Some(path), _) => Target::Socket {
            path: path.clone(),
            user: inst.user.clone().unwrap_or_else(|| "root".to_owned()),
        },
        (None, Some(url)) => Target::Url(url.clone()),
        (None, None) => return Err("neither socket nor url is configured".to_owned()),
    };
    let db = Db::start(&inst.name, target)?;
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
    info!(instance = %inst.name, ?layout, lock_wait_timeout_s = inst.lock_wait_timeout_s(), "server found");
    Ok(MariaDbWriter::new(
        inst.name.clone(),
        db,
        layout,
        inst.freeze_timeout_ms(),
        inst.lock_wait_timeout_s(),
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

    let mut file = if args.socket_path.is_some() || args.url.is_some() {
        FileConfig {
            mariadb: vec![Instance {
                name: args.name.clone().unwrap_or_else(|| "mariadb".to_owned()),
                socket: args.socket_path.clone(),
                url: args.url.clone(),
                user: args.user.clone(),
                freeze_timeout_ms: args.freeze_timeout_ms,
                lock_wait_timeout_s: None,
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
    if let Some(name) = &args.name {
        file.mariadb.retain(|i| &i.name == name);
    }
    if file.mariadb.is_empty() {
        error!("no [[mariadb]] instance is configured");
        return ExitCode::FAILURE;
    }
    let writers_dir = args
        .writers_dir
        .or(file.writers_dir.take())
        .unwrap_or_else(|| PathBuf::from(vss_writer::runtime::DEFAULT_WRITERS_DIR));
    let coordinator_uid = args.coordinator_uid.or(file.coordinator_uid);

    let mut writers = Vec::new();
    for inst in &file.mariadb {
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

//! `vssd`: the VSS coordinator daemon. See `vssd --help` and docs/protocol.md.

use std::path::PathBuf;

use clap::Parser;
use vss_daemon::{Config, Deadlines};

/// The VSS coordinator for Linux: serves the vss.Requester varlink interface, drives writers
/// (vss.Writer sockets in the writers directory) and snapshot providers, and keeps the snapshot
/// catalog.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Requester socket (varlink vss.Requester).
    #[arg(long, default_value = "/run/vss/vssd.sock")]
    socket: PathBuf,
    /// Directory where writers put their sockets.
    #[arg(long, default_value = "/run/vss/writers")]
    writers_dir: PathBuf,
    /// Persistent state (the snapshot catalog). Must not be on a volume you snapshot with a
    /// freezing provider.
    #[arg(long, default_value = "/var/lib/vss")]
    state_dir: PathBuf,
    /// Runtime directory for private mounts (btrfs top-level subvolumes).
    #[arg(long, default_value = "/run/vss")]
    run_dir: PathBuf,
    /// Host-wide snapshot-set lock file, shared with `vss` in embedded mode.
    #[arg(long, default_value = "/run/vss/snapshot-set.lock")]
    lock_file: PathBuf,
    /// Deadline for one writer event, as EVENT=MILLISECONDS (repeatable), e.g. Freeze=5000.
    /// Defaults: Identify 5000, PrepareForBackup 60000, PrepareForSnapshot 60000, Freeze 20000,
    /// Thaw 20000, PostSnapshot 60000, Abort 20000, BackupComplete 60000, BackupShutdown 20000.
    #[arg(long = "timeout", value_name = "EVENT=MS")]
    timeouts: Vec<String>,
    /// Numeric group allowed to use the requester socket besides root (socket mode 0660).
    #[arg(long)]
    socket_group: Option<u32>,
    /// The longest a filesystem stays frozen for a commit, in ms; the freeze guard thaws it then.
    #[arg(long, default_value_t = 10_000)]
    commit_window_ms: u64,
    /// The freeze guard program [default: vss-freeze-guard next to vssd].
    #[arg(long)]
    freeze_guard: Option<PathBuf>,
    /// Enables the exec provider with this command (see docs/providers.md: it is run with
    /// VSS_ACTION=supported|create|delete|expose|unexpose|break and must not touch the volume).
    #[arg(long)]
    exec_command: Option<PathBuf>,
    /// How long the exec provider's command may run, in ms.
    #[arg(long, default_value_t = 10_000)]
    exec_timeout_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSSD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(vss_daemon::logbuf::HeldStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut deadlines = Deadlines::default();
    for t in &args.timeouts {
        deadlines
            .set_from_spec(t)
            .map_err(|e| anyhow::anyhow!("--timeout {t}: {e}"))?;
    }
    let config = Config {
        socket: args.socket,
        writers_dir: args.writers_dir,
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        lock_file: args.lock_file,
        deadlines,
        socket_group: args.socket_group,
        commit_window: std::time::Duration::from_millis(args.commit_window_ms),
        guard_binary: args.freeze_guard,
        exec_command: args.exec_command,
        exec_timeout: std::time::Duration::from_millis(args.exec_timeout_ms),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        vss_daemon::run(config, shutdown).await
    })
}

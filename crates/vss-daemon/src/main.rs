//! `vssd`: the VSS coordinator daemon. See `vssd --help`, docs/vssd.md and docs/protocol.md.

use std::path::PathBuf;

use clap::Parser;
use vss_daemon::Config;
use vss_daemon::config_file::{DEFAULT_PATH, FileConfig, GroupSpec, resolve_group};

/// The VSS coordinator for Linux: serves the vss.Requester and vss.Admin varlink interfaces,
/// drives writers (vss.Writer sockets in the writers directory) and snapshot providers (btrfs,
/// image, reflink, exec), holds every filesystem freeze under a guard process, and keeps the
/// snapshot catalog.
///
/// Settings come from, in increasing precedence: built-in defaults, the configuration file
/// (/etc/vss/vssd.toml), environment variables, command-line options. Under systemd, vssd
/// reports readiness (Type=notify) and accepts its socket from socket activation.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Logs go to stderr (VSSD_LOG=debug for more; held in memory while filesystems are frozen). Exit status: 0 after SIGTERM/SIGINT, 1 on a configuration or startup error."
)]
struct Args {
    /// Configuration file [default: /etc/vss/vssd.toml, if it exists].
    #[arg(long, env = "VSSD_CONFIG")]
    config: Option<PathBuf>,
    /// Requester socket [default: /run/vss/vssd.sock].
    #[arg(long, env = "VSS_SOCKET")]
    socket: Option<PathBuf>,
    /// Directory where writers put their sockets [default: /run/vss/writers].
    #[arg(long, env = "VSS_WRITERS_DIR")]
    writers_dir: Option<PathBuf>,
    /// Persistent state (the snapshot catalog) [default: /var/lib/vss]. Never on a filesystem
    /// vssd may freeze.
    #[arg(long, env = "VSS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Runtime directory: private mounts, the freeze journal [default: /run/vss].
    #[arg(long, env = "VSS_RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Host-wide snapshot-set lock file, shared with `vss` running without vssd
    /// [default: /run/vss/snapshot-set.lock].
    #[arg(long, env = "VSS_LOCK_FILE")]
    lock_file: Option<PathBuf>,
    /// Deadline for one writer event, as EVENT=MILLISECONDS (repeatable), e.g. Freeze=5000.
    /// Defaults: Identify 5000, PrepareForBackup 60000, PrepareForSnapshot 60000, Freeze 20000,
    /// Thaw 20000, PostSnapshot 60000, Abort 20000, BackupComplete 60000, BackupShutdown 20000.
    #[arg(long = "timeout", value_name = "EVENT=MS")]
    timeouts: Vec<String>,
    /// Group (name or number) allowed to use the requester socket besides root (socket mode
    /// 0660 then).
    #[arg(long)]
    socket_group: Option<String>,
    /// The longest a filesystem stays frozen for a commit, in ms; the freeze guard thaws it then
    /// [default: 10000].
    #[arg(long)]
    commit_window_ms: Option<u64>,
    /// The freeze guard program [default: vss-freeze-guard next to vssd].
    #[arg(long)]
    freeze_guard: Option<PathBuf>,
    /// Enables the exec provider with this command (docs/providers.md: it is run with
    /// VSS_ACTION=supported|create|delete|expose|unexpose|break and must not touch the volume).
    #[arg(long)]
    exec_command: Option<PathBuf>,
    /// How long the exec provider's command may run, in ms [default: 10000].
    #[arg(long)]
    exec_timeout_ms: Option<u64>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("vssd: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSSD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(vss_daemon::logbuf::HeldStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = effective_config(args.clone())?;
    if args.print_config {
        println!("{config:#?}");
        return Ok(());
    }
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

/// Defaults, then the file, then environment and command line (clap merged those two).
fn effective_config(args: Args) -> anyhow::Result<Config> {
    let mut config = Config::system_default();
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    FileConfig::load(&path, explicit)
        .and_then(|f| f.apply(&mut config))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let set = |dst: &mut PathBuf, v: Option<PathBuf>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut config.socket, args.socket);
    set(&mut config.writers_dir, args.writers_dir);
    set(&mut config.state_dir, args.state_dir);
    set(&mut config.run_dir, args.run_dir);
    set(&mut config.lock_file, args.lock_file);
    for t in &args.timeouts {
        config
            .deadlines
            .set_from_spec(t)
            .map_err(|e| anyhow::anyhow!("--timeout {t}: {e}"))?;
    }
    if let Some(g) = args.socket_group {
        let spec = g.parse().map(GroupSpec::Id).unwrap_or(GroupSpec::Name(g));
        config.socket_group =
            Some(resolve_group(&spec).map_err(|e| anyhow::anyhow!("--socket-group: {e}"))?);
    }
    if let Some(ms) = args.commit_window_ms {
        config.commit_window = std::time::Duration::from_millis(ms);
    }
    if args.freeze_guard.is_some() {
        config.guard_binary = args.freeze_guard;
    }
    if args.exec_command.is_some() {
        config.exec_command = args.exec_command;
    }
    if let Some(ms) = args.exec_timeout_ms {
        config.exec_timeout = std::time::Duration::from_millis(ms);
    }
    if config.commit_window.is_zero() {
        anyhow::bail!("the commit window must be longer than 0 ms");
    }
    Ok(config)
}

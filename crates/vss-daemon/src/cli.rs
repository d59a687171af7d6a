//! vssd's command line, in the library so that `vss man` can render vssd's man page from the
//! same definition.

use std::path::PathBuf;

use clap::Parser;

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
pub struct Args {
    /// Configuration file [default: /etc/vss/vssd.toml, if it exists].
    #[arg(long, env = "VSSD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Requester socket [default: /run/vss/vssd.sock].
    #[arg(long, env = "VSS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Directory where writers put their sockets [default: /run/vss/writers].
    #[arg(long, env = "VSS_WRITERS_DIR")]
    pub writers_dir: Option<PathBuf>,
    /// Persistent state (the snapshot catalog) [default: /var/lib/vss]. Never on a filesystem
    /// vssd may freeze.
    #[arg(long, env = "VSS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Runtime directory: private mounts, the freeze journal [default: /run/vss].
    #[arg(long, env = "VSS_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Host-wide snapshot-set lock file, shared with `vss` running without vssd
    /// [default: /run/vss/snapshot-set.lock].
    #[arg(long, env = "VSS_LOCK_FILE")]
    pub lock_file: Option<PathBuf>,
    /// Deadline for one writer event, as EVENT=MILLISECONDS (repeatable), e.g. Freeze=5000.
    /// Defaults: Identify 5000, PrepareForBackup 60000, PrepareForSnapshot 60000, Freeze 20000,
    /// Thaw 20000, PostSnapshot 60000, Abort 20000, BackupComplete 60000, BackupShutdown 20000.
    #[arg(long = "timeout", value_name = "EVENT=MS")]
    pub timeouts: Vec<String>,
    /// Group (name or number) allowed to use the requester socket besides root (socket mode
    /// 0660 then).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// A uid vssd talks to as a writer (socket owner and writer process), repeatable
    /// [default: 0 only].
    #[arg(long = "writer-uid", value_name = "UID")]
    pub writer_uids: Vec<u32>,
    /// The longest a filesystem stays frozen for a commit, in ms; the freeze guard thaws it then
    /// [default: 10000].
    #[arg(long)]
    pub commit_window_ms: Option<u64>,
    /// The freeze guard program [default: vss-freeze-guard next to vssd].
    #[arg(long)]
    pub freeze_guard: Option<PathBuf>,
    /// Enables the exec provider with this command (docs/providers.md: it is run with
    /// VSS_ACTION=supported|create|delete|expose|unexpose|break and must not touch the volume).
    #[arg(long)]
    pub exec_command: Option<PathBuf>,
    /// How long the exec provider's command may run, in ms [default: 10000].
    #[arg(long)]
    pub exec_timeout_ms: Option<u64>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

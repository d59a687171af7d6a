//! `vss-writer-script`: a VSS writer that runs hook scripts.
//!
//! Each instance serves `vss.Writer` on `<writers_dir>/<name>.sock` and runs the scripts of two
//! optional directories:
//!
//! * **`fsfreeze_hook_dir`**, in qemu-guest-agent's `fsfreeze-hook.d` layout (e.g.
//!   `/etc/qemu/fsfreeze-hook.d`): scripts get `freeze` on Freeze and `thaw` on Thaw, and on
//!   Abort after a successful freeze. Existing qemu-ga hook scripts work unchanged.
//! * **`vss_hook_dir`** (e.g. `/etc/vss/hooks.d`): scripts get every VSS event as first
//!   argument: `prepare-backup`, `prepare-snapshot`, `freeze`, `thaw`, `post-snapshot`, `abort`,
//!   `backup-complete`, `backup-shutdown`, `pre-restore`, `post-restore`.
//!
//! Scripts are selected like qemu's `fsfreeze-hook` does (executable regular files, without
//! hidden files and package-manager or editor leftovers: see [`scripts`]). Every script runs with
//! stdin `/dev/null`, cwd `/`, in its own process group, with an environment of only `PATH`,
//! `VSS_EVENT`, `VSS_SNAPSHOT_SET_ID`, `VSS_BACKUP_TYPE` (e.g. `VSS_BT_FULL`), `VSS_VOLUMES`
//! (newline-separated) and, from PostSnapshot on, `VSS_SNAPSHOT_PATHS` (newline-separated, in
//! the order of `VSS_VOLUMES`); `pre-restore` and `post-restore` also get the restore variables
//! below. Its stdout and stderr go to
//! `<output_dir>/<event>-<fsfreeze|vss>-<script>.out/.err` (the last run of each script for each
//! event is kept). A script is done when its process exits, not when its output closes: a
//! background process it leaves holding stdout (qemu's `mysql-flush.sh` sample does) does not
//! delay the event, and is neither waited for nor killed.
//!
//! # Restore
//!
//! In a restore session that selects the `scripts` component (SetSelectedForRestore), the vss
//! hook scripts get `pre-restore` (before the requester copies files back: stop what uses them)
//! and `post-restore` (after: recover, start again). The writer declares `VSS_WRE_ALWAYS` and
//! the component selectable for restore when a vss hook directory is configured, else
//! `VSS_WRE_NEVER` (fsfreeze-hook.d scripts have no restore actions). The restore variables:
//!
//! | variable | value |
//! |---|---|
//! | `VSS_COMPONENTS` | the components selected for restore, newline-separated (`scripts`) |
//! | `VSS_RESTORE_OPTIONS` | the requester's restore options (SetRestoreOptions), if set |
//! | `VSS_RESTORE_TARGET` | `VSS_RT_ORIGINAL`, `VSS_RT_ALTERNATE`, ..., if set |
//! | `VSS_ADDITIONAL_RESTORES` | `1` when more restores of the component follow (do not start the service yet), else `0` |
//! | `VSS_RESTORE_STATUS` | post-restore only, when the requester said (SetFileRestoreStatus): `VSS_RS_ALL`, `VSS_RS_NONE`, `VSS_RS_FAILED` |
//! | `VSS_RESTORE_DESTINATIONS` | the number N of alternate location mappings (AddAlternativeLocationMapping), `0` when none |
//! | `VSS_RESTORE_SOURCE_<n>` | n = 1..N: the original directory of the file set |
//! | `VSS_RESTORE_FILESPEC_<n>` | its file specification (`*.db`) |
//! | `VSS_RESTORE_RECURSIVE_<n>` | `yes` or `no` |
//! | `VSS_RESTORE_DESTINATION_<n>` | where its files were restored |
//!
//! A requester that ends its session between PreRestore and PostRestore leaves the scripts'
//! pre-restore in place: no post-restore runs (and restore sessions send no BackupShutdown),
//! because the files may be half restored and nothing should be started on them. Finish such a
//! restore by hand (or run the scripts with `post-restore` yourself).
//!
//! # Order
//!
//! Freeze and every other event: the fsfreeze-hook.d scripts, then the vss hook scripts, each in
//! name order (C locale, byte order). Thaw, Abort and post-restore: the exact reverse (a script
//! that stopped a service first in pre-restore starts it last, like nested locks). Abort gives
//! the vss hook scripts `abort` and the fsfreeze-hook.d scripts that froze `thaw`.
//!
//! # Failures
//!
//! A non-zero exit fails the event with `VSS_E_WRITERERROR_NONRETRYABLE` and the last 4 KiB of
//! the script's stderr in the message (the requester sees it in GetWriterStatus). A script still
//! running after `timeout_ms` gets SIGKILL with its whole process group, and the event fails with
//! `VSS_E_WRITERERROR_TIMEOUT` (the VSS code for a writer that could not finish in time; a
//! requester may retry later). The first failure stops a forward event (later scripts do not
//! run); when a freeze script fails, the scripts that already froze get `thaw` in reverse order
//! before Freeze fails; likewise when a pre-restore script fails, the scripts whose pre-restore
//! succeeded get `post-restore` in reverse order (without `VSS_RESTORE_STATUS`: nothing was
//! restored) before PreRestore fails (`VSS_WS_FAILED_AT_PRE_RESTORE`; such a writer gets no
//! PostRestore). Thaw, Abort and post-restore run every script even after a failure (everything
//! must be thawed or started again); Thaw and post-restore then report the first failure, Abort
//! (which cannot fail) logs it. The SDK calls Abort by itself when Thaw does not come within
//! `freeze_timeout_ms`.
//!
//! # Differences from qemu-guest-agent's fsfreeze-hook
//!
//! * qemu's hook always exits 0: a failing script is logged and the freeze goes on, silently
//!   crash-consistent. Here a failure fails the event, so the snapshot is not recorded as
//!   application-consistent.
//! * qemu runs thaw in the same order as freeze; here thaw runs in reverse order (a script that
//!   froze last thaws first, like nested locks).
//! * qemu has no timeout; here each script has one.
//! * qemu sorts by the locale's collation (shell glob); here by bytes.
//! * qemu runs `thaw` after the filesystems are thawed and `freeze` before they are frozen; here
//!   the coordinator decides: Freeze comes before the snapshot, Thaw right after it.
//! * qemu logs everything to `/var/log/qga-fsfreeze-hook.log`; here each run has its own files
//!   under `output_dir` (on /run, never on a volume being frozen).
//! * qemu's scripts inherit qemu-ga's environment; here it is cleared but for PATH and `VSS_*`.
//!
//! # Components
//!
//! One selectable FILE_GROUP `scripts` with no files: an anchor a component-mode requester
//! selects (VShadow-style selection of top-level components) to include the writer, and selects
//! for restore to have the restore hooks run. In non-component mode every writer takes part in
//! backups anyway.

mod config;
mod scripts;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use vss_writer::{RuntimeConfig, WriterRuntime, shutdown_signal};

use crate::config::{Entry, Instance};
use crate::writer::ScriptWriter;

const DEFAULT_CONFIG: &str = "/etc/vss/writers.toml";
const DEFAULT_WRITERS_DIR: &str = "/run/vss/writers";

#[derive(Debug, Parser)]
#[command(
    name = "vss-writer-script",
    version,
    about = "A VSS writer that runs hook scripts (qemu-guest-agent fsfreeze-hook.d and vss hooks.d)."
)]
struct Args {
    /// The writers configuration file; only `[[script]]` entries, `writers_dir` and
    /// `coordinator_uid` are read. Not read when --name is given.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    /// Run one instance with this name from the flags below instead of the file.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Where to put the sockets (overrides the file's writers_dir).
    #[arg(long, value_name = "DIR")]
    writers_dir: Option<PathBuf>,

    /// A qemu-guest-agent style fsfreeze-hook.d directory (with --name).
    #[arg(long, value_name = "DIR", requires = "name")]
    fsfreeze_hook_dir: Option<PathBuf>,

    /// A vss hook directory (with --name).
    #[arg(long, value_name = "DIR", requires = "name")]
    vss_hook_dir: Option<PathBuf>,

    /// Per-script timeout in ms (with --name; default 30000).
    #[arg(long, value_name = "MS", requires = "name")]
    timeout_ms: Option<u64>,

    /// Freeze→Thaw window in ms (with --name; default 60000).
    #[arg(long, value_name = "MS", requires = "name")]
    freeze_timeout_ms: Option<u64>,

    /// Where script output goes (with --name; default /run/vss/script-output/NAME).
    #[arg(long, value_name = "DIR", requires = "name")]
    output_dir: Option<PathBuf>,

    /// Also serve this uid (vssd's, when it does not run as root).
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,
}

fn instances(args: &Args) -> anyhow::Result<(Vec<Instance>, PathBuf, Option<u32>)> {
    if let Some(name) = &args.name {
        let entry = Entry {
            name: name.clone(),
            fsfreeze_hook_dir: args.fsfreeze_hook_dir.clone(),
            vss_hook_dir: args.vss_hook_dir.clone(),
            timeout_ms: args.timeout_ms,
            freeze_timeout_ms: args.freeze_timeout_ms,
            output_dir: args.output_dir.clone(),
        };
        let dir = args
            .writers_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_WRITERS_DIR));
        return Ok((vec![entry.into_instance()?], dir, args.coordinator_uid));
    }
    let file = config::load(&args.config)?;
    let mut list = Vec::new();
    for entry in file.script {
        let inst = entry.into_instance()?;
        if list.iter().any(|i: &Instance| i.name == inst.name) {
            bail!(
                "{}: two [[script]] entries named '{}'",
                args.config.display(),
                inst.name
            );
        }
        list.push(inst);
    }
    if list.is_empty() {
        bail!("{}: no [[script]] entries", args.config.display());
    }
    let dir = args
        .writers_dir
        .clone()
        .or(file.writers_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_WRITERS_DIR));
    Ok((list, dir, args.coordinator_uid.or(file.coordinator_uid)))
}

async fn serve_all(
    list: Vec<Instance>,
    writers_dir: PathBuf,
    coordinator_uid: Option<u32>,
) -> anyhow::Result<()> {
    let mut runtimes = Vec::new();
    for inst in list {
        let config = RuntimeConfig {
            writers_dir: writers_dir.clone(),
            socket_name: format!("{}.sock", inst.name),
            coordinator_uid,
        };
        let runtime = WriterRuntime::bind(config)
            .await
            .with_context(|| format!("script writer '{}'", inst.name))?;
        tracing::info!(
            instance = %inst.name,
            socket = %runtime.socket_path().display(),
            fsfreeze_hook_dir = ?inst.fsfreeze_hook_dir,
            vss_hook_dir = ?inst.vss_hook_dir,
            "listening"
        );
        runtimes.push((runtime, Arc::new(ScriptWriter::new(inst))));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (runtime, writer) in runtimes {
        tasks.spawn(async move { runtime.run(writer, shutdown_signal()).await });
    }
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(anyhow::Error::from(e)),
            Err(e) => result = Err(anyhow::Error::from(e)),
        }
    }
    result
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
    let result = instances(&args).and_then(|(list, dir, uid)| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let r = rt.block_on(serve_all(list, dir, uid));
        // A hook may still be blocked in a script; do not wait for it forever.
        rt.shutdown_timeout(std::time::Duration::from_secs(2));
        r
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vss-writer-script: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `vss-example-writer`: a small, complete VSS writer built with the vss-writer SDK.
//!
//! It protects one data directory. The "application" whose data lives there is simulated by a
//! background thread that appends a line to `DIR/journal.txt` every second. The application and
//! the writer cooperate through a lock file, `DIR/.vss-freeze.lock`:
//!
//! * the application takes a *shared* `flock` on it around every write;
//! * on Freeze the writer takes an *exclusive* `flock`, which waits for the write in flight and
//!   then holds every new write back: the data directory is quiescent while the snapshot is
//!   taken;
//! * on Thaw (or Abort) the writer releases it and the application carries on.
//!
//! Before that, PrepareForSnapshot flushes everything to disk (fsync of every file, then
//! `syncfs`), so Freeze itself is quick. The SDK does the rest: the socket, the access check,
//! and aborting the writer (which releases the lock) if Thaw does not come within the freeze
//! timeout or the coordinator dies while the writer is frozen.
//!
//! Every event is printed on stderr. Never log to a file in the data directory: it may be
//! frozen.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use rustix::fs::{FlockOperation, flock};
use vss_writer::{
    ApplicationLevel, ComponentType, ErrorCode, EventParams, FileSpec, RestoreMethod,
    RuntimeConfig, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer, WriterMetadata,
    WriterRestore, WriterRuntime,
};

/// The writer *class* id: the same for every instance of this writer, forever. A real writer
/// picks its own once (e.g. with `uuidgen`) and never changes it.
const WRITER_ID: Uuid = Uuid::from_u128(0x7d2e_61c4_0b8f_4a9e_b3d5_5f0c_9e1a_2b47);

/// The lock file the application and the writer share, inside the data directory.
const LOCK_FILE: &str = ".vss-freeze.lock";

/// How long Freeze waits for the application's write in flight before vetoing.
const FREEZE_LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "vss-example-writer",
    version,
    about = "An example VSS writer protecting one data directory.",
    long_about = "An example VSS writer protecting one data directory.\n\n\
        It declares one selectable FILE_GROUP component, \"data\", covering DIR (recursively), serves \
        vss.Writer on <WRITERS_DIR>/<NAME>.sock, and prints every event it gets on stderr.\n\n\
        PrepareForSnapshot: fsync every file under DIR, then syncfs.\n\
        Freeze: take an exclusive flock on DIR/.vss-freeze.lock; the application (simulated by a thread \
        appending to DIR/journal.txt every second) takes a shared flock on it around each write, so it \
        pauses while the writer is frozen.\n\
        Thaw / Abort: release the lock.\n\n\
        Stop it with SIGINT or SIGTERM."
)]
struct Args {
    /// The directory whose data the writer protects (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// Where to put the writer's socket.
    #[arg(long, value_name = "DIR", default_value = "/run/vss/writers")]
    writers_dir: PathBuf,

    /// The writer's name; the socket is NAME.sock.
    #[arg(long, value_name = "NAME", default_value = "example")]
    name: String,

    /// Do not run the simulated application.
    #[arg(long)]
    no_app: bool,

    /// Also serve this uid (vssd's, when it does not run as root).
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,
}

/// The writer's state.
struct ExampleWriter {
    name: String,
    data_dir: PathBuf,
    /// Per-process instance id, fixed at start: Identify must be deterministic.
    instance_id: Uuid,
    /// The lock file, open and exclusively locked, while frozen.
    frozen: Mutex<Option<File>>,
}

impl ExampleWriter {
    fn lock_path(&self) -> PathBuf {
        self.data_dir.join(LOCK_FILE)
    }

    /// Releases the freeze lock if held (closing the file releases the flock).
    fn release(&self) -> bool {
        self.frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .is_some()
    }
}

/// A failure a retry may fix (the coordinator can try again later).
fn retryable(message: String) -> VssError {
    VssError::new(ErrorCode::WriterErrorRetryable, message)
}

/// fsyncs every regular file and directory under `dir` (not following symlinks).
fn sync_tree(dir: &Path) -> std::io::Result<usize> {
    let mut synced = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            synced += sync_tree(&entry.path())?;
        } else if kind.is_file() {
            // fsync works on a read-only descriptor and flushes the file's dirty pages.
            File::open(entry.path())?.sync_all()?;
            synced += 1;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(synced)
}

impl Writer for ExampleWriter {
    /// Identify: who we are and what we protect. Called any time, so it only describes.
    fn metadata(&self) -> WriterMetadata {
        eprintln!("[writer] Identify");
        let dir = self.data_dir.display().to_string();
        WriterMetadata {
            writer_id: WRITER_ID,
            instance_id: self.instance_id,
            writer_name: "vss-example-writer".to_owned(),
            instance_name: self.name.clone(),
            usage_type: UsageType::UserData,
            source_type: SourceType::Other,
            application_level: ApplicationLevel::FrontEnd,
            freeze_timeout_ms: vss_writer::DEFAULT_FREEZE_TIMEOUT_MS,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            writer_restore: WriterRestore::Never,
            restore_service: None,
            backup_schema: 0,
            version: Some("1.0".to_owned()),
            // The lock file is not data: never back it up.
            exclude_files: vec![FileSpec {
                path: dir.clone(),
                filespec: LOCK_FILE.to_owned(),
                recursive: false,
                alternate_path: None,
                backup_type_mask: 0xF0F,
            }],
            components: vec![WmdComponent {
                component_type: ComponentType::FileGroup,
                logical_path: String::new(),
                name: "data".to_owned(),
                caption: format!("Data in {dir}"),
                selectable: true,
                selectable_for_restore: true,
                notify_on_backup_complete: true,
                restore_metadata: false,
                component_flags: 0,
                files: vec![FileSpec {
                    path: dir,
                    filespec: "*".to_owned(),
                    recursive: true,
                    alternate_path: None,
                    backup_type_mask: 0xF0F,
                }],
                log_files: vec![],
                dependencies: vec![],
            }],
        }
    }

    /// PrepareForSnapshot: the slow part, done before Freeze: push everything to disk.
    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] PrepareForSnapshot set {}", ev.snapshot_set_id);
        let start = Instant::now();
        let synced = sync_tree(&self.data_dir)
            .map_err(|e| retryable(format!("cannot sync {}: {e}", self.data_dir.display())))?;
        let dir = File::open(&self.data_dir)
            .map_err(|e| retryable(format!("{}: {e}", self.data_dir.display())))?;
        rustix::fs::syncfs(&dir)
            .map_err(|e| retryable(format!("syncfs {}: {e}", self.data_dir.display())))?;
        eprintln!(
            "[writer]   synced {synced} files and the filesystem in {:?}",
            start.elapsed()
        );
        Ok(())
    }

    /// Freeze: hold the application's writes back. Must be quick; failing here vetoes.
    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] Freeze set {}", ev.snapshot_set_id);
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| retryable(format!("cannot open {}: {e}", path.display())))?;
        // Wait (briefly) for the write in flight: the application holds a shared lock meanwhile.
        let deadline = Instant::now() + FREEZE_LOCK_WAIT;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    return Err(retryable(format!(
                        "cannot lock {} within {FREEZE_LOCK_WAIT:?}: {e}",
                        path.display()
                    )));
                }
            }
        }
        *self
            .frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
        eprintln!("[writer]   frozen: application writes are held");
        Ok(())
    }

    /// Thaw: let the application write again.
    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] Thaw set {}", ev.snapshot_set_id);
        if self.release() {
            eprintln!("[writer]   thawed: application writes resume");
        }
        Ok(())
    }

    /// Abort: undo whatever we did. Here that is only the freeze lock (PrepareForSnapshot left
    /// nothing to undo). `None`: the coordinator vanished while we were frozen.
    fn abort(&self, ev: Option<&EventParams>) {
        match ev {
            Some(ev) => eprintln!("[writer] Abort set {}", ev.snapshot_set_id),
            None => eprintln!("[writer] Abort (the coordinator went away)"),
        }
        if self.release() {
            eprintln!("[writer]   lock released: application writes resume");
        }
    }

    // The other events keep the SDK's defaults (succeed, no component updates); print them.

    fn prepare_for_backup(
        &self,
        ev: &EventParams,
    ) -> Result<Vec<vss_writer::ComponentUpdate>, VssError> {
        eprintln!(
            "[writer] PrepareForBackup set {} ({})",
            ev.snapshot_set_id, ev.backup_type
        );
        Ok(vec![])
    }

    fn post_snapshot(
        &self,
        ev: &EventParams,
    ) -> Result<Vec<vss_writer::ComponentUpdate>, VssError> {
        eprintln!("[writer] PostSnapshot set {}", ev.snapshot_set_id);
        for v in &ev.volumes {
            eprintln!(
                "[writer]   {} is readable at {}",
                v.volume,
                v.snapshot_path.as_deref().unwrap_or("?")
            );
        }
        Ok(vec![])
    }

    fn backup_complete(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] BackupComplete set {}", ev.snapshot_set_id);
        Ok(())
    }

    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        eprintln!("[writer] BackupShutdown set {snapshot_set_id}");
    }

    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] PreRestore set {}", ev.snapshot_set_id);
        Ok(())
    }

    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        eprintln!("[writer] PostRestore set {}", ev.snapshot_set_id);
        Ok(())
    }
}

/// The simulated application: appends a line to `journal.txt` every second, each write under a
/// shared lock on the freeze lock file, so it pauses while the writer is frozen.
fn run_application(data_dir: PathBuf) {
    let lock_path = data_dir.join(LOCK_FILE);
    let journal = data_dir.join("journal.txt");
    let mut n: u64 = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let result = (|| -> std::io::Result<()> {
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            flock(&lock, FlockOperation::LockShared)?; // blocks while frozen
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&journal)?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            n += 1;
            writeln!(f, "entry {n} at {}", now.as_secs())?;
            f.sync_data()
            // Dropping `lock` releases the shared lock.
        })();
        if let Err(e) = result {
            eprintln!("[app] write failed: {e}");
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

    if let Err(e) = std::fs::create_dir_all(&args.data_dir) {
        eprintln!(
            "vss-example-writer: cannot create {}: {e}",
            args.data_dir.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    // File specs must be absolute.
    let data_dir = match std::fs::canonicalize(&args.data_dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vss-example-writer: {}: {e}", args.data_dir.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    if !args.no_app {
        let dir = data_dir.clone();
        std::thread::spawn(move || run_application(dir));
    }
    let writer = Arc::new(ExampleWriter {
        name: args.name.clone(),
        data_dir,
        instance_id: Uuid::new_v4(),
        frozen: Mutex::new(None),
    });
    let config = RuntimeConfig {
        writers_dir: args.writers_dir,
        socket_name: format!("{}.sock", args.name),
        coordinator_uid: args.coordinator_uid,
    };
    match WriterRuntime::run_blocking_with(writer, config, |path| {
        eprintln!("[writer] listening on {}", path.display())
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vss-example-writer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

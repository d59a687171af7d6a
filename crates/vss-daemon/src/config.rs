//! vssd's settings: paths and the per-event deadlines for writers.

use std::path::PathBuf;
use std::time::Duration;

use vss_model::WriterEvent;

/// Everything vssd needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The requester socket (`vss.Requester`).
    pub socket: PathBuf,
    /// Where writers put their sockets.
    pub writers_dir: PathBuf,
    /// Persistent state: the snapshot catalog.
    pub state_dir: PathBuf,
    /// Runtime files: private mounts of helper subvolumes.
    pub run_dir: PathBuf,
    /// The host-wide snapshot-set lock, shared with the CLI's embedded mode.
    pub lock_file: PathBuf,
    /// How long each writer has to answer each event.
    pub deadlines: Deadlines,
    /// Group whose members may use the requester socket besides root (mode 0660 then).
    pub socket_group: Option<u32>,
    /// The longest a filesystem stays frozen (FIFREEZE) for a commit; the freeze guard thaws it
    /// then whatever happens (10 s, like the Windows flush-and-hold window).
    pub commit_window: Duration,
    /// The freeze guard program (`vss-freeze-guard`); default: next to vssd.
    pub guard_binary: Option<PathBuf>,
    /// The exec provider's command; no command, no exec provider.
    pub exec_command: Option<PathBuf>,
    /// How long the exec provider's command may run.
    pub exec_timeout: Duration,
    /// Providers to use, in the order of automatic choice; `None`: all, in the built-in order.
    pub provider_order: Option<Vec<String>>,
    /// The btrfs provider's snapshot subvolume (default `.vss`).
    pub btrfs_snapshot_subvolume: Option<String>,
    /// The reflink provider's clone directory (default `.vss-reflink`).
    pub reflink_dir_name: Option<String>,
    /// The uids vssd talks to as writers (socket owner and peer process); root only by default.
    pub writer_uids: Vec<u32>,
}

impl Config {
    /// The defaults: /run/vss/vssd.sock, /run/vss/writers, /var/lib/vss.
    pub fn system_default() -> Self {
        Config {
            socket: "/run/vss/vssd.sock".into(),
            writers_dir: "/run/vss/writers".into(),
            state_dir: "/var/lib/vss".into(),
            run_dir: "/run/vss".into(),
            lock_file: "/run/vss/snapshot-set.lock".into(),
            deadlines: Deadlines::default(),
            socket_group: None,
            commit_window: Duration::from_secs(10),
            guard_binary: None,
            exec_command: None,
            exec_timeout: Duration::from_secs(10),
            provider_order: None,
            btrfs_snapshot_subvolume: None,
            reflink_dir_name: None,
            writer_uids: vec![0],
        }
    }
}

/// Per-event deadlines for writer replies. A writer that misses one ends `FAILED_AT_<event>`
/// with `VSS_E_WRITER_NOT_RESPONDING` (at Identify it is simply absent). Freeze is additionally
/// bounded by the writer's own `freezeTimeoutMs`, counted from Freeze until Thaw is sent; missing
/// that one is `VSS_E_WRITERERROR_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Identify (default 5 s).
    pub identify: Duration,
    /// PrepareForBackup (default 60 s).
    pub prepare_for_backup: Duration,
    /// PrepareForSnapshot (default 60 s; it may do heavy work such as a checkpoint).
    pub prepare_for_snapshot: Duration,
    /// Freeze (default 20 s).
    pub freeze: Duration,
    /// Thaw (default 20 s).
    pub thaw: Duration,
    /// PostSnapshot (default 60 s).
    pub post_snapshot: Duration,
    /// Abort (default 20 s).
    pub abort: Duration,
    /// BackupComplete (default 60 s).
    pub backup_complete: Duration,
    /// BackupShutdown (default 20 s).
    pub backup_shutdown: Duration,
    /// PreRestore and PostRestore (default 60 s).
    pub restore: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        let s = Duration::from_secs;
        Deadlines {
            identify: s(5),
            prepare_for_backup: s(60),
            prepare_for_snapshot: s(60),
            freeze: s(20),
            thaw: s(20),
            post_snapshot: s(60),
            abort: s(20),
            backup_complete: s(60),
            backup_shutdown: s(20),
            restore: s(60),
        }
    }
}

impl Deadlines {
    /// The deadline of one event.
    pub fn of(&self, event: WriterEvent) -> Duration {
        match event {
            WriterEvent::Identify => self.identify,
            WriterEvent::PrepareForBackup => self.prepare_for_backup,
            WriterEvent::PrepareForSnapshot => self.prepare_for_snapshot,
            WriterEvent::Freeze => self.freeze,
            WriterEvent::Thaw => self.thaw,
            WriterEvent::PostSnapshot => self.post_snapshot,
            WriterEvent::Abort => self.abort,
            WriterEvent::BackupComplete => self.backup_complete,
            WriterEvent::BackupShutdown => self.backup_shutdown,
            WriterEvent::PreRestore | WriterEvent::PostRestore => self.restore,
        }
    }

    /// Sets one event's deadline from `EVENT=MS` (`Freeze=2000`).
    pub fn set_from_spec(&mut self, spec: &str) -> Result<(), String> {
        let (name, ms) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}' is not EVENT=MILLISECONDS (e.g. Freeze=2000)"))?;
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("'{ms}' is not a number of milliseconds"))?;
        if ms == 0 {
            return Err("a deadline of 0 ms would fail every writer".into());
        }
        let d = Duration::from_millis(ms);
        let event = WriterEvent::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown event '{name}'; one of {}",
                    WriterEvent::ALL.map(|e| e.name()).join(", ")
                )
            })?;
        match event {
            WriterEvent::Identify => self.identify = d,
            WriterEvent::PrepareForBackup => self.prepare_for_backup = d,
            WriterEvent::PrepareForSnapshot => self.prepare_for_snapshot = d,
            WriterEvent::Freeze => self.freeze = d,
            WriterEvent::Thaw => self.thaw = d,
            WriterEvent::PostSnapshot => self.post_snapshot = d,
            WriterEvent::Abort => self.abort = d,
            WriterEvent::BackupComplete => self.backup_complete = d,
            WriterEvent::BackupShutdown => self.backup_shutdown = d,
            WriterEvent::PreRestore | WriterEvent::PostRestore => self.restore = d,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_specs() {
        let mut d = Deadlines::default();
        d.set_from_spec("Freeze=1500").unwrap();
        assert_eq!(d.of(WriterEvent::Freeze), Duration::from_millis(1500));
        d.set_from_spec("identify=10").unwrap();
        assert_eq!(d.identify, Duration::from_millis(10));
        assert!(d.set_from_spec("Freeze").is_err());
        assert!(d.set_from_spec("Nope=1").is_err());
        assert!(d.set_from_spec("Thaw=0").is_err());
        assert!(d.set_from_spec("Thaw=x").is_err());
    }
}

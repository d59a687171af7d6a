//! The freeze journal: one file per freeze set, `<set-id>.freeze` in the journal directory, so
//! that a restarted vssd can thaw what a dead owner may have left frozen.
//!
//! Why it looks like this:
//!
//! * **Written only before the first FIFREEZE and removed only after the last FITHAW.** Nothing
//!   of ours may write while a filesystem is frozen: a write to a frozen filesystem sleeps
//!   uninterruptibly until thaw (test-machine.md §4), and if that filesystem holds the journal
//!   the owner deadlocks against itself. For the same reason the journal directory must be on
//!   a filesystem that is never frozen: it belongs under `/run` (vssd uses `<run-dir>/freeze`)
//!   or vssd's state directory, both of which vssd refuses to freeze, and
//!   [`FreezeSet::freeze`](crate::FreezeSet::freeze) refuses a journal directory on a
//!   filesystem of the set.
//! * **Complete or absent.** The entry is written to `<set-id>.freeze.tmp`, fsynced, and renamed
//!   (without replacing) into place, then the directory is fsynced: recovery never sees a half
//!   written entry, and nothing is frozen before the rename.
//! * **Ownership is an `flock`, not a pid.** The owner takes an exclusive `flock` on the entry
//!   before it is visible and holds it (the open file lives in the `FreezeSet`) until the entry
//!   is removed. The kernel drops the lock when the owner dies, however it dies. [`recover`]
//!   takes the lock without blocking: if it gets it, the owner is dead and the listed mount
//!   points are thawed; if not, the owner lives (an embedded `vss backup` run while vssd starts)
//!   and its freeze is left to it and its guard. A pid alone could have been reused.
//! * **Unlinked before unlocked.** The owner unlinks the entry and then closes it; recovery,
//!   after taking the lock, checks that the file it locked is still the one in the directory, so
//!   an entry the owner just removed is never acted on (the filesystem may meanwhile have been
//!   frozen by someone else, whose freeze we must not thaw).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{CWD, FlockOperation, RenameFlags};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fs::{Thawed, fithaw, open_dir};

/// The suffix of journal entries.
pub(crate) const SUFFIX: &str = ".freeze";
/// The suffix of an entry being written.
const TMP_SUFFIX: &str = ".freeze.tmp";

/// One journal entry: what an owner is about to freeze.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The snapshot set.
    pub set_id: Uuid,
    /// The process that freezes (and holds the entry's flock).
    pub owner_pid: u32,
    /// The mount points it freezes, in order, one per filesystem.
    pub mount_points: Vec<PathBuf>,
    /// When the entry was written, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

/// A journal entry that exists and is locked by us; removed by [`JournalLock::remove`].
#[derive(Debug)]
pub(crate) struct JournalLock {
    path: PathBuf,
    /// Holds the flock.
    file: Option<File>,
}

fn entry_path(dir: &Path, set_id: Uuid) -> PathBuf {
    dir.join(format!("{set_id}{SUFFIX}"))
}

impl JournalLock {
    /// Writes and fsyncs the entry, locked, under its final name.
    pub(crate) fn create(dir: &Path, entry: &JournalEntry) -> io::Result<JournalLock> {
        let path = entry_path(dir, entry.set_id);
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists: this set is frozen already", path.display()),
            ));
        }
        let tmp = dir.join(format!("{}{TMP_SUFFIX}", entry.set_id));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let result = (|| {
            rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
            let mut json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
            json.push(b'\n');
            file.write_all(&json)?;
            file.sync_all()?;
            rustix::fs::renameat_with(CWD, &tmp, CWD, &path, RenameFlags::NOREPLACE)?;
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(JournalLock {
            path,
            file: Some(file),
        })
    }

    /// The entry's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Unlinks the entry, then releases the lock.
    pub(crate) fn remove(mut self) -> io::Result<()> {
        let result = std::fs::remove_file(&self.path);
        drop(self.file.take());
        result
    }
}

/// What [`recover`] found in one journal entry and did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEntry {
    /// The entry's file.
    pub journal_file: PathBuf,
    /// Its content, if it could be read.
    pub entry: Option<JournalEntry>,
    /// What recovery did.
    pub outcome: RecoveryOutcome,
}

/// What [`recover`] did about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// The owner still holds the entry's lock: it and its guard are in charge; left alone.
    OwnerAlive,
    /// The owner is dead: every listed mount point was sent FITHAW (reverse order). The entry is
    /// removed unless a thaw failed (then the next recovery tries again).
    Thawed {
        /// Were frozen, and are thawed now.
        thawed: Vec<PathBuf>,
        /// Were not frozen (the guard had thawed them, or the owner never got that far).
        not_frozen: Vec<PathBuf>,
        /// No longer exist (unmounted, removed).
        missing: Vec<PathBuf>,
        /// FITHAW or opening failed otherwise: path and error.
        failed: Vec<(PathBuf, String)>,
    },
    /// The owner is dead but the entry cannot be read: it is kept for an operator to look at.
    Unreadable(String),
}

/// Startup recovery: thaws what the journal in `journal_dir` says may still be frozen, for the
/// entries whose owner is dead (their flock is free), and removes those entries. Entries whose
/// owner still lives are left alone. Returns what it found and did; a missing or unreadable
/// directory is an empty list. Logs (tracing) only after all thaws.
pub fn recover(journal_dir: &Path) -> Vec<RecoveredEntry> {
    let mut done = Vec::new();
    let mut stale = Vec::new();
    let entries = match std::fs::read_dir(journal_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return done,
        Err(e) => {
            tracing::warn!(dir = %journal_dir.display(), "cannot read the freeze journal: {e}");
            return done;
        }
    };
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            // An entry whose owner died while writing it (before freezing anything).
            if let Ok(file) = File::open(&path)
                && rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
                && still_linked(&file, &path)
            {
                let _ = std::fs::remove_file(&path);
                stale.push(path);
            }
            continue;
        }
        if !name.ends_with(SUFFIX) {
            continue;
        }
        if let Some(r) = recover_entry(&path) {
            done.push(r);
        }
    }
    for path in stale {
        tracing::debug!(file = %path.display(), "removed an unfinished freeze journal entry");
    }
    for r in &done {
        match &r.outcome {
            RecoveryOutcome::OwnerAlive => tracing::info!(
                file = %r.journal_file.display(),
                "freeze journal: the owner is alive; leaving its freeze to it"
            ),
            RecoveryOutcome::Thawed { thawed, failed, .. } => tracing::warn!(
                file = %r.journal_file.display(),
                ?thawed,
                ?failed,
                "freeze journal: the owner died; thawed what it may have left frozen"
            ),
            RecoveryOutcome::Unreadable(e) => tracing::error!(
                file = %r.journal_file.display(),
                "freeze journal: unreadable entry of a dead owner: {e}"
            ),
        }
    }
    done
}

fn read_entry(file: &File) -> Result<JournalEntry, String> {
    serde_json::from_reader(io::BufReader::new(file)).map_err(|e| e.to_string())
}

/// Whether the file we locked is still the one named `path` (the owner unlinks before it
/// unlocks).
fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.nlink() > 0 && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn recover_entry(path: &Path) -> Option<RecoveredEntry> {
    let file = File::open(path).ok()?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Some(RecoveredEntry {
                journal_file: path.to_owned(),
                entry: read_entry(&file).ok(),
                outcome: RecoveryOutcome::OwnerAlive,
            });
        }
        Err(e) => {
            return Some(RecoveredEntry {
                journal_file: path.to_owned(),
                entry: None,
                outcome: RecoveryOutcome::Unreadable(format!("flock: {e}")),
            });
        }
    }
    if !still_linked(&file, path) {
        // The owner removed it just now, after thawing.
        return None;
    }
    let entry = match read_entry(&file) {
        Ok(e) => e,
        Err(e) => {
            return Some(RecoveredEntry {
                journal_file: path.to_owned(),
                entry: None,
                outcome: RecoveryOutcome::Unreadable(e),
            });
        }
    };
    let (mut thawed, mut not_frozen, mut missing, mut failed) = (vec![], vec![], vec![], vec![]);
    for mount in entry.mount_points.iter().rev() {
        let fd = match open_dir(mount) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(mount.clone());
                continue;
            }
            Err(e) => {
                failed.push((mount.clone(), format!("open: {e}")));
                continue;
            }
        };
        match fithaw(&fd) {
            Ok(Thawed::Thawed) => thawed.push(mount.clone()),
            Ok(Thawed::NotFrozen) => not_frozen.push(mount.clone()),
            Err(e) => failed.push((mount.clone(), format!("FITHAW: {e}"))),
        }
    }
    if failed.is_empty() {
        let _ = std::fs::remove_file(path);
    }
    drop(file);
    Some(RecoveredEntry {
        journal_file: path.to_owned(),
        entry: Some(entry),
        outcome: RecoveryOutcome::Thawed {
            thawed,
            not_frozen,
            missing,
            failed,
        },
    })
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mounts: &[&str]) -> JournalEntry {
        JournalEntry {
            set_id: Uuid::new_v4(),
            owner_pid: std::process::id(),
            mount_points: mounts.iter().map(PathBuf::from).collect(),
            created_unix_ms: now_unix_ms(),
        }
    }

    #[test]
    fn live_owner_is_left_alone_and_removal_unlocks() {
        let dir = tempfile::tempdir().unwrap();
        let e = entry(&["/nonexistent/vss-freeze-test"]);
        let lock = JournalLock::create(dir.path(), &e).unwrap();
        assert!(lock.path().ends_with(format!("{}.freeze", e.set_id)));
        // A second freeze of the same set is refused.
        assert!(JournalLock::create(dir.path(), &e).is_err());
        let found = recover(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].outcome, RecoveryOutcome::OwnerAlive);
        assert_eq!(found[0].entry.as_ref(), Some(&e));
        assert!(lock.path().exists());
        lock.remove().unwrap();
        assert!(recover(dir.path()).is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dead_owner_entry_is_processed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let e = entry(&["/nonexistent/vss-freeze-test"]);
        let path = entry_path(dir.path(), e.set_id);
        std::fs::write(&path, serde_json::to_vec(&e).unwrap()).unwrap();
        let found = recover(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].outcome,
            RecoveryOutcome::Thawed {
                thawed: vec![],
                not_frozen: vec![],
                missing: vec![PathBuf::from("/nonexistent/vss-freeze-test")],
                failed: vec![],
            }
        );
        assert!(!path.exists());
    }

    #[test]
    fn unreadable_entries_are_kept_and_stale_temporaries_removed() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join(format!("{}.freeze", Uuid::new_v4()));
        std::fs::write(&bad, b"{not json").unwrap();
        let tmp = dir.path().join(format!("{}.freeze.tmp", Uuid::new_v4()));
        std::fs::write(&tmp, b"").unwrap();
        std::fs::write(dir.path().join("unrelated"), b"").unwrap();
        let found = recover(dir.path());
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0].outcome, RecoveryOutcome::Unreadable(_)));
        assert!(bad.exists());
        assert!(!tmp.exists());
        assert!(recover(&dir.path().join("missing")).is_empty());
    }
}

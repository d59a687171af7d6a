//! Consistency: which writers a snapshot set captures at one instant, and the record kept with
//! every snapshot (application-, filesystem- or crash-consistent, and why).
//!
//! A writer's data must be captured at one instant. It is not when one of its included
//! components has files on a volume that is not in the set (a btrfs subvolume nested in a
//! snapshotted one is such a volume: btrfs snapshots stop at subvolume boundaries), or when its
//! files span several volumes that are not committed atomically together (only providers that
//! freeze all volumes, commit all and thaw all are atomic across the set). Such a writer fails
//! PrepareForSnapshot with VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT instead of producing a backup
//! that will not restore.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vss_model::{
    ErrorCode, Id, VssError,
    session::Session,
    wmd::{WmdComponent, full_path},
    writers::{EventOutcome, Participation},
};

use crate::catalog::Consistency;
use crate::engine::{Engine, SessionCtx};
use crate::fanout::Delivered;
use crate::snapshot::CommitOutcome;

/// A volume of the set as this check sees it.
#[derive(Debug, Clone)]
pub(crate) struct SetMember {
    /// The resolved volume path.
    pub path: PathBuf,
    /// Committed at one instant together with the other `atomic_across_set` members.
    pub atomic_across_set: bool,
}

/// A writer instance, its name, and (component, file path) of its included components.
type WriterFiles = (Id, String, Vec<(String, String)>);

/// The writers (component mode, taking part) whose included components the set does not
/// capture at one instant, each with its INCONSISTENTSNAPSHOT failure.
pub(crate) async fn check_writers(
    engine: &Engine,
    ctx: &SessionCtx,
    members: &[SetMember],
) -> Vec<(Id, Delivered)> {
    // Which files each writer's included components (and their implicit subcomponents) name.
    let writers: Vec<WriterFiles> = engine
        .with_session(ctx, |s: &mut Session| {
            if !s.bcd.select_components {
                return Vec::new();
            }
            s.writers
                .iter()
                .filter(|w| w.participation == Participation::Full && !w.failed_event)
                .map(|w| {
                    let included = s
                        .bcd
                        .writer(w.metadata.instance_id)
                        .map(|c| c.components.clone())
                        .unwrap_or_default();
                    let mut files = Vec::new();
                    for c in &included {
                        let top = full_path(&c.logical_path, &c.name);
                        for wc in w.metadata.components.iter().filter(|wc| covers(&top, wc)) {
                            for f in wc.all_files() {
                                files.push((wc.full_path(), f.path.clone()));
                            }
                        }
                    }
                    (
                        w.metadata.instance_id,
                        w.metadata.writer_name.clone(),
                        files,
                    )
                })
                .collect()
        })
        .await;
    let members = members.to_vec();
    tokio::task::spawn_blocking(move || {
        // One read of the mount table for every path of every writer (1,000 writers: it was
        // a third of DoSnapshotSet's time when read per path).
        let mounts = vss_provider::volume::read_mountinfo().unwrap_or_default();
        writers
            .into_iter()
            .filter_map(|(id, name, files)| {
                check_one(&name, &files, &members, &mounts).err().map(|e| {
                    (
                        id,
                        Delivered {
                            outcome: EventOutcome::Failed(e),
                            updates: None,
                            elapsed: Duration::ZERO,
                        },
                    )
                })
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Whether WMD component `wc` is the included component `top` or one of its subcomponents.
fn covers(top: &str, wc: &WmdComponent) -> bool {
    let p = wc.full_path();
    p == top || p.starts_with(&format!("{top}\\"))
}

fn check_one(
    writer: &str,
    files: &[(String, String)],
    members: &[SetMember],
    mounts: &[vss_provider::volume::MountInfo],
) -> Result<(), VssError> {
    let mut used: Vec<&SetMember> = Vec::new();
    for (component, path) in files {
        let member = capturing_member(Path::new(path), members, mounts).map_err(|boundary| {
            VssError::new(
                ErrorCode::WriterErrorInconsistentSnapshot,
                format!(
                    "writer '{writer}': component '{component}' has files in {path}, which lies on volume {} that is not in the snapshot set; add that volume",
                    boundary.display()
                ),
            )
        })?;
        if !used.iter().any(|m| m.path == member.path) {
            used.push(member);
        }
    }
    if used.len() > 1 && !used.iter().all(|m| m.atomic_across_set) {
        let names: Vec<String> = used.iter().map(|m| m.path.display().to_string()).collect();
        return Err(VssError::new(
            ErrorCode::WriterErrorInconsistentSnapshot,
            format!(
                "writer '{writer}': its files span volumes {} that are not committed at one instant (only freezing providers are atomic across a set)",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The member of the set that captures `path`, or the volume boundary (mount point or btrfs
/// subvolume root) that keeps it out of the set.
fn capturing_member<'a>(
    path: &Path,
    members: &'a [SetMember],
    mounts: &[vss_provider::volume::MountInfo],
) -> Result<&'a SetMember, PathBuf> {
    // The path may not exist yet (a database not created); its nearest existing ancestor is on
    // the same volume.
    let mut existing = path.to_path_buf();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let existing = std::fs::canonicalize(&existing).unwrap_or(existing);
    let boundary = vss_provider::volume::covering_volume_in(mounts, &existing)
        .unwrap_or_else(|_| existing.clone());
    members
        .iter()
        .filter(|m| existing.starts_with(&m.path) && m.path.starts_with(&boundary))
        .max_by_key(|m| m.path.as_os_str().len())
        .ok_or(boundary)
}

/// The consistency record of a completed set.
pub(crate) fn record(session: &Session, outcome: &CommitOutcome) -> Consistency {
    let mut c = Consistency {
        commit_skew_us: outcome.skew_us,
        filesystem_frozen: outcome.filesystem_frozen,
        ..Default::default()
    };
    for w in &session.writers {
        let name = if w.metadata.instance_name.is_empty()
            || w.metadata.instance_name == w.metadata.writer_name
        {
            w.metadata.writer_name.clone()
        } else {
            format!("{} ({})", w.metadata.writer_name, w.metadata.instance_name)
        };
        // Any failure of a participant counts, even one after Thaw (PostSnapshot): a snapshot
        // whose writer failed is never recorded as application-consistent.
        match w.participation {
            Participation::Full if w.failed_event => {
                c.writers_failed
                    .push(format!("{name}: {} {}", w.state.name(), w.failure_name()));
            }
            Participation::Full => c.writers_frozen.push(name),
            Participation::PrepareOnly
            | Participation::Undecided
            | Participation::RestoreIfReplaceFails => c.writers_skipped.push(name),
        }
    }
    c.level = if !c.writers_frozen.is_empty() && c.writers_failed.is_empty() {
        "application-consistent"
    } else if outcome.filesystem_frozen {
        "filesystem-consistent"
    } else {
        "crash-consistent"
    }
    .to_owned();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, atomic: bool) -> SetMember {
        SetMember {
            path: PathBuf::from(p),
            atomic_across_set: atomic,
        }
    }

    #[test]
    fn spans_and_gaps() {
        let mounts = vss_provider::volume::read_mountinfo().unwrap();
        let check_one = |w: &str, files: &[(String, String)], members: &[SetMember]| {
            check_one(w, files, members, &mounts)
        };
        // Paths under /proc are on a mount of their own; "/" is the root mount.
        let members = [m("/", false), m("/proc", false)];
        let one = [("c".to_owned(), "/etc/hostname".to_owned())];
        assert!(check_one("w", &one, &members).is_ok());
        let two = [
            ("c".to_owned(), "/etc".to_owned()),
            ("d".to_owned(), "/proc/self".to_owned()),
        ];
        let e = check_one("w", &two, &members).unwrap_err();
        assert_eq!(e.code, ErrorCode::WriterErrorInconsistentSnapshot);
        assert!(
            e.message.contains("not committed at one instant"),
            "{}",
            e.message
        );
        let atomic = [m("/", true), m("/proc", true)];
        assert!(
            check_one("w", &two, &atomic).is_ok(),
            "atomic across the set: fine"
        );
        let only_root = [m("/", false)];
        let e = check_one(
            "w",
            &[("d".to_owned(), "/proc/self".to_owned())],
            &only_root,
        )
        .unwrap_err();
        assert!(e.message.contains("/proc"), "{}", e.message);
        // A path that does not exist yet counts from its nearest existing ancestor.
        assert!(
            check_one(
                "w",
                &[("c".to_owned(), "/etc/not/yet/there".to_owned())],
                &only_root
            )
            .is_ok()
        );
    }

    #[test]
    fn subcomponents_are_covered_by_their_set() {
        let wc = |lp: &str, n: &str| WmdComponent {
            component_type: vss_model::ComponentType::FileGroup,
            logical_path: lp.into(),
            name: n.into(),
            caption: String::new(),
            selectable: true,
            selectable_for_restore: false,
            notify_on_backup_complete: true,
            restore_metadata: false,
            component_flags: 0,
            files: vec![],
            log_files: vec![],
            dependencies: vec![],
        };
        assert!(covers("set", &wc("", "set")));
        assert!(covers("set", &wc("set", "child")));
        assert!(covers("set", &wc("set\\a", "b")));
        assert!(!covers("set", &wc("", "settings")));
        assert!(!covers("set", &wc("settings", "x")));
    }
}

//! Where a cluster keeps its files, and on which volumes they lie.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::pg::Db;

/// The directories of one cluster, as the server reports them (canonical paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `data_directory`.
    pub data_dir: PathBuf,
    /// The WAL directory (`<data>/pg_wal`, following its symlink when initdb --waldir was used).
    pub wal_dir: PathBuf,
    /// Every tablespace location outside the data directory (`pg_tablespace_location`).
    pub tablespaces: Vec<PathBuf>,
    /// The WAL directory lies on another volume than the data directory: a snapshot cannot
    /// capture them at one instant, so only the archive mode applies, and its WAL comes from
    /// the archive, not from a snapshot.
    pub wal_separate: bool,
}

impl Layout {
    /// Asks the server.
    pub fn discover(db: &Db, timeout: Duration) -> Result<Layout, String> {
        let data = db
            .scalar("SHOW data_directory", timeout)?
            .ok_or("the server reported no data_directory")?;
        let data_dir = canonical(Path::new(&data))?;
        let wal_dir = canonical(&data_dir.join("pg_wal"))?;
        let rows = db.query(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace \
             WHERE pg_tablespace_location(oid) <> '' ORDER BY spcname",
            timeout,
        )?;
        let mut tablespaces = Vec::new();
        for loc in rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let p = canonical(Path::new(&loc))?;
            if !p.starts_with(&data_dir) && !tablespaces.contains(&p) {
                tablespaces.push(p);
            }
        }
        let wal_separate = volume_root(&wal_dir)
            .map_err(|e| format!("{}: {e}", wal_dir.display()))?
            != volume_root(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        Ok(Layout {
            data_dir,
            wal_dir,
            tablespaces,
            wal_separate,
        })
    }

    /// Whether the cluster's files span several volumes (so only the archive mode applies).
    pub fn spans_volumes(&self) -> bool {
        if self.wal_separate {
            return true;
        }
        let roots: Vec<PathBuf> = self
            .directories()
            .into_iter()
            .filter_map(|d| volume_root(d).ok())
            .collect();
        roots.iter().any(|r| *r != roots[0])
    }

    /// Every directory the snapshot set must capture: the data directory, then the WAL
    /// directory when it lies outside the data directory but on the same volume (on another
    /// volume it is not needed: the archive mode restores WAL from the archive), then the
    /// tablespaces outside the data directory.
    pub fn directories(&self) -> Vec<&Path> {
        let mut dirs = vec![self.data_dir.as_path()];
        if !self.wal_dir.starts_with(&self.data_dir) && !self.wal_separate {
            dirs.push(&self.wal_dir);
        }
        dirs.extend(self.tablespaces.iter().map(PathBuf::as_path));
        dirs
    }
}

fn canonical(p: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The root of the volume `path` lies on: the highest ancestor on the same device. A mount
/// point and a btrfs subvolume (which has a device number of its own) both end a volume, so a
/// btrfs subvolume nested in a snapshotted one is a volume of its own (btrfs snapshots stop at
/// subvolume boundaries).
pub fn volume_root(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::fs::canonicalize(path)?;
    let dev = std::fs::metadata(&path)?.dev();
    let mut root = path.as_path();
    while let Some(parent) = root.parent() {
        if std::fs::metadata(parent)?.dev() != dev {
            break;
        }
        root = parent;
    }
    Ok(root.to_path_buf())
}

/// How the set captures the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Every directory, WAL included, lies on one volume of the set: one snapshot instant, the
    /// restore is crash recovery.
    Atomic {
        /// That volume.
        volume: PathBuf,
    },
    /// Every directory is on a volume of the set, but they span several volumes (or the WAL
    /// directory is on a volume of its own): the backup API (archive mode) is needed.
    Spread {
        /// Those volumes.
        volumes: Vec<PathBuf>,
    },
    /// A directory lies on a volume the set does not hold.
    Missing {
        /// The directory.
        dir: PathBuf,
        /// Its volume.
        volume: PathBuf,
    },
}

/// Classifies how a set whose volumes have the roots `set_roots` captures the directories
/// whose volume roots are `dir_roots` (directory, its volume root); `wal_separate`: the WAL
/// directory is on another volume than the data directory (and not among `dir_roots`).
pub fn classify(
    dir_roots: &[(PathBuf, PathBuf)],
    set_roots: &[PathBuf],
    wal_separate: bool,
) -> Capture {
    let mut used: Vec<PathBuf> = Vec::new();
    for (dir, root) in dir_roots {
        if !set_roots.contains(root) {
            return Capture::Missing {
                dir: dir.clone(),
                volume: root.clone(),
            };
        }
        if !used.contains(root) {
            used.push(root.clone());
        }
    }
    match used.len() {
        1 if !wal_separate => Capture::Atomic {
            volume: used.remove(0),
        },
        _ => Capture::Spread { volumes: used },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn one_volume_is_atomic() {
        let dirs = [(p("/v/pg/data"), p("/v/pg")), (p("/v/pg/wal"), p("/v/pg"))];
        assert_eq!(
            classify(&dirs, &[p("/other"), p("/v/pg")], false),
            Capture::Atomic { volume: p("/v/pg") }
        );
        // The WAL on a volume of its own: archive mode even with the data on one volume.
        assert_eq!(
            classify(&dirs[..1], &[p("/v/pg")], true),
            Capture::Spread {
                volumes: vec![p("/v/pg")]
            }
        );
    }

    #[test]
    fn several_volumes_are_spread() {
        let dirs = [(p("/a/data"), p("/a")), (p("/b/wal"), p("/b"))];
        assert_eq!(
            classify(&dirs, &[p("/a"), p("/b")], false),
            Capture::Spread {
                volumes: vec![p("/a"), p("/b")]
            }
        );
    }

    #[test]
    fn a_volume_outside_the_set_is_missing() {
        let dirs = [(p("/a/data"), p("/a")), (p("/b/wal"), p("/b"))];
        assert_eq!(
            classify(&dirs, &[p("/a")], false),
            Capture::Missing {
                dir: p("/b/wal"),
                volume: p("/b")
            }
        );
        // The top of a btrfs filesystem does not hold a subvolume nested in it.
        let nested = [(p("/mnt/pg/data"), p("/mnt/pg"))];
        assert!(matches!(
            classify(&nested, &[p("/mnt")], false),
            Capture::Missing { .. }
        ));
    }

    #[test]
    fn volume_root_of_a_plain_directory_is_its_mount() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let root = volume_root(&sub).unwrap();
        assert!(sub.canonicalize().unwrap().starts_with(&root));
        assert_eq!(
            std::fs::metadata(&root).unwrap().dev(),
            std::fs::metadata(&sub).unwrap().dev()
        );
    }
}

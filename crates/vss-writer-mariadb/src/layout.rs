//! Where a server keeps its files, and on which volumes they lie.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::Db;

/// Which server, which decides how the writer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB: BACKUP STAGE.
    MariaDb,
    /// MySQL (no BACKUP STAGE): FLUSH TABLES WITH READ LOCK.
    MySql,
}

/// The directories of one server, as it reports them (canonical paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `@@version`.
    pub version: String,
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `@@datadir`.
    pub data_dir: PathBuf,
    /// The other directories the server writes (binlog, redo, undo, Aria log) when they lie
    /// outside the data directory: (what, where).
    pub others: Vec<(String, PathBuf)>,
}

impl Layout {
    /// Asks the server.
    pub fn discover(db: &Db, timeout: Duration) -> Result<Layout, String> {
        let rows = db.query(
            "SELECT @@version, @@datadir, @@log_bin_basename, @@innodb_log_group_home_dir, \
             @@innodb_undo_directory",
            timeout,
        )?;
        let row = rows.into_iter().next().unwrap_or_default();
        let get = |i: usize| row.get(i).cloned().flatten().filter(|s| !s.is_empty());
        let version = get(0).unwrap_or_default();
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let data = get(1).ok_or("the server reported no datadir")?;
        let data_dir = canonical(Path::new(&data))?;
        let mut named: Vec<(&str, Option<String>)> = vec![
            (
                "binary log",
                get(2).map(|b| {
                    Path::new(&b)
                        .parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                }),
            ),
            ("InnoDB redo log", get(3)),
            ("InnoDB undo tablespaces", get(4)),
        ];
        let aria = if flavor == Flavor::MariaDb {
            db.scalar("SELECT @@aria_log_dir_path", timeout)
                .ok()
                .flatten()
        } else {
            None
        };
        named.push(("Aria log", aria));
        let mut others: Vec<(String, PathBuf)> = Vec::new();
        for (what, dir) in named {
            let Some(dir) = dir.filter(|d| !d.is_empty()) else {
                continue;
            };
            // Relative paths are relative to the data directory.
            let p = canonical(&data_dir.join(&dir))?;
            if !p.starts_with(&data_dir) && !others.iter().any(|(_, o)| *o == p) {
                others.push((what.to_owned(), p));
            }
        }
        Ok(Layout {
            version,
            flavor,
            data_dir,
            others,
        })
    }

    /// Every directory the snapshot set must capture at one instant.
    pub fn directories(&self) -> Vec<&Path> {
        let mut dirs = vec![self.data_dir.as_path()];
        dirs.extend(self.others.iter().map(|(_, p)| p.as_path()));
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

/// How the set captures the server's directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// Every directory lies on one volume of the set: one snapshot instant.
    Atomic {
        /// That volume.
        volume: PathBuf,
    },
    /// A directory lies on a volume the set does not hold.
    Missing {
        /// The directory.
        dir: PathBuf,
        /// Its volume.
        volume: PathBuf,
    },
    /// Every directory is in the set, but on several volumes: InnoDB keeps writing under
    /// BLOCK_COMMIT, so they would not be captured at one instant.
    Spread {
        /// Those volumes.
        volumes: Vec<PathBuf>,
    },
}

/// Classifies how a set whose volumes have the roots `set_roots` captures the directories
/// whose volume roots are `dir_roots` (directory, its volume root).
pub fn classify(dir_roots: &[(PathBuf, PathBuf)], set_roots: &[PathBuf]) -> Capture {
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
    if used.len() == 1 {
        Capture::Atomic {
            volume: used.remove(0),
        }
    } else {
        Capture::Spread { volumes: used }
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
        let dirs = [
            (p("/v/db/data"), p("/v/db")),
            (p("/v/db/binlog"), p("/v/db")),
        ];
        assert_eq!(
            classify(&dirs, &[p("/other"), p("/v/db")]),
            Capture::Atomic { volume: p("/v/db") }
        );
    }

    #[test]
    fn several_volumes_are_spread() {
        let dirs = [(p("/a/data"), p("/a")), (p("/b/binlog"), p("/b"))];
        assert_eq!(
            classify(&dirs, &[p("/a"), p("/b")]),
            Capture::Spread {
                volumes: vec![p("/a"), p("/b")]
            }
        );
    }

    #[test]
    fn a_volume_outside_the_set_is_missing() {
        let dirs = [(p("/a/data"), p("/a")), (p("/b/redo"), p("/b"))];
        assert_eq!(
            classify(&dirs, &[p("/a")]),
            Capture::Missing {
                dir: p("/b/redo"),
                volume: p("/b")
            }
        );
        let nested = [(p("/mnt/db/data"), p("/mnt/db"))];
        assert!(matches!(
            classify(&nested, &[p("/mnt")]),
            Capture::Missing { .. }
        ));
    }
}

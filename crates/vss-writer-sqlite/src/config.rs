//! The configuration: the `[[sqlite]]` entries of the writers' shared TOML file, or one
//! instance from the command line.
//!
//! ```toml
//! writers_dir = "/run/vss/writers"   # optional
//! coordinator_uid = 990              # optional
//!
//! [[sqlite]]
//! name = "app"                       # socket app.sock, instance name "app"
//! databases = ["/srv/app/app.db", "/srv/app/cache.db"]
//! freeze_timeout_ms = 60000          # optional
//! busy_timeout_ms = 10000            # optional: min(freeze_timeout_ms / 2, 10000)
//!
//! [[postgres]]                       # other writers' tables are ignored here
//! ```
//!
//! Unknown keys inside a `[[sqlite]]` entry are errors; other top-level keys and tables belong
//! to other writers and are ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;
use vss_writer::DEFAULT_FREEZE_TIMEOUT_MS;

/// The shared configuration file of the built-in writers.
pub const DEFAULT_CONFIG: &str = "/etc/vss/writers.toml";

/// The longest default busy timeout of Freeze's `BEGIN IMMEDIATE`.
const MAX_DEFAULT_BUSY_MS: u64 = 10_000;

#[derive(Debug, Deserialize)]
struct File {
    writers_dir: Option<PathBuf>,
    coordinator_uid: Option<u32>,
    #[serde(default)]
    sqlite: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    databases: Vec<PathBuf>,
    freeze_timeout_ms: Option<u64>,
    busy_timeout_ms: Option<u64>,
}

/// One writer instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// Absolute paths.
    pub databases: Vec<PathBuf>,
    pub freeze_timeout_ms: u64,
    pub busy_timeout_ms: u64,
}

/// Everything the process serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub writers_dir: PathBuf,
    pub coordinator_uid: Option<u32>,
    pub instances: Vec<Instance>,
}

impl Settings {
    /// Reads the `[[sqlite]]` instances of `path`.
    pub fn load(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> anyhow::Result<Settings> {
        let file: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut names = HashSet::new();
        let mut instances = Vec::new();
        for (i, e) in file.sqlite.into_iter().enumerate() {
            let what = format!("[[sqlite]] entry {} ({:?})", i + 1, e.name);
            ensure!(
                names.insert(e.name.clone()),
                "{what}: the name is used twice"
            );
            for db in &e.databases {
                ensure!(
                    db.is_absolute(),
                    "{what}: database {} is not an absolute path",
                    db.display()
                );
            }
            instances.push(
                Instance::new(e.name, e.databases, e.freeze_timeout_ms, e.busy_timeout_ms)
                    .context(what)?,
            );
        }
        Ok(Settings {
            writers_dir: file
                .writers_dir
                .unwrap_or_else(|| PathBuf::from(vss_writer::runtime::DEFAULT_WRITERS_DIR)),
            coordinator_uid: file.coordinator_uid,
            instances,
        })
    }

    /// One instance from the command line (relative database paths are made absolute).
    pub fn single(
        name: String,
        databases: Vec<PathBuf>,
        freeze_timeout_ms: Option<u64>,
        busy_timeout_ms: Option<u64>,
        writers_dir: Option<PathBuf>,
        coordinator_uid: Option<u32>,
    ) -> anyhow::Result<Settings> {
        let databases = databases
            .iter()
            .map(|d| std::path::absolute(d).with_context(|| d.display().to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Settings {
            writers_dir: writers_dir
                .unwrap_or_else(|| PathBuf::from(vss_writer::runtime::DEFAULT_WRITERS_DIR)),
            coordinator_uid,
            instances: vec![Instance::new(
                name,
                databases,
                freeze_timeout_ms,
                busy_timeout_ms,
            )?],
        })
    }
}

impl Instance {
    fn new(
        name: String,
        databases: Vec<PathBuf>,
        freeze_timeout_ms: Option<u64>,
        busy_timeout_ms: Option<u64>,
    ) -> anyhow::Result<Instance> {
        if name.is_empty() || name.contains('/') || name.contains('\0') || name.starts_with('.') {
            bail!("name {name:?} must be a plain file name (the socket is NAME.sock)");
        }
        ensure!(!databases.is_empty(), "no databases");
        let mut seen = HashSet::new();
        for db in &databases {
            ensure!(
                db.file_name().is_some(),
                "{} does not name a file",
                db.display()
            );
            ensure!(seen.insert(db), "database {} is listed twice", db.display());
        }
        // Resolve symbolic links in the directories when possible (realpath only stats: the
        // database is never opened here), so the file specs name the real volume.
        let databases = databases
            .into_iter()
            .map(|db| std::fs::canonicalize(&db).unwrap_or(db))
            .collect();
        let freeze = freeze_timeout_ms.unwrap_or(DEFAULT_FREEZE_TIMEOUT_MS);
        ensure!(freeze > 0, "freeze_timeout_ms must be positive");
        let busy = busy_timeout_ms.unwrap_or((freeze / 2).min(MAX_DEFAULT_BUSY_MS));
        ensure!(
            busy < freeze,
            "busy_timeout_ms ({busy}) must be below freeze_timeout_ms ({freeze})"
        );
        Ok(Instance {
            name,
            databases,
            freeze_timeout_ms: freeze,
            busy_timeout_ms: busy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_sqlite_entries() {
        let s = Settings::parse(
            r#"
            writers_dir = "/tmp/w"
            coordinator_uid = 990
            [[postgres]]
            name = "pg"
            whatever = 1
            [[sqlite]]
            name = "a"
            databases = ["/srv/a.db", "/srv/b.db"]
            [[sqlite]]
            name = "b"
            databases = ["/srv/c.db"]
            freeze_timeout_ms = 4000
            "#,
        )
        .unwrap();
        assert_eq!(s.writers_dir, PathBuf::from("/tmp/w"));
        assert_eq!(s.coordinator_uid, Some(990));
        assert_eq!(s.instances.len(), 2);
        assert_eq!(s.instances[0].freeze_timeout_ms, 60_000);
        assert_eq!(s.instances[0].busy_timeout_ms, 10_000);
        assert_eq!(s.instances[1].busy_timeout_ms, 2000);
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = [
            "[[sqlite]]\nname = \"a\"\ndatabases = [\"/a.db\"]\nbusy_timeout = 5\n",
            "[[sqlite]]\nname = \"a\"\ndatabases = [\"a.db\"]\n",
            "[[sqlite]]\nname = \"a\"\ndatabases = []\n",
            "[[sqlite]]\nname = \"a/b\"\ndatabases = [\"/a.db\"]\n",
            "[[sqlite]]\nname = \"a\"\ndatabases = [\"/a.db\"]\nfreeze_timeout_ms = 100\nbusy_timeout_ms = 100\n",
            "[[sqlite]]\nname = \"a\"\ndatabases = [\"/a.db\"]\n[[sqlite]]\nname = \"a\"\ndatabases = [\"/b.db\"]\n",
        ];
        for text in bad {
            assert!(Settings::parse(text).is_err(), "{text}");
        }
        let e = Settings::parse(bad[0]).unwrap_err();
        assert!(format!("{e:#}").contains("busy_timeout"), "{e:#}");
    }
}

//! The configuration: the `[[postgres]]` entries and the shared top-level keys of
//! `/etc/vss/writers.toml` (other writers' tables in the same file are ignored).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration file, shared by the built-in writers.
pub const DEFAULT_CONFIG: &str = "/etc/vss/writers.toml";

/// The parts of the shared file this writer reads.
#[derive(Debug, Deserialize, Default)]
pub struct FileConfig {
    /// Where the writers' sockets go (default `/run/vss/writers`).
    #[serde(default)]
    pub writers_dir: Option<PathBuf>,
    /// The uid vssd runs as, if not root.
    #[serde(default)]
    pub coordinator_uid: Option<u32>,
    /// One entry per PostgreSQL cluster.
    #[serde(default)]
    pub postgres: Vec<Instance>,
}

/// One PostgreSQL cluster to protect.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// The instance name: the socket is `<writers_dir>/<name>.sock`.
    pub name: String,
    /// A libpq-style connection string, e.g.
    /// `host=/var/run/postgresql port=5432 user=postgres`.
    pub connection: String,
    /// The Freeze→Thaw window in milliseconds (default 60000).
    #[serde(default)]
    pub freeze_timeout_ms: Option<u64>,
    /// The `restore_command` PostRestore writes for a restore of an archive-mode backup
    /// (fetching WAL from this cluster's archive, e.g. `cp /archive/%f %p`).
    #[serde(default)]
    pub restore_command: Option<String>,
}

impl FileConfig {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        let cfg: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names: Vec<&str> = Vec::new();
        for i in &cfg.postgres {
            if i.name.is_empty() || i.name.contains('/') || i.name.contains('\0') {
                return Err(format!(
                    "[[postgres]] name '{}' must be a plain non-empty file name",
                    i.name
                ));
            }
            if names.contains(&i.name.as_str()) {
                return Err(format!("[[postgres]] name '{}' appears twice", i.name));
            }
            names.push(&i.name);
        }
        Ok(cfg)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postgres_entries_and_ignores_other_writers() {
        let cfg = FileConfig::parse(
            r#"
writers_dir = "/run/vss/writers"
coordinator_uid = 991

[[postgres]]
name = "main"
connection = "host=/var/run/postgresql port=5432 user=postgres"

[[postgres]]
name = "second"
connection = "host=/tmp port=5433 user=postgres"
freeze_timeout_ms = 5000
restore_command = "cp /archive/%f %p"

[[sqlite]]
name = "x"
databases = ["/var/lib/x.db"]
"#,
        )
        .unwrap();
        assert_eq!(cfg.writers_dir, Some(PathBuf::from("/run/vss/writers")));
        assert_eq!(cfg.coordinator_uid, Some(991));
        assert_eq!(cfg.postgres.len(), 2);
        assert_eq!(cfg.postgres[1].freeze_timeout_ms, Some(5000));
        assert_eq!(
            cfg.postgres[1].restore_command.as_deref(),
            Some("cp /archive/%f %p")
        );
        assert_eq!(cfg.postgres[0].restore_command, None);
    }

    #[test]
    fn rejects_duplicates_and_unknown_keys() {
        let dup =
            "[[postgres]]\nname='a'\nconnection='x'\n[[postgres]]\nname='a'\nconnection='y'\n";
        assert!(FileConfig::parse(dup).unwrap_err().contains("twice"));
        let unknown = "[[postgres]]\nname='a'\nconnection='x'\nbogus=1\n";
        assert!(FileConfig::parse(unknown).is_err());
        let slash = "[[postgres]]\nname='a/b'\nconnection='x'\n";
        assert!(FileConfig::parse(slash).is_err());
    }
}

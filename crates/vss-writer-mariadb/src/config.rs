//! The configuration: the `[[mariadb]]` entries and the shared top-level keys of
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
    /// One entry per MariaDB / MySQL server.
    #[serde(default)]
    pub mariadb: Vec<Instance>,
}

/// One MariaDB or MySQL server to protect.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// The instance name: the socket is `<writers_dir>/<name>.sock`.
    pub name: String,
    /// The server's Unix socket (the writer connects as `user`, root by default, which
    /// MariaDB's unix_socket authentication admits).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// A connection URL instead, e.g. `mysql://backup:secret@localhost:3306`.
    #[serde(default)]
    pub url: Option<String>,
    /// The user for `socket` (default root).
    #[serde(default)]
    pub user: Option<String>,
    /// The Freeze→Thaw window in milliseconds (default 60000).
    #[serde(default)]
    pub freeze_timeout_ms: Option<u64>,
    /// The session's lock_wait_timeout in seconds while the writer takes its locks (default
    /// min(freeze timeout / 2, 30)); must stay below the freeze timeout.
    #[serde(default)]
    pub lock_wait_timeout_s: Option<u64>,
}

impl Instance {
    /// The freeze timeout in milliseconds.
    pub fn freeze_timeout_ms(&self) -> u64 {
        match self.freeze_timeout_ms {
            None | Some(0) => vss_writer::DEFAULT_FREEZE_TIMEOUT_MS,
            Some(ms) => ms,
        }
    }

    /// The lock wait timeout in seconds: at least 1, below the freeze timeout.
    pub fn lock_wait_timeout_s(&self) -> u64 {
        let freeze_s = self.freeze_timeout_ms() / 1000;
        let default = (freeze_s / 2).min(30);
        let max = freeze_s.saturating_sub(1);
        self.lock_wait_timeout_s.unwrap_or(default).min(max).max(1)
    }
}

impl FileConfig {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        let cfg: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut names: Vec<&str> = Vec::new();
        for i in &cfg.mariadb {
            if i.name.is_empty() || i.name.contains('/') || i.name.contains('\0') {
                return Err(format!(
                    "[[mariadb]] name '{}' must be a plain non-empty file name",
                    i.name
                ));
            }
            if names.contains(&i.name.as_str()) {
                return Err(format!("[[mariadb]] name '{}' appears twice", i.name));
            }
            if i.socket.is_some() == i.url.is_some() {
                return Err(format!(
                    "[[mariadb]] '{}' needs exactly one of socket and url",
                    i.name
                ));
            }
            if let Some(ms) = i.freeze_timeout_ms
                && ms != 0
                && ms < 2000
            {
                return Err(format!(
                    "[[mariadb]] '{}': freeze_timeout_ms must be at least 2000 (the lock wait timeout, in whole seconds, must fit below it)",
                    i.name
                ));
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
    fn reads_mariadb_entries_and_ignores_other_writers() {
        let cfg = FileConfig::parse(
            r#"
writers_dir = "/run/vss/writers"
coordinator_uid = 991

[[mariadb]]
name = "main"
socket = "/run/mysqld/mysqld.sock"

[[mariadb]]
name = "second"
url = "mysql://backup:x@localhost:3307"
freeze_timeout_ms = 10000
lock_wait_timeout_s = 3

[[postgres]]
name = "x"
connection = "host=/tmp"
"#,
        )
        .unwrap();
        assert_eq!(cfg.writers_dir, Some(PathBuf::from("/run/vss/writers")));
        assert_eq!(cfg.coordinator_uid, Some(991));
        assert_eq!(cfg.mariadb.len(), 2);
        assert_eq!(cfg.mariadb[0].freeze_timeout_ms(), 60000);
        assert_eq!(cfg.mariadb[0].lock_wait_timeout_s(), 30);
        assert_eq!(cfg.mariadb[1].freeze_timeout_ms(), 10000);
        assert_eq!(cfg.mariadb[1].lock_wait_timeout_s(), 3);
    }

    #[test]
    fn lock_wait_timeout_stays_below_the_freeze_timeout() {
        let mut i = Instance {
            name: "a".into(),
            socket: Some("/s".into()),
            url: None,
            user: None,
            freeze_timeout_ms: Some(10000),
            lock_wait_timeout_s: None,
        };
        assert_eq!(i.lock_wait_timeout_s(), 5);
        i.lock_wait_timeout_s = Some(100);
        assert_eq!(i.lock_wait_timeout_s(), 9);
        i.freeze_timeout_ms = Some(2000);
        i.lock_wait_timeout_s = None;
        assert_eq!(i.lock_wait_timeout_s(), 1);
    }

    #[test]
    fn rejects_bad_entries() {
        let dup = "[[mariadb]]\nname='a'\nsocket='/s'\n[[mariadb]]\nname='a'\nsocket='/t'\n";
        assert!(FileConfig::parse(dup).unwrap_err().contains("twice"));
        let unknown = "[[mariadb]]\nname='a'\nsocket='/s'\nbogus=1\n";
        assert!(FileConfig::parse(unknown).is_err());
        let slash = "[[mariadb]]\nname='a/b'\nsocket='/s'\n";
        assert!(FileConfig::parse(slash).is_err());
        let neither = "[[mariadb]]\nname='a'\n";
        assert!(
            FileConfig::parse(neither)
                .unwrap_err()
                .contains("exactly one")
        );
        let both = "[[mariadb]]\nname='a'\nsocket='/s'\nurl='mysql://x'\n";
        assert!(FileConfig::parse(both).unwrap_err().contains("exactly one"));
        let short = "[[mariadb]]\nname='a'\nsocket='/s'\nfreeze_timeout_ms=500\n";
        assert!(FileConfig::parse(short).is_err());
    }
}

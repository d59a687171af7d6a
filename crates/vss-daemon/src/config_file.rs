//! `/etc/vss/vssd.toml`: vssd's configuration file. Every key is optional; command-line options
//! and the environment variables VSS_SOCKET, VSS_WRITERS_DIR, VSS_STATE_DIR, VSS_RUN_DIR and
//! VSS_LOCK_FILE override it. Unknown keys are errors (a misspelt key must not be ignored
//! silently). See docs/vssd.md for an annotated example.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::Config;

/// The default location of the file.
pub const DEFAULT_PATH: &str = "/etc/vss/vssd.toml";

/// The file's contents.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Requester socket.
    pub socket: Option<PathBuf>,
    /// Writers directory.
    pub writers_dir: Option<PathBuf>,
    /// State directory (catalog).
    pub state_dir: Option<PathBuf>,
    /// Run directory (private mounts, freeze journal).
    pub run_dir: Option<PathBuf>,
    /// Host-wide snapshot-set lock.
    pub lock_file: Option<PathBuf>,
    /// The group (name or number) allowed to use the requester socket besides root.
    pub requester_group: Option<GroupSpec>,
    /// The uids vssd talks to as writers (root is not implied: list 0 too).
    pub writer_uids: Option<Vec<u32>>,
    /// The commit window in ms.
    pub commit_window_ms: Option<u64>,
    /// The freeze guard program.
    pub freeze_guard: Option<PathBuf>,
    /// Providers to use, in the order of automatic choice (names: btrfs, image, reflink,
    /// exec). Providers left out are not used.
    pub providers: Option<Vec<String>>,
    /// Writer event deadlines in ms, by event name (`Freeze = 5000`).
    pub timeouts: Option<BTreeMap<String, u64>>,
    /// btrfs provider settings.
    pub btrfs: Option<BtrfsSection>,
    /// reflink provider settings.
    pub reflink: Option<ReflinkSection>,
    /// exec provider settings.
    pub exec: Option<ExecSection>,
}

/// A group by name or number.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum GroupSpec {
    /// A gid.
    Id(u32),
    /// A group name from /etc/group.
    Name(String),
}

/// `[btrfs]`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BtrfsSection {
    /// The subvolume under the top level that holds snapshots (`.vss`).
    pub snapshot_subvolume: Option<String>,
}

/// `[reflink]`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReflinkSection {
    /// The directory at the root of the filesystem that holds clones (`.vss-reflink`).
    pub dir_name: Option<String>,
}

/// `[exec]`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    /// The administrator's snapshot command.
    pub command: Option<PathBuf>,
    /// How long it may run, in ms.
    pub timeout_ms: Option<u64>,
}

impl FileConfig {
    /// Reads `path`. A missing file at the default location is an empty configuration; a
    /// missing file that was named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<FileConfig, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Parses the TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies the file to `config` (which holds the defaults); fields already set from the
    /// command line or environment are passed as `Some` by the caller and win.
    pub fn apply(self, config: &mut Config) -> Result<(), String> {
        let set = |dst: &mut PathBuf, v: Option<PathBuf>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut config.socket, self.socket);
        set(&mut config.writers_dir, self.writers_dir);
        set(&mut config.state_dir, self.state_dir);
        set(&mut config.run_dir, self.run_dir);
        set(&mut config.lock_file, self.lock_file);
        if let Some(g) = self.requester_group {
            config.socket_group = Some(resolve_group(&g)?);
        }
        if let Some(uids) = self.writer_uids {
            config.writer_uids = uids;
        }
        if let Some(ms) = self.commit_window_ms {
            config.commit_window = Duration::from_millis(ms);
        }
        if self.freeze_guard.is_some() {
            config.guard_binary = self.freeze_guard;
        }
        if let Some(order) = self.providers {
            for name in &order {
                if !["btrfs", "image", "reflink", "exec"].contains(&name.as_str()) {
                    return Err(format!(
                        "providers: unknown provider '{name}' (btrfs, image, reflink, exec)"
                    ));
                }
            }
            config.provider_order = Some(order);
        }
        for (event, ms) in self.timeouts.unwrap_or_default() {
            config
                .deadlines
                .set_from_spec(&format!("{event}={ms}"))
                .map_err(|e| format!("timeouts: {e}"))?;
        }
        if let Some(b) = self.btrfs {
            config.btrfs_snapshot_subvolume = b
                .snapshot_subvolume
                .or(config.btrfs_snapshot_subvolume.take());
        }
        if let Some(r) = self.reflink {
            config.reflink_dir_name = r.dir_name.or(config.reflink_dir_name.take());
        }
        if let Some(x) = self.exec {
            if x.command.is_some() {
                config.exec_command = x.command;
            }
            if let Some(ms) = x.timeout_ms {
                config.exec_timeout = Duration::from_millis(ms);
            }
        }
        Ok(())
    }
}

/// A group name or number as a gid (names from /etc/group).
pub fn resolve_group(g: &GroupSpec) -> Result<u32, String> {
    match g {
        GroupSpec::Id(id) => Ok(*id),
        GroupSpec::Name(name) => {
            let text = std::fs::read_to_string("/etc/group")
                .map_err(|e| format!("cannot read /etc/group: {e}"))?;
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    Some((f.next()?, f.nth(1)?))
                })
                .find(|(n, _)| n == name)
                .and_then(|(_, gid)| gid.parse().ok())
                .ok_or_else(|| format!("requester_group: no group '{name}' in /etc/group"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../packaging/vssd.toml");

    #[test]
    fn the_shipped_example_parses_and_applies() {
        let f = FileConfig::parse(EXAMPLE).unwrap();
        let mut c = Config::system_default();
        f.apply(&mut c).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/vss/vssd.sock"));
        assert_eq!(c.commit_window, Duration::from_secs(10));
        assert_eq!(
            c.provider_order.as_deref(),
            Some(&["btrfs".to_owned(), "image".into(), "reflink".into()][..])
        );
        assert_eq!(c.deadlines.freeze, Duration::from_millis(20_000));
    }

    #[test]
    fn settings_and_errors() {
        let f = FileConfig::parse(
            r#"
            socket = "/x/s.sock"
            requester_group = 34
            commit_window_ms = 5000
            providers = ["reflink", "btrfs"]
            [timeouts]
            Freeze = 1500
            [btrfs]
            snapshot_subvolume = ".snaps"
            [exec]
            command = "/usr/local/bin/snap"
            timeout_ms = 2000
            "#,
        )
        .unwrap();
        let mut c = Config::system_default();
        f.apply(&mut c).unwrap();
        assert_eq!(c.socket, PathBuf::from("/x/s.sock"));
        assert_eq!(c.socket_group, Some(34));
        assert_eq!(c.commit_window, Duration::from_secs(5));
        assert_eq!(c.deadlines.freeze, Duration::from_millis(1500));
        assert_eq!(c.btrfs_snapshot_subvolume.as_deref(), Some(".snaps"));
        assert_eq!(c.exec_command, Some(PathBuf::from("/usr/local/bin/snap")));
        assert_eq!(c.exec_timeout, Duration::from_secs(2));
        assert!(
            FileConfig::parse("sockett = \"/x\"")
                .unwrap_err()
                .contains("sockett")
        );
        let bad_provider = FileConfig::parse("providers = [\"zfs\"]").unwrap();
        assert!(
            bad_provider
                .apply(&mut Config::system_default())
                .unwrap_err()
                .contains("zfs")
        );
        let bad_event = FileConfig::parse("[timeouts]\nFreez = 1").unwrap();
        assert!(bad_event.apply(&mut Config::system_default()).is_err());
        let root = FileConfig::parse("requester_group = \"root\"").unwrap();
        let mut c = Config::system_default();
        root.apply(&mut c).unwrap();
        assert_eq!(c.socket_group, Some(0));
        assert!(FileConfig::load(Path::new("/nonexistent/vssd.toml"), false).is_ok());
        assert!(FileConfig::load(Path::new("/nonexistent/vssd.toml"), true).is_err());
    }
}

//! The `[[script]]` entries of the shared writers configuration file.
//!
//! ```toml
//! writers_dir = "/run/vss/writers"   # optional
//! coordinator_uid = 990              # optional
//!
//! [[script]]
//! name = "qemu-hooks"
//! fsfreeze_hook_dir = "/etc/qemu/fsfreeze-hook.d"
//! vss_hook_dir = "/etc/vss/hooks.d"
//! timeout_ms = 30000           # per script run
//! freeze_timeout_ms = 60000    # Freeze→Thaw window announced in Identify
//! output_dir = "/run/vss/script-output/qemu-hooks"
//! ```
//!
//! Other top-level tables (other writers' sections) are ignored; unknown keys inside a
//! `[[script]]` entry are an error.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Default per-script timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default Freeze→Thaw window.
pub const DEFAULT_FREEZE_TIMEOUT_MS: u64 = 60_000;
/// Where script output goes by default (`<this>/<name>`); a tmpfs, never a frozen volume.
pub const DEFAULT_OUTPUT_ROOT: &str = "/run/vss/script-output";

/// The parts of the configuration file this binary reads.
#[derive(Debug, Deserialize, Default)]
pub struct File {
    /// The writers directory.
    pub writers_dir: Option<PathBuf>,
    /// The coordinator's uid, if not root.
    pub coordinator_uid: Option<u32>,
    /// The script writer instances.
    #[serde(default)]
    pub script: Vec<Entry>,
}

/// One `[[script]]` entry.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Instance name (socket `<name>.sock`).
    pub name: String,
    /// A qemu-guest-agent style `fsfreeze-hook.d`: scripts get `freeze` / `thaw`.
    pub fsfreeze_hook_dir: Option<PathBuf>,
    /// A vss hook directory: scripts get every VSS event name.
    pub vss_hook_dir: Option<PathBuf>,
    /// Per-script timeout.
    pub timeout_ms: Option<u64>,
    /// Freeze→Thaw window.
    pub freeze_timeout_ms: Option<u64>,
    /// Where each run's stdout/stderr go.
    pub output_dir: Option<PathBuf>,
}

/// One instance, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub fsfreeze_hook_dir: Option<PathBuf>,
    pub vss_hook_dir: Option<PathBuf>,
    pub timeout_ms: u64,
    pub freeze_timeout_ms: u64,
    pub output_dir: PathBuf,
}

impl Entry {
    /// Validates and applies the defaults.
    pub fn into_instance(self) -> anyhow::Result<Instance> {
        let n = self.name.as_str();
        if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
            bail!("script writer name '{n}' must be a plain file name");
        }
        if self.fsfreeze_hook_dir.is_none() && self.vss_hook_dir.is_none() {
            bail!("script writer '{n}' has neither fsfreeze_hook_dir nor vss_hook_dir");
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let freeze_timeout_ms = self.freeze_timeout_ms.unwrap_or(DEFAULT_FREEZE_TIMEOUT_MS);
        if timeout_ms == 0 || freeze_timeout_ms == 0 {
            bail!("script writer '{n}': timeouts must be positive");
        }
        Ok(Instance {
            output_dir: self
                .output_dir
                .unwrap_or_else(|| Path::new(DEFAULT_OUTPUT_ROOT).join(n)),
            name: self.name,
            fsfreeze_hook_dir: self.fsfreeze_hook_dir,
            vss_hook_dir: self.vss_hook_dir,
            timeout_ms,
            freeze_timeout_ms,
        })
    }
}

/// Parses the configuration text.
pub fn parse(text: &str) -> anyhow::Result<File> {
    Ok(toml::from_str(text)?)
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> anyhow::Result<File> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_script_entries_and_ignores_other_tables() {
        let f = parse(
            r#"
            writers_dir = "/tmp/w"
            coordinator_uid = 12
            [[postgresql]]
            name = "pg"
            whatever = 1
            [[script]]
            name = "hooks"
            fsfreeze_hook_dir = "/etc/qemu/fsfreeze-hook.d"
            timeout_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(f.writers_dir.as_deref(), Some(Path::new("/tmp/w")));
        assert_eq!(f.coordinator_uid, Some(12));
        let i = f.script[0].clone().into_instance().unwrap();
        assert_eq!(i.timeout_ms, 500);
        assert_eq!(i.freeze_timeout_ms, DEFAULT_FREEZE_TIMEOUT_MS);
        assert_eq!(i.output_dir, Path::new("/run/vss/script-output/hooks"));
    }

    #[test]
    fn rejects_unknown_keys_and_empty_entries() {
        assert!(parse("[[script]]\nname = \"a\"\nvss_hook_dir = \"/x\"\nbogus = 1\n").is_err());
        let f = parse("[[script]]\nname = \"a\"\n").unwrap();
        assert!(f.script[0].clone().into_instance().is_err());
        let f = parse("[[script]]\nname = \"a/b\"\nvss_hook_dir = \"/x\"\n").unwrap();
        assert!(f.script[0].clone().into_instance().is_err());
    }
}

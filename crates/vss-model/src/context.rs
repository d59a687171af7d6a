//! Snapshot contexts and volume snapshot attributes (vss-model.md §8.1, §8.2).
//!
//! A context is a bit set of attributes; the named contexts are fixed combinations. SetContext
//! accepts one of the four contexts we support, optionally OR'd with the attribute bits a
//! requester may add; [`SnapshotContext::validate_for_set_context`] is that rule.

use crate::{ErrorCode, VssError};

/// `VSS_VOLUME_SNAPSHOT_ATTRIBUTES` bits.
pub mod attr {
    /// Survives reboot.
    pub const PERSISTENT: u32 = 0x0000_0001;
    /// Read-only at once; no writer auto-recovery.
    pub const NO_AUTORECOVERY: u32 = 0x0000_0002;
    /// "Previous Versions" snapshot.
    pub const CLIENT_ACCESSIBLE: u32 = 0x0000_0004;
    /// Not deleted when the requester's session ends.
    pub const NO_AUTO_RELEASE: u32 = 0x0000_0008;
    /// Made without writers.
    pub const NO_WRITERS: u32 = 0x0000_0010;
    /// To be moved to another host.
    pub const TRANSPORTABLE: u32 = 0x0000_0020;
    /// Not exposed.
    pub const NOT_SURFACED: u32 = 0x0000_0040;
    /// Skip transaction-manager integration.
    pub const NOT_TRANSACTED: u32 = 0x0000_0080;
    /// Made by a hardware provider.
    pub const HARDWARE_ASSISTED: u32 = 0x0001_0000;
    /// Copy-on-write style.
    pub const DIFFERENTIAL: u32 = 0x0002_0000;
    /// Full clone.
    pub const PLEX: u32 = 0x0004_0000;
    /// Arrived through ImportSnapshots.
    pub const IMPORTED: u32 = 0x0008_0000;
    /// Exposed locally.
    pub const EXPOSED_LOCALLY: u32 = 0x0010_0000;
    /// Exposed as a share.
    pub const EXPOSED_REMOTELY: u32 = 0x0020_0000;
    /// Writers must auto-recover.
    pub const AUTORECOVER: u32 = 0x0040_0000;
    /// For non-backup use; writers auto-recover.
    pub const ROLLBACK_RECOVERY: u32 = 0x0080_0000;
    /// Reserved.
    pub const DELAYED_POSTSNAPSHOT: u32 = 0x0100_0000;
    /// Enforce TxF recovery.
    pub const TXF_RECOVERY: u32 = 0x0200_0000;
    /// File-share snapshot.
    pub const FILE_SHARE: u32 = 0x0400_0000;

    /// The bits a requester may OR into a context at SetContext (§8.1).
    pub const REQUESTER_ALLOWED: u32 = TRANSPORTABLE
        | DIFFERENTIAL
        | PLEX
        | NO_AUTORECOVERY
        | NOT_TRANSACTED
        | ROLLBACK_RECOVERY
        | TXF_RECOVERY;

    /// Names of the bits, for display (`Persistent, No auto release`).
    pub const NAMES: &[(u32, &str)] = &[
        (PERSISTENT, "Persistent"),
        (NO_AUTORECOVERY, "No auto recovery"),
        (CLIENT_ACCESSIBLE, "Client-accessible"),
        (NO_AUTO_RELEASE, "No auto release"),
        (NO_WRITERS, "No writers"),
        (TRANSPORTABLE, "Transportable"),
        (NOT_SURFACED, "Not surfaced"),
        (NOT_TRANSACTED, "Not transacted"),
        (HARDWARE_ASSISTED, "Hardware"),
        (DIFFERENTIAL, "Differential"),
        (PLEX, "Plex"),
        (IMPORTED, "Imported"),
        (EXPOSED_LOCALLY, "Exposed locally"),
        (EXPOSED_REMOTELY, "Exposed remotely"),
        (AUTORECOVER, "Auto recovered"),
        (ROLLBACK_RECOVERY, "Rollback recovery"),
        (DELAYED_POSTSNAPSHOT, "Delayed post snapshot"),
        (TXF_RECOVERY, "TxF recovery"),
        (FILE_SHARE, "File share"),
    ];

    /// The names of the bits set in `bits`.
    pub fn describe(bits: u32) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A `VSS_SNAPSHOT_CONTEXT` value: a base context plus optional attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotContext(pub u32);

impl SnapshotContext {
    /// `VSS_CTX_BACKUP`: auto-release, with writers (the default).
    pub const BACKUP: SnapshotContext = SnapshotContext(0);
    /// `VSS_CTX_FILE_SHARE_BACKUP`: auto-release, no writers.
    pub const FILE_SHARE_BACKUP: SnapshotContext = SnapshotContext(attr::NO_WRITERS);
    /// `VSS_CTX_NAS_ROLLBACK`: persistent, no writers.
    pub const NAS_ROLLBACK: SnapshotContext =
        SnapshotContext(attr::PERSISTENT | attr::NO_AUTO_RELEASE | attr::NO_WRITERS);
    /// `VSS_CTX_APP_ROLLBACK`: persistent, with writers.
    pub const APP_ROLLBACK: SnapshotContext =
        SnapshotContext(attr::PERSISTENT | attr::NO_AUTO_RELEASE);
    /// `VSS_CTX_CLIENT_ACCESSIBLE` (not supported here).
    pub const CLIENT_ACCESSIBLE: SnapshotContext = SnapshotContext(
        attr::PERSISTENT | attr::CLIENT_ACCESSIBLE | attr::NO_AUTO_RELEASE | attr::NO_WRITERS,
    );
    /// `VSS_CTX_CLIENT_ACCESSIBLE_WRITERS` (not supported here).
    pub const CLIENT_ACCESSIBLE_WRITERS: SnapshotContext =
        SnapshotContext(attr::PERSISTENT | attr::CLIENT_ACCESSIBLE | attr::NO_AUTO_RELEASE);
    /// `VSS_CTX_ALL`: only for Query and DeleteSnapshots.
    pub const ALL: SnapshotContext = SnapshotContext(0xFFFF_FFFF);

    const SUPPORTED: [SnapshotContext; 4] = [
        Self::BACKUP,
        Self::FILE_SHARE_BACKUP,
        Self::NAS_ROLLBACK,
        Self::APP_ROLLBACK,
    ];

    /// The raw value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// The base context without requester-added attribute bits.
    pub const fn base(self) -> SnapshotContext {
        SnapshotContext(self.0 & !attr::REQUESTER_ALLOWED)
    }

    /// Checks a value given to SetContext: one of BACKUP, FILE_SHARE_BACKUP, APP_ROLLBACK,
    /// NAS_ROLLBACK, optionally with [`attr::REQUESTER_ALLOWED`] bits (DIFFERENTIAL and PLEX
    /// exclusive). Anything else is `E_INVALIDARG`.
    pub fn validate_for_set_context(value: i64) -> Result<SnapshotContext, VssError> {
        let invalid = |why: &str| {
            VssError::new(
                ErrorCode::InvalidArg,
                format!(
                    "context {value:#x} is not accepted: {why}; use VSS_CTX_BACKUP (0), \
                     VSS_CTX_FILE_SHARE_BACKUP (0x10), VSS_CTX_APP_ROLLBACK (0x9) or \
                     VSS_CTX_NAS_ROLLBACK (0x19), optionally OR'd with TRANSPORTABLE, \
                     DIFFERENTIAL or PLEX, NO_AUTORECOVERY, NOT_TRANSACTED, ROLLBACK_RECOVERY, \
                     TXF_RECOVERY"
                ),
            )
        };
        let Ok(raw) = u32::try_from(value) else {
            return Err(invalid(if value == -1 {
                "VSS_CTX_ALL is only for Query and DeleteSnapshots"
            } else {
                "out of range"
            }));
        };
        let ctx = SnapshotContext(raw);
        if ctx == Self::ALL {
            return Err(invalid("VSS_CTX_ALL is only for Query and DeleteSnapshots"));
        }
        if !Self::SUPPORTED.contains(&ctx.base()) {
            return Err(invalid("unknown or unsupported base context"));
        }
        if raw & attr::DIFFERENTIAL != 0 && raw & attr::PLEX != 0 {
            return Err(invalid("DIFFERENTIAL and PLEX exclude each other"));
        }
        Ok(ctx)
    }

    /// Whether writers take part (no NO_WRITERS bit).
    pub const fn has_writers(self) -> bool {
        self.0 & attr::NO_WRITERS == 0
    }

    /// Whether snapshots of this context survive the session (NO_AUTO_RELEASE).
    pub const fn is_no_auto_release(self) -> bool {
        self.0 & attr::NO_AUTO_RELEASE != 0
    }

    /// Whether snapshots of this context are persistent.
    pub const fn is_persistent(self) -> bool {
        self.0 & attr::PERSISTENT != 0
    }

    /// Whether a snapshot with attributes `snapshot_attributes` is visible to a Query in this
    /// context (VSS_CTX_ALL sees everything; otherwise the base contexts must match).
    pub fn sees(self, snapshot_attributes: u32) -> bool {
        if self == Self::ALL {
            return true;
        }
        let base_bits =
            attr::PERSISTENT | attr::NO_AUTO_RELEASE | attr::NO_WRITERS | attr::CLIENT_ACCESSIBLE;
        self.0 & base_bits == snapshot_attributes & base_bits
    }

    /// The symbolic name of the base context, if it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.base() {
            Self::BACKUP => "VSS_CTX_BACKUP",
            Self::FILE_SHARE_BACKUP => "VSS_CTX_FILE_SHARE_BACKUP",
            Self::NAS_ROLLBACK => "VSS_CTX_NAS_ROLLBACK",
            Self::APP_ROLLBACK => "VSS_CTX_APP_ROLLBACK",
            Self::CLIENT_ACCESSIBLE => "VSS_CTX_CLIENT_ACCESSIBLE",
            Self::CLIENT_ACCESSIBLE_WRITERS => "VSS_CTX_CLIENT_ACCESSIBLE_WRITERS",
            _ if self == Self::ALL => "VSS_CTX_ALL",
            _ => return None,
        })
    }
}

impl Default for SnapshotContext {
    fn default() -> Self {
        Self::BACKUP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_values_match_the_headers() {
        assert_eq!(SnapshotContext::NAS_ROLLBACK.value(), 0x19);
        assert_eq!(SnapshotContext::APP_ROLLBACK.value(), 0x09);
        assert_eq!(SnapshotContext::CLIENT_ACCESSIBLE.value(), 0x1D);
        assert_eq!(SnapshotContext::CLIENT_ACCESSIBLE_WRITERS.value(), 0x0D);
        assert_eq!(SnapshotContext::FILE_SHARE_BACKUP.value(), 0x10);
    }

    #[test]
    fn set_context_validation_table() {
        let ok: &[i64] = &[
            0,
            0x10,
            0x19,
            0x09,
            0x20,
            0x0002_0000 | 0x09,
            0x0004_0000,
            0x2,
            0x80,
        ];
        for v in ok {
            assert!(
                SnapshotContext::validate_for_set_context(*v).is_ok(),
                "{v:#x}"
            );
        }
        let bad: &[i64] = &[
            -1,
            0xFFFF_FFFF,
            0x1D,
            0x0D,
            0x4,
            0x8,
            0x1,
            0x0006_0000,
            0x40,
            1 << 40,
        ];
        for v in bad {
            let e = SnapshotContext::validate_for_set_context(*v).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArg, "{v:#x}");
        }
    }

    #[test]
    fn query_visibility() {
        let persistent = SnapshotContext::APP_ROLLBACK.value();
        assert!(SnapshotContext::ALL.sees(persistent));
        assert!(SnapshotContext::APP_ROLLBACK.sees(persistent | attr::DIFFERENTIAL));
        assert!(!SnapshotContext::BACKUP.sees(persistent));
        assert!(SnapshotContext::BACKUP.sees(0));
    }
}

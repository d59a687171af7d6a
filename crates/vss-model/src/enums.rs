//! The VSS enumerations with their Windows numeric values and symbolic names.
//!
//! Every enumeration here keeps the value Microsoft's headers give it (vss-model.md §5, §6, §8), so
//! that tools can print the numbers operators know (`[1] Stable`). On the wire they travel as
//! their symbolic names (`"VSS_BT_FULL"`); the writer state is the one exception and travels as
//! both (see docs/protocol.md).

use std::fmt;

/// Declares a closed VSS enumeration: variants with their numeric value and symbolic name, and the
/// conversions both ways. With the `serde` feature the enumeration (de)serializes as its name.
macro_rules! vss_enum {
    (
        $(#[$meta:meta])*
        $name:ident : $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr => $sym:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The numeric value Windows gives this variant.
            pub const fn value(self) -> $repr {
                match self { $( $name::$variant => $value, )+ }
            }

            /// The symbolic name, e.g. `VSS_BT_FULL`.
            pub const fn name(self) -> &'static str {
                match self { $( $name::$variant => $sym, )+ }
            }

            /// The variant with this numeric value.
            pub fn from_value(value: $repr) -> Option<Self> {
                match value {
                    $( v if v == $value => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The variant with this symbolic name (exact match).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $sym => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::VssError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or_else(|| crate::VssError::new(
                    crate::ErrorCode::InvalidArg,
                    format!(concat!("'{}' is not a ", stringify!($name), "; expected one of {}"),
                        s, Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")),
                ))
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(|e: crate::VssError| serde::de::Error::custom(e.message))
            }
        }
    };
}

vss_enum! {
    /// `VSS_BACKUP_TYPE` (§6.4).
    BackupType: u32 {
        Undefined = 0 => "VSS_BT_UNDEFINED",
        Full = 1 => "VSS_BT_FULL",
        Incremental = 2 => "VSS_BT_INCREMENTAL",
        Differential = 3 => "VSS_BT_DIFFERENTIAL",
        Log = 4 => "VSS_BT_LOG",
        Copy = 5 => "VSS_BT_COPY",
        Other = 6 => "VSS_BT_OTHER",
    }
}

vss_enum! {
    /// `VSS_RESTORE_TYPE` (§6.4).
    RestoreType: u32 {
        Undefined = 0 => "VSS_RTYPE_UNDEFINED",
        ByCopy = 1 => "VSS_RTYPE_BY_COPY",
        Import = 2 => "VSS_RTYPE_IMPORT",
        Other = 3 => "VSS_RTYPE_OTHER",
    }
}

vss_enum! {
    /// `VSS_COMPONENT_TYPE` (§6.1).
    ComponentType: u32 {
        Undefined = 0 => "VSS_CT_UNDEFINED",
        Database = 1 => "VSS_CT_DATABASE",
        FileGroup = 2 => "VSS_CT_FILEGROUP",
    }
}

vss_enum! {
    /// `VSS_USAGE_TYPE` (§5.6).
    UsageType: u32 {
        Undefined = 0 => "VSS_UT_UNDEFINED",
        BootableSystemState = 1 => "VSS_UT_BOOTABLESYSTEMSTATE",
        SystemService = 2 => "VSS_UT_SYSTEMSERVICE",
        UserData = 3 => "VSS_UT_USERDATA",
        Other = 4 => "VSS_UT_OTHER",
    }
}

vss_enum! {
    /// `VSS_SOURCE_TYPE` (§5.6).
    SourceType: u32 {
        Undefined = 0 => "VSS_ST_UNDEFINED",
        TransactedDb = 1 => "VSS_ST_TRANSACTEDDB",
        NonTransactedDb = 2 => "VSS_ST_NONTRANSACTEDDB",
        Other = 3 => "VSS_ST_OTHER",
    }
}

vss_enum! {
    /// `VSS_APPLICATION_LEVEL` (§5.6). Freeze goes front end, back end, system, system RM.
    ApplicationLevel: i32 {
        Unknown = 0 => "VSS_APP_UNKNOWN",
        System = 1 => "VSS_APP_SYSTEM",
        BackEnd = 2 => "VSS_APP_BACK_END",
        FrontEnd = 3 => "VSS_APP_FRONT_END",
        SystemRm = 4 => "VSS_APP_SYSTEM_RM",
        Auto = -1 => "VSS_APP_AUTO",
    }
}

impl ApplicationLevel {
    /// The freeze wave this level belongs to (0 first), or `None` for UNKNOWN and AUTO, which a
    /// writer may not declare (it fails Identify). SYSTEM and SYSTEM_RM freeze together, last.
    pub const fn freeze_wave(self) -> Option<u8> {
        match self {
            ApplicationLevel::FrontEnd => Some(0),
            ApplicationLevel::BackEnd => Some(1),
            ApplicationLevel::System | ApplicationLevel::SystemRm => Some(2),
            ApplicationLevel::Unknown | ApplicationLevel::Auto => None,
        }
    }
}

vss_enum! {
    /// `VSS_WRITER_STATE` (§5.3).
    WriterState: u32 {
        Unknown = 0 => "VSS_WS_UNKNOWN",
        Stable = 1 => "VSS_WS_STABLE",
        WaitingForFreeze = 2 => "VSS_WS_WAITING_FOR_FREEZE",
        WaitingForThaw = 3 => "VSS_WS_WAITING_FOR_THAW",
        WaitingForPostSnapshot = 4 => "VSS_WS_WAITING_FOR_POST_SNAPSHOT",
        WaitingForBackupComplete = 5 => "VSS_WS_WAITING_FOR_BACKUP_COMPLETE",
        FailedAtIdentify = 6 => "VSS_WS_FAILED_AT_IDENTIFY",
        FailedAtPrepareBackup = 7 => "VSS_WS_FAILED_AT_PREPARE_BACKUP",
        FailedAtPrepareSnapshot = 8 => "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT",
        FailedAtFreeze = 9 => "VSS_WS_FAILED_AT_FREEZE",
        FailedAtThaw = 10 => "VSS_WS_FAILED_AT_THAW",
        FailedAtPostSnapshot = 11 => "VSS_WS_FAILED_AT_POST_SNAPSHOT",
        FailedAtBackupComplete = 12 => "VSS_WS_FAILED_AT_BACKUP_COMPLETE",
        FailedAtPreRestore = 13 => "VSS_WS_FAILED_AT_PRE_RESTORE",
        FailedAtPostRestore = 14 => "VSS_WS_FAILED_AT_POST_RESTORE",
        FailedAtBackupShutdown = 15 => "VSS_WS_FAILED_AT_BACKUPSHUTDOWN",
    }
}

impl WriterState {
    /// Whether this is one of the `FAILED_AT_*` states.
    pub const fn is_failed(self) -> bool {
        self.value() >= 6
    }

    /// The label `vss list writers` prints, in vssadmin's words (`[1] Stable`).
    pub const fn label(self) -> &'static str {
        match self {
            WriterState::Unknown => "Unknown",
            WriterState::Stable => "Stable",
            WriterState::WaitingForFreeze => "Waiting for freeze",
            WriterState::WaitingForThaw => "Frozen",
            WriterState::WaitingForPostSnapshot => "Waiting for post snapshot",
            WriterState::WaitingForBackupComplete => "Waiting for completion",
            WriterState::FailedAtIdentify
            | WriterState::FailedAtPrepareBackup
            | WriterState::FailedAtPrepareSnapshot
            | WriterState::FailedAtFreeze
            | WriterState::FailedAtThaw
            | WriterState::FailedAtPostSnapshot
            | WriterState::FailedAtBackupComplete
            | WriterState::FailedAtPreRestore
            | WriterState::FailedAtPostRestore
            | WriterState::FailedAtBackupShutdown => "Failed",
        }
    }
}

vss_enum! {
    /// `VSS_RESTOREMETHOD_ENUM` (§6.4).
    RestoreMethod: u32 {
        Undefined = 0 => "VSS_RME_UNDEFINED",
        RestoreIfNotThere = 1 => "VSS_RME_RESTORE_IF_NOT_THERE",
        RestoreIfCanReplace = 2 => "VSS_RME_RESTORE_IF_CAN_REPLACE",
        StopRestoreStart = 3 => "VSS_RME_STOP_RESTORE_START",
        RestoreToAlternateLocation = 4 => "VSS_RME_RESTORE_TO_ALTERNATE_LOCATION",
        RestoreAtReboot = 5 => "VSS_RME_RESTORE_AT_REBOOT",
        RestoreAtRebootIfCannotReplace = 6 => "VSS_RME_RESTORE_AT_REBOOT_IF_CANNOT_REPLACE",
        Custom = 7 => "VSS_RME_CUSTOM",
        RestoreStopStart = 8 => "VSS_RME_RESTORE_STOP_START",
    }
}

vss_enum! {
    /// `VSS_WRITERRESTORE_ENUM` (§5.6): does the writer need restore events.
    WriterRestore: u32 {
        Undefined = 0 => "VSS_WRE_UNDEFINED",
        Never = 1 => "VSS_WRE_NEVER",
        IfReplaceFails = 2 => "VSS_WRE_IF_REPLACE_FAILS",
        Always = 3 => "VSS_WRE_ALWAYS",
    }
}

vss_enum! {
    /// `VSS_RESTORE_TARGET` (§6.4): where a component's files are restored.
    RestoreTarget: u32 {
        Undefined = 0 => "VSS_RT_UNDEFINED",
        Original = 1 => "VSS_RT_ORIGINAL",
        Alternate = 2 => "VSS_RT_ALTERNATE",
        Directed = 3 => "VSS_RT_DIRECTED",
        OriginalLocation = 4 => "VSS_RT_ORIGINAL_LOCATION",
    }
}

vss_enum! {
    /// `VSS_FILE_RESTORE_STATUS` (§6.4).
    FileRestoreStatus: u32 {
        Undefined = 0 => "VSS_RS_UNDEFINED",
        None = 1 => "VSS_RS_NONE",
        All = 2 => "VSS_RS_ALL",
        Failed = 3 => "VSS_RS_FAILED",
    }
}

vss_enum! {
    /// `VSS_SNAPSHOT_STATE` (§8.3), the subset a catalog entry can be in.
    SnapshotState: u32 {
        Unknown = 0 => "VSS_SS_UNKNOWN",
        Preparing = 1 => "VSS_SS_PREPARING",
        Committed = 7 => "VSS_SS_COMMITTED",
        Created = 12 => "VSS_SS_CREATED",
        Aborted = 13 => "VSS_SS_ABORTED",
        Deleted = 14 => "VSS_SS_DELETED",
    }
}

vss_enum! {
    /// `VSS_PROVIDER_TYPE` (§8.3).
    ProviderType: u32 {
        Unknown = 0 => "VSS_PROV_UNKNOWN",
        System = 1 => "VSS_PROV_SYSTEM",
        Software = 2 => "VSS_PROV_SOFTWARE",
        Hardware = 3 => "VSS_PROV_HARDWARE",
        FileShare = 4 => "VSS_PROV_FILESHARE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_round_trip() {
        for v in WriterState::ALL {
            assert_eq!(WriterState::from_value(v.value()), Some(*v));
            assert_eq!(WriterState::from_name(v.name()), Some(*v));
        }
        assert_eq!(WriterState::FailedAtBackupShutdown.value(), 15);
        assert_eq!(BackupType::Copy.value(), 5);
        assert_eq!(ApplicationLevel::Auto.value(), -1);
        assert_eq!(
            "VSS_CT_FILEGROUP".parse::<ComponentType>().unwrap(),
            ComponentType::FileGroup
        );
        let err = "VSS_CT_NOPE".parse::<ComponentType>().unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidArg);
    }

    #[test]
    fn freeze_waves_follow_front_back_system() {
        assert!(ApplicationLevel::FrontEnd.freeze_wave() < ApplicationLevel::BackEnd.freeze_wave());
        assert!(ApplicationLevel::BackEnd.freeze_wave() < ApplicationLevel::System.freeze_wave());
        assert_eq!(
            ApplicationLevel::System.freeze_wave(),
            ApplicationLevel::SystemRm.freeze_wave()
        );
        assert_eq!(ApplicationLevel::Auto.freeze_wave(), None);
        assert_eq!(ApplicationLevel::Unknown.freeze_wave(), None);
    }
}

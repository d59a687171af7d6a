//! The one error type of the project: the VSS error list with its HRESULT values (vss-model.md §4).
//!
//! Every failure that crosses a boundary (requester call, writer event, provider step) is a
//! [`VssError`]: an [`ErrorCode`] naming the VSS condition plus a message that says what to do.
//! The success codes that asynchronous operations report (`VSS_S_ASYNC_*`) are in [`AsyncStatus`].

use std::fmt;

/// Declares the error codes with their HRESULT and symbolic name.
macro_rules! error_codes {
    ( $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $sym:literal, )+ ) => {
        /// A VSS or generic COM error condition (`VSS_E_*`, `E_*`), with its HRESULT.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$vmeta])* $variant, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            /// The HRESULT as an unsigned 32-bit integer (`0x80042301`).
            pub const fn hresult(self) -> u32 {
                match self { $( ErrorCode::$variant => $value, )+ }
            }

            /// The symbolic name (`VSS_E_BAD_STATE`).
            pub const fn name(self) -> &'static str {
                match self { $( ErrorCode::$variant => $sym, )+ }
            }

            /// The code with this HRESULT.
            pub fn from_hresult(hr: u32) -> Option<Self> {
                match hr { $( $value => Some(ErrorCode::$variant), )+ _ => None }
            }

            /// The code with this symbolic name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $sym => Some(ErrorCode::$variant), )+ _ => None }
            }
        }
    };
}

error_codes! {
    // Generic HRESULTs (§4.2).
    Fail = 0x8000_4005 => "E_FAIL",
    NotImpl = 0x8000_4001 => "E_NOTIMPL",
    Abort = 0x8000_4004 => "E_ABORT",
    AccessDenied = 0x8007_0005 => "E_ACCESSDENIED",
    OutOfMemory = 0x8007_000E => "E_OUTOFMEMORY",
    InvalidArg = 0x8007_0057 => "E_INVALIDARG",
    EUnexpected = 0x8000_FFFF => "E_UNEXPECTED",
    // VSS_E_* (§4.1).
    BadState = 0x8004_2301 => "VSS_E_BAD_STATE",
    Unexpected = 0x8004_2302 => "VSS_E_UNEXPECTED",
    ProviderAlreadyRegistered = 0x8004_2303 => "VSS_E_PROVIDER_ALREADY_REGISTERED",
    ProviderNotRegistered = 0x8004_2304 => "VSS_E_PROVIDER_NOT_REGISTERED",
    ProviderVeto = 0x8004_2306 => "VSS_E_PROVIDER_VETO",
    ProviderInUse = 0x8004_2307 => "VSS_E_PROVIDER_IN_USE",
    ObjectNotFound = 0x8004_2308 => "VSS_E_OBJECT_NOT_FOUND",
    VolumeNotSupported = 0x8004_230C => "VSS_E_VOLUME_NOT_SUPPORTED",
    ObjectAlreadyExists = 0x8004_230D => "VSS_E_OBJECT_ALREADY_EXISTS",
    VolumeNotSupportedByProvider = 0x8004_230E => "VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER",
    UnexpectedProviderError = 0x8004_230F => "VSS_E_UNEXPECTED_PROVIDER_ERROR",
    CorruptXmlDocument = 0x8004_2310 => "VSS_E_CORRUPT_XML_DOCUMENT",
    InvalidXmlDocument = 0x8004_2311 => "VSS_E_INVALID_XML_DOCUMENT",
    MaximumNumberOfVolumesReached = 0x8004_2312 => "VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED",
    FlushWritesTimeout = 0x8004_2313 => "VSS_E_FLUSH_WRITES_TIMEOUT",
    HoldWritesTimeout = 0x8004_2314 => "VSS_E_HOLD_WRITES_TIMEOUT",
    UnexpectedWriterError = 0x8004_2315 => "VSS_E_UNEXPECTED_WRITER_ERROR",
    SnapshotSetInProgress = 0x8004_2316 => "VSS_E_SNAPSHOT_SET_IN_PROGRESS",
    MaximumNumberOfSnapshotsReached = 0x8004_2317 => "VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED",
    WriterInfrastructure = 0x8004_2318 => "VSS_E_WRITER_INFRASTRUCTURE",
    WriterNotResponding = 0x8004_2319 => "VSS_E_WRITER_NOT_RESPONDING",
    WriterAlreadySubscribed = 0x8004_231A => "VSS_E_WRITER_ALREADY_SUBSCRIBED",
    UnsupportedContext = 0x8004_231B => "VSS_E_UNSUPPORTED_CONTEXT",
    VolumeInUse = 0x8004_231D => "VSS_E_VOLUME_IN_USE",
    MaximumDiffareaAssociationsReached = 0x8004_231E => "VSS_E_MAXIMUM_DIFFAREA_ASSOCIATIONS_REACHED",
    InsufficientStorage = 0x8004_231F => "VSS_E_INSUFFICIENT_STORAGE",
    NoSnapshotsImported = 0x8004_2320 => "VSS_E_NO_SNAPSHOTS_IMPORTED",
    SomeSnapshotsNotImported = 0x8004_2321 => "VSS_E_SOME_SNAPSHOTS_NOT_IMPORTED",
    MaximumNumberOfRemoteMachinesReached = 0x8004_2322 => "VSS_E_MAXIMUM_NUMBER_OF_REMOTE_MACHINES_REACHED",
    RemoteServerUnavailable = 0x8004_2323 => "VSS_E_REMOTE_SERVER_UNAVAILABLE",
    RemoteServerUnsupported = 0x8004_2324 => "VSS_E_REMOTE_SERVER_UNSUPPORTED",
    RevertInProgress = 0x8004_2325 => "VSS_E_REVERT_IN_PROGRESS",
    RevertVolumeLost = 0x8004_2326 => "VSS_E_REVERT_VOLUME_LOST",
    RebootRequired = 0x8004_2327 => "VSS_E_REBOOT_REQUIRED",
    TransactionFreezeTimeout = 0x8004_2328 => "VSS_E_TRANSACTION_FREEZE_TIMEOUT",
    TransactionThawTimeout = 0x8004_2329 => "VSS_E_TRANSACTION_THAW_TIMEOUT",
    UnselectedVolume = 0x8004_232A => "VSS_E_UNSELECTED_VOLUME",
    SnapshotNotInSet = 0x8004_232B => "VSS_E_SNAPSHOT_NOT_IN_SET",
    NestedVolumeLimit = 0x8004_232C => "VSS_E_NESTED_VOLUME_LIMIT",
    VolumeNotLocal = 0x8004_232D => "VSS_E_VOLUME_NOT_LOCAL",
    ClusterTimeout = 0x8004_232E => "VSS_E_CLUSTER_TIMEOUT",
    NotSupported = 0x8004_232F => "VSS_E_NOT_SUPPORTED",
    WriterErrorPartialFailure = 0x8004_2336 => "VSS_E_WRITERERROR_PARTIAL_FAILURE",
    WriterErrorInconsistentSnapshot = 0x8004_23F0 => "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
    WriterErrorOutOfResources = 0x8004_23F1 => "VSS_E_WRITERERROR_OUTOFRESOURCES",
    WriterErrorTimeout = 0x8004_23F2 => "VSS_E_WRITERERROR_TIMEOUT",
    WriterErrorRetryable = 0x8004_23F3 => "VSS_E_WRITERERROR_RETRYABLE",
    WriterErrorNonRetryable = 0x8004_23F4 => "VSS_E_WRITERERROR_NONRETRYABLE",
    WriterErrorRecoveryFailed = 0x8004_23F5 => "VSS_E_WRITERERROR_RECOVERY_FAILED",
    BreakRevertIdFailed = 0x8004_23F6 => "VSS_E_BREAK_REVERT_ID_FAILED",
    LegacyProvider = 0x8004_23F7 => "VSS_E_LEGACY_PROVIDER",
    MissingDisk = 0x8004_23F8 => "VSS_E_MISSING_DISK",
    MissingHiddenVolume = 0x8004_23F9 => "VSS_E_MISSING_HIDDEN_VOLUME",
    MissingVolume = 0x8004_23FA => "VSS_E_MISSING_VOLUME",
    AutorecoveryFailed = 0x8004_23FB => "VSS_E_AUTORECOVERY_FAILED",
    DynamicDiskError = 0x8004_23FC => "VSS_E_DYNAMIC_DISK_ERROR",
    NontransportableBcd = 0x8004_23FD => "VSS_E_NONTRANSPORTABLE_BCD",
    CannotRevertDiskid = 0x8004_23FE => "VSS_E_CANNOT_REVERT_DISKID",
    ResyncInProgress = 0x8004_23FF => "VSS_E_RESYNC_IN_PROGRESS",
    ClusterError = 0x8004_2400 => "VSS_E_CLUSTER_ERROR",
    AsrErrorDiskAssignmentFailed = 0x8004_2401 => "VSS_E_ASRERROR_DISK_ASSIGNMENT_FAILED",
    AsrErrorDiskRecreationFailed = 0x8004_2402 => "VSS_E_ASRERROR_DISK_RECREATION_FAILED",
    AsrErrorNoArcpath = 0x8004_2403 => "VSS_E_ASRERROR_NO_ARCPATH",
    AsrErrorMissingDyndisk = 0x8004_2404 => "VSS_E_ASRERROR_MISSING_DYNDISK",
    AsrErrorSharedCridisk = 0x8004_2405 => "VSS_E_ASRERROR_SHARED_CRIDISK",
    AsrErrorDatadiskRdisk0 = 0x8004_2406 => "VSS_E_ASRERROR_DATADISK_RDISK0",
    AsrErrorRdisk0TooSmall = 0x8004_2407 => "VSS_E_ASRERROR_RDISK0_TOOSMALL",
    AsrErrorCriticalDisksTooSmall = 0x8004_2408 => "VSS_E_ASRERROR_CRITICAL_DISKS_TOO_SMALL",
    WriterStatusNotAvailable = 0x8004_2409 => "VSS_E_WRITER_STATUS_NOT_AVAILABLE",
    AsrErrorDynamicVhdNotSupported = 0x8004_240A => "VSS_E_ASRERROR_DYNAMIC_VHD_NOT_SUPPORTED",
    CriticalVolumeOnInvalidDisk = 0x8004_2411 => "VSS_E_CRITICAL_VOLUME_ON_INVALID_DISK",
    AsrErrorRdiskForSystemDiskNotFound = 0x8004_2412 => "VSS_E_ASRERROR_RDISK_FOR_SYSTEM_DISK_NOT_FOUND",
    AsrErrorNoPhysicalDiskAvailable = 0x8004_2413 => "VSS_E_ASRERROR_NO_PHYSICAL_DISK_AVAILABLE",
    AsrErrorFixedPhysicalDiskAvailableAfterDiskExclusion = 0x8004_2414 => "VSS_E_ASRERROR_FIXED_PHYSICAL_DISK_AVAILABLE_AFTER_DISK_EXCLUSION",
    AsrErrorCriticalDiskCannotBeExcluded = 0x8004_2415 => "VSS_E_ASRERROR_CRITICAL_DISK_CANNOT_BE_EXCLUDED",
    AsrErrorSystemPartitionHidden = 0x8004_2416 => "VSS_E_ASRERROR_SYSTEM_PARTITION_HIDDEN",
    FssTimeout = 0x8004_2417 => "VSS_E_FSS_TIMEOUT",
}

impl ErrorCode {
    /// The codes a writer may report for its own failure (`SetWriterFailure`, §5.4), plus
    /// VSS_E_WRITER_NOT_RESPONDING which the coordinator records for a writer it cannot reach.
    pub const fn is_writer_failure(self) -> bool {
        matches!(
            self,
            ErrorCode::WriterErrorInconsistentSnapshot
                | ErrorCode::WriterErrorOutOfResources
                | ErrorCode::WriterErrorTimeout
                | ErrorCode::WriterErrorRetryable
                | ErrorCode::WriterErrorNonRetryable
                | ErrorCode::WriterErrorPartialFailure
                | ErrorCode::WriterErrorRecoveryFailed
                | ErrorCode::WriterNotResponding
                | ErrorCode::WriterStatusNotAvailable
        )
    }

    /// Whether documented guidance says a retry will probably work (§4.3).
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::WriterErrorRetryable
                | ErrorCode::WriterErrorOutOfResources
                | ErrorCode::WriterErrorTimeout
                | ErrorCode::WriterStatusNotAvailable
                | ErrorCode::FlushWritesTimeout
                | ErrorCode::HoldWritesTimeout
                | ErrorCode::ProviderVeto
                | ErrorCode::UnexpectedProviderError
                | ErrorCode::SnapshotSetInProgress
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.name(), self.hresult())
    }
}

/// `S_OK`.
pub const S_OK: u32 = 0;

/// The status of an asynchronous operation as `IVssAsync::QueryStatus` reports it (§2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsyncStatus {
    /// `VSS_S_ASYNC_PENDING`: still running.
    Pending,
    /// `VSS_S_ASYNC_FINISHED`: completed successfully.
    Finished,
    /// `VSS_S_ASYNC_CANCELLED`: cancelled by the requester.
    Cancelled,
    /// The operation failed with this error.
    Failed(VssError),
}

impl AsyncStatus {
    /// `VSS_S_ASYNC_PENDING`.
    pub const PENDING: u32 = 0x0004_2309;
    /// `VSS_S_ASYNC_FINISHED`.
    pub const FINISHED: u32 = 0x0004_230A;
    /// `VSS_S_ASYNC_CANCELLED`.
    pub const CANCELLED: u32 = 0x0004_230B;

    /// The HRESULT QueryStatus hands back.
    pub fn hresult(&self) -> u32 {
        match self {
            AsyncStatus::Pending => Self::PENDING,
            AsyncStatus::Finished => Self::FINISHED,
            AsyncStatus::Cancelled => Self::CANCELLED,
            AsyncStatus::Failed(e) => e.code.hresult(),
        }
    }

    /// The symbolic name of [`Self::hresult`].
    pub fn name(&self) -> &'static str {
        match self {
            AsyncStatus::Pending => "VSS_S_ASYNC_PENDING",
            AsyncStatus::Finished => "VSS_S_ASYNC_FINISHED",
            AsyncStatus::Cancelled => "VSS_S_ASYNC_CANCELLED",
            AsyncStatus::Failed(e) => e.code.name(),
        }
    }

    /// Whether the operation has ended (in any way).
    pub fn is_done(&self) -> bool {
        !matches!(self, AsyncStatus::Pending)
    }
}

/// A VSS failure: the condition and a message that says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VssError {
    /// The VSS condition.
    pub code: ErrorCode,
    /// Human-readable detail, for logs and operators.
    pub message: String,
}

impl VssError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        VssError {
            code,
            message: message.into(),
        }
    }

    /// `VSS_E_BAD_STATE` with a message.
    pub fn bad_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadState, message)
    }

    /// `E_INVALIDARG` with a message.
    pub fn invalid_arg(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArg, message)
    }

    /// `VSS_E_OBJECT_NOT_FOUND` with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ObjectNotFound, message)
    }

    /// `VSS_E_UNEXPECTED` with a message.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unexpected, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hresults_match_the_headers() {
        assert_eq!(ErrorCode::BadState.hresult(), 2_147_754_753);
        assert_eq!(ErrorCode::AccessDenied.hresult(), 0x8007_0005);
        assert_eq!(ErrorCode::WriterErrorTimeout.hresult(), 0x8004_23F2);
        assert_eq!(ErrorCode::FssTimeout.hresult(), 0x8004_2417);
        for c in ErrorCode::ALL {
            assert_eq!(
                ErrorCode::from_hresult(c.hresult()),
                Some(*c),
                "{}",
                c.name()
            );
            assert_eq!(ErrorCode::from_name(c.name()), Some(*c));
        }
    }

    #[test]
    fn hresults_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.hresult()), "duplicate {}", c.name());
        }
    }

    #[test]
    fn async_status_codes() {
        assert_eq!(AsyncStatus::Pending.hresult(), 0x0004_2309);
        assert_eq!(AsyncStatus::Finished.name(), "VSS_S_ASYNC_FINISHED");
        let f = AsyncStatus::Failed(VssError::bad_state("x"));
        assert_eq!(f.hresult(), 0x8004_2301);
        assert!(f.is_done());
        assert!(!AsyncStatus::Pending.is_done());
    }
}

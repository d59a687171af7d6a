//! The writer events (`vss.Writer` methods), in the order a backup delivers them (§5.2).

/// One writer event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriterEvent {
    /// Identify: the writer describes itself (any time).
    Identify,
    /// PrepareForBackup.
    PrepareForBackup,
    /// PrepareForSnapshot.
    PrepareForSnapshot,
    /// Freeze.
    Freeze,
    /// Thaw.
    Thaw,
    /// PostSnapshot.
    PostSnapshot,
    /// Abort.
    Abort,
    /// BackupComplete.
    BackupComplete,
    /// BackupShutdown.
    BackupShutdown,
    /// PreRestore.
    PreRestore,
    /// PostRestore.
    PostRestore,
}

impl WriterEvent {
    /// Every event.
    pub const ALL: [WriterEvent; 11] = [
        WriterEvent::Identify,
        WriterEvent::PrepareForBackup,
        WriterEvent::PrepareForSnapshot,
        WriterEvent::Freeze,
        WriterEvent::Thaw,
        WriterEvent::PostSnapshot,
        WriterEvent::Abort,
        WriterEvent::BackupComplete,
        WriterEvent::BackupShutdown,
        WriterEvent::PreRestore,
        WriterEvent::PostRestore,
    ];

    /// The method name without the interface (`Freeze`).
    pub const fn name(self) -> &'static str {
        match self {
            WriterEvent::Identify => "Identify",
            WriterEvent::PrepareForBackup => "PrepareForBackup",
            WriterEvent::PrepareForSnapshot => "PrepareForSnapshot",
            WriterEvent::Freeze => "Freeze",
            WriterEvent::Thaw => "Thaw",
            WriterEvent::PostSnapshot => "PostSnapshot",
            WriterEvent::Abort => "Abort",
            WriterEvent::BackupComplete => "BackupComplete",
            WriterEvent::BackupShutdown => "BackupShutdown",
            WriterEvent::PreRestore => "PreRestore",
            WriterEvent::PostRestore => "PostRestore",
        }
    }

    /// The fully qualified varlink method name (`vss.Writer.Freeze`).
    pub fn method(self) -> String {
        format!("vss.Writer.{}", self.name())
    }

    /// The event of a fully qualified method name.
    pub fn from_method(method: &str) -> Option<WriterEvent> {
        let name = method.strip_prefix("vss.Writer.")?;
        WriterEvent::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The state a writer is in after handling this event successfully (§5.3; our rule for
    /// Abort: back to STABLE). `None` where the event leaves the state as it was.
    pub const fn state_after_success(self) -> Option<crate::WriterState> {
        use crate::WriterState as S;
        match self {
            WriterEvent::Identify
            | WriterEvent::PrepareForBackup
            | WriterEvent::BackupComplete
            | WriterEvent::Abort
            | WriterEvent::PreRestore
            | WriterEvent::PostRestore => Some(S::Stable),
            WriterEvent::PrepareForSnapshot => Some(S::WaitingForFreeze),
            WriterEvent::Freeze => Some(S::WaitingForThaw),
            WriterEvent::Thaw => Some(S::WaitingForPostSnapshot),
            WriterEvent::PostSnapshot => Some(S::WaitingForBackupComplete),
            WriterEvent::BackupShutdown => None,
        }
    }

    /// The `FAILED_AT_*` state for a failure in this event; `None` for Abort, which has none.
    pub const fn failed_state(self) -> Option<crate::WriterState> {
        use crate::WriterState as S;
        match self {
            WriterEvent::Identify => Some(S::FailedAtIdentify),
            WriterEvent::PrepareForBackup => Some(S::FailedAtPrepareBackup),
            WriterEvent::PrepareForSnapshot => Some(S::FailedAtPrepareSnapshot),
            WriterEvent::Freeze => Some(S::FailedAtFreeze),
            WriterEvent::Thaw => Some(S::FailedAtThaw),
            WriterEvent::PostSnapshot => Some(S::FailedAtPostSnapshot),
            WriterEvent::BackupComplete => Some(S::FailedAtBackupComplete),
            WriterEvent::BackupShutdown => Some(S::FailedAtBackupShutdown),
            WriterEvent::PreRestore => Some(S::FailedAtPreRestore),
            WriterEvent::PostRestore => Some(S::FailedAtPostRestore),
            WriterEvent::Abort => None,
        }
    }
}

impl std::fmt::Display for WriterEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

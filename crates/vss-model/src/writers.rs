//! The per-session writer record: who takes part, which events each writer gets, and the
//! writer state machine (vss-model.md §5.3, §5.4).
//!
//! Rules, all enforced here and nowhere else:
//! - A session's writers are those that answered Identify in its GatherWriterMetadata.
//! - Participation is fixed at PrepareForBackup: in component mode, writers with at least one
//!   explicitly included component take part fully; the others get PrepareForBackup only. In
//!   non-component mode every writer takes part fully.
//! - A writer that failed an event gets only Abort and BackupShutdown afterwards.
//! - Writers past PostSnapshot get no Abort, and a writer gets Abort at most once per session.

use crate::{ErrorCode, S_OK, VssError, WriterEvent, WriterState, wmd::WriterMetadata};

/// How a writer takes part in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participation {
    /// Not decided yet (before PrepareForBackup), or a restore session.
    Undecided,
    /// Gets PrepareForBackup only (component mode, no component included).
    PrepareOnly,
    /// Gets every event.
    Full,
    /// Restore, `VSS_WRE_IF_REPLACE_FAILS`: no PreRestore; PostRestore only if the requester
    /// could not restore all files of one of its selected components (it then becomes `Full`).
    RestoreIfReplaceFails,
}

/// What came of delivering one event to one writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// The handler succeeded.
    Succeeded,
    /// The writer failed the event (WriterFailure) or the coordinator failed it on the writer's
    /// behalf (freeze timeout: VSS_E_WRITERERROR_TIMEOUT).
    Failed(VssError),
    /// The writer could not be reached or missed its deadline.
    NotResponding(String),
}

/// One writer instance within a requester session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterRecord {
    /// Its metadata from Identify.
    pub metadata: WriterMetadata,
    /// The socket it answered on.
    pub socket: String,
    /// Current `VSS_WRITER_STATE`.
    pub state: WriterState,
    /// Failure code (`None` = S_OK).
    pub failure: Option<ErrorCode>,
    /// The writer's message for the failure.
    pub failure_message: Option<String>,
    /// How it takes part.
    pub participation: Participation,
    /// It failed an event in this session (then only Abort and BackupShutdown follow).
    pub failed_event: bool,
    /// PostSnapshot was delivered (successfully or not): no Abort any more.
    pub past_post_snapshot: bool,
    /// GatherWriterStatus after BackupComplete closed the writer's session.
    pub session_completed: bool,
    /// Abort was delivered (or attempted): a writer gets Abort at most once per session.
    pub aborted: bool,
}

impl WriterRecord {
    /// A writer that answered Identify.
    pub fn new(metadata: WriterMetadata, socket: String) -> Self {
        WriterRecord {
            metadata,
            socket,
            state: WriterState::Stable,
            failure: None,
            failure_message: None,
            participation: Participation::Undecided,
            failed_event: false,
            past_post_snapshot: false,
            session_completed: false,
            aborted: false,
        }
    }

    /// Whether this writer is to get `event` now.
    pub fn receives(&self, event: WriterEvent) -> bool {
        use Participation::*;
        match event {
            WriterEvent::Identify => true,
            WriterEvent::PrepareForBackup => self.participation != Undecided && !self.failed_event,
            WriterEvent::PrepareForSnapshot
            | WriterEvent::Freeze
            | WriterEvent::Thaw
            | WriterEvent::PostSnapshot
            | WriterEvent::BackupComplete => self.participation == Full && !self.failed_event,
            WriterEvent::Abort => {
                self.participation == Full && !self.past_post_snapshot && !self.aborted
            }
            WriterEvent::BackupShutdown => self.participation == Full,
            // Fixed at PreRestore (and for IF_REPLACE_FAILS writers at PostRestore): writers with
            // components selected for restore, unless they declared VSS_WRE_NEVER.
            WriterEvent::PreRestore | WriterEvent::PostRestore => {
                self.participation == Full && !self.failed_event
            }
        }
    }

    /// Records what came of delivering `event`. Success moves the state on; a failure moves
    /// to the matching FAILED_AT_* state with its code and keeps it (later successes, e.g. of
    /// Abort, do not clear an earlier failure).
    pub fn record(&mut self, event: WriterEvent, outcome: EventOutcome) {
        if event == WriterEvent::PostSnapshot {
            self.past_post_snapshot = true;
        }
        if event == WriterEvent::Abort {
            self.aborted = true;
        }
        match outcome {
            EventOutcome::Succeeded => {
                if self.failed_event {
                    return;
                }
                if let Some(s) = event.state_after_success() {
                    self.state = s;
                    self.failure = None;
                    self.failure_message = None;
                }
            }
            EventOutcome::Failed(e) => self.fail(event, e.code, Some(e.message)),
            EventOutcome::NotResponding(why) => {
                self.fail(event, ErrorCode::WriterNotResponding, Some(why))
            }
        }
    }

    fn fail(&mut self, event: WriterEvent, code: ErrorCode, message: Option<String>) {
        // Abort has no FAILED_AT state; a writer that fails Abort keeps what it had.
        let Some(state) = event.failed_state() else {
            return;
        };
        if self.failed_event {
            // The first failure is the one that counts.
            return;
        }
        self.failed_event = true;
        self.state = state;
        self.failure = Some(code);
        self.failure_message = message;
    }

    /// The failure HRESULT (0 = S_OK).
    pub fn failure_hresult(&self) -> u32 {
        self.failure.map(|c| c.hresult()).unwrap_or(S_OK)
    }

    /// The failure name ("S_OK" when none).
    pub fn failure_name(&self) -> &'static str {
        self.failure.map(|c| c.name()).unwrap_or("S_OK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApplicationLevel, RestoreMethod, SourceType, UsageType, WriterRestore};

    fn record(p: Participation) -> WriterRecord {
        let md = WriterMetadata {
            writer_id: crate::Id::nil(),
            instance_id: crate::Id::nil(),
            writer_name: "w".into(),
            instance_name: String::new(),
            usage_type: UsageType::UserData,
            source_type: SourceType::Other,
            application_level: ApplicationLevel::FrontEnd,
            freeze_timeout_ms: 60_000,
            restore_method: RestoreMethod::RestoreIfCanReplace,
            writer_restore: WriterRestore::Never,
            restore_service: None,
            backup_schema: 0,
            version: None,
            exclude_files: vec![],
            components: vec![],
        };
        let mut r = WriterRecord::new(md, "/x".into());
        r.participation = p;
        r
    }

    #[test]
    fn healthy_writer_walks_the_states() {
        use WriterEvent::*;
        let mut r = record(Participation::Full);
        let expect = [
            (PrepareForBackup, WriterState::Stable),
            (PrepareForSnapshot, WriterState::WaitingForFreeze),
            (Freeze, WriterState::WaitingForThaw),
            (Thaw, WriterState::WaitingForPostSnapshot),
            (PostSnapshot, WriterState::WaitingForBackupComplete),
            (BackupComplete, WriterState::Stable),
            (BackupShutdown, WriterState::Stable),
        ];
        for (e, s) in expect {
            assert!(r.receives(e), "{e}");
            r.record(e, EventOutcome::Succeeded);
            assert_eq!(r.state, s, "after {e}");
            assert_eq!(r.failure_hresult(), 0);
        }
        assert!(!r.receives(Abort), "past PostSnapshot: no Abort");
    }

    #[test]
    fn every_failure_maps_to_its_failed_state_and_sticks() {
        use WriterEvent::*;
        let table = [
            (PrepareForBackup, WriterState::FailedAtPrepareBackup),
            (PrepareForSnapshot, WriterState::FailedAtPrepareSnapshot),
            (Freeze, WriterState::FailedAtFreeze),
            (Thaw, WriterState::FailedAtThaw),
            (PostSnapshot, WriterState::FailedAtPostSnapshot),
            (BackupComplete, WriterState::FailedAtBackupComplete),
            (BackupShutdown, WriterState::FailedAtBackupShutdown),
            (Identify, WriterState::FailedAtIdentify),
            (PreRestore, WriterState::FailedAtPreRestore),
            (PostRestore, WriterState::FailedAtPostRestore),
        ];
        for (event, state) in table {
            let mut r = record(Participation::Full);
            let err = VssError::new(ErrorCode::WriterErrorRetryable, "x");
            r.record(event, EventOutcome::Failed(err));
            assert_eq!(r.state, state);
            assert_eq!(r.failure, Some(ErrorCode::WriterErrorRetryable));
            // Afterwards only Abort (if before PostSnapshot) and BackupShutdown.
            for e in [
                PrepareForSnapshot,
                Freeze,
                Thaw,
                PostSnapshot,
                BackupComplete,
            ] {
                assert!(!r.receives(e), "{e} after failing {event}");
            }
            assert!(r.receives(BackupShutdown));
            // A later success (Abort) keeps the failure.
            r.record(Abort, EventOutcome::Succeeded);
            assert_eq!(r.state, state);
            assert_eq!(r.failure, Some(ErrorCode::WriterErrorRetryable));
        }
    }

    #[test]
    fn not_responding_and_abort() {
        let mut r = record(Participation::Full);
        r.record(WriterEvent::PrepareForSnapshot, EventOutcome::Succeeded);
        r.record(
            WriterEvent::Freeze,
            EventOutcome::NotResponding("deadline".into()),
        );
        assert_eq!(r.state, WriterState::FailedAtFreeze);
        assert_eq!(r.failure, Some(ErrorCode::WriterNotResponding));
        let mut other = record(Participation::Full);
        other.record(WriterEvent::Freeze, EventOutcome::Succeeded);
        assert!(other.receives(WriterEvent::Abort));
        other.record(WriterEvent::Abort, EventOutcome::Succeeded);
        assert_eq!(other.state, WriterState::Stable);
        assert!(!other.receives(WriterEvent::Abort), "Abort at most once");
        assert!(other.receives(WriterEvent::BackupShutdown));
        // A failing Abort leaves the state alone.
        let mut third = record(Participation::Full);
        third.record(WriterEvent::Freeze, EventOutcome::Succeeded);
        third.record(
            WriterEvent::Abort,
            EventOutcome::NotResponding("gone".into()),
        );
        assert_eq!(third.state, WriterState::WaitingForThaw);
    }

    #[test]
    fn participation_decides_events() {
        let prep = record(Participation::PrepareOnly);
        assert!(prep.receives(WriterEvent::PrepareForBackup));
        for e in WriterEvent::ALL {
            if e != WriterEvent::PrepareForBackup && e != WriterEvent::Identify {
                assert!(!prep.receives(e), "{e}");
            }
        }
        let undecided = record(Participation::Undecided);
        assert!(!undecided.receives(WriterEvent::PrepareForBackup));
        assert!(!undecided.receives(WriterEvent::BackupShutdown));
    }
}

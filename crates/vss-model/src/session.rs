//! The requester session state machine: one `IVssBackupComponents` object (vss-model.md §2, §3).
//!
//! Every requester call is checked here before anything happens, and its effect on the session
//! is applied here; the daemon only does the I/O in between. [`Session::check`] is the one
//! transition guard: a closed [`Call`] enum matched exhaustively against the session's state, so
//! adding a call does not compile until every rule for it is decided.
//!
//! Asynchronous calls go in two steps: `begin_*` (checked, marks the operation running) and
//! `finish_*` (records the outcome when the daemon's task ends).

use crate::{
    BackupType, ComponentType, ErrorCode, FileRestoreStatus, Id, MAX_VOLUMES_PER_SET,
    RestoreTarget, RestoreType, SnapshotContext, VssError, WriterRestore,
    bcd::{
        AlternateLocation, BackupComponents, BcdComponent, SnapshotDescription,
        SnapshotSetDescription, WriterComponents,
    },
    wmd::{WriterMetadata, full_path},
    writers::{Participation, WriterRecord},
};

/// Backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Neither InitializeForBackup nor InitializeForRestore yet.
    Uninitialized,
    /// InitializeForBackup was called.
    Backup,
    /// InitializeForRestore was called.
    Restore,
}

/// Progress of one asynchronous step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not called yet.
    NotCalled,
    /// Running.
    Running,
    /// Finished successfully.
    Done,
    /// Failed or was cancelled.
    Failed,
}

/// The asynchronous operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// GatherWriterMetadata.
    GatherWriterMetadata,
    /// PrepareForBackup.
    PrepareForBackup,
    /// DoSnapshotSet.
    DoSnapshotSet,
    /// BackupComplete.
    BackupComplete,
    /// GatherWriterStatus.
    GatherWriterStatus,
    /// PreRestore.
    PreRestore,
    /// PostRestore.
    PostRestore,
}

impl OpKind {
    /// The method name.
    pub const fn name(self) -> &'static str {
        match self {
            OpKind::GatherWriterMetadata => "GatherWriterMetadata",
            OpKind::PrepareForBackup => "PrepareForBackup",
            OpKind::DoSnapshotSet => "DoSnapshotSet",
            OpKind::BackupComplete => "BackupComplete",
            OpKind::GatherWriterStatus => "GatherWriterStatus",
            OpKind::PreRestore => "PreRestore",
            OpKind::PostRestore => "PostRestore",
        }
    }
}

/// Every session call (the requester methods that act on the session object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// InitializeForBackup.
    InitializeForBackup,
    /// InitializeForRestore.
    InitializeForRestore,
    /// SetContext.
    SetContext,
    /// SetBackupState.
    SetBackupState,
    /// GatherWriterMetadata.
    GatherWriterMetadata,
    /// GetWriterMetadata.
    GetWriterMetadata,
    /// AddComponent.
    AddComponent,
    /// StartSnapshotSet.
    StartSnapshotSet,
    /// AddToSnapshotSet.
    AddToSnapshotSet,
    /// PrepareForBackup.
    PrepareForBackup,
    /// DoSnapshotSet.
    DoSnapshotSet,
    /// GetSnapshotProperties.
    GetSnapshotProperties,
    /// SetBackupSucceeded.
    SetBackupSucceeded,
    /// BackupComplete.
    BackupComplete,
    /// GatherWriterStatus.
    GatherWriterStatus,
    /// GetWriterStatus.
    GetWriterStatus,
    /// AbortBackup.
    AbortBackup,
    /// SaveAsXml.
    SaveAsXml,
    /// Query.
    Query,
    /// DeleteSnapshots.
    DeleteSnapshots,
    /// DeleteVolumeSnapshots (oldest or all snapshots of a volume).
    DeleteVolumeSnapshots,
    /// ExposeSnapshot.
    ExposeSnapshot,
    /// UnexposeSnapshot.
    UnexposeSnapshot,
    /// BreakSnapshotSet.
    BreakSnapshotSet,
    /// RevertToSnapshot (administration).
    RevertToSnapshot,
    /// SetRestoreState.
    SetRestoreState,
    /// SetSelectedForRestore.
    SetSelectedForRestore,
    /// SetRestoreOptions.
    SetRestoreOptions,
    /// SetAdditionalRestores.
    SetAdditionalRestores,
    /// PreRestore.
    PreRestore,
    /// AddAlternativeLocationMapping.
    AddAlternativeLocationMapping,
    /// SetFileRestoreStatus.
    SetFileRestoreStatus,
    /// PostRestore.
    PostRestore,
}

/// Which component of the BCD a restore call names: the writer class, optionally the instance
/// (SetSelectedForRestoreEx), and the component.
#[derive(Debug, Clone, Copy)]
pub struct RestoreComponent<'a> {
    /// Writer class id.
    pub writer_id: Id,
    /// Writer instance (only SetSelectedForRestore may name one: restore with move).
    pub instance_id: Option<Id>,
    /// Component type.
    pub component_type: ComponentType,
    /// Logical path.
    pub logical_path: &'a str,
    /// Name.
    pub name: &'a str,
}

/// One volume of the session's snapshot set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVolume {
    /// The resolved volume path.
    pub volume: String,
    /// The snapshot id handed to the requester.
    pub snapshot_id: Id,
    /// The provider chosen for it.
    pub provider_id: Id,
}

/// The snapshot set of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSet {
    /// Its id.
    pub id: Id,
    /// Its volumes, in the order added.
    pub volumes: Vec<SetVolume>,
}

/// One requester session.
#[derive(Debug, Clone)]
pub struct Session {
    mode: Mode,
    context: SnapshotContext,
    /// SetContext is only allowed right after InitializeForBackup: any other call locks it.
    context_locked: bool,
    backup_state_set: bool,
    /// The Backup Components Document.
    pub bcd: BackupComponents,
    gather: Step,
    prepare: Step,
    snapshot: Step,
    complete: Step,
    status_gathered: bool,
    /// The writers that answered this session's Identify.
    pub writers: Vec<WriterRecord>,
    set: Option<SnapshotSet>,
    aborted: bool,
    running: Option<OpKind>,
    pre_restore: Step,
    post_restore: Step,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(msg: impl Into<String>) -> VssError {
    VssError::bad_state(msg)
}

impl Session {
    /// A fresh, uninitialized session.
    pub fn new() -> Self {
        Session {
            mode: Mode::Uninitialized,
            context: SnapshotContext::BACKUP,
            context_locked: false,
            backup_state_set: false,
            bcd: BackupComponents::default(),
            gather: Step::NotCalled,
            prepare: Step::NotCalled,
            snapshot: Step::NotCalled,
            complete: Step::NotCalled,
            status_gathered: false,
            writers: Vec::new(),
            set: None,
            aborted: false,
            running: None,
            pre_restore: Step::NotCalled,
            post_restore: Step::NotCalled,
        }
    }

    /// Backup, restore or neither.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The session's context.
    pub fn context(&self) -> SnapshotContext {
        self.context
    }

    /// The snapshot set, once started.
    pub fn snapshot_set(&self) -> Option<&SnapshotSet> {
        self.set.as_ref()
    }

    /// Progress of DoSnapshotSet.
    pub fn snapshot_step(&self) -> Step {
        self.snapshot
    }

    /// Progress of PrepareForBackup.
    pub fn prepare_step(&self) -> Step {
        self.prepare
    }

    /// Whether AbortBackup was called.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// The asynchronous operation running now, if any.
    pub fn running(&self) -> Option<OpKind> {
        self.running
    }

    /// Whether the host-wide snapshot-set lock is held on this session's behalf: from
    /// StartSnapshotSet until DoSnapshotSet ends or the backup is aborted.
    pub fn holds_set_lock(&self) -> bool {
        self.set.is_some()
            && !self.aborted
            && matches!(self.snapshot, Step::NotCalled | Step::Running)
    }

    /// Whether BackupShutdown goes to the participants when this session ends (a backup session
    /// that called PrepareForBackup; restore sessions send none).
    pub fn needs_backup_shutdown(&self) -> bool {
        self.mode == Mode::Backup && self.prepare != Step::NotCalled
    }

    /// The transition guard: may `call` be made now? `VSS_E_BAD_STATE` (with the reason and
    /// what to do) if not. Argument checks come after, in the `apply` functions.
    pub fn check(&self, call: Call) -> Result<(), VssError> {
        use Call::*;
        // Nothing but the two initializers before initialization.
        if self.mode == Mode::Uninitialized {
            return match call {
                InitializeForBackup | InitializeForRestore => Ok(()),
                SetContext
                | SetBackupState
                | GatherWriterMetadata
                | GetWriterMetadata
                | AddComponent
                | StartSnapshotSet
                | AddToSnapshotSet
                | PrepareForBackup
                | DoSnapshotSet
                | GetSnapshotProperties
                | SetBackupSucceeded
                | BackupComplete
                | GatherWriterStatus
                | GetWriterStatus
                | AbortBackup
                | SaveAsXml
                | Query
                | DeleteSnapshots
                | DeleteVolumeSnapshots
                | ExposeSnapshot
                | UnexposeSnapshot
                | BreakSnapshotSet
                | RevertToSnapshot
                | SetRestoreState
                | SetSelectedForRestore
                | SetRestoreOptions
                | SetAdditionalRestores
                | PreRestore
                | AddAlternativeLocationMapping
                | SetFileRestoreStatus
                | PostRestore => Err(bad(
                    "the session is not initialized: call InitializeForBackup or \
                     InitializeForRestore first",
                )),
            };
        }
        let restore = self.mode == Mode::Restore;
        let backup_only = |name: &str| -> Result<(), VssError> {
            if restore {
                Err(bad(format!(
                    "{name} is a backup call and this is a restore session"
                )))
            } else {
                Ok(())
            }
        };
        let restore_only = |name: &str| -> Result<(), VssError> {
            if restore {
                Ok(())
            } else {
                Err(bad(format!(
                    "{name} is a restore call and this is a backup session: start one with InitializeForRestore"
                )))
            }
        };
        // While an asynchronous operation runs, the session only answers reads and AbortBackup
        // (which is refused during DoSnapshotSet below).
        if let Some(op) = self.running {
            let read_only = matches!(
                call,
                GetWriterStatus
                    | GetWriterMetadata
                    | SaveAsXml
                    | Query
                    | GetSnapshotProperties
                    | AbortBackup
            );
            if !read_only {
                return Err(bad(format!(
                    "{} is still running: wait for it (Wait) or cancel it (Cancel) first",
                    op.name()
                )));
            }
        }
        let writers = self.context.has_writers();
        match call {
            InitializeForBackup | InitializeForRestore => Err(bad(
                "the session is already initialized; open a new connection for a new session",
            )),
            SetContext => {
                backup_only("SetContext")?;
                if self.context_locked {
                    Err(bad(
                        "SetContext may be called once, right after InitializeForBackup",
                    ))
                } else {
                    Ok(())
                }
            }
            SetBackupState => {
                backup_only("SetBackupState")?;
                if self.prepare != Step::NotCalled {
                    Err(bad("SetBackupState must come before PrepareForBackup"))
                } else {
                    Ok(())
                }
            }
            GatherWriterMetadata => {
                if self.gather != Step::NotCalled {
                    Err(bad(
                        "GatherWriterMetadata may be called only once per session",
                    ))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else {
                    Ok(())
                }
            }
            GetWriterMetadata => {
                if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it to finish first",
                    ))
                } else {
                    Ok(())
                }
            }
            AddComponent => {
                backup_only("AddComponent")?;
                if !writers {
                    Err(bad(
                        "AddComponent is not allowed in a context without writers",
                    ))
                } else if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before AddComponent",
                    ))
                } else if !self.backup_state_set || !self.bcd.select_components {
                    Err(bad(
                        "AddComponent needs component mode: call SetBackupState with selectComponents true first",
                    ))
                } else if self.prepare != Step::NotCalled {
                    Err(bad(
                        "components are fixed at PrepareForBackup; AddComponent must come before it",
                    ))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else {
                    Ok(())
                }
            }
            StartSnapshotSet => {
                backup_only("StartSnapshotSet")?;
                if self.set.is_some() {
                    Err(bad(
                        "StartSnapshotSet was already called; a session makes one snapshot set",
                    ))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else if writers && self.gather == Step::Running {
                    Err(bad("wait for GatherWriterMetadata first"))
                } else {
                    Ok(())
                }
            }
            AddToSnapshotSet => {
                backup_only("AddToSnapshotSet")?;
                if self.set.is_none() {
                    Err(bad("call StartSnapshotSet before AddToSnapshotSet"))
                } else if self.snapshot != Step::NotCalled {
                    Err(bad(
                        "DoSnapshotSet was already called; volumes can no longer be added",
                    ))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else {
                    Ok(())
                }
            }
            PrepareForBackup => {
                backup_only("PrepareForBackup")?;
                if !writers {
                    Err(bad(
                        "PrepareForBackup is not allowed in a context without writers",
                    ))
                } else if !self.backup_state_set {
                    Err(bad("call SetBackupState before PrepareForBackup"))
                } else if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before PrepareForBackup",
                    ))
                } else if self.set.is_none() {
                    Err(bad("call StartSnapshotSet before PrepareForBackup"))
                } else if self.prepare != Step::NotCalled {
                    Err(bad("PrepareForBackup was already called"))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else {
                    Ok(())
                }
            }
            DoSnapshotSet => {
                backup_only("DoSnapshotSet")?;
                if self.set.is_none() {
                    Err(bad(
                        "call StartSnapshotSet and AddToSnapshotSet before DoSnapshotSet",
                    ))
                } else if self.snapshot != Step::NotCalled {
                    Err(bad(
                        "DoSnapshotSet was already called; a session makes one snapshot set",
                    ))
                } else if self.aborted {
                    Err(bad("the backup was aborted"))
                } else if writers && self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before DoSnapshotSet",
                    ))
                } else if writers && self.prepare != Step::Done {
                    Err(bad(
                        "call PrepareForBackup and wait for it before DoSnapshotSet",
                    ))
                } else {
                    Ok(())
                }
            }
            // Administration: any backup-mode session (vss-model.md §2.2 (g)).
            GetSnapshotProperties
            | Query
            | DeleteSnapshots
            | DeleteVolumeSnapshots
            | ExposeSnapshot
            | UnexposeSnapshot
            | BreakSnapshotSet
            | RevertToSnapshot => backup_only(match call {
                GetSnapshotProperties => "GetSnapshotProperties",
                Query => "Query",
                DeleteSnapshots => "DeleteSnapshots",
                DeleteVolumeSnapshots => "DeleteVolumeSnapshots",
                ExposeSnapshot => "ExposeSnapshot",
                UnexposeSnapshot => "UnexposeSnapshot",
                RevertToSnapshot => "RevertToSnapshot",
                _ => "BreakSnapshotSet",
            }),
            SetRestoreState => {
                restore_only("SetRestoreState")?;
                if self.pre_restore != Step::NotCalled {
                    Err(bad("SetRestoreState must come before PreRestore"))
                } else {
                    Ok(())
                }
            }
            SetSelectedForRestore | SetRestoreOptions | SetAdditionalRestores => {
                let name = match call {
                    SetSelectedForRestore => "SetSelectedForRestore",
                    SetRestoreOptions => "SetRestoreOptions",
                    _ => "SetAdditionalRestores",
                };
                restore_only(name)?;
                if self.gather != Step::Done {
                    Err(bad(format!(
                        "call GatherWriterMetadata and wait for it before {name}"
                    )))
                } else if self.pre_restore != Step::NotCalled {
                    Err(bad(format!(
                        "{name} must come before PreRestore: the writers were told what is restored"
                    )))
                } else {
                    Ok(())
                }
            }
            PreRestore => {
                restore_only("PreRestore")?;
                if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before PreRestore",
                    ))
                } else if self.pre_restore != Step::NotCalled {
                    Err(bad("PreRestore was already called"))
                } else {
                    Ok(())
                }
            }
            // A mapping may be recorded as soon as the components are known, so that
            // PreRestore already tells a writer where its files will go (a restore to a new
            // place); until PostRestore.
            AddAlternativeLocationMapping => {
                restore_only("AddAlternativeLocationMapping")?;
                if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before AddAlternativeLocationMapping",
                    ))
                } else if self.pre_restore == Step::Running {
                    Err(bad(
                        "PreRestore is running: wait for it, then call AddAlternativeLocationMapping",
                    ))
                } else if self.pre_restore == Step::Failed {
                    Err(bad(
                        "PreRestore failed or was cancelled; AddAlternativeLocationMapping is not allowed: start the restore again",
                    ))
                } else if self.post_restore != Step::NotCalled {
                    Err(bad(
                        "PostRestore was already called; AddAlternativeLocationMapping is out of sequence",
                    ))
                } else {
                    Ok(())
                }
            }
            SetFileRestoreStatus => {
                restore_only("SetFileRestoreStatus")?;
                self.check_between_restores("SetFileRestoreStatus")
            }
            PostRestore => {
                restore_only("PostRestore")?;
                self.check_between_restores("PostRestore")
            }
            SetBackupSucceeded => {
                backup_only("SetBackupSucceeded")?;
                self.check_after_snapshot("SetBackupSucceeded")
            }
            BackupComplete => {
                backup_only("BackupComplete")?;
                if !writers {
                    return Err(bad(
                        "BackupComplete is not allowed in a context without writers",
                    ));
                }
                self.check_after_snapshot("BackupComplete")
            }
            GatherWriterStatus => {
                if self.gather != Step::Done {
                    Err(bad(
                        "call GatherWriterMetadata and wait for it before GatherWriterStatus",
                    ))
                } else {
                    Ok(())
                }
            }
            GetWriterStatus => {
                if !self.status_gathered {
                    Err(bad(
                        "call GatherWriterStatus and wait for it before GetWriterStatus",
                    ))
                } else {
                    Ok(())
                }
            }
            AbortBackup => {
                backup_only("AbortBackup")?;
                if self.running == Some(OpKind::DoSnapshotSet) {
                    Err(bad(
                        "DoSnapshotSet is running: cancel it (Cancel) or wait for it, then call AbortBackup",
                    ))
                } else {
                    Ok(())
                }
            }
            SaveAsXml => Ok(()),
        }
    }

    /// After a successful PreRestore, before PostRestore: the files are being restored.
    fn check_between_restores(&self, name: &str) -> Result<(), VssError> {
        match (self.pre_restore, self.post_restore) {
            (Step::NotCalled | Step::Running, _) => Err(bad(format!(
                "{name} must come after PreRestore has finished"
            ))),
            (Step::Failed, _) => Err(bad(format!(
                "PreRestore failed or was cancelled; {name} is not allowed: start the restore again"
            ))),
            (Step::Done, Step::NotCalled) => Ok(()),
            (Step::Done, _) => Err(bad(format!(
                "PostRestore was already called; {name} is out of sequence"
            ))),
        }
    }

    fn check_after_snapshot(&self, name: &str) -> Result<(), VssError> {
        if self.aborted {
            Err(bad(format!(
                "the backup was aborted; {name} is not allowed after AbortBackup"
            )))
        } else if self.snapshot == Step::Failed {
            Err(bad(format!(
                "DoSnapshotSet failed; {name} is not allowed: call AbortBackup and start again"
            )))
        } else if self.snapshot != Step::Done {
            Err(bad(format!(
                "{name} must come after a successful DoSnapshotSet"
            )))
        } else if self.complete != Step::NotCalled {
            Err(bad(format!(
                "BackupComplete was already called; {name} is out of sequence"
            )))
        } else {
            Ok(())
        }
    }

    /// Called after every successful call but SetContext: SetContext is then no longer allowed.
    fn lock_context(&mut self) {
        self.context_locked = true;
    }

    /// Marks that a call other than SetContext was made (reads included).
    pub fn note_call(&mut self, call: Call) {
        if call != Call::SetContext {
            self.lock_context();
        }
    }

    /// InitializeForBackup, optionally with a saved BCD.
    pub fn initialize_for_backup(&mut self, bcd: Option<BackupComponents>) -> Result<(), VssError> {
        self.check(Call::InitializeForBackup)?;
        self.mode = Mode::Backup;
        if let Some(bcd) = bcd {
            self.bcd = bcd;
        }
        self.context = self.bcd.context;
        Ok(())
    }

    /// InitializeForRestore with the BCD saved at backup time.
    pub fn initialize_for_restore(&mut self, bcd: BackupComponents) -> Result<(), VssError> {
        self.check(Call::InitializeForRestore)?;
        self.mode = Mode::Restore;
        self.context = bcd.context;
        self.bcd = bcd;
        self.lock_context();
        Ok(())
    }

    /// SetContext.
    pub fn set_context(&mut self, value: i64) -> Result<(), VssError> {
        self.check(Call::SetContext)?;
        let ctx = SnapshotContext::validate_for_set_context(value)?;
        self.context = ctx;
        self.bcd.context = ctx;
        self.context_locked = true;
        Ok(())
    }

    /// SetBackupState.
    pub fn set_backup_state(
        &mut self,
        select_components: bool,
        bootable_system_state: bool,
        backup_type: BackupType,
        partial_file_support: bool,
    ) -> Result<(), VssError> {
        self.check(Call::SetBackupState)?;
        if backup_type == BackupType::Undefined {
            return Err(VssError::invalid_arg(
                "backupType VSS_BT_UNDEFINED is not a backup type; use VSS_BT_FULL, VSS_BT_COPY, ...",
            ));
        }
        if !select_components && self.bcd.writers.iter().any(|w| !w.components.is_empty()) {
            return Err(bad(
                "components were already added; non-component mode is no longer possible",
            ));
        }
        self.bcd.select_components = select_components;
        self.bcd.bootable_system_state = bootable_system_state;
        self.bcd.backup_type = Some(backup_type);
        self.bcd.partial_file_support = partial_file_support;
        self.backup_state_set = true;
        self.lock_context();
        Ok(())
    }

    /// Starts an asynchronous operation (after the daemon's own checks passed).
    pub fn begin(&mut self, op: OpKind) -> Result<(), VssError> {
        let call = match op {
            OpKind::GatherWriterMetadata => Call::GatherWriterMetadata,
            OpKind::PrepareForBackup => Call::PrepareForBackup,
            OpKind::DoSnapshotSet => Call::DoSnapshotSet,
            OpKind::BackupComplete => Call::BackupComplete,
            OpKind::GatherWriterStatus => Call::GatherWriterStatus,
            OpKind::PreRestore => Call::PreRestore,
            OpKind::PostRestore => Call::PostRestore,
        };
        self.check(call)?;
        self.lock_context();
        self.running = Some(op);
        match op {
            OpKind::GatherWriterMetadata => self.gather = Step::Running,
            OpKind::PrepareForBackup => {
                self.prepare = Step::Running;
                self.fix_participants();
            }
            OpKind::DoSnapshotSet => self.snapshot = Step::Running,
            OpKind::BackupComplete => self.complete = Step::Running,
            OpKind::GatherWriterStatus => {}
            OpKind::PreRestore => {
                self.pre_restore = Step::Running;
                self.fix_restore_participants();
            }
            OpKind::PostRestore => {
                self.post_restore = Step::Running;
                self.join_post_restore_if_replace_failed();
            }
        }
        Ok(())
    }

    /// Ends an asynchronous operation. `ok` is false when it failed or was cancelled.
    pub fn finish(&mut self, op: OpKind, ok: bool) {
        if self.running == Some(op) {
            self.running = None;
        }
        let step = if ok { Step::Done } else { Step::Failed };
        match op {
            OpKind::GatherWriterMetadata => self.gather = step,
            OpKind::PrepareForBackup => self.prepare = step,
            OpKind::DoSnapshotSet => self.snapshot = step,
            OpKind::BackupComplete => self.complete = step,
            OpKind::PreRestore => self.pre_restore = step,
            OpKind::PostRestore => self.post_restore = step,
            OpKind::GatherWriterStatus => {
                if ok {
                    self.status_gathered = true;
                    // The requester's status read after BackupComplete closes the writers'
                    // sessions (§5.4); it changes no state.
                    if self.complete == Step::Done {
                        for w in &mut self.writers {
                            w.session_completed = true;
                        }
                    }
                }
            }
        }
    }

    /// Records the writers that answered Identify (GatherWriterMetadata's result).
    pub fn set_writers(&mut self, writers: Vec<WriterRecord>) {
        self.writers = writers;
    }

    /// AddComponent: checks the component against the writer's metadata.
    pub fn add_component(
        &mut self,
        instance_id: Id,
        writer_id: Id,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
    ) -> Result<(), VssError> {
        self.check(Call::AddComponent)?;
        self.lock_context();
        let writer = self
            .writers
            .iter()
            .find(|w| w.metadata.instance_id == instance_id)
            .ok_or_else(|| {
                VssError::not_found(format!(
                    "no writer instance {instance_id} answered this session's GatherWriterMetadata"
                ))
            })?;
        if writer.metadata.writer_id != writer_id {
            return Err(VssError::invalid_arg(format!(
                "writer instance {instance_id} belongs to writer class {}, not {writer_id}",
                writer.metadata.writer_id
            )));
        }
        let md = &writer.metadata;
        let comp = md.component(logical_path, name).ok_or_else(|| {
            VssError::not_found(format!(
                "writer '{}' has no component '{}'",
                md.writer_name,
                full_path(logical_path, name)
            ))
        })?;
        if comp.component_type != component_type {
            return Err(VssError::invalid_arg(format!(
                "component '{}' is {}, not {component_type}",
                comp.full_path(),
                comp.component_type
            )));
        }
        // Only selectable components, or non-selectable ones with no selectable ancestor.
        let selectable_ancestor = md
            .components
            .iter()
            .find(|a| a.selectable && is_ancestor(&a.full_path(), &comp.full_path()));
        if let (false, Some(anc)) = (comp.selectable, selectable_ancestor) {
            return Err(VssError::invalid_arg(format!(
                "component '{}' is not selectable and comes with its selectable ancestor '{}'; add that one instead",
                comp.full_path(),
                anc.full_path()
            )));
        }
        let included: usize = self.bcd.writers.iter().map(|w| w.components.len()).sum();
        if included >= crate::MAX_COMPONENTS_PER_SESSION {
            return Err(VssError::new(
                ErrorCode::OutOfMemory,
                format!(
                    "the session already includes {included} components, the most a session may \
                     include; select component sets instead of their parts"
                ),
            ));
        }
        let entry = match self
            .bcd
            .writers
            .iter_mut()
            .find(|w| w.instance_id == instance_id)
        {
            Some(w) => w,
            None => {
                self.bcd.writers.push(WriterComponents {
                    writer_id,
                    instance_id,
                    components: Vec::new(),
                });
                self.bcd.writers.last_mut().expect("just pushed")
            }
        };
        // A duplicate is the same writer (class) with the same logical path and name.
        let dup = entry
            .components
            .iter()
            .any(|c| c.logical_path == logical_path && c.name == name);
        if dup {
            return Err(VssError::new(
                ErrorCode::ObjectAlreadyExists,
                format!(
                    "component '{}' of writer {writer_id} was already added",
                    full_path(logical_path, name)
                ),
            ));
        }
        entry
            .components
            .push(BcdComponent::new(component_type, logical_path, name));
        Ok(())
    }

    /// StartSnapshotSet (the daemon took the host-wide lock before calling this).
    pub fn start_snapshot_set(&mut self, id: Id) -> Result<(), VssError> {
        self.check(Call::StartSnapshotSet)?;
        self.lock_context();
        self.set = Some(SnapshotSet {
            id,
            volumes: Vec::new(),
        });
        self.bcd.snapshot_set = Some(SnapshotSetDescription {
            snapshot_set_id: id,
            snapshots: Vec::new(),
        });
        Ok(())
    }

    /// Checks AddToSnapshotSet's arguments against the set (count, duplicates) before the
    /// daemon asks a provider.
    pub fn check_add_volume(&self, volume: &str) -> Result<(), VssError> {
        self.check(Call::AddToSnapshotSet)?;
        let set = self.set.as_ref().expect("checked");
        if set.volumes.len() >= MAX_VOLUMES_PER_SET {
            return Err(VssError::new(
                ErrorCode::MaximumNumberOfVolumesReached,
                format!(
                    "the set already has {MAX_VOLUMES_PER_SET} volumes, the most a set may have"
                ),
            ));
        }
        if set.volumes.iter().any(|v| v.volume == volume) {
            return Err(VssError::new(
                ErrorCode::ObjectAlreadyExists,
                format!("volume {volume} is already in the snapshot set"),
            ));
        }
        Ok(())
    }

    /// AddToSnapshotSet, after the provider accepted the volume.
    pub fn add_volume(&mut self, volume: SetVolume) -> Result<(), VssError> {
        self.check_add_volume(&volume.volume)?;
        self.lock_context();
        if let Some(d) = self.bcd.snapshot_set.as_mut() {
            d.snapshots.push(SnapshotDescription {
                snapshot_id: volume.snapshot_id,
                original_volume: volume.volume.clone(),
                provider_id: volume.provider_id,
            });
        }
        self.set.as_mut().expect("checked").volumes.push(volume);
        Ok(())
    }

    /// SetBackupSucceeded.
    pub fn set_backup_succeeded(
        &mut self,
        instance_id: Id,
        writer_id: Id,
        component_type: ComponentType,
        logical_path: &str,
        name: &str,
        succeeded: bool,
    ) -> Result<(), VssError> {
        self.check(Call::SetBackupSucceeded)?;
        self.lock_context();
        let w = self
            .bcd
            .writers
            .iter_mut()
            .find(|w| w.instance_id == instance_id);
        let Some(w) = w.filter(|w| w.writer_id == writer_id) else {
            return Err(VssError::not_found(format!(
                "writer instance {instance_id} (class {writer_id}) has no component in the backup"
            )));
        };
        let c = w
            .components
            .iter_mut()
            .find(|c| {
                c.logical_path == logical_path
                    && c.name == name
                    && c.component_type == component_type
            })
            .ok_or_else(|| {
                VssError::not_found(format!(
                    "component '{}' ({component_type}) was not added to the backup",
                    full_path(logical_path, name)
                ))
            })?;
        c.backup_succeeded = succeeded;
        Ok(())
    }

    /// AbortBackup. Returns whether this call aborted (false if it was already aborted).
    pub fn abort_backup(&mut self) -> Result<bool, VssError> {
        self.check(Call::AbortBackup)?;
        self.lock_context();
        if self.aborted {
            return Ok(false);
        }
        self.aborted = true;
        Ok(true)
    }

    /// SetRestoreState.
    pub fn set_restore_state(&mut self, restore_type: RestoreType) -> Result<(), VssError> {
        self.check(Call::SetRestoreState)?;
        if restore_type == RestoreType::Undefined {
            return Err(VssError::invalid_arg(
                "restoreType VSS_RTYPE_UNDEFINED is not a restore type; use VSS_RTYPE_BY_COPY, \
                 VSS_RTYPE_IMPORT or VSS_RTYPE_OTHER",
            ));
        }
        self.bcd.restore_type = Some(restore_type);
        Ok(())
    }

    /// SetSelectedForRestore (and SetSelectedForRestoreEx when `c.instance_id` is given: the
    /// component is then restored by that live instance of the writer).
    pub fn set_selected_for_restore(
        &mut self,
        c: RestoreComponent<'_>,
        selected: bool,
    ) -> Result<(), VssError> {
        self.check(Call::SetSelectedForRestore)?;
        let live = self
            .writers
            .iter()
            .find(|w| {
                w.metadata.writer_id == c.writer_id
                    && c.instance_id.is_none_or(|i| w.metadata.instance_id == i)
            })
            .map(|w| w.metadata.instance_id)
            .ok_or_else(|| {
                VssError::not_found(format!(
                    "writer {}{} is not running (it did not answer this session's \
                     GatherWriterMetadata): start it, then restore in a new session",
                    c.writer_id,
                    c.instance_id
                        .map(|i| format!(" instance {i}"))
                        .unwrap_or_default()
                ))
            })?;
        let (entry, comp) = self.restore_component_mut(&c)?;
        comp.selected_for_restore = selected;
        if c.instance_id.is_some() {
            self.bcd.writers[entry].instance_id = live;
        }
        Ok(())
    }

    /// SetRestoreOptions.
    pub fn set_restore_options(
        &mut self,
        c: RestoreComponent<'_>,
        options: &str,
    ) -> Result<(), VssError> {
        self.check(Call::SetRestoreOptions)?;
        self.restore_component_mut(&c)?.1.restore_options = Some(options.to_owned());
        Ok(())
    }

    /// SetAdditionalRestores.
    pub fn set_additional_restores(
        &mut self,
        c: RestoreComponent<'_>,
        additional: bool,
    ) -> Result<(), VssError> {
        self.check(Call::SetAdditionalRestores)?;
        self.restore_component_mut(&c)?.1.additional_restores = additional;
        Ok(())
    }

    /// AddAlternativeLocationMapping: a file set of the component was restored to
    /// `mapping.destination`. Paths must be absolute.
    pub fn add_alternative_location_mapping(
        &mut self,
        c: RestoreComponent<'_>,
        mapping: AlternateLocation,
    ) -> Result<(), VssError> {
        self.check(Call::AddAlternativeLocationMapping)?;
        for (what, p) in [
            ("path", &mapping.path),
            ("destination", &mapping.destination),
        ] {
            if !p.starts_with('/') || p.split('/').any(|part| part == "..") {
                return Err(VssError::invalid_arg(format!(
                    "{what} '{p}' must be an absolute path without '..'"
                )));
            }
        }
        if mapping.filespec.is_empty() {
            return Err(VssError::invalid_arg(
                "filespec is empty; use '*' for every file",
            ));
        }
        let comp = self.restore_component_mut(&c)?.1;
        if comp.restore_target.is_none() {
            comp.restore_target = Some(RestoreTarget::Alternate);
        }
        comp.alternate_locations.push(mapping);
        Ok(())
    }

    /// SetFileRestoreStatus.
    pub fn set_file_restore_status(
        &mut self,
        c: RestoreComponent<'_>,
        status: FileRestoreStatus,
    ) -> Result<(), VssError> {
        self.check(Call::SetFileRestoreStatus)?;
        if status == FileRestoreStatus::Undefined {
            return Err(VssError::invalid_arg(
                "status VSS_RS_UNDEFINED is not an outcome; use VSS_RS_ALL, VSS_RS_NONE or \
                 VSS_RS_FAILED",
            ));
        }
        self.restore_component_mut(&c)?.1.file_restore_status = Some(status);
        Ok(())
    }

    /// The BCD component a restore call names: the entry's index and the component.
    fn restore_component_mut(
        &mut self,
        c: &RestoreComponent<'_>,
    ) -> Result<(usize, &mut BcdComponent), VssError> {
        let found = self.bcd.writers.iter().enumerate().find_map(|(i, w)| {
            (w.writer_id == c.writer_id)
                .then(|| {
                    w.components.iter().position(|x| {
                        x.logical_path == c.logical_path
                            && x.name == c.name
                            && x.component_type == c.component_type
                    })
                })
                .flatten()
                .map(|j| (i, j))
        });
        let Some((i, j)) = found else {
            return Err(VssError::not_found(format!(
                "component '{}' ({}) of writer {} is not in the backup components document",
                full_path(c.logical_path, c.name),
                c.component_type,
                c.writer_id
            )));
        };
        Ok((i, &mut self.bcd.writers[i].components[j]))
    }

    /// The BCD entry a live writer restores: its own instance's, else (a new process of the
    /// same writer) the first of its writer class that no other live instance restores.
    fn restore_entry(&self, w: &WriterRecord) -> Option<&WriterComponents> {
        let md = &w.metadata;
        let live = |id: Id| self.writers.iter().any(|x| x.metadata.instance_id == id);
        self.bcd
            .writers
            .iter()
            .find(|e| e.instance_id == md.instance_id)
            .or_else(|| {
                self.bcd
                    .writers
                    .iter()
                    .find(|e| e.writer_id == md.writer_id && !live(e.instance_id))
            })
    }

    /// Fixes who takes part in the restore (at PreRestore): writers with a component selected
    /// for restore, as their declared `writerRestore` says.
    fn fix_restore_participants(&mut self) {
        let decided: Vec<Participation> = self
            .writers
            .iter()
            .map(|w| {
                let selected = self
                    .restore_entry(w)
                    .is_some_and(|e| e.components.iter().any(|c| c.selected_for_restore));
                match (selected, w.metadata.writer_restore) {
                    (false, _) | (true, WriterRestore::Never) => Participation::Undecided,
                    (true, WriterRestore::IfReplaceFails) => Participation::RestoreIfReplaceFails,
                    (true, WriterRestore::Always | WriterRestore::Undefined) => Participation::Full,
                }
            })
            .collect();
        for (w, p) in self.writers.iter_mut().zip(decided) {
            w.participation = p;
        }
    }

    /// At PostRestore, an IF_REPLACE_FAILS writer joins if a selected component of its was not
    /// restored in full (no status, VSS_RS_NONE or VSS_RS_FAILED).
    fn join_post_restore_if_replace_failed(&mut self) {
        let joins: Vec<bool> = self
            .writers
            .iter()
            .map(|w| {
                w.participation == Participation::RestoreIfReplaceFails
                    && self.restore_entry(w).is_some_and(|e| {
                        e.components.iter().any(|c| {
                            c.selected_for_restore
                                && c.file_restore_status != Some(FileRestoreStatus::All)
                        })
                    })
            })
            .collect();
        for (w, join) in self.writers.iter_mut().zip(joins) {
            if join {
                w.participation = Participation::Full;
            }
        }
    }

    /// The components a restore event carries to a writer instance: those of its BCD entry
    /// that are selected for restore.
    pub fn restore_event_components(&self, instance_id: Id) -> Vec<BcdComponent> {
        self.writers
            .iter()
            .find(|w| w.metadata.instance_id == instance_id)
            .and_then(|w| self.restore_entry(w))
            .map(|e| {
                e.components
                    .iter()
                    .filter(|c| c.selected_for_restore)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fixes who takes part (at PrepareForBackup).
    fn fix_participants(&mut self) {
        let select = self.bcd.select_components;
        for w in &mut self.writers {
            let included = self
                .bcd
                .writers
                .iter()
                .any(|c| c.instance_id == w.metadata.instance_id && !c.components.is_empty());
            w.participation = if !select || included {
                Participation::Full
            } else {
                Participation::PrepareOnly
            };
        }
    }

    /// Writers that take part fully.
    pub fn participants(&self) -> impl Iterator<Item = &WriterRecord> {
        self.writers
            .iter()
            .filter(|w| w.participation == Participation::Full)
    }

    /// The writer record of an instance.
    pub fn writer_mut(&mut self, instance_id: Id) -> Option<&mut WriterRecord> {
        self.writers
            .iter_mut()
            .find(|w| w.metadata.instance_id == instance_id)
    }

    /// The BCD components of one writer instance (what its events carry), or `None` in
    /// non-component mode.
    pub fn event_components(&self, instance_id: Id) -> Option<Vec<BcdComponent>> {
        if !self.bcd.select_components {
            return None;
        }
        Some(
            self.bcd
                .writer(instance_id)
                .map(|w| w.components.clone())
                .unwrap_or_default(),
        )
    }

    /// The metadata of the session's writers.
    pub fn writer_metadata(&self) -> Vec<WriterMetadata> {
        self.writers.iter().map(|w| w.metadata.clone()).collect()
    }
}

/// Whether logical path `ancestor` is a proper ancestor of `path` (`a\b` of `a\b\c`).
fn is_ancestor(ancestor: &str, path: &str) -> bool {
    path.len() > ancestor.len()
        && path.starts_with(ancestor)
        && path.as_bytes()[ancestor.len()] == b'\\'
}

#[cfg(test)]
mod tests;

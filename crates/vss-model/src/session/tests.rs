//! Table-driven tests of every call-order rule and documented error of the backup methods
//! (vss-model.md §2, §3), and of the BackupComplete rules of the core issue.

use super::*;
use crate::{
    ApplicationLevel, RestoreMethod, SourceType, UsageType, WriterEvent, WriterRestore,
    WriterState,
    wmd::{FileSpec, WmdComponent},
    writers::EventOutcome,
};
use ErrorCode::{
    BadState, InvalidArg, MaximumNumberOfVolumesReached, ObjectAlreadyExists, ObjectNotFound,
};

const W1: u128 = 0x1111;
const I1: u128 = 0xAAAA;

fn comp(lp: &str, name: &str, selectable: bool) -> WmdComponent {
    WmdComponent {
        component_type: ComponentType::FileGroup,
        logical_path: lp.into(),
        name: name.into(),
        caption: String::new(),
        selectable,
        selectable_for_restore: false,
        notify_on_backup_complete: true,
        restore_metadata: false,
        component_flags: 0,
        files: vec![FileSpec {
            path: "/data".into(),
            filespec: "*".into(),
            recursive: true,
            alternate_path: None,
            backup_type_mask: 0xF0F,
        }],
        log_files: vec![],
        dependencies: vec![],
    }
}

fn writer(w: u128, i: u128) -> WriterRecord {
    WriterRecord::new(
        WriterMetadata {
            writer_id: Id::from_u128(w),
            instance_id: Id::from_u128(i),
            writer_name: format!("writer-{w:x}"),
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
            components: vec![
                comp("", "db", true),
                comp("", "logs", false),
                comp("set", "child", false),
                comp("", "set", true),
            ],
        },
        format!("/run/w{w:x}.sock"),
    )
}

/// One step of a scripted session.
#[derive(Debug, Clone, Copy)]
enum A {
    InitB,
    InitR,
    Ctx(i64),
    State(bool, BackupType),
    /// GatherWriterMetadata, finished, with two writers (or none).
    Gather(bool),
    GatherRunning,
    Add(&'static str, &'static str),
    AddAs(u128, u128, ComponentType, &'static str),
    Start,
    Vol(&'static str),
    Prep,
    Snap(bool),
    SnapRunning,
    Succ(&'static str, bool),
    Complete,
    Status,
    GetStatus,
    GetMeta,
    Abort,
    Save,
    Query,
    Props,
}

fn run(s: &mut Session, a: A) -> Result<(), ErrorCode> {
    let r = match a {
        A::InitB => s.initialize_for_backup(None),
        A::InitR => s.initialize_for_restore(BackupComponents::default()),
        A::Ctx(c) => s.set_context(c),
        A::State(sel, bt) => s.set_backup_state(sel, false, bt, false),
        A::Gather(with_writers) => s.begin(OpKind::GatherWriterMetadata).map(|_| {
            if with_writers {
                s.set_writers(vec![writer(W1, I1), writer(0x2222, 0xBBBB)]);
            }
            s.finish(OpKind::GatherWriterMetadata, true);
        }),
        A::GatherRunning => s.begin(OpKind::GatherWriterMetadata),
        A::Add(lp, name) => s.add_component(
            Id::from_u128(I1),
            Id::from_u128(W1),
            ComponentType::FileGroup,
            lp,
            name,
        ),
        A::AddAs(w, i, ct, name) => {
            s.add_component(Id::from_u128(i), Id::from_u128(w), ct, "", name)
        }
        A::Start => s.start_snapshot_set(Id::from_u128(0x5E7)),
        A::Vol(v) => s.add_volume(SetVolume {
            volume: v.into(),
            snapshot_id: Id::new_v4(),
            provider_id: Id::nil(),
        }),
        A::Prep => s
            .begin(OpKind::PrepareForBackup)
            .map(|_| s.finish(OpKind::PrepareForBackup, true)),
        A::Snap(ok) => s
            .begin(OpKind::DoSnapshotSet)
            .map(|_| s.finish(OpKind::DoSnapshotSet, ok)),
        A::SnapRunning => s.begin(OpKind::DoSnapshotSet),
        A::Succ(name, ok) => s.set_backup_succeeded(
            Id::from_u128(I1),
            Id::from_u128(W1),
            ComponentType::FileGroup,
            "",
            name,
            ok,
        ),
        A::Complete => s
            .begin(OpKind::BackupComplete)
            .map(|_| s.finish(OpKind::BackupComplete, true)),
        A::Status => s
            .begin(OpKind::GatherWriterStatus)
            .map(|_| s.finish(OpKind::GatherWriterStatus, true)),
        A::GetStatus => s.check(Call::GetWriterStatus),
        A::GetMeta => s.check(Call::GetWriterMetadata),
        A::Abort => s.abort_backup().map(|_| ()),
        A::Save => s.check(Call::SaveAsXml),
        A::Query => s.check(Call::Query),
        A::Props => s.check(Call::GetSnapshotProperties),
    };
    r.map_err(|e| e.code)
}

fn session_after(prefix: &[A]) -> Session {
    let mut s = Session::new();
    for a in prefix {
        run(&mut s, *a).unwrap_or_else(|e| panic!("prefix step {a:?} failed with {}", e.name()));
    }
    s
}

use A::*;
const FULL: BackupType = BackupType::Full;
/// A standard component-mode backup up to a successful DoSnapshotSet.
const TO_SNAP: &[A] = &[
    InitB,
    State(true, FULL),
    Gather(true),
    Add("", "db"),
    Start,
    Vol("/v"),
    Prep,
    Snap(true),
];
const TO_PREP: &[A] = &[
    InitB,
    State(true, FULL),
    Gather(true),
    Add("", "db"),
    Start,
    Vol("/v"),
    Prep,
];

/// One row: name, the calls made before, the call under test, the expected result.
type Row = (&'static str, &'static [A], A, Result<(), ErrorCode>);

#[test]
fn call_order_table() {
    let ok = Ok(());
    let table: &[Row] = &[
        // Initialization.
        ("nothing before init", &[], Ctx(0), Err(BadState)),
        ("gather before init", &[], Gather(true), Err(BadState)),
        ("start before init", &[], Start, Err(BadState)),
        ("abort before init", &[], Abort, Err(BadState)),
        ("complete before init", &[], Complete, Err(BadState)),
        ("query before init", &[], Query, Err(BadState)),
        ("save before init", &[], Save, Err(BadState)),
        ("init twice", &[InitB], InitB, Err(BadState)),
        ("restore after backup init", &[InitB], InitR, Err(BadState)),
        // SetContext.
        ("context right after init", &[InitB], Ctx(0x10), ok),
        ("context twice", &[InitB, Ctx(0)], Ctx(0), Err(BadState)),
        (
            "context after another call",
            &[InitB, State(true, FULL)],
            Ctx(0),
            Err(BadState),
        ),
        ("context all", &[InitB], Ctx(-1), Err(InvalidArg)),
        (
            "context garbage",
            &[InitB],
            Ctx(0x1234_5678),
            Err(InvalidArg),
        ),
        (
            "context client accessible",
            &[InitB],
            Ctx(0x1D),
            Err(InvalidArg),
        ),
        ("context in restore", &[InitR], Ctx(0), Err(BadState)),
        // SetBackupState.
        (
            "state undefined type",
            &[InitB],
            State(true, BackupType::Undefined),
            Err(InvalidArg),
        ),
        (
            "state in restore",
            &[InitR],
            State(true, FULL),
            Err(BadState),
        ),
        (
            "state after prepare",
            TO_PREP,
            State(true, FULL),
            Err(BadState),
        ),
        (
            "state twice before prepare",
            &[InitB, State(true, FULL)],
            State(true, BackupType::Copy),
            ok,
        ),
        // GatherWriterMetadata.
        (
            "gather twice",
            &[InitB, Gather(true)],
            Gather(true),
            Err(BadState),
        ),
        ("gather in restore", &[InitR], Gather(true), ok),
        (
            "get metadata before gather",
            &[InitB],
            GetMeta,
            Err(BadState),
        ),
        (
            "get metadata while gathering",
            &[InitB, GatherRunning],
            GetMeta,
            Err(BadState),
        ),
        (
            "calls while gathering",
            &[InitB, GatherRunning],
            Start,
            Err(BadState),
        ),
        // AddComponent.
        (
            "add before gather",
            &[InitB, State(true, FULL)],
            Add("", "db"),
            Err(BadState),
        ),
        (
            "add without component mode",
            &[InitB, Gather(true)],
            Add("", "db"),
            Err(BadState),
        ),
        (
            "add in non-component mode",
            &[InitB, State(false, FULL), Gather(true)],
            Add("", "db"),
            Err(BadState),
        ),
        (
            "add in no-writer context",
            &[InitB, Ctx(0x10), State(true, FULL), Gather(true)],
            Add("", "db"),
            Err(BadState),
        ),
        (
            "add in restore",
            &[InitR, Gather(true)],
            Add("", "db"),
            Err(BadState),
        ),
        (
            "add ok",
            &[InitB, State(true, FULL), Gather(true)],
            Add("", "db"),
            ok,
        ),
        (
            "add duplicate",
            &[InitB, State(true, FULL), Gather(true), Add("", "db")],
            Add("", "db"),
            Err(ObjectAlreadyExists),
        ),
        (
            "add unknown component",
            &[InitB, State(true, FULL), Gather(true)],
            Add("", "nope"),
            Err(ObjectNotFound),
        ),
        (
            "add unknown instance",
            &[InitB, State(true, FULL), Gather(true)],
            AddAs(W1, 0xDEAD, ComponentType::FileGroup, "db"),
            Err(ObjectNotFound),
        ),
        (
            "add wrong writer class",
            &[InitB, State(true, FULL), Gather(true)],
            AddAs(0x2222, I1, ComponentType::FileGroup, "db"),
            Err(InvalidArg),
        ),
        (
            "add wrong type",
            &[InitB, State(true, FULL), Gather(true)],
            AddAs(W1, I1, ComponentType::Database, "db"),
            Err(InvalidArg),
        ),
        (
            "add non-selectable with selectable ancestor",
            &[InitB, State(true, FULL), Gather(true)],
            Add("set", "child"),
            Err(InvalidArg),
        ),
        (
            "add top-level non-selectable",
            &[InitB, State(true, FULL), Gather(true)],
            Add("", "logs"),
            ok,
        ),
        ("add after prepare", TO_PREP, Add("", "logs"), Err(BadState)),
        // StartSnapshotSet / AddToSnapshotSet.
        ("start ok", &[InitB], Start, ok),
        ("start twice", &[InitB, Start], Start, Err(BadState)),
        ("start in restore", &[InitR], Start, Err(BadState)),
        ("start after abort", &[InitB, Abort], Start, Err(BadState)),
        ("volume before start", &[InitB], Vol("/v"), Err(BadState)),
        (
            "volume duplicate",
            &[InitB, Start, Vol("/v")],
            Vol("/v"),
            Err(ObjectAlreadyExists),
        ),
        ("volume after snapshot", TO_SNAP, Vol("/w"), Err(BadState)),
        ("volume in restore", &[InitR], Vol("/v"), Err(BadState)),
        // PrepareForBackup.
        (
            "prepare without state",
            &[InitB, Gather(true), Start],
            Prep,
            Err(BadState),
        ),
        (
            "prepare without gather",
            &[InitB, State(true, FULL), Start],
            Prep,
            Err(BadState),
        ),
        (
            "prepare without start",
            &[InitB, State(true, FULL), Gather(true)],
            Prep,
            Err(BadState),
        ),
        ("prepare twice", TO_PREP, Prep, Err(BadState)),
        (
            "prepare in no-writer context",
            &[InitB, Ctx(0x10), State(true, FULL), Gather(true), Start],
            Prep,
            Err(BadState),
        ),
        (
            "prepare in restore",
            &[InitR, Gather(true)],
            Prep,
            Err(BadState),
        ),
        (
            "prepare with no components",
            &[InitB, State(true, FULL), Gather(true), Start],
            Prep,
            ok,
        ),
        // DoSnapshotSet.
        (
            "snapshot without start",
            &[InitB, State(true, FULL), Gather(true)],
            Snap(true),
            Err(BadState),
        ),
        (
            "snapshot without prepare",
            &[InitB, State(true, FULL), Gather(true), Start, Vol("/v")],
            Snap(true),
            Err(BadState),
        ),
        (
            "snapshot without gather",
            &[InitB, State(true, FULL), Start, Vol("/v")],
            Snap(true),
            Err(BadState),
        ),
        ("snapshot ok", TO_PREP, Snap(true), ok),
        ("snapshot twice", TO_SNAP, Snap(true), Err(BadState)),
        (
            "snapshot after failed snapshot",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Start,
                Vol("/v"),
                Prep,
                Snap(false),
            ],
            Snap(true),
            Err(BadState),
        ),
        (
            "snapshot no-writer context",
            &[InitB, Ctx(0x10), Start, Vol("/v")],
            Snap(true),
            ok,
        ),
        (
            "snapshot empty set",
            &[InitB, State(true, FULL), Gather(true), Start, Prep],
            Snap(true),
            ok,
        ),
        (
            "snapshot after abort",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Start,
                Vol("/v"),
                Prep,
                Abort,
            ],
            Snap(true),
            Err(BadState),
        ),
        ("snapshot in restore", &[InitR], Snap(true), Err(BadState)),
        (
            "abort while snapshotting",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Start,
                Vol("/v"),
                Prep,
                SnapRunning,
            ],
            Abort,
            Err(BadState),
        ),
        (
            "status read while snapshotting",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Start,
                Vol("/v"),
                Prep,
                Status,
                SnapRunning,
            ],
            GetStatus,
            ok,
        ),
        // SetBackupSucceeded.
        (
            "succeeded before snapshot",
            TO_PREP,
            Succ("db", true),
            Err(BadState),
        ),
        (
            "succeeded after failed snapshot",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(false),
            ],
            Succ("db", true),
            Err(BadState),
        ),
        (
            "succeeded unknown component",
            TO_SNAP,
            Succ("logs", true),
            Err(ObjectNotFound),
        ),
        ("succeeded ok", TO_SNAP, Succ("db", true), ok),
        (
            "succeeded after complete",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(true),
                Complete,
            ],
            Succ("db", true),
            Err(BadState),
        ),
        (
            "succeeded after abort",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(true),
                Abort,
            ],
            Succ("db", true),
            Err(BadState),
        ),
        // BackupComplete (the standard rules).
        ("complete not initialized", &[], Complete, Err(BadState)),
        (
            "complete in restore",
            &[InitR, Gather(true)],
            Complete,
            Err(BadState),
        ),
        ("complete before snapshot", TO_PREP, Complete, Err(BadState)),
        (
            "complete after failed snapshot",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(false),
            ],
            Complete,
            Err(BadState),
        ),
        ("complete ok", TO_SNAP, Complete, ok),
        (
            "complete twice",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(true),
                Complete,
            ],
            Complete,
            Err(BadState),
        ),
        (
            "complete no-writer context",
            &[InitB, Ctx(0x10), Start, Vol("/v"), Snap(true)],
            Complete,
            Err(BadState),
        ),
        (
            "complete after abort",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(true),
                Abort,
            ],
            Complete,
            Err(BadState),
        ),
        // Status.
        (
            "gather status before metadata",
            &[InitB],
            Status,
            Err(BadState),
        ),
        (
            "get status before gather status",
            &[InitB, Gather(true)],
            GetStatus,
            Err(BadState),
        ),
        (
            "get status ok",
            &[InitB, Gather(true), Status],
            GetStatus,
            ok,
        ),
        (
            "gather status in restore",
            &[InitR, Gather(true)],
            Status,
            ok,
        ),
        // AbortBackup.
        ("abort after init", &[InitB], Abort, ok),
        ("abort twice is harmless", &[InitB, Abort], Abort, ok),
        ("abort in restore", &[InitR], Abort, Err(BadState)),
        (
            "abort after complete",
            &[
                InitB,
                State(true, FULL),
                Gather(true),
                Add("", "db"),
                Start,
                Vol("/v"),
                Prep,
                Snap(true),
                Complete,
            ],
            Abort,
            ok,
        ),
        // Administration and reads.
        ("query in backup", &[InitB], Query, ok),
        ("query in restore", &[InitR], Query, Err(BadState)),
        ("properties in restore", &[InitR], Props, Err(BadState)),
        ("save in restore", &[InitR], Save, ok),
    ];
    let mut failures = Vec::new();
    for (name, prefix, call, expected) in table {
        let mut s = session_after(prefix);
        let got = run(&mut s, *call);
        if got != *expected {
            failures.push(format!(
                "{name}: {call:?} after {prefix:?}: expected {:?}, got {:?}",
                expected.map_err(|c| c.name()),
                got.map_err(|c| c.name())
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn max_volumes_per_set() {
    let mut s = session_after(&[InitB, Start]);
    for i in 0..MAX_VOLUMES_PER_SET {
        let v = format!("/v{i}");
        s.add_volume(SetVolume {
            volume: v,
            snapshot_id: Id::new_v4(),
            provider_id: Id::nil(),
        })
        .unwrap();
    }
    let e = s.check_add_volume("/one-more").unwrap_err();
    assert_eq!(e.code, MaximumNumberOfVolumesReached);
}

#[test]
fn participants_are_fixed_at_prepare_for_backup() {
    // Component mode: the writer with an included component takes part, the other only gets
    // PrepareForBackup.
    let s = session_after(TO_PREP);
    let p: Vec<_> = s
        .writers
        .iter()
        .map(|w| (w.metadata.instance_id.as_u128(), w.participation))
        .collect();
    assert_eq!(
        p,
        vec![
            (I1, Participation::Full),
            (0xBBBB, Participation::PrepareOnly)
        ]
    );
    assert_eq!(s.event_components(Id::from_u128(I1)).unwrap().len(), 1);
    assert_eq!(s.event_components(Id::from_u128(0xBBBB)).unwrap().len(), 0);
    // Non-component mode: every writer takes part with components null.
    let s = session_after(&[
        InitB,
        State(false, FULL),
        Gather(true),
        Start,
        Vol("/v"),
        Prep,
    ]);
    assert!(
        s.writers
            .iter()
            .all(|w| w.participation == Participation::Full)
    );
    assert_eq!(s.event_components(Id::from_u128(I1)), None);
}

#[test]
fn backup_complete_carries_the_succeeded_flags() {
    let mut s = session_after(&[
        InitB,
        State(true, FULL),
        Gather(true),
        Add("", "db"),
        Add("", "logs"),
        Start,
        Vol("/v"),
        Prep,
        Snap(true),
        Succ("db", true),
    ]);
    let comps = s.event_components(Id::from_u128(I1)).unwrap();
    let flags: Vec<_> = comps
        .iter()
        .map(|c| (c.name.as_str(), c.backup_succeeded))
        .collect();
    // "logs" never got SetBackupSucceeded: false.
    assert_eq!(flags, vec![("db", true), ("logs", false)]);
    s.set_backup_succeeded(
        Id::from_u128(I1),
        Id::from_u128(W1),
        ComponentType::FileGroup,
        "",
        "db",
        false,
    )
    .unwrap();
    assert!(!s.event_components(Id::from_u128(I1)).unwrap()[0].backup_succeeded);
}

#[test]
fn set_lock_is_held_from_start_until_snapshot_ends_or_abort() {
    let mut s = session_after(&[InitB, State(true, FULL), Gather(true), Start]);
    assert!(s.holds_set_lock());
    run(&mut s, Vol("/v")).unwrap();
    run(&mut s, Prep).unwrap();
    run(&mut s, SnapRunning).unwrap();
    assert!(s.holds_set_lock());
    s.finish(OpKind::DoSnapshotSet, false);
    assert!(!s.holds_set_lock(), "released when DoSnapshotSet fails");
    let s = session_after(TO_SNAP);
    assert!(!s.holds_set_lock(), "released when DoSnapshotSet succeeds");
    let s = session_after(&[InitB, Start, Abort]);
    assert!(!s.holds_set_lock(), "released on AbortBackup");
}

#[test]
fn backup_shutdown_only_after_prepare_and_never_for_restore() {
    assert!(
        !session_after(&[InitB, State(true, FULL), Gather(true), Start]).needs_backup_shutdown()
    );
    assert!(session_after(TO_PREP).needs_backup_shutdown());
    assert!(!session_after(&[InitR, Gather(true)]).needs_backup_shutdown());
}

#[test]
fn gather_status_after_complete_closes_writer_sessions_without_changing_state() {
    let mut s = session_after(&[
        InitB,
        State(true, FULL),
        Gather(true),
        Add("", "db"),
        Start,
        Vol("/v"),
        Prep,
        Snap(true),
    ]);
    let w = s.writer_mut(Id::from_u128(I1)).unwrap();
    for e in [
        WriterEvent::PrepareForBackup,
        WriterEvent::PrepareForSnapshot,
        WriterEvent::Freeze,
        WriterEvent::Thaw,
        WriterEvent::PostSnapshot,
        WriterEvent::BackupComplete,
    ] {
        w.record(e, EventOutcome::Succeeded);
    }
    run(&mut s, Complete).unwrap();
    let before: Vec<_> = s.writers.iter().map(|w| (w.state, w.failure)).collect();
    run(&mut s, Status).unwrap();
    let after: Vec<_> = s.writers.iter().map(|w| (w.state, w.failure)).collect();
    assert_eq!(before, after);
    assert!(s.writers.iter().all(|w| w.session_completed));
    assert_eq!(s.writers[0].state, WriterState::Stable);
}

#[test]
fn administration_calls_need_a_backup_session() {
    for call in [
        Call::Query,
        Call::DeleteSnapshots,
        Call::DeleteVolumeSnapshots,
        Call::ExposeSnapshot,
        Call::UnexposeSnapshot,
        Call::BreakSnapshotSet,
    ] {
        assert_eq!(
            Session::new().check(call).unwrap_err().code,
            BadState,
            "{call:?} uninitialized"
        );
        assert_eq!(
            session_after(&[InitR]).check(call).unwrap_err().code,
            BadState,
            "{call:?} in restore"
        );
        assert!(
            session_after(&[InitB]).check(call).is_ok(),
            "{call:?} in backup"
        );
        assert!(
            session_after(TO_SNAP).check(call).is_ok(),
            "{call:?} after a snapshot"
        );
    }
}

#[test]
fn components_per_session_are_limited() {
    let mut s = session_after(&[InitB, State(true, FULL)]);
    s.begin(OpKind::GatherWriterMetadata).unwrap();
    let mut w = writer(W1, I1);
    w.metadata.components = (0..=crate::MAX_COMPONENTS_PER_SESSION)
        .map(|i| comp("", &format!("c{i}"), true))
        .collect();
    s.set_writers(vec![w]);
    s.finish(OpKind::GatherWriterMetadata, true);
    let add = |s: &mut Session, i: usize| {
        s.add_component(
            Id::from_u128(I1),
            Id::from_u128(W1),
            ComponentType::FileGroup,
            "",
            &format!("c{i}"),
        )
    };
    for i in 0..crate::MAX_COMPONENTS_PER_SESSION {
        add(&mut s, i).unwrap();
    }
    let e = add(&mut s, crate::MAX_COMPONENTS_PER_SESSION).unwrap_err();
    assert_eq!(e.code, ErrorCode::OutOfMemory);
}

// ------------------------------------------------------------------------------------------------
// Restore sessions (vss-model.md §2.2 (f), §2.4, §3)

/// The instance that made the backup; the live writer of the same class has instance I1.
const OLD: u128 = 0xDEAD;

/// A BCD saved by a backup of writer W1 (instance OLD): components db and set.
fn saved_bcd() -> BackupComponents {
    let mut b = BackupComponents {
        select_components: true,
        backup_type: Some(FULL),
        ..Default::default()
    };
    b.writers.push(WriterComponents {
        writer_id: Id::from_u128(W1),
        instance_id: Id::from_u128(OLD),
        components: vec![
            BcdComponent::new(ComponentType::FileGroup, "", "db"),
            BcdComponent::new(ComponentType::FileGroup, "", "set"),
        ],
    });
    b
}

/// One step of a scripted restore session.
#[derive(Debug, Clone, Copy)]
enum R {
    Init,
    InitBackup,
    Type(RestoreType),
    /// GatherWriterMetadata, finished: W1 (instance I1, `writerRestore` as given) and W2.
    Gather(WriterRestore),
    Sel(&'static str, bool),
    /// SetSelectedForRestoreEx naming an instance.
    SelEx(&'static str, u128),
    /// SetSelectedForRestore for a writer class that is not running.
    SelOther,
    Opts(&'static str),
    More(&'static str),
    Pre(bool),
    PreRunning,
    Alt(&'static str, &'static str),
    Status(&'static str, FileRestoreStatus),
    Post(bool),
    GatherStatus,
    /// A backup call, to see it refused.
    Backup(Call),
}

fn rc(name: &'static str) -> RestoreComponent<'static> {
    RestoreComponent {
        writer_id: Id::from_u128(W1),
        instance_id: None,
        component_type: ComponentType::FileGroup,
        logical_path: "",
        name,
    }
}

fn run_r(s: &mut Session, a: R) -> Result<(), ErrorCode> {
    let r = match a {
        R::Init => s.initialize_for_restore(saved_bcd()),
        R::InitBackup => s.initialize_for_backup(None),
        R::Type(t) => s.set_restore_state(t),
        R::Gather(wr) => s.begin(OpKind::GatherWriterMetadata).map(|_| {
            let mut w = writer(W1, I1);
            w.metadata.writer_restore = wr;
            s.set_writers(vec![w, writer(0x2222, 0xBBBB)]);
            s.finish(OpKind::GatherWriterMetadata, true);
        }),
        R::Sel(name, on) => s.set_selected_for_restore(rc(name), on),
        R::SelEx(name, i) => s.set_selected_for_restore(
            RestoreComponent {
                instance_id: Some(Id::from_u128(i)),
                ..rc(name)
            },
            true,
        ),
        R::SelOther => s.set_selected_for_restore(
            RestoreComponent {
                writer_id: Id::from_u128(0x9999),
                ..rc("db")
            },
            true,
        ),
        R::Opts(name) => s.set_restore_options(rc(name), "opt"),
        R::More(name) => s.set_additional_restores(rc(name), true),
        R::Pre(ok) => s
            .begin(OpKind::PreRestore)
            .map(|_| s.finish(OpKind::PreRestore, ok)),
        R::PreRunning => s.begin(OpKind::PreRestore),
        R::Alt(path, dest) => s.add_alternative_location_mapping(
            rc("db"),
            AlternateLocation {
                path: path.into(),
                filespec: "*".into(),
                recursive: true,
                destination: dest.into(),
            },
        ),
        R::Status(name, st) => s.set_file_restore_status(rc(name), st),
        R::Post(ok) => s
            .begin(OpKind::PostRestore)
            .map(|_| s.finish(OpKind::PostRestore, ok)),
        R::GatherStatus => s
            .begin(OpKind::GatherWriterStatus)
            .map(|_| s.finish(OpKind::GatherWriterStatus, true)),
        R::Backup(call) => s.check(call),
    };
    r.map_err(|e| e.code)
}

fn restore_after(prefix: &[R]) -> Session {
    let mut s = Session::new();
    for a in prefix {
        run_r(&mut s, *a).unwrap_or_else(|e| panic!("prefix step {a:?} failed with {}", e.name()));
    }
    s
}

const ALWAYS: WriterRestore = WriterRestore::Always;
const TO_GATHER: &[R] = &[R::Init, R::Gather(ALWAYS)];
const TO_PRE: &[R] = &[R::Init, R::Gather(ALWAYS), R::Sel("db", true), R::Pre(true)];
const TO_POST: &[R] = &[
    R::Init,
    R::Gather(ALWAYS),
    R::Sel("db", true),
    R::Pre(true),
    R::Status("db", FileRestoreStatus::All),
    R::Post(true),
];

type RRow = (&'static str, &'static [R], R, Result<(), ErrorCode>);

#[test]
fn restore_call_order_table() {
    use FileRestoreStatus as S;
    let ok = Ok(());
    let table: &[RRow] = &[
        // Set-up.
        (
            "restore state first",
            &[R::Init],
            R::Type(RestoreType::ByCopy),
            ok,
        ),
        (
            "restore state undefined",
            &[R::Init],
            R::Type(RestoreType::Undefined),
            Err(InvalidArg),
        ),
        (
            "restore state after gather",
            TO_GATHER,
            R::Type(RestoreType::Import),
            ok,
        ),
        (
            "restore state after PreRestore",
            TO_PRE,
            R::Type(RestoreType::ByCopy),
            Err(BadState),
        ),
        (
            "restore state in a backup",
            &[R::InitBackup],
            R::Type(RestoreType::ByCopy),
            Err(BadState),
        ),
        (
            "restore state before init",
            &[],
            R::Type(RestoreType::ByCopy),
            Err(BadState),
        ),
        // Selection: after GatherWriterMetadata, before PreRestore.
        (
            "select before gather",
            &[R::Init],
            R::Sel("db", true),
            Err(BadState),
        ),
        ("select", TO_GATHER, R::Sel("db", true), ok),
        ("unselect", TO_GATHER, R::Sel("db", false), ok),
        (
            "select a component not in the BCD",
            TO_GATHER,
            R::Sel("logs", true),
            Err(ObjectNotFound),
        ),
        (
            "select for a writer not running",
            TO_GATHER,
            R::SelOther,
            Err(ObjectNotFound),
        ),
        (
            "select with the live instance",
            TO_GATHER,
            R::SelEx("db", I1),
            ok,
        ),
        (
            "select with an instance not running",
            TO_GATHER,
            R::SelEx("db", 0x7777),
            Err(ObjectNotFound),
        ),
        (
            "select after PreRestore",
            TO_PRE,
            R::Sel("set", true),
            Err(BadState),
        ),
        (
            "select in a backup",
            &[R::InitBackup],
            R::Sel("db", true),
            Err(BadState),
        ),
        ("options", TO_GATHER, R::Opts("db"), ok),
        (
            "options of an unknown component",
            TO_GATHER,
            R::Opts("nope"),
            Err(ObjectNotFound),
        ),
        (
            "options after PreRestore",
            TO_PRE,
            R::Opts("db"),
            Err(BadState),
        ),
        ("additional restores", TO_GATHER, R::More("set"), ok),
        (
            "additional restores after PreRestore",
            TO_PRE,
            R::More("db"),
            Err(BadState),
        ),
        (
            "additional restores in a backup",
            &[R::InitBackup],
            R::More("db"),
            Err(BadState),
        ),
        // PreRestore.
        (
            "PreRestore before gather",
            &[R::Init],
            R::Pre(true),
            Err(BadState),
        ),
        (
            "PreRestore",
            &[R::Init, R::Gather(ALWAYS), R::Sel("db", true)],
            R::Pre(true),
            ok,
        ),
        (
            "PreRestore with nothing selected",
            TO_GATHER,
            R::Pre(true),
            ok,
        ),
        ("PreRestore twice", TO_PRE, R::Pre(true), Err(BadState)),
        (
            "PreRestore in a backup",
            &[R::InitBackup],
            R::Pre(true),
            Err(BadState),
        ),
        // Between PreRestore and PostRestore.
        (
            "file status before PreRestore",
            TO_GATHER,
            R::Status("db", S::All),
            Err(BadState),
        ),
        (
            "file status while PreRestore runs",
            &[R::Init, R::Gather(ALWAYS), R::PreRunning],
            R::Status("db", S::All),
            Err(BadState),
        ),
        ("file status", TO_PRE, R::Status("db", S::All), ok),
        ("file status failed", TO_PRE, R::Status("db", S::Failed), ok),
        (
            "file status undefined",
            TO_PRE,
            R::Status("db", S::Undefined),
            Err(InvalidArg),
        ),
        (
            "file status of an unknown component",
            TO_PRE,
            R::Status("nope", S::All),
            Err(ObjectNotFound),
        ),
        (
            "file status after PostRestore",
            TO_POST,
            R::Status("db", S::All),
            Err(BadState),
        ),
        (
            "file status after a failed PreRestore",
            &[R::Init, R::Gather(ALWAYS), R::Pre(false)],
            R::Status("db", S::All),
            Err(BadState),
        ),
        ("mapping", TO_PRE, R::Alt("/var/lib/db", "/restore/db"), ok),
        (
            "mapping to a relative path",
            TO_PRE,
            R::Alt("/var/lib/db", "restore/db"),
            Err(InvalidArg),
        ),
        (
            "mapping with ..",
            TO_PRE,
            R::Alt("/var/lib/../db", "/restore"),
            Err(InvalidArg),
        ),
        (
            "mapping before PreRestore",
            TO_GATHER,
            R::Alt("/a", "/b"),
            ok,
        ),
        (
            "mapping before gather",
            &[R::Init],
            R::Alt("/a", "/b"),
            Err(BadState),
        ),
        (
            "mapping while PreRestore runs",
            &[R::Init, R::Gather(ALWAYS), R::PreRunning],
            R::Alt("/a", "/b"),
            Err(BadState),
        ),
        (
            "mapping after a failed PreRestore",
            &[R::Init, R::Gather(ALWAYS), R::Pre(false)],
            R::Alt("/a", "/b"),
            Err(BadState),
        ),
        (
            "mapping after PostRestore",
            TO_POST,
            R::Alt("/a", "/b"),
            Err(BadState),
        ),
        // PostRestore.
        (
            "PostRestore before PreRestore",
            TO_GATHER,
            R::Post(true),
            Err(BadState),
        ),
        (
            "PostRestore while PreRestore runs",
            &[R::Init, R::Gather(ALWAYS), R::PreRunning],
            R::Post(true),
            Err(BadState),
        ),
        ("PostRestore", TO_PRE, R::Post(true), ok),
        ("PostRestore twice", TO_POST, R::Post(true), Err(BadState)),
        (
            "PostRestore after a failed PreRestore",
            &[R::Init, R::Gather(ALWAYS), R::Pre(false)],
            R::Post(true),
            Err(BadState),
        ),
        (
            "PostRestore in a backup",
            &[R::InitBackup],
            R::Post(true),
            Err(BadState),
        ),
        ("status after PostRestore", TO_POST, R::GatherStatus, ok),
        // Backup-only calls in a restore session.
        (
            "SetContext in a restore",
            TO_GATHER,
            R::Backup(Call::SetContext),
            Err(BadState),
        ),
        (
            "SetBackupState in a restore",
            TO_GATHER,
            R::Backup(Call::SetBackupState),
            Err(BadState),
        ),
        (
            "AddComponent in a restore",
            TO_GATHER,
            R::Backup(Call::AddComponent),
            Err(BadState),
        ),
        (
            "StartSnapshotSet in a restore",
            TO_GATHER,
            R::Backup(Call::StartSnapshotSet),
            Err(BadState),
        ),
        (
            "AddToSnapshotSet in a restore",
            TO_GATHER,
            R::Backup(Call::AddToSnapshotSet),
            Err(BadState),
        ),
        (
            "PrepareForBackup in a restore",
            TO_GATHER,
            R::Backup(Call::PrepareForBackup),
            Err(BadState),
        ),
        (
            "DoSnapshotSet in a restore",
            TO_PRE,
            R::Backup(Call::DoSnapshotSet),
            Err(BadState),
        ),
        (
            "SetBackupSucceeded in a restore",
            TO_PRE,
            R::Backup(Call::SetBackupSucceeded),
            Err(BadState),
        ),
        (
            "BackupComplete in a restore",
            TO_POST,
            R::Backup(Call::BackupComplete),
            Err(BadState),
        ),
        (
            "AbortBackup in a restore",
            TO_PRE,
            R::Backup(Call::AbortBackup),
            Err(BadState),
        ),
        (
            "RevertToSnapshot in a restore",
            TO_GATHER,
            R::Backup(Call::RevertToSnapshot),
            Err(BadState),
        ),
        (
            "SaveAsXml in a restore",
            TO_POST,
            R::Backup(Call::SaveAsXml),
            ok,
        ),
    ];
    for (name, prefix, call, expected) in table {
        let mut s = restore_after(prefix);
        let got = run_r(&mut s, *call);
        assert_eq!(
            got.map_err(|c| c.name()),
            expected.map_err(|c| c.name()),
            "row '{name}'"
        );
    }
}

/// Who gets PreRestore and PostRestore: writers with a component selected for restore, as
/// their `writerRestore` says; the events carry the selected components only; no
/// BackupShutdown for a restore.
#[test]
fn restore_participants_follow_selection_and_writer_restore() {
    let gets = |wr: WriterRestore, status: Option<FileRestoreStatus>| {
        let mut s = restore_after(&[R::Init, R::Gather(wr), R::Sel("db", true)]);
        run_r(&mut s, R::Pre(true)).unwrap();
        let pre = s.writers[0].receives(WriterEvent::PreRestore);
        let other = s.writers[1].receives(WriterEvent::PreRestore);
        assert!(!other, "a writer with nothing selected gets no PreRestore");
        if let Some(st) = status {
            run_r(&mut s, R::Status("db", st)).unwrap();
        }
        s.begin(OpKind::PostRestore).unwrap();
        let post = s.writers[0].receives(WriterEvent::PostRestore);
        assert!(!s.writers[1].receives(WriterEvent::PostRestore));
        assert!(!s.needs_backup_shutdown());
        (pre, post)
    };
    use FileRestoreStatus as S;
    assert_eq!(gets(WriterRestore::Always, Some(S::All)), (true, true));
    assert_eq!(gets(WriterRestore::Undefined, None), (true, true));
    assert_eq!(gets(WriterRestore::Never, Some(S::Failed)), (false, false));
    assert_eq!(
        gets(WriterRestore::IfReplaceFails, Some(S::All)),
        (false, false)
    );
    assert_eq!(
        gets(WriterRestore::IfReplaceFails, Some(S::Failed)),
        (false, true)
    );
    assert_eq!(gets(WriterRestore::IfReplaceFails, None), (false, true));

    // Nothing selected: nobody.
    let mut s = restore_after(&[R::Init, R::Gather(ALWAYS)]);
    run_r(&mut s, R::Pre(true)).unwrap();
    assert!(
        s.writers
            .iter()
            .all(|w| !w.receives(WriterEvent::PreRestore))
    );

    // The events carry the selected components, with what the requester set.
    let mut s = restore_after(&[
        R::Init,
        R::Gather(ALWAYS),
        R::Sel("db", true),
        R::Opts("db"),
    ]);
    run_r(&mut s, R::Pre(true)).unwrap();
    run_r(&mut s, R::Alt("/data", "/restore")).unwrap();
    let comps = s.restore_event_components(Id::from_u128(I1));
    assert_eq!(comps.len(), 1);
    assert_eq!(comps[0].name, "db");
    assert_eq!(comps[0].restore_options.as_deref(), Some("opt"));
    assert_eq!(comps[0].restore_target, Some(RestoreTarget::Alternate));
    assert_eq!(comps[0].alternate_locations[0].destination, "/restore");
    assert!(s.restore_event_components(Id::from_u128(0xBBBB)).is_empty());

    // Two live instances of the class, neither the backup's: only one restores the entry.
    let mut s = restore_after(&[R::Init]);
    s.begin(OpKind::GatherWriterMetadata).unwrap();
    s.set_writers(vec![writer(W1, I1), writer(W1, 0xCCCC)]);
    s.finish(OpKind::GatherWriterMetadata, true);
    run_r(&mut s, R::SelEx("db", I1)).unwrap();
    assert_eq!(s.restore_event_components(Id::from_u128(I1)).len(), 1);
    assert!(
        s.restore_event_components(Id::from_u128(0xCCCC)).is_empty(),
        "a second instance of the class took the first one's component"
    );

    // SetSelectedForRestoreEx moves the component to the named live instance.
    let mut s = restore_after(&[R::Init, R::Gather(ALWAYS)]);
    run_r(&mut s, R::SelEx("db", I1)).unwrap();
    assert_eq!(s.bcd.writers[0].instance_id, Id::from_u128(I1));
}

/// A writer that fails PreRestore ends FAILED_AT_PRE_RESTORE and gets no PostRestore; one
/// that fails PostRestore ends FAILED_AT_POST_RESTORE.
#[test]
fn restore_failures_are_recorded_per_event() {
    let mut s = restore_after(&[R::Init, R::Gather(ALWAYS), R::Sel("db", true)]);
    s.begin(OpKind::PreRestore).unwrap();
    s.writers[0].record(
        WriterEvent::PreRestore,
        EventOutcome::Failed(VssError::new(ErrorCode::WriterErrorRetryable, "busy")),
    );
    s.finish(OpKind::PreRestore, true);
    assert_eq!(s.writers[0].state, WriterState::FailedAtPreRestore);
    s.begin(OpKind::PostRestore).unwrap();
    assert!(!s.writers[0].receives(WriterEvent::PostRestore));

    let mut s = restore_after(&[R::Init, R::Gather(ALWAYS), R::Sel("db", true), R::Pre(true)]);
    s.begin(OpKind::PostRestore).unwrap();
    s.writers[0].record(
        WriterEvent::PostRestore,
        EventOutcome::NotResponding("no reply".into()),
    );
    assert_eq!(s.writers[0].state, WriterState::FailedAtPostRestore);
}

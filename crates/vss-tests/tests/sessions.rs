//! Requester sessions end to end: bad input changes nothing (AddToSnapshotSet with bad volumes,
//! SetContext with bad values or out of order), who takes part in a backup (non-component mode,
//! writers without included components, writers failing Identify), the Freeze/Thaw order by
//! application level, and btrfs subvolumes as volumes.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use vss_client::{BackupType, ErrorCode};

const QUICK: Duration = Duration::from_secs(30);

const FULL_ORDER: [&str; 8] = [
    "Identify",
    "PrepareForBackup",
    "PrepareForSnapshot",
    "Freeze",
    "Thaw",
    "PostSnapshot",
    "BackupComplete",
    "BackupShutdown",
];

/// AddToSnapshotSet with bad volumes fails with the documented codes and changes nothing: the
/// set stays empty, the session goes on, and the backup that follows has exactly the one good
/// volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_volumes_are_refused_and_change_nothing() {
    let Some(mut env) = Env::new() else { return };
    let ext4 = Mounted::ext4(64 << 20).expect("an ext4 on a loop device");
    let vol = env.volume();
    // A plain directory on ext4: no provider takes it (reflink needs xfs or btrfs; on btrfs it
    // would be a valid reflink volume).
    let plain_dir = ext4.path().join("not-a-mount-point");
    std::fs::create_dir(&plain_dir).unwrap();
    let file = vol.join("a-file");
    std::fs::write(&file, "x").unwrap();
    env.start_vssd(&[]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(false, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let set = bc.start_snapshot_set().await.unwrap();

    let missing = format!("/nonexistent-{}", uuid::Uuid::new_v4());
    let cases: Vec<(String, Option<uuid::Uuid>, ErrorCode)> = vec![
        ("relative/path".into(), None, ErrorCode::InvalidArg),
        ("".into(), None, ErrorCode::InvalidArg),
        (missing, None, ErrorCode::ObjectNotFound),
        (
            plain_dir.display().to_string(),
            None,
            ErrorCode::VolumeNotSupported,
        ),
        (file.display().to_string(), None, ErrorCode::InvalidArg),
        (
            ext4.path().display().to_string(),
            None,
            ErrorCode::VolumeNotSupported,
        ),
        (
            env.volume_str(),
            Some(uuid::Uuid::new_v4()),
            ErrorCode::ProviderNotRegistered,
        ),
    ];
    for (volume, provider, code) in &cases {
        let e = bc.add_to_snapshot_set(volume, *provider).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(*code),
            "AddToSnapshotSet({volume:?}, {provider:?}): {e}"
        );
    }
    // Nothing was added: the good volume goes in once, a second time is a duplicate.
    let snapshot = bc
        .add_to_snapshot_set(&env.volume_str(), None)
        .await
        .expect("the session still works");
    let e = bc
        .add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ObjectAlreadyExists), "{e}");
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let snaps = bc.query(Some(-1), Some(set), None).await.unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].snapshot_id, snapshot.to_string());
    assert_eq!(snaps[0].snapshots_count, 1);
    assert_eq!(Path::new(&snaps[0].original_volume), vol);
    // ext4 was only looked at.
    assert!(!ext4.path().join(".vss").exists());
}

/// SetContext: only VSS_CTX_BACKUP, FILE_SHARE_BACKUP, APP_ROLLBACK and NAS_ROLLBACK (with the
/// allowed attribute bits); anything else is E_INVALIDARG and changes nothing; once, right
/// after InitializeForBackup, else VSS_E_BAD_STATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_context_values_and_order() {
    let Some(mut env) = Env::new() else { return };
    env.start_vssd(&[]);

    let mut bc = env.requester().await;
    let e = bc.set_context(0).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "before InitializeForBackup: {e}"
    );
    bc.initialize_for_backup(None).await.unwrap();
    let bad: [i64; 9] = [
        -1,          // VSS_CTX_ALL: Query and DeleteSnapshots only
        0xFFFF_FFFF, // the same as unsigned
        0x1,         // PERSISTENT alone is no context
        0x4,         // CLIENT_ACCESSIBLE bit
        0x1d,        // VSS_CTX_CLIENT_ACCESSIBLE
        0xd,         // VSS_CTX_CLIENT_ACCESSIBLE_WRITERS
        0x0006_0000, // DIFFERENTIAL | PLEX
        1 << 33,     // out of range
        i64::MIN,    // out of range
    ];
    for v in bad {
        let e = bc.set_context(v).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(ErrorCode::InvalidArg),
            "SetContext({v:#x}): {e}"
        );
    }
    // The refusals changed nothing: SetContext is still allowed, once.
    bc.set_context(0x9)
        .await
        .expect("SetContext(APP_ROLLBACK) after refused values");
    let e = bc.set_context(0).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "SetContext twice: {e}");
    let xml = bc.save_as_xml().await.unwrap();
    drop(bc);

    for good in [0x0, 0x10, 0x9, 0x19, 0x9 | 0x20, 0x9 | 0x0002_0000 | 0x80] {
        let mut bc = env.requester().await;
        bc.initialize_for_backup(None).await.unwrap();
        bc.set_context(good)
            .await
            .unwrap_or_else(|e| panic!("SetContext({good:#x}): {e}"));
    }

    // After another call, SetContext is out of sequence.
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    let e = bc.set_context(0x9).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "SetContext after SetBackupState: {e}"
    );

    // In a restore session SetContext is a backup call.
    let mut bc = env.requester().await;
    bc.initialize_for_restore(&xml).await.unwrap();
    let e = bc.set_context(0).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "SetContext in a restore session: {e}"
    );
}

/// Non-component mode: every writer that answered Identify gets every event, with
/// `components: null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_component_mode_sends_every_event_to_every_writer_with_null_components() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("with", &["--component", &component("db", &vol)]);
    env.start_writer("without", &[]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), false, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.backup_complete().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    assert_eq!(status.len(), 2);
    assert!(
        status
            .iter()
            .all(|s| s.state_name == "VSS_WS_STABLE" && s.failure == 0),
        "{status:?}"
    );
    drop(bc);
    for w in ["with", "without"] {
        env.wait_for_last_event(w, "BackupShutdown", QUICK).await;
        assert_eq!(env.event_names(w), FULL_ORDER, "{w}");
        for (event, params) in env.events(w) {
            if event == "Identify" || event == "BackupShutdown" {
                continue;
            }
            let obj = params
                .as_object()
                .unwrap_or_else(|| panic!("{w} {event}: params {params}"));
            assert_eq!(
                obj.get("components"),
                Some(&serde_json::Value::Null),
                "{w} {event}: {params}"
            );
            assert_eq!(
                obj.get("selectComponents"),
                Some(&serde_json::Value::Bool(false)),
                "{w} {event}"
            );
        }
    }
}

/// Component mode: a writer none of whose components was included gets PrepareForBackup only
/// (no Freeze, no BackupComplete, no BackupShutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_without_included_components_gets_prepare_for_backup_only() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("in", &["--component", &component("db", &vol)]);
    env.start_writer("out", &["--component", &component("files", &vol)]);
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, Some(&["in"])).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.backup_complete().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    assert_eq!(status_of(&status, "out").state_name, "VSS_WS_STABLE");
    assert_eq!(status_of(&status, "in").state_name, "VSS_WS_STABLE");
    drop(bc);
    env.wait_for_last_event("in", "BackupShutdown", QUICK).await;
    assert_eq!(env.event_names("in"), FULL_ORDER);
    assert_eq!(env.event_names("out"), ["Identify", "PrepareForBackup"]);
    let (_, params) = &env.events("out")[1];
    assert_eq!(
        params["components"],
        serde_json::json!([]),
        "no component of 'out' is included: {params}"
    );
}

/// Writers declaring application level AUTO or UNKNOWN fail Identify: GetWriterMetadata does not
/// list them and they take no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_with_level_auto_or_unknown_fail_identify() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("good", &["--component", &component("db", &vol)]);
    env.start_writer(
        "auto",
        &["--component", &component("a", &vol), "--level", "auto"],
    );
    env.start_writer(
        "unknown",
        &["--component", &component("u", &vol), "--level", "unknown"],
    );
    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    let names: Vec<&str> = p.writers.iter().map(|w| w.writer_name.as_str()).collect();
    assert_eq!(names, ["good"]);
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    assert_eq!(status.len(), 1, "{status:?}");
    for w in ["auto", "unknown"] {
        assert_eq!(
            env.event_names(w),
            ["Identify"],
            "{w} answered Identify and got nothing else"
        );
    }
}

/// Freeze goes FRONT_END, then BACK_END, then SYSTEM; Thaw unwinds in reverse. The three writers
/// log to one file; Freeze and Thaw are sent one level at a time, so their lines land in the
/// order vssd sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_goes_front_back_system_and_thaw_unwinds() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    let log = env.log("shared");
    env.start_vssd(&[]);
    // Started in an order unlike the levels', and named so that socket order is not level order.
    env.start_writer_with_log(
        "a-system",
        &log,
        &["--component", &component("s", &vol), "--level", "system"],
    );
    env.start_writer_with_log(
        "b-front",
        &log,
        &["--component", &component("f", &vol), "--level", "front-end"],
    );
    env.start_writer_with_log(
        "c-back",
        &log,
        &["--component", &component("b", &vol), "--level", "back-end"],
    );
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let status = writer_status(&mut bc).await;
    assert!(
        status
            .iter()
            .all(|s| s.state_name == "VSS_WS_WAITING_FOR_BACKUP_COMPLETE"),
        "{status:?}"
    );

    let who = |pid: u32| -> &'static str {
        [
            ("a-system", "system"),
            ("b-front", "front"),
            ("c-back", "back"),
        ]
        .into_iter()
        .find(|(n, _)| env.writer_pid(n) == pid)
        .map(|(_, level)| level)
        .unwrap_or("?")
    };
    let events = shared_log_events(&log);
    let order = |event: &str| -> Vec<&'static str> {
        events
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, pid)| who(*pid))
            .collect()
    };
    assert_eq!(order("Freeze"), ["front", "back", "system"], "{events:?}");
    assert_eq!(order("Thaw"), ["system", "back", "front"], "{events:?}");
}

/// A btrfs subvolume mounted on its own (`-o subvol=data`) while the top level is mounted
/// nowhere: the backup works, the snapshot lives outside the source subvolume (under the top
/// level, which vssd mounts privately), and a subvolume nested in the source is an empty
/// directory in the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_subvol_mount_lives_outside_the_subvolume() {
    let Some(mut env) = Env::new() else { return };
    let data = env.fs.create_subvolume("data");
    std::fs::write(data.join("file.txt"), "data").unwrap();
    let nested = env.fs.create_subvolume("data/nested");
    std::fs::write(nested.join("inner.txt"), "nested").unwrap();
    let sub = env
        .fs
        .mount_again(Some("subvol=data"))
        .expect("mount -o subvol=data");
    env.fs.unmount().expect("unmount the top level");
    let volume = sub.path().to_owned();
    env.start_vssd(&[]);
    env.start_writer("w", &["--component", &component("db", &volume)]);

    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, volume.to_str().unwrap(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let props = bc.get_snapshot_properties(p.snapshot).await.unwrap();
    assert_eq!(Path::new(&props.original_volume), volume);
    let snap = PathBuf::from(&props.snapshot_path);
    assert!(
        !snap.starts_with(&volume),
        "the snapshot {} is inside the source {}",
        snap.display(),
        volume.display()
    );
    assert_eq!(
        snap.parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str()),
        Some(".vss"),
        "{}",
        snap.display()
    );
    assert_eq!(
        std::fs::read_to_string(snap.join("file.txt")).unwrap(),
        "data"
    );
    assert_nested_is_empty(&snap);
    assert!(
        !volume.join(".vss").exists(),
        "nothing was created inside the source subvolume"
    );
    let e = std::fs::write(snap.join("new.txt"), "x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error()),
        "read-only: {e}"
    );

    bc.backup_complete().await.unwrap().await.unwrap();
    drop(bc);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
    env.wait_for_last_event("w", "BackupShutdown", QUICK).await;
    drop(sub);
}

/// A subvolume that is a plain directory inside the mounted top level (a subvolume root, inode
/// 256) is a volume: its snapshot goes under `<top>/.vss/`, and a subvolume nested in it is an
/// empty directory there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_subvolume_inside_the_top_level() {
    let Some(mut env) = Env::new() else { return };
    let top = env.volume();
    let data = env.fs.create_subvolume("data");
    std::fs::write(data.join("file.txt"), "data").unwrap();
    let nested = env.fs.create_subvolume("data/nested");
    std::fs::write(nested.join("inner.txt"), "nested").unwrap();
    std::fs::write(top.join("outside.txt"), "top").unwrap();
    env.start_vssd(&[]);

    let mut bc = env.requester().await;
    let p = prepare_backup(&mut bc, data.to_str().unwrap(), false, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let props = bc.get_snapshot_properties(p.snapshot).await.unwrap();
    assert_eq!(Path::new(&props.original_volume), data);
    let snap = PathBuf::from(&props.snapshot_path);
    assert_eq!(
        snap.parent(),
        Some(top.join(".vss").as_path()),
        "{}",
        snap.display()
    );
    assert_eq!(
        std::fs::read_to_string(snap.join("file.txt")).unwrap(),
        "data"
    );
    assert!(
        !snap.join("outside.txt").exists(),
        "only the subvolume is in its snapshot"
    );
    assert_nested_is_empty(&snap);
    drop(bc);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
    assert!(vss_snapshots(&top).is_empty());
}

/// `nested` in the snapshot is an empty directory (btrfs leaves one for a nested subvolume).
fn assert_nested_is_empty(snap: &Path) {
    let n = snap.join("nested");
    assert!(n.is_dir(), "{} is missing", n.display());
    let entries: Vec<_> = std::fs::read_dir(&n).unwrap().collect();
    assert!(
        entries.is_empty(),
        "the nested subvolume's content is in the snapshot: {entries:?}"
    );
}

/// A context without writers (VSS_CTX_FILE_SHARE_BACKUP): DoSnapshotSet needs neither
/// GatherWriterMetadata nor PrepareForBackup, writers hear nothing, and the writer calls
/// (PrepareForBackup, BackupComplete) are VSS_E_BAD_STATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_without_writers_involves_no_writer() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("w", &["--component", &component("db", &vol)]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(0x10).await.unwrap();
    let set = bc.start_snapshot_set().await.unwrap();
    let snapshot = bc
        .add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap();
    let e = bc.prepare_for_backup().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "PrepareForBackup without writers: {e}"
    );
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "BackupComplete without writers: {e}"
    );
    let props = bc.get_snapshot_properties(snapshot).await.unwrap();
    assert_eq!(props.snapshot_set_id, set.to_string());
    assert_eq!(props.context, 0x10);
    let snap = PathBuf::from(&props.snapshot_path);
    assert!(snap.is_dir());
    drop(bc);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;
    assert!(
        env.event_names("w").is_empty(),
        "the writer heard {:?}",
        env.event_names("w")
    );
}

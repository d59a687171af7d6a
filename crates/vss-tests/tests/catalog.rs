//! The snapshot catalog end to end: limits, every delete form, persistence across restarts,
//! the consistency record, and writers whose data a set would not capture at one instant
//! (INCONSISTENTSNAPSHOT).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use vss_client::{
    AsyncStatus, BackupComponents, BackupType, ComponentType, ErrorCode, SnapshotContext, blocking,
};

const NAS_ROLLBACK: i64 = 0x19;

/// One persistent no-writer snapshot set of `volumes` (NAS_ROLLBACK); returns (set, snapshots).
async fn persistent_set(env: &Env, volumes: &[&str]) -> (uuid::Uuid, Vec<uuid::Uuid>) {
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(NAS_ROLLBACK).await.unwrap();
    let set = bc.start_snapshot_set().await.unwrap();
    let mut snaps = Vec::new();
    for v in volumes {
        snaps.push(bc.add_to_snapshot_set(v, None).await.unwrap());
    }
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    (set, snaps)
}

fn path_of(p: &vss_client::SnapshotProperties) -> PathBuf {
    PathBuf::from(&p.snapshot_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_snapshots_survive_restarts_and_every_delete_form_works() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume_str();
    env.start_vssd(&[]);
    let (set_a, a) = persistent_set(&env, &[&vol]).await;
    let (_set_b, b) = persistent_set(&env, &[&vol]).await;
    let (_set_c, c) = persistent_set(&env, &[&vol]).await;
    let (set_d, d) = persistent_set(&env, &[&vol]).await;

    // Restart vssd: they are all still there, with their properties.
    env.vssd
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(20));
    env.start_vssd(&[]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    let all = bc.query(Some(-1), None, None).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(
        all.iter()
            .all(|p| p.attributes == NAS_ROLLBACK && path_of(p).is_dir())
    );
    // Query in the session's context (BACKUP) does not see persistent snapshots.
    assert!(bc.query(None, None, None).await.unwrap().is_empty());
    let by_volume = bc.query(Some(-1), None, Some(&vol)).await.unwrap();
    assert_eq!(by_volume.len(), 4);
    let props = |id: uuid::Uuid| {
        all.iter()
            .find(|p| p.snapshot_id == id.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(props(a[0]).atomicity.as_deref(), Some("per-subvolume"));
    let cons = props(a[0]).consistency.expect("a consistency record");
    assert_eq!(
        cons.level, "crash-consistent",
        "no writers, no freeze: {cons:?}"
    );

    // By snapshot.
    let out = bc
        .delete_snapshots(b[0], vss_client::ObjectType::Snapshot, false)
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    assert!(!path_of(&props(b[0])).exists());
    // By set.
    bc.delete_snapshots(set_d, vss_client::ObjectType::SnapshotSet, false)
        .await
        .unwrap();
    assert!(!path_of(&props(d[0])).exists());
    // Oldest of a volume: a (c remains).
    let r = raw_call(
        &env.socket(),
        "vss.Requester.InitializeForBackup",
        serde_json::json!({}),
    )
    .await;
    assert!(r.is_ok());
    let deleted = delete_volume(&env, &vol, true).await;
    assert_eq!(deleted, 1);
    assert!(!path_of(&props(a[0])).exists(), "the oldest went");
    assert!(path_of(&props(c[0])).exists());
    // All of a volume.
    assert_eq!(delete_volume(&env, &vol, false).await, 1);
    assert!(!path_of(&props(c[0])).exists());
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    // Nothing left to delete: VSS_E_OBJECT_NOT_FOUND, for each form.
    let e = bc
        .delete_snapshots(set_a, vss_client::ObjectType::SnapshotSet, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ObjectNotFound));
    let e = raw_delete_volume(&env, &vol, true).await.unwrap_err();
    assert_eq!(e.0, "vss.Requester.VssError");
    assert_eq!(e.1["code"], "VSS_E_OBJECT_NOT_FOUND");
}

async fn raw_delete_volume(
    env: &Env,
    vol: &str,
    oldest: bool,
) -> Result<serde_json::Value, (String, serde_json::Value)> {
    let mut conn = vss_protocol::transport::connect(&env.socket())
        .await
        .unwrap();
    raw_call_on(
        &mut conn,
        "vss.Requester.InitializeForBackup",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    raw_call_on(
        &mut conn,
        "vss.Requester.DeleteVolumeSnapshots",
        serde_json::json!({ "volume": vol, "oldestOnly": oldest }),
    )
    .await
}

async fn delete_volume(env: &Env, vol: &str, oldest: bool) -> i64 {
    raw_delete_volume(env, vol, oldest).await.unwrap()["deleted"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_volumes_per_set_and_512_snapshots_per_volume() {
    let Some(mut env) = Env::new() else { return };
    // 65 subvolumes: each subvolume root is a volume.
    let subvols: Vec<String> = (0..65)
        .map(|i| {
            env.fs
                .create_subvolume(&format!("sv{i:02}"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    env.start_vssd(&[]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(NAS_ROLLBACK).await.unwrap();
    bc.start_snapshot_set().await.unwrap();
    for v in &subvols[..64] {
        bc.add_to_snapshot_set(v, None).await.unwrap();
    }
    let e = bc
        .add_to_snapshot_set(&subvols[64], None)
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::MaximumNumberOfVolumesReached),
        "{e}"
    );
    drop(bc);

    // 512 snapshots of one volume: the 513th is refused. Made through the blocking client on a
    // plain thread, one session each.
    let socket = env.socket();
    let vol = subvols[0].clone();
    let made = tokio::task::spawn_blocking(move || {
        let mut made = 0;
        for _ in 0..512 {
            let mut bc = blocking::BackupComponents::connect(&socket).unwrap();
            bc.initialize_for_backup(None).unwrap();
            bc.set_snapshot_context(SnapshotContext::NAS_ROLLBACK)
                .unwrap();
            bc.start_snapshot_set().unwrap();
            bc.add_to_snapshot_set(&vol, None).unwrap();
            bc.do_snapshot_set().unwrap().join().unwrap();
            made += 1;
        }
        let mut bc = blocking::BackupComponents::connect(&socket).unwrap();
        bc.initialize_for_backup(None).unwrap();
        bc.set_snapshot_context(SnapshotContext::NAS_ROLLBACK)
            .unwrap();
        bc.start_snapshot_set().unwrap();
        let e = bc.add_to_snapshot_set(&vol, None).unwrap_err();
        (made, e.code())
    })
    .await
    .unwrap();
    assert_eq!(
        made,
        (512, Some(ErrorCode::MaximumNumberOfSnapshotsReached))
    );
    // Deleting the oldest makes room again.
    assert_eq!(delete_volume(&env, &subvols[0], true).await, 1);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(NAS_ROLLBACK).await.unwrap();
    bc.start_snapshot_set().await.unwrap();
    bc.add_to_snapshot_set(&subvols[0], None).await.unwrap();
}

/// Runs a component-mode backup up to DoSnapshotSet including every component of every writer.
async fn backup_all(bc: &mut BackupComponents, volumes: &[&str]) -> AsyncStatus {
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    for w in bc.get_writer_metadata().await.unwrap() {
        for c in &w.components {
            bc.add_component(
                w.instance_id,
                w.writer_id,
                ComponentType::FileGroup,
                &c.logical_path,
                &c.name,
            )
            .await
            .unwrap();
        }
    }
    bc.start_snapshot_set().await.unwrap();
    for v in volumes {
        bc.add_to_snapshot_set(v, None).await.unwrap();
    }
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap()
}

fn spec(name: &str, paths: &[&Path]) -> String {
    let joined: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!(":{name}:selectable:{}", joined.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_the_set_cannot_capture_at_one_instant_fail_inconsistent_snapshot() {
    let Some(mut env) = Env::new() else { return };
    let top = env.volume();
    let data = env.fs.create_subvolume("data");
    let nested = env.fs.create_subvolume("data/nested");
    let logs = env.fs.create_subvolume("logs");
    env.start_vssd(&[]);
    // ok: everything in `data` (outside the nested subvolume).
    env.start_writer("ok", &["--component", &spec("db", &[&data.join("db")])]);
    // nested: a component inside a subvolume nested in `data`, which is not in the set.
    env.start_writer("nested", &["--component", &spec("db", &[&nested])]);
    // spans: files in `data` and in `logs`, both in the set but each snapshotted on its own.
    env.start_writer("spans", &["--component", &spec("db", &[&data, &logs])]);
    let mut bc = env.requester().await;
    let st = backup_all(&mut bc, &[data.to_str().unwrap(), logs.to_str().unwrap()]).await;
    assert_eq!(
        st,
        AsyncStatus::Finished,
        "the set completes without the inconsistent writers"
    );
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    let of = |n: &str| status.iter().find(|s| s.writer_name == n).unwrap().clone();
    assert_eq!(of("ok").state_name, "VSS_WS_WAITING_FOR_BACKUP_COMPLETE");
    for w in ["nested", "spans"] {
        let s = of(w);
        assert_eq!(s.state_name, "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT", "{s:?}");
        assert_eq!(
            s.failure_name, "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
            "{s:?}"
        );
        assert!(
            !env.event_names(w).contains(&"Freeze".to_owned()),
            "{w} was not frozen"
        );
    }
    assert!(of("nested").failure_message.unwrap().contains("nested"));
    // The consistency record says who was left out.
    let snaps = bc.query(Some(-1), None, None).await.unwrap();
    assert_eq!(snaps.len(), 2);
    let cons = snaps[0].consistency.clone().unwrap();
    assert_eq!(cons.writers_frozen, vec!["ok".to_owned()]);
    assert_eq!(cons.writers_failed.len(), 2, "{cons:?}");
    assert_eq!(cons.level, "crash-consistent", "{cons:?}");
    let _ = top;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_healthy_writers_is_application_consistent() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("w", &["--component", &spec("db", &[&vol])]);
    env.start_writer("idle", &["--component", &spec("other", &[&vol])]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let w = bc
        .get_writer_metadata()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.writer_name == "w")
        .unwrap();
    bc.add_component(
        w.instance_id,
        w.writer_id,
        ComponentType::FileGroup,
        "",
        "db",
    )
    .await
    .unwrap();
    bc.start_snapshot_set().await.unwrap();
    let snap = bc
        .add_to_snapshot_set(vol.to_str().unwrap(), None)
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let p = bc.get_snapshot_properties(snap).await.unwrap();
    let cons = p.consistency.unwrap();
    assert_eq!(cons.level, "application-consistent", "{cons:?}");
    assert_eq!(cons.writers_frozen, vec!["w".to_owned()]);
    assert_eq!(cons.writers_skipped, vec!["idle".to_owned()]);
    assert!(!cons.filesystem_frozen);
}

/// A snapshot whose writer failed is never recorded as application-consistent, even when the
/// writer failed only after Thaw (PostSnapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_failing_post_snapshot_is_not_application_consistent() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "late",
        &[
            "--component",
            &spec("db", &[&vol]),
            "--fail-at",
            "PostSnapshot",
        ],
    );
    let mut bc = env.requester().await;
    let st = backup_all(&mut bc, &[vol.to_str().unwrap()]).await;
    assert_eq!(
        st,
        AsyncStatus::Finished,
        "a PostSnapshot failure does not fail the set"
    );
    let snaps = bc.query(Some(-1), None, None).await.unwrap();
    let cons = snaps[0].consistency.clone().unwrap();
    assert_ne!(cons.level, "application-consistent", "{cons:?}");
    assert_eq!(cons.writers_failed.len(), 1, "{cons:?}");
    assert!(
        cons.writers_failed[0].contains("VSS_WS_FAILED_AT_POST_SNAPSHOT"),
        "{cons:?}"
    );
}

//! End-to-end backups through vssd with real writer processes on a real btrfs volume.

mod common;

use std::time::Duration;

use common::*;
use vss_client::{AsyncStatus, BackupType, ComponentType, ErrorCode};

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

fn flags(params: &serde_json::Value) -> Vec<(String, Option<bool>)> {
    params["components"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_owned(),
                        c["backupSucceeded"].as_bool(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_component_mode_backup_with_sdk_and_python_writers() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    let data = vol.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("before.txt"), "before").unwrap();
    let frozen = vol.join("written-before-freeze-answer.txt");
    let thawed = vol.join("written-on-thaw.txt");
    env.start_vssd(&[]);
    let comp = format!(":db:selectable:{}", data.display());
    env.start_writer(
        "alpha",
        &[
            "--component",
            &comp,
            "--component",
            &format!(":logs:selectable:{}", data.display()),
            "--write-on-freeze",
            frozen.to_str().unwrap(),
            "--write-on-thaw",
            thawed.to_str().unwrap(),
            "--backup-stamp",
            "stamp-1",
        ],
    );
    env.start_writer(
        "beta",
        &[
            "--component",
            &format!(":files:selectable:{}", data.display()),
            "--level",
            "back-end",
        ],
    );
    // A writer in Python with the PyPI `varlink` package: the protocol is language neutral.
    env.start_python_writer(
        "gamma",
        &[
            "--component",
            &format!(":pyfiles:selectable:{}", data.display()),
            "--level",
            "VSS_APP_SYSTEM",
        ],
    );

    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let writers = bc.get_writer_metadata().await.unwrap();
    assert_eq!(writers.len(), 3, "{writers:?}");
    for w in &writers {
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
    let set = bc.start_snapshot_set().await.unwrap();
    let snap = bc
        .add_to_snapshot_set(vol.to_str().unwrap(), None)
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    assert!(
        status.iter().all(|s| s.state == 5 && s.failure == 0),
        "{status:?}"
    );

    let props = bc.get_snapshot_properties(snap).await.unwrap();
    assert_eq!(props.snapshot_set_id, set.to_string());
    let snap_path = std::path::PathBuf::from(&props.snapshot_path);
    let snap_frozen = snap_path.join(frozen.file_name().unwrap());
    let snap_thawed = snap_path.join(thawed.file_name().unwrap());
    assert_eq!(
        std::fs::read_to_string(snap_path.join("data/before.txt")).unwrap(),
        "before"
    );
    assert!(
        snap_frozen.exists(),
        "a file written before the Freeze answer is in the snapshot"
    );
    assert!(
        thawed.exists(),
        "the writer wrote its Thaw file on the volume"
    );
    assert!(
        !snap_thawed.exists(),
        "a file written on Thaw is not in the snapshot"
    );
    let e = std::fs::write(snap_path.join("new.txt"), "x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error()),
        "the snapshot is read-only: {e}"
    );

    // alpha:db succeeded, alpha:logs never set (false), beta:files failed.
    let alpha = writers.iter().find(|w| w.writer_name == "alpha").unwrap();
    let beta = writers.iter().find(|w| w.writer_name == "beta").unwrap();
    bc.set_backup_succeeded(
        alpha.instance_id,
        alpha.writer_id,
        ComponentType::FileGroup,
        "",
        "db",
        true,
    )
    .await
    .unwrap();
    bc.set_backup_succeeded(
        beta.instance_id,
        beta.writer_id,
        ComponentType::FileGroup,
        "",
        "files",
        false,
    )
    .await
    .unwrap();
    let bcd = bc.save_as_xml().await.unwrap();
    assert!(
        bcd.contains("stamp-1"),
        "the writer's PostSnapshot stamp is in the BCD: {bcd}"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.state == 1 && s.state_name == "VSS_WS_STABLE"),
        "{status:?}"
    );
    // BackupComplete after BackupComplete is out of sequence.
    let again = bc.backup_complete().await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::BadState));

    drop(bc);
    wait_until(
        Duration::from_secs(30),
        || {
            env.event_names("alpha").last().map(String::as_str) == Some("BackupShutdown")
                && env.event_names("beta").last().map(String::as_str) == Some("BackupShutdown")
        },
        "BackupShutdown",
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        || !snap_path.exists(),
        "the auto-release snapshot to be deleted",
    )
    .await;

    for w in ["alpha", "beta", "gamma"] {
        assert_eq!(env.event_names(w), FULL_ORDER, "{w}'s events");
    }
    let bc_params = |w: &str| {
        env.events(w)
            .into_iter()
            .find(|(e, _)| e == "BackupComplete")
            .unwrap()
            .1
    };
    // gamma's component was never given SetBackupSucceeded: false.
    assert_eq!(
        flags(&bc_params("gamma")),
        vec![("pyfiles".to_owned(), Some(false))]
    );
    let mut a = flags(&bc_params("alpha"));
    a.sort();
    assert_eq!(
        a,
        vec![
            ("db".to_owned(), Some(true)),
            ("logs".to_owned(), Some(false))
        ]
    );
    assert_eq!(
        flags(&bc_params("beta")),
        vec![("files".to_owned(), Some(false))]
    );
    // Freeze went front end (alpha) before back end (beta); Thaw in reverse.
    let log = env.vssd_log();
    assert!(log.contains("snapshot committed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_complete_before_and_after_failed_snapshot_is_bad_state() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&["--timeout", "Freeze=3000"]);
    env.start_writer(
        "w",
        &[
            "--component",
            &format!(":c:selectable:{}", vol.display()),
            "--fail-at",
            "Freeze",
        ],
    );
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let w = bc.get_writer_metadata().await.unwrap().remove(0);
    bc.add_component(
        w.instance_id,
        w.writer_id,
        ComponentType::FileGroup,
        "",
        "c",
    )
    .await
    .unwrap();
    bc.start_snapshot_set().await.unwrap();
    bc.add_to_snapshot_set(vol.to_str().unwrap(), None)
        .await
        .unwrap();
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "before DoSnapshotSet");
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    let op = bc.do_snapshot_set().await.unwrap();
    let st = op.wait(None).await.unwrap();
    match st {
        AsyncStatus::Failed(e) => assert_eq!(e.code, ErrorCode::WriterErrorRetryable),
        other => panic!("DoSnapshotSet should fail, got {other:?}"),
    }
    let e = bc.backup_complete().await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::BadState),
        "after a failed DoSnapshotSet"
    );
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let s = bc.get_writer_status().await.unwrap().remove(0);
    assert_eq!(s.state_name, "VSS_WS_FAILED_AT_FREEZE");
    assert_eq!(s.failure_name, "VSS_E_WRITERERROR_RETRYABLE");
    // Nothing was left behind: no snapshot in the catalog.
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    bc.abort_backup().await.unwrap();
    drop(bc);
    wait_until(
        Duration::from_secs(30),
        || env.event_names("w").contains(&"BackupShutdown".to_owned()),
        "BackupShutdown",
    )
    .await;
    let names = env.event_names("w");
    assert_eq!(
        names,
        [
            "Identify",
            "PrepareForBackup",
            "PrepareForSnapshot",
            "Freeze",
            "Abort",
            "BackupShutdown"
        ]
    );
}

//! RevertToSnapshot end to end through vssd: a persistent btrfs snapshot of a subvolume is
//! reverted to (twice), the catalog keeps it; a non-persistent snapshot is refused with
//! VSS_E_UNSUPPORTED_CONTEXT, a reflink snapshot with E_NOTIMPL, an unknown id with
//! VSS_E_OBJECT_NOT_FOUND.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vss_client::{BackupComponents, ClientError, ErrorCode};

/// A requester session. vssd's socket file appears at bind(), a moment before listen(), and
/// the harness only waits for the file: on a loaded machine the first connection can be
/// refused, so a refused connection is retried for a while.
async fn requester(env: &Env) -> BackupComponents {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match BackupComponents::connect(env.socket()).await {
            Ok(bc) => return bc,
            Err(ClientError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to vssd: {e}"),
        }
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A persistent (VSS_CTX_APP_ROLLBACK) snapshot set of `volume`, made and closed in a session of
/// its own; returns the snapshot id.
async fn persistent_snapshot(env: &Env, volume: &str) -> uuid::Uuid {
    let mut bc = requester(env).await;
    let (_set, snaps) = prepare_set(&mut bc, CTX_APP_ROLLBACK, &[volume]).await;
    bc.do_snapshot_set()
        .await
        .expect("DoSnapshotSet")
        .await
        .expect("DoSnapshotSet's operation");
    snaps[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_btrfs_subvolume_to_persistent_snapshot() {
    let Some(mut env) = Env::new() else { return };
    let data = env.fs.create_subvolume("data");
    std::fs::write(data.join("db"), "v1").unwrap();
    std::fs::create_dir(data.join("dir")).unwrap();
    std::fs::write(data.join("dir/f"), "kept").unwrap();
    env.start_vssd(&[]);
    let vol = data.to_str().unwrap().to_owned();
    let id = persistent_snapshot(&env, &vol).await;

    std::fs::write(data.join("db"), "v2").unwrap();
    std::fs::write(data.join("later"), "x").unwrap();
    std::fs::remove_dir_all(data.join("dir")).unwrap();

    let mut bc = requester(&env).await;
    bc.initialize_for_backup(None).await.unwrap();
    let p = bc.get_snapshot_properties(id).await.unwrap();
    assert_eq!(p.provider_id, BTRFS_PROVIDER);
    let started = Instant::now();
    bc.revert_to_snapshot(id, false)
        .await
        .expect("RevertToSnapshot");
    eprintln!("RevertToSnapshot took {:?}", started.elapsed());
    assert_eq!(read(&data.join("db")), "v1");
    assert_eq!(read(&data.join("dir/f")), "kept");
    assert!(!data.join("later").exists());

    // The snapshot stays in the catalog and can be reverted to again.
    let again = bc.get_snapshot_properties(id).await.unwrap();
    assert_eq!(again.snapshot_path, p.snapshot_path);
    std::fs::write(data.join("db"), "v3").unwrap();
    bc.revert_to_snapshot(id, false)
        .await
        .expect("second RevertToSnapshot");
    assert_eq!(read(&data.join("db")), "v1");
    let leftovers: Vec<String> = std::fs::read_dir(env.volume())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vss-revert-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The volume is in use (a process has its directory as cwd): VSS_E_VOLUME_IN_USE, then
    // forceDismount goes on.
    std::fs::write(data.join("db"), "v4").unwrap();
    let user = ChildGuard {
        child: std::process::Command::new("sleep")
            .arg("600")
            .current_dir(&data)
            .spawn()
            .unwrap(),
        name: "sleep".into(),
    };
    let e = bc.revert_to_snapshot(id, false).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::VolumeInUse), "{e}");
    assert!(e.to_string().contains("forceDismount"), "{e}");
    assert_eq!(read(&data.join("db")), "v4");
    bc.revert_to_snapshot(id, true)
        .await
        .expect("forced RevertToSnapshot");
    assert_eq!(read(&data.join("db")), "v1");
    drop(user);

    // An unknown snapshot.
    let e = bc
        .revert_to_snapshot(uuid::Uuid::new_v4(), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ObjectNotFound), "{e}");
    assert!(env.vssd_log().contains("audit: revert"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_refuses_auto_release_and_reflink_snapshots() {
    let Some(mut env) = Env::new() else { return };
    let data = env.fs.create_subvolume("data");
    std::fs::write(data.join("db"), "v1").unwrap();
    let plain = env.volume().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("f"), "v1").unwrap();
    env.start_vssd(&[]);

    // Auto-release (VSS_CTX_BACKUP): alive while its session is, but not revertible.
    let mut owner = requester(&env).await;
    let (_set, snaps) = prepare_set(&mut owner, CTX_BACKUP, &[data.to_str().unwrap()]).await;
    owner
        .do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    std::fs::write(data.join("db"), "v2").unwrap();
    let mut bc = requester(&env).await;
    bc.initialize_for_backup(None).await.unwrap();
    for force in [false, true] {
        let e = bc.revert_to_snapshot(snaps[0], force).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnsupportedContext), "{e}");
        assert!(e.to_string().contains("persistent"), "{e}");
    }
    assert_eq!(read(&data.join("db")), "v2");
    drop(owner);

    // A plain directory on btrfs goes to the reflink provider, which cannot revert.
    let id = persistent_snapshot(&env, plain.to_str().unwrap()).await;
    assert_eq!(
        bc.get_snapshot_properties(id).await.unwrap().provider_id,
        REFLINK_PROVIDER
    );
    std::fs::write(plain.join("f"), "v2").unwrap();
    let e = bc.revert_to_snapshot(id, true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotImpl), "{e}");
    assert!(e.to_string().contains("only btrfs"), "{e}");
    assert_eq!(read(&plain.join("f")), "v2");
}

//! vssd's own life: a stopped vssd ends its live sessions properly, and a vssd that crashed
//! cleans up after itself when it starts again (catalog reconciliation).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const QUICK: Duration = Duration::from_secs(30);

fn component(vol: &std::path::Path) -> String {
    format!(":db:selectable:{}", vol.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_live_sessions_like_a_closed_connection() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("w", &["--component", &component(&vol)]);
    let mut rq = env.start_requester(&["--stop-after", "snapshot"]);
    let line = rq.wait_step("snapshot", QUICK);
    let snap = PathBuf::from(line["snapshotPath"].as_str().expect("snapshotPath"));
    assert!(snap.is_dir());

    // SIGTERM: vssd ends the session (BackupShutdown, auto-release snapshot deleted) and exits.
    env.vssd.as_mut().unwrap().terminate(QUICK);
    let exited = env.vssd.as_mut().unwrap().child.try_wait().unwrap();
    assert!(exited.is_some(), "vssd exits on SIGTERM");
    assert_eq!(
        env.event_names("w").last().map(String::as_str),
        Some("BackupShutdown")
    );
    assert!(
        !snap.exists(),
        "the auto-release snapshot was deleted before vssd exited"
    );
    assert!(!env.socket().exists(), "vssd removed its socket");
    assert!(
        env.vssd_log().contains("ending live sessions"),
        "{}",
        env.vssd_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_vssd_deletes_what_a_crashed_one_left() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer("w", &["--component", &component(&vol)]);
    // One persistent snapshot (must survive) and one auto-release snapshot (must go).
    let mut keep = env.start_requester(&["--persistent"]);
    let kept = PathBuf::from(
        keep.wait_step("snapshot", QUICK)["snapshotPath"]
            .as_str()
            .unwrap(),
    );
    keep.wait_step("complete", QUICK);
    let mut rq = env.start_requester(&["--stop-after", "snapshot"]);
    let snap = PathBuf::from(
        rq.wait_step("snapshot", QUICK)["snapshotPath"]
            .as_str()
            .unwrap(),
    );
    assert!(snap.is_dir() && kept.is_dir());

    // vssd crashes: nothing is cleaned up.
    env.vssd.as_mut().unwrap().kill();
    rq.kill();
    assert!(snap.is_dir(), "a killed vssd cannot clean up");

    // The next vssd reconciles its catalog at start.
    std::fs::remove_file(env.socket()).ok();
    env.start_vssd(&[]);
    wait_until(
        QUICK,
        || !snap.exists(),
        "the leftover auto-release snapshot to be deleted",
    )
    .await;
    assert!(kept.is_dir(), "the persistent snapshot is kept");
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    let all = bc.query(Some(-1), None, None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(PathBuf::from(&all[0].snapshot_path), kept);
    assert!(
        env.vssd_log().contains("deleted leftover snapshot"),
        "{}",
        env.vssd_log()
    );
}

/// vssd dies after the provider committed but before the catalog recorded it: the restarted
/// vssd finds the snapshot through the provider (by its id) and deletes it; the writer, whose
/// coordinator vanished while it was frozen, aborted by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_commit_and_catalog_write_is_cleaned_up_at_restart() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd_with_env(&[], &[("VSSD_FAULT", "after-commit")]);
    env.start_writer("w", &["--component", &component(&vol)]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(0x9).await.unwrap(); // persistent: only the crash rules may delete it
    bc.set_backup_state(true, false, vss_client::BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let w = bc.get_writer_metadata().await.unwrap().remove(0);
    bc.add_component(
        w.instance_id,
        w.writer_id,
        vss_client::ComponentType::FileGroup,
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
    let op = bc.do_snapshot_set().await.unwrap();
    assert!(op.wait(None).await.is_err(), "vssd died in DoSnapshotSet");
    let leftover = vol.join(".vss").join(snap.to_string());
    assert!(leftover.is_dir(), "the provider committed before the crash");
    env.wait_for_last_event("w", "Abort", QUICK).await;

    std::fs::remove_file(env.socket()).ok();
    env.start_vssd(&[]);
    wait_until(
        QUICK,
        || !leftover.exists(),
        "the committed but unrecorded snapshot to be deleted",
    )
    .await;
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    assert!(bc.query(Some(-1), None, None).await.unwrap().is_empty());
    assert!(
        env.vssd_log().contains("committed, not recorded"),
        "{}",
        env.vssd_log()
    );
}

/// One engine per run directory: a vssd started while another engine (an embedded `vss` run)
/// holds it waits, and starts (with its recovery) only when that engine is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vssd_waits_for_an_engine_already_using_its_run_directory() {
    let Some(mut env) = Env::new() else { return };
    let run = env.dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run.join("engine.lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let socket = env.socket();
    std::thread::scope(|s| {
        s.spawn(|| {
            // While the other engine lives, vssd does not serve.
            std::thread::sleep(Duration::from_millis(1500));
            assert!(
                !socket.exists(),
                "vssd must wait for the engine holding its run directory"
            );
            drop(lock);
        });
        env.start_vssd(&[]);
    });
    assert!(
        env.vssd_log().contains("waiting for it to finish"),
        "{}",
        env.vssd_log()
    );
}

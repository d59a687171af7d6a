//! Fault injection around the freeze: whatever fails — vssd killed while a filesystem is
//! frozen, the provider command hanging, a commit failing on the second volume of a set, vssd
//! killed between the commit and the catalog's write, a filesystem frozen by someone else —
//! every filesystem is writable again within the commit window, and after vssd restarts its
//! catalog holds no half-made snapshot (and what was committed but not recorded is deleted).
//!
//! Only loop-device scratch filesystems are ever frozen. Writability is always probed from a
//! child process with a deadline (a process writing to a frozen filesystem sleeps until the
//! thaw), never from the test thread. Timing assertions have a 5x margin.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use vss_client::{AsyncStatus, ErrorCode};
use vss_test_support::LoopCleanup;

const QUICK: Duration = Duration::from_secs(30);

/// Starts writer `name` with a component on `file`'s directory, appending to `file`
/// continuously; waits until it has written a few lines.
fn start_seq_writer(env: &mut Env, name: &str, file: &Path) {
    let dir = file.parent().expect("a directory");
    std::fs::create_dir_all(dir).unwrap();
    env.start_writer(
        name,
        &[
            "--component",
            &component("data", dir),
            "--write-continuously",
            file.to_str().unwrap(),
        ],
    );
    wait_for(QUICK, || last_seq_in(file) >= 50, "the writer to write");
}

/// Probes writability of the filesystem at `mount` from a child process, off the async
/// runtime's threads; panics if it does not become writable within `t`.
async fn assert_writable_within(mount: &Path, t: Duration) -> Duration {
    let probe = mount.join("writability-probe");
    tokio::task::spawn_blocking(move || writable_within(&probe, t))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The catalog after a restart: nothing visible (Query(-1)) and, where `sqlite3` is there to
/// look, no hidden row (PREPARING, COMMITTED) either.
async fn assert_catalog_empty(env: &Env) {
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    let all = bc.query(Some(-1), None, None).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
    if catalog_rows(&env.state_dir()).is_some() {
        wait_for(
            QUICK,
            || catalog_rows(&env.state_dir()).unwrap().is_empty(),
            "the catalog to have no rows",
        );
    }
}

/// Restarts vssd (after a crash) without a fault point.
fn restart_vssd(env: &mut Env, extra: &[&str]) {
    std::fs::remove_file(env.socket()).ok();
    env.start_vssd(extra);
}

fn journal_entries(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.run_dir().join("freeze"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The failure of a DoSnapshotSet that did not complete.
async fn do_snapshot_set_fails(bc: &mut vss_client::BackupComponents) -> vss_client::VssError {
    match bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap()
    {
        AsyncStatus::Failed(e) => e,
        other => panic!("DoSnapshotSet should fail, it ended {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vssd_killed_while_frozen_the_guard_thaws_and_a_restart_cleans_up() {
    if !require_root() {
        return;
    }
    let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
    let _clone_loops = LoopCleanup::new(outer.path(), ".vss-");
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("an image");
    let backing = inner.backing_file().to_owned();
    let mut env = Env::with_fs(inner);
    let vol = env.volume_str();
    let file = env.volume().join("data/seq.log");
    env.start_vssd_with_env(
        &["--commit-window-ms", "2000"],
        &[("VSSD_FAULT", "while-frozen")],
    );
    let vssd_pid = env.vssd.as_ref().unwrap().pid();
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    let (_, snaps) = prepare_set(&mut bc, CTX_BACKUP, &[&vol]).await;
    let op = bc.do_snapshot_set().await.unwrap();
    assert!(op.wait(None).await.is_err(), "vssd died in DoSnapshotSet");
    env.wait_vssd_exit(QUICK);
    let died = Instant::now();

    // The guard saw its owner die and thawed, well within the 2 s commit window.
    let took = assert_writable_within(env.fs.path(), Duration::from_secs(10)).await;
    eprintln!(
        "writable {took:?} after vssd's SIGKILL was seen ({:?} since)",
        died.elapsed()
    );
    wait_for(
        Duration::from_secs(10),
        || {
            env.vssd_log()
                .contains(&format!("the owner (pid {vssd_pid}) exited"))
        },
        "the guard to report its owner's death",
    );
    let log = env.vssd_log();
    let note = log
        .lines()
        .find(|l| l.starts_with("vss-freeze-guard:") && l.contains("exited"))
        .unwrap();
    eprintln!("{note}");
    assert!(note.contains(&format!("{vol}: thawed")), "{note}");
    wait_for(
        Duration::from_secs(10),
        || processes_with(&["vss-freeze-guard", &vol]).is_empty(),
        "no guard process left",
    );
    // The writer's SDK aborted by itself (its coordinator vanished while it was frozen) and
    // it writes again.
    env.wait_for_event("w", "Abort", QUICK).await;
    env.wait_for_event("w", "Resumed", QUICK).await;
    let last = env.last_seq_at_freeze("w");
    wait_for(
        QUICK,
        || last_seq_in(&file) > last + 20,
        "the writer to go on",
    );

    // What the crash left: a journal entry, a PREPARING row, no clone.
    assert_eq!(
        journal_entries(&env).len(),
        1,
        "{:?}",
        journal_entries(&env)
    );
    if let Some(rows) = catalog_rows(&env.state_dir()) {
        assert_eq!(
            rows,
            [(snaps[0].to_string(), "VSS_SS_PREPARING".to_owned())],
            "the set's row was written before the freeze"
        );
    }
    assert!(clones_next_to(&backing).is_empty());

    restart_vssd(&mut env, &[]);
    assert_catalog_empty(&env).await;
    wait_for(
        QUICK,
        || journal_entries(&env).is_empty(),
        "the freeze journal to be empty",
    );
    assert_writable_within(env.fs.path(), Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_command_is_killed_and_the_volume_thawed_within_the_window() {
    if !require_root() {
        return;
    }
    let mut env = Env::with_fs(Mounted::ext4(64 << 20).expect("ext4 on a loop device"));
    let vol = env.volume_str();
    let script = ExecScript::new(
        env.dir.path(),
        &ExecBehaviour {
            supported: vec![env.volume()],
            hang_create: true,
            ..Default::default()
        },
    );
    env.start_vssd(&[
        "--exec-command",
        script.path.to_str().unwrap(),
        "--exec-timeout-ms",
        "1000",
        "--commit-window-ms",
        "3000",
    ]);
    let file = env.volume().join("data/seq.log");
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    prepare_set(&mut bc, CTX_BACKUP, &[&vol]).await;
    let op = bc.do_snapshot_set().await.unwrap();

    // While `create` hangs the volume is frozen; a probe started then finishes at the thaw.
    wait_until(
        QUICK,
        || !script.calls_of("create").is_empty(),
        "the command to be run",
    )
    .await;
    let create = script.calls_of("create").remove(0);
    assert_eq!(create.frozen, "yes", "create runs on a frozen volume");
    let frozen_for = assert_writable_within(env.fs.path(), Duration::from_secs(15)).await;
    eprintln!("the volume was writable {frozen_for:?} after the hanging command started");

    // The command is killed at its 1 s timeout, well before the 3 s window: the provider
    // vetoes. (Had the window ended first, the guard's thaw would make it
    // VSS_E_HOLD_WRITES_TIMEOUT; with these settings vssd reports the veto.)
    let status = op.wait(None).await.unwrap();
    let AsyncStatus::Failed(e) = status else {
        panic!("DoSnapshotSet should fail, it ended {status:?}")
    };
    eprintln!("DoSnapshotSet failed with {}: {}", e.code.name(), e.message);
    assert!(
        matches!(
            e.code,
            ErrorCode::ProviderVeto | ErrorCode::HoldWritesTimeout
        ),
        "{e}"
    );
    assert_eq!(e.code, ErrorCode::ProviderVeto, "{e}");
    assert!(e.message.contains("did not finish"), "{e}");
    wait_for(
        Duration::from_secs(10),
        || processes_with(&["sleep", EXEC_HANG_SECONDS]).is_empty(),
        "the hanging command's process group to be killed",
    );
    env.wait_for_event("w", "Abort", QUICK).await;
    env.wait_for_event("w", "Resumed", QUICK).await;
    assert!(
        script.calls_of("delete").is_empty(),
        "nothing was committed"
    );
    drop(bc);
    assert_catalog_empty(&env).await;
    assert_writable_within(env.fs.path(), Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_on_the_second_volume_deletes_the_first_and_thaws_both() {
    if !require_root() {
        return;
    }
    let second = Mounted::ext4(64 << 20).expect("ext4 on a loop device");
    let mut env = Env::with_fs(Mounted::ext4(64 << 20).expect("ext4 on a loop device"));
    let first = env.volume();
    let script = ExecScript::new(
        env.dir.path(),
        &ExecBehaviour {
            supported: vec![first.clone(), second.path().to_owned()],
            fail_create_on: Some(second.path().to_owned()),
            ..Default::default()
        },
    );
    env.start_vssd(&[
        "--exec-command",
        script.path.to_str().unwrap(),
        "--commit-window-ms",
        "3000",
    ]);
    let file = first.join("data/seq.log");
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    let (a, b) = (first.to_str().unwrap(), second.path().to_str().unwrap());
    let (_, snaps) = prepare_set(&mut bc, CTX_BACKUP, &[a, b]).await;
    let e = do_snapshot_set_fails(&mut bc).await;
    eprintln!("DoSnapshotSet failed with {}: {}", e.code.name(), e.message);
    assert_eq!(e.code, ErrorCode::ProviderVeto, "{e}");
    assert!(e.message.contains("refusing"), "the command's stderr: {e}");

    // Both were frozen together for the commits; the first's snapshot was deleted.
    let creates = script.calls_of("create");
    let order: Vec<(&str, &str)> = creates
        .iter()
        .map(|c| (c.volume.as_str(), c.frozen.as_str()))
        .collect();
    assert_eq!(order, [(a, "yes"), (b, "yes")]);
    let deletes = script.calls_of("delete");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].snapshot_id, snaps[0].to_string());
    assert_eq!(deletes[0].locator, format!("snap-{}", snaps[0]));
    for vol in [first.as_path(), second.path()] {
        assert_writable_within(vol, Duration::from_secs(15)).await;
    }
    env.wait_for_event("w", "Abort", QUICK).await;
    env.wait_for_event("w", "Resumed", QUICK).await;
    drop(bc);
    assert_catalog_empty(&env).await;
    // And after a restart too.
    env.vssd
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    restart_vssd(&mut env, &["--exec-command", script.path.to_str().unwrap()]);
    assert_catalog_empty(&env).await;
    assert_eq!(script.calls_of("delete").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vssd_killed_after_the_image_commit_the_restart_deletes_the_clone() {
    if !require_root() {
        return;
    }
    let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
    let _clone_loops = LoopCleanup::new(outer.path(), ".vss-");
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("an image");
    let backing = inner.backing_file().to_owned();
    let mut env = Env::with_fs(inner);
    let vol = env.volume_str();
    let file = env.volume().join("data/seq.log");
    env.start_vssd_with_env(&[], &[("VSSD_FAULT", "after-commit")]);
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    // Persistent: only the crash rules may delete it.
    let (_, snaps) = prepare_set(&mut bc, CTX_APP_ROLLBACK, &[&vol]).await;
    let op = bc.do_snapshot_set().await.unwrap();
    assert!(op.wait(None).await.is_err(), "vssd died in DoSnapshotSet");
    env.wait_vssd_exit(QUICK);
    // Committed and thawed before the crash: the clone exists, the volume is writable, the
    // catalog row never got its locator.
    let clone = PathBuf::from(format!("{}.vss-{}", backing.display(), snaps[0]));
    assert!(clone.is_file(), "the provider committed before the crash");
    assert_writable_within(env.fs.path(), Duration::from_secs(10)).await;
    if let Some(rows) = catalog_rows(&env.state_dir()) {
        assert_eq!(
            rows,
            [(snaps[0].to_string(), "VSS_SS_PREPARING".to_owned())]
        );
    }
    env.wait_for_event("w", "Abort", QUICK).await;
    env.wait_for_event("w", "Resumed", QUICK).await;

    restart_vssd(&mut env, &[]);
    wait_for(
        QUICK,
        || !clone.exists(),
        "the committed but unrecorded clone to be deleted",
    );
    assert!(clones_next_to(&backing).is_empty());
    assert_catalog_empty(&env).await;
    assert!(
        env.vssd_log().contains("committed, not recorded"),
        "{}",
        env.vssd_log()
    );
    assert!(journal_entries(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_frozen_by_someone_else_fails_the_set_and_stays_frozen() {
    if !require_root() {
        return;
    }
    let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
    let _clone_loops = LoopCleanup::new(outer.path(), ".vss-");
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("an image");
    let backing = inner.backing_file().to_owned();
    let mut env = Env::with_fs(inner);
    let vol = env.volume_str();
    let data = env.volume().join("data");
    std::fs::create_dir_all(&data).unwrap();
    env.start_vssd(&["--commit-window-ms", "2000"]);
    // A writer that does not write: a writer writing to the volume we freeze would block in
    // its write and miss Freeze.
    env.start_writer("w", &["--component", &component("data", &data)]);
    let mut bc = env.requester().await;
    prepare_set(&mut bc, CTX_BACKUP, &[&vol]).await;
    // Someone else freezes the volume; the guard thaws it when this test ends, whatever
    // happens.
    let frozen = vss_test_support::freeze(env.fs.path()).expect("FIFREEZE the scratch volume");
    let e = do_snapshot_set_fails(&mut bc).await;
    eprintln!("DoSnapshotSet failed with {}: {}", e.code.name(), e.message);
    assert_eq!(e.code, ErrorCode::VolumeInUse, "{e}");
    env.wait_for_event("w", "Abort", QUICK).await;
    wait_for(
        Duration::from_secs(10),
        || processes_with(&["vss-freeze-guard", &vol]).is_empty(),
        "no guard process left",
    );
    // Well past the 2 s commit window: vssd and its guard left our freeze alone.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        frozen.thaw_checked().expect("FITHAW"),
        "the filesystem was still frozen (vssd never thaws a freeze that is not its own)"
    );
    assert_writable_within(env.fs.path(), Duration::from_secs(10)).await;
    assert!(clones_next_to(&backing).is_empty());
    drop(bc);
    assert_catalog_empty(&env).await;
    assert!(journal_entries(&env).is_empty());
}

//! Each snapshot provider end to end through vssd, on its own filesystem type on loop devices,
//! with a writer that appends `seq N` lines continuously and quiesces on Freeze
//! (`vss-test-writer --write-continuously`): the snapshot holds exactly the lines written up to
//! the writer's Freeze, and the original keeps growing after Thaw. Also: exposing snapshots,
//! BreakSnapshotSet, and sets that hold an image and the filesystem of its backing file.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;
use vss_client::{ErrorCode, ObjectType};
use vss_test_support::{LoopCleanup, ScratchDir, is_mounted, loop_devices_of};

const QUICK: Duration = Duration::from_secs(30);
/// EROFS: what a write to an exposed (read-only) snapshot must fail with.
const EROFS: i32 = 30;

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

/// The snapshot copy of `file` holds exactly the lines up to the writer's FreezeDone; the
/// writer resumed after Thaw and the original kept growing. Returns that last line's N.
async fn assert_captured_at_freeze(env: &Env, name: &str, copy: &Path, original: &Path) -> u64 {
    let last = env.last_seq_at_freeze(name);
    let content = std::fs::read_to_string(copy)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", copy.display()));
    assert_seq_exact(&content, last, &copy.display().to_string());
    assert_resumed_and_growing(env, name, original).await
}

/// Writer `name` quiesced between Freeze and Thaw, resumed after Thaw, and its file grows
/// again. Returns the N of its FreezeDone.
async fn assert_resumed_and_growing(env: &Env, name: &str, original: &Path) -> u64 {
    let last = env.last_seq_at_freeze(name);
    env.wait_for_event(name, "Resumed", QUICK).await;
    let names = env.event_names(name);
    let pos = |e: &str| names.iter().rposition(|n| n == e).unwrap();
    assert!(
        pos("Freeze") < pos("FreezeDone") && pos("FreezeDone") < pos("Thaw"),
        "{names:?}"
    );
    assert!(pos("Thaw") < pos("Resumed"), "{names:?}");
    wait_for(
        QUICK,
        || last_seq_in(original) > last + 20,
        "the original to keep growing after Thaw",
    );
    last
}

async fn expose(
    env: &Env,
    snapshot: uuid::Uuid,
    at: &Path,
) -> Result<serde_json::Value, (String, serde_json::Value)> {
    let mut rs = raw_session(&env.socket()).await;
    raw_call_on(
        &mut rs,
        "vss.Requester.ExposeSnapshot",
        json!({ "snapshotId": snapshot.to_string(), "path": at }),
    )
    .await
}

async fn unexpose(
    env: &Env,
    snapshot: uuid::Uuid,
) -> Result<serde_json::Value, (String, serde_json::Value)> {
    let mut rs = raw_session(&env.socket()).await;
    raw_call_on(
        &mut rs,
        "vss.Requester.UnexposeSnapshot",
        json!({ "snapshotId": snapshot.to_string() }),
    )
    .await
}

fn fresh_dir(parent: &Path, name: &str) -> PathBuf {
    let p = parent.join(name);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::canonicalize(p).unwrap()
}

/// A write to a read-only exposure fails with EROFS (immediately: it is not frozen).
fn assert_read_only(dir: &Path) {
    let e = std::fs::write(dir.join("new-file"), "x").expect_err("the exposure is read-only");
    assert_eq!(e.raw_os_error(), Some(EROFS), "{}: {e}", dir.display());
}

#[test]
fn the_test_writer_documents_write_continuously() {
    let out = std::process::Command::new(bin("vss-test-writer"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--write-continuously <FILE>",
        "FreezeDone",
        "lastSeq",
        "Resumed",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_subvolume_snapshot_holds_exactly_what_was_written_before_freeze() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume_str();
    let file = env.volume().join("data/seq.log");
    env.start_vssd(&[]);
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    let (_, snaps) = prepare_set(&mut bc, CTX_BACKUP, &[&vol]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let p = bc.get_snapshot_properties(snaps[0]).await.unwrap();
    assert_eq!(p.provider_id, BTRFS_PROVIDER);
    assert_eq!(p.atomicity.as_deref(), Some("per-subvolume"));
    let cons = p.consistency.clone().expect("consistency record");
    assert_eq!(cons.level, "application-consistent", "{cons:?}");
    assert_eq!(cons.writers_frozen, ["w"]);
    assert!(!cons.filesystem_frozen, "btrfs snapshots never FIFREEZE");
    let snap = PathBuf::from(&p.snapshot_path);
    assert_captured_at_freeze(&env, "w", &snap.join("data/seq.log"), &file).await;
}

/// The reflink provider on a plain directory: the set completes, the copy holds exactly what
/// the writer wrote before Freeze, the catalog says `per-file` and reflink's id.
async fn reflink_end_to_end(mut env: Env) {
    let vol = env.volume().join("data");
    let file = vol.join("seq.log");
    env.start_vssd(&[]);
    start_seq_writer(&mut env, "w", &file);
    let mut bc = env.requester().await;
    let (_, snaps) = prepare_set(&mut bc, CTX_BACKUP, &[vol.to_str().unwrap()]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let p = bc.get_snapshot_properties(snaps[0]).await.unwrap();
    assert_eq!(p.provider_id, REFLINK_PROVIDER);
    assert_eq!(p.atomicity.as_deref(), Some("per-file"));
    let cons = p.consistency.clone().expect("consistency record");
    assert_eq!(cons.level, "application-consistent", "{cons:?}");
    assert!(
        !cons.filesystem_frozen,
        "reflink never FIFREEZEs its source"
    );
    let snap = PathBuf::from(&p.snapshot_path);
    assert!(
        snap.starts_with(env.volume().join(".vss-reflink")),
        "{}",
        snap.display()
    );
    assert_captured_at_freeze(&env, "w", &snap.join("seq.log"), &file).await;
    // The copy is a copy: the original grew, the snapshot did not.
    let last = env.last_seq_at_freeze("w");
    assert_seq_exact(
        &std::fs::read_to_string(snap.join("seq.log")).unwrap(),
        last,
        "the reflink copy after the original grew",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflink_on_an_xfs_directory_holds_exactly_what_was_written_before_freeze() {
    if !require_root() {
        return;
    }
    let env = Env::with_fs(Mounted::xfs(512 << 20).expect("xfs (reflink=1) on a loop device"));
    reflink_end_to_end(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflink_takes_a_plain_btrfs_directory_that_the_btrfs_provider_refuses() {
    let Some(env) = Env::new() else { return };
    let mut env = env;
    let dir = env.volume().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    env.start_vssd(&[]);
    {
        // Named explicitly, the btrfs provider refuses a directory that is no subvolume root.
        let mut bc = env.requester().await;
        bc.initialize_for_backup(None).await.unwrap();
        bc.start_snapshot_set().await.unwrap();
        let btrfs = uuid::Uuid::parse_str(BTRFS_PROVIDER).unwrap();
        let e = bc
            .add_to_snapshot_set(dir.to_str().unwrap(), Some(btrfs))
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Some(ErrorCode::VolumeNotSupportedByProvider),
            "{e}"
        );
    }
    env.vssd
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    reflink_end_to_end(env).await;
}

/// The image provider with a filesystem of type `inner_fs` in an image file on XFS: an
/// application-consistent persistent snapshot (APP_ROLLBACK), exposed to be read.
async fn image_end_to_end(inner_fs: &str, size: u64, also_without_writers: bool) {
    if !require_root() {
        return;
    }
    // Declared in this order so that vssd and the writer stop first, then the inner filesystem
    // goes, then exposures and the loop devices over clones, and the outer filesystem last.
    let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
    let _clone_loops = LoopCleanup::new(outer.path(), ".vss-");
    let exposures = ScratchDir::new().unwrap();
    let inner = Mounted::image_in(outer.path(), inner_fs, size, false).expect("an image");
    let backing = inner.backing_file().to_owned();
    let mut env = Env::with_fs(inner);
    let vol = env.volume_str();
    let file = env.volume().join("data/seq.log");
    env.start_vssd(&[]);
    start_seq_writer(&mut env, "w", &file);

    let mut bc = env.requester().await;
    let (set, snaps) = prepare_set(&mut bc, CTX_APP_ROLLBACK, &[&vol]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let id = snaps[0];
    let p = bc.get_snapshot_properties(id).await.unwrap();
    assert_eq!(p.provider_id, IMAGE_PROVIDER);
    assert_eq!(p.snapshot_set_id, set.to_string());
    assert_eq!(p.atomicity.as_deref(), Some("across-set"));
    let cons = p.consistency.clone().expect("consistency record");
    assert_eq!(cons.level, "application-consistent", "{cons:?}");
    assert_eq!(cons.writers_frozen, ["w"]);
    assert!(cons.filesystem_frozen, "{cons:?}");
    let clone = PathBuf::from(&p.snapshot_path);
    assert_eq!(
        clone,
        PathBuf::from(format!("{}.vss-{id}", backing.display()))
    );
    assert!(clone.is_file());

    // Exposed read-only: exactly what was written before Freeze.
    let at = fresh_dir(exposures.path(), "snap");
    let r = expose(&env, id, &at).await.expect("ExposeSnapshot");
    assert_eq!(r["exposedName"], at.to_str().unwrap());
    assert!(is_mounted(&at));
    let last = assert_captured_at_freeze(&env, "w", &at.join("data/seq.log"), &file).await;
    assert_read_only(&at);
    let shown = bc.query(Some(-1), Some(set), None).await.unwrap();
    assert_eq!(shown[0].exposed_name.as_deref(), at.to_str());
    // Twice: VSS_E_OBJECT_ALREADY_EXISTS.
    let again = fresh_dir(exposures.path(), "again");
    assert_eq!(
        raw_code(&expose(&env, id, &again).await),
        "VSS_E_OBJECT_ALREADY_EXISTS"
    );
    assert!(!is_mounted(&again));
    // Unexposed: the mount and the read-only loop device are gone.
    unexpose(&env, id).await.expect("UnexposeSnapshot");
    assert!(!is_mounted(&at));
    wait_for(
        QUICK,
        || loop_devices_of(&clone).unwrap().is_empty(),
        "the read-only loop device over the clone to be detached",
    );
    assert_eq!(
        raw_code(&unexpose(&env, id).await),
        "VSS_E_OBJECT_NOT_FOUND"
    );
    let out = bc
        .delete_snapshots(id, ObjectType::Snapshot, false)
        .await
        .unwrap();
    assert_eq!(out.deleted, 1);
    assert!(!clone.exists(), "deleting the snapshot deletes the clone");

    if also_without_writers {
        // No writers (NAS_ROLLBACK): the filesystem is still frozen for the clone, so the copy
        // is filesystem-consistent: complete lines, a prefix of what the writer wrote.
        let mut bc = env.requester().await;
        let (_, snaps) = prepare_set(&mut bc, CTX_NAS_ROLLBACK, &[&vol]).await;
        bc.do_snapshot_set()
            .await
            .unwrap()
            .await
            .expect("DoSnapshotSet");
        let p = bc.get_snapshot_properties(snaps[0]).await.unwrap();
        assert_eq!(p.provider_id, IMAGE_PROVIDER);
        let cons = p.consistency.clone().expect("consistency record");
        assert_eq!(cons.level, "filesystem-consistent", "{cons:?}");
        assert!(
            cons.filesystem_frozen && cons.writers_frozen.is_empty(),
            "{cons:?}"
        );
        let clone = PathBuf::from(&p.snapshot_path);
        let at = fresh_dir(exposures.path(), "no-writers");
        expose(&env, snaps[0], &at).await.expect("ExposeSnapshot");
        let copied = seq_prefix_len(
            &std::fs::read_to_string(at.join("data/seq.log")).unwrap(),
            "the no-writer image snapshot",
        );
        assert!(
            copied > last,
            "{copied} lines, {last} at the earlier Freeze"
        );
        // Deleting an exposed snapshot unexposes it first.
        bc.delete_snapshots(snaps[0], ObjectType::Snapshot, false)
            .await
            .unwrap();
        assert!(!is_mounted(&at));
        assert!(!clone.exists());
        wait_for(
            QUICK,
            || loop_devices_of(&clone).unwrap().is_empty(),
            "the read-only loop device over the clone to be detached",
        );
    }
    drop(bc);
    writable_within(&env.volume().join("probe"), Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_provider_on_ext4_in_an_xfs_file_captures_the_freeze_and_exposes_read_only() {
    image_end_to_end("ext4", 128 << 20, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_provider_on_xfs_in_an_xfs_file_exposes_the_clone_with_nouuid_norecovery() {
    image_end_to_end("xfs", 320 << 20, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_provider_runs_create_while_frozen_and_only_exec_sets_can_be_broken() {
    if !require_root() {
        return;
    }
    let ext4 = Mounted::ext4(64 << 20).expect("ext4 on a loop device");
    let Some(mut env) = Env::new() else { return };
    let script = ExecScript::new(
        env.dir.path(),
        &ExecBehaviour {
            supported: vec![ext4.path().to_owned()],
            ..Default::default()
        },
    );
    env.start_vssd(&["--exec-command", script.path.to_str().unwrap()]);
    let vol = ext4.path().to_str().unwrap().to_owned();
    let file = ext4.path().join("data/seq.log");
    start_seq_writer(&mut env, "w", &file);

    let mut bc = env.requester().await;
    let (set, snaps) = prepare_set(&mut bc, CTX_BACKUP, &[&vol]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let id = snaps[0];
    let p = bc.get_snapshot_properties(id).await.unwrap();
    assert_eq!(p.provider_id, EXEC_PROVIDER);
    assert_eq!(
        p.snapshot_path,
        format!("snap-{id}"),
        "the identity it printed"
    );
    assert_eq!(p.atomicity.as_deref(), Some("across-set"));
    let cons = p.consistency.clone().expect("consistency record");
    assert!(cons.filesystem_frozen, "{cons:?}");
    assert_eq!(cons.level, "application-consistent", "{cons:?}");

    // `create` ran once, for this volume, while it was frozen, between the writer's quiescing
    // and its resumption.
    let creates = script.calls_of("create");
    assert_eq!(creates.len(), 1, "{creates:?}");
    let create = &creates[0];
    assert_eq!(
        (create.volume.as_str(), create.snapshot_id.as_str()),
        (vol.as_str(), id.to_string().as_str())
    );
    assert_eq!(
        create.frozen, "yes",
        "a second FIFREEZE during create: EBUSY"
    );
    assert_resumed_and_growing(&env, "w", &file).await;
    let ns = |event: &str| {
        env.last_raw_event("w", event).unwrap()["unixNs"]
            .as_u64()
            .unwrap()
    };
    assert!(
        ns("FreezeDone") < create.unix_ns && create.unix_ns < ns("Resumed"),
        "FreezeDone {} < create {} < Resumed {}",
        ns("FreezeDone"),
        create.unix_ns,
        ns("Resumed")
    );

    // BreakSnapshotSet on the exec set: vssd hands it over and forgets it.
    let mut rs = raw_session(&env.socket()).await;
    raw_call_on(
        &mut rs,
        "vss.Requester.BreakSnapshotSet",
        json!({ "snapshotSetId": set.to_string() }),
    )
    .await
    .expect("BreakSnapshotSet");
    assert!(
        bc.query(Some(-1), Some(set), None)
            .await
            .unwrap()
            .is_empty()
    );
    let breaks = script.calls_of("break");
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert_eq!(breaks[0].snapshot_id, id.to_string());
    assert_eq!(breaks[0].locator, format!("snap-{id}"));
    // The session that made it ends: a broken snapshot belongs to the administrator now, so
    // the end of the session must not delete it although it was auto-release.
    drop(bc);
    env.wait_for_event("w", "BackupShutdown", QUICK).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deletes = script.calls_of("delete");
    assert!(
        deletes.is_empty(),
        "a broken snapshot was deleted when its session ended: {deletes:?}"
    );

    // A btrfs set cannot be broken: VSS_E_PROVIDER_VETO, and it stays.
    let mut bc = env.requester().await;
    let (bset, _) = prepare_set(&mut bc, CTX_NAS_ROLLBACK, &[&env.volume_str()]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let r = raw_call_on(
        &mut rs,
        "vss.Requester.BreakSnapshotSet",
        json!({ "snapshotSetId": bset.to_string() }),
    )
    .await;
    assert_eq!(raw_code(&r), "VSS_E_PROVIDER_VETO");
    assert_eq!(bc.query(Some(-1), Some(bset), None).await.unwrap().len(), 1);
    writable_within(&ext4.path().join("probe"), Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_and_the_filesystem_of_its_backing_file_cannot_share_a_set() {
    if !require_root() {
        return;
    }
    let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("an image");
    let outer_vol = outer.path().to_str().unwrap().to_owned();
    let mut env = Env::with_fs(inner);
    let inner_vol = env.volume_str();
    env.start_vssd(&[]);
    for order in [[&inner_vol, &outer_vol], [&outer_vol, &inner_vol]] {
        let mut bc = env.requester().await;
        bc.initialize_for_backup(None).await.unwrap();
        bc.set_context(CTX_NAS_ROLLBACK).await.unwrap();
        bc.start_snapshot_set().await.unwrap();
        bc.add_to_snapshot_set(order[0], None).await.unwrap();
        let e = bc.add_to_snapshot_set(order[1], None).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(ErrorCode::NestedVolumeLimit),
            "{order:?}: {e}"
        );
    }
    // Each alone is fine (the outer XFS goes to reflink, the inner ext4 to image).
    let mut bc = env.requester().await;
    let (_, snaps) = prepare_set(&mut bc, CTX_NAS_ROLLBACK, &[&inner_vol]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let p = bc.get_snapshot_properties(snaps[0]).await.unwrap();
    assert_eq!(p.provider_id, IMAGE_PROVIDER);
    bc.delete_snapshots(snaps[0], ObjectType::Snapshot, false)
        .await
        .unwrap();
    drop(bc);
    let mut bc = env.requester().await;
    let (_, snaps) = prepare_set(&mut bc, CTX_NAS_ROLLBACK, &[&outer_vol]).await;
    bc.do_snapshot_set()
        .await
        .unwrap()
        .await
        .expect("DoSnapshotSet");
    let p = bc.get_snapshot_properties(snaps[0]).await.unwrap();
    assert_eq!(p.provider_id, REFLINK_PROVIDER);
    bc.delete_snapshots(snaps[0], ObjectType::Snapshot, false)
        .await
        .unwrap();
    drop(bc);
    // vssd and the inner filesystem go before the outer one.
    drop(env);
    drop(outer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposing_follows_the_rules_for_btrfs_and_reflink_snapshots() {
    let Some(mut env) = Env::new() else { return };
    let exposures = ScratchDir::new().unwrap();
    let vol = env.volume_str();
    let data = env.volume().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file.txt"), "before").unwrap();
    env.start_vssd(&[]);

    // A non-persistent snapshot cannot be exposed: E_INVALIDARG.
    let mut session = env.requester().await;
    let (_, snaps) = prepare_set(&mut session, CTX_BACKUP, &[&vol]).await;
    session.do_snapshot_set().await.unwrap().await.unwrap();
    let at = fresh_dir(exposures.path(), "auto");
    assert_eq!(raw_code(&expose(&env, snaps[0], &at).await), "E_INVALIDARG");
    assert!(!is_mounted(&at));
    drop(session);

    for (volume, provider) in [
        (vol.clone(), BTRFS_PROVIDER),
        (data.to_str().unwrap().to_owned(), REFLINK_PROVIDER),
    ] {
        let mut bc = env.requester().await;
        let (_, snaps) = prepare_set(&mut bc, CTX_NAS_ROLLBACK, &[&volume]).await;
        bc.do_snapshot_set().await.unwrap().await.unwrap();
        let id = snaps[0];
        let p = bc.get_snapshot_properties(id).await.unwrap();
        assert_eq!(p.provider_id, provider);
        let snap = PathBuf::from(&p.snapshot_path);
        let at = fresh_dir(exposures.path(), &format!("{id}"));
        let r = expose(&env, id, &at).await.expect("ExposeSnapshot");
        assert_eq!(r["exposedName"], at.to_str().unwrap());
        let inside = if provider == BTRFS_PROVIDER {
            at.join("data/file.txt")
        } else {
            at.join("file.txt")
        };
        assert_eq!(std::fs::read_to_string(&inside).unwrap(), "before");
        // A read-only bind mount: writes fail with EROFS (a single MS_BIND|MS_RDONLY would not).
        assert_read_only(&at);
        assert_read_only(inside.parent().unwrap());
        // Exposed twice: VSS_E_OBJECT_ALREADY_EXISTS.
        let again = fresh_dir(exposures.path(), &format!("{id}-again"));
        assert_eq!(
            raw_code(&expose(&env, id, &again).await),
            "VSS_E_OBJECT_ALREADY_EXISTS"
        );
        assert!(!is_mounted(&again));
        // Unexpose and expose again work.
        unexpose(&env, id).await.expect("UnexposeSnapshot");
        assert!(!is_mounted(&at));
        expose(&env, id, &at).await.expect("ExposeSnapshot again");
        assert!(is_mounted(&at));
        // Deleting an exposed snapshot unexposes it.
        bc.delete_snapshots(id, ObjectType::Snapshot, false)
            .await
            .unwrap();
        assert!(!is_mounted(&at), "deleting the snapshot unexposed it");
        assert!(!snap.exists(), "{} was deleted", snap.display());
    }
    drop(exposures);
}

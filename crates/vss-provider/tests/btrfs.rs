//! The btrfs provider on real btrfs filesystems on loop devices (root only; skipped otherwise).
//!
//! Each test makes its own loop device, so they run in parallel. Guards are declared in
//! dependency order: the scratch filesystem first, then extra mounts of it, then the provider's
//! run directory (whose guard unmounts the provider's private mounts), so they drop in reverse.

use std::path::{Path, PathBuf};
use std::time::Instant;

use uuid::Uuid;
use vss_model::{ErrorCode, SnapshotContext};
use vss_provider::btrfs::{BtrfsProvider, subvolume_of};
use vss_provider::volume::{FsType, Volume, read_mountinfo};
use vss_provider::{
    CommittedSnapshot, Exposure, Provider, ProviderConfig, SnapshotRequest, VolumeKind,
    covering_volume, resolve_volume,
};
use vss_test_support::{
    Mounted, ScratchDir, have_tool, is_mounted, require_root, run, unmount_all_under,
};

const SIZE: u64 = 256 << 20;

fn can_run() -> bool {
    if !require_root() {
        return false;
    }
    for tool in ["mkfs.btrfs", "btrfs", "losetup"] {
        if !have_tool(tool) {
            eprintln!("skipping: needs {tool}");
            return false;
        }
    }
    true
}

fn provider(run_dir: &ScratchDir) -> BtrfsProvider {
    BtrfsProvider::new(ProviderConfig::new(run_dir.path()))
}

fn resolve(path: &Path) -> Volume {
    resolve_volume(path.to_str().unwrap()).unwrap()
}

fn request(volume: &Volume) -> SnapshotRequest {
    SnapshotRequest {
        snapshot_set_id: Uuid::new_v4(),
        snapshot_id: Uuid::new_v4(),
        volume: volume.clone(),
        context: SnapshotContext::BACKUP,
    }
}

fn snapshot(p: &BtrfsProvider, volume: &Volume) -> (SnapshotRequest, CommittedSnapshot) {
    let req = request(volume);
    p.begin_prepare(&req).unwrap();
    let started = Instant::now();
    let snap = p.commit(&req).unwrap();
    eprintln!(
        "commit (snapshot) of {} took {:?}",
        volume.path.display(),
        started.elapsed()
    );
    assert_eq!(snap.snapshot_id, req.snapshot_id);
    assert_eq!(snap.locator, snap.snapshot_path.to_str().unwrap());
    (req, snap)
}

fn subvolume_list(mount: &Path) -> String {
    run(
        "btrfs",
        ["subvolume".as_ref(), "list".as_ref(), mount.as_os_str()],
    )
    .unwrap()
}

/// Mount points at or below `dir`, with their mountinfo root.
fn mounts_under(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let dir = std::fs::canonicalize(dir).unwrap();
    read_mountinfo()
        .unwrap()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&dir))
        .map(|m| (m.mount_point, m.root))
        .collect()
}

fn delete_and_check(p: &BtrfsProvider, snap: &CommittedSnapshot, list_mount: &Path) {
    let name = snap.snapshot_id.to_string();
    assert!(subvolume_list(list_mount).contains(&name));
    let started = Instant::now();
    p.delete(snap).unwrap();
    eprintln!("delete of {} took {:?}", snap.locator, started.elapsed());
    assert!(std::fs::symlink_metadata(&snap.snapshot_path).is_err());
    assert!(
        !subvolume_list(list_mount).contains(&name),
        "still listed after delete"
    );
    assert!(!p.exists(snap).unwrap());
    // Already gone is success.
    p.delete(snap).unwrap();
}

/// (a) The plain mount (top level): snapshot in `<mount>/.vss/<id>`, same content, read-only,
/// deleted cleanly, no private mount needed.
#[test]
fn snapshot_of_top_level_mount() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    std::fs::write(fs.path().join("hello.txt"), b"hello").unwrap();
    std::fs::create_dir(fs.path().join("dir")).unwrap();
    std::fs::write(fs.path().join("dir/nested.txt"), b"nested").unwrap();

    let volume = resolve(fs.path());
    assert_eq!(volume.fs_type, FsType::Btrfs);
    assert!(volume.is_mount_point && volume.btrfs_subvolume_root);
    assert_eq!(volume.device, fs.device().to_str().unwrap());
    let p = provider(&run_dir);
    assert!(p.is_volume_supported(&volume));

    let (req, snap) = snapshot(&p, &volume);
    let expected = fs.path().join(".vss").join(req.snapshot_id.to_string());
    assert_eq!(snap.snapshot_path, expected);
    assert_eq!(std::fs::read(expected.join("hello.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(expected.join("dir/nested.txt")).unwrap(),
        b"nested"
    );

    // A point in time: later changes of the source do not show.
    std::fs::write(fs.path().join("hello.txt"), b"changed").unwrap();
    assert_eq!(std::fs::read(expected.join("hello.txt")).unwrap(), b"hello");

    // Read-only.
    let err = std::fs::write(expected.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::write(expected.join("hello.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

    assert!(p.exists(&snap).unwrap());
    assert_eq!(
        p.list_snapshot_dirs(&volume).unwrap(),
        vec![expected.clone()]
    );
    assert!(
        mounts_under(run_dir.path()).is_empty(),
        "no private mount needed"
    );

    delete_and_check(&p, &snap, fs.path());
    assert!(p.list_snapshot_dirs(&volume).unwrap().is_empty());
}

/// (b) A `subvol=data` mount while the top level is not mounted: the provider mounts the top
/// level privately below its run directory and snapshots into `.vss` there.
#[test]
fn snapshot_of_subvolume_mount_uses_private_top_level_mount() {
    if !can_run() {
        return;
    }
    let mut fs = Mounted::btrfs(SIZE).unwrap();
    let data_subvol = fs.create_subvolume("data");
    std::fs::write(data_subvol.join("file"), b"data").unwrap();
    let data = fs.mount_again(Some("subvol=data")).unwrap();
    fs.unmount().unwrap();
    let run_dir = ScratchDir::new().unwrap();

    let volume = resolve(data.path());
    assert!(volume.is_mount_point && volume.btrfs_subvolume_root);
    assert_eq!(volume.fs_type, FsType::Btrfs);
    let p = provider(&run_dir);
    assert!(p.is_volume_supported(&volume));
    assert!(mounts_under(run_dir.path()).is_empty());

    let (_req, snap) = snapshot(&p, &volume);
    let private = mounts_under(run_dir.path());
    assert_eq!(private.len(), 1, "{private:?}");
    let (top, root) = &private[0];
    assert_eq!(
        root,
        Path::new("/"),
        "the private mount shows the top level"
    );
    assert!(top.starts_with(std::fs::canonicalize(run_dir.path()).unwrap().join("btrfs")));
    assert_eq!(
        snap.snapshot_path,
        top.join(".vss").join(snap.snapshot_id.to_string())
    );
    assert!(
        !snap.snapshot_path.starts_with(data.path()),
        "snapshot outside the source"
    );
    assert!(!data.path().join(".vss").exists());
    assert_eq!(
        std::fs::read(snap.snapshot_path.join("file")).unwrap(),
        b"data"
    );
    assert!(subvolume_list(top).contains(&format!(".vss/{}", snap.snapshot_id)));

    // The private mount is reused, not stacked.
    let (_req2, snap2) = snapshot(&p, &volume);
    assert_eq!(mounts_under(run_dir.path()).len(), 1);
    assert_eq!(p.list_snapshot_dirs(&volume).unwrap().len(), 2);

    // After a "restart" (private mount gone), a new provider finds the snapshot again.
    unmount_all_under(run_dir.path()).unwrap();
    let p = provider(&run_dir);
    assert!(p.exists(&snap).unwrap());
    assert_eq!(mounts_under(run_dir.path()).len(), 1);
    delete_and_check(&p, &snap, data.path());
    delete_and_check(&p, &snap2, data.path());
}

/// (c) A subvolume nested inside the source is not part of the snapshot.
#[test]
fn nested_subvolume_is_not_in_snapshot() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let src = fs.create_subvolume("src");
    std::fs::write(src.join("own.txt"), b"own").unwrap();
    let inner = fs.create_subvolume("src/inner");
    std::fs::write(inner.join("inner.txt"), b"inner").unwrap();

    let volume = resolve(&src);
    assert!(!volume.is_mount_point && volume.btrfs_subvolume_root);
    assert_eq!(volume.mount_point, fs.path());
    let p = provider(&run_dir);
    let (_req, snap) = snapshot(&p, &volume);
    assert!(snap.snapshot_path.starts_with(fs.path().join(".vss")));
    assert_eq!(
        std::fs::read(snap.snapshot_path.join("own.txt")).unwrap(),
        b"own"
    );
    let placeholder = snap.snapshot_path.join("inner");
    assert!(placeholder.is_dir());
    assert_eq!(
        std::fs::read_dir(&placeholder).unwrap().count(),
        0,
        "nested subvolume is empty"
    );
    delete_and_check(&p, &snap, fs.path());
    // The source and its nested subvolume are untouched.
    assert_eq!(std::fs::read(inner.join("inner.txt")).unwrap(), b"inner");
}

/// (d) Volumes the provider does not take: a plain directory on btrfs, an ext4 mount.
#[test]
fn unsupported_volumes() {
    if !can_run() || !have_tool("mkfs.ext4") {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);

    let plain = fs.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    // A plain directory is a volume (for the reflink provider), but not a btrfs one.
    let dir_volume = resolve(&plain);
    assert_eq!(dir_volume.kind, VolumeKind::Directory);
    assert!(!dir_volume.btrfs_subvolume_root);
    assert!(!p.is_volume_supported(&dir_volume));
    let err = p.begin_prepare(&request(&dir_volume)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    // Even a volume that claims to be a subvolume root is checked against the disk.
    let fake = Volume {
        path: plain.clone(),
        is_mount_point: false,
        ..resolve(fs.path())
    };
    assert!(!p.is_volume_supported(&fake));
    let err = p.begin_prepare(&request(&fake)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");

    let ext4 = Mounted::ext4(64 << 20).unwrap();
    let volume = resolve(ext4.path());
    assert_eq!(volume.fs_type, FsType::Ext4);
    assert!(volume.is_mount_point && !volume.btrfs_subvolume_root);
    assert!(!p.is_volume_supported(&volume));
    let err = p.begin_prepare(&request(&volume)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    assert!(
        err.message.contains(ext4.path().to_str().unwrap()),
        "{}",
        err.message
    );
    assert!(!ext4.path().join(".vss").exists());
}

/// (e) Abort after commit deletes the snapshot; abort before commit leaves nothing behind.
#[test]
fn abort_after_commit_deletes_snapshot() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    let volume = resolve(fs.path());

    let (req, snap) = snapshot(&p, &volume);
    assert!(snap.snapshot_path.is_dir());
    // The same snapshot id cannot be prepared twice.
    let err = p.begin_prepare(&req).unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectAlreadyExists, "{err}");
    p.abort(&req, Some(&snap)).expect("abort");
    assert!(std::fs::symlink_metadata(&snap.snapshot_path).is_err());
    assert!(!subvolume_list(fs.path()).contains(&snap.snapshot_id.to_string()));
    assert!(!p.exists(&snap).unwrap());

    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    p.abort(&req, None).expect("abort");
    assert!(p.list_snapshot_dirs(&volume).unwrap().is_empty());
}

/// Mount points with escaped characters in mountinfo (`\040`) resolve on the real machine.
#[test]
fn mount_point_with_space_resolves() {
    if !require_root() {
        return;
    }
    let run_dir = ScratchDir::new().unwrap();
    let dir = run_dir.path().join("my disk");
    std::fs::create_dir(&dir).unwrap();
    run(
        "mount",
        [
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "tmp fs".as_ref(),
            dir.as_os_str(),
        ],
    )
    .unwrap();
    let volume = resolve(&dir);
    assert!(volume.is_mount_point);
    assert_eq!(volume.fs_type, FsType::Other("tmpfs".into()));
    assert_eq!(volume.device, "tmp fs");
    assert_eq!(volume.mount_point, std::fs::canonicalize(&dir).unwrap());
    assert!(!provider(&run_dir).is_volume_supported(&volume));
    let inside = dir.join("sub");
    std::fs::create_dir(&inside).unwrap();
    let v = resolve(&inside);
    assert_eq!(v.kind, VolumeKind::Directory);
    assert_eq!(v.mount_point, std::fs::canonicalize(&dir).unwrap());
    assert_eq!(covering_volume(&inside).unwrap(), v.mount_point);
    run("umount", [dir.as_os_str()]).unwrap();
}

/// Expose: a read-only bind mount of the snapshot; unexpose unmounts it; query lists the
/// snapshot subvolumes.
#[test]
fn expose_query_unexpose() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    std::fs::write(fs.path().join("hello.txt"), b"hello").unwrap();
    let p = provider(&run_dir);
    let volume = resolve(fs.path());
    let (_req, snap) = snapshot(&p, &volume);
    // A stray non-subvolume entry in .vss is not a snapshot.
    std::fs::create_dir(fs.path().join(".vss/stray")).unwrap();
    assert_eq!(p.query(&volume).unwrap(), vec![snap.locator.clone()]);

    let at = run_dir.path().join("exposed");
    std::fs::create_dir(&at).unwrap();
    let exposure = p.expose(&snap, &at).unwrap();
    assert_eq!(
        exposure,
        Exposure {
            path: at.clone(),
            detail: None
        }
    );
    assert!(is_mounted(&at));
    let mount = read_mountinfo()
        .unwrap()
        .into_iter()
        .rfind(|m| m.mount_point == std::fs::canonicalize(&at).unwrap())
        .unwrap();
    assert!(mount.is_read_only(), "{mount:?}");
    assert!(mount.mount_options.contains("nosuid"), "{mount:?}");
    assert_eq!(std::fs::read(at.join("hello.txt")).unwrap(), b"hello");
    let err = std::fs::write(at.join("new.txt"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    p.unexpose(&snap, &exposure).unwrap();
    assert!(!is_mounted(&at));
    p.unexpose(&snap, &exposure).unwrap();

    delete_and_check(&p, &snap, fs.path());
    // A deleted snapshot cannot be exposed.
    let err = p.expose(&snap, &at).unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectNotFound, "{err}");
    assert!(!is_mounted(&at));
    std::fs::remove_dir(fs.path().join(".vss/stray")).unwrap();
    assert!(p.query(&volume).unwrap().is_empty());
}

/// `btrfs_snapshot_subvolume` names the snapshot subvolume.
#[test]
fn snapshot_subvolume_name_is_configurable() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let mut config = ProviderConfig::new(run_dir.path());
    config.btrfs_snapshot_subvolume = ".snapshots".into();
    let p = BtrfsProvider::new(config);
    let volume = resolve(fs.path());
    let (req, snap) = snapshot(&p, &volume);
    assert_eq!(
        snap.snapshot_path,
        fs.path()
            .join(".snapshots")
            .join(req.snapshot_id.to_string())
    );
    assert!(!fs.path().join(".vss").exists());
    assert!(subvolume_list(fs.path()).contains(".snapshots"));
    assert_eq!(p.query(&volume).unwrap(), vec![snap.locator.clone()]);
    delete_and_check(&p, &snap, fs.path());
}

/// covering_volume: the nested subvolume root for a file in a nested subvolume, the outer
/// subvolume for a file beside it, the mount point for the top level.
#[test]
fn covering_volume_on_nested_subvolumes() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let outer = fs.create_subvolume("outer");
    let inner = fs.create_subvolume("outer/inner");
    std::fs::create_dir_all(inner.join("a/b")).unwrap();
    std::fs::write(inner.join("a/b/db"), b"x").unwrap();
    std::fs::create_dir(outer.join("plain")).unwrap();
    std::fs::write(outer.join("plain/f"), b"x").unwrap();
    std::fs::write(fs.path().join("top"), b"x").unwrap();

    assert_eq!(covering_volume(&inner.join("a/b/db")).unwrap(), inner);
    assert_eq!(covering_volume(&inner.join("a")).unwrap(), inner);
    assert_eq!(covering_volume(&inner).unwrap(), inner);
    assert_eq!(covering_volume(&outer.join("plain/f")).unwrap(), outer);
    assert_eq!(covering_volume(&fs.path().join("top")).unwrap(), fs.path());
    assert_eq!(covering_volume(fs.path()).unwrap(), fs.path());
    assert_eq!(
        subvolume_of(&inner.join("a/b/db")).unwrap(),
        Some(inner.clone())
    );
    assert_eq!(subvolume_of(Path::new("/proc/self")).unwrap(), None);
    let v = resolve(&inner);
    assert_eq!(v.kind, VolumeKind::SubvolumeRoot);

    // Through a subvol= mount the walk stops at that mount.
    let mounted_outer = fs.mount_again(Some("subvol=outer")).unwrap();
    assert_eq!(
        covering_volume(&mounted_outer.path().join("plain/f")).unwrap(),
        mounted_outer.path()
    );
    assert_eq!(
        covering_volume(&mounted_outer.path().join("inner/a/b/db")).unwrap(),
        mounted_outer.path().join("inner")
    );
}

// ----- RevertToSnapshot ----------------------------------------------------------------------

/// The subvolume id of the subvolume holding `path` (`btrfs inspect-internal rootid`).
fn rootid(path: &Path) -> u64 {
    run(
        "btrfs",
        [
            "inspect-internal".as_ref(),
            "rootid".as_ref(),
            path.as_os_str(),
        ],
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// The default subvolume's id (`btrfs subvolume get-default`: "ID 258 gen ...").
fn default_subvolume(mount: &Path) -> u64 {
    let out = run(
        "btrfs",
        [
            "subvolume".as_ref(),
            "get-default".as_ref(),
            mount.as_os_str(),
        ],
    )
    .unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Entries of `dir` left by a revert (`.vss-revert-*`).
fn revert_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(vss_provider::btrfs::REVERT_TMP_PREFIX))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The visible mount at `path` (canonical).
fn mount_at(path: &Path) -> vss_provider::volume::MountInfo {
    let path = std::fs::canonicalize(path).unwrap();
    read_mountinfo()
        .unwrap()
        .into_iter()
        .rfind(|m| m.mount_point == path)
        .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
}

/// A tmpfs mounted at a chosen directory, unmounted (lazily) on drop.
struct TmpfsAt(PathBuf);

impl TmpfsAt {
    fn new(at: &Path) -> TmpfsAt {
        std::fs::create_dir_all(at).unwrap();
        run(
            "mount",
            [
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "vss-test".as_ref(),
                at.as_os_str(),
            ],
        )
        .unwrap();
        TmpfsAt(at.to_owned())
    }
}

impl Drop for TmpfsAt {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Reverting a subvolume (not a mount point) brings back the snapshot's contents, removes what
/// came later, keeps the snapshot (it can be reverted to again), and leaves nothing behind.
#[test]
fn revert_subvolume_restores_contents_and_keeps_snapshot() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let data = fs.create_subvolume("data");
    std::fs::write(data.join("keep.txt"), b"v1").unwrap();
    std::fs::create_dir(data.join("dir")).unwrap();
    std::fs::write(data.join("dir/nested.txt"), b"nested").unwrap();
    let p = provider(&run_dir);
    let volume = resolve(&data);
    assert_eq!(volume.kind, VolumeKind::SubvolumeRoot);
    let (_req, snap) = snapshot(&p, &volume);
    let old_id = rootid(&data);

    std::fs::write(data.join("keep.txt"), b"v2").unwrap();
    std::fs::write(data.join("new.txt"), b"later").unwrap();
    std::fs::remove_dir_all(data.join("dir")).unwrap();

    let started = Instant::now();
    p.revert(&snap, &data, false).expect("revert");
    eprintln!("revert of {} took {:?}", data.display(), started.elapsed());
    assert_eq!(read(&data.join("keep.txt")), "v1");
    assert_eq!(read(&data.join("dir/nested.txt")), "nested");
    assert!(!data.join("new.txt").exists(), "a file made later survived");
    // A new, writable subvolume in the same place; the old one is gone.
    assert_eq!(resolve(&data).kind, VolumeKind::SubvolumeRoot);
    assert_ne!(rootid(&data), old_id);
    std::fs::write(data.join("writable.txt"), b"yes").unwrap();
    assert!(revert_leftovers(fs.path()).is_empty());
    let list = subvolume_list(fs.path());
    assert!(!list.contains(".vss-revert-"), "{list}");
    assert_eq!(
        list.lines().filter(|l| l.ends_with(" path data")).count(),
        1,
        "{list}"
    );
    // The snapshot is unchanged and can be reverted to again.
    assert!(p.exists(&snap).unwrap());
    assert_eq!(read(&snap.snapshot_path.join("keep.txt")), "v1");
    std::fs::write(data.join("keep.txt"), b"v3").unwrap();
    p.revert(&snap, &data, false).expect("second revert");
    assert_eq!(read(&data.join("keep.txt")), "v1");
    assert!(!data.join("writable.txt").exists());
    assert!(revert_leftovers(fs.path()).is_empty());
    delete_and_check(&p, &snap, fs.path());
    // Nothing to revert to any more.
    let err = p.revert(&snap, &data, false).unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectNotFound, "{err}");
}

/// Subvolumes nested in the volume are separate volumes: the revert keeps them (with their
/// current contents) at their paths, also where the snapshot has no directory for them; it
/// refuses before changing anything when the snapshot has a file where one must go.
#[test]
fn revert_keeps_nested_subvolumes() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let data = fs.create_subvolume("data");
    std::fs::write(data.join("own.txt"), b"v1").unwrap();
    let inner = fs.create_subvolume("data/inner");
    std::fs::write(inner.join("inner.txt"), b"inner v1").unwrap();
    std::fs::write(data.join("clash"), b"a file").unwrap();
    let p = provider(&run_dir);
    let (_req, snap) = snapshot(&p, &resolve(&data));

    // Later: the nested subvolume changes, a new one appears in a new directory.
    std::fs::write(inner.join("inner.txt"), b"inner v2").unwrap();
    std::fs::write(data.join("own.txt"), b"v2").unwrap();
    std::fs::create_dir(data.join("later")).unwrap();
    std::fs::set_permissions(data.join("later"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(data.join("later"), Some(1234), Some(4321)).unwrap();
    let deep = fs.create_subvolume("data/later/deep");
    std::fs::write(deep.join("deep.txt"), b"deep").unwrap();
    let ids = (rootid(&inner), rootid(&deep));

    // A nested subvolume where the snapshot has a file: refused, nothing changed.
    std::fs::remove_file(data.join("clash")).unwrap();
    let clash = fs.create_subvolume("data/clash");
    let err = p.revert(&snap, &data, false).unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderVeto, "{err}");
    assert!(
        err.message.contains("clash") && err.message.contains("file"),
        "{err}"
    );
    assert_eq!(read(&data.join("own.txt")), "v2");
    assert!(revert_leftovers(fs.path()).is_empty());
    run(
        "btrfs",
        ["subvolume".as_ref(), "delete".as_ref(), clash.as_os_str()],
    )
    .unwrap();

    p.revert(&snap, &data, false).expect("revert");
    assert_eq!(read(&data.join("own.txt")), "v1");
    // The nested subvolumes are the same ones, with their own current contents.
    assert_eq!(read(&inner.join("inner.txt")), "inner v2");
    assert_eq!(read(&deep.join("deep.txt")), "deep");
    assert_eq!((rootid(&inner), rootid(&deep)), ids);
    // Their parent directory, missing from the snapshot, was made like the one it replaced.
    let later = std::fs::metadata(data.join("later")).unwrap();
    assert_eq!(later.mode() & 0o7777, 0o750);
    assert_eq!((later.uid(), later.gid()), (1234, 4321));
    // The snapshot's file is back where the nested subvolume was refused.
    assert_eq!(read(&data.join("clash")), "a file");
    assert!(revert_leftovers(fs.path()).is_empty());
    let list = subvolume_list(fs.path());
    assert!(
        list.lines().any(|l| l.ends_with(" path data/inner"))
            && list.lines().any(|l| l.ends_with(" path data/later/deep")),
        "{list}"
    );
    delete_and_check(&p, &snap, fs.path());
}

/// The plain mount of a filesystem shows its top-level subvolume, which cannot be replaced.
#[test]
fn revert_of_top_level_is_not_supported() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    std::fs::write(fs.path().join("f"), b"v1").unwrap();
    let p = provider(&run_dir);
    let (_req, snap) = snapshot(&p, &resolve(fs.path()));
    std::fs::write(fs.path().join("f"), b"v2").unwrap();
    for force in [false, true] {
        let err = p.revert(&snap, fs.path(), force).unwrap_err();
        assert_eq!(err.code, ErrorCode::VolumeNotSupported, "{err}");
        assert!(err.message.contains("top-level subvolume"), "{err}");
        assert!(err.message.contains("subvolume create"), "{err}");
    }
    assert_eq!(read(&fs.path().join("f")), "v2");
    assert!(revert_leftovers(fs.path()).is_empty());
    delete_and_check(&p, &snap, fs.path());
}

/// A `subvol=` mount: without forceDismount VSS_E_VOLUME_IN_USE and nothing changes; with it the
/// mount is replaced by one of the reverted subvolume with the same options, and a process that
/// had a file open keeps reading the old one. Something mounted inside the volume blocks even a
/// forced revert. The top level is not mounted: the provider reaches it privately.
#[test]
fn revert_of_mount_point_needs_force_dismount() {
    if !can_run() {
        return;
    }
    let mut fs = Mounted::btrfs(SIZE).unwrap();
    let data_subvol = fs.create_subvolume("data");
    std::fs::write(data_subvol.join("f"), b"v1").unwrap();
    let data = fs.mount_again(Some("subvol=data,nodev,noexec")).unwrap();
    fs.unmount().unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    let volume = resolve(data.path());
    assert_eq!(volume.kind, VolumeKind::MountPoint);
    let (_req, snap) = snapshot(&p, &volume);
    std::fs::write(data.path().join("f"), b"v2").unwrap();
    std::fs::write(data.path().join("later"), b"x").unwrap();
    let before = mount_at(data.path());
    assert_eq!(before.root, Path::new("/data"));

    let err = p.revert(&snap, data.path(), false).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeInUse, "{err}");
    assert!(err.message.contains("forceDismount"), "{err}");
    assert!(err.message.contains(data.path().to_str().unwrap()), "{err}");
    assert_eq!(read(&data.path().join("f")), "v2");
    assert_eq!(mount_at(data.path()).mount_id, before.mount_id);

    // Something mounted inside: refused even with force.
    {
        let _inside = TmpfsAt::new(&data.path().join("mnt"));
        let err = p.revert(&snap, data.path(), true).unwrap_err();
        assert_eq!(err.code, ErrorCode::VolumeInUse, "{err}");
        assert!(err.message.contains("unmount"), "{err}");
        assert_eq!(read(&data.path().join("f")), "v2");
    }
    std::fs::remove_dir(data.path().join("mnt")).unwrap();

    let mut open = std::fs::File::open(data.path().join("f")).unwrap();
    let started = Instant::now();
    p.revert(&snap, data.path(), true).expect("forced revert");
    eprintln!(
        "forced revert of {} took {:?}",
        data.path().display(),
        started.elapsed()
    );
    assert_eq!(read(&data.path().join("f")), "v1");
    assert!(!data.path().join("later").exists());
    let after = mount_at(data.path());
    assert_ne!(
        after.mount_id, before.mount_id,
        "the mount was not replaced"
    );
    assert_eq!(after.root, Path::new("/data"));
    assert_eq!(after.mount_options, before.mount_options);
    assert!(after.mount_options.contains("noexec"), "{after:?}");
    assert_eq!(after.source, before.source);
    // The old mount is gone from the namespace; the open file still reads the old contents.
    assert_eq!(
        read_mountinfo()
            .unwrap()
            .iter()
            .filter(|m| m.mount_point == before.mount_point)
            .count(),
        1
    );
    let mut old = String::new();
    std::io::Read::read_to_string(&mut open, &mut old).unwrap();
    assert_eq!(old, "v2");
    drop(open);
    // Reverted through the private top-level mount, where nothing is left over.
    let private = mounts_under(run_dir.path());
    assert_eq!(private.len(), 1, "{private:?}");
    assert!(revert_leftovers(&private[0].0).is_empty());
    assert!(p.exists(&snap).unwrap());
    delete_and_check(&p, &snap, data.path());
}

/// A subvolume that is not mounted but whose files are used by a process: VSS_E_VOLUME_IN_USE
/// naming the process, unless forceDismount.
#[test]
fn revert_with_open_files_needs_force_dismount() {
    if !can_run() {
        return;
    }
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let data = fs.create_subvolume("data");
    std::fs::write(data.join("f"), b"v1").unwrap();
    let p = provider(&run_dir);
    let (_req, snap) = snapshot(&p, &resolve(&data));
    std::fs::write(data.join("f"), b"v2").unwrap();
    let user = vss_test_support::proc::ChildGuard {
        child: std::process::Command::new("sleep")
            .arg("600")
            .current_dir(&data)
            .spawn()
            .unwrap(),
        name: "sleep".into(),
    };
    let err = p.revert(&snap, &data, false).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeInUse, "{err}");
    assert!(
        err.message.contains(&format!("{} (sleep)", user.pid())),
        "{err}"
    );
    assert_eq!(read(&data.join("f")), "v2");
    p.revert(&snap, &data, true).expect("forced revert");
    assert_eq!(read(&data.join("f")), "v1");
    drop(user);
    assert!(revert_leftovers(fs.path()).is_empty());
    delete_and_check(&p, &snap, fs.path());
}

/// A revert that fails part-way is undone: after a failure at each step the volume (mounted,
/// with a nested subvolume, the filesystem's default subvolume) is exactly as before. Then a
/// revert that succeeds also makes the reverted subvolume the default.
#[test]
fn failed_revert_is_undone_at_every_step() {
    if !can_run() {
        return;
    }
    use vss_provider::btrfs::RevertFault;
    let fs = Mounted::btrfs(SIZE).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let data_subvol = fs.create_subvolume("data");
    std::fs::write(data_subvol.join("f"), b"v1").unwrap();
    let inner = fs.create_subvolume("data/inner");
    std::fs::write(inner.join("inner.txt"), b"inner").unwrap();
    run(
        "btrfs",
        [
            "subvolume".as_ref(),
            "set-default".as_ref(),
            data_subvol.as_os_str(),
        ],
    )
    .unwrap();
    let data = fs.mount_again(Some("subvol=data,nosuid")).unwrap();
    let p = provider(&run_dir);
    let (_req, snap) = snapshot(&p, &resolve(data.path()));
    std::fs::write(data.path().join("f"), b"v2").unwrap();
    let data_id = rootid(&data_subvol);
    assert_eq!(default_subvolume(fs.path()), data_id);
    let mount_before = mount_at(data.path());

    for step in [
        RevertFault::AfterCreate,
        RevertFault::AfterNestedMoved,
        RevertFault::AfterExchange,
        RevertFault::AfterRemount,
    ] {
        let faulty =
            BtrfsProvider::new(ProviderConfig::new(run_dir.path())).with_revert_fault(step);
        let err = faulty.revert(&snap, data.path(), true).unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::UnexpectedProviderError,
            "{step:?}: {err}"
        );
        assert!(err.message.contains("undone"), "{step:?}: {err}");
        assert_eq!(read(&data.path().join("f")), "v2", "{step:?}");
        assert_eq!(rootid(&data_subvol), data_id, "{step:?}");
        assert_eq!(
            read(&data.path().join("inner/inner.txt")),
            "inner",
            "{step:?}"
        );
        assert_eq!(read(&inner.join("inner.txt")), "inner", "{step:?}");
        assert_eq!(default_subvolume(fs.path()), data_id, "{step:?}");
        let mount = mount_at(data.path());
        assert_eq!(mount.root, Path::new("/data"), "{step:?}");
        assert_eq!(mount.mount_options, mount_before.mount_options, "{step:?}");
        assert_eq!(
            rootid(data.path()),
            data_id,
            "{step:?}: the mount shows another subvolume"
        );
        assert!(revert_leftovers(fs.path()).is_empty(), "{step:?}");
        let list = subvolume_list(fs.path());
        assert!(!list.contains(".vss-revert-"), "{step:?}: {list}");
    }

    p.revert(&snap, data.path(), true).expect("revert");
    assert_eq!(read(&data.path().join("f")), "v1");
    assert_eq!(read(&data.path().join("inner/inner.txt")), "inner");
    let new_id = rootid(&data_subvol);
    assert_ne!(new_id, data_id);
    assert_eq!(rootid(data.path()), new_id);
    assert_eq!(default_subvolume(fs.path()), new_id);
    assert!(revert_leftovers(fs.path()).is_empty());
    delete_and_check(&p, &snap, fs.path());
}

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

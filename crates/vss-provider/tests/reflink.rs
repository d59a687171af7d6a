//! The reflink provider on real XFS (reflink=1) and btrfs filesystems on loop devices (root
//! only; skipped otherwise).
//!
//! Guards are declared in dependency order (filesystem, then the run/exposure directory, then
//! snapshots and exposures), so they drop in reverse.

#[path = "support.rs"]
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use support::{
    Exposed, Snap, assert_read_only, listing, make_tree, many_files, pattern, request, resolve,
};
use vss_model::ErrorCode;
use vss_provider::reflink::ReflinkProvider;
use vss_provider::volume::FsType;
use vss_provider::{Provider, ProviderConfig, VolumeKind, builtin_providers, resolve_volume};
use vss_test_support::{
    LoopDevice, Mount, Mounted, ScratchDir, have_tool, is_mounted, require_root, run,
};

fn can_run(mkfs: &str) -> bool {
    if !require_root() {
        return false;
    }
    for tool in [mkfs, "losetup"] {
        if !have_tool(tool) {
            eprintln!("skipping: needs {tool}");
            return false;
        }
    }
    true
}

fn provider(run_dir: &ScratchDir) -> ReflinkProvider {
    ReflinkProvider::new(ProviderConfig::new(run_dir.path()))
}

/// The whole life cycle on one directory volume: commit, point in time, expose read-only,
/// unexpose, query, delete.
fn life_cycle(fs: &Mounted, volume_dir: &Path) {
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    let volume = resolve(volume_dir);
    assert!(p.is_volume_supported(&volume), "{volume:?}");

    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let store = fs.path().join(".vss-reflink");
    let st = std::fs::metadata(&store).unwrap();
    assert_eq!(
        st.permissions().mode() & 0o777,
        0o700,
        "store closed to other users"
    );
    assert_eq!(
        std::fs::read_dir(&store).unwrap().count(),
        0,
        "begin_prepare makes no tree"
    );

    let before = listing(volume_dir, &[".vss-reflink"]);
    let started = Instant::now();
    let snap = p.commit(&req).unwrap();
    eprintln!(
        "reflink commit of {} took {:?}",
        volume_dir.display(),
        started.elapsed()
    );
    let snap = Snap::new(&p, snap);
    let s = &snap.snapshot;
    assert_eq!(s.snapshot_id, req.snapshot_id);
    assert_eq!(s.snapshot_path, store.join(req.snapshot_id.to_string()));
    assert_eq!(s.locator, s.snapshot_path.to_str().unwrap());
    assert!(p.exists(s).unwrap());

    // Same content, modes, owners, mtimes, links; no FIFO, no store inside.
    assert_eq!(listing(&s.snapshot_path, &[]), before);
    assert!(!s.snapshot_path.join("fifo").exists());
    assert!(!s.snapshot_path.join(".vss-reflink").exists());
    let a = std::fs::metadata(s.snapshot_path.join("dir/a.txt")).unwrap();
    let hard = std::fs::metadata(s.snapshot_path.join("hard.txt")).unwrap();
    assert_eq!(a.ino(), hard.ino(), "hard links stay hard links");
    assert_eq!((a.uid(), a.gid()), (1234, 5678));
    let root_src = std::fs::metadata(volume_dir).unwrap();
    let root_snap = std::fs::metadata(&s.snapshot_path).unwrap();
    assert_eq!(
        root_snap.permissions().mode(),
        root_src.permissions().mode()
    );

    // A point in time: later changes of the source do not show.
    std::fs::write(volume_dir.join("top.txt"), b"changed").unwrap();
    std::fs::write(volume_dir.join("new.txt"), b"new").unwrap();
    std::fs::remove_file(volume_dir.join("dir/sub/big.bin")).unwrap();
    assert_eq!(
        std::fs::read(s.snapshot_path.join("top.txt")).unwrap(),
        b"top"
    );
    assert_eq!(
        std::fs::read(s.snapshot_path.join("dir/sub/big.bin")).unwrap(),
        pattern(300_000, 7)
    );
    assert!(!s.snapshot_path.join("new.txt").exists());
    assert_eq!(listing(&s.snapshot_path, &[]), before);

    assert_eq!(
        p.query(&volume).unwrap(),
        vec![s.snapshot_path.to_str().unwrap().to_owned()]
    );

    // Expose: read-only bind mount with the snapshot's content.
    let at = run_dir.path().join("exposed");
    std::fs::create_dir(&at).unwrap();
    let exposed = Exposed::new(&p, s, &at);
    assert!(is_mounted(&at));
    assert_eq!(exposed.exposure.as_ref().unwrap().detail, None);
    assert_eq!(listing(&at, &[]), before);
    assert_read_only(&at, &at.join("top.txt"));
    // Exposing twice at the same place is refused.
    let err = p.expose(s, &at).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArg, "{err}");
    exposed.unexpose();
    assert!(!is_mounted(&at));
    assert_eq!(std::fs::read_dir(&at).unwrap().count(), 0);

    // Delete.
    let started = Instant::now();
    p.delete(s).unwrap();
    eprintln!("reflink delete took {:?}", started.elapsed());
    assert!(!s.snapshot_path.exists());
    assert!(!p.exists(s).unwrap());
    assert!(p.query(&volume).unwrap().is_empty());
    p.delete(s).unwrap();
    // The source is untouched.
    assert_eq!(std::fs::read(volume_dir.join("new.txt")).unwrap(), b"new");
}

#[test]
fn xfs_directory_life_cycle() {
    if !can_run("mkfs.xfs") {
        return;
    }
    let fs = Mounted::xfs(512 << 20).unwrap();
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_tree(&data);
    let volume = resolve(&data);
    assert_eq!(volume.kind, VolumeKind::Directory);
    assert_eq!(volume.fs_type, FsType::Xfs);
    assert_eq!(volume.mount_point, fs.path());
    life_cycle(&fs, &data);
}

#[test]
fn xfs_mount_point_life_cycle_excludes_the_store() {
    if !can_run("mkfs.xfs") {
        return;
    }
    let fs = Mounted::xfs(512 << 20).unwrap();
    make_tree(fs.path());
    assert_eq!(resolve(fs.path()).kind, VolumeKind::MountPoint);
    life_cycle(&fs, fs.path());

    // A second snapshot of the mount point does not contain the first.
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    let volume = resolve(fs.path());
    let r1 = request(&volume);
    p.begin_prepare(&r1).unwrap();
    let s1 = Snap::new(&p, p.commit(&r1).unwrap());
    let r2 = request(&volume);
    p.begin_prepare(&r2).unwrap();
    let s2 = Snap::new(&p, p.commit(&r2).unwrap());
    assert!(!s2.snapshot.snapshot_path.join(".vss-reflink").exists());
    assert_eq!(p.query(&volume).unwrap().len(), 2);
    // The same id twice is refused.
    let err = p.begin_prepare(&r1).unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectAlreadyExists, "{err}");
    // Abort after commit deletes.
    p.abort(&r1, Some(&s1.snapshot)).expect("abort");
    assert!(!s1.snapshot.snapshot_path.exists());
    drop(s2);
    assert!(p.query(&volume).unwrap().is_empty());
}

#[test]
fn btrfs_plain_directory_life_cycle() {
    if !can_run("mkfs.btrfs") || !have_tool("btrfs") {
        return;
    }
    let fs = Mounted::btrfs(512 << 20).unwrap();
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    make_tree(&data);
    let volume = resolve(&data);
    assert_eq!(volume.kind, VolumeKind::Directory);
    assert!(!volume.btrfs_subvolume_root);
    // The btrfs provider declines a plain directory; reflink is the first that takes it.
    let run_dir = ScratchDir::new().unwrap();
    let chosen: Vec<String> = builtin_providers(&ProviderConfig::new(run_dir.path()))
        .iter()
        .filter(|p| p.is_volume_supported(&volume))
        .map(|p| p.info().name)
        .collect();
    assert_eq!(chosen, ["reflink"]);
    life_cycle(&fs, &data);
}

/// btrfs specifics: a nested subvolume leaves an empty directory; a NOCOW file is cloned (its
/// clone gets the flag first).
#[test]
fn btrfs_nested_subvolume_and_nocow_file() {
    if !can_run("mkfs.btrfs") || !have_tool("btrfs") || !have_tool("chattr") {
        return;
    }
    let fs = Mounted::btrfs(512 << 20).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("plain"), b"plain").unwrap();
    let inner = fs.create_subvolume("data/inner");
    std::fs::write(inner.join("hidden"), b"in nested subvolume").unwrap();
    let nocow = data.join("nocow.db");
    std::fs::write(&nocow, b"").unwrap();
    run("chattr", ["+C", nocow.to_str().unwrap()]).unwrap();
    std::fs::write(&nocow, pattern(1 << 20, 3)).unwrap();

    let p = provider(&run_dir);
    let volume = resolve(&data);
    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let snap = Snap::new(&p, p.commit(&req).unwrap());
    let root = &snap.snapshot.snapshot_path;
    assert_eq!(std::fs::read(root.join("plain")).unwrap(), b"plain");
    assert!(root.join("inner").is_dir());
    assert_eq!(std::fs::read_dir(root.join("inner")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read(root.join("nocow.db")).unwrap(),
        pattern(1 << 20, 3)
    );
    let attrs = run("lsattr", [root.join("nocow.db").to_str().unwrap()]).unwrap();
    assert!(
        attrs.split_whitespace().next().unwrap().contains('C'),
        "{attrs}"
    );
}

/// Mounts inside the tree (another filesystem, and bind mounts of the same filesystem, which
/// have the same `st_dev`) are not descended into: empty directories in their place.
#[test]
fn mounts_inside_the_tree_are_left_out() {
    if !can_run("mkfs.xfs") || !have_tool("mkfs.ext4") {
        return;
    }
    let fs = Mounted::xfs(512 << 20).unwrap();
    let other = Mounted::ext4(64 << 20).unwrap();
    let data = fs.path().join("data");
    std::fs::create_dir_all(data.join("bind-dir")).unwrap();
    std::fs::create_dir_all(data.join("ext4-dir")).unwrap();
    std::fs::create_dir_all(fs.path().join("elsewhere")).unwrap();
    std::fs::write(fs.path().join("elsewhere/f"), b"elsewhere").unwrap();
    std::fs::write(fs.path().join("file-src"), b"file").unwrap();
    std::fs::write(data.join("bind-file"), b"").unwrap();
    std::fs::write(data.join("own"), b"own").unwrap();
    std::fs::write(other.path().join("g"), b"ext4").unwrap();
    let run_dir = ScratchDir::new().unwrap();
    // Unmounted by this guard (also on panic), before the filesystems' guards drop.
    struct Unmount(Vec<std::path::PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for p in self.0.iter().rev() {
                let _ = run("umount", [p.as_os_str()]);
            }
        }
    }
    let _mounts = Unmount(vec![
        data.join("bind-dir"),
        data.join("bind-file"),
        data.join("ext4-dir"),
    ]);
    let bind = |src: &Path, dst: &Path| {
        run(
            "mount",
            ["--bind".as_ref(), src.as_os_str(), dst.as_os_str()],
        )
        .unwrap();
    };
    bind(&fs.path().join("elsewhere"), &data.join("bind-dir"));
    bind(&fs.path().join("file-src"), &data.join("bind-file"));
    bind(other.path(), &data.join("ext4-dir"));

    let p = provider(&run_dir);
    let volume = resolve(&data);
    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let snap = Snap::new(&p, p.commit(&req).unwrap());
    let root = &snap.snapshot.snapshot_path;
    assert_eq!(std::fs::read(root.join("own")).unwrap(), b"own");
    for dir in ["bind-dir", "ext4-dir"] {
        assert!(root.join(dir).is_dir(), "{dir}");
        assert_eq!(
            std::fs::read_dir(root.join(dir)).unwrap().count(),
            0,
            "{dir}"
        );
    }
    assert!(!root.join("bind-file").exists());
}

/// Volumes the provider does not take: ext4, XFS without reflink, the store itself.
#[test]
fn unsupported_volumes() {
    if !can_run("mkfs.xfs") || !have_tool("mkfs.ext4") {
        return;
    }
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);

    let ext4 = Mounted::ext4(64 << 20).unwrap();
    let volume = resolve(ext4.path());
    assert!(!p.is_volume_supported(&volume));
    let err = p.begin_prepare(&request(&volume)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    assert!(err.message.contains("ext4"), "{err}");
    assert!(!ext4.path().join(".vss-reflink").exists());

    let device = LoopDevice::new(512 << 20).unwrap();
    run(
        "mkfs.xfs",
        [
            "-q",
            "-f",
            "-m",
            "reflink=0",
            device.path().to_str().unwrap(),
        ],
    )
    .unwrap();
    let no_reflink = Mount::new(device.path(), None).unwrap();
    let volume = resolve(no_reflink.path());
    assert_eq!(volume.fs_type, FsType::Xfs);
    assert!(!p.is_volume_supported(&volume));
    let err = p.begin_prepare(&request(&volume)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    assert!(err.message.contains("reflink"), "{err}");
    drop(no_reflink);

    let xfs = Mounted::xfs(512 << 20).unwrap();
    let volume = resolve(xfs.path());
    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let inside = resolve_volume(xfs.path().join(".vss-reflink").to_str().unwrap()).unwrap();
    assert!(!p.is_volume_supported(&inside), "the store is no volume");
    // Abort before commit leaves no tree.
    p.abort(&req, None).expect("abort");
    assert_eq!(
        std::fs::read_dir(xfs.path().join(".vss-reflink"))
            .unwrap()
            .count(),
        0
    );
}

/// A configured store name is used.
#[test]
fn store_name_is_configurable() {
    if !can_run("mkfs.xfs") {
        return;
    }
    let fs = Mounted::xfs(512 << 20).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let mut config = ProviderConfig::new(run_dir.path());
    config.reflink_dir_name = ".snapshots".into();
    let p = ReflinkProvider::new(config);
    std::fs::create_dir(fs.path().join("d")).unwrap();
    std::fs::write(fs.path().join("d/f"), b"f").unwrap();
    let volume = resolve(&fs.path().join("d"));
    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let snap = Snap::new(&p, p.commit(&req).unwrap());
    assert_eq!(
        snap.snapshot.snapshot_path,
        fs.path()
            .join(".snapshots")
            .join(req.snapshot_id.to_string())
    );
    assert!(!fs.path().join(".vss-reflink").exists());
}

/// Commit time of a ~1000-file tree on XFS and btrfs (printed; the bound is generous).
#[test]
fn thousand_file_commit_time() {
    if !can_run("mkfs.xfs") || !have_tool("mkfs.btrfs") {
        return;
    }
    for fs in [
        Mounted::xfs(512 << 20).unwrap(),
        Mounted::btrfs(512 << 20).unwrap(),
    ] {
        let run_dir = ScratchDir::new().unwrap();
        let p = provider(&run_dir);
        let data = fs.path().join("data");
        many_files(&data, 1000);
        vss_provider::syncfs(&data).unwrap();
        let volume = resolve(&data);
        let req = request(&volume);
        p.begin_prepare(&req).unwrap();
        let started = Instant::now();
        let snap = Snap::new(&p, p.commit(&req).unwrap());
        let elapsed = started.elapsed();
        eprintln!(
            "reflink commit of 1000 files on {} took {elapsed:?}",
            fs.fs_type()
        );
        assert!(elapsed.as_secs() < 20, "{elapsed:?}");
        assert_eq!(
            std::fs::read(snap.snapshot.snapshot_path.join("d009/f00999")).unwrap(),
            pattern(1024, (999 % 256) as u8)
        );
        let started = Instant::now();
        drop(snap);
        eprintln!("delete took {:?}", started.elapsed());
    }
}

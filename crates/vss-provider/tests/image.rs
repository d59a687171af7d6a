//! The image provider: filesystems in image files on loop devices, the image files inside a
//! reflink-capable scratch filesystem (XFS reflink=1 or btrfs) on a loop device of its own
//! (root only; skipped otherwise).
//!
//! The test freezes the *inner* filesystem itself around `commit`, as vssd does (FIFREEZE
//! through [`vss_test_support::freeze`], thawed by the guard even on panic). Guards are
//! declared outer filesystem first, then the image, then the exposure directory, snapshots and
//! exposures, so they drop in reverse.

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::time::Instant;

use support::{Exposed, Snap, assert_read_only, pattern, request, resolve};
use vss_model::ErrorCode;
use vss_provider::image::{ImageProvider, detect_fs_type, loop_info};
use vss_provider::volume::FsType;
use vss_provider::{Provider, ProviderConfig, VolumeKind, builtin_providers};
use vss_test_support::{
    Mounted, ScratchDir, freeze, have_tool, is_mounted, loop_devices_of, require_root, run,
};

const OUTER: u64 = 1 << 30;

fn can_run(tools: &[&str]) -> bool {
    if !require_root() {
        return false;
    }
    for tool in tools.iter().chain(&["losetup"]) {
        if !have_tool(tool) {
            eprintln!("skipping: needs {tool}");
            return false;
        }
    }
    true
}

fn provider(run_dir: &ScratchDir) -> ImageProvider {
    ImageProvider::new(ProviderConfig::new(run_dir.path()))
}

/// Snapshot of `inner` (an image in `outer`) with the inner filesystem frozen, exposure,
/// unexposure and deletion. Returns the commit time.
fn life_cycle(outer: &Mounted, inner: &Mounted, expected_fs: FsType) -> std::time::Duration {
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    std::fs::write(inner.path().join("before.txt"), b"before").unwrap();
    std::fs::write(inner.path().join("data.bin"), pattern(3 << 20, 9)).unwrap();
    std::fs::create_dir(inner.path().join("dir")).unwrap();
    std::fs::write(inner.path().join("dir/nested"), b"nested").unwrap();

    let volume = resolve(inner.path());
    assert_eq!(volume.kind, VolumeKind::MountPoint);
    assert_eq!(volume.fs_type, expected_fs);
    assert!(p.is_volume_supported(&volume), "{volume:?}");
    assert_eq!(p.underlying_volume(&volume).as_deref(), Some(outer.path()));
    let info = loop_info(inner.device()).unwrap().unwrap();
    assert_eq!(info.backing_file, inner.backing_file());
    assert_eq!((info.offset, info.sizelimit, info.deleted), (0, 0, false));

    let req = request(&volume);
    let files_before = std::fs::read_dir(inner.backing_file().parent().unwrap())
        .unwrap()
        .count();
    p.begin_prepare(&req).unwrap();
    let files_after = std::fs::read_dir(inner.backing_file().parent().unwrap())
        .unwrap()
        .count();
    assert_eq!(files_before, files_after, "begin_prepare creates nothing");

    // vssd syncs, freezes, commits, thaws.
    vss_provider::syncfs(inner.path()).unwrap();
    let frozen = freeze(inner.path()).unwrap();
    let started = Instant::now();
    let committed = p.commit(&req);
    let elapsed = started.elapsed();
    frozen.thaw().unwrap();
    let snap = Snap::new(&p, committed.unwrap());
    let s = &snap.snapshot;
    eprintln!(
        "image commit ({expected_fs} in {}) took {elapsed:?}",
        outer.fs_type()
    );
    let mut expected_clone = inner.backing_file().as_os_str().to_owned();
    expected_clone.push(format!(".vss-{}", req.snapshot_id));
    assert_eq!(s.snapshot_path.as_os_str(), expected_clone);
    assert_eq!(s.locator, s.snapshot_path.to_str().unwrap());
    assert!(p.exists(s).unwrap());
    assert_eq!(
        detect_fs_type(&s.snapshot_path).unwrap(),
        Some(expected_fs.clone())
    );
    assert_eq!(p.query(&volume).unwrap(), vec![s.locator.clone()]);

    // Later changes do not show in the snapshot.
    std::fs::write(inner.path().join("before.txt"), b"after").unwrap();
    std::fs::write(inner.path().join("after.txt"), b"after").unwrap();
    vss_provider::syncfs(inner.path()).unwrap();

    let at = run_dir.path().join("exposed");
    std::fs::create_dir(&at).unwrap();
    let exposed = Exposed::new(&p, s, &at);
    let device = exposed.exposure.as_ref().unwrap().detail.clone().unwrap();
    assert!(device.starts_with("/dev/loop"), "{device}");
    assert_eq!(
        loop_devices_of(&s.snapshot_path).unwrap(),
        [Path::new(&device)]
    );
    let ro = std::fs::read_to_string(format!(
        "/sys/block/{}/ro",
        device.trim_start_matches("/dev/")
    ))
    .unwrap();
    assert_eq!(ro.trim(), "1", "the loop device is read-only");
    assert!(is_mounted(&at));
    assert_eq!(std::fs::read(at.join("before.txt")).unwrap(), b"before");
    assert_eq!(
        std::fs::read(at.join("data.bin")).unwrap(),
        pattern(3 << 20, 9)
    );
    assert_eq!(std::fs::read(at.join("dir/nested")).unwrap(), b"nested");
    assert!(!at.join("after.txt").exists());
    assert_read_only(&at, &at.join("before.txt"));
    // The original is untouched and writable.
    assert_eq!(
        std::fs::read(inner.path().join("before.txt")).unwrap(),
        b"after"
    );
    exposed.unexpose();
    assert!(!is_mounted(&at));
    wait_detached(&s.snapshot_path);

    p.delete(s).unwrap();
    assert!(!s.snapshot_path.exists());
    assert!(!p.exists(s).unwrap());
    assert!(p.query(&volume).unwrap().is_empty());
    p.delete(s).unwrap();
    elapsed
}

/// Loop detaches can complete asynchronously: poll for a while.
fn wait_detached(file: &Path) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let attached = loop_devices_of(file).unwrap();
        if attached.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} still attached to {attached:?}",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn ext4_image_on_xfs() {
    if !can_run(&["mkfs.xfs", "mkfs.ext4"]) {
        return;
    }
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).unwrap();
    life_cycle(&outer, &inner, FsType::Ext4);
}

#[test]
fn xfs_image_on_xfs() {
    if !can_run(&["mkfs.xfs"]) {
        return;
    }
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "xfs", 320 << 20, false).unwrap();
    life_cycle(&outer, &inner, FsType::Xfs);
}

/// btrfs outer filesystem, image created NOCOW (`chattr +C` on the empty file): the clone
/// target gets FS_NOCOW_FL first, else FICLONE fails with EINVAL.
#[test]
fn nocow_ext4_image_on_btrfs() {
    if !can_run(&["mkfs.btrfs", "mkfs.ext4", "lsattr"]) {
        return;
    }
    let outer = Mounted::btrfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, true).unwrap();
    let attrs = run("lsattr", [inner.backing_file().to_str().unwrap()]).unwrap();
    assert!(
        attrs.split_whitespace().next().unwrap().contains('C'),
        "{attrs}"
    );
    life_cycle(&outer, &inner, FsType::Ext4);
}

/// A btrfs image: the btrfs provider takes it first; named explicitly, the image provider
/// snapshots it, and the clone (same fsid as the mounted original) is exposed with a temporary
/// fsid (Linux 6.7+).
#[test]
fn btrfs_image_on_xfs() {
    if !can_run(&["mkfs.xfs", "mkfs.btrfs"]) {
        return;
    }
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "btrfs", 256 << 20, false).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let volume = resolve(inner.path());
    let first = builtin_providers(&ProviderConfig::new(run_dir.path()))
        .into_iter()
        .find(|p| p.is_volume_supported(&volume))
        .unwrap();
    assert_eq!(first.info().name, "btrfs");
    life_cycle(&outer, &inner, FsType::Btrfs);
}

/// The image provider comes before reflink: an XFS image's mount point goes to it.
#[test]
fn image_is_chosen_before_reflink() {
    if !can_run(&["mkfs.xfs"]) {
        return;
    }
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "xfs", 320 << 20, false).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let volume = resolve(inner.path());
    let supporting: Vec<String> = builtin_providers(&ProviderConfig::new(run_dir.path()))
        .iter()
        .filter(|p| p.is_volume_supported(&volume))
        .map(|p| p.info().name)
        .collect();
    assert_eq!(supporting, ["image", "reflink"]);
}

/// Volumes the image provider does not take.
#[test]
fn unsupported_volumes() {
    if !can_run(&["mkfs.xfs", "mkfs.ext4"]) {
        return;
    }
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    // A loop device whose backing file is on ext4 (/var/tmp): cannot clone.
    let ext4_backed = Mounted::ext4(64 << 20).unwrap();
    let volume = resolve(ext4_backed.path());
    assert!(!p.is_volume_supported(&volume));
    let err = p.begin_prepare(&request(&volume)).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    assert!(err.message.contains("cannot clone"), "{err}");
    assert_eq!(p.underlying_volume(&volume), None);
    // A directory inside an image, and a tmpfs.
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).unwrap();
    let dir = inner.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let err = p.begin_prepare(&request(&resolve(&dir))).unwrap_err();
    assert_eq!(err.code, ErrorCode::VolumeNotSupportedByProvider, "{err}");
    assert!(!p.is_volume_supported(&resolve(Path::new("/proc"))));
    // The outer XFS itself is on a loop device over a file on ext4: not an image volume.
    assert!(!p.is_volume_supported(&resolve(outer.path())));
}

/// Commit time for a 256 MiB image holding ~200 MiB of data.
#[test]
fn clone_time_of_a_256_mib_image() {
    if !can_run(&["mkfs.xfs", "mkfs.ext4"]) {
        return;
    }
    let outer = Mounted::xfs(OUTER).unwrap();
    let inner = Mounted::image_in(outer.path(), "ext4", 256 << 20, false).unwrap();
    let run_dir = ScratchDir::new().unwrap();
    let p = provider(&run_dir);
    for i in 0..20 {
        std::fs::write(inner.path().join(format!("f{i}")), pattern(10 << 20, i)).unwrap();
    }
    vss_provider::syncfs(inner.path()).unwrap();
    vss_provider::syncfs(outer.path()).unwrap();
    let volume = resolve(inner.path());
    let req = request(&volume);
    p.begin_prepare(&req).unwrap();
    let frozen = freeze(inner.path()).unwrap();
    let started = Instant::now();
    let committed = p.commit(&req);
    let elapsed = started.elapsed();
    frozen.thaw().unwrap();
    let _snap = Snap::new(&p, committed.unwrap());
    eprintln!("image commit of a 256 MiB ext4 image (200 MiB data) on xfs took {elapsed:?}");
    assert!(elapsed.as_secs() < 5, "{elapsed:?}");
}

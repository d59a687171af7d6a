//! Helpers shared by the provider tests (included with `#[path = "support.rs"] mod support;`;
//! built on its own it holds no tests).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;
use vss_model::SnapshotContext;
use vss_provider::{
    CommittedSnapshot, Exposure, Provider, SnapshotRequest, Volume, resolve_volume,
};

/// Resolves a path that must be a volume.
pub fn resolve(path: &Path) -> Volume {
    resolve_volume(path.to_str().unwrap()).unwrap()
}

/// A request for a new snapshot of `volume`.
pub fn request(volume: &Volume) -> SnapshotRequest {
    SnapshotRequest {
        snapshot_set_id: Uuid::new_v4(),
        snapshot_id: Uuid::new_v4(),
        volume: volume.clone(),
        context: SnapshotContext::BACKUP,
    }
}

/// One entry of a tree listing: what must be equal between a source and its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory: mode, uid, gid, mtime (seconds, nanoseconds).
    Dir(u32, u32, u32, i64, i64),
    /// A regular file: mode, uid, gid, mtime, content.
    File(u32, u32, u32, i64, i64, Vec<u8>),
    /// A symbolic link: its target.
    Symlink(PathBuf),
}

/// Lists the tree below `root` (not `root` itself), not descending into the names in `skip`
/// at the top level.
pub fn listing(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), skip, &mut out);
    out
}

fn walk(root: &Path, rel: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Entry>) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        if rel.as_os_str().is_empty() && skip.iter().any(|s| name == *s) {
            continue;
        }
        let child = rel.join(&name);
        let path = root.join(&child);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if ft.is_symlink() {
            out.insert(child, Entry::Symlink(std::fs::read_link(&path).unwrap()));
        } else if ft.is_dir() {
            out.insert(
                child.clone(),
                Entry::Dir(
                    mode,
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                ),
            );
            walk(root, &child, skip, out);
        } else if ft.is_file() {
            out.insert(
                child,
                Entry::File(
                    mode,
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    std::fs::read(&path).unwrap(),
                ),
            );
        }
        // Sockets, FIFOs, devices: not listed (the reflink provider skips them).
    }
}

/// Fills `root` with a small tree: nested directories, files of several sizes (one above the
/// btrfs inline limit), a symbolic link (dangling too), a hard link, a FIFO, odd modes and
/// owners, and an old mtime.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("dir/sub/deeper")).unwrap();
    std::fs::write(root.join("top.txt"), b"top").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("dir/a.txt"), b"alpha").unwrap();
    std::fs::write(root.join("dir/sub/big.bin"), pattern(300_000, 7)).unwrap();
    std::fs::write(root.join("dir/sub/deeper/z"), b"zz").unwrap();
    std::os::unix::fs::symlink("../top.txt", root.join("dir/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("dir/a.txt"), root.join("hard.txt")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::fs::set_permissions(root.join("top.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(root.join("dir/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/a.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("dir/link"), Some(4321), Some(8765)).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("dir/sub/deeper/z"))
        .unwrap();
    f.set_modified(old).unwrap();
    // Directory mtimes last: creating entries changes them.
    let d = std::fs::File::open(root.join("dir/sub/deeper")).unwrap();
    d.set_modified(old).unwrap();
}

/// `len` bytes of a pattern that differs with `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `n` small files into `root` in directories of 100.
pub fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{i:05}")), pattern(1024, i as u8)).unwrap();
    }
}

/// Asserts that writing below `dir` fails with EROFS.
pub fn assert_read_only(dir: &Path, existing_file: &Path) {
    let err = std::fs::write(dir.join("new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "create: {err}");
    let err = std::fs::OpenOptions::new()
        .append(true)
        .open(existing_file)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "append: {err}");
    let err = std::fs::create_dir(dir.join("new-dir")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "mkdir: {err}");
}

/// An exposure that is undone on drop (also when the test panics).
#[derive(Debug)]
pub struct Exposed<'a> {
    provider: &'a dyn Provider,
    snapshot: CommittedSnapshot,
    pub exposure: Option<Exposure>,
}

impl<'a> Exposed<'a> {
    /// Exposes `snapshot` at `at`.
    pub fn new(provider: &'a dyn Provider, snapshot: &CommittedSnapshot, at: &Path) -> Self {
        let exposure = provider.expose(snapshot, at).unwrap();
        assert_eq!(exposure.path, at);
        Exposed {
            provider,
            snapshot: snapshot.clone(),
            exposure: Some(exposure),
        }
    }

    /// Unexposes now, asserting success.
    pub fn unexpose(mut self) {
        let exposure = self.exposure.take().unwrap();
        self.provider.unexpose(&self.snapshot, &exposure).unwrap();
        // Twice is fine: already gone.
        self.provider.unexpose(&self.snapshot, &exposure).unwrap();
    }
}

impl Drop for Exposed<'_> {
    fn drop(&mut self) {
        if let Some(exposure) = self.exposure.take()
            && let Err(e) = self.provider.unexpose(&self.snapshot, &exposure)
        {
            eprintln!("unexpose in drop: {e}");
        }
    }
}

/// A committed snapshot that is deleted on drop unless the test deleted it.
#[derive(Debug)]
pub struct Snap<'a> {
    provider: &'a dyn Provider,
    pub snapshot: CommittedSnapshot,
}

impl<'a> Snap<'a> {
    pub fn new(provider: &'a dyn Provider, snapshot: CommittedSnapshot) -> Self {
        Snap { provider, snapshot }
    }
}

impl Drop for Snap<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.provider.delete(&self.snapshot) {
            eprintln!("delete in drop: {e}");
        }
    }
}

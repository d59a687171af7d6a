//! Snapshot providers (vss-model.md §8.4, §8.5): code that makes point-in-time copies of volumes.
//!
//! **Architecture Invariant:** providers are synchronous and know nothing of tokio, the protocol
//! or the catalog. The daemon calls them on blocking threads and records what they did.
//!
//! A provider is driven per snapshot set through the VSS creation pipeline: `begin_prepare` for
//! each volume when the requester adds it, then inside DoSnapshotSet `end_prepare`, `pre_commit`,
//! `commit`, `post_commit`, and `abort` if anything failed on the way. `delete` removes a
//! committed snapshot later (session end, DeleteSnapshots, or crash recovery).

pub mod btrfs;
pub mod exec;
pub mod expose;
pub mod fsops;
pub mod image;
pub mod reflink;
pub mod volume;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fsops::syncfs;
pub use volume::{Volume, VolumeKind, covering_volume, resolve_volume};
use vss_model::{Id, ProviderType, SnapshotContext, VssError};

/// What `vss list providers` shows (`VSS_PROVIDER_PROP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Provider id (fixed per provider kind).
    pub id: Id,
    /// Short name used on the command line (`btrfs`).
    pub name: String,
    /// `VSS_PROVIDER_TYPE`. `VSS_PROV_HARDWARE` providers' sets may be broken (BreakSnapshotSet).
    pub provider_type: ProviderType,
    /// Version string.
    pub version: String,
    /// What one commit captures at one instant.
    pub atomicity: Atomicity,
    /// Whether vssd must freeze the volume's filesystem (FIFREEZE, through the freeze guard)
    /// around this provider's commit. Never true for btrfs or reflink: their own ioctls block
    /// on a frozen filesystem.
    pub needs_freeze: bool,
}

/// The atomicity a provider guarantees (recorded per snapshot in the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// One subvolume at one instant (btrfs): volumes of the set are captured one after another.
    PerSubvolume,
    /// One file at one instant (reflink): a tree is cloned file by file while writers are frozen.
    PerFile,
    /// Every volume of the set at one instant: vssd freezes all, commits all, thaws all.
    AcrossSet,
}

impl Atomicity {
    /// The name stored in the catalog and shown to users.
    pub const fn name(self) -> &'static str {
        match self {
            Atomicity::PerSubvolume => "per-subvolume",
            Atomicity::PerFile => "per-file",
            Atomicity::AcrossSet => "across-set",
        }
    }
}

/// One volume's snapshot as the provider is asked to make it.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The set.
    pub snapshot_set_id: Id,
    /// This snapshot.
    pub snapshot_id: Id,
    /// The resolved volume.
    pub volume: Volume,
    /// The context (decides persistence).
    pub context: SnapshotContext,
}

/// A snapshot the provider made: enough to find, expose and delete it later, also after a
/// restart of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedSnapshot {
    /// The snapshot id.
    pub snapshot_id: Id,
    /// Where the snapshot's contents are readable (a directory), or the snapshot's device or
    /// image file when it must be exposed to be read (image, exec).
    pub snapshot_path: PathBuf,
    /// Provider-private locator (btrfs: the snapshot subvolume; image: the clone file; exec:
    /// the identity the command printed), stored in the catalog and handed back to `delete`.
    pub locator: String,
}

/// A snapshot provider: the VSS provider life cycle (vss-model.md §8.4, §8.5). All calls are
/// synchronous and may block; vssd calls them on blocking threads. Between vssd's FIFREEZE and
/// FITHAW only `pre_commit`, `commit` and `post_commit` run, and they must not touch a frozen
/// filesystem other than through the ioctl or command that makes the snapshot.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Identity, type, atomicity, freeze need.
    fn info(&self) -> ProviderInfo;

    /// IsVolumeSupported. Must not fail loudly: "no" is an answer, so the coordinator can try
    /// the next provider.
    fn is_volume_supported(&self, volume: &Volume) -> bool;

    /// The volume this one depends on, if any (image: the filesystem holding the backing file).
    /// A set holding both fails with VSS_E_NESTED_VOLUME_LIMIT.
    fn underlying_volume(&self, _volume: &Volume) -> Option<PathBuf> {
        None
    }

    /// BeginPrepareSnapshot: when the volume is added to the set. Checks what can be checked
    /// early (context, room, configuration) and prepares the target.
    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError>;

    /// EndPrepareSnapshots: at the start of DoSnapshotSet, before writers freeze.
    fn end_prepare(&self, _request: &SnapshotRequest) -> Result<(), VssError> {
        Ok(())
    }

    /// PreCommitSnapshots: writers are frozen; the filesystem is not frozen yet.
    fn pre_commit(&self, _request: &SnapshotRequest) -> Result<(), VssError> {
        Ok(())
    }

    /// CommitSnapshots for one volume: make the point-in-time copy. Must be fast.
    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError>;

    /// PostCommitSnapshots: the filesystem is thawed again; writers are still frozen.
    fn post_commit(
        &self,
        _request: &SnapshotRequest,
        _snapshot: &CommittedSnapshot,
    ) -> Result<(), VssError> {
        Ok(())
    }

    /// AbortSnapshots for one volume: undo `begin_prepare` and, if it was committed, delete the
    /// snapshot. Best effort: it undoes what it can; an error says something may be left behind
    /// (vssd then keeps a committed snapshot's catalog row, so that its next start deletes it).
    fn abort(
        &self,
        request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError>;

    /// Deletes a committed snapshot. Deleting one that is already gone is success.
    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError>;

    /// Whether a committed snapshot still exists (catalog reconciliation).
    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError>;

    /// Query: the locators of the snapshots this provider finds on `volume` (reconciliation).
    fn query(&self, _volume: &Volume) -> Result<Vec<String>, VssError> {
        Ok(Vec::new())
    }

    /// ExposeSnapshot: makes the snapshot readable, read-only, at `at` (an existing empty
    /// directory). Returns what must be recorded to undo it (e.g. a loop device), if anything.
    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<Exposure, VssError>;

    /// UnexposeSnapshot: undoes `expose`. An exposure that is already gone is success.
    fn unexpose(&self, snapshot: &CommittedSnapshot, exposure: &Exposure) -> Result<(), VssError>;

    /// RevertToSnapshot: makes `volume` (the snapshot's original volume) hold the snapshot's
    /// contents again. The snapshot itself stays (it can be reverted to again). A volume that is
    /// mounted, or whose files are in use, fails with `VSS_E_VOLUME_IN_USE` unless
    /// `force_dismount`, which lets the provider detach it and mount it again (users keep what
    /// they have open). A failure leaves the volume as it was. Providers that cannot:
    /// `E_NOTIMPL` (docs/providers.md says what btrfs does).
    fn revert(
        &self,
        snapshot: &CommittedSnapshot,
        volume: &Path,
        force_dismount: bool,
    ) -> Result<(), VssError> {
        let _ = (volume, force_dismount);
        Err(VssError::new(
            vss_model::ErrorCode::NotImpl,
            format!(
                "the {} provider cannot revert a volume to a snapshot (snapshot {}); only btrfs can",
                self.info().name,
                snapshot.snapshot_id
            ),
        ))
    }

    /// BreakSnapshotSet for one snapshot: the provider forgets it and leaves the copy to the
    /// administrator. Only hardware-type providers can; the others refuse with
    /// VSS_E_PROVIDER_VETO.
    fn break_snapshot(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        Err(VssError::new(
            vss_model::ErrorCode::ProviderVeto,
            format!(
                "snapshot {} was made by a software provider; only hardware-type providers' sets can be broken",
                snapshot.snapshot_id
            ),
        ))
    }
}

/// An exposure made by [`Provider::expose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The mount point.
    pub path: PathBuf,
    /// Provider-private detail needed to undo it (image: the read-only loop device).
    pub detail: Option<String>,
}

/// The providers vssd knows, in the documented order of automatic choice: the daemon gives a
/// volume to the first one whose `is_volume_supported` is true (vss-model.md §8.5).
///
/// 1. [`btrfs`]: btrfs subvolume roots (btrfs mount points and unmounted subvolumes).
/// 2. [`image`]: mount points of filesystems (xfs, ext4, btrfs) on a whole-file loop device
///    whose backing file lies on a reflink-capable filesystem. A btrfs image's mount point is a
///    subvolume root, so the btrfs provider takes it first unless the requester names `image`.
/// 3. [`reflink`]: directory trees (and mount points) on XFS with `reflink=1` or on btrfs
///    (plain directories; subvolume roots went to btrfs above).
/// 4. [`exec`]: only when [`ProviderConfig::exec_command`] is set; mount points for which the
///    administrator's command answers `supported`.
pub fn builtin_providers(config: &ProviderConfig) -> Vec<Box<dyn Provider>> {
    let mut providers: Vec<Box<dyn Provider>> = vec![
        Box::new(btrfs::BtrfsProvider::new(config.clone())),
        Box::new(image::ImageProvider::new(config.clone())),
        Box::new(reflink::ReflinkProvider::new(config.clone())),
    ];
    if config.exec_command.is_some() {
        providers.push(Box::new(exec::ExecProvider::new(config.clone())));
    }
    providers
}

/// Settings shared by the providers.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Private mount points of helper subvolumes (btrfs `.vss`) go below this directory.
    pub run_dir: PathBuf,
    /// Name of the btrfs subvolume, directly under the top level, that holds snapshots.
    pub btrfs_snapshot_subvolume: String,
    /// Name of the directory, at the root of the mount holding a reflink volume, that holds the
    /// reflink provider's snapshots (`<mount root>/.vss-reflink/<snapshot id>`). One path
    /// component.
    pub reflink_dir_name: String,
    /// The administrator's snapshot command for the `exec` provider; `None` (the default)
    /// leaves that provider out of [`builtin_providers`].
    pub exec_command: Option<PathBuf>,
    /// How long one run of the exec command may take before its process group is killed.
    pub exec_timeout: Duration,
}

impl ProviderConfig {
    /// Defaults below `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        ProviderConfig {
            run_dir: run_dir.to_owned(),
            btrfs_snapshot_subvolume: ".vss".into(),
            reflink_dir_name: ".vss-reflink".into(),
            exec_command: None,
            exec_timeout: Duration::from_secs(10),
        }
    }
}

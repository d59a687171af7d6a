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
pub mod volume;

use std::path::{Path, PathBuf};

pub use volume::{Volume, resolve_volume};
use vss_model::{Id, ProviderType, SnapshotContext, VssError};

/// What `vss list providers` shows (`VSS_PROVIDER_PROP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Provider id (fixed per provider kind).
    pub id: Id,
    /// Short name used on the command line (`btrfs`).
    pub name: String,
    /// `VSS_PROVIDER_TYPE`.
    pub provider_type: ProviderType,
    /// Version string.
    pub version: String,
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
    /// Where the snapshot's contents are readable.
    pub snapshot_path: PathBuf,
    /// Provider-private locator (for btrfs: the snapshot subvolume path on the filesystem),
    /// stored in the catalog and handed back to `delete`.
    pub locator: String,
}

/// A snapshot provider.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Identity of the provider.
    fn info(&self) -> ProviderInfo;

    /// Whether this provider can snapshot `volume` (IsVolumeSupported). Must not fail loudly:
    /// "no" is an answer, so the coordinator can try the next provider.
    fn is_volume_supported(&self, volume: &Volume) -> bool;

    /// BeginPrepareSnapshot: called when the volume is added to the set. Checks what can be
    /// checked early (supported context, room for the snapshot) and prepares the target.
    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError>;

    /// CommitSnapshots for one volume: make the point-in-time copy. Must be fast; called while
    /// writers are frozen.
    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError>;

    /// AbortSnapshots for one volume: undo `begin_prepare` and, if it was committed, delete the
    /// snapshot. Best effort; failures are logged, not returned.
    fn abort(&self, request: &SnapshotRequest, committed: Option<&CommittedSnapshot>);

    /// Deletes a committed snapshot. Deleting one that is already gone is success.
    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError>;

    /// Whether a committed snapshot still exists (catalog reconciliation).
    fn exists(&self, snapshot: &CommittedSnapshot) -> Result<bool, VssError>;
}

/// The providers vssd knows, in the documented order of automatic choice: the first one that
/// supports a volume takes it (vss-model.md §8.5; issue "Providers" adds more).
pub fn builtin_providers(config: &ProviderConfig) -> Vec<Box<dyn Provider>> {
    vec![Box::new(btrfs::BtrfsProvider::new(config.clone()))]
}

/// Settings shared by the providers.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Private mount points of helper subvolumes (btrfs `.vss`) go below this directory.
    pub run_dir: PathBuf,
    /// Name of the btrfs subvolume, directly under the top level, that holds snapshots.
    pub btrfs_snapshot_subvolume: String,
}

impl ProviderConfig {
    /// Defaults below `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        ProviderConfig {
            run_dir: run_dir.to_owned(),
            btrfs_snapshot_subvolume: ".vss".into(),
        }
    }
}

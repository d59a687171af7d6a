//! The requester side, in process, with the vss-client library: the backup sequences the
//! benchmarks time, and vssd's own account of each set (`vss.Admin.Events`: the provider's
//! commit time and the filesystems' freeze window, measured inside vssd).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use uuid::Uuid;
use vss_client::{BackupComponents, BackupType, ObjectType, SnapshotContext};
use vss_protocol::admin::Event;

use crate::procs::cpu_time;
use crate::writers::BENCH_WRITER_NAME;

/// The events vssd recorded after sequence number `after`, and the new last number.
pub async fn events_after(socket: &Path, after: i64) -> Result<(Vec<Event>, i64)> {
    let mut bc = BackupComponents::connect(socket).await?;
    let (events, last) = bc.events(Some(after)).await?;
    Ok((events, last))
}

/// The last event sequence number (to read only what follows).
pub async fn last_event(socket: &Path) -> Result<i64> {
    Ok(events_after(socket, i64::MAX).await?.1)
}

fn same_set(event: &Event, set: &Uuid) -> bool {
    event
        .snapshot_set_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s.trim_matches(['{', '}'])).ok())
        .is_some_and(|id| id == *set)
}

/// The provider's commit time for `set`, as vssd measured it: the sum of its volumes' `Commit`
/// events (one per btrfs volume: the snapshot ioctl on a blocking thread).
pub fn commit_time(events: &[Event], set: &Uuid) -> Option<Duration> {
    let commits: Vec<&Event> = events
        .iter()
        .filter(|e| same_set(e, set) && e.kind == "volume" && e.phase == "Commit")
        .collect();
    if commits.is_empty() {
        return None;
    }
    Some(Duration::from_micros(
        commits.iter().map(|e| e.elapsed_us.max(0) as u64).sum(),
    ))
}

/// How long vssd held the set's filesystems frozen (first FIFREEZE to last FITHAW, the image
/// clones in between), as vssd measured it.
pub fn frozen_time(events: &[Event], set: &Uuid) -> Option<Duration> {
    events
        .iter()
        .find(|e| same_set(e, set) && e.kind == "filesystems" && e.phase == "Frozen")
        .map(|e| Duration::from_micros(e.elapsed_us.max(0) as u64))
}

/// A session initialized for backup with the given context.
async fn session(socket: &Path, context: SnapshotContext) -> Result<BackupComponents> {
    let mut bc = BackupComponents::connect(socket).await?;
    bc.initialize_for_backup(None).await?;
    if context.value() != 0 {
        bc.set_snapshot_context(context).await?;
    }
    Ok(bc)
}

/// A persistent set of `volumes` without writers (`VSS_CTX_NAS_ROLLBACK`, what
/// `vss create --persistent --no-writers` makes), returning its id.
pub async fn persistent_set(socket: &Path, volumes: &[String]) -> Result<Uuid> {
    let mut bc = session(socket, SnapshotContext::NAS_ROLLBACK).await?;
    let set = bc.start_snapshot_set().await?;
    for v in volumes {
        bc.add_to_snapshot_set(v, None)
            .await
            .with_context(|| format!("AddToSnapshotSet {v}"))?;
    }
    bc.do_snapshot_set().await?.await.context("DoSnapshotSet")?;
    Ok(set)
}

/// What [`backup_with_writers`] measured.
#[derive(Debug)]
pub struct BackupRun {
    /// The set.
    pub set: Uuid,
    /// DoSnapshotSet as the requester sees it: from the call to the end of the wait.
    pub do_snapshot_set: Duration,
    /// When DoSnapshotSet was called and when its wait returned (this process's clock, the
    /// same as the writers' hook times).
    pub called: Instant,
    /// See `called`.
    pub returned: Instant,
    /// CPU time vssd (`cpu_of`) used during DoSnapshotSet.
    pub vssd_cpu: Duration,
    /// CPU time this process (the writers, the requester) used during DoSnapshotSet.
    pub own_cpu: Duration,
    /// The writers that took part (components included).
    pub components: usize,
    /// The session, still open (the set's auto-release snapshots live as long as it does).
    pub session: BackupComponents,
}

/// A component-mode backup (`VSS_CTX_BACKUP`, auto-release) of `volume` including the `data`
/// component of every bench writer, up to and including DoSnapshotSet and BackupComplete.
/// `vssd_pid` is vssd's process, whose CPU time during DoSnapshotSet is measured.
pub async fn backup_with_writers(socket: &Path, volume: &str, vssd_pid: u32) -> Result<BackupRun> {
    let mut bc = session(socket, SnapshotContext::BACKUP).await?;
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await?;
    bc.gather_writer_metadata()
        .await?
        .await
        .context("GatherWriterMetadata")?;
    let writers = bc.get_writer_metadata().await?;
    let mut components = 0;
    for w in writers
        .iter()
        .filter(|w| w.writer_name == BENCH_WRITER_NAME)
    {
        for c in &w.components {
            bc.add_component(
                w.instance_id,
                w.writer_id,
                c.component_type,
                &c.logical_path,
                &c.name,
            )
            .await?;
            components += 1;
        }
    }
    let set = bc.start_snapshot_set().await?;
    bc.add_to_snapshot_set(volume, None).await?;
    bc.prepare_for_backup()
        .await?
        .await
        .context("PrepareForBackup")?;
    let (vssd_before, own_before) = (cpu_time(vssd_pid), cpu_time(std::process::id()));
    let called = Instant::now();
    bc.do_snapshot_set().await?.await.context("DoSnapshotSet")?;
    let returned = Instant::now();
    let vssd_cpu = cpu_time(vssd_pid).saturating_sub(vssd_before);
    let own_cpu = cpu_time(std::process::id()).saturating_sub(own_before);
    bc.backup_complete()
        .await?
        .await
        .context("BackupComplete")?;
    // A writer that failed would make the set a different (cheaper) one: refuse to count it.
    bc.gather_writer_status()
        .await?
        .await
        .context("GatherWriterStatus")?;
    let failed: Vec<String> = bc
        .get_writer_status()
        .await?
        .into_iter()
        .filter(|w| w.writer_name == BENCH_WRITER_NAME && w.failure != 0)
        .map(|w| format!("{}: {}", w.instance_name, w.failure_name))
        .collect();
    if !failed.is_empty() {
        bail!("bench writers failed: {failed:?}");
    }
    Ok(BackupRun {
        set,
        do_snapshot_set: returned - called,
        called,
        returned,
        vssd_cpu,
        own_cpu,
        components,
        session: bc,
    })
}

/// Every created snapshot in the catalog, of any context (`Query` with `VSS_CTX_ALL`), and how
/// long the call took.
pub async fn query_all(bc: &mut BackupComponents) -> Result<(usize, Duration)> {
    let started = Instant::now();
    let snaps = bc.query(Some(-1), None, None).await?;
    Ok((snaps.len(), started.elapsed()))
}

/// A session for Query and DeleteSnapshots.
pub async fn admin_session(socket: &Path) -> Result<BackupComponents> {
    session(socket, SnapshotContext::BACKUP).await
}

/// Deletes every snapshot in the catalog (not timed: tidying up between runs).
pub async fn delete_all(socket: &Path) -> Result<u64> {
    let mut bc = admin_session(socket).await?;
    let snaps = bc.query(Some(-1), None, None).await?;
    let mut sets: Vec<String> = snaps.into_iter().map(|s| s.snapshot_set_id).collect();
    sets.sort();
    sets.dedup();
    let mut deleted = 0;
    for s in sets {
        let id = Uuid::parse_str(s.trim_matches(['{', '}']))?;
        deleted += bc
            .delete_snapshots(id, ObjectType::SnapshotSet, true)
            .await?
            .deleted;
    }
    Ok(deleted)
}

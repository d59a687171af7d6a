//! The coordination engine: one [`Engine`] per vssd, one [`SessionCtx`] per requester
//! connection. The engine checks every call against the model's session state machine, then
//! does the I/O: writer fan-out, provider calls, catalog writes.
//!
//! Locking: a session's state is behind an async mutex that is held only to check and record,
//! never across writer or provider I/O, so status reads stay answerable while an operation runs.
//! Each asynchronous operation runs in its own task ([`Engine::spawn_op`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use vss_model::{
    AsyncStatus, BackupType, ComponentType, ErrorCode, Id, SnapshotContext, SnapshotState,
    VssError, WriterEvent,
    bcd::{BackupComponents, BcdComponent},
    session::{Call, Mode, OpKind, Session, SetVolume, Step},
    writers::{EventOutcome, WriterRecord},
};
use vss_protocol::requester::{SnapshotProperties, WriterStatus};
use vss_protocol::writer::{ComponentsReply, EventComponent, EventParams, EventVolume};
use vss_provider::{CommittedSnapshot, Provider, ProviderConfig, SnapshotRequest};

use crate::catalog::{Catalog, SnapshotRecord};
use crate::config::Config;
use crate::fanout::{self, Delivered, Identified, Target};
use crate::lock::SetLock;
use crate::ops::{Operation, Operations};

/// The shared state of vssd.
#[derive(Debug)]
pub struct Engine {
    /// Settings.
    pub config: Config,
    providers: Vec<Arc<dyn Provider>>,
    catalog: Mutex<Catalog>,
    /// Live asynchronous operations.
    pub ops: Operations,
    /// Each writer instance's last state and failure, as sessions last saw it (for listing).
    writer_history: Mutex<HashMap<Id, WriterRecord>>,
    /// What happened lately (vss.Admin.Events), in memory: safe while filesystems are frozen.
    events: Mutex<EventLog>,
}

/// The last [`MAX_EVENTS`] events.
#[derive(Debug, Default)]
struct EventLog {
    last: i64,
    buf: std::collections::VecDeque<vss_protocol::admin::Event>,
}

/// How many events vssd keeps.
pub const MAX_EVENTS: usize = 10_000;

/// A volume of the session's set with its provider.
#[derive(Debug, Clone)]
struct PreparedVolume {
    request: SnapshotRequest,
    provider: Arc<dyn Provider>,
}

/// One requester session (one connection).
#[derive(Debug)]
pub struct SessionCtx {
    /// The requester's uid.
    pub uid: u32,
    inner: AsyncMutex<SessionData>,
}

#[derive(Debug, Default)]
struct SessionData {
    session: Session,
    set_lock: Option<SetLock>,
    volumes: Vec<PreparedVolume>,
    /// Snapshots this session made (auto-release ones are deleted when it ends).
    committed: Vec<(SnapshotRecord, Arc<dyn Provider>)>,
    ops: Vec<Id>,
    running: Option<(Arc<Operation>, JoinHandle<()>)>,
    background: Vec<JoinHandle<()>>,
}

impl SessionCtx {
    /// A new session for a requester with this uid.
    pub fn new(uid: u32) -> Arc<SessionCtx> {
        Arc::new(SessionCtx {
            uid,
            inner: AsyncMutex::new(SessionData::default()),
        })
    }
}

fn provider_err(e: tokio::task::JoinError) -> VssError {
    VssError::new(
        ErrorCode::UnexpectedProviderError,
        format!("provider task failed: {e}"),
    )
}

impl Engine {
    /// Opens the catalog and sets up the providers.
    pub fn new(config: Config) -> Result<Arc<Engine>, VssError> {
        let catalog = Catalog::open(&config.state_dir)?;
        let mut pconf = ProviderConfig::new(&config.run_dir);
        pconf.exec_command = config.exec_command.clone();
        pconf.exec_timeout = config.exec_timeout;
        if let Some(n) = &config.btrfs_snapshot_subvolume {
            pconf.btrfs_snapshot_subvolume = n.clone();
        }
        if let Some(n) = &config.reflink_dir_name {
            pconf.reflink_dir_name = n.clone();
        }
        let all: Vec<Arc<dyn Provider>> = vss_provider::builtin_providers(&pconf)
            .into_iter()
            .map(Arc::from)
            .map(crate::faults::wrap)
            .collect();
        // The configured order, if any: providers left out are not used.
        let providers = match &config.provider_order {
            None => all,
            Some(order) => order
                .iter()
                .filter_map(|name| all.iter().find(|p| p.info().name == *name).cloned())
                .collect(),
        };
        Ok(Arc::new(Engine {
            config,
            providers,
            catalog: Mutex::new(catalog),
            ops: Operations::default(),
            writer_history: Mutex::new(HashMap::new()),
            events: Mutex::new(EventLog::default()),
        }))
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().expect("catalog lock")
    }

    fn provider_by_id(&self, id: Id) -> Option<Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.info().id == id).cloned()
    }

    /// The freeze guard's settings. The journal lives in the run directory, which vssd never
    /// freezes.
    pub fn freeze_config(&self) -> vss_freeze::FreezeConfig {
        vss_freeze::FreezeConfig {
            guard_binary: self
                .config
                .guard_binary
                .clone()
                .unwrap_or_else(vss_freeze::default_guard_binary),
            journal_dir: self.config.run_dir.join("freeze"),
            window: self.config.commit_window,
        }
    }

    /// Startup reconciliation. First the freeze journal: whatever a dead owner may have left
    /// frozen is thawed (a live owner's freeze, e.g. an embedded `vss` run, is left alone).
    /// Then the catalog: snapshots a previous vssd left behind (never completed, or
    /// auto-release ones whose sessions died with it) are deleted.
    pub async fn recover(self: &Arc<Self>) {
        let journal = self.freeze_config().journal_dir;
        let thawed = tokio::task::spawn_blocking(move || vss_freeze::recover(&journal))
            .await
            .unwrap_or_default();
        for entry in thawed {
            tracing::warn!("freeze journal: {entry:?}");
        }
        let leftovers = match self.catalog().recoverable() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot read the catalog for recovery: {e}");
                return;
            }
        };
        for rec in leftovers {
            let Some(provider) = self.provider_by_id(rec.provider_id) else {
                tracing::warn!(snapshot = %rec.snapshot_id, "provider of a leftover snapshot is not registered; keeping its catalog entry");
                continue;
            };
            if rec.locator.is_empty() {
                // vssd died between the commit and the catalog's update: the provider may have
                // made the snapshot. Ask it which snapshots it has on the volume.
                let (p2, vol, id) = (
                    provider.clone(),
                    rec.original_volume.clone(),
                    rec.snapshot_id.to_string(),
                );
                let found = tokio::task::spawn_blocking(move || {
                    let v = vss_provider::resolve_volume(&vol)?;
                    p2.query(&v)
                })
                .await
                .map_err(provider_err)
                .and_then(|r| r);
                let locators: Vec<String> = match found {
                    Ok(l) => l.into_iter().filter(|l| l.contains(&id)).collect(),
                    Err(e) => {
                        tracing::warn!(snapshot = %rec.snapshot_id, "cannot ask the provider about an uncommitted snapshot: {e}; keeping its catalog entry");
                        continue;
                    }
                };
                let mut ok = true;
                for locator in locators {
                    let c = CommittedSnapshot {
                        snapshot_id: rec.snapshot_id,
                        snapshot_path: PathBuf::from(&locator),
                        locator,
                    };
                    let p2 = provider.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || p2.delete(&c))
                        .await
                        .map_err(provider_err)
                        .and_then(|r| r)
                    {
                        tracing::error!(snapshot = %rec.snapshot_id, "cannot delete leftover snapshot: {e}");
                        ok = false;
                    } else {
                        tracing::info!(snapshot = %rec.snapshot_id, volume = %rec.original_volume, "deleted leftover snapshot (committed, not recorded)");
                    }
                }
                if ok {
                    let _ = self.catalog().remove(rec.snapshot_id);
                }
                continue;
            }
            match self.delete_one(&rec, provider).await {
                Ok(()) => {
                    tracing::info!(snapshot = %rec.snapshot_id, volume = %rec.original_volume, "deleted leftover snapshot")
                }
                Err(e) => {
                    tracing::error!(snapshot = %rec.snapshot_id, "cannot delete leftover snapshot: {e}")
                }
            }
        }
    }

    async fn delete_one(
        &self,
        rec: &SnapshotRecord,
        provider: Arc<dyn Provider>,
    ) -> Result<(), VssError> {
        if rec.exposed_name.is_some() {
            self.unexpose_record(rec, provider.clone()).await?;
        }
        let committed = committed_of(rec);
        tokio::task::spawn_blocking(move || provider.delete(&committed))
            .await
            .map_err(provider_err)??;
        self.catalog().remove(rec.snapshot_id)
    }

    async fn unexpose_record(
        &self,
        rec: &SnapshotRecord,
        provider: Arc<dyn Provider>,
    ) -> Result<(), VssError> {
        let Some(name) = rec.exposed_name.clone() else {
            return Ok(());
        };
        let exposure = vss_provider::Exposure {
            path: PathBuf::from(&name),
            detail: rec.exposure_detail.clone(),
        };
        let committed = committed_of(rec);
        tokio::task::spawn_blocking(move || provider.unexpose(&committed, &exposure))
            .await
            .map_err(provider_err)??;
        self.catalog().set_exposure(rec.snapshot_id, None)
    }

    /// A snapshot of the catalog with its provider, for administration calls.
    fn created_snapshot(&self, id: Id) -> Result<(SnapshotRecord, Arc<dyn Provider>), VssError> {
        let rec = match self.catalog().get(id)? {
            Some(r) if r.state == SnapshotState::Created => r,
            _ => return Err(VssError::not_found(format!("no snapshot {id}"))),
        };
        let provider = self.provider_by_id(rec.provider_id).ok_or_else(|| {
            VssError::new(
                ErrorCode::ProviderNotRegistered,
                format!(
                    "provider {} of snapshot {id} is not registered",
                    rec.provider_id
                ),
            )
        })?;
        Ok((rec, provider))
    }

    async fn check_admin(&self, ctx: &SessionCtx, call: Call) -> Result<(), VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(call)?;
        d.session.note_call(call);
        Ok(())
    }

    /// ExposeSnapshot: mounts a persistent snapshot read-only at `path`.
    pub async fn expose_snapshot(
        &self,
        ctx: &SessionCtx,
        id: Id,
        path: &str,
    ) -> Result<String, VssError> {
        self.check_admin(ctx, Call::ExposeSnapshot).await?;
        let (rec, provider) = self.created_snapshot(id)?;
        if rec.attributes & vss_model::attr::PERSISTENT == 0 {
            return Err(VssError::invalid_arg(format!(
                "snapshot {id} is not persistent; only snapshots made with VSS_CTX_APP_ROLLBACK or VSS_CTX_NAS_ROLLBACK can be exposed"
            )));
        }
        if let Some(at) = &rec.exposed_name {
            return Err(VssError::new(
                ErrorCode::ObjectAlreadyExists,
                format!("snapshot {id} is already exposed at {at}; unexpose it first"),
            ));
        }
        let at = std::path::Path::new(path);
        if !at.is_absolute() {
            return Err(VssError::invalid_arg(format!(
                "'{path}' is not an absolute path"
            )));
        }
        let at = std::fs::canonicalize(at).map_err(|e| {
            VssError::invalid_arg(format!(
                "cannot expose at '{path}': {e}; give an existing empty directory"
            ))
        })?;
        let empty = std::fs::read_dir(&at)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !at.is_dir() || !empty {
            return Err(VssError::invalid_arg(format!(
                "'{}' is not an empty directory",
                at.display()
            )));
        }
        let name = at.to_string_lossy().into_owned();
        if self.catalog().exposed_at(&name)?.is_some() {
            return Err(VssError::invalid_arg(format!(
                "another snapshot is exposed at {name}"
            )));
        }
        let committed = committed_of(&rec);
        let at2 = at.clone();
        let exposure = tokio::task::spawn_blocking(move || provider.expose(&committed, &at2))
            .await
            .map_err(provider_err)??;
        self.catalog()
            .set_exposure(id, Some((&name, exposure.detail.as_deref())))?;
        tracing::info!(snapshot = %id, at = %name, "snapshot exposed");
        Ok(name)
    }

    /// UnexposeSnapshot.
    pub async fn unexpose_snapshot(&self, ctx: &SessionCtx, id: Id) -> Result<(), VssError> {
        self.check_admin(ctx, Call::UnexposeSnapshot).await?;
        let (rec, provider) = self.created_snapshot(id)?;
        if rec.exposed_name.is_none() {
            return Err(VssError::not_found(format!("snapshot {id} is not exposed")));
        }
        self.unexpose_record(&rec, provider).await
    }

    /// BreakSnapshotSet: only sets made entirely by hardware-type providers; vssd forgets them.
    pub async fn break_snapshot_set(&self, ctx: &SessionCtx, set: Id) -> Result<(), VssError> {
        self.check_admin(ctx, Call::BreakSnapshotSet).await?;
        let records = self.catalog().set(set)?;
        if records.is_empty() {
            return Err(VssError::not_found(format!("no snapshot set {set}")));
        }
        let mut plan = Vec::new();
        for rec in records {
            let (rec, provider) = self.created_snapshot(rec.snapshot_id)?;
            if provider.info().provider_type != vss_model::ProviderType::Hardware {
                return Err(VssError::new(
                    ErrorCode::ProviderVeto,
                    format!(
                        "snapshot {} was made by the {} provider ({}); only sets made by hardware-type providers (exec) can be broken",
                        rec.snapshot_id,
                        provider.info().name,
                        provider.info().provider_type
                    ),
                ));
            }
            plan.push((rec, provider));
        }
        for (rec, provider) in plan {
            if rec.exposed_name.is_some() {
                self.unexpose_record(&rec, provider.clone()).await?;
            }
            let committed = committed_of(&rec);
            tokio::task::spawn_blocking(move || provider.break_snapshot(&committed))
                .await
                .map_err(provider_err)??;
            self.catalog().remove(rec.snapshot_id)?;
        }
        Ok(())
    }

    /// RevertToSnapshot (vss-model.md §8.6): only persistent snapshots; the provider makes the
    /// original volume hold the snapshot's contents again. Takes the host-wide snapshot-set
    /// lock meanwhile, so that no set is made of a volume being reverted.
    pub async fn revert_to_snapshot(
        &self,
        ctx: &SessionCtx,
        snapshot_id: Id,
        force_dismount: bool,
    ) -> Result<(), VssError> {
        self.check_admin(ctx, Call::RevertToSnapshot).await?;
        let (rec, provider) = self.created_snapshot(snapshot_id)?;
        if rec.auto_release() {
            return Err(VssError::new(
                ErrorCode::UnsupportedContext,
                format!(
                    "snapshot {snapshot_id} is not persistent (context {:#x}); only persistent snapshots (e.g. VSS_CTX_APP_ROLLBACK) can be reverted to",
                    rec.context
                ),
            ));
        }
        let _lock = crate::lock::SetLock::try_acquire(&self.config.lock_file)?;
        let committed = committed_of(&rec);
        let volume = std::path::PathBuf::from(&rec.original_volume);
        let started = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            provider.revert(&committed, &volume, force_dismount)
        })
        .await
        .map_err(provider_err)?;
        self.log_event(
            Some(rec.snapshot_set_id),
            "revert",
            &rec.original_volume,
            "RevertToSnapshot",
            r.as_ref().map(|_| ()),
            started.elapsed(),
        );
        tracing::info!(target: "vss_audit", uid = ctx.uid, snapshot = %snapshot_id, volume = %rec.original_volume, outcome = if r.is_ok() { "reverted" } else { "failed" }, "audit: revert");
        r
    }

    /// DeleteVolumeSnapshots: the oldest snapshot of a volume, or all of them.
    pub async fn delete_volume_snapshots(
        &self,
        ctx: &SessionCtx,
        volume: &str,
        oldest_only: bool,
    ) -> Result<i64, VssError> {
        self.check_admin(ctx, Call::DeleteVolumeSnapshots).await?;
        let canonical = std::fs::canonicalize(volume)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| volume.to_owned());
        let mut records: Vec<SnapshotRecord> = self
            .catalog()
            .of_volume(&canonical)?
            .into_iter()
            .filter(|r| r.state == SnapshotState::Created)
            .collect();
        if records.is_empty() {
            return Err(VssError::not_found(format!(
                "volume {canonical} has no snapshots"
            )));
        }
        if oldest_only {
            records.truncate(1);
        }
        let mut deleted = 0;
        for r in records {
            let (_, provider) = self.created_snapshot(r.snapshot_id)?;
            self.delete_one(&r, provider).await.map_err(|e| {
                VssError::new(
                    e.code,
                    format!(
                        "{} ({deleted} deleted before snapshot {} failed)",
                        e.message, r.snapshot_id
                    ),
                )
            })?;
            deleted += 1;
        }
        Ok(deleted)
    }

    // ----- simple calls -------------------------------------------------------------------

    /// InitializeForBackup.
    pub async fn initialize_for_backup(
        &self,
        ctx: &SessionCtx,
        bcd: Option<String>,
    ) -> Result<(), VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::InitializeForBackup)?;
        let bcd = bcd.map(|x| BackupComponents::from_xml(&x)).transpose()?;
        d.session.initialize_for_backup(bcd)
    }

    /// InitializeForRestore.
    pub async fn initialize_for_restore(
        &self,
        ctx: &SessionCtx,
        bcd: String,
    ) -> Result<(), VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::InitializeForRestore)?;
        let bcd = BackupComponents::from_xml(&bcd)?;
        d.session.initialize_for_restore(bcd)
    }

    /// SetContext.
    pub async fn set_context(&self, ctx: &SessionCtx, value: i64) -> Result<(), VssError> {
        ctx.inner.lock().await.session.set_context(value)
    }

    /// SetBackupState.
    pub async fn set_backup_state(
        &self,
        ctx: &SessionCtx,
        select: bool,
        bootable: bool,
        backup_type: BackupType,
        partial: bool,
    ) -> Result<(), VssError> {
        ctx.inner
            .lock()
            .await
            .session
            .set_backup_state(select, bootable, backup_type, partial)
    }

    /// GetWriterMetadata.
    pub async fn get_writer_metadata(
        &self,
        ctx: &SessionCtx,
    ) -> Result<Vec<vss_model::wmd::WriterMetadata>, VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::GetWriterMetadata)?;
        d.session.note_call(Call::GetWriterMetadata);
        Ok(d.session.writer_metadata())
    }

    /// AddComponent.
    pub async fn add_component(
        &self,
        ctx: &SessionCtx,
        instance_id: Id,
        writer_id: Id,
        ct: ComponentType,
        logical_path: &str,
        name: &str,
    ) -> Result<(), VssError> {
        ctx.inner
            .lock()
            .await
            .session
            .add_component(instance_id, writer_id, ct, logical_path, name)
    }

    /// StartSnapshotSet: takes the host-wide lock.
    pub async fn start_snapshot_set(&self, ctx: &SessionCtx) -> Result<Id, VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::StartSnapshotSet)?;
        let lock = SetLock::try_acquire(&self.config.lock_file)?;
        let id = Id::new_v4();
        d.session.start_snapshot_set(id)?;
        d.set_lock = Some(lock);
        Ok(id)
    }

    /// AddToSnapshotSet: resolves the volume, chooses the provider, BeginPrepareSnapshot.
    pub async fn add_to_snapshot_set(
        &self,
        ctx: &SessionCtx,
        volume: &str,
        provider_id: Option<Id>,
    ) -> Result<Id, VssError> {
        // Check, then do the provider work without holding the session, then record.
        let (set_id, context) = {
            let d = ctx.inner.lock().await;
            d.session.check(Call::AddToSnapshotSet)?;
            (
                d.session.snapshot_set().expect("checked").id,
                d.session.context(),
            )
        };
        let vol_str = volume.to_owned();
        let resolved = tokio::task::spawn_blocking(move || vss_provider::resolve_volume(&vol_str))
            .await
            .map_err(provider_err)??;
        let path = resolved.path.to_string_lossy().into_owned();
        ctx.inner.lock().await.session.check_add_volume(&path)?;
        let provider = self.choose_provider(&resolved, provider_id).await?;
        self.check_placement(ctx, &provider, &resolved).await?;
        let request = SnapshotRequest {
            snapshot_set_id: set_id,
            snapshot_id: Id::new_v4(),
            volume: resolved,
            context,
        };
        let (p2, r2) = (provider.clone(), request.clone());
        tokio::task::spawn_blocking(move || p2.begin_prepare(&r2))
            .await
            .map_err(provider_err)??;
        let mut d = ctx.inner.lock().await;
        let added = d.session.add_volume(SetVolume {
            volume: path,
            snapshot_id: request.snapshot_id,
            provider_id: provider.info().id,
        });
        if let Err(e) = added {
            // The session changed meanwhile: undo BeginPrepareSnapshot.
            drop(d);
            let _ = tokio::task::spawn_blocking(move || provider.abort(&request, None)).await;
            return Err(e);
        }
        let id = request.snapshot_id;
        d.volumes.push(PreparedVolume { request, provider });
        Ok(id)
    }

    /// Checks a chosen provider against the rest of the set and vssd's own files: a freezing
    /// provider may not take the filesystem holding vssd's state, writers directory, socket or
    /// run directory (a frozen one would deadlock vssd); a volume and the volume it depends on
    /// (an image and the filesystem of its backing file) cannot be in one set; a volume has at
    /// most 512 snapshots.
    async fn check_placement(
        &self,
        ctx: &SessionCtx,
        provider: &Arc<dyn Provider>,
        volume: &vss_provider::Volume,
    ) -> Result<(), VssError> {
        let path = volume.path.to_string_lossy().into_owned();
        let count = self.catalog().count_of_volume(&path)?;
        if count >= MAX_SNAPSHOTS_PER_VOLUME {
            return Err(VssError::new(
                ErrorCode::MaximumNumberOfSnapshotsReached,
                format!(
                    "{path} already has {count} snapshots, the most a volume may have; delete some (DeleteVolumeSnapshots)"
                ),
            ));
        }
        if provider.info().needs_freeze {
            let ours = [
                self.config.state_dir.clone(),
                self.config.writers_dir.clone(),
                self.config.run_dir.clone(),
                self.config
                    .socket
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_default(),
            ];
            for dir in ours {
                if vss_freeze::same_filesystem(&volume.mount_point, &dir).unwrap_or(false) {
                    return Err(VssError::new(
                        ErrorCode::VolumeNotSupported,
                        format!(
                            "{path} is on the filesystem that holds vssd's {}; freezing it would freeze vssd itself. Move vssd's directories elsewhere",
                            dir.display()
                        ),
                    ));
                }
            }
        }
        let d = ctx.inner.lock().await;
        let under = provider.underlying_volume(volume);
        for other in &d.volumes {
            let other_under = other.provider.underlying_volume(&other.request.volume);
            let nested = under.as_ref().is_some_and(|u| {
                *u == other.request.volume.path || *u == other.request.volume.mount_point
            }) || other_under
                .as_ref()
                .is_some_and(|u| *u == volume.path || *u == volume.mount_point);
            if nested {
                return Err(VssError::new(
                    ErrorCode::NestedVolumeLimit,
                    format!(
                        "{path} and {} are nested (one lives in an image file on the other); a set may hold only one of them",
                        other.request.volume.path.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The provider for a volume: the named one if it supports it, else the first that does.
    async fn choose_provider(
        &self,
        volume: &vss_provider::Volume,
        provider_id: Option<Id>,
    ) -> Result<Arc<dyn Provider>, VssError> {
        let path = volume.path.display().to_string();
        match provider_id {
            Some(pid) => {
                let p = self.provider_by_id(pid).ok_or_else(|| {
                    VssError::new(
                        ErrorCode::ProviderNotRegistered,
                        format!("no provider with id {pid} is registered; vss.Admin.ListProviders lists them"),
                    )
                })?;
                let (p2, v2) = (p.clone(), volume.clone());
                let ok = tokio::task::spawn_blocking(move || p2.is_volume_supported(&v2))
                    .await
                    .map_err(provider_err)?;
                if !ok {
                    return Err(VssError::new(
                        ErrorCode::VolumeNotSupportedByProvider,
                        format!(
                            "provider '{}' cannot snapshot {path} ({})",
                            p.info().name,
                            volume.fs_type
                        ),
                    ));
                }
                Ok(p)
            }
            None => {
                let providers = self.providers.clone();
                let v2 = volume.clone();
                let found = tokio::task::spawn_blocking(move || {
                    providers.into_iter().find(|p| p.is_volume_supported(&v2))
                })
                .await
                .map_err(provider_err)?;
                found.ok_or_else(|| {
                    VssError::new(
                        ErrorCode::VolumeNotSupported,
                        format!(
                            "no provider can snapshot {path} ({} filesystem): btrfs takes subvolume roots, \
                             image takes loop-mounted filesystems whose backing file is on xfs or \
                             btrfs, reflink takes directories on xfs (reflink=1) or btrfs; see \
                             docs/providers.md",
                            volume.fs_type
                        ),
                    )
                })
            }
        }
    }

    /// GetSnapshotProperties.
    pub async fn get_snapshot_properties(
        &self,
        ctx: &SessionCtx,
        id: Id,
    ) -> Result<SnapshotProperties, VssError> {
        {
            let mut d = ctx.inner.lock().await;
            d.session.check(Call::GetSnapshotProperties)?;
            d.session.note_call(Call::GetSnapshotProperties);
        }
        match self.catalog().get(id)? {
            Some(r) if r.state == SnapshotState::Created => Ok(properties(&r)),
            _ => Err(VssError::not_found(format!(
                "no snapshot {id}: it does not exist or its set is not complete (DoSnapshotSet must succeed first)"
            ))),
        }
    }

    /// SetBackupSucceeded.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_backup_succeeded(
        &self,
        ctx: &SessionCtx,
        instance_id: Id,
        writer_id: Id,
        ct: ComponentType,
        logical_path: &str,
        name: &str,
        succeeded: bool,
    ) -> Result<(), VssError> {
        ctx.inner.lock().await.session.set_backup_succeeded(
            instance_id,
            writer_id,
            ct,
            logical_path,
            name,
            succeeded,
        )
    }

    /// Applies one restore call to the session (they are all checked and applied by the
    /// session state machine; nothing here does I/O).
    pub async fn restore_call<T>(
        &self,
        ctx: &SessionCtx,
        f: impl FnOnce(&mut vss_model::session::Session) -> Result<T, VssError>,
    ) -> Result<T, VssError> {
        f(&mut ctx.inner.lock().await.session)
    }

    /// PreRestore: the event to every writer restoring a selected component.
    pub async fn pre_restore(self: &Arc<Self>, ctx: &Arc<SessionCtx>) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::PreRestore, |engine, ctx, op| async move {
            engine
                .deliver(&ctx, WriterEvent::PreRestore, op.cancelled())
                .await;
            Ok(())
        })
        .await
    }

    /// PostRestore: the event to the restore's writers, with the file restore statuses.
    pub async fn post_restore(self: &Arc<Self>, ctx: &Arc<SessionCtx>) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::PostRestore, |engine, ctx, op| async move {
            engine
                .deliver(&ctx, WriterEvent::PostRestore, op.cancelled())
                .await;
            Ok(())
        })
        .await
    }

    /// GetWriterStatus.
    pub async fn get_writer_status(&self, ctx: &SessionCtx) -> Result<Vec<WriterStatus>, VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::GetWriterStatus)?;
        d.session.note_call(Call::GetWriterStatus);
        Ok(d.session.writers.iter().map(writer_status).collect())
    }

    /// Records one event for vss.Admin.Events.
    pub(crate) fn log_event(
        &self,
        set: Option<Id>,
        kind: &str,
        subject: &str,
        phase: &str,
        outcome: Result<(), &VssError>,
        elapsed: std::time::Duration,
    ) {
        let mut log = self.events.lock().expect("events");
        log.last += 1;
        let (outcome, message) = match outcome {
            Ok(()) => ("ok".to_owned(), None),
            Err(e) => (e.code.name().to_owned(), Some(e.message.clone())),
        };
        let event = vss_protocol::admin::Event {
            seq: log.last,
            time: crate::timefmt::now_rfc3339_millis(),
            snapshot_set_id: set.map(|s| s.to_string()),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            phase: phase.to_owned(),
            outcome,
            elapsed_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            message,
        };
        log.buf.push_back(event);
        while log.buf.len() > MAX_EVENTS {
            log.buf.pop_front();
        }
    }

    /// Records what `event` did to each writer.
    pub(crate) fn log_writer_results(
        &self,
        session: &Session,
        event: WriterEvent,
        results: &[(Id, Delivered)],
    ) {
        let set = session.snapshot_set().map(|s| s.id);
        for (id, d) in results {
            let name = session
                .writers
                .iter()
                .find(|w| w.metadata.instance_id == *id)
                .map(|w| w.metadata.writer_name.clone())
                .unwrap_or_else(|| id.to_string());
            let err = match &d.outcome {
                EventOutcome::Succeeded => None,
                EventOutcome::Failed(e) => Some(e.clone()),
                EventOutcome::NotResponding(why) => {
                    Some(VssError::new(ErrorCode::WriterNotResponding, why.clone()))
                }
            };
            self.log_event(
                set,
                "writer",
                &name,
                event.name(),
                err.as_ref().map_or(Ok(()), Err),
                d.elapsed,
            );
        }
    }

    /// The events after `after`, and the last sequence number.
    pub fn events_after(&self, after: Option<i64>) -> (Vec<vss_protocol::admin::Event>, i64) {
        let log = self.events.lock().expect("events");
        let after = after.unwrap_or(0);
        (
            log.buf.iter().filter(|e| e.seq > after).cloned().collect(),
            log.last,
        )
    }

    /// Each writer instance's last known state (for listing).
    pub fn writer_history(&self) -> Vec<WriterStatus> {
        let h = self.writer_history.lock().expect("history");
        let mut v: Vec<_> = h.values().map(writer_status).collect();
        v.sort_by(|a, b| {
            a.writer_name
                .cmp(&b.writer_name)
                .then(a.instance_id.cmp(&b.instance_id))
        });
        v
    }

    /// The registered providers, in the order of automatic choice.
    pub fn providers(&self) -> Vec<vss_provider::ProviderInfo> {
        self.providers.iter().map(|p| p.info()).collect()
    }

    /// SaveAsXml.
    pub async fn save_as_xml(&self, ctx: &SessionCtx) -> Result<String, VssError> {
        let mut d = ctx.inner.lock().await;
        d.session.check(Call::SaveAsXml)?;
        d.session.note_call(Call::SaveAsXml);
        Ok(d.session.bcd.to_xml())
    }

    /// Query.
    pub async fn query(
        &self,
        ctx: &SessionCtx,
        context: Option<i64>,
        set: Option<Id>,
        volume: Option<String>,
    ) -> Result<Vec<SnapshotProperties>, VssError> {
        let session_ctx = {
            let mut d = ctx.inner.lock().await;
            d.session.check(Call::Query)?;
            d.session.note_call(Call::Query);
            d.session.context()
        };
        let ctx_filter = match context {
            None => session_ctx,
            Some(-1) | Some(0xFFFF_FFFF) => SnapshotContext::ALL,
            Some(v) => SnapshotContext(u32::try_from(v).map_err(|_| {
                VssError::invalid_arg(format!("context {v} is not a 32-bit snapshot context"))
            })?),
        };
        let volume = volume.map(|v| {
            std::fs::canonicalize(&v)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or(v)
        });
        // The catalog's indexed lookups when a set or a volume is named: a Query per volume
        // must not read (and lock) the whole catalog.
        let rows = {
            let catalog = self.catalog();
            match (set, &volume) {
                (Some(s), _) => catalog.set(s)?,
                (None, Some(v)) => catalog.of_volume(v)?,
                (None, None) => catalog.list()?,
            }
        };
        Ok(rows
            .iter()
            .filter(|r| r.state == SnapshotState::Created)
            .filter(|r| ctx_filter.sees(r.attributes))
            .filter(|r| set.is_none_or(|s| r.snapshot_set_id == s))
            .filter(|r| volume.as_ref().is_none_or(|v| &r.original_volume == v))
            .map(properties)
            .collect())
    }

    /// DeleteSnapshots (one snapshot or a whole set). Stops at the first failure.
    pub async fn delete_snapshots(
        &self,
        ctx: &SessionCtx,
        source: Id,
        is_set: bool,
    ) -> Result<(i64, Option<Id>), VssError> {
        {
            let mut d = ctx.inner.lock().await;
            d.session.check(Call::DeleteSnapshots)?;
            d.session.note_call(Call::DeleteSnapshots);
        }
        let records = if is_set {
            self.catalog().set(source)?
        } else {
            self.catalog().get(source)?.into_iter().collect()
        };
        if records.is_empty() {
            return Err(VssError::not_found(format!(
                "no {} {source}",
                if is_set { "snapshot set" } else { "snapshot" }
            )));
        }
        let mut deleted = 0;
        for r in records {
            if r.state != SnapshotState::Created {
                return Err(VssError::bad_state(format!(
                    "snapshot {} is still being created; delete it after its set completes ({deleted} deleted before it)",
                    r.snapshot_id
                )));
            }
            let provider = self.provider_by_id(r.provider_id).ok_or_else(|| {
                VssError::new(
                    ErrorCode::ProviderNotRegistered,
                    format!(
                        "provider {} of snapshot {} is not registered",
                        r.provider_id, r.snapshot_id
                    ),
                )
            })?;
            if let Err(e) = self.delete_one(&r, provider).await {
                return Err(VssError::new(
                    e.code,
                    format!(
                        "{} ({deleted} deleted before snapshot {} failed)",
                        e.message, r.snapshot_id
                    ),
                ));
            }
            deleted += 1;
        }
        Ok((deleted, None))
    }

    // ----- asynchronous operations ---------------------------------------------------------

    /// Starts an asynchronous operation: checks the session, registers the operation and runs
    /// `work` in its own task. The task records the outcome in the session and ends the
    /// operation.
    async fn spawn_op<F, Fut>(
        self: &Arc<Self>,
        ctx: &Arc<SessionCtx>,
        kind: OpKind,
        work: F,
    ) -> Result<Id, VssError>
    where
        F: FnOnce(Arc<Engine>, Arc<SessionCtx>, Arc<Operation>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), VssError>> + Send + 'static,
    {
        let mut d = ctx.inner.lock().await;
        if d.ops.len() >= MAX_OPERATIONS_PER_SESSION {
            return Err(VssError::new(
                ErrorCode::OutOfMemory,
                format!(
                    "this session has started {} operations, the most a session may; open a new session",
                    d.ops.len()
                ),
            ));
        }
        d.session.begin(kind)?;
        let op = match self.ops.create(kind, ctx.uid) {
            Ok(op) => op,
            Err(e) => {
                d.session.finish(kind, false);
                return Err(e);
            }
        };
        d.ops.push(op.id);
        let (engine, ctx2, op2) = (self.clone(), ctx.clone(), op.clone());
        let handle = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = work(engine.clone(), ctx2.clone(), op2.clone()).await;
            if let Err(e) = &r {
                tracing::warn!(op = kind.name(), "{e}");
            }
            let mut d = ctx2.inner.lock().await;
            let ok = r.is_ok() && !op2.is_cancelled();
            d.session.finish(kind, ok);
            // The host lock is released when DoSnapshotSet ends, however it ends.
            if !d.session.holds_set_lock() {
                d.set_lock = None;
            }
            d.running = None;
            engine.remember_writers(&d.session);
            let set = d.session.snapshot_set().map(|s| s.id);
            if kind == OpKind::DoSnapshotSet {
                // The audit line of every freeze: who asked, which volumes and writers, how long.
                let volumes: Vec<String> = d
                    .session
                    .snapshot_set()
                    .map(|s| s.volumes.iter().map(|v| v.volume.clone()).collect())
                    .unwrap_or_default();
                let writers: Vec<String> = d
                    .session
                    .participants()
                    .map(|w| w.metadata.writer_name.clone())
                    .collect();
                tracing::info!(
                    target: "vss_audit",
                    uid = ctx2.uid,
                    set = %set.unwrap_or_default(),
                    volumes = %volumes.join(","),
                    writers = %writers.join(","),
                    duration_ms = started.elapsed().as_millis() as u64,
                    outcome = if ok { "ok" } else { "failed" },
                    "audit: snapshot set"
                );
            }
            drop(d);
            let status = op2.complete(r);
            let err = match &status {
                AsyncStatus::Failed(e) => Some(e.clone()),
                AsyncStatus::Cancelled => Some(VssError::new(ErrorCode::Abort, "cancelled")),
                _ => None,
            };
            engine.log_event(
                set,
                "operation",
                kind.name(),
                kind.name(),
                err.as_ref().map_or(Ok(()), Err),
                started.elapsed(),
            );
        });
        let id = op.id;
        d.running = Some((op, handle));
        Ok(id)
    }

    fn remember_writers(&self, session: &Session) {
        let mut h = self.writer_history.lock().expect("history");
        for w in &session.writers {
            // A writer that only answered Identify in this session has nothing new to say: keep
            // what an earlier session left (a failure must not vanish because someone listed
            // the writers), but take its current metadata.
            let fresh =
                w.participation == vss_model::writers::Participation::Undecided && !w.failed_event;
            match h.get_mut(&w.metadata.instance_id) {
                Some(old) if fresh => old.metadata = w.metadata.clone(),
                _ => {
                    h.insert(w.metadata.instance_id, w.clone());
                }
            }
        }
    }

    /// GatherWriterMetadata: Identify to every writer socket.
    pub async fn gather_writer_metadata(
        self: &Arc<Self>,
        ctx: &Arc<SessionCtx>,
    ) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::GatherWriterMetadata, |engine, ctx, op| async move {
            let found = tokio::select! {
                f = fanout::identify_all(&engine.config.writers_dir, engine.config.deadlines.identify) => f,
                _ = op.cancelled() => return Ok(()),
            };
            crate::faults::after_event(WriterEvent::Identify);
            let mut records: Vec<WriterRecord> = Vec::new();
            for (sock, r) in found {
                let socket = sock.path.to_string_lossy().into_owned();
                match r {
                    Identified::Ok(md) => {
                        if records.iter().any(|w| w.metadata.instance_id == md.instance_id) {
                            tracing::warn!(%socket, instance = %md.instance_id, "two sockets answer for the same writer instance; ignoring this one");
                            continue;
                        }
                        records.push(WriterRecord::new(md, socket));
                    }
                    Identified::Invalid(md, e) => {
                        tracing::warn!(%socket, writer = %md.writer_name, "writer fails Identify: {e}");
                        let mut rec = WriterRecord::new(md, socket);
                        rec.record(WriterEvent::Identify, EventOutcome::Failed(e));
                        engine.writer_history.lock().expect("history").insert(rec.metadata.instance_id, rec);
                    }
                    Identified::Absent(why) => tracing::info!(%socket, "writer absent: {why}"),
                }
            }
            ctx.inner.lock().await.session.set_writers(records);
            Ok(())
        })
        .await
    }

    /// PrepareForBackup.
    pub async fn prepare_for_backup(
        self: &Arc<Self>,
        ctx: &Arc<SessionCtx>,
    ) -> Result<Id, VssError> {
        self.spawn_op(
            ctx,
            OpKind::PrepareForBackup,
            |engine, ctx, op| async move {
                engine
                    .deliver(&ctx, WriterEvent::PrepareForBackup, op.cancelled())
                    .await;
                Ok(())
            },
        )
        .await
    }

    /// BackupComplete.
    pub async fn backup_complete(self: &Arc<Self>, ctx: &Arc<SessionCtx>) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::BackupComplete, |engine, ctx, op| async move {
            engine
                .deliver(&ctx, WriterEvent::BackupComplete, op.cancelled())
                .await;
            Ok(())
        })
        .await
    }

    /// GatherWriterStatus: vssd holds every writer's state itself, so this completes at once.
    pub async fn gather_writer_status(
        self: &Arc<Self>,
        ctx: &Arc<SessionCtx>,
    ) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::GatherWriterStatus, |_e, _c, _o| async move {
            Ok(())
        })
        .await
    }

    /// DoSnapshotSet.
    pub async fn do_snapshot_set(self: &Arc<Self>, ctx: &Arc<SessionCtx>) -> Result<Id, VssError> {
        self.spawn_op(ctx, OpKind::DoSnapshotSet, |engine, ctx, op| async move {
            crate::snapshot::run(&engine, &ctx, &op).await
        })
        .await
    }

    /// Sends `event` to every writer that receives it, in parallel, each on a fresh connection,
    /// and records the outcomes and the writers' BCD updates. `cancel` stops waiting (Cancel).
    pub(crate) async fn deliver(
        &self,
        ctx: &SessionCtx,
        event: WriterEvent,
        cancel: impl std::future::Future<Output = ()>,
    ) {
        let targets = targets(&ctx.inner.lock().await.session, event, &[]);
        if targets.is_empty() {
            return;
        }
        let results =
            fanout::broadcast(targets, event, self.config.deadlines.of(event), cancel).await;
        crate::faults::after_event(event);
        let mut d = ctx.inner.lock().await;
        self.log_writer_results(&d.session, event, &results);
        record_all(&mut d.session, event, results);
        self.remember_writers(&d.session);
    }

    /// AbortBackup: Abort to every participant not yet past PostSnapshot, in the background.
    pub async fn abort_backup(self: &Arc<Self>, ctx: &Arc<SessionCtx>) -> Result<(), VssError> {
        let mut d = ctx.inner.lock().await;
        if !d.session.abort_backup()? {
            return Ok(());
        }
        d.set_lock = None;
        let (engine, ctx2) = (self.clone(), ctx.clone());
        let h = tokio::spawn(async move {
            engine
                .deliver(&ctx2, WriterEvent::Abort, fanout::never())
                .await;
        });
        d.background.push(h);
        Ok(())
    }

    /// The requester's connection is gone: finish whatever runs, abort a backup that did not
    /// complete, send BackupShutdown, delete auto-release snapshots, release the lock.
    pub async fn end_session(self: &Arc<Self>, ctx: &Arc<SessionCtx>) {
        let (running, background) = {
            let mut d = ctx.inner.lock().await;
            (d.running.take(), std::mem::take(&mut d.background))
        };
        if let Some((op, handle)) = running {
            // Writers not yet reached get nothing more; DoSnapshotSet past its commit point
            // runs to its end (its own deadlines bound it).
            op.cancel();
            let _ = handle.await;
        }
        for h in background {
            let _ = h.await;
        }
        let abort = {
            let s = &ctx.inner.lock().await.session;
            // The requester vanished between PrepareForBackup and DoSnapshotSet: the writers
            // learn it as an Abort (a failed DoSnapshotSet already sent one).
            s.mode() == Mode::Backup
                && s.prepare_step() != Step::NotCalled
                && !s.is_aborted()
                && s.snapshot_step() == Step::NotCalled
        };
        if abort {
            self.deliver(ctx, WriterEvent::Abort, fanout::never()).await;
        }
        if ctx.inner.lock().await.session.needs_backup_shutdown() {
            self.deliver(ctx, WriterEvent::BackupShutdown, fanout::never())
                .await;
        }
        let committed = {
            let mut d = ctx.inner.lock().await;
            self.remember_writers(&d.session);
            d.set_lock = None;
            self.ops.remove(&d.ops);
            std::mem::take(&mut d.committed)
        };
        for (rec, provider) in committed {
            // Gone from the catalog: deleted already, or broken (BreakSnapshotSet handed it over).
            if !rec.auto_release() || matches!(self.catalog().get(rec.snapshot_id), Ok(None)) {
                continue;
            }
            match self.delete_one(&rec, provider).await {
                Ok(()) => {
                    tracing::info!(snapshot = %rec.snapshot_id, "released auto-release snapshot")
                }
                Err(e) => {
                    tracing::error!(snapshot = %rec.snapshot_id, "cannot release snapshot: {e}; it stays in the catalog and the next vssd start retries")
                }
            }
        }
    }

    // ----- helpers for the snapshot driver --------------------------------------------------

    /// The prepared volumes of the session.
    pub(crate) async fn prepared(
        &self,
        ctx: &SessionCtx,
    ) -> Vec<(SnapshotRequest, Arc<dyn Provider>)> {
        ctx.inner
            .lock()
            .await
            .volumes
            .iter()
            .map(|v| (v.request.clone(), v.provider.clone()))
            .collect()
    }

    /// Runs `f` on the session under its lock.
    pub(crate) async fn with_session<R>(
        &self,
        ctx: &SessionCtx,
        f: impl FnOnce(&mut Session) -> R,
    ) -> R {
        let mut d = ctx.inner.lock().await;
        f(&mut d.session)
    }

    /// Records the snapshots of a completed set as the session's.
    pub(crate) async fn adopt_snapshots(
        &self,
        ctx: &SessionCtx,
        snaps: Vec<(SnapshotRecord, Arc<dyn Provider>)>,
    ) {
        ctx.inner.lock().await.committed.extend(snaps);
    }

    /// The catalog (for the snapshot driver).
    pub(crate) fn catalog_handle(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog()
    }

    /// Writers' last states are kept for listing.
    pub(crate) fn remember(&self, session: &Session) {
        self.remember_writers(session)
    }
}

/// The targets of `event`: writers that receive it, with their event parameters.
pub(crate) fn targets(
    session: &Session,
    event: WriterEvent,
    volumes: &[EventVolume],
) -> Vec<Target> {
    // BackupShutdown carries only the set id; every other event the full parameters.
    let shutdown = (event == WriterEvent::BackupShutdown).then(|| {
        let set_id = session.snapshot_set().map(|s| s.id).unwrap_or_default();
        serde_json::to_value(vss_protocol::writer::BackupShutdownParams {
            snapshot_set_id: set_id.to_string(),
        })
        .expect("serializable")
    });
    session
        .writers
        .iter()
        .filter(|w| w.receives(event))
        .map(|w| Target {
            instance_id: w.metadata.instance_id,
            socket: w.socket.clone().into(),
            params: shutdown.clone().unwrap_or_else(|| {
                serde_json::to_value(event_params(
                    session,
                    w.metadata.instance_id,
                    event,
                    volumes,
                ))
                .expect("serializable")
            }),
        })
        .collect()
}

/// The parameters of `event` for one writer instance.
pub(crate) fn event_params(
    session: &Session,
    instance_id: Id,
    event: WriterEvent,
    volumes: &[EventVolume],
) -> EventParams {
    let bcd = &session.bcd;
    let volumes = if volumes.is_empty() {
        session
            .snapshot_set()
            .map(|s| {
                s.volumes
                    .iter()
                    .map(|v| EventVolume {
                        volume: v.volume.clone(),
                        snapshot_id: v.snapshot_id.to_string(),
                        snapshot_path: None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        volumes.to_vec()
    };
    EventParams {
        snapshot_set_id: session
            .snapshot_set()
            .map(|s| s.id)
            .unwrap_or_default()
            .to_string(),
        context: i64::from(session.context().value()),
        backup_type: bcd.backup_type.unwrap_or(BackupType::Full),
        select_components: bcd.select_components,
        bootable_system_state: bcd.bootable_system_state,
        partial_file_support: bcd.partial_file_support,
        volumes,
        components: if matches!(event, WriterEvent::PreRestore | WriterEvent::PostRestore) {
            // A restore event carries the components selected for restore, with what the
            // requester set for them.
            Some(
                session
                    .restore_event_components(instance_id)
                    .iter()
                    .map(|c| event_component(c, event))
                    .collect(),
            )
        } else {
            session
                .event_components(instance_id)
                .map(|cs| cs.iter().map(|c| event_component(c, event)).collect())
        },
    }
}

fn event_component(c: &BcdComponent, event: WriterEvent) -> EventComponent {
    let restore = matches!(event, WriterEvent::PreRestore | WriterEvent::PostRestore);
    EventComponent {
        component_type: c.component_type,
        logical_path: c.logical_path.clone(),
        name: c.name.clone(),
        backup_options: c.backup_options.clone(),
        previous_backup_stamp: c.previous_backup_stamp.clone(),
        backup_stamp: c.backup_stamp.clone(),
        backup_metadata: c.backup_metadata.clone(),
        backup_succeeded: (event == WriterEvent::BackupComplete).then_some(c.backup_succeeded),
        restore_options: c.restore_options.clone().filter(|_| restore),
        additional_restores: restore.then_some(c.additional_restores),
        file_restore_status: c
            .file_restore_status
            .filter(|_| event == WriterEvent::PostRestore),
        restore_target: c.restore_target.filter(|_| restore),
        alternate_locations: (restore && !c.alternate_locations.is_empty()).then(|| {
            c.alternate_locations
                .iter()
                .map(|a| vss_protocol::writer::AlternateLocation {
                    path: a.path.clone(),
                    filespec: a.filespec.clone(),
                    recursive: a.recursive,
                    destination: a.destination.clone(),
                })
                .collect()
        }),
    }
}

/// Records every writer's outcome and applies BCD updates (PrepareForBackup and PostSnapshot
/// only: the two events in which writers may change the BCD).
pub(crate) fn record_all(session: &mut Session, event: WriterEvent, results: Vec<(Id, Delivered)>) {
    for (instance, d) in results {
        if let Some(updates) = d.updates {
            apply_updates(session, instance, event, updates);
        }
        match &d.outcome {
            EventOutcome::Succeeded => {}
            other => tracing::warn!(instance = %instance, %event, "writer failed: {other:?}"),
        }
        if let Some(w) = session.writer_mut(instance) {
            w.record(event, d.outcome);
        }
    }
}

fn apply_updates(session: &mut Session, instance: Id, event: WriterEvent, reply: ComponentsReply) {
    if !matches!(
        event,
        WriterEvent::PrepareForBackup | WriterEvent::PostSnapshot
    ) {
        return;
    }
    for u in reply.components.unwrap_or_default() {
        let Some(c) = session
            .bcd
            .component_mut(instance, &u.logical_path, &u.name)
        else {
            tracing::warn!(%instance, component = %u.name, "writer updated a component that is not in the backup; ignored");
            continue;
        };
        if u.backup_metadata.is_some() {
            c.backup_metadata = u.backup_metadata;
        }
        if u.backup_stamp.is_some() {
            c.backup_stamp = u.backup_stamp;
        }
        if u.failure_message.is_some() {
            if event == WriterEvent::PrepareForBackup {
                c.prepare_for_backup_failure_msg = u.failure_message;
            } else {
                c.post_snapshot_failure_msg = u.failure_message;
            }
        }
    }
}

fn writer_status(w: &WriterRecord) -> WriterStatus {
    WriterStatus {
        writer_id: w.metadata.writer_id.to_string(),
        instance_id: w.metadata.instance_id.to_string(),
        writer_name: w.metadata.writer_name.clone(),
        instance_name: w.metadata.instance_name.clone(),
        state: w.state.value(),
        state_name: w.state.name().to_owned(),
        failure: w.failure_hresult(),
        failure_name: w.failure_name().to_owned(),
        failure_message: w.failure_message.clone(),
    }
}

/// The most asynchronous operations one session may start (GatherWriterStatus can repeat).
pub const MAX_OPERATIONS_PER_SESSION: usize = 256;

/// The most snapshots one volume may have (vss-model.md §9).
pub const MAX_SNAPSHOTS_PER_VOLUME: usize = 512;

fn committed_of(rec: &SnapshotRecord) -> CommittedSnapshot {
    CommittedSnapshot {
        snapshot_id: rec.snapshot_id,
        snapshot_path: PathBuf::from(&rec.snapshot_path),
        locator: rec.locator.clone(),
    }
}

/// A catalog record as the protocol shows it.
pub fn properties(r: &SnapshotRecord) -> SnapshotProperties {
    SnapshotProperties {
        snapshot_id: r.snapshot_id.to_string(),
        snapshot_set_id: r.snapshot_set_id.to_string(),
        snapshots_count: r.snapshots_count,
        snapshot_path: r.snapshot_path.clone(),
        original_volume: r.original_volume.clone(),
        provider_id: r.provider_id.to_string(),
        attributes: i64::from(r.attributes),
        attribute_names: vss_model::attr::describe(r.attributes)
            .into_iter()
            .map(String::from)
            .collect(),
        context: i64::from(r.context),
        creation_timestamp: r.created.clone(),
        status: r.state.name().to_owned(),
        exposed_name: r.exposed_name.clone(),
        atomicity: (!r.atomicity.is_empty()).then(|| r.atomicity.clone()),
        consistency: r
            .consistency
            .as_ref()
            .map(|c| vss_protocol::requester::Consistency {
                level: c.level.clone(),
                writers_frozen: c.writers_frozen.clone(),
                writers_failed: c.writers_failed.clone(),
                writers_skipped: c.writers_skipped.clone(),
                commit_skew_us: c.commit_skew_us,
                filesystem_frozen: c.filesystem_frozen,
            }),
    }
}

/// The status a finished operation reports, for logs.
pub fn describe(status: &AsyncStatus) -> String {
    match status {
        AsyncStatus::Failed(e) => format!("{} ({})", e.code.name(), e.message),
        s => s.name().to_owned(),
    }
}

//! The DoSnapshotSet driver (vss-model.md §8.5, §11 steps 11–11i):
//! PrepareForSnapshot → Freeze (front end, back end, system) → provider commit → Thaw (in
//! reverse) → PostSnapshot, with the writers' freeze windows enforced and all-or-nothing
//! commits.
//!
//! **Architecture Invariant:** nothing is committed after a writer's freeze window
//! (`freezeTimeoutMs`, counted from its Freeze until Thaw is sent) expired; a set that fails
//! after a commit deletes what it committed; every participant then gets Abort on a fresh
//! connection. The writer connections are held from PrepareForSnapshot to PostSnapshot or
//! Abort, so a writer built on the SDK thaws by itself if vssd dies in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use vss_model::{ErrorCode, Id, SnapshotState, VssError, WriterEvent, writers::EventOutcome};
use vss_protocol::transport::Connection;
use vss_protocol::writer::EventVolume;
use vss_provider::{CommittedSnapshot, Provider, SnapshotRequest};

use crate::catalog::SnapshotRecord;
use crate::engine::{Engine, SessionCtx, event_params, record_all};
use crate::fanout::{self, Delivered};
use crate::ops::Operation;

/// A participant whose connection is held through the set.
struct Held {
    instance: Id,
    wave: u8,
    freeze_timeout: Duration,
    conn: Connection,
    /// When Freeze was sent.
    frozen_at: Option<Instant>,
}

/// A volume on its way through the pipeline.
struct Vol {
    request: SnapshotRequest,
    provider: Arc<dyn Provider>,
    committed: Option<CommittedSnapshot>,
}

/// Runs DoSnapshotSet. `Err` is the set's failure (the failing writer's or provider's code).
pub async fn run(
    engine: &Arc<Engine>,
    ctx: &Arc<SessionCtx>,
    op: &Arc<Operation>,
) -> Result<(), VssError> {
    let deadlines = engine.config.deadlines;
    let mut vols: Vec<Vol> = engine
        .prepared(ctx)
        .await
        .into_iter()
        .map(|(request, provider)| Vol {
            request,
            provider,
            committed: None,
        })
        .collect();

    // 0. Writers whose files the set would not capture at one instant fail PrepareForSnapshot
    // with VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT instead of producing a backup that will not
    // restore.
    let members: Vec<crate::consistency::SetMember> = vols
        .iter()
        .map(|v| crate::consistency::SetMember {
            path: v.request.volume.path.clone(),
            atomic_across_set: v.provider.info().atomicity == vss_provider::Atomicity::AcrossSet,
        })
        .collect();
    let inconsistent = crate::consistency::check_writers(engine, ctx, &members).await;
    record(engine, ctx, WriterEvent::PrepareForSnapshot, inconsistent).await;

    // 1. PrepareForSnapshot, in parallel, each on a connection that is then held.
    let plan = engine
        .with_session(ctx, |s| {
            s.writers
                .iter()
                .filter(|w| w.receives(WriterEvent::PrepareForSnapshot))
                .map(|w| {
                    let params = event_params(
                        s,
                        w.metadata.instance_id,
                        WriterEvent::PrepareForSnapshot,
                        &[],
                    );
                    (
                        w.metadata.instance_id,
                        w.socket.clone(),
                        w.metadata.application_level.freeze_wave().unwrap_or(2),
                        Duration::from_millis(w.metadata.freeze_timeout_ms),
                        params,
                    )
                })
                .collect::<Vec<_>>()
        })
        .await;
    let mut js = JoinSet::new();
    for (instance, socket, wave, ft, params) in plan {
        let deadline = deadlines.prepare_for_snapshot;
        js.spawn(async move {
            let (d, conn) = fanout::connect_and_call(
                socket.as_ref(),
                WriterEvent::PrepareForSnapshot,
                &params,
                deadline,
            )
            .await;
            (instance, wave, ft, d, conn)
        });
    }
    let mut held: Vec<Held> = Vec::new();
    let mut results = Vec::new();
    loop {
        tokio::select! {
            j = js.join_next() => match j {
                None => break,
                Some(Ok((instance, wave, freeze_timeout, d, conn))) => {
                    if let Some(conn) = conn {
                        held.push(Held { instance, wave, freeze_timeout, conn, frozen_at: None });
                    }
                    results.push((instance, d));
                }
                Some(Err(e)) => tracing::error!("PrepareForSnapshot task failed: {e}"),
            },
            // Cancel: writers still preparing are not waited for; the set is aborted below.
            _ = op.cancelled() => {
                js.abort_all();
                break;
            }
        }
    }
    // A PrepareForSnapshot failure marks that writer failed; the set goes on without it.
    record(engine, ctx, WriterEvent::PrepareForSnapshot, results).await;

    if op.is_cancelled() {
        return abort(engine, ctx, vols, held, cancelled()).await;
    }

    // 1b. Flush every volume now (dirty data makes a freeze or a btrfs snapshot take seconds),
    // then EndPrepareSnapshots.
    for v in &vols {
        let path = v.request.volume.path.clone();
        let _ = tokio::task::spawn_blocking(move || vss_provider::fsops::syncfs(&path)).await;
    }
    if let Err(e) = for_each_provider(&vols, |p, r| p.end_prepare(r)).await {
        return abort(engine, ctx, vols, held, e).await;
    }
    if let Err(e) = insert_preparing(engine, &vols) {
        return abort(engine, ctx, vols, held, e).await;
    }

    // 2. Freeze the writers, one wave at a time: front end, back end, then system.
    let waves: Vec<u8> = {
        let mut w: Vec<u8> = held.iter().map(|h| h.wave).collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    for wave in &waves {
        let frozen = tokio::select! {
            r = freeze_wave(engine, ctx, &mut held, *wave) => Some(r),
            _ = op.cancelled() => None,
        };
        let Some((outcomes, failure)) = frozen else {
            return abort(engine, ctx, vols, held, cancelled()).await;
        };
        record(engine, ctx, WriterEvent::Freeze, outcomes).await;
        if let Some(err) = failure {
            return abort(engine, ctx, vols, held, err).await;
        }
    }

    // 3. Commit. From here on Cancel is refused.
    if !op.enter_point_of_no_return() {
        return abort(engine, ctx, vols, held, cancelled()).await;
    }
    if let Err(e) = for_each_provider(&vols, |p, r| p.pre_commit(r)).await {
        return abort(engine, ctx, vols, held, e).await;
    }
    if let Some(err) = expired(engine, ctx, &held).await {
        return abort(engine, ctx, vols, held, err).await;
    }
    let outcome = match commit_all(engine, &mut vols).await {
        Ok(o) => o,
        Err(e) => return abort(engine, ctx, vols, held, e).await,
    };
    for v in &vols {
        let (p, r, c) = (v.provider.clone(), v.request.clone(), v.committed.clone());
        let Some(c) = c else { continue };
        let r = tokio::task::spawn_blocking(move || p.post_commit(&r, &c)).await;
        if let Ok(Err(e)) = r {
            return abort(engine, ctx, vols, held, e).await;
        }
    }

    // 4. Thaw the writers, waves in reverse. A writer whose window expired before its Thaw is
    // sent fails with VSS_E_WRITERERROR_TIMEOUT and the set is aborted.
    if let Some(err) = expired(engine, ctx, &held).await {
        return abort(engine, ctx, vols, held, err).await;
    }
    for wave in waves.iter().rev() {
        let (outcomes, failure) = call_wave(
            &mut held,
            *wave,
            WriterEvent::Thaw,
            engine,
            ctx,
            deadlines.thaw,
        )
        .await;
        record(engine, ctx, WriterEvent::Thaw, outcomes).await;
        if let Some(err) = failure {
            return abort(engine, ctx, vols, held, err).await;
        }
    }
    if let Err(e) = record_committed(engine, &vols) {
        return abort(engine, ctx, vols, held, e).await;
    }

    // 5. PostSnapshot with the snapshot paths; failures mark the writer, the set completes.
    let volumes: Vec<EventVolume> = vols
        .iter()
        .map(|v| EventVolume {
            volume: v.request.volume.path.to_string_lossy().into_owned(),
            snapshot_id: v.request.snapshot_id.to_string(),
            snapshot_path: v
                .committed
                .as_ref()
                .map(|c| c.snapshot_path.to_string_lossy().into_owned()),
        })
        .collect();
    let mut outcomes = Vec::new();
    let params = engine
        .with_session(ctx, |s| {
            held.iter()
                .filter(|h| {
                    s.writers.iter().any(|w| {
                        w.metadata.instance_id == h.instance
                            && w.receives(WriterEvent::PostSnapshot)
                    })
                })
                .map(|h| {
                    let p = event_params(s, h.instance, WriterEvent::PostSnapshot, &volumes);
                    (h.instance, serde_json::to_value(p).expect("json"))
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await;
    let mut js = JoinSet::new();
    for mut h in held.drain(..) {
        let Some(p) = params.get(&h.instance).cloned() else {
            continue;
        };
        let deadline = deadlines.post_snapshot;
        js.spawn(async move {
            let d = fanout::call_on(&mut h.conn, WriterEvent::PostSnapshot, &p, deadline).await;
            (h.instance, d)
        });
    }
    while let Some(j) = js.join_next().await {
        if let Ok(x) = j {
            outcomes.push(x);
        }
    }
    record(engine, ctx, WriterEvent::PostSnapshot, outcomes).await;

    // 6. The set is complete: its consistency record goes with it.
    let consistency = engine
        .with_session(ctx, |s| crate::consistency::record(s, &outcome))
        .await;
    let set_id = vols.first().map(|v| v.request.snapshot_set_id);
    let mut adopted = Vec::new();
    {
        let mut catalog = engine.catalog_handle();
        if let Some(set) = set_id {
            catalog.mark_set_created(set, &consistency)?;
        }
        for v in vols {
            if let Some(rec) = v
                .committed
                .and_then(|c| catalog.get(c.snapshot_id).ok().flatten())
            {
                adopted.push((rec, v.provider));
            }
        }
    }
    tracing::info!(
        level = %consistency.level,
        skew_us = consistency.commit_skew_us,
        frozen = consistency.filesystem_frozen,
        "snapshot set complete"
    );
    engine.adopt_snapshots(ctx, adopted).await;
    Ok(())
}

fn cancelled() -> VssError {
    VssError::new(ErrorCode::Abort, "DoSnapshotSet was cancelled")
}

/// Calls `f` for every volume's provider on a blocking thread; the first failure wins.
async fn for_each_provider(
    vols: &[Vol],
    f: impl Fn(&dyn Provider, &SnapshotRequest) -> Result<(), VssError> + Send + Sync + Copy + 'static,
) -> Result<(), VssError> {
    for v in vols {
        let (p, r) = (v.provider.clone(), v.request.clone());
        tokio::task::spawn_blocking(move || f(p.as_ref(), &r))
            .await
            .map_err(|e| VssError::new(ErrorCode::UnexpectedProviderError, e.to_string()))??;
    }
    Ok(())
}

/// What the commit phase did, for the consistency record.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitOutcome {
    /// Microseconds between the end of the first and the end of the last commit.
    pub skew_us: u64,
    /// The filesystems of freezing providers were frozen for their commits.
    pub filesystem_frozen: bool,
}

/// Commits every volume, all or nothing. The catalog rows are written before anything is
/// frozen and updated after everything is thawed. Volumes whose provider needs a frozen
/// filesystem (image, exec) are frozen together through the freeze guard, committed, and thawed
/// together: atomic across them. The others (btrfs, reflink) are committed one after another on
/// live filesystems (their ioctls block on a frozen one).
/// Writes the set's PREPARING rows, before any writer freezes: the catalog's fsync costs
/// milliseconds that must not fall inside the writers' freeze window. A crash from here on
/// leaves rows that the next start's recovery cleans up (with anything committed meanwhile).
fn insert_preparing(engine: &Arc<Engine>, vols: &[Vol]) -> Result<(), VssError> {
    let count = vols.len() as i64;
    let created = crate::timefmt::now_rfc3339();
    let rows: Vec<SnapshotRecord> = vols
        .iter()
        .map(|v| {
            let info = v.provider.info();
            SnapshotRecord {
                snapshot_id: v.request.snapshot_id,
                snapshot_set_id: v.request.snapshot_set_id,
                snapshots_count: count,
                original_volume: v.request.volume.path.to_string_lossy().into_owned(),
                snapshot_path: String::new(),
                locator: String::new(),
                provider_id: info.id,
                attributes: v.request.context.value(),
                context: v.request.context.value(),
                created: created.clone(),
                state: SnapshotState::Preparing,
                atomicity: info.atomicity.name().to_owned(),
                exposed_name: None,
                exposure_detail: None,
                consistency: None,
            }
        })
        .collect();
    engine.catalog_handle().insert_all(&rows)
}

/// Commits every volume: the freezing providers' volumes frozen together through the guard,
/// the others on live filesystems.
async fn commit_all(engine: &Arc<Engine>, vols: &mut [Vol]) -> Result<CommitOutcome, VssError> {
    let mut ends: Vec<Instant> = Vec::new();
    let freezing: Vec<usize> = (0..vols.len())
        .filter(|i| vols[*i].provider.info().needs_freeze)
        .collect();
    let mut outcome = CommitOutcome::default();
    if !freezing.is_empty() {
        let mounts: Vec<std::path::PathBuf> = freezing
            .iter()
            .map(|i| vols[*i].request.volume.mount_point.clone())
            .collect();
        let jobs: Vec<(Arc<dyn Provider>, SnapshotRequest)> = freezing
            .iter()
            .map(|i| (vols[*i].provider.clone(), vols[*i].request.clone()))
            .collect();
        let config = engine.freeze_config();
        let set_id = vols[0].request.snapshot_set_id;
        // Everything between FIFREEZE and FITHAW runs on one blocking thread that touches
        // nothing but the providers; logs are held in memory meanwhile.
        let result = tokio::task::spawn_blocking(move || -> Result<_, VssError> {
            let _hold = crate::logbuf::hold();
            let frozen = vss_freeze::FreezeSet::freeze(&config, set_id, &mounts)?;
            crate::faults::point("while-frozen");
            let mut done = Vec::new();
            let mut failure = None;
            for (p, r) in &jobs {
                match p.commit(r) {
                    Ok(c) => done.push((c, Instant::now())),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let report = frozen.thaw();
            Ok((done, failure, report))
        })
        .await
        .map_err(|e| VssError::new(ErrorCode::UnexpectedProviderError, e.to_string()))??;
        let (done, failure, report) = result;
        for ((c, end), i) in done.into_iter().zip(freezing.iter()) {
            vols[*i].committed = Some(c);
            ends.push(end);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let report = report?;
        if report.guard_thawed {
            return Err(VssError::new(
                ErrorCode::HoldWritesTimeout,
                format!(
                    "the commit took longer than the commit window of {:?}; the freeze guard thawed the filesystems, so the snapshots are not trusted",
                    engine.freeze_config().window
                ),
            ));
        }
        tracing::info!(frozen_for = ?report.frozen_for, volumes = freezing.len(), "filesystems frozen, committed and thawed");
        let set = Some(vols[freezing[0]].request.snapshot_set_id);
        for i in &freezing {
            let v = &vols[*i];
            engine.log_event(
                set,
                "volume",
                &v.request.volume.path.to_string_lossy(),
                "Commit",
                Ok(()),
                std::time::Duration::ZERO,
            );
        }
        engine.log_event(
            set,
            "filesystems",
            &format!("{} filesystem(s)", freezing.len()),
            "Frozen",
            Ok(()),
            report.frozen_for,
        );
        outcome.filesystem_frozen = true;
    }
    for v in vols.iter_mut().filter(|v| !v.provider.info().needs_freeze) {
        let (p, r) = (v.provider.clone(), v.request.clone());
        let started = Instant::now();
        let c = tokio::task::spawn_blocking(move || p.commit(&r))
            .await
            .map_err(|e| {
                VssError::new(
                    ErrorCode::UnexpectedProviderError,
                    format!("provider commit panicked: {e}"),
                )
            })?
            .map_err(|e| {
                VssError::new(
                    e.code,
                    format!(
                        "committing {}: {}",
                        v.request.volume.path.display(),
                        e.message
                    ),
                )
            })?;
        tracing::info!(volume = %v.request.volume.path.display(), elapsed = ?started.elapsed(), "snapshot committed");
        engine.log_event(
            Some(v.request.snapshot_set_id),
            "volume",
            &v.request.volume.path.to_string_lossy(),
            "Commit",
            Ok(()),
            started.elapsed(),
        );
        v.committed = Some(c);
        ends.push(Instant::now());
    }
    if let (Some(first), Some(last)) = (ends.iter().min(), ends.iter().max()) {
        outcome.skew_us = last.duration_since(*first).as_micros() as u64;
    }
    crate::faults::point("after-commit");
    Ok(outcome)
}

/// Records the committed snapshots (state COMMITTED, with their locators), once the writers
/// are thawed: like the PREPARING rows, this fsync stays out of the freeze window. A crash
/// before it is "committed but not recorded", which recovery finds through the providers.
fn record_committed(engine: &Engine, vols: &[Vol]) -> Result<(), VssError> {
    let committed: Vec<(Id, String, String)> = vols
        .iter()
        .filter_map(|v| v.committed.as_ref())
        .map(|c| {
            (
                c.snapshot_id,
                c.snapshot_path.to_string_lossy().into_owned(),
                c.locator.clone(),
            )
        })
        .collect();
    engine.catalog_handle().mark_committed(&committed)
}

async fn record(
    engine: &Engine,
    ctx: &SessionCtx,
    event: WriterEvent,
    results: Vec<(Id, Delivered)>,
) {
    crate::faults::after_event(event);
    engine
        .with_session(ctx, |s| {
            engine.log_writer_results(s, event, &results);
            record_all(s, event, results);
            engine.remember(s);
        })
        .await
}

/// Sends Freeze to one wave in parallel. A writer's wait is bounded by its freeze window
/// (→ VSS_E_WRITERERROR_TIMEOUT) and by the Freeze deadline (→ VSS_E_WRITER_NOT_RESPONDING),
/// whichever ends first.
async fn freeze_wave(
    engine: &Arc<Engine>,
    ctx: &SessionCtx,
    held: &mut [Held],
    wave: u8,
) -> (Vec<(Id, Delivered)>, Option<VssError>) {
    let deadline = engine.config.deadlines.freeze;
    let params = engine
        .with_session(ctx, |s| {
            held.iter()
                .filter(|h| h.wave == wave)
                .map(|h| {
                    (
                        h.instance,
                        serde_json::to_value(event_params(s, h.instance, WriterEvent::Freeze, &[]))
                            .expect("json"),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await;
    let mut futs = Vec::new();
    for h in held.iter_mut().filter(|h| h.wave == wave) {
        let p = params.get(&h.instance).cloned().unwrap_or_default();
        h.frozen_at = Some(Instant::now());
        let window = h.freeze_timeout;
        let instance = h.instance;
        let conn = &mut h.conn;
        futs.push(async move {
            let limit = window.min(deadline);
            let d = match tokio::time::timeout(
                limit,
                fanout::call_on(conn, WriterEvent::Freeze, &p, deadline),
            )
            .await
            {
                Ok(d) => d,
                Err(_) if window <= deadline => Delivered {
                    outcome: EventOutcome::Failed(VssError::new(
                        ErrorCode::WriterErrorTimeout,
                        format!(
                            "the writer did not answer Freeze within its freeze window of {} ms",
                            window.as_millis()
                        ),
                    )),
                    updates: None,
                    elapsed: Duration::ZERO,
                },
                Err(_) => Delivered {
                    outcome: EventOutcome::NotResponding(format!(
                        "no reply to Freeze within {deadline:?}"
                    )),
                    updates: None,
                    elapsed: Duration::ZERO,
                },
            };
            (instance, d)
        });
    }
    let results = join_all(futs).await;
    let failure = first_failure(&results, WriterEvent::Freeze);
    (results, failure)
}

/// Sends `event` to one wave in parallel on the held connections.
async fn call_wave(
    held: &mut [Held],
    wave: u8,
    event: WriterEvent,
    engine: &Arc<Engine>,
    ctx: &SessionCtx,
    deadline: Duration,
) -> (Vec<(Id, Delivered)>, Option<VssError>) {
    let params = engine
        .with_session(ctx, |s| {
            held.iter()
                .filter(|h| h.wave == wave)
                .map(|h| {
                    (
                        h.instance,
                        serde_json::to_value(event_params(s, h.instance, event, &[]))
                            .expect("json"),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await;
    let mut futs = Vec::new();
    for h in held.iter_mut().filter(|h| h.wave == wave) {
        let p = params.get(&h.instance).cloned().unwrap_or_default();
        let instance = h.instance;
        let conn = &mut h.conn;
        futs.push(async move { (instance, fanout::call_on(conn, event, &p, deadline).await) });
    }
    let results = join_all(futs).await;
    let failure = first_failure(&results, event);
    (results, failure)
}

/// Runs futures concurrently on this task (they borrow the held connections).
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

fn first_failure(results: &[(Id, Delivered)], event: WriterEvent) -> Option<VssError> {
    results.iter().find_map(|(id, d)| match &d.outcome {
        EventOutcome::Succeeded => None,
        EventOutcome::Failed(e) => Some(VssError::new(
            e.code,
            format!("writer {id} failed {event}: {}", e.message),
        )),
        EventOutcome::NotResponding(why) => Some(VssError::new(
            ErrorCode::WriterNotResponding,
            format!("writer {id} did not respond to {event}: {why}"),
        )),
    })
}

/// Whether any frozen writer's window has expired; if so, records VSS_E_WRITERERROR_TIMEOUT for
/// it (FAILED_AT_FREEZE) and returns the set's error.
async fn expired(engine: &Engine, ctx: &SessionCtx, held: &[Held]) -> Option<VssError> {
    let now = Instant::now();
    let late: Vec<(Id, Duration)> = held
        .iter()
        .filter_map(|h| h.frozen_at.map(|t| (h.instance, t, h.freeze_timeout)))
        .filter(|(_, t, w)| now.duration_since(*t) >= *w)
        .map(|(i, _, w)| (i, w))
        .collect();
    let (first, window) = *late.first()?;
    let results = late
        .iter()
        .map(|(i, w)| {
            let e = VssError::new(
                ErrorCode::WriterErrorTimeout,
                format!(
                    "the freeze window of {} ms expired before Thaw",
                    w.as_millis()
                ),
            );
            (
                *i,
                Delivered {
                    outcome: EventOutcome::Failed(e),
                    updates: None,
                    elapsed: Duration::ZERO,
                },
            )
        })
        .collect();
    record(engine, ctx, WriterEvent::Freeze, results).await;
    Some(VssError::new(
        ErrorCode::WriterErrorTimeout,
        format!(
            "writer {first}'s freeze window of {} ms expired; nothing was committed after it",
            window.as_millis()
        ),
    ))
}

/// Aborts the set: the providers undo their work (committed snapshots are deleted), every
/// participant not past PostSnapshot gets Abort on a fresh connection, then the held
/// connections are closed. Returns `err` as the set's result.
async fn abort(
    engine: &Arc<Engine>,
    ctx: &SessionCtx,
    vols: Vec<Vol>,
    held: Vec<Held>,
    err: VssError,
) -> Result<(), VssError> {
    tracing::warn!("aborting the snapshot set: {err}");
    for v in vols {
        let id = v.request.snapshot_id;
        let (p, r, c) = (v.provider.clone(), v.request, v.committed);
        // A provider's abort is best effort. If it could not delete a committed snapshot, the
        // snapshot's catalog row (not CREATED, so invisible to Query) stays: the next start's
        // recovery deletes it, instead of it being left on the volume with nothing that knows
        // of it.
        let was_committed = c.is_some();
        let aborted = tokio::task::spawn_blocking(move || p.abort(&r, c.as_ref()))
            .await
            .unwrap_or_else(|e| Err(VssError::unexpected(format!("provider abort: {e}"))));
        match aborted {
            Err(e) if was_committed => tracing::warn!(
                snapshot = %id,
                "the provider could not delete the aborted snapshot ({e}); vssd deletes it at its next start"
            ),
            Err(e) => {
                tracing::warn!(snapshot = %id, "the provider's abort failed: {e}");
                let _ = engine.catalog_handle().remove(id);
            }
            Ok(()) => {
                let _ = engine.catalog_handle().remove(id);
            }
        }
    }
    engine
        .deliver(ctx, WriterEvent::Abort, fanout::never())
        .await;
    drop(held);
    Err(err)
}

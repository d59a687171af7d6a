//! Figure 4: DoSnapshotSet with 1, 10, 100 and 1,000 writers (all in this process, one socket
//! each), as the requester sees it (from the call to the end of its wait), minus the provider's
//! commit time that vssd reports for the same set: what coordinating the writers costs. And the
//! second half of figure 6: vssd's resident size while the 1,000-writer sessions are open.
//!
//! Each set is a full component-mode backup of one btrfs subvolume (auto-release snapshots); only
//! DoSnapshotSet is timed. The session is closed and its snapshot deleted before the next one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use super::Ctx;
use crate::procs::Vssd;
use crate::report::{Row, Target};
use crate::requester::{
    BackupRun, admin_session, backup_with_writers, commit_time, events_after, last_event, query_all,
};
use crate::stats::Samples;
use crate::writers::{Phase, Recorder, WriterHost};

/// Waits until the catalog is empty again (the closed session's auto-release snapshot is
/// deleted by vssd after the session ends), so that no set overlaps the previous one's cleanup.
async fn wait_catalog_empty(vssd: &Vssd) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut bc = admin_session(&vssd.socket).await?;
        if query_all(&mut bc).await?.0 == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the auto-release snapshots of closed sessions were not deleted in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where one DoSnapshotSet spent its time, from the writers' hook times (first and last writer
/// of each event) and the requester's call and return: one entry per step, in order.
fn phases(run: &BackupRun, rec: &Recorder) -> Option<Vec<(&'static str, Duration)>> {
    let set = run.set.to_string();
    let (p0, p1) = rec.span(&set, Phase::Prepare)?;
    let (f0, f1) = rec.span(&set, Phase::Freeze)?;
    let (t0, t1) = rec.span(&set, Phase::Thaw)?;
    let (s0, s1) = rec.span(&set, Phase::Post)?;
    let d = |a: Instant, b: Instant| b.saturating_duration_since(a);
    Some(vec![
        ("a. call -> first PrepareForSnapshot", d(run.called, p0)),
        ("b. PrepareForSnapshot, first -> last writer", d(p0, p1)),
        ("c. last PrepareForSnapshot -> first Freeze", d(p1, f0)),
        ("d. Freeze, first -> last writer", d(f0, f1)),
        ("e. last Freeze -> first Thaw (commit inside)", d(f1, t0)),
        ("f. Thaw, first -> last writer", d(t0, t1)),
        ("g. last Thaw -> first PostSnapshot", d(t1, s0)),
        ("h. PostSnapshot, first -> last writer", d(s0, s1)),
        (
            "i. last PostSnapshot -> the wait returns",
            d(s1, run.returned),
        ),
    ])
}

/// Runs figure 4 and vssd's size with the most writers (figure 6, second half); `breakdown`
/// receives where the sets with the most writers spent their time.
pub async fn run(ctx: &Ctx, breakdown: &mut BTreeMap<String, Samples>) -> Result<Vec<Row>> {
    let volume = ctx.subvolume("scale")?;
    let volume_str = volume.display().to_string();
    let mut vssd = Vssd::start(&ctx.bin, &ctx.work, "vssd-scale", "info").await?;
    let idle = vssd.memory_mb()?.0;
    let max_writers = ctx.reps.writer_counts.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut rss_busy = Samples::new();
    for &n in &ctx.reps.writer_counts {
        let host = WriterHost::start(n, &vssd.writers_dir, &volume.join("bench-writers")).await?;
        let reps = if n == max_writers {
            ctx.reps.scaling_max
        } else {
            ctx.reps.scaling
        };
        let mut beyond = Samples::new();
        let mut commit = Samples::new();
        let mut total = Samples::new();
        let mut vssd_cpu = Samples::new();
        let mut own_cpu = Samples::new();
        // One uncounted set first: vssd meets the new writers' sockets.
        for round in 0..=reps {
            let last = last_event(&vssd.socket).await?;
            let run = backup_with_writers(&vssd.socket, &volume_str, vssd.pid()).await?;
            vssd.check_alive()?;
            if run.components != n {
                bail!("{} of {n} writers were included", run.components);
            }
            let (events, _) = events_after(&vssd.socket, last).await?;
            let c = commit_time(&events, &run.set)
                .ok_or_else(|| anyhow!("no commit time for set {}", run.set))?;
            if round > 0 {
                total.push_ms(run.do_snapshot_set);
                commit.push_ms(c);
                beyond.push_ms(run.do_snapshot_set.saturating_sub(c));
                vssd_cpu.push_ms(run.vssd_cpu);
                own_cpu.push_ms(run.own_cpu);
                if n == max_writers {
                    rss_busy.push(vssd.memory_mb()?.0);
                    for (step, took) in phases(&run, &host.recorder)
                        .ok_or_else(|| anyhow!("the writers missed events of {}", run.set))?
                    {
                        breakdown
                            .entry(format!("DoSnapshotSet, {n} writers: {step}"))
                            .or_default()
                            .push_ms(took);
                    }
                }
            }
            drop(run.session);
            wait_catalog_empty(&vssd).await?;
        }
        host.stop().await;
        rows.push(Row {
            figure: format!("4 ({n})"),
            what: format!("DoSnapshotSet beyond the commit, {n} writer(s)"),
            unit: "ms",
            ours: beyond,
            baseline_name: "provider commit (vssd's Commit event)".into(),
            baseline: commit,
            excess: None,
            failure: None,
            target: if n == 1000 {
                Target::Below(100.0)
            } else {
                Target::Info
            },
            note: format!(
                "whole DoSnapshotSet {}; CPU used meanwhile (medians): vssd {} ms, writers and requester {} ms",
                crate::stats::fmt_triple(&total),
                crate::stats::fmt_value(vssd_cpu.median()),
                crate::stats::fmt_value(own_cpu.median()),
            ),
        });
    }
    let (_, peak) = vssd.memory_mb()?;
    vssd.stop();
    let mut idle_samples = Samples::new();
    idle_samples.push(idle);
    rows.push(Row {
        figure: "6".into(),
        what: format!("vssd resident size, sessions with {max_writers} writers open"),
        unit: "MB",
        ours: rss_busy,
        baseline_name: "the same vssd idle, before".into(),
        baseline: idle_samples,
        excess: None,
        failure: None,
        target: Target::Info,
        note: format!("peak (VmHWM) {peak:.1} MB"),
    });
    Ok(rows)
}

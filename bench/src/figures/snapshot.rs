//! Figures 1 and 2: a snapshot set of one btrfs subvolume with 10 no-op writers through
//! `vss create --persistent` (the whole command line: process start, writer metadata, the backup
//! sequence, BackupComplete), against `btrfs subvolume snapshot -r` and
//! `snapper --no-dbus create` of the same subvolume; and, from the same `vss create` runs, the
//! freeze window the writers saw against the provider's commit time.
//!
//! The three commands run interleaved, in an order that rotates every round, so that the
//! subvolume's snapshot count and any background load are the same for all three.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use uuid::Uuid;

use super::{Ctx, sync};
use crate::peers;
use crate::procs::{Vssd, time_command};
use crate::report::{Row, Target};
use crate::requester::{commit_time, events_after, last_event};
use crate::stats::Samples;
use crate::writers::WriterHost;

/// Writers taking part in figures 1 and 2.
const WRITERS: usize = 10;
/// Rounds run first and not counted (page cache, first snapper run, lazily created `.vss`).
const WARMUP: usize = 2;

/// Some data in the subject, so the snapshots are not of an empty tree: 1,000 files of 1 KiB
/// in 10 directories.
fn populate(ctx: &Ctx) -> Result<()> {
    let data = ctx.subject.join("data");
    for d in 0..10 {
        let dir = data.join(format!("d{d}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}")), [b'x'; 1024])?;
        }
    }
    sync();
    Ok(())
}

/// One synchronous 4 KiB write to a file next to vssd's catalog (write, then `fsync`, as SQLite
/// does): what each of the catalog's transactions (WAL, `synchronous = FULL`) waits for at
/// least.
/// Shown beside figures 1 and 2, whose sets commit three such transactions.
fn fsync_probe(dir: &std::path::Path) -> Result<Duration> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dir.join("fsync-probe"))?;
    let started = std::time::Instant::now();
    f.write_all(&[0u8; 4096])?;
    f.sync_all()?;
    Ok(started.elapsed())
}

/// Runs figures 1 and 2; `breakdown` receives vssd's per-operation times inside `vss create`.
pub async fn run(ctx: &Ctx, breakdown: &mut BTreeMap<String, Samples>) -> Result<Vec<Row>> {
    populate(ctx)?;
    let mut vssd = Vssd::start(&ctx.bin, &ctx.work, "vssd-snapshot", "info").await?;
    let host = WriterHost::start(
        WRITERS,
        &vssd.writers_dir,
        &ctx.subject.join("bench-writers"),
    )
    .await?;
    let btrfs_dest = ctx.btrfs.join("bench-btrfs-cli");
    std::fs::create_dir_all(&btrfs_dest)?;

    let mut vss = Samples::new();
    let mut btrfs = Samples::new();
    let mut snapper = Samples::new();
    let mut window = Samples::new();
    let mut commit = Samples::new();
    let mut excess = Samples::new();
    let mut fsync = Samples::new();
    for round in 0..WARMUP + ctx.reps.snapshot {
        let counted = round >= WARMUP;
        let took = fsync_probe(&vssd.dir.join("state"))?;
        if counted {
            fsync.push_ms(took);
        }
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let last = last_event(&vssd.socket).await?;
                    let mut cmd = vssd.vss(&ctx.bin);
                    cmd.args(["create", "--persistent"]).arg(&ctx.subject);
                    let took = time_command(cmd).await.context("vss create")?;
                    vssd.check_alive()?;
                    let (events, _) = events_after(&vssd.socket, last).await?;
                    let set = events
                        .iter()
                        .find(|e| e.kind == "volume" && e.phase == "Commit")
                        .and_then(|e| e.snapshot_set_id.as_deref())
                        .and_then(|s| Uuid::parse_str(s.trim_matches(['{', '}'])).ok())
                        .ok_or_else(|| anyhow!("vssd recorded no commit for vss create"))?;
                    let c = commit_time(&events, &set)
                        .ok_or_else(|| anyhow!("no commit time for set {set}"))?;
                    let (w, n) = host
                        .recorder
                        .widest_window(&set.to_string())
                        .ok_or_else(|| anyhow!("the writers saw no Freeze/Thaw of {set}"))?;
                    if n != WRITERS {
                        return Err(anyhow!("only {n} of {WRITERS} writers were frozen"));
                    }
                    if counted {
                        vss.push_ms(took);
                        commit.push_ms(c);
                        window.push_ms(w);
                        excess.push_ms(w.saturating_sub(c));
                        for e in events.iter().filter(|e| e.kind == "operation") {
                            breakdown
                                .entry(format!("vss create, vssd's {} operation", e.phase))
                                .or_default()
                                .push_ms(Duration::from_micros(e.elapsed_us.max(0) as u64));
                        }
                    }
                }
                1 => {
                    let dest = btrfs_dest.join(format!("s{round}"));
                    let took = time_command(peers::btrfs_snapshot(&ctx.subject, &dest)).await?;
                    if counted {
                        btrfs.push_ms(took);
                    }
                }
                _ => {
                    let took = time_command(peers::snapper_create(&ctx.snapper_config)).await?;
                    if counted {
                        snapper.push_ms(took);
                    }
                }
            }
        }
    }
    host.stop().await;
    vssd.stop();

    let what = format!("vss create --persistent, 1 btrfs subvolume, {WRITERS} writers");
    let runs = format!("{} runs each, interleaved", vss.len());
    Ok(vec![
        Row {
            figure: "1".into(),
            what: what.clone(),
            unit: "ms",
            ours: vss.clone(),
            baseline_name: "btrfs subvolume snapshot -r".into(),
            baseline: btrfs,
            excess: None,
            failure: None,
            target: Target::RatioAtMost(1.5),
            note: runs.clone(),
        },
        Row {
            figure: "1".into(),
            what,
            unit: "ms",
            ours: vss,
            baseline_name: "snapper --no-dbus create".into(),
            baseline: snapper,
            excess: None,
            failure: None,
            target: Target::FasterThanBaseline,
            note: runs,
        },
        Row {
            figure: "1".into(),
            what: "fsync of a 4 KiB write beside vssd's catalog".into(),
            unit: "ms",
            ours: fsync,
            baseline_name: "-".into(),
            baseline: Samples::new(),
            excess: None,
            failure: None,
            target: Target::Info,
            note: "what each of a set's 3 catalog transactions waits for".into(),
        },
        Row {
            figure: "2".into(),
            what: format!("freeze window seen by writers (widest of {WRITERS})"),
            unit: "ms",
            ours: window,
            baseline_name: "provider commit (vssd's Commit event)".into(),
            baseline: commit,
            excess: Some(excess.clone()),
            failure: None,
            target: Target::ExcessAtMost(1.0),
            note: format!(
                "window - commit per run: {}",
                crate::stats::fmt_triple(&excess)
            ),
        },
    ])
}

//! Figure 5: the catalog. vssd keeps at most 512 snapshots per volume, so 10,000 snapshots are
//! made the way a real host would hold them: persistent sets (no writers) of 25 btrfs
//! subvolumes at once, 400 rounds, 400 snapshots per subvolume, all in vssd's catalog and on
//! disk. Then:
//!
//! * listing them all, four ways, interleaved: one `Query` with `VSS_CTX_ALL` through
//!   vss-client (what `vss list shadows` and any requester does); one `Query` per volume (the
//!   way around vssd's 4 MiB message limit, which one reply for every snapshot exceeds beyond
//!   about 6,000 snapshots: such a listing fails, and is recorded as failed); the
//!   `vss list shadows --json` command line; and, as the baseline, `btrfs subvolume list -s` of
//!   the same filesystem (which lists a few more: the snapshots of the other figures);
//! * creating 1,000 more, each its own one-volume set (a session, StartSnapshotSet,
//!   AddToSnapshotSet, DoSnapshotSet), and deleting them one set at a time (DeleteSnapshots),
//!   against the kernel's own cost of the same 1,000 read-only snapshots and deletions
//!   (the ioctls in a loop, [`crate::kernel`]).

use std::os::fd::AsFd;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use vss_client::ObjectType;

use super::{Ctx, sync};
use crate::kernel;
use crate::peers;
use crate::procs::{Vssd, time_command};
use crate::report::{Row, Target};
use crate::requester::{admin_session, persistent_set, query_all};
use crate::stats::Samples;

/// The first line of an error, shortened for a table cell.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_owned(),
    }
}

/// Runs figure 5. Returns the rows and vssd's resident size at the end (catalog full).
pub async fn run(ctx: &Ctx) -> Result<(Vec<Row>, f64)> {
    let r = &ctx.reps;
    let volumes: Vec<String> = (0..r.catalog_volumes)
        .map(|i| ctx.subvolume(&format!("cat{i:02}")))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut vssd = Vssd::start(&ctx.bin, &ctx.work, "vssd-catalog", "info").await?;

    // Populate (timed for the note only). Halfway, while one reply can still hold them all,
    // one Query of everything is timed: how listing grows with the catalog.
    let started = Instant::now();
    let rounds = r.catalog.div_ceil(volumes.len());
    let mut half_query = Samples::new();
    let mut half_btrfs = Samples::new();
    let mut half_count = 0;
    for round in 0..rounds {
        if round == rounds / 2 {
            let mut bc = admin_session(&vssd.socket).await?;
            for i in 0..=r.list {
                let (n, took) = query_all(&mut bc).await?;
                let btrfs_took = time_command(peers::btrfs_list_snapshots(&ctx.btrfs)).await?;
                half_count = n;
                if i > 0 {
                    half_query.push_ms(took);
                    half_btrfs.push_ms(btrfs_took);
                }
            }
        }
        persistent_set(&vssd.socket, &volumes)
            .await
            .context("populating the catalog")?;
    }
    let populate = started.elapsed();
    vssd.check_alive()?;
    sync();

    // List, interleaved: one Query for everything (VSS_CTX_ALL), one Query per volume, the
    // `vss list shadows` command line, and `btrfs subvolume list`. A listing that fails (one
    // reply cannot exceed vssd's 4 MiB message limit) is recorded as such, not retried.
    let expected = rounds * volumes.len();
    let mut bc = admin_session(&vssd.socket).await?;
    let mut query = Samples::new();
    let mut query_failure: Option<String> = None;
    let mut by_volume = Samples::new();
    let mut reply_bytes = 0;
    let mut cli = Samples::new();
    let mut cli_failure: Option<String> = None;
    let mut btrfs = Samples::new();
    for round in 0..=r.list {
        let counted = round > 0;
        if query_failure.is_none() {
            match query_all(&mut bc).await {
                Ok((n, took)) => {
                    if n != expected {
                        bail!("Query listed {n} snapshots, not {expected}");
                    }
                    if counted {
                        query.push_ms(took);
                    }
                }
                Err(e) => {
                    query_failure = Some(first_line(&format!("{e:#}")));
                    // The session may be unusable after a failed read: start a new one.
                    bc = admin_session(&vssd.socket).await?;
                }
            }
        }
        let started = Instant::now();
        let mut replies = Vec::with_capacity(volumes.len());
        for v in &volumes {
            replies.push(bc.query(Some(-1), None, Some(v)).await?);
        }
        let took = started.elapsed();
        let n: usize = replies.iter().map(Vec::len).sum();
        if n != expected {
            bail!("Query per volume listed {n} snapshots, not {expected}");
        }
        reply_bytes = replies
            .iter()
            .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len()))
            .sum();
        if counted {
            by_volume.push_ms(took);
        }
        if cli_failure.is_none() {
            let mut cmd = vssd.vss(&ctx.bin);
            cmd.args(["--json", "list", "shadows"]);
            match time_command(cmd).await {
                Ok(took) if counted => cli.push_ms(took),
                Ok(_) => {}
                Err(e) => cli_failure = Some(first_line(&format!("{e:#}"))),
            }
        }
        let btrfs_took = time_command(peers::btrfs_list_snapshots(&ctx.btrfs)).await?;
        if counted {
            btrfs.push_ms(btrfs_took);
        }
    }
    drop(bc);
    let per_snapshot = reply_bytes as f64 / expected.max(1) as f64;
    let size_note = format!(
        "all {expected} as JSON: {:.1} MiB ({per_snapshot:.0} bytes each; a 4 MiB message holds ~{:.0})",
        reply_bytes as f64 / (1 << 20) as f64,
        (4 << 20) as f64 / per_snapshot.max(1.0)
    );

    // Create and delete `churn` snapshots, against the ioctls alone.
    let kernel_dir = ctx.btrfs.join("bench-kernel-snaps");
    std::fs::create_dir_all(&kernel_dir)?;
    let kernel_dir_fd = kernel::open_dir(&kernel_dir)?;
    let sources = volumes
        .iter()
        .map(|v| kernel::open_dir(std::path::Path::new(v)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut create = Samples::new();
    let mut delete = Samples::new();
    let mut k_create = Samples::new();
    let mut k_delete = Samples::new();
    for round in 0..r.churn_rounds {
        let started = Instant::now();
        let mut sets = Vec::with_capacity(r.churn);
        for i in 0..r.churn {
            let v = volumes[i % volumes.len()].clone();
            sets.push(persistent_set(&vssd.socket, &[v]).await?);
        }
        create.push_ms(started.elapsed());
        let started = Instant::now();
        let mut bc = admin_session(&vssd.socket).await?;
        for set in &sets {
            bc.delete_snapshots(*set, ObjectType::SnapshotSet, false)
                .await?;
        }
        delete.push_ms(started.elapsed());
        drop(bc);
        vssd.check_alive()?;

        let names: Vec<String> = (0..r.churn).map(|i| format!("r{round}-{i}")).collect();
        let started = Instant::now();
        for (i, name) in names.iter().enumerate() {
            let src = &sources[i % sources.len()];
            kernel::snapshot(kernel_dir_fd.as_fd(), src.as_fd(), name)
                .with_context(|| format!("BTRFS_IOC_SNAP_CREATE_V2 {name}"))?;
        }
        k_create.push_ms(started.elapsed());
        let started = Instant::now();
        for name in &names {
            kernel::destroy(kernel_dir_fd.as_fd(), name)
                .with_context(|| format!("BTRFS_IOC_SNAP_DESTROY {name}"))?;
        }
        k_delete.push_ms(started.elapsed());
    }
    let rss = vssd.memory_mb()?.0;
    vssd.stop();

    let in_catalog = format!("{expected} in the catalog");
    Ok((
        vec![
            Row {
                figure: "5".into(),
                what: format!("list {half_count} snapshots (catalog half full): one Query"),
                unit: "ms",
                ours: half_query,
                baseline_name: "btrfs subvolume list -s (CLI)".into(),
                baseline: half_btrfs,
                excess: None,
                failure: None,
                target: Target::Info,
                note: "how a one-call listing grows with the catalog".into(),
            },
            Row {
                figure: "5".into(),
                what: format!("list {expected} snapshots: one Query (VSS_CTX_ALL), vss-client"),
                unit: "ms",
                ours: query,
                baseline_name: "btrfs subvolume list -s (CLI)".into(),
                baseline: btrfs.clone(),
                excess: None,
                failure: query_failure,
                target: Target::Below(50.0),
                note: size_note,
            },
            Row {
                figure: "5".into(),
                what: format!(
                    "list {expected} snapshots: one Query per volume ({} calls)",
                    volumes.len()
                ),
                unit: "ms",
                ours: by_volume,
                baseline_name: "btrfs subvolume list -s (CLI)".into(),
                baseline: btrfs.clone(),
                excess: None,
                failure: None,
                target: Target::Below(50.0),
                note: format!(
                    "catalog filled in {:.0} s ({rounds} sets of {} volumes)",
                    populate.as_secs_f64(),
                    volumes.len()
                ),
            },
            Row {
                figure: "5".into(),
                what: format!("list {expected} snapshots: vss --json list shadows (CLI)"),
                unit: "ms",
                ours: cli,
                baseline_name: "btrfs subvolume list -s (CLI)".into(),
                baseline: btrfs,
                excess: None,
                failure: cli_failure,
                target: Target::Info,
                note: in_catalog.clone(),
            },
            Row {
                figure: "5".into(),
                what: format!("create {} snapshots, one set each", r.churn),
                unit: "ms",
                ours: create,
                baseline_name: "the same snapshots by ioctl, in process".into(),
                baseline: k_create,
                excess: None,
                failure: None,
                target: Target::Info,
                note: in_catalog.clone(),
            },
            Row {
                figure: "5".into(),
                what: format!("delete {} snapshots, one set each", r.churn),
                unit: "ms",
                ours: delete,
                baseline_name: "the same deletions by ioctl, in process".into(),
                baseline: k_delete,
                excess: None,
                failure: None,
                target: Target::Info,
                note: in_catalog,
            },
        ],
        rss,
    ))
}

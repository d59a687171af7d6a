//! Figure 3: freeze and thaw of three filesystems (two XFS, one ext4, each in an image file on
//! an XFS reflink=1 loop filesystem), through vss's image provider path with no writers,
//! against qemu-guest-agent's `guest-fsfreeze-freeze-list` + `guest-fsfreeze-thaw` over its
//! Unix socket.
//!
//! What is compared: vssd's freeze window (its `Frozen` event: first FIFREEZE to last FITHAW,
//! with the three image clones that are the snapshot in between) against qemu-ga's freeze+thaw
//! round trip as its client sees it (both calls, nothing in between: under qemu-ga the snapshot
//! is the hypervisor's business, between the two calls). The whole `vss create` command is shown
//! too, against the same baseline, for scale: it is a complete snapshot, qemu-ga's is not.
//! Every measured operation starts after the same quiet time ([`SETTLE`]).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use uuid::Uuid;

use super::Ctx;
use crate::peers::QemuGa;
use crate::procs::{Vssd, time_command};
use crate::report::{Row, Target};
use crate::requester::{delete_all, events_after, frozen_time, last_event};
use crate::stats::Samples;

/// Uncounted rounds first (the first freeze after mkfs and sync is much slower).
const WARMUP: usize = 2;

/// Quiet time before every measured freeze. What a FIFREEZE costs depends on how recently the
/// same filesystem was thawed: within ~10 ms of the last thaw it takes 1-2 ms, after ~20 ms it
/// waits for RCU grace periods (~40 ms per filesystem on the test machine's kernel). Without a
/// pause, whichever of the two contenders runs right after the other gets the cheap freezes;
/// with it, both start from the state a real backup starts from.
const SETTLE: Duration = Duration::from_millis(250);

/// The `elapsed_us` of every "image clone created" line in a piece of vssd's log.
fn clone_times(log: &str) -> Vec<Duration> {
    log.lines()
        .filter(|l| l.contains("image clone created"))
        .filter_map(|l| {
            let rest = &l[l.find("elapsed_us=")? + "elapsed_us=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some(Duration::from_micros(digits.parse().ok()?))
        })
        .collect()
}

/// Runs figure 3.
pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    // Debug logging for the image provider's "image clone created ... elapsed_us=N" lines: the
    // snapshot's share of the freeze window.
    let mut vssd = Vssd::start(
        &ctx.bin,
        &ctx.work,
        "vssd-freeze",
        "info,vss_provider=debug",
    )
    .await?;
    let qga = QemuGa::start(&ctx.work.join("qemu-ga"), &ctx.pids())?;
    let mut client = Some(qga.connect()?);
    let mut window = Samples::new();
    let mut freeze_only = Samples::new();
    let mut create = Samples::new();
    let mut cycle = Samples::new();
    let mounts = ctx.images.clone();
    for round in 0..WARMUP + ctx.reps.freeze {
        let counted = round >= WARMUP;
        for step in 0..2 {
            tokio::time::sleep(SETTLE).await;
            if (round + step) % 2 == 0 {
                let last = last_event(&vssd.socket).await?;
                let log_before = vssd.log().len();
                let mut cmd = vssd.vss(&ctx.bin);
                cmd.args([
                    "create",
                    "--persistent",
                    "--no-writers",
                    "--provider",
                    "image",
                ])
                .args(&mounts);
                let took = time_command(cmd).await.context("vss create (image)")?;
                vssd.check_alive()?;
                let (events, _) = events_after(&vssd.socket, last).await?;
                let set = events
                    .iter()
                    .find(|e| e.kind == "filesystems" && e.phase == "Frozen")
                    .and_then(|e| e.snapshot_set_id.as_deref())
                    .and_then(|s| Uuid::parse_str(s.trim_matches(['{', '}'])).ok())
                    .ok_or_else(|| anyhow!("vssd recorded no freeze window"))?;
                let frozen = frozen_time(&events, &set).ok_or_else(|| anyhow!("no Frozen"))?;
                let clones = clone_times(&vssd.log()[log_before..]);
                if clones.len() != mounts.len() {
                    bail!(
                        "vssd logged {} image clones, not {}",
                        clones.len(),
                        mounts.len()
                    );
                }
                let cloning: Duration = clones.iter().sum();
                // The clones are image-sized files (sparse, shared extents): delete them so
                // the outer filesystem stays as it was. Not timed.
                delete_all(&vssd.socket).await?;
                if counted {
                    create.push_ms(took);
                    window.push_ms(frozen);
                    freeze_only.push_ms(frozen.saturating_sub(cloning));
                }
            } else {
                let mut c = client.take().expect("client is put back after each cycle");
                let m = mounts.clone();
                let (c, r) = tokio::task::spawn_blocking(move || {
                    let r = c.freeze_thaw(&m);
                    (c, r)
                })
                .await?;
                client = Some(c);
                let (f, t): (Duration, Duration) = r.context("qemu-ga freeze/thaw")?;
                if counted {
                    cycle.push_ms(f + t);
                }
            }
        }
    }
    let mut c = client.take().expect("client");
    let status = c.status()?;
    if status != "thawed" {
        bail!("qemu-ga reports {status} after the benchmark");
    }
    drop(c);
    drop(qga);
    vssd.stop();

    let note = format!(
        "{} runs each; 2 xfs + 1 ext4 images on xfs reflink=1",
        window.len()
    );
    Ok(vec![
        Row {
            figure: "3".into(),
            what: "freeze+thaw alone: the window minus the 3 clones (vssd's log)".into(),
            unit: "ms",
            ours: freeze_only,
            baseline_name: "qemu-ga freeze-list + thaw round trips".into(),
            baseline: cycle.clone(),
            excess: None,
            failure: None,
            target: Target::NotSlower,
            note: note.clone(),
        },
        Row {
            figure: "3".into(),
            what: "freeze window, 3 image fs, no writers (vssd's Frozen event)".into(),
            unit: "ms",
            ours: window,
            baseline_name: "qemu-ga freeze-list + thaw round trips".into(),
            baseline: cycle.clone(),
            excess: None,
            failure: None,
            target: Target::NotSlower,
            note: note.clone(),
        },
        Row {
            figure: "3".into(),
            what: "whole vss create --no-writers --provider image (3 fs)".into(),
            unit: "ms",
            ours: create,
            baseline_name: "qemu-ga freeze-list + thaw round trips".into(),
            baseline: cycle,
            excess: None,
            failure: None,
            target: Target::Info,
            note,
        },
    ])
}

//! Figure 6, first half: vssd's resident size when idle, against qemu-ga's (the other
//! always-running freeze coordinator of the comparison), each sampled in several fresh starts.
//!
//! "Idle" is a vssd that has started, recovered (nothing to recover), and answered one call
//! (the readiness check), then been left alone for a moment: what it costs a host that is not
//! backing up.

use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::peers::QemuGa;
use crate::procs::{Vssd, memory_mb};
use crate::report::{Row, Target};
use crate::stats::Samples;

/// How long a fresh process is left alone before its size is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Runs the idle half of figure 6.
pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let mut vssd_rss = Samples::new();
    let mut qga_rss = Samples::new();
    for i in 0..ctx.reps.idle {
        let vssd = Vssd::start(&ctx.bin, &ctx.work, &format!("vssd-idle-{i}"), "info").await?;
        let qga = QemuGa::start(&ctx.work.join(format!("qemu-ga-idle-{i}")), &ctx.pids())?;
        tokio::time::sleep(SETTLE).await;
        vssd_rss.push(vssd.memory_mb()?.0);
        qga_rss.push(memory_mb(qga.pid())?.0);
        drop(qga);
        vssd.stop();
    }
    Ok(vec![Row {
        figure: "6".into(),
        what: "vssd resident size, idle".into(),
        unit: "MB",
        ours: vssd_rss.clone(),
        baseline_name: "qemu-ga resident size, idle".into(),
        baseline: qga_rss,
        excess: None,
        failure: None,
        target: Target::Below(15.0),
        note: format!("{} fresh starts each", vssd_rss.len()),
    }])
}

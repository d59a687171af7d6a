//! `vss-bench`: measures vss for Linux against its Linux peers and prints the table of
//! BENCHMARKS.md (figure, ours min/median/max, baseline min/median/max, ratio, target, met?).
//!
//! It is driven by `bench/run.sh`, which installs the peers, builds the release binaries, sets
//! up the throwaway loop filesystems (and tears them down whatever happens) and passes their
//! mount points here. This program starts a private vssd per figure, hosts the writers itself,
//! runs the baselines as child processes in the same loops, and writes `results.md` and
//! `results.json` to `--out`.
//!
//! Nothing here asserts a time: a regression is found by running the command and reading the
//! table (timed tests would fail on a loaded machine and prove nothing on an idle one).

mod figures;
mod kernel;
mod peers;
mod procs;
mod report;
mod requester;
mod stats;
mod writers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;

use figures::{Ctx, Reps};
use report::Row;
use stats::Samples;

#[derive(Debug, Parser)]
#[command(
    name = "vss-bench",
    about = "Benchmarks vss for Linux against btrfs-progs, snapper and qemu-guest-agent (run it through bench/run.sh).",
    long_about = "Benchmarks vss for Linux against btrfs-progs, snapper and qemu-guest-agent.\n\n\
        Run it through bench/run.sh, which prepares the filesystems, the snapper config and the \
        binaries, and cleans up. Needs root. Prints the result table and writes results.md and \
        results.json to --out."
)]
struct Args {
    /// Directory of the release binaries vssd, vss and vss-freeze-guard.
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Scratch directory for vssd's directories, sockets, logs and pid files (on a filesystem
    /// that is never frozen).
    #[arg(long, value_name = "DIR")]
    work: PathBuf,
    /// Mount point of the scratch btrfs filesystem (its top-level subvolume).
    #[arg(long, value_name = "DIR")]
    btrfs: PathBuf,
    /// The subvolume of figures 1 and 2 (snapper's config is on it).
    #[arg(long, value_name = "DIR")]
    subject: PathBuf,
    /// The snapper config name of --subject.
    #[arg(long, value_name = "NAME")]
    snapper_config: String,
    /// The three image-backed mount points of figure 3 (repeat the option).
    #[arg(long = "image", value_name = "DIR", required = true)]
    images: Vec<PathBuf>,
    /// Where to write results.md and results.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Few, small repetitions: a smoke test of the whole run, not numbers to publish.
    #[arg(long)]
    quick: bool,
    /// Run only these figures (comma separated: 1..6; 1 and 2 always run together, and 6 needs
    /// 4 for its 1,000-writer half).
    #[arg(long, value_delimiter = ',', value_name = "N")]
    only: Vec<u8>,
}

/// Raises the open-file limit to its hard maximum: 1,000 writers are 1,000 listening sockets
/// plus 1,000 connections here, and vssd (which inherits the limit) holds one connection per
/// writer from PrepareForSnapshot to PostSnapshot. The default soft limit is often 1,024.
fn raise_fd_limit() -> Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let max = current.maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: max,
            maximum: max,
        },
    )
    .context("raising RLIMIT_NOFILE")?;
    Ok(max.unwrap_or(u64::MAX))
}

/// The machine, for the report: cores, memory, kernel, load, the disk under the scratch dir.
fn machine(work: &std::path::Path) -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN);
    let disk = std::process::Command::new("df")
        .args(["-h", "--output=source,fstype,size"])
        .arg(work)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    json!({
        "cpu": model,
        "cores": cores,
        "memGiB": (mem_gib * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "scratchDisk": disk,
        "loadavgStart": read("/proc/loadavg").trim(),
    })
}

async fn run(args: Args) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("vss-bench needs root (loop filesystems, freezing, btrfs ioctls); use bench/run.sh");
    }
    let fd_limit = raise_fd_limit()?;
    std::fs::create_dir_all(args.work.join("pids"))?;
    std::fs::create_dir_all(&args.out)?;
    let want = |n: u8| args.only.is_empty() || args.only.contains(&n);
    let ctx = Ctx {
        bin: std::fs::canonicalize(&args.bin_dir)?,
        work: std::fs::canonicalize(&args.work)?,
        btrfs: std::fs::canonicalize(&args.btrfs)?,
        subject: std::fs::canonicalize(&args.subject)?,
        snapper_config: args.snapper_config.clone(),
        images: args
            .images
            .iter()
            .map(std::fs::canonicalize)
            .collect::<Result<_, _>>()?,
        reps: if args.quick {
            Reps::quick()
        } else {
            Reps::full()
        },
    };
    let mut info = machine(&ctx.work);
    info["fdLimit"] = json!(fd_limit);
    info["quick"] = json!(args.quick);
    eprintln!("vss-bench: {info}");

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut breakdown: BTreeMap<String, Samples> = BTreeMap::new();
    let phase = |name: &str| {
        eprintln!(
            "vss-bench: [{:>5.1} s] {name}",
            started.elapsed().as_secs_f64()
        )
    };
    if want(6) {
        phase("figure 6: idle resident size");
        rows.extend(
            figures::memory::run(&ctx)
                .await
                .context("figure 6 (idle)")?,
        );
    }
    if want(1) || want(2) {
        phase("figures 1 and 2: snapshot set with 10 writers, freeze window");
        rows.extend(
            figures::snapshot::run(&ctx, &mut breakdown)
                .await
                .context("figures 1 and 2")?,
        );
    }
    if want(3) {
        phase("figure 3: freeze/thaw of 3 image filesystems vs qemu-ga");
        rows.extend(figures::freeze::run(&ctx).await.context("figure 3")?);
    }
    if want(4) {
        phase("figure 4: scaling to 1,000 writers");
        rows.extend(
            figures::scaling::run(&ctx, &mut breakdown)
                .await
                .context("figure 4")?,
        );
    }
    if want(5) {
        phase("figure 5: catalog");
        let (r, rss) = figures::catalog::run(&ctx).await.context("figure 5")?;
        rows.extend(r);
        info["vssdRssAfterCatalogMB"] = json!((rss * 10.0).round() / 10.0);
    }
    phase("done");
    let duration = started.elapsed();
    info["measureSeconds"] = json!(duration.as_secs());
    info["loadavgEnd"] = json!(
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    // Rows in figure order (idle memory ran first to see a quiet vssd, but is read last).
    rows.sort_by_key(|r| r.figure.chars().next().unwrap_or('9'));
    let table = report::text_table(&rows);
    let mut breakdown_text = String::new();
    for (k, s) in &breakdown {
        let _ = writeln!(breakdown_text, "  {k}: {} ms", stats::fmt_triple(s));
    }
    println!();
    println!("{table}");
    if !breakdown_text.is_empty() {
        println!("Where the time goes (min / median / max):");
        println!("{breakdown_text}");
    }
    println!(
        "measured in {:.0} s on {} cores; load average at start {}, at end {}",
        duration.as_secs_f64(),
        info["cores"],
        info["loadavgStart"].as_str().unwrap_or("?"),
        info["loadavgEnd"].as_str().unwrap_or("?"),
    );
    let missed: Vec<String> = rows
        .iter()
        .filter(|r| r.met() == Some(false))
        .map(|r| format!("figure {}: {} ({})", r.figure, r.what, r.target_text()))
        .collect();
    if missed.is_empty() {
        println!("every target met");
    } else {
        println!("targets not met:");
        for m in &missed {
            println!("  {m}");
        }
    }

    let mut md = report::markdown_table(&rows);
    if !breakdown_text.is_empty() {
        md.push_str("\nWhere the time goes (min / median / max):\n\n");
        for (k, s) in &breakdown {
            let _ = writeln!(md, "- {k}: {} ms", stats::fmt_triple(s));
        }
    }
    let _ = writeln!(md, "\nMachine and run: `{info}`");
    std::fs::write(args.out.join("results.md"), md)?;
    let breakdown_json: serde_json::Map<String, serde_json::Value> = breakdown
        .iter()
        .map(|(k, s)| (k.clone(), json!(s.values())))
        .collect();
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json!({
            "machine": info,
            "rows": report::json_rows(&rows),
            "breakdown": breakdown_json,
        }))?,
    )?;
    eprintln!(
        "vss-bench: results in {}",
        args.out.join("results.md").display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vss-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vss-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

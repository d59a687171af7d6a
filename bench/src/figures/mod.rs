//! The six figures of BENCHMARKS.md, one module each (memory has two halves: idle here in
//! [`memory`], with 1,000 writers inside [`scaling`], which has them running).
//!
//! Every figure starts its own vssd with its own directories, measures ours and the baseline
//! interleaved in the same loop (so a burst of load from a neighbour hits both), and returns
//! table rows.

pub mod catalog;
pub mod freeze;
pub mod memory;
pub mod scaling;
pub mod snapshot;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::procs::output_of;

/// How many times each measurement is repeated, and how big the catalog is.
#[derive(Debug, Clone)]
pub struct Reps {
    /// Figures 1 and 2: snapshot sets of each kind.
    pub snapshot: usize,
    /// Figure 3: freeze/thaw cycles of each kind.
    pub freeze: usize,
    /// Figure 4: sets per writer count below 1,000.
    pub scaling: usize,
    /// Figure 4: sets with the largest writer count.
    pub scaling_max: usize,
    /// Figure 4: the writer counts.
    pub writer_counts: Vec<usize>,
    /// Figure 5: snapshots in the catalog before listing.
    pub catalog: usize,
    /// Figure 5: volumes they are spread over (at most 512 snapshots each in vssd).
    pub catalog_volumes: usize,
    /// Figure 5: list calls.
    pub list: usize,
    /// Figure 5: snapshots created and deleted per round.
    pub churn: usize,
    /// Figure 5: create/delete rounds.
    pub churn_rounds: usize,
    /// Figure 6: fresh vssd (and qemu-ga) starts for the idle size.
    pub idle: usize,
}

impl Reps {
    /// The full benchmark (BENCHMARKS.md's numbers).
    pub fn full() -> Reps {
        Reps {
            snapshot: 30,
            freeze: 20,
            scaling: 10,
            scaling_max: 5,
            writer_counts: vec![1, 10, 100, 1000],
            catalog: 10_000,
            catalog_volumes: 25,
            list: 10,
            churn: 1000,
            churn_rounds: 3,
            idle: 5,
        }
    }

    /// A smoke run in well under a minute: same code paths, fewer and smaller repetitions.
    pub fn quick() -> Reps {
        Reps {
            snapshot: 5,
            freeze: 5,
            scaling: 3,
            scaling_max: 2,
            writer_counts: vec![1, 10, 100, 1000],
            catalog: 500,
            catalog_volumes: 25,
            list: 3,
            churn: 100,
            churn_rounds: 2,
            idle: 2,
        }
    }
}

/// What every figure needs.
#[derive(Debug)]
pub struct Ctx {
    /// Where vssd, vss and vss-freeze-guard are (target/release).
    pub bin: PathBuf,
    /// The run's scratch directory (not on a filesystem any figure freezes).
    pub work: PathBuf,
    /// The btrfs mount point (top-level subvolume) of figures 1, 2, 4 and 5.
    pub btrfs: PathBuf,
    /// The subvolume of figures 1 and 2, with the snapper config on it.
    pub subject: PathBuf,
    /// The snapper config of `subject`.
    pub snapper_config: String,
    /// The three image-backed mount points of figure 3.
    pub images: Vec<PathBuf>,
    /// Repetitions.
    pub reps: Reps,
}

impl Ctx {
    /// Where child processes record their pids for bench/run.sh's trap.
    pub fn pids(&self) -> PathBuf {
        self.work.join("pids")
    }

    /// Creates the btrfs subvolume `name` at the top of the filesystem (if missing).
    pub fn subvolume(&self, name: &str) -> Result<PathBuf> {
        let path = self.btrfs.join(name);
        if !path.exists() {
            output_of(
                Command::new("btrfs")
                    .args(["subvolume", "create"])
                    .arg(&path),
            )
            .with_context(|| format!("creating subvolume {}", path.display()))?;
        }
        Ok(path)
    }
}

/// `sync`, so that each figure starts without dirty data from the previous one's setup.
pub fn sync() {
    let _ = Command::new("sync").status();
}

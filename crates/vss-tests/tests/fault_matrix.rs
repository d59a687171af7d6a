//! The fault-injection matrix: one backup per injection point, each in a world of its own (a
//! fresh loop-device volume, vssd, two SDK writers, a requester process), and after each the
//! same checks, whatever the fault:
//!
//! - the requester ends (served, or told an error, or killed by the test): nothing hangs;
//! - the volume is writable again within the commit window, and the witness writer (which
//!   appends to a file on the volume, pausing only while frozen) writes again;
//! - every writer the requester's final GatherWriterStatus lists is STABLE or FAILED_*;
//! - after vssd restarts (SIGTERM, or it was killed): no snapshot left on the volume (btrfs
//!   `.vss` subvolumes, image clones), no mount under the test's directories, no freeze journal
//!   entry, no freeze guard, and the catalog holds no row;
//! - a fresh backup then succeeds and every living writer is STABLE in it.
//!
//! Injection points: vssd SIGKILLed after each writer event and inside each provider phase
//! (`VSSD_FAULT`, see crates/vss-daemon/src/faults.rs), each provider phase failing, the victim
//! writer SIGKILLed at and hanging in each event, the requester SIGKILLed after each step of the
//! sequence and inside DoSnapshotSet, the volume full, the state directory (catalog) full.
//!
//! The matrix runs as one test so that it can print one summary table (injection point,
//! outcome, times); a failing row does not stop the others, and the test fails at the end naming
//! every failing row. `VSS_FAULT_FILTER=substring` runs only the matching rows. The last full
//! table is in docs/fault-injection.md.
//!
//! Timing: writer events have a 1.5 s deadline and the commit window is 2 s, so that hanging
//! rows are quick; every wait has a 5x margin over what it waits for.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use vss_test_support::LoopCleanup;

/// vssd's commit window in the matrix.
const COMMIT_WINDOW: Duration = Duration::from_millis(2000);
/// Every writer event's deadline in the matrix, in ms.
const EVENT_DEADLINE_MS: u64 = 1500;
/// The events a writer may receive in a backup, in order.
const EVENTS: [&str; 9] = [
    "Identify",
    "PrepareForBackup",
    "PrepareForSnapshot",
    "Freeze",
    "Thaw",
    "PostSnapshot",
    "BackupComplete",
    "BackupShutdown",
    "Abort",
];
/// The requester's steps (vss-test-requester --stop-after).
const STEPS: [&str; 10] = [
    "connect",
    "initialize",
    "backupState",
    "gather",
    "components",
    "start",
    "volume",
    "prepare",
    "snapshot",
    "complete",
];
/// A whole faulty run is bounded by a few event deadlines (at most one hangs per row) and the
/// commit window; 60 s is well over 5x that.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// The longest any state may take to settle: 5x the commit window.
const SETTLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vol {
    /// A btrfs filesystem (btrfs provider: no freeze).
    Btrfs,
    /// An ext4 image file on XFS (image provider: FIFREEZE around the clone).
    Image,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    /// The volume being snapshotted has no space left.
    Volume,
    /// vssd's state directory (the catalog) has no space left.
    StateDir,
}

/// One row of the matrix.
#[derive(Debug, Clone)]
struct Case {
    point: String,
    vol: Vol,
    /// `VSSD_FAULT` for the faulty run.
    vssd_fault: Option<String>,
    /// Extra flags of the victim writer (`--kill-at`, `--hang-at`, `--fail-at`).
    victim: Vec<String>,
    /// SIGKILL the requester after this step.
    requester_killed_after: Option<&'static str>,
    /// SIGKILL the requester once the victim writer logged this event.
    requester_killed_at_event: Option<&'static str>,
    full: Option<Full>,
    /// vssd must die at the fault point (proves the point is reached).
    vssd_dies: bool,
}

impl Case {
    fn new(point: String, vol: Vol) -> Case {
        Case {
            point,
            vol,
            vssd_fault: None,
            victim: Vec::new(),
            requester_killed_after: None,
            requester_killed_at_event: None,
            full: None,
            vssd_dies: false,
        }
    }
    fn vssd(mut self, fault: &str, dies: bool) -> Case {
        self.vssd_fault = Some(fault.to_owned());
        self.vssd_dies = dies;
        self
    }
    fn victim(mut self, flags: &[&str]) -> Case {
        self.victim.extend(flags.iter().map(|s| s.to_string()));
        self
    }
    /// Whether the victim writer carries a fault of its own (it then takes no part in the
    /// fresh backup: it would fail again, or hangs, or is dead).
    fn victim_faulty(&self) -> bool {
        !self.victim.is_empty()
    }
}

/// A flag that makes the victim abort the set after the commit (a failure in Thaw aborts it).
const ABORT_AFTER_COMMIT: [&str; 2] = ["--fail-at", "Thaw"];

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    // vssd killed after each writer event.
    for e in EVENTS {
        let mut c = Case::new(format!("vssd killed after {e}"), Vol::Btrfs)
            .vssd(&format!("kill:after-{e}"), true);
        if e == "Abort" {
            c = c.victim(&ABORT_AFTER_COMMIT);
        }
        v.push(c);
    }
    // vssd killed inside each provider phase (right after the provider's call returned), and
    // each provider phase failing.
    for phase in [
        "begin-prepare",
        "end-prepare",
        "pre-commit",
        "commit",
        "post-commit",
    ] {
        v.push(
            Case::new(format!("vssd killed in provider {phase}"), Vol::Btrfs)
                .vssd(&format!("kill:provider-{phase}"), true),
        );
        v.push(
            Case::new(format!("provider fails at {phase}"), Vol::Btrfs)
                .vssd(&format!("fail:provider-{phase}"), false),
        );
    }
    v.push(
        Case::new("vssd killed in provider abort".into(), Vol::Btrfs)
            .vssd("kill:provider-abort", true)
            .victim(&ABORT_AFTER_COMMIT),
    );
    v.push(
        Case::new("provider fails at abort".into(), Vol::Btrfs)
            .vssd("fail:provider-abort", false)
            .victim(&ABORT_AFTER_COMMIT),
    );
    v.push(
        Case::new("vssd killed in provider delete".into(), Vol::Btrfs)
            .vssd("kill:provider-delete", true),
    );
    v.push(
        Case::new("provider fails at delete".into(), Vol::Btrfs)
            .vssd("fail:provider-delete", false),
    );
    // The freezing provider: vssd killed with the filesystem frozen, around the commit.
    for (point, fault, dies) in [
        ("image: vssd killed while frozen", "kill:while-frozen", true),
        (
            "image: vssd killed in provider pre-commit",
            "kill:provider-pre-commit",
            true,
        ),
        (
            "image: vssd killed in provider commit",
            "kill:provider-commit",
            true,
        ),
        ("image: vssd killed after commit", "kill:after-commit", true),
        (
            "image: provider fails at commit",
            "fail:provider-commit",
            false,
        ),
        ("image: vssd killed after Thaw", "kill:after-Thaw", true),
    ] {
        v.push(Case::new(point.into(), Vol::Image).vssd(fault, dies));
    }
    // The victim writer SIGKILLed at, and hanging in, each event.
    for e in EVENTS {
        let trigger: &[&str] = if e == "Abort" {
            &ABORT_AFTER_COMMIT
        } else {
            &[]
        };
        v.push(
            Case::new(format!("writer killed at {e}"), Vol::Btrfs)
                .victim(&["--kill-at", e])
                .victim(trigger),
        );
        v.push(
            Case::new(format!("writer hangs in {e}"), Vol::Btrfs)
                .victim(&["--hang-at", e])
                .victim(trigger),
        );
    }
    v.push(
        Case::new("image: writer hangs in Freeze".into(), Vol::Image)
            .victim(&["--hang-at", "Freeze"]),
    );
    // The requester SIGKILLed after each step, and inside DoSnapshotSet (writers frozen).
    for s in STEPS {
        let mut c = Case::new(format!("requester killed after {s}"), Vol::Btrfs);
        c.requester_killed_after = Some(s);
        v.push(c);
    }
    let mut c = Case::new(
        "requester killed in DoSnapshotSet (writer in Freeze)".into(),
        Vol::Btrfs,
    )
    .victim(&["--hang-at", "Freeze"]);
    c.requester_killed_at_event = Some("Freeze");
    v.push(c);
    // Full filesystems.
    let mut c = Case::new("volume full".into(), Vol::Btrfs);
    c.full = Some(Full::Volume);
    v.push(c);
    let mut c = Case::new("state directory (catalog) full".into(), Vol::Btrfs);
    c.full = Some(Full::StateDir);
    v.push(c);
    v
}

/// A row's world. Fields drop in order: vssd and the writers stop before the filesystems they
/// use go away.
struct World {
    env: Env,
    /// A small ext4 holding the state directory (the full-catalog row).
    state_fs: Option<Mounted>,
    _clones: Option<LoopCleanup>,
    _outer: Option<Mounted>,
    /// The image file (image rows).
    backing: Option<PathBuf>,
}

impl World {
    fn new(case: &Case) -> World {
        let state_fs = (case.full == Some(Full::StateDir))
            .then(|| Mounted::ext4(8 << 20).expect("ext4 on a loop device"));
        let (env, clones, outer, backing) = match case.vol {
            Vol::Btrfs => (Env::new().expect("root"), None, None, None),
            Vol::Image => {
                let outer = Mounted::xfs(1 << 30).expect("xfs (reflink=1) on a loop device");
                let clones = LoopCleanup::new(outer.path(), ".vss-");
                let inner =
                    Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("an image");
                let backing = inner.backing_file().to_owned();
                (
                    Env::with_fs(inner),
                    Some(clones),
                    Some(outer),
                    Some(backing),
                )
            }
        };
        if let Some(fs) = &state_fs {
            // vssd's --state-dir is <dir>/state: make it the small filesystem.
            std::fs::remove_dir(env.state_dir()).unwrap();
            std::os::unix::fs::symlink(fs.path(), env.state_dir()).unwrap();
        }
        World {
            env,
            state_fs,
            _clones: clones,
            _outer: outer,
            backing,
        }
    }

    fn vssd_args() -> Vec<String> {
        let mut a = vec![
            "--commit-window-ms".to_owned(),
            COMMIT_WINDOW.as_millis().to_string(),
        ];
        for e in EVENTS {
            a.push("--timeout".into());
            a.push(format!("{e}={EVENT_DEADLINE_MS}"));
        }
        a
    }

    fn start_vssd(&mut self, fault: Option<&str>) {
        let args = World::vssd_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = fault.map(|f| ("VSSD_FAULT", f)).into_iter().collect();
        self.env.start_vssd_with_env(&args, &envs);
    }

    fn vssd_running(&mut self) -> bool {
        self.env.vssd.as_mut().is_some_and(|v| v.running())
    }

    /// What snapshots exist on disk for the volume.
    fn leftovers(&self) -> Vec<String> {
        match &self.backing {
            None => vss_snapshots(&self.env.volume()),
            Some(b) => clones_next_to(b)
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        }
    }

    /// Everything a restarted vssd must have cleaned: `None` when clean, else what is left.
    fn unclean(&self) -> Option<String> {
        let mut left = Vec::new();
        let snaps = self.leftovers();
        if !snaps.is_empty() {
            left.push(format!("snapshots {snaps:?}"));
        }
        let rows = catalog_rows(&self.env.state_dir()).unwrap_or_default();
        if !rows.is_empty() {
            left.push(format!("catalog rows {rows:?}"));
        }
        let journal: Vec<_> = std::fs::read_dir(self.env.run_dir().join("freeze"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if !journal.is_empty() {
            left.push(format!("freeze journal {journal:?}"));
        }
        let mounts = mounts_under(self.env.dir.path());
        if !mounts.is_empty() {
            left.push(format!("mounts {mounts:?}"));
        }
        let vol = self.env.volume_str();
        let guards = processes_with(&["vss-freeze-guard", &vol]);
        if !guards.is_empty() {
            left.push(format!("freeze guards {guards:?}"));
        }
        (!left.is_empty()).then(|| left.join("; "))
    }
}

/// How a requester run ended.
#[derive(Debug)]
enum End {
    /// It finished: its GatherWriterStatus line.
    Served(Value),
    /// It printed an error line.
    Failed(Value),
    /// The test killed it after this step or event.
    Killed(String),
    /// Its output ended without a final line.
    Vanished,
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Served(_) => "served".into(),
            End::Failed(v) => format!(
                "failed at {}: {}",
                v["at"].as_str().unwrap_or("?"),
                v["code"].as_str().unwrap_or("connection lost")
            ),
            End::Killed(at) => format!("requester killed after {at}"),
            End::Vanished => "requester output ended".into(),
        }
    }
}

/// Follows a requester to its end, killing it where the case says.
fn follow(w: &World, req: &mut RequesterChild, case: &Case, victim: &str) -> End {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(e) = case.requester_killed_at_event
            && w.env.event_names(victim).iter().any(|n| n == e)
        {
            req.kill();
            return End::Killed(format!("the victim got {e}"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the requester hung: {:?}", req.seen);
        let line = match req.next_line(left.min(Duration::from_millis(50))) {
            Ok(l) => l,
            Err(true) => return End::Vanished,
            Err(false) => continue,
        };
        let step = line["step"].as_str().unwrap_or_default().to_owned();
        if case.requester_killed_after == Some(step.as_str()) {
            req.kill();
            return End::Killed(step);
        }
        match step.as_str() {
            "status" => return End::Served(line),
            "error" => return End::Failed(line),
            _ => {}
        }
    }
}

/// The writers' states in a `status` or `error` line, as (name, state), sorted by name.
fn states(status: &Value) -> Vec<(String, String)> {
    status["writers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    (
                        w["name"].as_str().unwrap_or("?").to_owned(),
                        w["state"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .map(|mut v| {
            v.sort();
            v
        })
        .unwrap_or_default()
}

/// Writes zeros to `file` until the filesystem says it is full.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 4096];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

/// What one row measured.
struct Row {
    point: String,
    outcome: String,
    writers: String,
    writable: Duration,
    resumed: Option<Duration>,
    left_before_restart: usize,
    problem: Option<String>,
}

fn run_case(case: &Case) -> Row {
    let mut w = World::new(case);
    let vol = w.env.volume();
    let data = vol.join("data");
    let files = vol.join("files");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    w.start_vssd(case.vssd_fault.as_deref());
    if let Some(fs) = &w.state_fs {
        fill(&fs.path().join("fill"));
    }

    // The witness appends to a file on the volume (pausing only while frozen), unless the
    // volume is to be full; the victim carries the case's writer fault.
    let witness_file = data.join("witness.log");
    let continuous = case.full != Some(Full::Volume);
    let mut witness = vec![
        "--component".to_owned(),
        component("data", &data),
        "--level".into(),
        "front-end".into(),
    ];
    if continuous {
        witness.extend([
            "--write-continuously".into(),
            witness_file.display().to_string(),
        ]);
    }
    let witness: Vec<&str> = witness.iter().map(String::as_str).collect();
    w.env.start_writer("witness", &witness);
    if continuous {
        wait_for(
            SETTLE,
            || last_seq_in(&witness_file) >= 20,
            "the witness to write",
        );
    }
    let mut victim = vec![
        "--component".to_owned(),
        component("files", &files),
        "--level".into(),
        "back-end".into(),
    ];
    victim.extend(case.victim.iter().cloned());
    let victim: Vec<&str> = victim.iter().map(String::as_str).collect();
    w.env.start_writer("victim", &victim);
    if case.full == Some(Full::Volume) {
        fill(&vol.join("fill"));
    }

    // The faulty run.
    let mut extra = Vec::new();
    if let Some(s) = case.requester_killed_after {
        extra.extend(["--stop-after", s]);
    }
    let mut req = w.env.start_requester(&extra);
    let end = follow(&w, &mut req, case, "victim");
    let mut outcome = end.describe();
    // The writers' final statuses, where the session could still give them (served, or
    // failed with vssd alive): each stable or failed, never left in between.
    let last_status = match &end {
        End::Served(v) | End::Failed(v) => states(v),
        _ => Vec::new(),
    };
    for (name, state) in &last_status {
        assert!(
            state == "VSS_WS_STABLE" || state.starts_with("VSS_WS_FAILED_AT_"),
            "{name} ended in {state}, neither stable nor failed"
        );
    }
    let writers = if last_status.is_empty() {
        "-".to_owned()
    } else {
        last_status
            .iter()
            .map(|(n, s)| format!("{n} {}", s.trim_start_matches("VSS_WS_")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if case.vssd_dies {
        w.env.wait_vssd_exit(SETTLE);
        outcome = format!("vssd died; {outcome}");
    } else {
        assert!(w.vssd_running(), "vssd died at {:?}", case.vssd_fault);
    }

    // Writable within the commit window (5x margin), and the witness writes again.
    let probe_from = Instant::now();
    let writable = match writable_within(&vol.join("probe"), 5 * COMMIT_WINDOW) {
        Ok(d) => d,
        // A full volume refuses the write at once (ENOSPC, or EIO from btrfs): what matters is
        // that the write was answered, not left sleeping on a frozen filesystem.
        Err(e) if case.full == Some(Full::Volume) && !e.contains("did not finish") => {
            probe_from.elapsed()
        }
        Err(e) => panic!("{e}"),
    };
    if case.full == Some(Full::Volume) {
        std::fs::remove_file(vol.join("fill")).unwrap();
    }
    let resumed = continuous.then(|| {
        let from = Instant::now();
        let n = last_seq_in(&witness_file);
        wait_for(
            5 * COMMIT_WINDOW,
            || last_seq_in(&witness_file) > n + 5,
            "the witness to write again",
        );
        from.elapsed()
    });

    // With vssd alive, the requester's session ends once it is gone; what is left then (only
    // a provider that failed to delete should leave something).
    req.kill();
    let mut left_before_restart = 0;
    if w.vssd_running() {
        let _ = wait_for_quietly(5 * COMMIT_WINDOW, || w.leftovers().is_empty());
        left_before_restart = w.leftovers().len();
        w.env.vssd.as_mut().unwrap().terminate(SETTLE);
    }
    if case.victim_faulty() {
        // It would fail again, or it sleeps for an hour in the event, or it is dead already.
        w.env.writer("victim").kill();
    }
    if let Some(fs) = &w.state_fs {
        std::fs::remove_file(fs.path().join("fill")).unwrap();
    }

    // Restart: everything the fault left is cleaned, the catalog is empty.
    std::fs::remove_file(w.env.socket()).ok();
    w.start_vssd(None);
    let clean = wait_for_quietly(SETTLE, || w.unclean().is_none());
    assert!(
        clean,
        "after vssd restarted: {}",
        w.unclean().unwrap_or_default()
    );

    // A fresh backup works and every living writer is STABLE in it.
    let mut req = w.env.start_requester(&[]);
    let fresh = Case::new(String::new(), case.vol);
    match follow(&w, &mut req, &fresh, "victim") {
        End::Served(status) => {
            let st = states(&status);
            let expect_victim = !case.victim_faulty();
            let names: Vec<&str> = st.iter().map(|(n, _)| n.as_str()).collect();
            assert!(names.contains(&"witness"), "{status}");
            assert_eq!(names.contains(&"victim"), expect_victim, "{status}");
            for (n, s) in &st {
                assert_eq!(s, "VSS_WS_STABLE", "{n} in the fresh backup: {status}");
            }
        }
        other => panic!("the fresh backup after the restart: {other:?}"),
    }
    assert!(
        wait_for_quietly(SETTLE, || w.leftovers().is_empty()),
        "the fresh backup's snapshot was not deleted: {:?}",
        w.leftovers()
    );
    Row {
        point: case.point.clone(),
        outcome,
        writers,
        writable,
        resumed,
        left_before_restart,
        problem: None,
    }
}

/// Polls `f` every 10 ms for up to `t`; whether it became true.
fn wait_for_quietly(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= t {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[test]
fn every_fault_leaves_writable_volumes_stable_writers_and_a_clean_catalog() {
    if !require_root() {
        return;
    }
    let filter = std::env::var("VSS_FAULT_FILTER").unwrap_or_default();
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.point.contains(&filter))
        .collect();
    assert!(
        !cases.is_empty(),
        "no row matches VSS_FAULT_FILTER={filter}"
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    for case in &cases {
        let t = Instant::now();
        let row = catch_unwind(AssertUnwindSafe(|| run_case(case))).unwrap_or_else(|p| Row {
            point: case.point.clone(),
            outcome: "-".into(),
            writers: "-".into(),
            writable: Duration::ZERO,
            resumed: None,
            left_before_restart: 0,
            problem: Some(panic_text(&*p)),
        });
        eprintln!(
            "fault matrix: {} ({:.1} s): {}",
            row.point,
            t.elapsed().as_secs_f64(),
            row.problem.as_deref().unwrap_or("ok")
        );
        rows.push(row);
    }

    let mut table = String::from(
        "| injection point | outcome | writers (final status) | writable after (ms) | witness writes again after (ms) | snapshots left before restart | after restart |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.point,
            r.outcome,
            r.writers,
            ms(r.writable),
            r.resumed.map(ms).unwrap_or_else(|| "-".into()),
            r.left_before_restart,
            match &r.problem {
                None => "clean; fresh backup ok".to_owned(),
                Some(p) => format!("FAILED: {}", p.replace('\n', " ").replace('|', "/")),
            }
        ));
    }
    println!(
        "\nFault-injection matrix: {} rows in {:.0} s\n\n{table}",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.problem.is_some())
        .map(|r| r.point.as_str())
        .collect();
    assert!(failed.is_empty(), "failing rows: {failed:?}\n{table}");
}

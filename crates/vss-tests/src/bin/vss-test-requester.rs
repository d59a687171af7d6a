//! `vss-test-requester`: a scripted requester for the project's integration tests.
//!
//! It runs the component-mode backup sequence against vssd and prints one JSON line per
//! milestone on stdout (flushed at once), so that a test can follow it from another process and
//! kill it at a chosen point: after DoSnapshotSet (the session dies with a snapshot made), or
//! right after StartSnapshotSet (the session dies holding the host-wide snapshot-set lock).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use vss_client::blocking::{Async, BackupComponents};
use vss_client::{BackupType, ClientError, SnapshotContext};

#[derive(Debug, Parser)]
#[command(
    name = "vss-test-requester",
    version,
    about = "A scripted VSS requester for integration tests: runs a component-mode backup and reports each step as a JSON line.",
    long_about = "A scripted VSS requester for integration tests.\n\n\
        It connects to vssd and runs the component-mode backup sequence: InitializeForBackup, \
        SetContext (VSS_CTX_APP_ROLLBACK = 0x9 with --persistent, else left at VSS_CTX_BACKUP), \
        SetBackupState(selectComponents true, bootable false, VSS_BT_FULL), GatherWriterMetadata, \
        AddComponent for every component of every writer, StartSnapshotSet, AddToSnapshotSet(VOLUME), \
        PrepareForBackup, DoSnapshotSet, then (unless stopped earlier) BackupComplete and \
        GatherWriterStatus, and exits 0.\n\n\
        After each step it prints one JSON line on stdout and flushes it:\n  \
        {\"step\":\"connect\"}\n  {\"step\":\"initialize\"}\n  {\"step\":\"context\",\"context\":9}   (only with --persistent)\n  \
        {\"step\":\"backupState\"}\n  {\"step\":\"gather\",\"writers\":N,\"operation\":ID}\n  {\"step\":\"components\",\"added\":N}\n  \
        {\"step\":\"start\",\"snapshotSetId\":\"...\"}\n  {\"step\":\"volume\",\"snapshotId\":\"...\"}\n  \
        {\"step\":\"prepare\",\"operation\":ID}\n  {\"step\":\"snapshot\",\"snapshotSetId\":\"...\",\"snapshotId\":\"...\",\"snapshotPath\":\"...\",\"operation\":ID}\n  \
        {\"step\":\"complete\",\"operation\":ID}\n  {\"step\":\"status\",\"writers\":[{\"name\":...,\"state\":...,\"failure\":...}]}\n\
        ID is the id of the step's asynchronous operation (for QueryStatus from another \
        connection: it stays known to vssd until the session has been released). A failing step prints {\"step\":\"error\",\"at\":STEP,\"code\":NAME|null,\"message\":...,\"writers\":[...]} \
        (writers: GatherWriterStatus's answer, when the session still gives one) and the program exits with status 1.\n\n\
        --stop-after STEP prints STEP's line, then sleeps forever holding the session open (kill it to \
        end the session): `--stop-after snapshot` leaves a session that made its snapshot, `--stop-after \
        start` one that holds the host-wide snapshot-set lock."
)]
struct Args {
    /// vssd's requester socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,

    /// The volume to snapshot (absolute path of a mount point or btrfs subvolume).
    #[arg(long, value_name = "PATH")]
    volume: String,

    /// After this step, sleep forever instead of going on.
    #[arg(long, value_name = "STEP", value_enum)]
    stop_after: Option<Step>,

    /// Make a persistent snapshot (SetContext VSS_CTX_APP_ROLLBACK = 0x9): it survives the
    /// session.
    #[arg(long)]
    persistent: bool,
}

/// The milestones, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "camelCase")]
enum Step {
    /// Connected to vssd.
    Connect,
    /// InitializeForBackup done.
    Initialize,
    /// SetContext done (only with --persistent).
    Context,
    /// SetBackupState done.
    BackupState,
    /// GatherWriterMetadata finished.
    Gather,
    /// Every component of every writer added.
    Components,
    /// StartSnapshotSet done (the host-wide lock is held).
    Start,
    /// AddToSnapshotSet done.
    Volume,
    /// PrepareForBackup finished.
    Prepare,
    /// DoSnapshotSet finished.
    Snapshot,
    /// BackupComplete finished.
    Complete,
    /// GatherWriterStatus finished.
    Status,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Initialize => "initialize",
            Step::Context => "context",
            Step::BackupState => "backupState",
            Step::Gather => "gather",
            Step::Components => "components",
            Step::Start => "start",
            Step::Volume => "volume",
            Step::Prepare => "prepare",
            Step::Snapshot => "snapshot",
            Step::Complete => "complete",
            Step::Status => "status",
        }
    }
}

/// Prints one JSON line and flushes it.
fn emit(line: Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the test stopped reading) must not stop the requester.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

struct Runner {
    stop_after: Option<Step>,
}

impl Runner {
    /// Reports `step` (with `extra` fields) and, if asked to stop there, sleeps forever.
    fn reached(&self, step: Step, extra: Value) {
        let mut line = json!({ "step": step.name() });
        if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), extra) {
            obj.extend(more);
        }
        emit(line);
        if self.stop_after == Some(step) {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// Turns a failed step into the error line.
fn failed(step: Step) -> impl FnOnce(ClientError) -> (Step, ClientError) {
    move |e| (step, e)
}

/// Waits for an operation that was just started; returns its id.
fn run_op(started: Result<Async, ClientError>) -> Result<String, ClientError> {
    let op = started?;
    let id = op.operation().to_owned();
    op.join()?;
    Ok(id)
}

/// The writers' statuses as JSON (GatherWriterStatus, then GetWriterStatus).
fn writer_status(bc: &mut BackupComponents) -> Result<Vec<Value>, ClientError> {
    run_op(bc.gather_writer_status())?;
    Ok(bc
        .get_writer_status()?
        .iter()
        .map(|s| json!({ "name": s.writer_name, "state": s.state_name, "failure": s.failure_name }))
        .collect())
}

/// Runs the sequence on the session in `slot` (left there, so that a failure can still ask for
/// the writers' statuses).
fn run(args: &Args, slot: &mut Option<BackupComponents>) -> Result<(), (Step, ClientError)> {
    let r = Runner {
        stop_after: args.stop_after,
    };
    let bc = slot.insert(BackupComponents::connect(&args.socket).map_err(failed(Step::Connect))?);
    r.reached(Step::Connect, json!({}));

    bc.initialize_for_backup(None)
        .map_err(failed(Step::Initialize))?;
    r.reached(Step::Initialize, json!({}));

    if args.persistent {
        let ctx = SnapshotContext::APP_ROLLBACK;
        bc.set_snapshot_context(ctx)
            .map_err(failed(Step::Context))?;
        r.reached(Step::Context, json!({ "context": ctx.value() }));
    }

    bc.set_backup_state(true, false, BackupType::Full, false)
        .map_err(failed(Step::BackupState))?;
    r.reached(Step::BackupState, json!({}));

    let op = run_op(bc.gather_writer_metadata()).map_err(failed(Step::Gather))?;
    let writers = bc.get_writer_metadata().map_err(failed(Step::Gather))?;
    r.reached(
        Step::Gather,
        json!({ "operation": op, "writers": writers.len() }),
    );

    let mut added = 0;
    for w in &writers {
        for c in &w.components {
            bc.add_component(
                w.instance_id,
                w.writer_id,
                c.component_type,
                &c.logical_path,
                &c.name,
            )
            .map_err(failed(Step::Components))?;
            added += 1;
        }
    }
    r.reached(Step::Components, json!({ "added": added }));

    let set = bc.start_snapshot_set().map_err(failed(Step::Start))?;
    r.reached(Step::Start, json!({ "snapshotSetId": set.to_string() }));

    let snapshot = bc
        .add_to_snapshot_set(&args.volume, None)
        .map_err(failed(Step::Volume))?;
    r.reached(Step::Volume, json!({ "snapshotId": snapshot.to_string() }));

    let op = run_op(bc.prepare_for_backup()).map_err(failed(Step::Prepare))?;
    r.reached(Step::Prepare, json!({ "operation": op }));

    let op = run_op(bc.do_snapshot_set()).map_err(failed(Step::Snapshot))?;
    let props = bc
        .get_snapshot_properties(snapshot)
        .map_err(failed(Step::Snapshot))?;
    r.reached(
        Step::Snapshot,
        json!({
            "snapshotSetId": set.to_string(),
            "snapshotId": snapshot.to_string(),
            "snapshotPath": props.snapshot_path,
            "operation": op,
        }),
    );

    let op = run_op(bc.backup_complete()).map_err(failed(Step::Complete))?;
    r.reached(Step::Complete, json!({ "operation": op }));

    let status = writer_status(bc).map_err(failed(Step::Status))?;
    r.reached(Step::Status, json!({ "writers": status }));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut session = None;
    match run(&args, &mut session) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err((step, e)) => {
            let mut line = json!({
                "step": "error",
                "at": step.name(),
                "code": e.code().map(|c| c.name()),
                "message": e.to_string(),
            });
            // Where the session still answers, what became of the writers.
            if step != Step::Status
                && let Some(Ok(writers)) = session.as_mut().map(writer_status)
            {
                line["writers"] = Value::Array(writers);
            }
            emit(line);
            std::process::ExitCode::FAILURE
        }
    }
}

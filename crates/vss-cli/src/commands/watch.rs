//! `vss watch`: a live view of writers and snapshots.
//!
//! vssd has no event stream yet, so this is a poller: every [`INTERVAL`] it calls
//! `vss.Admin.ListWriters` (each writer instance's last state and failure, as vssd remembers
//! them) and `Query` with `VSS_CTX_ALL` on one session initialized once, and prints a line for
//! every difference from the previous poll: a writer appearing, changing state or failure, or
//! disappearing; a snapshot appearing, disappearing, or being exposed or unexposed. Each line has
//! a timestamp and the time since the previous change of the same writer (per writer instance)
//! or of the same original volume (per volume). What happens between two polls is not seen: a
//! writer that goes through several states within one interval shows only the last.
//!
//! The first poll is the baseline and prints nothing on stdout (a `watching vssd at ...` note on
//! stderr says it was taken). With `--json` every change is one
//! compact JSON object on its own line (JSON Lines), and nothing else is printed on stdout unless
//! the watch fails (then one last line with `error` and `exitCode`). SIGINT and SIGTERM end the
//! watch with exit code 0; `--count N` ends it after N changes.
//!
//! Between those lines come the phases vssd reported since the last poll (`vss.Admin.Events`):
//! every writer event with its outcome and duration, each volume's commit, the filesystems'
//! freeze window, each operation's end. They are not counted by `--count`.
//!
//! `vss watch` needs vssd: in embedded mode the engine would live only as long as the watch and
//! see no other requester's work, so it is refused with the unreachable exit code.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use vss_client::{BackupComponents, SnapshotProperties, WriterStatus};

use crate::GlobalArgs;
use crate::exit::{CliError, OK};
use crate::output;

/// How often vssd is asked.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// `vss watch [--count N]`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stop after N changes (exit code 0).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Runs the watch to its end: its own runtime, its own signal handling, its own output.
pub fn main(g: &GlobalArgs, args: &WatchArgs) -> ExitCode {
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(g, args)),
        Err(e) => Err(CliError::other(format!("cannot start the runtime: {e}"))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::note(format!("error: {e}"));
            if g.json {
                print_line(&json!({"error": e.to_json(), "exitCode": e.exit}).to_string());
            }
            ExitCode::from(e.exit)
        }
    }
}

async fn run(g: &GlobalArgs, args: &WatchArgs) -> Result<u8, CliError> {
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::other(format!("cannot handle signals: {e}")))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::other(format!("cannot handle signals: {e}")))?;
    let stop = async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    };
    tokio::pin!(stop);
    let mut bc = tokio::select! {
        r = connect(g) => r?,
        () = &mut stop => return Ok(OK),
    };
    let mut w = Watcher::new(g.json, args.count);
    let first = tokio::select! {
        r = poll(&mut bc, i64::MAX) => r?,
        () = &mut stop => return Ok(OK),
    };
    w.baseline(first);
    // On stderr also with --json: it tells that the baseline was taken.
    output::note(format!(
        "watching vssd at {} ({} writers, {} snapshots now); polling every {} ms, Ctrl-C ends",
        g.socket.display(),
        w.writers.len(),
        w.snapshots.len(),
        INTERVAL.as_millis()
    ));
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            () = &mut stop => return Ok(OK),
        }
        let now = tokio::select! {
            r = poll(&mut bc, w.last_event) => r?,
            () = &mut stop => return Ok(OK),
        };
        if w.update(now) {
            return Ok(OK);
        }
    }
}

/// A session on vssd itself (never the embedded engine), initialized for `Query`.
async fn connect(g: &GlobalArgs) -> Result<BackupComponents, CliError> {
    let mut bc = BackupComponents::connect(&g.socket).await.map_err(|e| {
        CliError::unreachable(format!(
            "vss watch needs a running vssd (it does not run the engine in-process): {e}"
        ))
    })?;
    bc.initialize_for_backup(None)
        .await
        .map_err(|e| CliError::from_client(e).context("InitializeForBackup"))?;
    Ok(bc)
}

/// What one poll saw.
struct Seen {
    writers: Vec<WriterStatus>,
    snapshots: Vec<SnapshotProperties>,
    events: Vec<vss_protocol::admin::Event>,
    last_event: i64,
}

async fn poll(bc: &mut BackupComponents, after: i64) -> Result<Seen, CliError> {
    let (events, last_event) = bc
        .events(Some(after))
        .await
        .map_err(|e| CliError::from_client(e).context("vss.Admin.Events"))?;
    let writers = bc
        .list_writers()
        .await
        .map_err(|e| CliError::from_client(e).context("vss.Admin.ListWriters"))?;
    let snapshots = bc
        .query(Some(-1), None, None)
        .await
        .map_err(|e| CliError::from_client(e).context("Query"))?;
    Ok(Seen {
        writers,
        snapshots,
        events,
        last_event,
    })
}

/// The state between polls.
struct Watcher {
    json: bool,
    /// Changes left before stopping.
    left: Option<u64>,
    /// By instance id.
    writers: BTreeMap<String, WriterStatus>,
    /// By snapshot id.
    snapshots: BTreeMap<String, SnapshotProperties>,
    /// When each writer instance last changed (as seen here).
    writer_changed: HashMap<String, Instant>,
    /// When each original volume's snapshots last changed (as seen here).
    volume_changed: HashMap<String, Instant>,
    /// The last vssd event already shown.
    last_event: i64,
}

impl Watcher {
    fn new(json: bool, count: Option<u64>) -> Self {
        Watcher {
            json,
            left: count,
            writers: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            writer_changed: HashMap::new(),
            volume_changed: HashMap::new(),
            last_event: 0,
        }
    }

    fn baseline(&mut self, seen: Seen) {
        // Events before the watch started are history, not news.
        self.last_event = seen.last_event;
        self.writers = seen
            .writers
            .into_iter()
            .map(|w| (w.instance_id.to_lowercase(), w))
            .collect();
        self.snapshots = seen
            .snapshots
            .into_iter()
            .map(|s| (s.snapshot_id.to_lowercase(), s))
            .collect();
    }

    /// Prints the differences from the last poll; true when `--count` is reached.
    fn update(&mut self, seen: Seen) -> bool {
        self.print_events(&seen.events);
        self.last_event = seen.last_event.max(self.last_event);
        let at = Instant::now();
        let stamp = timestamp();
        let mut changes = Vec::new();
        // Snapshots first: a set is committed after its writers thawed.
        let snapshots: BTreeMap<String, SnapshotProperties> = seen
            .snapshots
            .into_iter()
            .map(|s| (s.snapshot_id.to_lowercase(), s))
            .collect();
        for (id, s) in &snapshots {
            match self.snapshots.get(id) {
                None => changes.push(self.snapshot_change(at, "appeared", s)),
                Some(old) if old.exposed_name != s.exposed_name => {
                    let what = if s.exposed_name.is_some() {
                        "exposed"
                    } else {
                        "unexposed"
                    };
                    changes.push(self.snapshot_change(at, what, s));
                }
                Some(_) => {}
            }
        }
        for (id, s) in &self.snapshots.clone() {
            if !snapshots.contains_key(id) {
                changes.push(self.snapshot_change(at, "disappeared", s));
            }
        }
        self.snapshots = snapshots;

        let writers: BTreeMap<String, WriterStatus> = seen
            .writers
            .into_iter()
            .map(|w| (w.instance_id.to_lowercase(), w))
            .collect();
        for (id, w) in &writers {
            match self.writers.get(id).cloned() {
                None => changes.push(self.writer_change(at, "appeared", None, w)),
                Some(old)
                    if old.state != w.state
                        || old.failure != w.failure
                        || old.failure_message != w.failure_message =>
                {
                    changes.push(self.writer_change(at, "changed", Some(&old), w));
                }
                Some(_) => {}
            }
        }
        for (id, w) in &self.writers.clone() {
            if !writers.contains_key(id) {
                changes.push(self.writer_change(at, "disappeared", Some(w), w));
            }
        }
        self.writers = writers;

        for (mut doc, text) in changes {
            if self.json {
                doc["time"] = json!(stamp);
                print_line(&doc.to_string());
            } else {
                print_line(&format!("{stamp}  {text}"));
            }
            if let Some(left) = &mut self.left {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    return true;
                }
            }
        }
        false
    }

    /// The phases vssd reported: one line each, not counted by `--count`.
    fn print_events(&self, events: &[vss_protocol::admin::Event]) {
        for e in events {
            if self.json {
                let mut doc = serde_json::to_value(e).unwrap_or_default();
                doc["change"] = json!("event");
                print_line(&doc.to_string());
            } else {
                let outcome = if e.outcome == "ok" {
                    "ok".to_owned()
                } else {
                    format!("{}: {}", e.outcome, e.message.as_deref().unwrap_or(""))
                };
                print_line(&format!(
                    "{}  {} {}: {} {} ({:.3} ms)",
                    e.time,
                    e.kind,
                    e.subject,
                    e.phase,
                    outcome,
                    e.elapsed_us as f64 / 1000.0
                ));
            }
        }
    }

    /// One snapshot change: its JSON object and its text.
    fn snapshot_change(
        &mut self,
        at: Instant,
        change: &str,
        s: &SnapshotProperties,
    ) -> (Value, String) {
        let since = self
            .volume_changed
            .insert(s.original_volume.clone(), at)
            .map(|prev| at - prev);
        let doc = json!({
            "kind": "snapshot",
            "change": change,
            "snapshotId": s.snapshot_id,
            "snapshotSetId": s.snapshot_set_id,
            "volume": s.original_volume,
            "snapshotPath": s.snapshot_path,
            "context": s.context,
            "exposedName": s.exposed_name,
            "consistency": s.consistency.as_ref().map(|c| c.level.clone()),
            "sinceLastChangeMs": since.map(|d| d.as_millis() as u64),
        });
        let mut text = format!(
            "volume {}: snapshot {{{}}} {change} (set {{{}}}, at {}",
            s.original_volume, s.snapshot_id, s.snapshot_set_id, s.snapshot_path
        );
        if let Some(e) = &s.exposed_name {
            text.push_str(&format!(", exposed at {e}"));
        }
        text.push(')');
        text.push_str(&since_text(since, "volume"));
        (doc, text)
    }

    /// One writer change: its JSON object and its text. `old` is the previous status.
    fn writer_change(
        &mut self,
        at: Instant,
        change: &str,
        old: Option<&WriterStatus>,
        w: &WriterStatus,
    ) -> (Value, String) {
        let since = self
            .writer_changed
            .insert(w.instance_id.to_lowercase(), at)
            .map(|prev| at - prev);
        let mut doc = json!({
            "kind": "writer",
            "change": change,
            "writerName": w.writer_name,
            "writerId": w.writer_id,
            "instanceId": w.instance_id,
            "sinceLastChangeMs": since.map(|d| d.as_millis() as u64),
        });
        if change != "disappeared" {
            doc["state"] = json!(w.state);
            doc["stateName"] = json!(w.state_name);
            doc["stateLabel"] = json!(output::state_label(w.state));
            doc["failure"] = json!(w.failure);
            doc["failureName"] = json!(w.failure_name);
            doc["lastError"] = json!(output::last_error(&w.failure_name));
            doc["failureMessage"] = json!(w.failure_message);
        }
        if let Some(o) = old {
            doc["previousState"] = json!(o.state);
            doc["previousStateName"] = json!(o.state_name);
            doc["previousFailureName"] = json!(o.failure_name);
        }
        let now = format!(
            "{}, last error: {}",
            output::state_label(w.state),
            output::last_error(&w.failure_name)
        );
        let mut text = match (change, old) {
            ("disappeared", _) => format!("writer '{}' disappeared", w.writer_name),
            (_, Some(o)) => format!(
                "writer '{}': {}, last error: {} -> {now}",
                w.writer_name,
                output::state_label(o.state),
                output::last_error(&o.failure_name)
            ),
            (_, None) => format!("writer '{}' appeared: {now}", w.writer_name),
        };
        if let Some(m) = w.failure_message.as_deref().filter(|m| !m.is_empty()) {
            text.push_str(&format!(" ({m})"));
        }
        text.push_str(&format!(" [instance {{{}}}]", w.instance_id));
        text.push_str(&since_text(since, "writer"));
        (doc, text)
    }
}

/// `, +1.234 s since the writer's last change` (or the first change seen).
fn since_text(since: Option<Duration>, of: &str) -> String {
    match since {
        Some(d) => format!(", +{:.3} s since the {of}'s last change", d.as_secs_f64()),
        None => format!(", the {of}'s first change seen"),
    }
}

/// Now as RFC 3339 UTC with milliseconds.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = vss_daemon::timefmt::format_unix(now.as_secs());
    format!("{}.{:03}Z", s.trim_end_matches('Z'), now.subsec_millis())
}

/// One line on stdout, flushed (a closed stdout is ignored).
fn print_line(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
    let _ = o.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(state: u32, failure_name: &str) -> WriterStatus {
        WriterStatus {
            writer_id: "w".into(),
            instance_id: "I".into(),
            writer_name: "tw".into(),
            instance_name: String::new(),
            state,
            state_name: format!("S{state}"),
            failure: u32::from(failure_name != "S_OK"),
            failure_name: failure_name.into(),
            failure_message: None,
        }
    }

    #[test]
    fn changes_are_counted_and_unchanged_polls_print_nothing() {
        let mut w = Watcher::new(true, Some(2));
        w.baseline(Seen {
            writers: vec![writer(1, "S_OK")],
            snapshots: vec![],
            events: vec![],
            last_event: 0,
        });
        assert!(!w.update(Seen {
            writers: vec![writer(1, "S_OK")],
            snapshots: vec![],
            events: vec![],
            last_event: 0,
        }));
        assert!(!w.update(Seen {
            writers: vec![writer(5, "S_OK")],
            snapshots: vec![],
            events: vec![],
            last_event: 0,
        }));
        assert!(w.writer_changed.contains_key("i"));
        assert!(w.update(Seen {
            writers: vec![writer(5, "VSS_E_WRITERERROR_RETRYABLE")],
            snapshots: vec![],
            events: vec![],
            last_event: 0,
        }));
    }

    #[test]
    fn timestamps_have_milliseconds() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-11-24T21:11:11.123Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }
}

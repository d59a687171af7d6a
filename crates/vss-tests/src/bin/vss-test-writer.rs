//! `vss-test-writer`: a scriptable VSS writer for the project's integration tests.
//!
//! It serves `vss.Writer` on `<writers-dir>/<name>.sock` with the vss-writer SDK, logs every
//! event it receives to `--events-log` (one JSON line per event, fsynced before the hook does
//! anything else, so a hang or a crash is still logged), and misbehaves on request: hang, fail,
//! or exit at a given event. It prints `ready <socket path>` on stdout once it listens.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use vss_writer::{
    ApplicationLevel, ComponentType, ComponentUpdate, ErrorCode, Event, EventParams, FileSpec,
    RestoreMethod, RuntimeConfig, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer,
    WriterMetadata, WriterRestore, WriterRuntime,
};

/// The namespace of the writer ids derived from `--name` (uuid v5 of "vss-test-writer:NAME").
const WRITER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_7e0a_3b1d_4c8e_9a57_1e2d_0b6f_a001);

const EVENT_NAMES: &str = "Identify, PrepareForBackup, PrepareForSnapshot, Freeze, Thaw, PostSnapshot, Abort, \
                           BackupComplete, BackupShutdown, PreRestore, PostRestore";

#[derive(Debug, Parser)]
#[command(
    name = "vss-test-writer",
    version,
    about = "A scriptable VSS writer for integration tests: logs every event, and can hang, fail or crash on request.",
    long_about = "A scriptable VSS writer for integration tests.\n\n\
        It serves vss.Writer on <WRITERS_DIR>/<NAME>.sock (mode 0600; only root and --coordinator-uid are \
        served), prints 'ready <socket path>' on stdout once listening, and runs until SIGINT/SIGTERM.\n\n\
        Every event received is appended to --events-log as one JSON line, flushed and fsynced before the \
        writer does anything else for that event (so a hang or an exit is still logged):\n  \
        {\"event\":\"Freeze\",\"params\":{...the event's parameters...},\"pid\":1234}\n\
        Identify logs params {}, BackupShutdown logs {\"snapshotSetId\": ...}, and an Abort the SDK runtime \
        raises by itself when the coordinator vanished while frozen logs params null (after a freeze \
        timeout it logs Freeze's parameters). With --write-continuously, Freeze is followed by a \
        FreezeDone line and Thaw or Abort by a Resumed line (see that flag).\n\n\
        EVENT names: Identify, PrepareForBackup, PrepareForSnapshot, Freeze, Thaw, PostSnapshot, Abort, \
        BackupComplete, BackupShutdown, PreRestore, PostRestore.\n\
        Abort and BackupShutdown cannot fail (their hooks have no result): --fail-at ignores them. \
        Identify cannot return an error either: --fail-at Identify makes it panic, which the SDK reports \
        as VSS_E_WRITERERROR_NONRETRYABLE whatever the CODE."
)]
struct Args {
    /// The writers directory to put the socket in (created if missing).
    #[arg(long, value_name = "DIR")]
    writers_dir: PathBuf,

    /// The writer's name; the socket is NAME.sock.
    #[arg(long, value_name = "NAME", default_value = "test-writer")]
    name: String,

    /// Writer class id [default: a UUID v5 derived from NAME, the same on every run].
    #[arg(long, value_name = "UUID")]
    writer_id: Option<Uuid>,

    /// Writer instance id [default: random].
    #[arg(long, value_name = "UUID")]
    instance_id: Option<Uuid>,

    /// Application level (front-end|back-end|system|system-rm|unknown|auto, or a VSS_APP_* name).
    /// unknown and auto are invalid for a writer: use them to test that Identify is rejected.
    #[arg(long, value_name = "LEVEL", default_value = "front-end", value_parser = parse_level)]
    level: ApplicationLevel,

    /// The writerRestore it declares: never, if-replace-fails or always.
    #[arg(long, value_name = "WHEN", default_value = "always", value_parser = parse_writer_restore)]
    writer_restore: WriterRestore,

    /// The Freeze→Thaw window in ms; the SDK aborts the writer when Thaw does not come in time.
    #[arg(long, value_name = "N", default_value_t = 60_000)]
    freeze_timeout_ms: u64,

    /// A FILE_GROUP component, LOGICALPATH:NAME:selectable|fixed:PATH[,PATH...]; each PATH is a
    /// recursive file set with filespec '*'. LOGICALPATH may be empty. Repeatable.
    #[arg(long = "component", value_name = "SPEC", value_parser = parse_component)]
    components: Vec<WmdComponent>,

    /// Append one JSON line per event received to FILE (fsynced before replying).
    #[arg(long, value_name = "FILE")]
    events_log: Option<PathBuf>,

    /// At EVENT, sleep for an hour instead of answering. Repeatable.
    #[arg(long, value_name = "EVENT", value_parser = parse_event)]
    hang_at: Vec<Event>,

    /// Fail EVENT with CODE (a VSS_E_WRITERERROR_* name, or its suffix such as RETRYABLE)
    /// [default CODE: VSS_E_WRITERERROR_RETRYABLE]. Repeatable.
    #[arg(long, value_name = "EVENT[:CODE]", value_parser = parse_fail_at)]
    fail_at: Vec<(Event, ErrorCode)>,

    /// At EVENT, exit with status 9 without replying (simulates a crash). Repeatable.
    #[arg(long, value_name = "EVENT", value_parser = parse_event)]
    exit_at: Vec<Event>,

    /// At EVENT, kill itself with SIGKILL without replying (a crash: no exit handlers, no
    /// unwinding). Repeatable.
    #[arg(long, value_name = "EVENT", value_parser = parse_event)]
    kill_at: Vec<Event>,

    /// On Freeze, write "freeze" to PATH and fsync it before answering.
    #[arg(long, value_name = "PATH")]
    write_on_freeze: Option<PathBuf>,

    /// On Thaw, write "thaw" to PATH and fsync it before answering.
    #[arg(long, value_name = "PATH")]
    write_on_thaw: Option<PathBuf>,

    /// In PostSnapshot, return this backup stamp for every component, with backupMetadata
    /// "meta-<component name>" (the event's included components, or all declared ones when the
    /// event has none).
    #[arg(long, value_name = "STR")]
    backup_stamp: Option<String>,

    /// Also serve this uid (vssd's, when it does not run as root).
    #[arg(long, value_name = "UID")]
    coordinator_uid: Option<u32>,

    /// From start-up on, a background thread appends lines "seq N\n" (N = 1, 2, 3, ...) to FILE
    /// (O_APPEND, one write(2) per line, about 1,000 lines/s, no fsync), modelling an
    /// application that quiesces on Freeze. Freeze stops the thread at a line boundary and logs
    /// {"event":"FreezeDone","lastSeq":N,"unixNs":T,"pid":P} (fsynced) after the Freeze line,
    /// N being the last line written; Thaw or Abort resumes it and logs
    /// {"event":"Resumed","lastSeq":N,"unixNs":T,"pid":P}. T is the wall clock (CLOCK_REALTIME)
    /// in ns since the epoch. A failed write is reported on stderr and retried.
    #[arg(long, value_name = "FILE")]
    write_continuously: Option<PathBuf>,
}

fn parse_writer_restore(s: &str) -> Result<WriterRestore, String> {
    match s {
        "never" => Ok(WriterRestore::Never),
        "if-replace-fails" => Ok(WriterRestore::IfReplaceFails),
        "always" => Ok(WriterRestore::Always),
        other => WriterRestore::from_name(other).ok_or_else(|| {
            format!("'{other}' is not a writerRestore: use never, if-replace-fails or always")
        }),
    }
}

fn parse_level(s: &str) -> Result<ApplicationLevel, String> {
    let level = match s {
        "front-end" => ApplicationLevel::FrontEnd,
        "back-end" => ApplicationLevel::BackEnd,
        "system" => ApplicationLevel::System,
        "system-rm" => ApplicationLevel::SystemRm,
        "unknown" => ApplicationLevel::Unknown,
        "auto" => ApplicationLevel::Auto,
        other => ApplicationLevel::from_name(other).ok_or_else(|| {
            format!("'{other}' is not a level: use front-end, back-end, system, system-rm, unknown or auto")
        })?,
    };
    Ok(level)
}

fn parse_event(s: &str) -> Result<Event, String> {
    Event::ALL
        .into_iter()
        .find(|e| e.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("'{s}' is not an event: use one of {EVENT_NAMES}"))
}

fn parse_fail_at(s: &str) -> Result<(Event, ErrorCode), String> {
    let (event, code) = match s.split_once(':') {
        None => (s, None),
        Some((e, c)) => (e, Some(c)),
    };
    let event = parse_event(event)?;
    let code = match code {
        None => ErrorCode::WriterErrorRetryable,
        Some(c) => ErrorCode::from_name(c)
            .or_else(|| ErrorCode::from_name(&format!("VSS_E_WRITERERROR_{c}")))
            .ok_or_else(|| {
                format!("'{c}' is not an error code such as VSS_E_WRITERERROR_RETRYABLE")
            })?,
    };
    Ok((event, code))
}

fn parse_component(s: &str) -> Result<WmdComponent, String> {
    let parts: Vec<&str> = s.splitn(4, ':').collect();
    let [logical_path, name, kind, paths] = parts[..] else {
        return Err(format!(
            "'{s}' is not LOGICALPATH:NAME:selectable|fixed:PATH[,PATH...]"
        ));
    };
    if name.is_empty() {
        return Err(format!("component '{s}' has no name"));
    }
    let selectable = match kind {
        "selectable" => true,
        "fixed" => false,
        other => {
            return Err(format!(
                "'{other}' in '{s}' must be 'selectable' or 'fixed'"
            ));
        }
    };
    let files: Vec<FileSpec> = paths
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| FileSpec {
            path: p.to_owned(),
            filespec: "*".to_owned(),
            recursive: true,
            alternate_path: None,
            backup_type_mask: vss_model::wmd::DEFAULT_FILESPEC_BACKUP_TYPE,
        })
        .collect();
    if files.is_empty() {
        return Err(format!("component '{s}' names no path"));
    }
    Ok(WmdComponent {
        component_type: ComponentType::FileGroup,
        logical_path: logical_path.to_owned(),
        name: name.to_owned(),
        caption: name.to_owned(),
        selectable,
        selectable_for_restore: selectable,
        notify_on_backup_complete: true,
        restore_metadata: false,
        component_flags: 0,
        files,
        log_files: vec![],
        dependencies: vec![],
    })
}

/// The writer: fixed metadata plus the misbehaviour asked for.
struct TestWriter {
    metadata: WriterMetadata,
    events_log: Option<Mutex<File>>,
    hang_at: Vec<Event>,
    fail_at: Vec<(Event, ErrorCode)>,
    exit_at: Vec<Event>,
    kill_at: Vec<Event>,
    write_on_freeze: Option<PathBuf>,
    write_on_thaw: Option<PathBuf>,
    backup_stamp: Option<String>,
    continuous: Option<Arc<Continuous>>,
}

/// The state of `--write-continuously`, shared by the writing thread and the hooks. The thread
/// holds the mutex while it writes a line, so a hook that holds it sees a line boundary.
struct Continuous {
    state: Mutex<ContinuousState>,
    resumed: Condvar,
}

struct ContinuousState {
    file: File,
    paused: bool,
    /// The last N written completely.
    last: u64,
}

impl Continuous {
    /// Opens FILE for appending and starts the writing thread.
    fn start(path: &Path) -> std::io::Result<Arc<Continuous>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let c = Arc::new(Continuous {
            state: Mutex::new(ContinuousState {
                file,
                paused: false,
                last: 0,
            }),
            resumed: Condvar::new(),
        });
        let c2 = c.clone();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("write-continuously".into())
            .spawn(move || c2.run(&shown))?;
        Ok(c)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContinuousState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run(&self, shown: &str) {
        let mut failing = false;
        loop {
            {
                let mut st = self.lock();
                while st.paused {
                    st = self
                        .resumed
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                let n = st.last + 1;
                let line = format!("seq {n}\n");
                // One write(2) per line (O_APPEND): a line is in the file whole or not at all.
                match st.file.write(line.as_bytes()) {
                    Ok(k) if k == line.len() => {
                        st.last = n;
                        failing = false;
                    }
                    Ok(k) => {
                        eprintln!("vss-test-writer: short write ({k} bytes) to {shown}; stopping");
                        return;
                    }
                    Err(e) => {
                        if !failing {
                            eprintln!("vss-test-writer: cannot append to {shown}: {e}; retrying");
                        }
                        failing = true;
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(if failing { 100_000 } else { 1_000 }));
        }
    }

    /// Stops the thread at a line boundary; returns the last N written.
    fn pause(&self) -> u64 {
        let mut st = self.lock();
        st.paused = true;
        st.last
    }

    /// Lets the thread go on; returns the last N written and whether it was paused.
    fn resume(&self) -> (u64, bool) {
        let mut st = self.lock();
        let was = std::mem::replace(&mut st.paused, false);
        self.resumed.notify_all();
        (st.last, was)
    }
}

/// The wall clock in ns since the epoch (comparable with `date +%s%N`).
fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl TestWriter {
    /// Appends one JSON line to the events log and fsyncs it.
    fn log_line(&self, line: &Value) {
        let Some(log) = &self.events_log else {
            return;
        };
        let mut file = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One write(2) per line: under O_APPEND, writers sharing a log never interleave.
        let text = format!("{line}\n");
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            eprintln!("vss-test-writer: cannot write the events log: {e}");
        }
    }

    /// `--write-continuously`: stops writing and logs FreezeDone.
    fn quiesce(&self) {
        if let Some(c) = &self.continuous {
            let last = c.pause();
            self.log_line(&json!({
                "event": "FreezeDone",
                "lastSeq": last,
                "unixNs": unix_ns(),
                "pid": std::process::id(),
            }));
        }
    }

    /// `--write-continuously`: resumes writing (if it was stopped) and logs Resumed.
    fn resume(&self) {
        if let Some(c) = &self.continuous {
            let (last, was_paused) = c.resume();
            if was_paused {
                self.log_line(&json!({
                    "event": "Resumed",
                    "lastSeq": last,
                    "unixNs": unix_ns(),
                    "pid": std::process::id(),
                }));
            }
        }
    }

    /// Logs the event, then exits, hangs or fails as asked.
    fn on_event(&self, event: Event, params: Value) -> Result<(), VssError> {
        self.log_line(
            &json!({ "event": event.name(), "params": params, "pid": std::process::id() }),
        );
        if self.exit_at.contains(&event) {
            eprintln!(
                "vss-test-writer: exiting at {} as asked (--exit-at)",
                event.name()
            );
            std::process::exit(9);
        }
        if self.kill_at.contains(&event) {
            eprintln!(
                "vss-test-writer: killing itself at {} as asked (--kill-at)",
                event.name()
            );
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
        if self.hang_at.contains(&event) {
            eprintln!(
                "vss-test-writer: hanging at {} as asked (--hang-at)",
                event.name()
            );
            std::thread::sleep(Duration::from_secs(3600));
        }
        if let Some((_, code)) = self.fail_at.iter().find(|(e, _)| *e == event) {
            return Err(VssError::new(
                *code,
                format!(
                    "vss-test-writer fails {} with {} as asked (--fail-at)",
                    event.name(),
                    code.name()
                ),
            ));
        }
        Ok(())
    }

    fn event(&self, event: Event, ev: &EventParams) -> Result<(), VssError> {
        self.on_event(event, serde_json::to_value(ev).unwrap_or(Value::Null))
    }
}

/// Writes `content` to `path` and fsyncs it.
fn write_marker(path: &Path, content: &str) -> Result<(), VssError> {
    let written = File::create(path).and_then(|mut f| {
        f.write_all(content.as_bytes())?;
        f.sync_all()
    });
    written.map_err(|e| {
        VssError::new(
            ErrorCode::WriterErrorNonRetryable,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

impl Writer for TestWriter {
    fn metadata(&self) -> WriterMetadata {
        if let Err(e) = self.on_event(Event::Identify, json!({})) {
            panic!("{}", e.message);
        }
        self.metadata.clone()
    }

    fn freeze_timeout_ms(&self) -> u64 {
        self.metadata.freeze_timeout_ms
    }

    fn prepare_for_backup(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        self.event(Event::PrepareForBackup, ev).map(|()| vec![])
    }

    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        self.event(Event::PrepareForSnapshot, ev)
    }

    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        self.event(Event::Freeze, ev)?;
        self.quiesce();
        match &self.write_on_freeze {
            Some(p) => write_marker(p, "freeze"),
            None => Ok(()),
        }
    }

    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        let logged = self.event(Event::Thaw, ev);
        // A Thaw that fails as asked still ends the freeze: Abort may not follow.
        self.resume();
        logged?;
        match &self.write_on_thaw {
            Some(p) => write_marker(p, "thaw"),
            None => Ok(()),
        }
    }

    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        self.event(Event::PostSnapshot, ev)?;
        let Some(stamp) = &self.backup_stamp else {
            return Ok(vec![]);
        };
        let components: Vec<(String, String)> = match &ev.components {
            Some(cs) => cs
                .iter()
                .map(|c| (c.logical_path.clone(), c.name.clone()))
                .collect(),
            None => self
                .metadata
                .components
                .iter()
                .map(|c| (c.logical_path.clone(), c.name.clone()))
                .collect(),
        };
        Ok(components
            .into_iter()
            .map(|(logical_path, name)| ComponentUpdate {
                backup_metadata: Some(format!("meta-{name}")),
                backup_stamp: Some(stamp.clone()),
                logical_path,
                name,
                failure_message: None,
            })
            .collect())
    }

    fn abort(&self, ev: Option<&EventParams>) {
        let params = ev
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or(Value::Null);
        let _ = self.on_event(Event::Abort, params);
        self.resume();
    }

    fn backup_complete(&self, ev: &EventParams) -> Result<(), VssError> {
        self.event(Event::BackupComplete, ev)
    }

    fn backup_shutdown(&self, snapshot_set_id: Uuid) {
        let _ = self.on_event(
            Event::BackupShutdown,
            json!({ "snapshotSetId": snapshot_set_id }),
        );
    }

    fn pre_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        self.event(Event::PreRestore, ev)
    }

    fn post_restore(&self, ev: &EventParams) -> Result<(), VssError> {
        self.event(Event::PostRestore, ev)
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let events_log = match &args.events_log {
        None => None,
        Some(p) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                eprintln!(
                    "vss-test-writer: cannot open the events log {}: {e}",
                    p.display()
                );
                return std::process::ExitCode::from(2);
            }
        },
    };
    let metadata = WriterMetadata {
        writer_id: args.writer_id.unwrap_or_else(|| {
            Uuid::new_v5(
                &WRITER_ID_NAMESPACE,
                format!("vss-test-writer:{}", args.name).as_bytes(),
            )
        }),
        instance_id: args.instance_id.unwrap_or_else(Uuid::new_v4),
        writer_name: args.name.clone(),
        instance_name: args.name.clone(),
        usage_type: UsageType::UserData,
        source_type: SourceType::Other,
        application_level: args.level,
        freeze_timeout_ms: args.freeze_timeout_ms,
        restore_method: RestoreMethod::RestoreIfCanReplace,
        writer_restore: args.writer_restore,
        restore_service: None,
        backup_schema: 0,
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        exclude_files: vec![],
        components: args.components,
    };
    let continuous = match &args.write_continuously {
        None => None,
        Some(p) => match Continuous::start(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!(
                    "vss-test-writer: cannot write continuously to {}: {e}",
                    p.display()
                );
                return std::process::ExitCode::from(2);
            }
        },
    };
    let writer = Arc::new(TestWriter {
        metadata,
        events_log,
        hang_at: args.hang_at,
        fail_at: args.fail_at,
        exit_at: args.exit_at,
        kill_at: args.kill_at,
        write_on_freeze: args.write_on_freeze,
        write_on_thaw: args.write_on_thaw,
        backup_stamp: args.backup_stamp,
        continuous,
    });
    let config = RuntimeConfig {
        writers_dir: args.writers_dir,
        socket_name: format!("{}.sock", args.name),
        coordinator_uid: args.coordinator_uid,
    };
    let result = WriterRuntime::run_blocking_with(writer, config, |path| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", path.display());
        let _ = out.flush();
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vss-test-writer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_specs() {
        let c = parse_component(":data:selectable:/srv/a,/srv/b").unwrap();
        assert_eq!(
            (c.logical_path.as_str(), c.name.as_str(), c.selectable),
            ("", "data", true)
        );
        assert_eq!(
            c.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["/srv/a", "/srv/b"]
        );
        assert!(c.files.iter().all(|f| f.recursive && f.filespec == "*"));
        let c = parse_component("db\\logs:log:fixed:/var/x:y").unwrap();
        assert_eq!(
            (
                c.logical_path.as_str(),
                c.selectable,
                c.files[0].path.as_str()
            ),
            ("db\\logs", false, "/var/x:y")
        );
        assert!(parse_component("data:selectable:/srv").is_err());
        assert!(parse_component(":data:maybe:/srv").is_err());
        assert!(parse_component(":data:fixed:").is_err());
        assert!(parse_component("::fixed:/srv").is_err());
    }

    #[test]
    fn events_levels_and_codes() {
        assert_eq!(parse_event("Freeze").unwrap(), Event::Freeze);
        assert_eq!(parse_event("postsnapshot").unwrap(), Event::PostSnapshot);
        assert!(parse_event("Melt").is_err());
        assert_eq!(
            parse_fail_at("Thaw").unwrap(),
            (Event::Thaw, ErrorCode::WriterErrorRetryable)
        );
        assert_eq!(
            parse_fail_at("Freeze:VSS_E_WRITERERROR_TIMEOUT").unwrap(),
            (Event::Freeze, ErrorCode::WriterErrorTimeout)
        );
        assert_eq!(
            parse_fail_at("Freeze:NONRETRYABLE").unwrap().1,
            ErrorCode::WriterErrorNonRetryable
        );
        assert!(parse_fail_at("Freeze:NOPE").is_err());
        assert_eq!(
            parse_level("system-rm").unwrap(),
            ApplicationLevel::SystemRm
        );
        assert_eq!(
            parse_level("VSS_APP_BACK_END").unwrap(),
            ApplicationLevel::BackEnd
        );
        assert!(parse_level("middle").is_err());
    }

    #[test]
    fn writer_ids_derive_from_the_name() {
        let a = Uuid::new_v5(&WRITER_ID_NAMESPACE, b"vss-test-writer:a");
        assert_eq!(a, Uuid::new_v5(&WRITER_ID_NAMESPACE, b"vss-test-writer:a"));
        assert_ne!(a, Uuid::new_v5(&WRITER_ID_NAMESPACE, b"vss-test-writer:b"));
        Args::try_parse_from([
            "vss-test-writer",
            "--writers-dir",
            "/tmp/w",
            "--fail-at",
            "Freeze:TIMEOUT",
        ])
        .unwrap();
    }
}

//! Many no-op writers in this one process, each on its own socket, built on the public SDK
//! (`WriterRuntime::bind` + `run`) exactly like a real writer.
//!
//! A thousand writer *processes* would measure fork and the scheduler of a 2-core machine, not
//! vssd; one process with a thousand sockets keeps what vssd sees (a thousand sockets, a
//! thousand connections, a thousand replies) and costs little. The writers do nothing but
//! record when their PrepareForSnapshot, Freeze, Thaw and PostSnapshot hooks ran, on this
//! process's monotonic clock: Freeze to Thaw is the freeze window as a writer sees it
//! (figure 2), and the spread of each event over the writers shows where DoSnapshotSet spends
//! its time (figure 4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use vss_writer::{
    ApplicationLevel, ComponentType, ComponentUpdate, EventParams, FileSpec, RestoreMethod,
    RuntimeConfig, SourceType, UsageType, Uuid, VssError, WmdComponent, Writer, WriterMetadata,
    WriterRestore, WriterRuntime,
};

/// The writer class id of every bench writer (instances differ).
const BENCH_WRITER_ID: Uuid = Uuid::from_u128(0x6265_6e63_6800_4000_8000_0000_0000_0000);

/// The writer name; requesters select components of writers with this name.
pub const BENCH_WRITER_NAME: &str = "vss-bench-writer";

/// The events of a set whose hook times are recorded, in the order vssd sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// PrepareForSnapshot.
    Prepare,
    /// Freeze.
    Freeze,
    /// Thaw.
    Thaw,
    /// PostSnapshot.
    Post,
}

/// When each writer's hooks ran in one set: (phase, writer index) → time.
type SetTimes = HashMap<(Phase, usize), Instant>;

/// When each writer's hooks ran, per snapshot set (by set id).
#[derive(Debug, Default)]
pub struct Recorder {
    sets: Mutex<HashMap<String, SetTimes>>,
}

impl Recorder {
    fn note(&self, set: &str, writer: usize, phase: Phase) {
        let now = Instant::now();
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        sets.entry(normalize(set))
            .or_default()
            .insert((phase, writer), now);
    }

    /// For one set: the longest Freeze→Thaw of any writer, and how many writers saw both.
    pub fn widest_window(&self, set: &str) -> Option<(Duration, usize)> {
        let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        let times = sets.get(&normalize(set))?;
        let windows: Vec<Duration> = times
            .iter()
            .filter(|((p, _), _)| *p == Phase::Freeze)
            .filter_map(|((_, w), f)| Some(times.get(&(Phase::Thaw, *w))?.duration_since(*f)))
            .collect();
        Some((windows.iter().max().copied()?, windows.len()))
    }

    /// For one set: the first and the last writer's hook time of `phase`.
    pub fn span(&self, set: &str, phase: Phase) -> Option<(Instant, Instant)> {
        let sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        let times = sets.get(&normalize(set))?;
        let of_phase = times
            .iter()
            .filter(|((p, _), _)| *p == phase)
            .map(|(_, t)| *t);
        Some((of_phase.clone().min()?, of_phase.max()?))
    }
}

/// A set id in one spelling (lower case, hyphenated, no braces), whatever the sender used.
fn normalize(set: &str) -> String {
    Uuid::parse_str(set.trim_matches(['{', '}']))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| set.to_owned())
}

/// A writer that protects one directory and does nothing for any event.
struct NoopWriter {
    index: usize,
    metadata: WriterMetadata,
    recorder: Arc<Recorder>,
}

impl Writer for NoopWriter {
    fn metadata(&self) -> WriterMetadata {
        self.metadata.clone()
    }

    fn prepare_for_snapshot(&self, ev: &EventParams) -> Result<(), VssError> {
        self.recorder
            .note(&ev.snapshot_set_id, self.index, Phase::Prepare);
        Ok(())
    }

    fn freeze(&self, ev: &EventParams) -> Result<(), VssError> {
        self.recorder
            .note(&ev.snapshot_set_id, self.index, Phase::Freeze);
        Ok(())
    }

    fn thaw(&self, ev: &EventParams) -> Result<(), VssError> {
        self.recorder
            .note(&ev.snapshot_set_id, self.index, Phase::Thaw);
        Ok(())
    }

    fn post_snapshot(&self, ev: &EventParams) -> Result<Vec<ComponentUpdate>, VssError> {
        self.recorder
            .note(&ev.snapshot_set_id, self.index, Phase::Post);
        Ok(Vec::new())
    }

    fn abort(&self, _ev: Option<&EventParams>) {}
}

/// The metadata of writer `index`: one selectable FILE_GROUP component `data` covering
/// `data_dir` (recursively), so the default selection includes it for a set on its volume and
/// the writer takes part in every event.
fn metadata(index: usize, data_dir: &Path) -> WriterMetadata {
    let dir = data_dir.display().to_string();
    WriterMetadata {
        writer_id: BENCH_WRITER_ID,
        instance_id: Uuid::from_u128(BENCH_WRITER_ID.as_u128() + 1 + index as u128),
        writer_name: BENCH_WRITER_NAME.to_owned(),
        instance_name: format!("w{index:04}"),
        usage_type: UsageType::UserData,
        source_type: SourceType::Other,
        application_level: ApplicationLevel::FrontEnd,
        freeze_timeout_ms: vss_writer::DEFAULT_FREEZE_TIMEOUT_MS,
        restore_method: RestoreMethod::RestoreIfCanReplace,
        writer_restore: WriterRestore::Never,
        restore_service: None,
        backup_schema: 0,
        version: Some("1.0".to_owned()),
        exclude_files: vec![],
        components: vec![WmdComponent {
            component_type: ComponentType::FileGroup,
            logical_path: String::new(),
            name: "data".to_owned(),
            caption: format!("bench data in {dir}"),
            selectable: true,
            selectable_for_restore: true,
            notify_on_backup_complete: false,
            restore_metadata: false,
            component_flags: 0,
            files: vec![FileSpec {
                path: dir,
                filespec: "*".to_owned(),
                recursive: true,
                alternate_path: None,
                backup_type_mask: 0xF0F,
            }],
            log_files: vec![],
            dependencies: vec![],
        }],
    }
}

/// `n` writers serving in this process until [`WriterHost::stop`].
#[derive(Debug)]
pub struct WriterHost {
    /// Their Freeze/Thaw times.
    pub recorder: Arc<Recorder>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<std::io::Result<()>>,
    sockets: Vec<PathBuf>,
}

impl WriterHost {
    /// Binds `n` writer sockets (`bench-w0000.sock`, ...) in `writers_dir`; writer `i` protects
    /// `data_root/w<i>` (created).
    pub async fn start(n: usize, writers_dir: &Path, data_root: &Path) -> Result<WriterHost> {
        let recorder = Arc::new(Recorder::default());
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut sockets = Vec::with_capacity(n);
        for index in 0..n {
            let data_dir = data_root.join(format!("w{index:04}"));
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let config = RuntimeConfig {
                writers_dir: writers_dir.to_owned(),
                socket_name: format!("bench-w{index:04}.sock"),
                coordinator_uid: None,
            };
            let runtime = WriterRuntime::bind(config)
                .await
                .with_context(|| format!("cannot bind writer {index}"))?;
            sockets.push(runtime.socket_path().to_owned());
            let writer = Arc::new(NoopWriter {
                index,
                metadata: metadata(index, &data_dir),
                recorder: Arc::clone(&recorder),
            });
            let mut rx = rx.clone();
            tasks.spawn(async move {
                runtime
                    .run(writer, async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            });
        }
        Ok(WriterHost {
            recorder,
            shutdown,
            tasks,
            sockets,
        })
    }

    /// Stops every writer and waits until their sockets are gone.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

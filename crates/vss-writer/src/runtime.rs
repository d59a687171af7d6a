//! The runtime that serves a [`Writer`] as `vss.Writer` on a Unix socket.
//!
//! [`WriterRuntime::bind`] creates the writers directory (0755) if needed, removes a stale
//! socket, binds `writers_dir/socket_name` and makes it 0600. [`WriterRuntime::run`] accepts
//! connections until the shutdown future completes; each connection from root or the
//! coordinator uid gets its own task, which reads calls one at a time and runs each hook on a
//! blocking thread. The freeze bookkeeping ([`crate::freeze`]) is shared by all connections, so
//! an Abort may come on another connection than Freeze. On exit the runtime aborts the writer if
//! it is still frozen and removes its socket.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use vss_model::{ErrorCode, VssError};
use vss_protocol::transport::{self, CallError, Connection};
use vss_protocol::writer::{
    BackupShutdownParams, ComponentUpdate, ComponentsReply, ERROR_WRITER_FAILURE, Event,
    EventParams, IdentifyReply,
};
use vss_protocol::{Empty, RawCall};

use crate::Writer;
use crate::access::peer_allowed;
use crate::failure::{panic_failure, to_writer_failure};
use crate::freeze::{
    AbortDecision, ConnId, FreezeEnd, FreezeStart, FreezeTable, ThawDecision, set_key,
};
use crate::service;

/// Where writers put their sockets by default.
pub const DEFAULT_WRITERS_DIR: &str = "/run/vss/writers";

/// How long the runtime waits for the abort hook when it aborts a frozen writer at shutdown.
const SHUTDOWN_ABORT_WAIT: Duration = Duration::from_secs(10);

/// Where and for whom a writer serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The writers directory (default `/run/vss/writers`); created with mode 0755 if missing.
    pub writers_dir: PathBuf,
    /// The socket's file name in `writers_dir`, e.g. `example.sock`.
    pub socket_name: String,
    /// The uid vssd runs as, if not root. Connections from any other uid but 0 are refused.
    pub coordinator_uid: Option<u32>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            writers_dir: PathBuf::from(DEFAULT_WRITERS_DIR),
            socket_name: String::new(),
            coordinator_uid: None,
        }
    }
}

impl RuntimeConfig {
    /// The default configuration with this socket name.
    pub fn new(socket_name: impl Into<String>) -> Self {
        RuntimeConfig {
            socket_name: socket_name.into(),
            ..Default::default()
        }
    }

    /// `writers_dir/socket_name`.
    pub fn socket_path(&self) -> PathBuf {
        self.writers_dir.join(&self.socket_name)
    }
}

/// A bound writer socket, ready to serve.
///
/// Dropping it (or the end of [`WriterRuntime::run`]) removes the socket file, unless another
/// process has replaced it meanwhile.
#[derive(Debug)]
pub struct WriterRuntime {
    listener: transport::Listener,
    socket: SocketFile,
    coordinator_uid: Option<u32>,
}

impl WriterRuntime {
    /// Binds the socket of `config` (see the module doc). Must be called within a tokio
    /// runtime.
    pub async fn bind(config: RuntimeConfig) -> io::Result<WriterRuntime> {
        let name = config.socket_name.as_str();
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket name '{name}' must be a plain file name like 'example.sock'"),
            ));
        }
        let dir = &config.writers_dir;
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot create the writers directory {}: {e}", dir.display()),
                    )
                })?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        let path = config.socket_path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                debug!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(&path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; not removing it",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = transport::Listener::bind(&path, 0o600).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display()))
        })?;
        let socket = SocketFile::new(path)?;
        Ok(WriterRuntime {
            listener,
            socket,
            coordinator_uid: config.coordinator_uid,
        })
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket.path
    }

    /// Serves `writer` until `shutdown` completes, then aborts the writer if it is still frozen
    /// and removes the socket.
    pub async fn run<W: Writer>(
        self,
        writer: Arc<W>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let shared = Arc::new(Shared {
            writer,
            table: Mutex::new(FreezeTable::new()),
            freeze_timeout_ms: AtomicU64::new(0),
            timers: Mutex::new(std::collections::HashMap::new()),
        });
        let coordinator_uid = self.coordinator_uid;
        let mut tasks = JoinSet::new();
        let mut next_conn: ConnId = 0;
        tokio::pin!(shutdown);
        info!(socket = %self.socket.path.display(), "writer listening");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => {
                        next_conn += 1;
                        tasks.spawn(serve_connection(Arc::clone(&shared), conn, next_conn, coordinator_uid));
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        info!(socket = %self.socket.path.display(), "writer shutting down");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let frozen = shared.table().shutdown();
        for set in frozen {
            warn!(set = %set, "shutting down while frozen: aborting the writer");
            if tokio::time::timeout(SHUTDOWN_ABORT_WAIT, shared.call_abort(None))
                .await
                .is_err()
            {
                error!(set = %set, "the abort hook did not return within {SHUTDOWN_ABORT_WAIT:?}");
            }
        }
        drop(self);
        Ok(())
    }

    /// [`WriterRuntime::bind`] then [`WriterRuntime::run`].
    pub async fn serve<W: Writer>(
        writer: Arc<W>,
        config: RuntimeConfig,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        Self::bind(config).await?.run(writer, shutdown).await
    }

    /// Serves `writer` on a new multi-threaded tokio runtime until SIGINT or SIGTERM; the
    /// socket is removed on exit.
    pub fn run_blocking<W: Writer>(writer: Arc<W>, config: RuntimeConfig) -> io::Result<()> {
        Self::run_blocking_with(writer, config, |_| {})
    }

    /// [`WriterRuntime::run_blocking`], calling `on_ready` with the socket path once it
    /// listens (e.g. to print it, or to notify a supervisor).
    pub fn run_blocking_with<W: Writer>(
        writer: Arc<W>,
        config: RuntimeConfig,
        on_ready: impl FnOnce(&Path),
    ) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let result = rt.block_on(async move {
            let runtime = WriterRuntime::bind(config).await?;
            on_ready(runtime.socket_path());
            runtime.run(writer, shutdown_signal()).await
        });
        // A hook may still be blocked (it cannot be cancelled); do not wait for it forever.
        rt.shutdown_timeout(Duration::from_secs(2));
        result
    }
}

/// Completes on SIGINT or SIGTERM (pends forever if the signals cannot be watched).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        },
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "cannot watch SIGTERM/SIGINT");
            std::future::pending::<()>().await
        }
    }
}

/// The socket file; removed on drop if it is still the one this runtime bound.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    fn new(path: PathBuf) -> io::Result<Self> {
        let m = std::fs::symlink_metadata(&path)?;
        Ok(SocketFile {
            path,
            id: (m.dev(), m.ino()),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.id
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            warn!(socket = %self.path.display(), error = %e, "cannot remove the socket");
        }
    }
}

/// What all connections of one runtime share.
struct Shared<W> {
    writer: Arc<W>,
    table: Mutex<FreezeTable>,
    /// The freeze timeout of the metadata last served in Identify; 0 before the first one.
    freeze_timeout_ms: AtomicU64,
    /// The running freeze timers by set, cancelled by Thaw and Abort: a timer left to sleep
    /// out its whole timeout would hold its task and the Freeze parameters until then, growing
    /// a busy writer's memory with every backup.
    timers: Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>,
}

/// Runs a hook on a blocking thread; maps its error to a writer failure code and a panic to
/// `VSS_E_WRITERERROR_NONRETRYABLE`.
async fn run_hook<T: Send + 'static>(
    hook: &'static str,
    f: impl FnOnce() -> Result<T, VssError> + Send + 'static,
) -> Result<T, VssError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(to_writer_failure),
        Err(e) if e.is_panic() => {
            let err = panic_failure(hook, &*e.into_panic());
            error!(hook, error = %err, "hook panicked");
            Err(err)
        }
        Err(e) => Err(VssError::new(
            ErrorCode::WriterErrorNonRetryable,
            format!("the writer's {hook} hook was cancelled: {e}"),
        )),
    }
}

fn empty() -> Value {
    json!(Empty {})
}

fn components_reply(updates: Vec<ComponentUpdate>) -> Value {
    let reply = ComponentsReply {
        components: (!updates.is_empty()).then_some(updates),
    };
    serde_json::to_value(reply).unwrap_or_else(|_| empty())
}

impl<W: Writer> Shared<W> {
    fn table(&self) -> MutexGuard<'_, FreezeTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls the abort hook.
    async fn call_abort(&self, ev: Option<EventParams>) -> Result<(), VssError> {
        let w = Arc::clone(&self.writer);
        run_hook("abort", move || {
            w.abort(ev.as_ref());
            Ok(())
        })
        .await
    }

    /// Runs a hook that takes the event's parameters.
    async fn event_hook<T: Send + 'static>(
        &self,
        hook: &'static str,
        ev: EventParams,
        f: fn(&W, &EventParams) -> Result<T, VssError>,
    ) -> Result<T, VssError> {
        let w = Arc::clone(&self.writer);
        run_hook(hook, move || f(&w, &ev)).await
    }

    async fn freeze(self: &Arc<Self>, conn: ConnId, ev: EventParams) -> Result<Value, VssError> {
        let key = set_key(&ev.snapshot_set_id);
        if let FreezeStart::Refuse(e) = self.table().begin_freeze(&key, conn) {
            return Err(e);
        }
        let w = Arc::clone(&self.writer);
        let params = ev.clone();
        let identified_ms = self.freeze_timeout_ms.load(Ordering::Relaxed);
        let result = run_hook("freeze", move || {
            w.freeze(&params)?;
            Ok(if identified_ms > 0 {
                identified_ms
            } else {
                w.freeze_timeout_ms()
            })
        })
        .await;
        let end = self.table().end_freeze(&key, conn, result.is_ok());
        match (end, result) {
            (FreezeEnd::StartTimer { generation }, Ok(ms)) => {
                debug!(set = %key, timeout_ms = ms, "frozen; freeze timer started");
                self.start_freeze_timer(key, generation, ms, ev);
                Ok(empty())
            }
            (FreezeEnd::UndoLateFreeze, _) => {
                warn!(set = %key, "the set was aborted while the freeze hook ran; aborting again to undo the freeze");
                let _ = self.call_abort(Some(ev)).await;
                Err(VssError::new(
                    ErrorCode::WriterErrorNonRetryable,
                    format!("snapshot set {key} was aborted while the writer was freezing"),
                ))
            }
            (_, Ok(_)) => Ok(empty()),
            (_, Err(e)) => Err(e),
        }
    }

    fn start_freeze_timer(
        self: &Arc<Self>,
        key: String,
        generation: u64,
        ms: u64,
        ev: EventParams,
    ) {
        let shared = Arc::clone(self);
        let timer_key = key.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            shared.timers().remove(&key);
            if shared.table().timer_fired(&key, generation) {
                warn!(set = %key, timeout_ms = ms, "Thaw did not come within the freeze timeout; aborting the writer");
                if let Err(e) = shared.call_abort(Some(ev)).await {
                    error!(set = %key, error = %e, "abort after the freeze timeout failed");
                }
            }
        });
        if let Some(old) = self.timers().insert(timer_key, handle.abort_handle()) {
            old.abort();
        }
    }

    fn timers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, tokio::task::AbortHandle>>
    {
        self.timers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops set `key`'s freeze timer, if one runs: Thaw or Abort came.
    fn cancel_freeze_timer(&self, key: &str) {
        if let Some(t) = self.timers().remove(key) {
            t.abort();
        }
    }

    async fn thaw(&self, ev: EventParams) -> Result<Value, VssError> {
        let key = set_key(&ev.snapshot_set_id);
        let decision = self.table().thaw(&key);
        self.cancel_freeze_timer(&key);
        match decision {
            ThawDecision::Refuse(e) => Err(e),
            ThawDecision::Proceed => self.event_hook("thaw", ev, W::thaw).await.map(|()| empty()),
        }
    }

    async fn abort_event(&self, ev: EventParams) -> Result<Value, VssError> {
        let key = set_key(&ev.snapshot_set_id);
        let decision = self.table().abort_event(&key);
        self.cancel_freeze_timer(&key);
        match decision {
            AbortDecision::AlreadyAborted => {
                debug!(set = %key, "Abort for a set already aborted");
                Ok(empty())
            }
            AbortDecision::CallHook => self.call_abort(Some(ev)).await.map(|()| empty()),
        }
    }

    async fn connection_closed(&self, conn: ConnId) {
        let sets = self.table().connection_closed(conn);
        for set in sets {
            warn!(set = %set, "the connection that delivered Freeze closed before Thaw: aborting the writer");
            if let Err(e) = self.call_abort(None).await {
                error!(set = %set, error = %e, "abort after the coordinator vanished failed");
            }
        }
    }

    /// Handles one event whose parameters are an [`EventParams`].
    async fn event(
        self: &Arc<Self>,
        conn: ConnId,
        event: Event,
        ev: EventParams,
    ) -> Result<Value, VssError> {
        match event {
            Event::PrepareForBackup => self
                .event_hook("prepare_for_backup", ev, W::prepare_for_backup)
                .await
                .map(components_reply),
            Event::PrepareForSnapshot => self
                .event_hook("prepare_for_snapshot", ev, W::prepare_for_snapshot)
                .await
                .map(|()| empty()),
            Event::Freeze => self.freeze(conn, ev).await,
            Event::Thaw => self.thaw(ev).await,
            Event::PostSnapshot => self
                .event_hook("post_snapshot", ev, W::post_snapshot)
                .await
                .map(components_reply),
            Event::Abort => self.abort_event(ev).await,
            Event::BackupComplete => self
                .event_hook("backup_complete", ev, W::backup_complete)
                .await
                .map(|()| empty()),
            Event::PreRestore => self
                .event_hook("pre_restore", ev, W::pre_restore)
                .await
                .map(|()| empty()),
            Event::PostRestore => self
                .event_hook("post_restore", ev, W::post_restore)
                .await
                .map(|()| empty()),
            Event::Identify | Event::BackupShutdown => Err(VssError::new(
                ErrorCode::WriterErrorNonRetryable,
                "internal error: misrouted event",
            )),
        }
    }
}

async fn serve_connection<W: Writer>(
    shared: Arc<Shared<W>>,
    mut conn: Connection,
    id: ConnId,
    coordinator_uid: Option<u32>,
) {
    let (uid, pid) = match conn.peer_credentials().await {
        Ok(c) => (
            c.unix_user_id().as_raw(),
            rustix::process::Pid::as_raw(Some(c.process_id())),
        ),
        Err(e) => {
            warn!(error = %e, "cannot read the peer's credentials; closing the connection");
            return;
        }
    };
    if !peer_allowed(uid, coordinator_uid) {
        warn!(
            uid,
            pid, "refused a connection from a user that is neither root nor the coordinator"
        );
        return;
    }
    debug!(conn = id, uid, pid, "connection accepted");
    loop {
        let call = match transport::receive_call(&mut conn).await {
            Ok(Some(call)) => call,
            Ok(None) => break,
            Err(e) => {
                warn!(conn = id, error = %e, "unreadable message; closing the connection");
                break;
            }
        };
        if let Err(e) = handle_call(&shared, &mut conn, id, call).await {
            debug!(conn = id, error = %e, "cannot reply; closing the connection");
            break;
        }
    }
    debug!(conn = id, "connection closed");
    shared.connection_closed(id).await;
}

async fn handle_call<W: Writer>(
    shared: &Arc<Shared<W>>,
    conn: &mut Connection,
    id: ConnId,
    call: RawCall,
) -> Result<(), CallError> {
    let method = call.method.as_str();
    match method {
        "org.varlink.service.GetInfo" => return transport::reply(conn, &service::info()).await,
        "org.varlink.service.GetInterfaceDescription" => {
            let interface = call
                .parameters
                .as_ref()
                .and_then(|p| p.get("interface"))
                .and_then(Value::as_str);
            return match interface {
                None => service::reply_invalid_parameter(conn, "interface").await,
                Some(i) => match service::interface_description(i) {
                    Some(d) => transport::reply(conn, &json!({ "description": d })).await,
                    None => {
                        service::reply_standard_error(
                            conn,
                            "InterfaceNotFound",
                            json!({ "interface": i }),
                        )
                        .await
                    }
                },
            };
        }
        _ => {}
    }
    let Some(event) = Event::from_method(method) else {
        let interface = method.rsplit_once('.').map(|(i, _)| i).unwrap_or("");
        debug!(conn = id, method, "unknown method");
        return if service::interface_description(interface).is_some() {
            transport::reply_method_not_found(conn, method).await
        } else {
            service::reply_standard_error(
                conn,
                "InterfaceNotFound",
                json!({ "interface": interface }),
            )
            .await
        };
    };
    let result = match event {
        Event::Identify => {
            info!(conn = id, "Identify");
            let w = Arc::clone(&shared.writer);
            run_hook("metadata", move || Ok(w.metadata())).await.map(|metadata| {
                let ms = match metadata.freeze_timeout_ms {
                    0 => vss_model::DEFAULT_FREEZE_TIMEOUT_MS,
                    ms => ms,
                };
                shared.freeze_timeout_ms.store(ms, Ordering::Relaxed);
                if let Err(e) = metadata.validate() {
                    warn!(error = %e, "the writer's metadata is invalid; the coordinator will reject it");
                }
                json!(IdentifyReply { metadata })
            })
        }
        Event::BackupShutdown => {
            let set = match call.params::<BackupShutdownParams>() {
                Ok(p) => vss_protocol::parse_id("snapshotSetId", &p.snapshot_set_id),
                Err(e) => Err(e),
            };
            let set = match set {
                Ok(set) => set,
                Err(e) => {
                    warn!(conn = id, error = %e, "BackupShutdown with bad parameters");
                    return service::reply_invalid_parameter(conn, "snapshotSetId").await;
                }
            };
            info!(conn = id, set = %set, "BackupShutdown");
            shared.table().forget(&set.hyphenated().to_string());
            let w = Arc::clone(&shared.writer);
            run_hook("backup_shutdown", move || {
                w.backup_shutdown(set);
                Ok(())
            })
            .await
            .map(|()| empty())
        }
        _ => {
            let ev = match call.params::<EventParams>() {
                Ok(ev) => ev,
                Err(e) => {
                    let parameter = service::bad_event_parameter(call.parameters.as_ref());
                    warn!(conn = id, event = event.name(), parameter, error = %e, "event with bad parameters");
                    return service::reply_invalid_parameter(conn, &parameter).await;
                }
            };
            info!(conn = id, event = event.name(), set = %ev.snapshot_set_id, "event");
            shared.event(id, event, ev).await
        }
    };
    match result {
        Ok(v) => transport::reply(conn, &v).await,
        Err(e) => {
            warn!(conn = id, event = event.name(), error = %e, "event failed");
            transport::reply_error(conn, ERROR_WRITER_FAILURE, &e).await
        }
    }
}

/// Serves several instances of one writer program (one socket `<name>.sock` each) on one
/// multi-thread runtime until SIGINT/SIGTERM; the built-in writers run every instance of their
/// `/etc/vss/writers.toml` table this way. Returns the first instance's failure.
pub fn run_instances_blocking<W: Writer>(
    instances: Vec<(String, Arc<W>)>,
    writers_dir: PathBuf,
    coordinator_uid: Option<u32>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, writer) in instances {
            let config = RuntimeConfig {
                writers_dir: writers_dir.clone(),
                socket_name: format!("{name}.sock"),
                coordinator_uid,
            };
            let runtime = WriterRuntime::bind(config)
                .await
                .map_err(|e| format!("instance {name}: {e}"))?;
            eprintln!("[{name}] listening on {}", runtime.socket_path().display());
            tasks.spawn(async move {
                runtime
                    .run(writer, shutdown_signal())
                    .await
                    .map_err(|e| format!("instance {name}: {e}"))
            });
        }
        let mut first_error = None;
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

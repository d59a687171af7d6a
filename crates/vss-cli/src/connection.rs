//! Reaching the engine: vssd on its socket, or the same engine run in this process (embedded
//! mode) when nothing answers there.
//!
//! [`Engine::open`] connects to `--socket` once. If the connect fails because nobody serves the
//! socket (`NotFound`: no socket file; `ConnectionRefused`: a stale one), `vss` starts
//! `vss_daemon::run` as a task of its own runtime, serving a private socket in a fresh 0700
//! temporary directory, with the writers directory, state directory, run directory and host-wide
//! lock file of the global options, and prints a note on stderr. Every later connection of the
//! command (sessions, `Async` handles, administration calls) goes to that socket.
//! [`Engine::close`] then shuts the embedded server down the way vssd stops on SIGTERM: every
//! session ends properly (Abort where needed, BackupShutdown, auto-release snapshots deleted,
//! the set lock released) before `vss` exits.
//!
//! Overlap rules: the host-wide snapshot-set lock (`--lock-file`) is the one vssd takes at
//! StartSnapshotSet, so an embedded run and vssd never create sets at the same time. Two
//! embedded runs must not share one catalog either (the starting engine's recovery would delete
//! the other's auto-release snapshots), so an embedded run holds an exclusive `flock` on
//! `<run-dir>/embedded.lock` for its whole life; a second one fails with exit code 6.
//!
//! Embedded mode has no exec provider (it has no configuration for one) and uses vssd's default
//! deadlines. The freeze guard is looked up next to the `vss` binary, like vssd does.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vss_client::BackupComponents;
use vss_protocol::transport::{self, CallError};

use crate::GlobalArgs;
use crate::exit::CliError;
use crate::output;
use crate::raw::AdminSession;

/// How long an embedded engine may take to start listening (it runs startup recovery first).
const EMBEDDED_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The engine a command talks to.
#[derive(Debug)]
pub struct Engine {
    /// Where to connect: vssd's socket or the embedded engine's private one.
    socket: PathBuf,
    /// The in-process engine, in embedded mode.
    embedded: Option<Embedded>,
}

/// An engine running in this process.
#[derive(Debug)]
struct Embedded {
    /// The private 0700 directory holding the socket.
    dir: PathBuf,
    /// Resolving it stops the server.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task.
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The exclusive flock on `<run-dir>/embedded.lock`, held until the engine stopped.
    _lock: File,
}

impl Engine {
    /// Connects to vssd, or starts the embedded engine when nothing serves the socket.
    pub async fn open(g: &GlobalArgs) -> Result<Engine, CliError> {
        match transport::connect(&g.socket).await {
            Ok(conn) => {
                drop(conn);
                Ok(Engine {
                    socket: g.socket.clone(),
                    embedded: None,
                })
            }
            Err(CallError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                output::note("vssd is not running; running the engine in this process");
                Self::start_embedded(g).await
            }
            Err(CallError::Connect { path, source }) => Err(CliError::unreachable(format!(
                "cannot connect to vssd at {}: {source}{}",
                path.display(),
                if source.kind() == ErrorKind::PermissionDenied {
                    "; run vss as root or as a member of vssd's requester group"
                } else {
                    ""
                }
            ))),
            Err(e) => Err(CliError::unreachable(format!(
                "cannot connect to vssd at {}: {e}",
                g.socket.display()
            ))),
        }
    }

    async fn start_embedded(g: &GlobalArgs) -> Result<Engine, CliError> {
        let fail = |what: String| {
            CliError::unreachable(format!("cannot run the engine in-process: {what}"))
        };
        std::fs::create_dir_all(&g.run_dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", g.run_dir.display())))?;
        let lock = take_embedded_lock(&g.run_dir.join("embedded.lock"))?;
        let dir =
            private_dir().map_err(|e| fail(format!("cannot create a private directory: {e}")))?;
        let socket = dir.join("vssd.sock");
        let mut config = vss_daemon::Config::system_default();
        config.socket = socket.clone();
        config.writers_dir = g.writers_dir.clone();
        config.state_dir = g.state_dir.clone();
        config.run_dir = g.run_dir.clone();
        config.lock_file = g.lock_file.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(vss_daemon::run(config, async move {
            let _ = rx.await;
        }));
        let mut engine = Engine {
            socket: socket.clone(),
            embedded: Some(Embedded {
                dir,
                shutdown: Some(tx),
                task: Some(task),
                _lock: lock,
            }),
        };
        // Wait until it listens, or report why it stopped.
        let deadline = Instant::now() + EMBEDDED_START_TIMEOUT;
        loop {
            let finished = engine
                .embedded
                .as_ref()
                .and_then(|e| e.task.as_ref())
                .is_none_or(|t| t.is_finished());
            if finished {
                let why = match engine.embedded.as_mut().and_then(|e| e.task.take()) {
                    Some(t) => match t.await {
                        Ok(Ok(())) => "it stopped at once".to_owned(),
                        Ok(Err(e)) => format!("{e:#}"),
                        Err(e) => e.to_string(),
                    },
                    None => "it is gone".to_owned(),
                };
                engine.close().await;
                return Err(fail(why));
            }
            if transport::connect(&socket).await.is_ok() {
                return Ok(engine);
            }
            if Instant::now() > deadline {
                engine.close().await;
                return Err(fail(format!(
                    "it did not listen on {} within {EMBEDDED_START_TIMEOUT:?}",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the engine runs in this process.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// A new requester session (one connection, one backup-components object).
    pub async fn session(&self) -> Result<BackupComponents, CliError> {
        BackupComponents::connect(&self.socket)
            .await
            .map_err(CliError::from_client)
    }

    /// A new administration session (see [`AdminSession`]).
    pub async fn admin(&self) -> Result<AdminSession, CliError> {
        AdminSession::connect(&self.socket).await
    }

    /// Stops the embedded engine, if any, and waits until every session it served has ended.
    /// Call it after every session of the command was dropped.
    pub async fn close(mut self) {
        let Some(mut e) = self.embedded.take() else {
            return;
        };
        if let Some(tx) = e.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = e.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => output::note(format!("the in-process engine failed: {err:#}")),
                Err(err) => output::note(format!("the in-process engine failed: {err}")),
            }
        }
        let _ = std::fs::remove_dir_all(&e.dir);
    }
}

/// Takes the exclusive embedded-mode lock without waiting.
fn take_embedded_lock(path: &Path) -> Result<File, CliError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            CliError::unreachable(format!(
                "cannot run the engine in-process: cannot open {}: {e}",
                path.display()
            ))
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(CliError::unreachable(format!(
            "vssd is not running and another vss is running the engine in-process ({} is \
             locked); wait for it to finish, or start vssd",
            path.display()
        ))),
        Err(e) => Err(CliError::unreachable(format!(
            "cannot run the engine in-process: cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// A fresh directory only we can enter (mode 0700) under the temporary directory.
pub fn private_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "vss-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no unique name")))
}

impl Drop for Engine {
    fn drop(&mut self) {
        // `close` was not called (a panic): at least stop the server task and the directory.
        if let Some(e) = &mut self.embedded {
            if let Some(tx) = e.shutdown.take() {
                let _ = tx.send(());
            }
            let _ = std::fs::remove_dir_all(&e.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_are_fresh_and_0700() {
        let a = private_dir().unwrap();
        let b = private_dir().unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir(a).unwrap();
        std::fs::remove_dir(b).unwrap();
    }

    #[test]
    fn one_embedded_engine_at_a_time() {
        let dir = std::env::temp_dir().join(format!("vss-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("embedded.lock");
        let held = take_embedded_lock(&p).unwrap();
        let e = take_embedded_lock(&p).unwrap_err();
        assert_eq!(e.exit, crate::exit::UNREACHABLE);
        drop(held);
        drop(take_embedded_lock(&p).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

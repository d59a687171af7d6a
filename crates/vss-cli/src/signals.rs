//! SIGINT, SIGTERM and SIGHUP while `vss` runs.
//!
//! Outside the backup command, a signal interrupts the command `vss` is running: its session is
//! dropped, so the engine ends it properly (Abort to the writers if the set was not completed,
//! BackupShutdown, auto-release snapshots deleted), and `vss` exits with 128 + the signal. A
//! second signal while that cleanup runs exits at once.
//!
//! While the backup command runs, `vss` waits for it instead: SIGINT from a terminal reaches the
//! command anyway (same process group), and SIGTERM and SIGHUP are forwarded to it. Its exit
//! status then decides the backup as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The signal handling of one `vss` run.
#[derive(Debug, Clone)]
pub struct Signals {
    /// The first signal that arrived while no command ran.
    rx: watch::Receiver<Option<i32>>,
    /// The running command's pid, 0 when none.
    child: Arc<AtomicI32>,
}

impl Signals {
    /// Installs the handlers (inside the runtime).
    pub fn install() -> std::io::Result<Signals> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (tx, rx) = watch::channel(None);
        let child = Arc::new(AtomicI32::new(0));
        let child2 = child.clone();
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = int.recv() => libc_signal::INT,
                    Some(()) = term.recv() => libc_signal::TERM,
                    Some(()) = hup.recv() => libc_signal::HUP,
                    else => break,
                };
                let pid = child2.load(Ordering::SeqCst);
                if pid > 0 {
                    if sig != libc_signal::INT {
                        forward(pid, sig);
                    }
                    continue;
                }
                if tx.borrow().is_some() {
                    // Second signal during cleanup: give up cleaning.
                    std::process::exit(128 + sig);
                }
                let _ = tx.send(Some(sig));
            }
        });
        Ok(Signals { rx, child })
    }

    /// Resolves with the signal number when a signal arrives while no command runs.
    pub async fn interrupted(&self) -> i32 {
        let mut rx = self.rx.clone();
        match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.unwrap_or(libc_signal::TERM),
            // The handler task is gone: never interrupt.
            Err(_) => std::future::pending().await,
        }
    }

    /// Records the running command (`None` when it ended).
    pub fn set_child(&self, pid: Option<u32>) {
        let pid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.child.store(pid, Ordering::SeqCst);
    }
}

/// Sends `sig` to the command.
fn forward(pid: i32, sig: i32) {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let sig = match sig {
        libc_signal::HUP => rustix::process::Signal::HUP,
        libc_signal::INT => rustix::process::Signal::INT,
        _ => rustix::process::Signal::TERM,
    };
    let _ = rustix::process::kill_process(pid, sig);
}

/// The signal numbers used here (Linux values).
mod libc_signal {
    /// SIGHUP.
    pub const HUP: i32 = 1;
    /// SIGINT.
    pub const INT: i32 = 2;
    /// SIGTERM.
    pub const TERM: i32 = 15;
}

//! Processes for end-to-end tests: finding the workspace's binaries, a guard that kills and
//! reaps a child however the test ends, running a command to its end with a deadline, and
//! polling with a deadline.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A built binary of the workspace (target/debug/NAME, next to the test executable's `deps/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// The process.
    pub child: Child,
    /// A name for messages.
    pub name: String,
}

impl ChildGuard {
    /// Sends SIGKILL now (simulating a crash) and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `t` for the process to exit (then SIGKILL).
    pub fn terminate(&mut self, t: Duration) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + t;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 20 ms until it is true or `t` passes (then panics naming `what`).
pub fn wait_for(t: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {t:?} waiting for {what}");
}

/// Async version of [`wait_for`] (sleeps without blocking the runtime).
pub async fn wait_until(t: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {t:?} waiting for {what}");
}

/// What [`run_with_timeout`] saw: the exit code (128 + the signal for a killed process) and
/// both outputs.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` with its output piped to its end; panics (with its stderr so far) and kills it
/// if it has not finished within `t`.
pub fn run_with_timeout(mut cmd: std::process::Command, t: Duration) -> Finished {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    // Both pipes are drained while it runs, so a chatty command never blocks on a full pipe.
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + t;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {t:?}; stderr so far:\n{}",
                err_t.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

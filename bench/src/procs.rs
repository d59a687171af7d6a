//! Child processes: the private vssd of each benchmark, qemu-ga, and the timed commands of the
//! baselines.
//!
//! Every long-lived child is written to `<work>/pids/<name>.pid` while it runs, so that
//! bench/run.sh's exit trap can end exactly the processes this run started (by pid, never by
//! name) if the bench itself is killed; a [`Guarded`] child is also ended on drop (a panic
//! unwinds through it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal, kill_process};

/// A child process that is ended (SIGTERM, then SIGKILL after 10 s) when dropped.
#[derive(Debug)]
pub struct Guarded {
    child: Option<Child>,
    name: String,
    pidfile: PathBuf,
}

impl Guarded {
    /// Spawns `cmd` and records its pid in `pids_dir/<name>.pid`.
    pub fn spawn(cmd: &mut Command, name: &str, pids_dir: &Path) -> Result<Guarded> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", describe(cmd)))?;
        let pidfile = pids_dir.join(format!("{name}.pid"));
        std::fs::write(&pidfile, format!("{}\n", child.id()))
            .with_context(|| format!("cannot write {}", pidfile.display()))?;
        Ok(Guarded {
            child: Some(child),
            name: name.to_owned(),
            pidfile,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Ends it: SIGTERM (vssd and qemu-ga clean up on it), SIGKILL if it is still there after
    /// 10 s. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            if let Some(pid) = Pid::from_raw(child.id() as i32) {
                let _ = kill_process(pid, Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!(
                    "vss-bench: {} did not exit on SIGTERM; killing it",
                    self.name
                );
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Resident set size and its peak, in MB (from `/proc/<pid>/status`: VmRSS, VmHWM).
pub fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))?;
        let kb: f64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("malformed {line:?}"))?
            .parse()?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time used by process `pid` so far: the sum over its threads of
/// `/proc/<pid>/task/<tid>/schedstat`'s first field (nanoseconds on a CPU), which is exact where
/// `/proc/<pid>/stat`'s ticks are 10 ms coarse. Threads that exited are not counted (tokio's
/// blocking threads linger for 10 s, longer than any timed call here).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// `program arg...` of a command, without the environment `{:?}` would show.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![
        Path::new(cmd.get_program())
            .file_name()
            .unwrap_or(cmd.get_program())
            .to_string_lossy()
            .into_owned(),
    ];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` to completion (stdout discarded, stderr kept for the error) and returns its wall
/// time, process creation included: every peer is timed the same way, as a user would run it.
/// Runs on a blocking thread so the writers hosted by this process keep being served.
pub async fn time_command(mut cmd: Command) -> Result<Duration> {
    tokio::task::spawn_blocking(move || {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", describe(&cmd)))?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                describe(&cmd),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(elapsed)
    })
    .await?
}

/// Runs `cmd` and returns its standard output (for setup steps, not timed).
pub fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private vssd: its own socket, writers, state and run directories and lock file under
/// `<work>/<name>/`, so it shares nothing with a system vssd or another benchmark.
#[derive(Debug)]
pub struct Vssd {
    /// `<work>/<name>`.
    pub dir: PathBuf,
    /// The requester socket.
    pub socket: PathBuf,
    /// Where writers put their sockets.
    pub writers_dir: PathBuf,
    proc: Guarded,
}

impl Vssd {
    /// Starts vssd from `bin_dir` and waits until it answers on its socket. `log` is its
    /// `VSSD_LOG` filter: "info" normally; "debug" where a figure reads its log (it costs a
    /// little formatting, never I/O inside a freeze: vssd holds logs in memory then).
    pub async fn start(bin_dir: &Path, work: &Path, name: &str, log: &str) -> Result<Vssd> {
        let dir = work.join(name);
        for sub in ["writers", "state", "run"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // vssd refuses a world-writable writers directory; mkdir's umask may leave it 0777.
        std::fs::set_permissions(
            dir.join("writers"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let socket = dir.join("vssd.sock");
        let log_file = std::fs::File::create(dir.join("vssd.log"))?;
        let mut cmd = Command::new(bin_dir.join("vssd"));
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--writers-dir")
            .arg(dir.join("writers"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--lock-file")
            .arg(dir.join("set.lock"))
            // No /etc/vss/vssd.toml of this machine may change what is measured.
            .arg("--config")
            .arg("/dev/null")
            .env_remove("VSSD_CONFIG")
            .env("VSSD_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let mut proc = Guarded::spawn(&mut cmd, name, &work.join("pids"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !proc.alive() {
                bail!(
                    "vssd ({name}) exited at start; see {}",
                    dir.join("vssd.log").display()
                );
            }
            if let Ok(mut bc) = vss_client::BackupComponents::connect(&socket).await
                && bc.get_protocol_version().await.is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "vssd ({name}) did not answer on {} in 30 s",
                    socket.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Vssd {
            writers_dir: dir.join("writers"),
            dir,
            socket,
            proc,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its log so far (stderr, without colour codes when not on a terminal).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vssd.log")).unwrap_or_default()
    }

    /// Resident size and peak, MB.
    pub fn memory_mb(&self) -> Result<(f64, f64)> {
        memory_mb(self.pid())
    }

    /// A `vss` command line aimed at this vssd. The directories are given too, so that even
    /// the embedded fallback (vss runs the engine itself when nothing answers) could never touch
    /// the system's /var/lib/vss.
    pub fn vss(&self, bin_dir: &Path) -> Command {
        let mut cmd = Command::new(bin_dir.join("vss"));
        cmd.env("VSS_SOCKET", &self.socket)
            .env("VSS_WRITERS_DIR", &self.writers_dir)
            .env("VSS_STATE_DIR", self.dir.join("state"))
            .env("VSS_RUN_DIR", self.dir.join("run"))
            .env("VSS_LOCK_FILE", self.dir.join("set.lock"));
        cmd
    }

    /// Stops it (SIGTERM: sessions end, auto-release snapshots are deleted).
    pub fn stop(mut self) {
        self.proc.stop();
    }

    /// Fails if vssd died (so a benchmark never silently measures vss's embedded mode).
    pub fn check_alive(&mut self) -> Result<()> {
        if self.proc.alive() {
            Ok(())
        } else {
            bail!("vssd in {} died; see its vssd.log", self.dir.display())
        }
    }
}

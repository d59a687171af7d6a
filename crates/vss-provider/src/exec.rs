//! The exec provider: the administrator's snapshot command — the hook for cloud and SAN snapshot
//! CLIs — run while vssd holds the volume frozen. A hardware-type provider
//! ([`ProviderType::Hardware`]): its sets can be broken (BreakSnapshotSet).
//!
//! **Configuration.** [`ProviderConfig::exec_command`] names an executable; `None` (the default)
//! leaves the provider out of [`crate::builtin_providers`]. Each run may take
//! [`ProviderConfig::exec_timeout`] (default 10 s); then its whole process group is killed with
//! SIGKILL and the action fails with VSS_E_PROVIDER_VETO ("the provider command did not finish
//! within ...").
//!
//! **How the command is run.** With an empty environment except `PATH`
//! (`/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`) and:
//!
//! | variable | set for | value |
//! |---|---|---|
//! | `VSS_ACTION` | all | `supported`, `create`, `delete`, `expose`, `unexpose`, `break` |
//! | `VSS_VOLUME` | `supported`, `create` | the volume (its mount point) |
//! | `VSS_DEVICE` | `supported`, `create` | the volume's mount source from mountinfo (`/dev/sdb1`) |
//! | `VSS_SNAPSHOT_ID` | all but `supported` | the snapshot id |
//! | `VSS_SNAPSHOT_SET_ID` | `create` | the snapshot set id |
//! | `VSS_LOCATOR` | `delete`, `expose`, `unexpose`, `break` | what `create` printed |
//! | `VSS_EXPOSE_PATH` | `expose`, `unexpose` | the exposure directory |
//!
//! in its own process group, with the working directory `/`, standard input from `/dev/null`,
//! and no inherited file descriptors. Exit status 0 is success; for `supported` it means "this
//! volume is supported" (any other status, or a timeout, means no). For `create` the last
//! non-empty line of standard output is the snapshot's identity (its locator, also shown as its
//! snapshot path); printing nothing is a failure. Any other exit status fails the action with
//! VSS_E_PROVIDER_VETO carrying the command's standard error (its last 4 KiB).
//!
//! **The volume is frozen during `create`.** vssd freezes the volume's filesystem (FIFREEZE)
//! before `create` and thaws it after (needs_freeze): the command **must not touch the volume**
//! — no writes, and not even reads are safe (a read of a WAL-mode SQLite database on a frozen XFS
//! sleeps until the thaw). It must only talk to the storage (a cloud API, a SAN CLI) and finish
//! well within the commit window.
//!
//! The snapshot belongs to the command: `exists` cannot ask it, so it answers "exists" and the
//! catalog stays the authority. Only mount points are offered to the command.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use uuid::Uuid;
use vss_model::{ErrorCode, Id, ProviderType, VssError};

use crate::volume::{Volume, VolumeKind};
use crate::{
    Atomicity, CommittedSnapshot, Exposure, Provider, ProviderConfig, ProviderInfo, SnapshotRequest,
};

/// The fixed id of the exec provider.
pub const EXEC_PROVIDER_ID: Id = Uuid::from_u128(0x0b1a5e5c_8f2e_4c6e_9a41_6c1f0b7e2a04);

/// The `PATH` the command gets.
pub const EXEC_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of the command's standard error goes into an error message.
const STDERR_LIMIT: usize = 4096;

/// How much standard output is kept (the identity is its last line).
const STDOUT_LIMIT: usize = 64 * 1024;

/// What one run of the command produced.
#[derive(Debug)]
pub struct ExecOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit status, as text (`exit status: 3`).
    pub status: String,
    /// Standard output (its last 64 KiB).
    pub stdout: String,
    /// Standard error (its last 4 KiB).
    pub stderr: String,
}

/// Keeps the last `limit` bytes of what is appended.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8], limit: usize) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > limit {
            let cut = self.bytes.len() - limit;
            self.bytes.drain(..cut);
            self.dropped = true;
        }
    }

    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        // A cut may have split a UTF-8 sequence: drop the replacement at the start.
        let text = if self.dropped {
            format!("...{}", text.trim_start_matches('\u{fffd}'))
        } else {
            text.into_owned()
        };
        text.trim().to_owned()
    }
}

/// Runs `command` with exactly the environment `env` (plus `PATH`), cwd `/`, stdin null, in a
/// new process group, for at most `timeout`. On timeout the process group is killed with
/// SIGKILL and the result is VSS_E_PROVIDER_VETO.
pub fn run_command(
    command: &Path,
    env: &[(&str, OsString)],
    timeout: Duration,
) -> Result<ExecOutput, VssError> {
    let action = env
        .iter()
        .find(|(k, _)| *k == "VSS_ACTION")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(command);
    cmd.env_clear()
        .env("PATH", EXEC_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        VssError::new(
            ErrorCode::ProviderVeto,
            format!(
                "cannot run the provider command '{}' ({action}): {e}; check the exec_command \
                 setting and that the file is executable",
                command.display()
            ),
        )
    })?;
    let pgid = rustix::process::Pid::from_child(&child);
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out, mut err) = (Tail::default(), Tail::default());
    let deadline = started + timeout;
    let mut status = None;
    let mut timed_out = false;
    loop {
        if status.is_none() {
            status = child.try_wait().map_err(|e| {
                VssError::new(
                    ErrorCode::ProviderVeto,
                    format!("cannot wait for the provider command: {e}"),
                )
            })?;
        }
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            // Either the command itself is still running, or something it started holds its
            // output open: kill the whole group either way.
            if let Err(e) = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL)
            {
                tracing::debug!(error = %e, "killing the provider command's process group");
            }
            if status.is_none() {
                timed_out = true;
                // The command may have left the group (setsid): kill it by pid as well.
                let _ = child.kill();
                status = child.wait().ok();
            }
            break;
        }
        // Wake at least every 20 ms to notice the exit of a command with no output.
        let wait = (deadline - now).min(Duration::from_millis(20));
        let timespec = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
            if let Some(o) = stdout.as_ref() {
                fds.push(PollFd::new(o, PollFlags::IN));
            }
            if let Some(e) = stderr.as_ref() {
                fds.push(PollFd::new(e, PollFlags::IN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                continue;
            }
            match rustix::event::poll(&mut fds, Some(&timespec)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(VssError::new(
                        ErrorCode::ProviderVeto,
                        format!("poll on the provider command's output failed: {e}"),
                    ));
                }
            }
        }
        drain(&mut stdout, &mut out, STDOUT_LIMIT);
        drain(&mut stderr, &mut err, STDERR_LIMIT);
    }
    let elapsed = started.elapsed();
    if timed_out {
        return Err(VssError::new(
            ErrorCode::ProviderVeto,
            format!(
                "the provider command '{}' ({action}) did not finish within {timeout:?}; its \
                 process group was killed. Make it faster or raise exec_timeout{}",
                command.display(),
                stderr_suffix(&err.text())
            ),
        ));
    }
    tracing::debug!(command = %command.display(), %action, elapsed_ms = elapsed.as_millis(), "provider command finished");
    let status = status.ok_or_else(|| {
        VssError::new(
            ErrorCode::ProviderVeto,
            "the provider command's status was lost",
        )
    })?;
    Ok(ExecOutput {
        success: status.success(),
        status: status.to_string(),
        stdout: out.text(),
        stderr: err.text(),
    })
}

/// Reads what is available from a pipe that poll reported readable (or closed); closes it at
/// end of file. A read after POLLIN/POLLHUP does not block.
fn drain<R: Read + AsFd>(pipe: &mut Option<R>, tail: &mut Tail, limit: usize) {
    let Some(reader) = pipe.as_mut() else {
        return;
    };
    let mut probe = [PollFd::new(reader, PollFlags::IN)];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if !matches!(rustix::event::poll(&mut probe, Some(&now)), Ok(n) if n > 0) {
        return;
    }
    let mut buf = [0u8; 8192];
    match reader.read(&mut buf) {
        Ok(0) => *pipe = None,
        Ok(n) => tail.push(&buf[..n], limit),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(_) => *pipe = None,
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its standard error: {stderr}")
    }
}

/// The exec provider.
#[derive(Debug)]
pub struct ExecProvider {
    config: ProviderConfig,
}

impl ExecProvider {
    /// A provider with these settings.
    pub fn new(config: ProviderConfig) -> Self {
        ExecProvider { config }
    }

    fn command(&self) -> Result<&Path, VssError> {
        self.config.exec_command.as_deref().ok_or_else(|| {
            VssError::new(
                ErrorCode::ProviderVeto,
                "the exec provider has no command configured (exec_command)",
            )
        })
    }

    /// Runs one action; a non-zero exit is VSS_E_PROVIDER_VETO with the command's stderr.
    fn run(
        &self,
        action: &str,
        mut env: Vec<(&'static str, OsString)>,
    ) -> Result<ExecOutput, VssError> {
        let command = self.command()?;
        env.push(("VSS_ACTION", action.into()));
        let output = run_command(command, &env, self.config.exec_timeout)?;
        if !output.success {
            return Err(VssError::new(
                ErrorCode::ProviderVeto,
                format!(
                    "the provider command '{}' failed to {action} ({}){}",
                    command.display(),
                    output.status,
                    stderr_suffix(&output.stderr)
                ),
            ));
        }
        Ok(output)
    }

    fn volume_env(volume: &Volume) -> Vec<(&'static str, OsString)> {
        vec![
            ("VSS_VOLUME", volume.path.clone().into_os_string()),
            ("VSS_DEVICE", volume.device.clone().into()),
        ]
    }

    fn snapshot_env(snapshot: &CommittedSnapshot) -> Vec<(&'static str, OsString)> {
        vec![
            (
                "VSS_SNAPSHOT_ID",
                snapshot.snapshot_id.hyphenated().to_string().into(),
            ),
            ("VSS_LOCATOR", snapshot.locator.clone().into()),
        ]
    }
}

impl Provider for ExecProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: EXEC_PROVIDER_ID,
            name: "exec".into(),
            provider_type: ProviderType::Hardware,
            version: "1.0".into(),
            atomicity: Atomicity::AcrossSet,
            needs_freeze: true,
        }
    }

    fn is_volume_supported(&self, volume: &Volume) -> bool {
        if self.config.exec_command.is_none() || volume.kind != VolumeKind::MountPoint {
            return false;
        }
        match self.run("supported", Self::volume_env(volume)) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(path = %volume.path.display(), error = %e, "exec: not supported");
                false
            }
        }
    }

    fn begin_prepare(&self, request: &SnapshotRequest) -> Result<(), VssError> {
        self.command()?;
        if request.volume.kind != VolumeKind::MountPoint {
            return Err(VssError::new(
                ErrorCode::VolumeNotSupportedByProvider,
                format!(
                    "the exec provider snapshots mount points; '{}' is a {}",
                    request.volume.path.display(),
                    request.volume.kind.name()
                ),
            ));
        }
        Ok(())
    }

    /// Runs `create` while vssd holds the volume frozen.
    fn commit(&self, request: &SnapshotRequest) -> Result<CommittedSnapshot, VssError> {
        let mut env = Self::volume_env(&request.volume);
        env.push((
            "VSS_SNAPSHOT_ID",
            request.snapshot_id.hyphenated().to_string().into(),
        ));
        env.push((
            "VSS_SNAPSHOT_SET_ID",
            request.snapshot_set_id.hyphenated().to_string().into(),
        ));
        let output = self.run("create", env)?;
        let identity = output
            .stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                VssError::new(
                    ErrorCode::ProviderVeto,
                    format!(
                        "the provider command created snapshot {} but printed no identity; its \
                         last non-empty line of standard output must name the snapshot",
                        request.snapshot_id
                    ),
                )
            })?;
        Ok(CommittedSnapshot {
            snapshot_id: request.snapshot_id,
            snapshot_path: PathBuf::from(&identity),
            locator: identity,
        })
    }

    fn abort(
        &self,
        _request: &SnapshotRequest,
        committed: Option<&CommittedSnapshot>,
    ) -> Result<(), VssError> {
        committed.map_or(Ok(()), |snapshot| self.delete(snapshot))
    }

    fn delete(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        self.run("delete", Self::snapshot_env(snapshot)).map(|_| ())
    }

    fn exists(&self, _snapshot: &CommittedSnapshot) -> Result<bool, VssError> {
        Ok(true)
    }

    fn expose(&self, snapshot: &CommittedSnapshot, at: &Path) -> Result<Exposure, VssError> {
        crate::expose::check_expose_target(at)?;
        let mut env = Self::snapshot_env(snapshot);
        env.push(("VSS_EXPOSE_PATH", at.as_os_str().to_owned()));
        let output = self.run("expose", env)?;
        let detail = output
            .stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(Exposure {
            path: at.to_owned(),
            detail,
        })
    }

    fn unexpose(&self, snapshot: &CommittedSnapshot, exposure: &Exposure) -> Result<(), VssError> {
        let mut env = Self::snapshot_env(snapshot);
        env.push(("VSS_EXPOSE_PATH", exposure.path.as_os_str().to_owned()));
        self.run("unexpose", env).map(|_| ())
    }

    fn break_snapshot(&self, snapshot: &CommittedSnapshot) -> Result<(), VssError> {
        self.run("break", Self::snapshot_env(snapshot)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_fixed() {
        let p = ExecProvider::new(ProviderConfig::new(Path::new("/run/vss")));
        let info = p.info();
        assert_eq!(info.id.to_string(), "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a04");
        assert_eq!(info.provider_type, ProviderType::Hardware);
        assert!(info.needs_freeze);
        assert_eq!(info.atomicity, Atomicity::AcrossSet);
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        t.push(b"hello ", 8);
        t.push(b"world", 8);
        assert_eq!(t.text(), "...lo world");
        let mut t = Tail::default();
        t.push(" é\n".as_bytes(), 100);
        assert_eq!(t.text(), "é");
    }

    #[test]
    fn runs_with_a_clean_environment_and_captures_output() {
        let out = run_command(Path::new("/bin/sh"), &[], Duration::from_secs(5));
        // /bin/sh without -c reads stdin (null): exits 0 at once.
        assert!(out.unwrap().success);
        let err =
            run_command(Path::new("/nonexistent/cmd"), &[], Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.code, ErrorCode::ProviderVeto);
    }

    #[test]
    fn unconfigured_provider_supports_nothing() {
        let p = ExecProvider::new(ProviderConfig::new(Path::new("/run/vss")));
        let v = crate::resolve_volume("/").unwrap();
        assert!(!p.is_volume_supported(&v));
        assert_eq!(
            crate::builtin_providers(&ProviderConfig::new(Path::new("/run/vss")))
                .iter()
                .map(|p| p.info().name)
                .collect::<Vec<_>>(),
            ["btrfs", "image", "reflink"]
        );
    }
}

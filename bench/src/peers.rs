//! The peers vss is measured against: qemu-guest-agent's fsfreeze over its Unix socket (a
//! private `qemu-ga -m unix-listen` started here), and the command lines of btrfs-progs and
//! snapper.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::procs::Guarded;

/// A private qemu-ga serving its JSON protocol on a Unix socket.
#[derive(Debug)]
pub struct QemuGa {
    proc: Guarded,
    socket: PathBuf,
}

impl QemuGa {
    /// Starts `qemu-ga -m unix-listen` with its socket, pid file, state directory and log in
    /// `dir`, without a freeze hook (no `-F`), and waits for its socket.
    pub fn start(dir: &Path, pids_dir: &Path) -> Result<QemuGa> {
        std::fs::create_dir_all(dir.join("state"))?;
        let socket = dir.join("qga.sock");
        let mut cmd = Command::new("qemu-ga");
        cmd.arg("-m")
            .arg("unix-listen")
            .arg("-p")
            .arg(&socket)
            .arg("-f")
            .arg(dir.join("qemu-ga.pid"))
            .arg("-t")
            .arg(dir.join("state"))
            .arg("-l")
            .arg(dir.join("qemu-ga.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut proc = Guarded::spawn(&mut cmd, "qemu-ga", pids_dir)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if !proc.alive() || Instant::now() > deadline {
                bail!(
                    "qemu-ga did not come up on {}; see {}",
                    socket.display(),
                    dir.join("qemu-ga.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(QemuGa { proc, socket })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// A client connection.
    pub fn connect(&self) -> Result<QgaClient> {
        let stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("connect {}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(QgaClient {
            stream,
            reader,
            frozen: false,
        })
    }
}

/// One connection to qemu-ga. If it is dropped while it froze filesystems, it thaws them.
#[derive(Debug)]
pub struct QgaClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    frozen: bool,
}

impl QgaClient {
    /// One command and its `return` value.
    fn call(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            bail!("qemu-ga closed the connection during {command}");
        }
        let v: Value = serde_json::from_str(&reply)
            .with_context(|| format!("qemu-ga's reply to {command}: {reply:?}"))?;
        match v.get("return") {
            Some(r) => Ok(r.clone()),
            None => bail!("qemu-ga answered {command} with {v}"),
        }
    }

    /// `guest-fsfreeze-freeze-list` of `mounts` then `guest-fsfreeze-thaw`: the time of each.
    pub fn freeze_thaw(&mut self, mounts: &[PathBuf]) -> Result<(Duration, Duration)> {
        let list: Vec<String> = mounts.iter().map(|m| m.display().to_string()).collect();
        let started = Instant::now();
        // Counted as frozen before the reply: a failure mid-call still gets a thaw.
        self.frozen = true;
        let n = self.call(
            "guest-fsfreeze-freeze-list",
            Some(json!({ "mountpoints": list })),
        )?;
        let frozen = started.elapsed();
        let started = Instant::now();
        let t = self.call("guest-fsfreeze-thaw", None)?;
        let thawed = started.elapsed();
        self.frozen = false;
        if n.as_u64() != Some(mounts.len() as u64) || t.as_u64() != Some(mounts.len() as u64) {
            bail!(
                "qemu-ga froze {n} and thawed {t} filesystems, not {}",
                mounts.len()
            );
        }
        Ok((frozen, thawed))
    }

    /// `guest-fsfreeze-status`: "thawed" or "frozen".
    pub fn status(&mut self) -> Result<String> {
        Ok(self
            .call("guest-fsfreeze-status", None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

impl Drop for QgaClient {
    fn drop(&mut self) {
        if self.frozen {
            let _ = self.call("guest-fsfreeze-thaw", None);
        }
    }
}

/// `btrfs subvolume snapshot -r SOURCE DEST`.
pub fn btrfs_snapshot(source: &Path, dest: &Path) -> Command {
    let mut cmd = Command::new("btrfs");
    cmd.args(["subvolume", "snapshot", "-r"])
        .arg(source)
        .arg(dest);
    cmd
}

/// `snapper --no-dbus -c CONFIG create` (a single snapshot of the config's subvolume).
pub fn snapper_create(config: &str) -> Command {
    let mut cmd = Command::new("snapper");
    cmd.args(["--no-dbus", "-c", config, "create"]);
    cmd
}

/// `btrfs subvolume list -s MOUNT`: every snapshot of the filesystem.
pub fn btrfs_list_snapshots(mount: &Path) -> Command {
    let mut cmd = Command::new("btrfs");
    cmd.args(["subvolume", "list", "-s"]).arg(mount);
    cmd
}

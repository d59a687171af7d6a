//! Finding hook scripts in a directory, ordering them, and running one to completion.
//!
//! # Which files are scripts
//!
//! Like qemu-guest-agent's `fsfreeze-hook` (scripts/qemu-guest-agent/fsfreeze-hook), a script
//! is a file in the directory (not in subdirectories) that is a regular file and executable,
//! following symlinks (`[ -f "$file" ] && [ -x "$file" ]`). Skipped, by name:
//!
//! * hidden files (`.*`): qemu's `"$FSFREEZE_D"/*` glob does not match them;
//! * qemu's ignore list: `*~`, `*.bak`, `*.orig`, `*.rpmnew`, `*.rpmorig`, `*.rpmsave`,
//!   `*.sample`, `*.dpkg-old`, `*.dpkg-new`, `*.dpkg-tmp`, `*.dpkg-dist`, `*.dpkg-bak`,
//!   `*.dpkg-backup`, `*.dpkg-remove`;
//! * generalised, so future package-manager suffixes are covered too: any `*.dpkg-*`, any
//!   `*.rpm*`, and also `*.ucf-*` (Debian's ucf leftovers) and editor swap files `*.swp`,
//!   `*.swo` (not in qemu's list).
//!
//! # Order
//!
//! Scripts run in name order, comparing names as bytes (the C locale). qemu's shell glob sorts by
//! the current locale's collation instead, which differs for mixed case and punctuation.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of a failed script's stderr goes into the failure message.
pub const STDERR_TAIL: u64 = 4096;

/// The PATH scripts get when the writer itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether a file named `name` is skipped whatever its mode (see the module doc).
pub fn is_ignored_name(name: &[u8]) -> bool {
    if name.is_empty() || name[0] == b'.' || name.ends_with(b"~") {
        return true;
    }
    const SUFFIXES: &[&[u8]] = &[b".bak", b".orig", b".sample", b".swp", b".swo"];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return true;
    }
    // `*.dpkg-*`, `*.rpm*`, `*.ucf-*`: the marker anywhere after the first character.
    const INFIXES: &[&[u8]] = &[b".dpkg-", b".rpm", b".ucf-"];
    INFIXES
        .iter()
        .any(|m| name.windows(m.len()).skip(1).any(|w| w == *m))
}

/// The scripts of `dir`, in name order (bytes). A missing directory has none; another error
/// reading it is returned.
pub fn list_scripts(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if is_ignored_name(name.as_bytes()) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, like `[ -f ] && [ -x ]`.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            names.push(name);
        }
    }
    sort_names(&mut names);
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Sorts file names in C-locale (byte) order.
pub fn sort_names<S: AsRef<OsStr>>(names: &mut [S]) {
    names.sort_by(|a, b| a.as_ref().as_bytes().cmp(b.as_ref().as_bytes()));
}

/// How one run of a script ended.
#[derive(Debug)]
pub enum Outcome {
    /// It exited 0.
    Success,
    /// It exited non-zero or was killed by a signal; the tail of its stderr.
    Failed { status: ExitStatus, stderr: String },
    /// It did not exit within the timeout; its process group was killed.
    TimedOut { stderr: String },
    /// It could not be started.
    SpawnError(std::io::Error),
}

/// One run of a script: `script arg` with `env` (and PATH only), cwd `/`, stdin `/dev/null`,
/// stdout and stderr to `out`/`err`, in its own process group. Done when the process exits
/// (its output may stay open in background processes it left: they are not waited for and not
/// killed). On timeout the whole process group gets SIGKILL.
pub fn run_script(
    script: &Path,
    arg: &str,
    env: &[(String, String)],
    out: &Path,
    err: &Path,
    timeout: Duration,
) -> Outcome {
    let files = File::create(out).and_then(|o| Ok((o, File::create(err)?)));
    let (out_file, err_file) = match files {
        Ok(f) => f,
        Err(e) => return Outcome::SpawnError(e),
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
    let mut cmd = Command::new(script);
    cmd.arg(arg)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .process_group(0);
    // ETXTBSY: the script was just written and another thread's fork still holds it open for
    // writing until its exec; that passes within milliseconds.
    let mut child = cmd.spawn();
    for _ in 0..100 {
        match &child {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()) => {
                std::thread::sleep(Duration::from_millis(10));
                child = cmd.spawn();
            }
            _ => break,
        }
    }
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Outcome::SpawnError(e),
    };
    let pgid = rustix::process::Pid::from_child(&child);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait();
                return Outcome::TimedOut { stderr: tail(err) };
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait();
                return Outcome::SpawnError(e);
            }
        }
    };
    if status.success() {
        Outcome::Success
    } else {
        Outcome::Failed {
            status,
            stderr: tail(err),
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of `path`, lossily decoded and trimmed.
pub fn tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > STDERR_TAIL {
        let _ = f.seek(SeekFrom::Start(len - STDERR_TAIL));
    }
    let mut buf = Vec::new();
    let _ = f.take(STDERR_TAIL).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn qemu_ignore_patterns() {
        for n in [
            "x.sample",
            "y~",
            "z.dpkg-old",
            "z.dpkg-new",
            "z.dpkg-dist",
            "z.dpkg-tmp",
            "z.dpkg-bak",
            "z.dpkg-backup",
            "z.dpkg-remove",
            "a.rpmnew",
            "a.rpmsave",
            "a.rpmorig",
            "b.bak",
            "b.orig",
            ".hidden",
            ".x.swp",
            "c.swp",
            "d.ucf-dist",
        ] {
            assert!(is_ignored_name(n.as_bytes()), "{n} must be ignored");
        }
        for n in [
            "mysql-flush.sh",
            "10-db",
            "backup",
            "rpm-script",
            "dpkg-thing",
            "sample",
        ] {
            assert!(!is_ignored_name(n.as_bytes()), "{n} must run");
        }
    }

    #[test]
    fn c_locale_order() {
        let mut v = vec!["b", "B", "a", "_x", "10-z", "9-y", "A"];
        sort_names(&mut v);
        assert_eq!(v, ["10-z", "9-y", "A", "B", "_x", "a", "b"]);
    }

    #[test]
    fn listing_selects_executable_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mk = |name: &str, mode: u32| {
            let p = d.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mk("20-b", 0o755);
        mk("10-a", 0o700);
        mk("x.sample", 0o755);
        mk("y~", 0o755);
        mk("z.dpkg-old", 0o755);
        mk("not-exec", 0o644);
        mk(".hidden", 0o755);
        std::fs::create_dir(d.join("30-dir")).unwrap();
        std::os::unix::fs::symlink(d.join("20-b"), d.join("40-link")).unwrap();
        std::os::unix::fs::symlink(d.join("missing"), d.join("50-dangling")).unwrap();
        let names: Vec<String> = list_scripts(d)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a", "20-b", "40-link"]);
        assert!(list_scripts(&d.join("nope")).unwrap().is_empty());
    }

    #[test]
    fn run_waits_for_the_process_not_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = d.join("bg");
        let pid_file = d.join("pid");
        let body = format!(
            "#!/bin/sh\nsleep 30 &\necho $! > {}\necho started\nexit 0\n",
            pid_file.display()
        );
        std::fs::write(&s, body).unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Instant::now();
        let o = run_script(
            &s,
            "freeze",
            &[],
            &d.join("o"),
            &d.join("e"),
            Duration::from_secs(10),
        );
        let elapsed = t.elapsed();
        // The background `sleep` is ours to clean up.
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if let Some(pid) = pid
            .trim()
            .parse()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        assert!(matches!(o, Outcome::Success), "{o:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(std::fs::read_to_string(d.join("o")).unwrap(), "started\n");
    }

    #[test]
    fn run_reports_failure_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = d.join("fail");
        std::fs::write(&s, "#!/bin/sh\necho \"arg=$1 set=$VSS_X\" >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = [("VSS_X".to_owned(), "7".to_owned())];
        match run_script(
            &s,
            "thaw",
            &env,
            &d.join("o"),
            &d.join("e"),
            Duration::from_secs(10),
        ) {
            Outcome::Failed { status, stderr } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr, "arg=thaw set=7");
            }
            o => panic!("{o:?}"),
        }
        let h = d.join("hang");
        std::fs::write(&h, "#!/bin/sh\nsleep 600\n").unwrap();
        std::fs::set_permissions(&h, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = Instant::now();
        let o = run_script(
            &h,
            "freeze",
            &[],
            &d.join("o"),
            &d.join("e"),
            Duration::from_millis(200),
        );
        assert!(matches!(o, Outcome::TimedOut { .. }), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}

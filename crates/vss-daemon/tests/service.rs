//! vssd as a system service: the unit files pass `systemd-analyze verify`, socket activation
//! hands vssd its socket (LISTEN_FDS), and vssd reports readiness (NOTIFY_SOCKET) — all with
//! the real binary, no running systemd needed.

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    // verify wants ExecStart's binary to exist: check copies of the units whose ExecStart
    // names the binary just built (everything else unchanged).
    let dir = tempfile::tempdir().unwrap();
    // The binaries next to vssd (target/debug): vssd itself and the writers, when built.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vssd"))
        .parent()
        .unwrap()
        .to_owned();
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(repo().join("packaging/systemd")).unwrap() {
        let unit = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&unit).unwrap();
        if let Some(line) = text
            .lines()
            .find(|l| l.starts_with("ExecStart=/usr/local/bin/"))
        {
            let program = line["ExecStart=/usr/local/bin/".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            let built = bin_dir.join(&program);
            if !built.exists() {
                eprintln!("skipping {}: {program} is not built", unit.display());
                continue;
            }
            text = text.replace(
                &format!("/usr/local/bin/{program}"),
                built.to_str().unwrap(),
            );
        }
        let p = dir.path().join(unit.file_name().unwrap());
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    assert!(paths.len() >= 2, "vssd.service and vssd.socket at least");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Messages about the host's own units (no systemd running here) are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("vss")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn socket_activation_and_readiness_notification() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("vssd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let fd = listener.as_raw_fd();
    // systemd's way: the socket is fd 3 and LISTEN_PID names the process; `sh` execs vssd in
    // its own pid, so $$ is vssd's pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_vssd"))
        .arg("--config")
        .arg(repo().join("packaging/vssd.toml"))
        .arg("--socket")
        .arg(&sock)
        .arg("--writers-dir")
        .arg(dir.path().join("writers"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .arg("--lock-file")
        .arg(dir.path().join("lock"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("LISTEN_FDS", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("vssd.log")).unwrap());
    // SAFETY: only dup2 (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC, so go through a spare descriptor.
            if libc::dup2(fd, 100) < 0 || libc::dup2(100, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 from vssd ({e}): {}",
            std::fs::read_to_string(dir.path().join("vssd.log")).unwrap_or_default()
        )
    });
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // vssd serves on the inherited socket: a varlink call through the path works.
    let started = Instant::now();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"{\"method\":\"vss.Requester.GetProtocolVersion\"}\0")
        .unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while s.read(&mut byte).unwrap() == 1 && byte[0] != 0 {
        reply.push(byte[0]);
    }
    assert!(
        String::from_utf8_lossy(&reply).contains("\"version\":1"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // SIGTERM: STOPPING=1, and the socket file systemd owns is left in place.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let n = notify.recv(&mut buf).expect("STOPPING=1 from vssd");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
    assert!(
        sock.exists(),
        "an activated vssd does not remove systemd's socket"
    );
}

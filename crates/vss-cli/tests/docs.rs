//! The generated documentation of `vss` (shell completions and man pages from the clap
//! definition), `--help` of every subcommand, and `vss watch` against a real vssd.
//!
//! The generator tests need nothing; the watch test is root only (skipped otherwise) and needs
//! `vssd` and `vss-test-writer` built: `cargo build -p vss-daemon -p vss-tests --bins`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ChildGuard, Env, Mode, vss_bin};
use serde_json::Value;

/// Runs `vss ARGS...` without any engine (generators and `--help` need none).
fn vss(args: &[&str]) -> common::VssRun {
    let mut cmd = Command::new(vss_bin());
    cmd.args(args).env_remove("VSS_LOG");
    common::run_to_end(cmd, common::VSS_TIMEOUT)
}

/// The visible subcommands `vss PATH... --help` lists under `Commands:` (without `help`).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let r = vss(&args);
    r.expect_code(0);
    r.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path: `["list"]`, `["list", "writers"]`, ..., `["man"]`.
fn all_commands() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    let mut todo: Vec<Vec<String>> = subcommands(&[]).into_iter().map(|n| vec![n]).collect();
    while let Some(path) = todo.pop() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&p) {
            let mut q = path.clone();
            q.push(sub);
            todo.push(q);
        }
        all.push(path);
    }
    all.sort();
    all
}

/// The roff text after clap_mangen's string definitions (`.ie`/`.el` lines): starts with `.TH`.
fn after_preamble(page: &str) -> &str {
    let mut rest = page;
    while rest.starts_with(".ie ") || rest.starts_with(".el ") {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

#[test]
fn the_subcommands_are_the_expected_ones() {
    let top = subcommands(&[]);
    for name in [
        "list",
        "create",
        "delete",
        "expose",
        "unexpose",
        "backup",
        "restore",
        "watch",
        "completions",
        "man",
    ] {
        assert!(top.iter().any(|n| n == name), "{name} not in {top:?}");
    }
    assert_eq!(subcommands(&["list"]), ["writers", "providers", "shadows"]);
}

#[test]
fn every_subcommand_has_help() {
    for path in all_commands() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let r = vss(&args);
        r.expect_code(0);
        assert!(r.stdout.contains("Usage: vss "), "{path:?}: {}", r.stdout);
    }
}

#[test]
fn completions_come_from_the_clap_definition() {
    let names = subcommands(&[]);
    let r = vss(&["completions", "bash"]);
    r.expect_code(0);
    assert!(r.stdout.contains("_vss()"), "{}", r.stdout);
    assert!(r.stdout.contains("complete -F _vss"), "{}", r.stdout);
    for n in &names {
        assert!(r.stdout.contains(n.as_str()), "{n} not in the bash script");
    }
    assert!(r.stdout.contains("--socket"), "global options complete too");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let r = vss(&["completions", shell]);
        r.expect_code(0);
        assert!(r.stdout.contains("watch"), "{shell}: {}", r.stdout);
    }
    vss(&["completions", "tcsh"]).expect_code(2);
}

#[test]
fn the_man_page_names_every_subcommand() {
    let r = vss(&["man"]);
    r.expect_code(0);
    let page = after_preamble(&r.stdout);
    assert!(page.starts_with(".TH vss 1 "), "{}", r.stdout);
    assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    for n in subcommands(&[]) {
        assert!(
            r.stdout
                .contains(&format!("vss\\-{}(1)", n.replace('-', "\\-"))),
            "vss.1 does not refer to vss-{n}(1):\n{}",
            r.stdout
        );
    }
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let r = vss(&["man", "--dir", out.to_str().unwrap()]);
    r.expect_code(0);
    assert_eq!(r.stdout, "", "--dir prints nothing");
    let mut expected = vec!["vss".to_owned()];
    expected.extend(
        all_commands()
            .iter()
            .map(|p| format!("vss-{}", p.join("-"))),
    );
    for name in &expected {
        let file = out.join(format!("{name}.1"));
        let page = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{} not written: {e}", file.display()));
        let th = format!(".TH {name} 1 ");
        assert!(after_preamble(&page).starts_with(&th), "{name}:\n{page}");
    }
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut want: Vec<String> = expected.iter().map(|n| format!("{n}.1")).collect();
    // vssd's page, section 8, from the definition vssd itself parses.
    want.push("vssd.8".to_owned());
    want.sort();
    let vssd = std::fs::read_to_string(out.join("vssd.8")).unwrap();
    assert!(after_preamble(&vssd).starts_with(".TH vssd 8 "), "{vssd}");
    for option in [
        "\\-\\-commit\\-window\\-ms",
        "\\-\\-exec\\-command",
        "\\-\\-socket",
    ] {
        assert!(vssd.contains(option), "vssd.8 lacks {option}");
    }
    assert_eq!(written, want, "no page for hidden commands or help");
    let backup = std::fs::read_to_string(out.join("vss-backup.1")).unwrap();
    assert!(backup.contains("\\-\\-component"), "{backup}");
    assert!(backup.contains("\\-\\-save\\-bcd"), "{backup}");
    let restore = std::fs::read_to_string(out.join("vss-restore.1")).unwrap();
    for option in ["\\-\\-bcd", "\\-\\-mapping", "VSS_MAPPING_COUNT"] {
        assert!(
            restore.contains(option),
            "vss-restore.1 lacks {option}:\n{restore}"
        );
    }
    assert!(backup.contains(env!("CARGO_PKG_VERSION")), "{backup}");
}

/// Runs `vss watch --json --count 2`, waits for its baseline, runs `vss create --persistent
/// VOLUME` (expecting `create_code`), and returns the two changes the watch printed (it must stop
/// by itself, with 0, within 30 s).
fn watch_around_create(env: &Env, create_code: i32) -> Vec<Value> {
    let mut cmd = env.vss_command();
    cmd.args(["watch", "--json", "--count", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vss watch");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut watch = ChildGuard {
        child,
        name: "vss watch".into(),
    };
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((true, l));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send((false, l));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines: Vec<Value> = Vec::new();
    let mut errors = String::new();
    // The baseline was taken when the note appears on stderr.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((false, l)) if l.contains("watching vssd at") => break,
            Ok((false, l)) => errors.push_str(&format!("{l}\n")),
            Ok((true, l)) => panic!("vss watch printed before its baseline: {l}"),
            Err(e) => panic!("vss watch did not start ({e}): {errors}"),
        }
    }
    let vol = env.volume_str();
    env.vss(&["create", "--persistent", vol.as_str()])
        .expect_code(create_code);
    let mut take = |rx: &mpsc::Receiver<(bool, String)>, lines: &mut Vec<Value>, t: Duration| {
        while let Ok((out, l)) = rx.recv_timeout(t) {
            if out {
                lines.push(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")));
            } else {
                errors.push_str(&format!("{l}\n"));
            }
        }
    };
    let status = loop {
        if let Some(s) = watch.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "vss watch did not stop after 2 changes within 30 s; it printed {lines:?}"
        );
        take(&rx, &mut lines, Duration::from_millis(20));
    };
    // The rest of the output (the readers end with the process).
    take(&rx, &mut lines, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr: {errors}");
    eprintln!("vss watch printed: {lines:?}");
    // The phases vssd reported come as `event` lines, not counted by --count: the writer's
    // Freeze and Thaw and the volume's commit, each with its duration.
    let (events, lines): (Vec<Value>, Vec<Value>) =
        lines.into_iter().partition(|v| v["change"] == "event");
    for (kind, phase) in [
        ("writer", "Freeze"),
        ("writer", "Thaw"),
        ("volume", "Commit"),
        ("operation", "DoSnapshotSet"),
    ] {
        assert!(
            events.iter().any(|e| e["kind"] == kind
                && e["phase"] == phase
                && e["elapsedUs"].as_i64().is_some()),
            "no {kind} {phase} event in {events:?}"
        );
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    for v in &lines {
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        assert!(v.get("sinceLastChangeMs").is_some(), "{v}");
    }
    let snap = lines
        .iter()
        .find(|v| v["kind"] == "snapshot")
        .unwrap_or_else(|| panic!("no snapshot change: {lines:?}"));
    assert_eq!(snap["change"], "appeared", "{snap}");
    assert_eq!(snap["volume"], vol.as_str(), "{snap}");
    uuid::Uuid::parse_str(snap["snapshotId"].as_str().unwrap()).unwrap();
    lines
}

/// A writer vssd had not met yet appears when `vss create` reaches it; the snapshot appears.
#[test]
fn watch_prints_writer_and_snapshot_changes() {
    let Some(mut env) = Env::new(Mode::Daemon) else {
        return;
    };
    env.start_writer("tw", &[]);
    let lines = watch_around_create(&env, 0);
    assert_eq!(env.shadows().len(), 1);
    let writer = lines
        .iter()
        .find(|v| v["kind"] == "writer")
        .unwrap_or_else(|| panic!("no writer change: {lines:?}"));
    assert_eq!(writer["writerName"], "tw", "{writer}");
    assert_eq!(writer["change"], "appeared", "{writer}");
    assert_eq!(writer["stateLabel"], "[1] Stable", "{writer}");
}

/// A known writer that fails PostSnapshot: its state change (Stable to failed) and the snapshot,
/// which is still made.
#[test]
fn watch_prints_a_writer_state_change() {
    let Some(mut env) = Env::new(Mode::Daemon) else {
        return;
    };
    env.start_writer("failer", &["--fail-at", "PostSnapshot"]);
    // vssd meets the writer before the watch starts: Stable in the baseline.
    env.vss(&["list", "writers"]).expect_code(0);
    let lines = watch_around_create(&env, 4);
    let writer = lines
        .iter()
        .find(|v| v["kind"] == "writer")
        .unwrap_or_else(|| panic!("no writer change: {lines:?}"));
    assert_eq!(writer["writerName"], "failer", "{writer}");
    assert_eq!(writer["change"], "changed", "{writer}");
    assert_eq!(writer["previousStateName"], "VSS_WS_STABLE", "{writer}");
    assert_eq!(
        writer["stateName"], "VSS_WS_FAILED_AT_POST_SNAPSHOT",
        "{writer}"
    );
    assert_ne!(writer["failureName"], "S_OK", "{writer}");
}

/// SIGTERM ends a watch with exit code 0; without vssd it refuses with the unreachable code.
#[test]
fn watch_ends_on_sigterm_and_needs_vssd() {
    let Some(env) = Env::new(Mode::Daemon) else {
        return;
    };
    let mut cmd = env.vss_command();
    cmd.args(["watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vss watch");
    let stderr = child.stderr.take().unwrap();
    let mut watch = ChildGuard {
        child,
        name: "vss watch".into(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("vss watch started");
        if l.contains("watching vssd at") {
            break;
        }
    }
    common::signal(watch.child.id(), rustix::process::Signal::TERM);
    let status = loop {
        if let Some(s) = watch.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vss watch ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    let mut cmd = Command::new(vss_bin());
    cmd.arg("--socket")
        .arg(env.path("nothing.sock"))
        .args(["--json", "watch"])
        .env_remove("VSS_LOG");
    let r = common::run_to_end(cmd, common::VSS_TIMEOUT);
    r.expect_code(6);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["exitCode"], 6, "{v}");
}

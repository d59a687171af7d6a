//! End-to-end: vssd, the script writer with a qemu-guest-agent style fsfreeze-hook.d and a vss
//! hook directory, a btrfs volume, and full backups through vss-client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vss_client::{AsyncStatus, ErrorCode};

fn names_for<'a>(lines: &'a [(String, String, f64)], arg: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(_, a, _)| a == arg)
        .map(|(n, _, _)| n.as_str())
        .collect()
}

fn time_of(lines: &[(String, String, f64)], name: &str, arg: &str) -> f64 {
    lines
        .iter()
        .find(|(n, a, _)| n == name && a == arg)
        .unwrap_or_else(|| panic!("no '{name} {arg}' in {lines:?}"))
        .2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_runs_qemu_hooks_in_order_and_vss_hooks_on_every_event() {
    let Some(mut env) = Env::new() else { return };
    let qemu_dir = env.path("fsfreeze-hook.d");
    let vss_dir = env.path("hooks.d");
    let log = env.path("hooks.log");
    let pids = env.path("bg.pids");
    env.pid_files.push(pids.clone());
    for name in ["10-first", "20-second"] {
        write_script(&qemu_dir, name, &qemu_style_script(&log, ":"), 0o755);
    }
    // Like qemu's mysql-flush.sh sample: a background process keeps the inherited stdout open.
    let bg = format!("sleep 30 &\n        echo $! >> {}", pids.display());
    write_script(&qemu_dir, "30-bg", &qemu_style_script(&log, &bg), 0o755);
    // Ignored like qemu's fsfreeze-hook ignores them.
    for name in ["x.sample", "y~", "z.dpkg-old"] {
        write_script(&qemu_dir, name, &qemu_style_script(&log, ":"), 0o755);
    }
    write_script(&qemu_dir, "not-exec", &qemu_style_script(&log, ":"), 0o644);
    for name in ["a-vss", "b-vss"] {
        write_script(&vss_dir, name, &vss_style_script(&log), 0o755);
    }
    write_script(&vss_dir, "c-vss.sample", &vss_style_script(&log), 0o755);

    env.start_vssd(&[]);
    let out = env.path("output");
    env.start_script_writer(
        "hooks",
        &[
            "--name",
            "hooks",
            "--fsfreeze-hook-dir",
            qemu_dir.to_str().unwrap(),
            "--vss-hook-dir",
            vss_dir.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--timeout-ms",
            "10000",
        ],
    );
    let mut bc = env.requester().await;
    // VShadow-style: every selectable top-level component.
    let writers = prepare_backup(&mut bc, &env.volume_str(), true).await;
    assert_eq!(writers.len(), 1, "{writers:?}");
    assert_eq!(writers[0].writer_name, "vss-writer-script");
    assert_eq!(writers[0].components[0].name, "scripts");
    let started = Instant::now();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the background process holding stdout delayed DoSnapshotSet: {took:?}"
    );
    let status = writer_status(&mut bc).await;
    assert!(
        status.iter().all(|s| s.failure == 0 && s.state == 5),
        "{status:?}"
    );
    bc.backup_complete().await.unwrap().await.unwrap();
    drop(bc);
    wait_until(
        Duration::from_secs(30),
        || {
            log_lines(&log)
                .iter()
                .filter(|(_, a, _)| a == "backup-shutdown")
                .count()
                == 2
        },
        "backup-shutdown in the vss hooks",
    )
    .await;

    let lines = log_lines(&log);
    assert_eq!(
        names_for(&lines, "freeze"),
        ["10-first", "20-second", "30-bg", "a-vss", "b-vss"],
        "freeze in name order: {lines:?}"
    );
    assert_eq!(
        names_for(&lines, "thaw"),
        ["b-vss", "a-vss", "30-bg", "20-second", "10-first"],
        "thaw in reverse order: {lines:?}"
    );
    // The background script returned at once although its `sleep 30` holds its stdout.
    let gap = time_of(&lines, "a-vss", "freeze") - time_of(&lines, "30-bg", "freeze");
    assert!(gap < 3.0, "the next script waited {gap} s after 30-bg");
    assert!(
        std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse::<u32>()
            .is_ok()
    );
    assert!(out.join("freeze-fsfreeze-30-bg.out").exists());

    for ignored in ["x.sample", "y~", "z.dpkg-old", "not-exec", "c-vss.sample"] {
        assert!(
            lines.iter().all(|(n, _, _)| n != ignored),
            "{ignored} ran: {lines:?}"
        );
    }
    // qemu-style scripts only ever get freeze/thaw.
    assert!(
        lines.iter().all(|(_, a, _)| !a.starts_with("unexpected")),
        "{lines:?}"
    );
    let a_events: Vec<&str> = lines
        .iter()
        .filter(|(n, _, _)| n == "a-vss")
        .map(|(_, a, _)| a.as_str())
        .collect();
    assert_eq!(
        a_events,
        [
            "prepare-backup",
            "prepare-snapshot",
            "freeze",
            "thaw",
            "post-snapshot",
            "backup-complete",
            "backup-shutdown"
        ]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let vol = env.volume_str();
    let prep = text
        .lines()
        .find(|l| l.starts_with("a-vss prepare-snapshot"))
        .unwrap();
    assert!(prep.contains("type=VSS_BT_FULL"), "{prep}");
    assert!(prep.contains(&format!("vols={vol},")), "{prep}");
    assert!(!prep.contains("set= "), "{prep}");
    assert!(
        prep.contains("home=unset"),
        "the environment is cleared: {prep}"
    );
}

/// The live processes (pid and stat line) whose process group is `pgid` (from /proc).
fn processes_in_group(pgid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // A zombie (Z) is dead, only not reaped yet by its new parent.
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) && fields[0] != "Z" {
            found.push(format!("{pid} {stat}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_freeze_script_times_out_and_earlier_scripts_thaw() {
    let Some(mut env) = Env::new() else { return };
    let qemu_dir = env.path("fsfreeze-hook.d");
    let log = env.path("hooks.log");
    write_script(&qemu_dir, "10-ok", &qemu_style_script(&log, ":"), 0o755);
    let pgid_file = env.path("hang.pgid");
    let hang = format!("echo $$ > {}\n        sleep 600", pgid_file.display());
    write_script(&qemu_dir, "20-hang", &qemu_style_script(&log, &hang), 0o755);
    write_script(&qemu_dir, "30-never", &qemu_style_script(&log, ":"), 0o755);
    env.start_vssd(&[]);
    env.start_script_writer(
        "hang",
        &[
            "--name",
            "hang",
            "--fsfreeze-hook-dir",
            qemu_dir.to_str().unwrap(),
            "--output-dir",
            env.path("output").to_str().unwrap(),
            "--timeout-ms",
            "500",
        ],
    );
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true).await;
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    match &st {
        AsyncStatus::Failed(e) => assert_eq!(e.code, ErrorCode::WriterErrorTimeout, "{e:?}"),
        other => panic!("DoSnapshotSet should fail, got {other:?}"),
    }
    let lines = log_lines(&log);
    assert_eq!(
        names_for(&lines, "freeze"),
        ["10-ok", "20-hang"],
        "{lines:?}"
    );
    assert_eq!(names_for(&lines, "thaw"), ["10-ok"], "unwound: {lines:?}");
    let frozen_for = time_of(&lines, "10-ok", "thaw") - time_of(&lines, "20-hang", "freeze");
    assert!(
        (0.4..2.5).contains(&frozen_for),
        "a 500 ms script timeout took {frozen_for} s"
    );
    let status = writer_status(&mut bc).await;
    assert_eq!(
        status[0].state_name, "VSS_WS_FAILED_AT_FREEZE",
        "{status:?}"
    );
    assert_eq!(status[0].failure_name, "VSS_E_WRITERERROR_TIMEOUT");
    // The script ran in its own process group, and the whole group (its `sleep 600` too) was
    // killed.
    let pgid: u32 = std::fs::read_to_string(&pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut left = processes_in_group(pgid);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = processes_in_group(pgid);
    }
    assert!(left.is_empty(), "process group {pgid} still has {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_freeze_script_fails_the_writer_with_its_stderr() {
    let Some(mut env) = Env::new() else { return };
    let qemu_dir = env.path("fsfreeze-hook.d");
    let log = env.path("hooks.log");
    write_script(&qemu_dir, "10-ok", &qemu_style_script(&log, ":"), 0o755);
    write_script(
        &qemu_dir,
        "20-fail",
        &qemu_style_script(&log, "echo boom >&2\n        exit 3"),
        0o755,
    );
    write_script(&qemu_dir, "30-never", &qemu_style_script(&log, ":"), 0o755);
    env.start_vssd(&[]);
    env.start_script_writer(
        "fail",
        &[
            "--name",
            "fail",
            "--fsfreeze-hook-dir",
            qemu_dir.to_str().unwrap(),
            "--output-dir",
            env.path("output").to_str().unwrap(),
        ],
    );
    let mut bc = env.requester().await;
    // Non-component mode: the writer takes part without being selected.
    prepare_backup(&mut bc, &env.volume_str(), false).await;
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    match &st {
        AsyncStatus::Failed(e) => {
            assert_eq!(e.code, ErrorCode::WriterErrorNonRetryable, "{e:?}")
        }
        other => panic!("DoSnapshotSet should fail, got {other:?}"),
    }
    let lines = log_lines(&log);
    assert_eq!(
        names_for(&lines, "freeze"),
        ["10-ok", "20-fail"],
        "{lines:?}"
    );
    assert_eq!(names_for(&lines, "thaw"), ["10-ok"], "unwound: {lines:?}");
    let status = writer_status(&mut bc).await;
    let s = &status[0];
    assert_eq!(s.state_name, "VSS_WS_FAILED_AT_FREEZE", "{status:?}");
    assert_eq!(s.failure_name, "VSS_E_WRITERERROR_NONRETRYABLE");
    let msg = s.failure_message.as_deref().unwrap_or("");
    assert!(msg.contains("boom"), "{msg}");
    assert!(msg.contains("20-fail"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_a_successful_freeze_thaws_and_aborts_from_a_config_file() {
    let Some(mut env) = Env::new() else { return };
    let log = env.path("hooks.log");
    let good_qemu = env.path("good/fsfreeze-hook.d");
    let good_vss = env.path("good/hooks.d");
    let bad_vss = env.path("bad/hooks.d");
    write_script(&good_qemu, "10-q", &qemu_style_script(&log, ":"), 0o755);
    write_script(&good_qemu, "20-q", &qemu_style_script(&log, ":"), 0o755);
    write_script(&good_vss, "a-vss", &vss_style_script(&log), 0o755);
    // The other instance vetoes Freeze, a little later, so the set aborts after `good` froze.
    write_script(
        &bad_vss,
        "veto",
        "#!/bin/sh\n[ \"$1\" = freeze ] || exit 0\nsleep 0.3\necho vetoed >&2\nexit 1\n",
        0o755,
    );
    let config = env.path("writers.toml");
    std::fs::write(
        &config,
        format!(
            r#"
writers_dir = "{writers}"

[[postgresql]]
name = "not-mine"
data_directory = "/nowhere"

[[script]]
name = "good"
fsfreeze_hook_dir = "{good_qemu}"
vss_hook_dir = "{good_vss}"
output_dir = "{out}/good"

[[script]]
name = "bad"
vss_hook_dir = "{bad_vss}"
output_dir = "{out}/bad"
timeout_ms = 5000
"#,
            writers = env.writers_dir().display(),
            good_qemu = good_qemu.display(),
            good_vss = good_vss.display(),
            bad_vss = bad_vss.display(),
            out = env.path("output").display(),
        ),
    )
    .unwrap();
    env.start_vssd(&[]);
    env.start_script_writer("good", &["--config", config.to_str().unwrap()]);
    let bad_sock = env.writers_dir().join("bad.sock");
    wait_for(Duration::from_secs(10), || bad_sock.exists(), "bad.sock");
    let mut bc = env.requester().await;
    let writers = prepare_backup(&mut bc, &env.volume_str(), true).await;
    assert_eq!(writers.len(), 2, "{writers:?}");
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    match &st {
        AsyncStatus::Failed(e) => {
            assert_eq!(e.code, ErrorCode::WriterErrorNonRetryable, "{e:?}");
            assert!(e.message.contains("vetoed"), "{e:?}");
        }
        other => panic!("DoSnapshotSet should fail, got {other:?}"),
    }
    wait_until(
        Duration::from_secs(20),
        || {
            log_lines(&log)
                .iter()
                .any(|(n, a, _)| n == "10-q" && a == "thaw")
        },
        "10-q thaw",
    )
    .await;
    let seq: Vec<(String, String)> = log_lines(&log)
        .into_iter()
        .map(|(n, a, _)| (n, a))
        .filter(|(_, a)| a != "prepare-backup" && a != "prepare-snapshot")
        .collect();
    let want: Vec<(String, String)> = [
        ("10-q", "freeze"),
        ("20-q", "freeze"),
        ("a-vss", "freeze"),
        ("a-vss", "abort"),
        ("20-q", "thaw"),
        ("10-q", "thaw"),
    ]
    .iter()
    .map(|(n, a)| (n.to_string(), a.to_string()))
    .collect();
    assert_eq!(seq, want);
    let status = writer_status(&mut bc).await;
    let bad = status.iter().find(|s| s.instance_name == "bad").unwrap();
    assert_eq!(bad.state_name, "VSS_WS_FAILED_AT_FREEZE", "{status:?}");
    assert!(
        bad.failure_message
            .as_deref()
            .unwrap_or("")
            .contains("vetoed"),
        "{bad:?}"
    );
}

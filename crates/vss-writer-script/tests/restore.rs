//! End-to-end restore sessions with the script writer: a backup of its `scripts` component is
//! saved (SaveAsXml), then restored (InitializeForRestore, SetSelectedForRestore, PreRestore,
//! AddAlternativeLocationMapping, SetFileRestoreStatus, PostRestore). The vss hook scripts get
//! `pre-restore` in name order and `post-restore` in reverse, with the restore environment; a
//! failing pre-restore script fails the writer at PreRestore with its stderr.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use vss_client::{BackupComponents, ComponentRef, ComponentType, FileRestoreStatus};

/// A vss hook script that logs "<script> <arg> <time>" to `log`, writes its `VSS_*`
/// environment to `<dumps>/<script>.<arg>.env`, and runs `extra` (with `$1` the event).
fn restore_script(log: &Path, dumps: &Path, extra: &str) -> String {
    format!(
        r#"#!/bin/sh
NAME=$(basename "$0")
echo "$NAME $1 $(date +%s.%N)" >> {log}
env | grep '^VSS_' | sort > "{dumps}/$NAME.$1.env"
{extra}
"#,
        log = log.display(),
        dumps = dumps.display()
    )
}

/// The `VSS_*` variables a script saw for `arg`.
fn dumped_env(dumps: &Path, script: &str, arg: &str) -> BTreeMap<String, String> {
    let file = dumps.join(format!("{script}.{arg}.env"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn events_of(log: &Path, arg: &str) -> Vec<String> {
    log_lines(log)
        .into_iter()
        .filter(|(_, a, _)| a == arg)
        .map(|(n, _, _)| n)
        .collect()
}

/// Starts the writer `hooks` with a vss hook directory (and an fsfreeze-hook.d, whose scripts
/// must never see a restore event).
fn start_writer(env: &mut Env, vss_dir: &Path, qemu_dir: &Path) {
    env.start_vssd(&[]);
    let out = env.path("output");
    env.start_script_writer(
        "hooks",
        &[
            "--name",
            "hooks",
            "--vss-hook-dir",
            vss_dir.to_str().unwrap(),
            "--fsfreeze-hook-dir",
            qemu_dir.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--timeout-ms",
            "10000",
        ],
    );
}

/// A full component-mode backup of the writer's `scripts` component, whose vss hook directory
/// has `scripts` scripts; returns the saved BCD.
async fn backup(env: &Env, log: &Path, scripts: usize) -> String {
    let mut bc = env.requester().await;
    let writers = prepare_backup(&mut bc, &env.volume_str(), true).await;
    assert_eq!(writers.len(), 1, "{writers:?}");
    // Restore hooks exist, so the writer asks for restore events.
    assert_eq!(
        writers[0].writer_restore,
        vss_model::WriterRestore::Always,
        "{writers:?}"
    );
    assert!(writers[0].components[0].selectable_for_restore);
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.backup_complete().await.unwrap().await.unwrap();
    let bcd = bc.save_as_xml().await.expect("SaveAsXml");
    drop(bc);
    // The backup session's last hooks are done before the restore starts.
    wait_until(
        Duration::from_secs(30),
        || events_of(log, "backup-shutdown").len() == scripts,
        "backup-shutdown in the vss hooks",
    )
    .await;
    bcd
}

/// A restore session up to (not including) PreRestore, with `scripts` selected.
async fn restore_session(env: &Env, bcd: &str) -> (BackupComponents, ComponentRef) {
    let mut bc = env.requester().await;
    bc.initialize_for_restore(bcd)
        .await
        .expect("InitializeForRestore");
    bc.gather_writer_metadata()
        .await
        .expect("GatherWriterMetadata")
        .await
        .expect("GatherWriterMetadata's operation");
    let writers = bc.get_writer_metadata().await.unwrap();
    let component = ComponentRef {
        writer_id: writers[0].writer_id,
        component_type: ComponentType::FileGroup,
        logical_path: String::new(),
        name: "scripts".into(),
    };
    bc.set_selected_for_restore(&component, true, None)
        .await
        .expect("SetSelectedForRestore");
    (bc, component)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_runs_pre_and_post_restore_hooks_in_order_with_the_restore_environment() {
    let Some(mut env) = Env::new() else { return };
    let vss_dir = env.path("hooks.d");
    let qemu_dir = env.path("fsfreeze-hook.d");
    let log = env.path("hooks.log");
    let dumps = env.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    for name in ["a-vss", "b-vss"] {
        write_script(&vss_dir, name, &restore_script(&log, &dumps, ""), 0o755);
    }
    write_script(&qemu_dir, "10-q", &qemu_style_script(&log, ":"), 0o755);
    start_writer(&mut env, &vss_dir, &qemu_dir);
    let bcd = backup(&env, &log, 2).await;
    let backup_lines = log_lines(&log).len();

    let (mut bc, component) = restore_session(&env, &bcd).await;
    bc.set_restore_options(&component, "mode=replace")
        .await
        .expect("SetRestoreOptions");
    bc.pre_restore().await.unwrap().await.expect("PreRestore");
    let status = writer_status(&mut bc).await;
    assert_eq!(status[0].state_name, "VSS_WS_STABLE", "{status:?}");
    // The requester copies the files back, one file set elsewhere.
    bc.add_alternative_location_mapping(&component, "/srv/db", "*.db", true, "/restore/my db")
        .await
        .expect("AddAlternativeLocationMapping");
    bc.add_alternative_location_mapping(&component, "/srv/logs", "*", false, "/restore/logs")
        .await
        .expect("AddAlternativeLocationMapping");
    bc.set_file_restore_status(&component, FileRestoreStatus::All)
        .await
        .expect("SetFileRestoreStatus");
    bc.post_restore().await.unwrap().await.expect("PostRestore");
    let status = writer_status(&mut bc).await;
    assert_eq!(status[0].state_name, "VSS_WS_STABLE", "{status:?}");
    assert_eq!(status[0].failure, 0, "{status:?}");

    let restore: Vec<(String, String)> = log_lines(&log)[backup_lines..]
        .iter()
        .map(|(n, a, _)| (n.clone(), a.clone()))
        .collect();
    let want: Vec<(String, String)> = [
        ("a-vss", "pre-restore"),
        ("b-vss", "pre-restore"),
        ("b-vss", "post-restore"),
        ("a-vss", "post-restore"),
    ]
    .iter()
    .map(|(n, a)| (n.to_string(), a.to_string()))
    .collect();
    // Name order, then the reverse; the fsfreeze-hook.d script is not run.
    assert_eq!(restore, want);

    let pre = dumped_env(&dumps, "a-vss", "pre-restore");
    assert_eq!(pre["VSS_EVENT"], "pre-restore");
    assert_eq!(pre["VSS_COMPONENTS"], "scripts");
    assert_eq!(pre["VSS_RESTORE_OPTIONS"], "mode=replace");
    assert_eq!(pre["VSS_ADDITIONAL_RESTORES"], "0");
    assert_eq!(pre["VSS_RESTORE_DESTINATIONS"], "0");
    assert_eq!(pre["VSS_BACKUP_TYPE"], "VSS_BT_FULL");
    for unset in [
        "VSS_RESTORE_STATUS",
        "VSS_RESTORE_TARGET",
        "VSS_RESTORE_SOURCE_1",
    ] {
        assert!(!pre.contains_key(unset), "{unset} in {pre:?}");
    }
    let post = dumped_env(&dumps, "b-vss", "post-restore");
    let expected = [
        ("VSS_EVENT", "post-restore"),
        ("VSS_COMPONENTS", "scripts"),
        ("VSS_RESTORE_OPTIONS", "mode=replace"),
        ("VSS_RESTORE_STATUS", "VSS_RS_ALL"),
        ("VSS_RESTORE_TARGET", "VSS_RT_ALTERNATE"),
        ("VSS_RESTORE_DESTINATIONS", "2"),
        ("VSS_RESTORE_SOURCE_1", "/srv/db"),
        ("VSS_RESTORE_FILESPEC_1", "*.db"),
        ("VSS_RESTORE_RECURSIVE_1", "yes"),
        ("VSS_RESTORE_DESTINATION_1", "/restore/my db"),
        ("VSS_RESTORE_SOURCE_2", "/srv/logs"),
        ("VSS_RESTORE_FILESPEC_2", "*"),
        ("VSS_RESTORE_RECURSIVE_2", "no"),
        ("VSS_RESTORE_DESTINATION_2", "/restore/logs"),
    ];
    for (k, v) in expected {
        assert_eq!(post.get(k).map(String::as_str), Some(v), "{k} in {post:?}");
    }
    assert_eq!(
        dumped_env(&dumps, "a-vss", "post-restore")["VSS_RESTORE_STATUS"],
        "VSS_RS_ALL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_restore_script_fails_the_writer_and_unwinds() {
    let Some(mut env) = Env::new() else { return };
    let vss_dir = env.path("hooks.d");
    let qemu_dir = env.path("fsfreeze-hook.d");
    let log = env.path("hooks.log");
    let dumps = env.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    write_script(&vss_dir, "a-vss", &restore_script(&log, &dumps, ""), 0o755);
    let fail = "if [ \"$1\" = pre-restore ]; then echo cannot stop the service >&2; exit 4; fi";
    write_script(
        &vss_dir,
        "b-fail",
        &restore_script(&log, &dumps, fail),
        0o755,
    );
    write_script(&vss_dir, "c-vss", &restore_script(&log, &dumps, ""), 0o755);
    start_writer(&mut env, &vss_dir, &qemu_dir);
    let bcd = backup(&env, &log, 3).await;
    let backup_lines = log_lines(&log).len();

    let (mut bc, component) = restore_session(&env, &bcd).await;
    // A writer's failure is the writer's, not the operation's.
    bc.pre_restore().await.unwrap().await.expect("PreRestore");
    let status = writer_status(&mut bc).await;
    let s = &status[0];
    assert_eq!(s.state_name, "VSS_WS_FAILED_AT_PRE_RESTORE", "{status:?}");
    assert_eq!(
        s.failure_name, "VSS_E_WRITERERROR_NONRETRYABLE",
        "{status:?}"
    );
    let msg = s.failure_message.as_deref().unwrap_or("");
    assert!(msg.contains("cannot stop the service"), "{msg}");
    assert!(msg.contains("b-fail"), "{msg}");

    // The requester restores nothing and goes on; the failed writer gets no PostRestore.
    bc.set_file_restore_status(&component, FileRestoreStatus::None)
        .await
        .unwrap();
    bc.post_restore().await.unwrap().await.expect("PostRestore");
    let status = writer_status(&mut bc).await;
    assert_eq!(
        status[0].state_name, "VSS_WS_FAILED_AT_PRE_RESTORE",
        "{status:?}"
    );
    drop(bc);

    let restore: Vec<(String, String)> = log_lines(&log)[backup_lines..]
        .iter()
        .map(|(n, a, _)| (n.clone(), a.clone()))
        .collect();
    let want: Vec<(String, String)> = [
        ("a-vss", "pre-restore"),
        ("b-fail", "pre-restore"),
        // Unwound: the script that prepared is given post-restore; c-vss never ran.
        ("a-vss", "post-restore"),
    ]
    .iter()
    .map(|(n, a)| (n.to_string(), a.to_string()))
    .collect();
    assert_eq!(restore, want);
    let unwind = dumped_env(&dumps, "a-vss", "post-restore");
    assert_eq!(unwind["VSS_EVENT"], "post-restore");
    assert!(!unwind.contains_key("VSS_RESTORE_STATUS"), "{unwind:?}");
}

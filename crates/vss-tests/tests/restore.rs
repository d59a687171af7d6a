//! Restore sessions through vssd with real writer processes (vss-model.md §2.4, §5): a backup's
//! saved BCD is loaded with InitializeForRestore; only writers with components selected for
//! restore get PreRestore and PostRestore, as their declared writerRestore says (never, if
//! replace fails, always); the events carry the selected components with the requester's
//! restore options, file restore status and alternate locations; a writer failing PreRestore
//! ends FAILED_AT_PRE_RESTORE and gets no PostRestore; restore sessions send no
//! BackupShutdown; backup calls in a restore session are VSS_E_BAD_STATE.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use vss_client::{ComponentRef, ErrorCode, FileRestoreStatus, RestoreType};

const QUICK: Duration = Duration::from_secs(30);

/// Makes a backup of every writer's components and returns its saved BCD.
async fn backup_bcd(env: &Env) -> String {
    let mut bc = env.requester().await;
    prepare_backup(&mut bc, &env.volume_str(), true, None).await;
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    bc.backup_complete().await.unwrap().await.unwrap();
    bc.save_as_xml().await.unwrap()
}

/// The restore events writer `name` logged, with their parameters.
fn restore_events(env: &Env, name: &str) -> Vec<(String, Value)> {
    env.raw_events(name)
        .into_iter()
        .filter_map(|e| {
            let ev = e["event"].as_str()?.to_owned();
            ev.ends_with("Restore").then(|| (ev, e["params"].clone()))
        })
        .collect()
}

fn component_of(writers: &[vss_client::WriterMetadata], name: &str) -> ComponentRef {
    let w = writers
        .iter()
        .find(|w| w.writer_name == name)
        .unwrap_or_else(|| panic!("writer {name}"));
    let c = &w.components[0];
    ComponentRef {
        writer_id: w.writer_id,
        component_type: c.component_type,
        logical_path: c.logical_path.clone(),
        name: c.name.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_events_go_to_the_selected_writers_as_they_declared() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    for (name, when) in [
        ("always", "always"),
        ("never", "never"),
        ("ifrf", "if-replace-fails"),
        ("unselected", "always"),
    ] {
        let dir = vol.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        env.start_writer(
            name,
            &[
                "--component",
                &component(name, &dir),
                "--writer-restore",
                when,
            ],
        );
    }
    let bcd = backup_bcd(&env).await;

    let mut bc = env.requester().await;
    bc.initialize_for_restore(&bcd).await.unwrap();
    bc.set_restore_state(RestoreType::ByCopy).await.unwrap();
    // Backup calls are refused in a restore session.
    let e = bc.start_snapshot_set().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "{e}");
    // Selection needs GatherWriterMetadata first.
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let writers = bc.get_writer_metadata().await.unwrap();
    let [always, never, ifrf] = ["always", "never", "ifrf"].map(|n| component_of(&writers, n));
    for c in [&always, &never, &ifrf] {
        bc.set_selected_for_restore(c, true, None).await.unwrap();
    }
    bc.set_restore_options(&always, "fast=1").await.unwrap();
    // A component that is not in the BCD.
    let missing = ComponentRef {
        name: "nope".into(),
        ..always.clone()
    };
    let e = bc
        .set_selected_for_restore(&missing, true, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ObjectNotFound), "{e}");
    // The file status is only for after PreRestore.
    let e = bc
        .set_file_restore_status(&always, FileRestoreStatus::All)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadState), "{e}");

    bc.pre_restore().await.unwrap().await.unwrap();
    let pre = restore_events(&env, "always");
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_eq!(pre[0].0, "PreRestore");
    let comps = pre[0].1["components"].as_array().unwrap();
    assert_eq!(comps.len(), 1, "{comps:?}");
    assert_eq!(comps[0]["name"], always.name.as_str());
    assert_eq!(comps[0]["restoreOptions"], "fast=1");
    for quiet in ["never", "ifrf", "unselected"] {
        assert!(
            restore_events(&env, quiet).is_empty(),
            "{quiet} got PreRestore"
        );
    }

    bc.add_alternative_location_mapping(
        &always,
        &vol.join("always").display().to_string(),
        "*",
        true,
        "/restore/always",
    )
    .await
    .unwrap();
    bc.set_file_restore_status(&always, FileRestoreStatus::All)
        .await
        .unwrap();
    bc.set_file_restore_status(&never, FileRestoreStatus::Failed)
        .await
        .unwrap();
    bc.set_file_restore_status(&ifrf, FileRestoreStatus::Failed)
        .await
        .unwrap();
    bc.post_restore().await.unwrap().await.unwrap();

    let post = restore_events(&env, "always");
    assert_eq!(
        post.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        ["PreRestore", "PostRestore"]
    );
    let c = &post[1].1["components"][0];
    assert_eq!(c["fileRestoreStatus"], "VSS_RS_ALL", "{c}");
    assert_eq!(c["restoreTarget"], "VSS_RT_ALTERNATE", "{c}");
    assert_eq!(c["alternateLocations"][0]["destination"], "/restore/always");
    // IF_REPLACE_FAILS: its files could not all be restored, so it gets PostRestore only.
    let ifrf_events = restore_events(&env, "ifrf");
    assert_eq!(ifrf_events.len(), 1, "{ifrf_events:?}");
    assert_eq!(ifrf_events[0].0, "PostRestore");
    assert_eq!(
        ifrf_events[0].1["components"][0]["fileRestoreStatus"],
        "VSS_RS_FAILED"
    );
    assert!(restore_events(&env, "never").is_empty());
    assert!(restore_events(&env, "unselected").is_empty());

    bc.gather_writer_status().await.unwrap().await.unwrap();
    for s in bc.get_writer_status().await.unwrap() {
        assert_eq!(s.state_name, "VSS_WS_STABLE", "{s:?}");
    }
    // The session ends: no BackupShutdown for a restore. A later backup session's events
    // show that vssd went on (and that nothing was queued for these writers meanwhile).
    drop(bc);
    let shutdowns_before: usize = ["always", "never", "ifrf", "unselected"]
        .iter()
        .map(|n| {
            env.event_names(n)
                .iter()
                .filter(|e| *e == "BackupShutdown")
                .count()
        })
        .sum();
    let mut probe = env.requester().await;
    probe.initialize_for_backup(None).await.unwrap();
    probe.gather_writer_metadata().await.unwrap().await.unwrap();
    drop(probe);
    env.wait_for_last_event("always", "Identify", QUICK).await;
    let shutdowns_after: usize = ["always", "never", "ifrf", "unselected"]
        .iter()
        .map(|n| {
            env.event_names(n)
                .iter()
                .filter(|e| *e == "BackupShutdown")
                .count()
        })
        .sum();
    assert_eq!(
        shutdowns_before, shutdowns_after,
        "a restore session sent BackupShutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_failing_pre_restore_gets_no_post_restore() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    let dir = vol.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    env.start_writer(
        "bad",
        &[
            "--component",
            &component("bad", &dir),
            "--fail-at",
            "PreRestore:NONRETRYABLE",
        ],
    );
    let bcd = backup_bcd(&env).await;

    let mut bc = env.requester().await;
    // A document that is not a BCD.
    let e = bc.initialize_for_restore("<nope/>").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidXmlDocument), "{e}");
    let mut bc = env.requester().await;
    bc.initialize_for_restore(&bcd).await.unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    let writers = bc.get_writer_metadata().await.unwrap();
    let bad = component_of(&writers, "bad");
    bc.set_selected_for_restore(&bad, true, None).await.unwrap();
    // The operation succeeds; the writer's failure is its status.
    bc.pre_restore().await.unwrap().await.unwrap();
    bc.set_file_restore_status(&bad, FileRestoreStatus::All)
        .await
        .unwrap();
    bc.post_restore().await.unwrap().await.unwrap();
    bc.gather_writer_status().await.unwrap().await.unwrap();
    let status = bc.get_writer_status().await.unwrap();
    let s = status.iter().find(|s| s.writer_name == "bad").unwrap();
    assert_eq!(s.state_name, "VSS_WS_FAILED_AT_PRE_RESTORE", "{s:?}");
    assert_eq!(s.failure_name, "VSS_E_WRITERERROR_NONRETRYABLE", "{s:?}");
    let events: Vec<String> = restore_events(&env, "bad")
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(
        events,
        ["PreRestore"],
        "PostRestore went to a failed writer"
    );
}

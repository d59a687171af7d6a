//! vss.Admin: vssd remembers each writer instance's last state and failure for listing, and
//! lists its providers.

mod common;

use common::*;
use serde_json::json;
use vss_client::{AsyncStatus, BackupType, ComponentType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_writers_shows_last_states_and_list_providers_shows_btrfs() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    let comp = format!(":c:selectable:{}", vol.display());
    env.start_writer("good", &["--component", &comp]);
    env.start_writer(
        "failing",
        &["--component", &comp, "--fail-at", "Thaw:NONRETRYABLE"],
    );
    env.start_writer("invalid", &["--component", &comp, "--level", "auto"]);

    // Before any session vssd has met no writer.
    let empty = raw_call(&env.socket(), "vss.Admin.ListWriters", json!({}))
        .await
        .unwrap();
    assert_eq!(empty["writers"], json!([]));

    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await
        .unwrap();
    bc.gather_writer_metadata().await.unwrap().await.unwrap();
    for w in bc.get_writer_metadata().await.unwrap() {
        bc.add_component(
            w.instance_id,
            w.writer_id,
            ComponentType::FileGroup,
            "",
            "c",
        )
        .await
        .unwrap();
    }
    bc.start_snapshot_set().await.unwrap();
    bc.add_to_snapshot_set(vol.to_str().unwrap(), None)
        .await
        .unwrap();
    bc.prepare_for_backup().await.unwrap().await.unwrap();
    let st = bc
        .do_snapshot_set()
        .await
        .unwrap()
        .wait(None)
        .await
        .unwrap();
    assert!(
        matches!(st, AsyncStatus::Failed(ref e) if e.code == vss_client::ErrorCode::WriterErrorNonRetryable),
        "{st:?}"
    );
    drop(bc);

    // A separate connection, no session: the last states as that session left them.
    let list = raw_call(&env.socket(), "vss.Admin.ListWriters", json!({}))
        .await
        .unwrap();
    let by_name = |n: &str| {
        list["writers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["writerName"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} not listed: {list}"))
    };
    let good = by_name("good");
    assert_eq!(
        (good["state"].as_u64(), good["stateName"].as_str()),
        (Some(1), Some("VSS_WS_STABLE")),
        "{good}"
    );
    let failing = by_name("failing");
    assert_eq!(failing["stateName"], "VSS_WS_FAILED_AT_THAW", "{failing}");
    assert_eq!(failing["failureName"], "VSS_E_WRITERERROR_NONRETRYABLE");
    assert_eq!(failing["failure"], 0x8004_23F4u32);
    let invalid = by_name("invalid");
    assert_eq!(
        invalid["stateName"], "VSS_WS_FAILED_AT_IDENTIFY",
        "{invalid}"
    );

    let providers = raw_call(&env.socket(), "vss.Admin.ListProviders", json!({}))
        .await
        .unwrap();
    let p = &providers["providers"][0];
    assert_eq!(p["name"], "btrfs");
    assert_eq!(p["providerType"], "VSS_PROV_SOFTWARE");
    assert_eq!(p["providerId"], "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01");

    // A later session that only gathers metadata (as `vss list writers` does) does not erase
    // the remembered failure.
    let mut lister = env.requester().await;
    lister.initialize_for_backup(None).await.unwrap();
    lister
        .gather_writer_metadata()
        .await
        .unwrap()
        .await
        .unwrap();
    drop(lister);

    // The requester library says the same, without a session.
    let mut admin = env.requester().await;
    let via_client = admin.list_providers().await.unwrap();
    assert_eq!(via_client[0].name, "btrfs");
    assert_eq!(
        via_client.len(),
        providers["providers"].as_array().unwrap().len()
    );
    let writers = admin.list_writers().await.unwrap();
    assert_eq!(writers.len(), list["writers"].as_array().unwrap().len());
    assert!(
        writers
            .iter()
            .any(|w| w.writer_name == "failing" && w.state_name == "VSS_WS_FAILED_AT_THAW")
    );

    // The event log: every writer event with its outcome and duration, the commit, the end of
    // each operation; `after` pages through it.
    let (events, last) = admin.events(None).await.unwrap();
    assert!(last >= events.len() as i64 && !events.is_empty());
    let thaw = events
        .iter()
        .find(|e| e.kind == "writer" && e.subject == "failing" && e.phase == "Thaw")
        .expect("the failing writer's Thaw");
    assert_eq!(thaw.outcome, "VSS_E_WRITERERROR_NONRETRYABLE");
    assert!(events.iter().any(|e| e.kind == "operation"
        && e.phase == "DoSnapshotSet"
        && e.outcome == "VSS_E_WRITERERROR_NONRETRYABLE"));
    assert!(
        events
            .iter()
            .any(|e| e.kind == "volume" && e.phase == "Commit")
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let (later, same_last) = admin.events(Some(last)).await.unwrap();
    assert!(later.is_empty());
    assert_eq!(same_last, last);

    let info = raw_call(&env.socket(), "org.varlink.service.GetInfo", json!({}))
        .await
        .unwrap();
    assert_eq!(
        info["interfaces"],
        json!(["org.varlink.service", "vss.Requester", "vss.Admin"])
    );
    let idl = raw_call(
        &env.socket(),
        "org.varlink.service.GetInterfaceDescription",
        json!({"interface": "vss.Admin"}),
    )
    .await
    .unwrap();
    assert!(
        idl["description"]
            .as_str()
            .unwrap()
            .contains("method ListWriters()")
    );
    let err = raw_call(&env.socket(), "vss.Nope.Method", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.0, "org.varlink.service.InterfaceNotFound");
}

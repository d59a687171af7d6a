//! `vss backup --save-bcd/--save-dir` and `vss restore` as processes, with `vss-test-writer`
//! logging the events it receives: the documents saved, the restore call order seen by the
//! writer against the restore COMMAND (PreRestore before it, PostRestore after it), the file
//! restore status from its exit code, mappings, a writer that fails PreRestore, and bad BCDs.
//! Root only (skipped otherwise). Needs `vssd` and `vss-test-writer` built:
//! `cargo build -p vss-daemon -p vss-tests --bins`.

mod common;

use std::path::Path;

use common::{Env, Mode};
use serde_json::Value;

/// The events of `log` from the last `Identify` on (one session's), by name.
fn last_session(env: &Env, name: &str) -> Vec<(String, Value)> {
    let all = env.events(name);
    let start = all
        .iter()
        .rposition(|(e, _)| e == "Identify")
        .unwrap_or_else(|| panic!("{name} was never identified: {all:?}"));
    all[start..].to_vec()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(e, _)| e.as_str()).collect()
}

fn event<'a>(events: &'a [(String, Value)], name: &str) -> &'a Value {
    &events
        .iter()
        .find(|(e, _)| e == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(events)))
        .1
}

/// A backup of the volume with `tw` (backup stamp "s1", so its metadata is "meta-comp")
/// saving the documents in `out/saved` and `out/b.xml`; the COMMAND copies the data and keeps
/// the BCD as it was when it ran.
fn backup_with_documents(env: &Env) -> std::path::PathBuf {
    let vol = env.volume_str();
    let saved = env.path("out/saved");
    let bcd = env.path("out/b.xml");
    let v = env.vss_json(
        &[
            "backup",
            "--save-dir",
            saved.to_str().unwrap(),
            "--save-bcd",
            bcd.to_str().unwrap(),
            &vol,
            "--",
            "sh",
            "-c",
            &format!(
                "cp -a \"$VSS_SNAPSHOT_1\"/data {copy} && cp \"$VSS_BCD\" {during} && test \"$VSS_SAVE_DIR\" = {saved}",
                copy = env.path("out/copy").display(),
                during = env.path("out/during.xml").display(),
                saved = saved.display(),
            ),
        ],
        0,
    );
    assert_eq!(v["command"]["status"], 0, "{v}");
    assert_eq!(
        v["saved"]["bcd"],
        serde_json::json!([
            bcd.to_str().unwrap(),
            saved.join("bcd.xml").to_str().unwrap()
        ]),
        "{v}"
    );
    assert_eq!(
        v["saved"]["wmd"],
        serde_json::json!([saved.join("wmd-tw.xml").to_str().unwrap()]),
        "{v}"
    );
    bcd
}

fn component(xml: &str) -> vss_model::bcd::BcdComponent {
    let doc = vss_model::bcd::BackupComponents::from_xml(xml).expect("a BCD");
    doc.writers[0].components[0].clone()
}

fn restore_sequence(mode: Mode) {
    let Some(mut env) = Env::new(mode) else {
        return;
    };
    env.start_writer("tw", &["--backup-stamp", "s1"]);
    let vol = env.volume_str();
    let bcd = backup_with_documents(&env);

    // The documents: the final BCD has the writer's metadata and the backup's result; the
    // copy the COMMAND took was written before it ran (no result yet); the WMD is the writer's.
    let fin = component(&std::fs::read_to_string(&bcd).unwrap());
    assert_eq!(fin.name, "comp");
    assert_eq!(fin.backup_metadata.as_deref(), Some("meta-comp"));
    assert_eq!(fin.backup_stamp.as_deref(), Some("s1"));
    assert!(fin.backup_succeeded);
    let during = component(&std::fs::read_to_string(env.path("out/during.xml")).unwrap());
    assert_eq!(during.backup_metadata.as_deref(), Some("meta-comp"));
    assert!(!during.backup_succeeded, "saved before the COMMAND ran");
    assert_eq!(
        std::fs::read_to_string(env.path("out/saved/bcd.xml")).unwrap(),
        std::fs::read_to_string(&bcd).unwrap()
    );
    let wmd = vss_model::wmd::WriterMetadata::from_xml(
        &std::fs::read_to_string(env.path("out/saved/wmd-tw.xml")).unwrap(),
    )
    .expect("a WMD");
    assert_eq!(wmd.writer_name, "tw");
    assert_eq!(
        wmd.components[0].files[0].path,
        format!("{vol}/data"),
        "the file sets at backup time"
    );

    // Restore: the COMMAND checks that PreRestore reached the writer and PostRestore did not.
    let log = env.log("tw");
    let renv = env.path("out/restore-env");
    let check = format!(
        "grep -q '\"event\":\"PreRestore\"' {log} && ! grep -q '\"event\":\"PostRestore\"' {log} \
         && env | grep ^VSS_ | sort > {renv}",
        log = log.display(),
        renv = renv.display()
    );
    let r = env.vss(&[
        "restore",
        "--bcd",
        bcd.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &check,
    ]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("1 component(s) selected for restore:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("  tw:comp (instance {"), "{}", r.stdout);
    assert!(r.stdout.contains("(VSS_RS_ALL)"), "{}", r.stdout);
    assert!(r.stdout.contains("* WRITER \"tw\""), "{}", r.stdout);
    let events = last_session(&env, "tw");
    assert_eq!(
        names(&events),
        ["Identify", "PreRestore", "PostRestore"],
        "the restore's events, and no BackupShutdown"
    );
    let pre = &event(&events, "PreRestore")["components"][0];
    assert_eq!(pre["name"], "comp");
    assert_eq!(pre["backupMetadata"], "meta-comp");
    assert_eq!(pre["backupStamp"], "s1");
    assert!(pre.get("fileRestoreStatus").is_none(), "{pre}");
    let post = &event(&events, "PostRestore")["components"][0];
    assert_eq!(post["fileRestoreStatus"], "VSS_RS_ALL", "{post}");
    assert!(post.get("alternateLocations").is_none(), "{post}");
    let renv = std::fs::read_to_string(renv).unwrap();
    for want in [
        format!("VSS_BCD={}", bcd.display()),
        "VSS_COMPONENT_COUNT=1".to_owned(),
        "VSS_COMPONENT_1=tw:comp".to_owned(),
        "VSS_MAPPING_COUNT=0".to_owned(),
        "VSS_VOLUME_COUNT=1".to_owned(),
        format!("VSS_VOLUME_1={vol}"),
    ] {
        assert!(renv.lines().any(|l| l == want), "{want} not in\n{renv}");
    }

    // A failing COMMAND with a mapping: VSS_RS_FAILED, the mapping announced before PreRestore
    // (restore options) and recorded after it; the COMMAND's status is vss's.
    let to = env.path("out/new");
    let v = env.vss_json(
        &[
            "restore",
            "--bcd",
            env.path("out/saved/bcd.xml").to_str().unwrap(),
            "--component",
            "tw:comp",
            "--mapping",
            &format!("{vol}={}", to.display()),
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
        3,
    );
    assert_eq!(v["command"]["status"], 3, "{v}");
    assert_eq!(v["fileRestoreStatus"], "VSS_RS_FAILED", "{v}");
    assert_eq!(v["writers"][0]["stateName"], "VSS_WS_STABLE", "{v}");
    let dest = format!("{}/data", to.display());
    assert_eq!(
        v["components"][0]["alternateLocations"][0]["destination"],
        dest.as_str()
    );
    let events = last_session(&env, "tw");
    assert_eq!(names(&events), ["Identify", "PreRestore", "PostRestore"]);
    // The mapping is recorded before PreRestore: the writer knows it there already.
    let pre = &event(&events, "PreRestore")["components"][0];
    assert_eq!(
        pre["alternateLocations"][0]["path"],
        format!("{vol}/data"),
        "{pre}"
    );
    assert_eq!(
        pre["alternateLocations"][0]["destination"],
        dest.as_str(),
        "{pre}"
    );
    assert_eq!(pre["restoreTarget"], "VSS_RT_ALTERNATE", "{pre}");
    let post = &event(&events, "PostRestore")["components"][0];
    assert_eq!(post["fileRestoreStatus"], "VSS_RS_FAILED", "{post}");
    assert_eq!(
        post["alternateLocations"][0]["destination"],
        dest.as_str(),
        "{post}"
    );
    assert_eq!(post["restoreTarget"], "VSS_RT_ALTERNATE", "{post}");

    // A COMMAND that cannot be run: nothing was restored (VSS_RS_NONE), 127.
    let v = env.vss_json(
        &[
            "restore",
            "--bcd",
            bcd.to_str().unwrap(),
            "--",
            "/nonexistent/restore-program",
        ],
        127,
    );
    assert_eq!(v["fileRestoreStatus"], "VSS_RS_NONE", "{v}");

    // A new writer process (another instance of the same class) that fails PreRestore: the
    // COMMAND does not run, the files are reported not restored, exit 4.
    env.writers.clear();
    env.start_writer("tw", &["--fail-at", "PreRestore:NONRETRYABLE"]);
    let marker = env.path("out/ran");
    let v = env.vss_json(
        &[
            "restore",
            "--bcd",
            bcd.to_str().unwrap(),
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
        4,
    );
    assert!(!marker.exists(), "the COMMAND did not run");
    assert_eq!(v["fileRestoreStatus"], "VSS_RS_NONE", "{v}");
    assert_eq!(
        v["writers"][0]["stateName"], "VSS_WS_FAILED_AT_PRE_RESTORE",
        "{v}"
    );
    assert_eq!(
        v["writers"][0]["failureName"], "VSS_E_WRITERERROR_NONRETRYABLE",
        "{v}"
    );
    assert!(v.get("command").is_none(), "{v}");
    assert_eq!(names(&last_session(&env, "tw")), ["Identify", "PreRestore"]);
}

#[test]
fn restore_sequence_with_vssd() {
    restore_sequence(Mode::Daemon);
}

#[test]
fn restore_sequence_embedded() {
    restore_sequence(Mode::Embedded);
}

/// Documents that are not BCDs, and selections the backup cannot satisfy.
#[test]
fn restore_refuses_bad_documents_and_selections() {
    let Some(mut env) = Env::new(Mode::Daemon) else {
        return;
    };
    env.start_writer("tw", &[]);
    let marker = env.path("out/ran");
    let run = |env: &Env, bcd: &Path, extra: &[&str], code: i32| {
        let mut args = vec!["restore", "--bcd", bcd.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "touch", marker.to_str().unwrap()]);
        env.vss_json(&args, code)
    };

    // Not XML, and XML that is not a BCD: VSS_E_INVALID_XML_DOCUMENT, 7.
    let bad = env.path("out/bad.xml");
    for text in ["this is not xml", "<WRITER_METADATA/>"] {
        std::fs::write(&bad, text).unwrap();
        let v = run(&env, &bad, &[], 7);
        assert_eq!(v["error"]["code"], "VSS_E_INVALID_XML_DOCUMENT", "{v}");
        assert_eq!(v["error"]["hresult"], 0x8004_2311u32, "{v}");
        let r = env.vss(&["restore", "--bcd", bad.to_str().unwrap(), "--", "true"]);
        r.expect_code(7);
        assert!(r.stderr.contains("InitializeForRestore"), "{}", r.stderr);
    }
    // No such file: 3.
    let v = run(&env, &env.path("out/missing.xml"), &[], 3);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--save-bcd"),
        "{v}"
    );

    let bcd = env.path("out/b.xml");
    env.vss(&[
        "backup",
        "--save-bcd",
        bcd.to_str().unwrap(),
        &env.volume_str(),
        "--",
        "true",
    ])
    .expect_code(0);
    // A writer or component the backup does not hold, a mapping that moves nothing: 3.
    for extra in [
        &["--component", "nope"][..],
        &["--component", "tw:other"][..],
        &["--mapping", "/nonexistent-vss/x=/tmp/y"][..],
    ] {
        let v = run(&env, &bcd, extra, 3);
        assert_eq!(v["exitCode"], 3, "{extra:?}: {v}");
    }
    // Usage errors: no COMMAND, a mapping that is not FROM=TO.
    env.vss(&["restore", "--bcd", bcd.to_str().unwrap()])
        .expect_code(2);
    env.vss(&[
        "restore",
        "--bcd",
        bcd.to_str().unwrap(),
        "--mapping",
        "x",
        "--",
        "true",
    ])
    .expect_code(2);
    // The writer is gone: its components are not restored (a note), the COMMAND still runs.
    env.writers.clear();
    let v = run(&env, &bcd, &[], 0);
    assert_eq!(v["components"], serde_json::json!([]), "{v}");
    assert!(marker.exists(), "the COMMAND ran");
    // Named, it is an error.
    run(&env, &bcd, &["--component", "tw"], 3);
}

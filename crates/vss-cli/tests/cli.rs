//! `vss` as a process, against a real vssd and in embedded mode (no vssd: the engine runs inside
//! `vss`), human and `--json` output, on a btrfs loop volume with `vss-test-writer` running.
//! Root only (skipped otherwise). Needs `vssd` and `vss-test-writer` built:
//! `cargo build -p vss-daemon -p vss-tests --bins`.

mod common;

use std::time::Duration;

use common::{Env, Mode, Mounted, vss_snapshots};
use serde_json::Value;

fn as_str(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

// ----- list ---------------------------------------------------------------------------------

fn lists(mode: Mode) {
    let Some(mut env) = Env::new(mode) else {
        return;
    };
    env.start_writer("tw", &[]);

    let r = env.vss(&["list", "writers"]);
    r.expect_code(0);
    assert!(r.stdout.contains("Writer name: 'tw'"), "{}", r.stdout);
    assert!(r.stdout.contains("   State: [1] Stable"), "{}", r.stdout);
    assert!(r.stdout.contains("   Last error: No error"), "{}", r.stdout);
    assert!(
        r.stdout.contains("   Writer Instance Id: {"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr.contains("running the engine in this process"),
        mode == Mode::Embedded,
        "{}",
        r.stderr
    );
    let v = env.vss_json(&["list", "writers"], 0);
    let w = &v["writers"][0];
    assert_eq!(w["writerName"], "tw");
    assert_eq!(w["state"], 1);
    assert_eq!(w["stateName"], "VSS_WS_STABLE");
    assert_eq!(w["stateLabel"], "[1] Stable");
    assert_eq!(w["failureName"], "S_OK");
    assert_eq!(w["lastError"], "No error");
    assert_eq!(w["answered"], true);
    uuid::Uuid::parse_str(as_str(&w["writerId"])).unwrap();
    uuid::Uuid::parse_str(as_str(&w["instanceId"])).unwrap();

    let r = env.vss(&["list", "providers"]);
    r.expect_code(0);
    assert!(r.stdout.contains("Provider name: 'btrfs'"), "{}", r.stdout);
    assert!(
        r.stdout.contains("   Provider type: Software"),
        "{}",
        r.stdout
    );
    let v = env.vss_json(&["list", "providers"], 0);
    let btrfs = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "btrfs")
        .unwrap_or_else(|| panic!("no btrfs provider: {v}"));
    assert_eq!(btrfs["providerId"], "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01");
    assert_eq!(btrfs["providerType"], "VSS_PROV_SOFTWARE");

    let r = env.vss(&["list", "shadows"]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("No items found that satisfy the query."),
        "{}",
        r.stdout
    );
    assert_eq!(env.shadows(), Vec::<Value>::new());
}

#[test]
fn list_with_vssd() {
    lists(Mode::Daemon);
}

#[test]
fn list_embedded() {
    lists(Mode::Embedded);
}

// ----- create, list shadows, expose, unexpose, delete ----------------------------------------

fn snapshot_admin(mode: Mode) {
    let Some(mut env) = Env::new(mode) else {
        return;
    };
    env.start_writer("tw", &[]);
    let vol = env.volume_str();

    // Without --persistent and without a command: a usage error, nothing made.
    let r = env.vss(&["create", &vol]);
    r.expect_code(2);
    assert!(r.stderr.contains("--persistent"), "{}", r.stderr);

    // Human output.
    let r = env.vss(&["create", "--persistent", &vol]);
    r.expect_code(0);
    assert!(r.stdout.contains("* SNAPSHOT SET ID = {"), "{}", r.stdout);
    assert!(r.stdout.contains("   - Original volume: "), "{}", r.stdout);
    assert!(r.stdout.contains("tw:comp"), "{}", r.stdout);
    assert!(r.stdout.contains("* WRITER \"tw\""), "{}", r.stdout);
    // JSON output.
    let v = env.vss_json(&["create", "--persistent", &vol], 0);
    assert_eq!(v["context"], 9, "VSS_CTX_APP_ROLLBACK");
    let set = as_str(&v["snapshotSetId"]).to_owned();
    let snap = &v["snapshots"][0];
    let id = as_str(&snap["snapshotId"]).to_owned();
    assert_eq!(snap["originalVolume"], vol.as_str());
    assert_eq!(snap["providerName"], "btrfs");
    assert_eq!(snap["consistency"]["level"], "application-consistent");
    assert_eq!(snap["consistency"]["writersFrozen"][0], "tw");
    assert_eq!(v["components"][0]["name"], "comp");
    assert_eq!(v["writers"][0]["state"], 1);
    // The snapshot holds the data.
    let path = as_str(&snap["snapshotPath"]).to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{path}/data/file")).unwrap(),
        "hello"
    );
    // --no-writers --persistent: NAS_ROLLBACK, crash-consistent, writers not involved.
    let before = env.event_names("tw").len();
    let v = env.vss_json(
        &[
            "create",
            "--persistent",
            "--no-writers",
            "--provider",
            "btrfs",
            &vol,
        ],
        0,
    );
    assert_eq!(v["context"], 0x19);
    assert_eq!(
        v["snapshots"][0]["consistency"]["level"],
        "crash-consistent"
    );
    assert_eq!(
        env.event_names("tw").len(),
        before,
        "no events to the writer"
    );
    let nas_set = as_str(&v["snapshotSetId"]).to_owned();

    // list shadows shows all three, with their consistency records.
    let all = env.shadows();
    assert_eq!(all.len(), 3, "{all:?}");
    let r = env.vss(&["list", "shadows"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains(&format!("Contents of shadow copy set ID: {{{set}}}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Consistency: application-consistent"));
    assert!(r.stdout.contains("Writers frozen: tw"));
    assert!(r.stdout.contains("Type: DataVolumeRollback"));
    let only = env.vss_json(&["list", "shadows", "--set", &set], 0);
    assert_eq!(only["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(only["snapshots"][0]["snapshotId"], id.as_str());
    let by_vol = env.vss_json(&["list", "shadows", "--volume", &vol], 0);
    assert_eq!(by_vol["snapshots"].as_array().unwrap().len(), 3);

    // expose / unexpose by path.
    let at = env.path("expose");
    let at_s = at.to_str().unwrap().to_owned();
    let r = env.vss(&["expose", &id, &at_s]);
    r.expect_code(0);
    assert!(r.stdout.contains("exposed at"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(at.join("data/file")).unwrap(),
        "hello"
    );
    let exposed = env.vss_json(&["list", "shadows", "--set", &set], 0);
    assert_eq!(exposed["snapshots"][0]["exposedName"], at_s.as_str());
    env.vss(&["unexpose", &at_s]).expect_code(0);
    assert!(!at.join("data").exists(), "unexposed");
    // Again with JSON, unexposing by id.
    let v = env.vss_json(&["expose", &id, &at_s], 0);
    assert_eq!(v["exposedName"], at_s.as_str());
    let v = env.vss_json(&["unexpose", &id], 0);
    assert_eq!(v["snapshotId"], id.as_str());
    // Nothing exposed there any more: not found.
    let v = env.vss_json(&["unexpose", &at_s], 3);
    assert!(as_str(&v["error"]["message"]).contains("no snapshot is exposed"));

    // delete --shadow, --set.
    let r = env.vss(&["delete", "--shadow", &id]);
    r.expect_code(0);
    assert!(r.stdout.contains("Deleted 1 shadow copy."), "{}", r.stdout);
    let v = env.vss_json(&["delete", "--set", &nas_set], 0);
    assert_eq!(v["deleted"], 1);
    let v = env.vss_json(&["delete", "--shadow", &id], 3);
    assert_eq!(v["error"]["code"], "VSS_E_OBJECT_NOT_FOUND");
    assert_eq!(env.shadows().len(), 1);
    // delete --volume --oldest / --all.
    env.vss(&["create", "--persistent", "--no-writers", &vol])
        .expect_code(0);
    env.vss(&["create", "--persistent", "--no-writers", &vol])
        .expect_code(0);
    assert_eq!(env.shadows().len(), 3);
    let v = env.vss_json(&["delete", "--volume", &vol, "--oldest"], 0);
    assert_eq!(v["deleted"], 1);
    let left = env.shadows();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|s| s["snapshotSetId"] != set.as_str()),
        "the oldest (the first set) went first: {left:?}"
    );
    let v = env.vss_json(&["delete", "--volume", &vol, "--all"], 0);
    assert_eq!(v["deleted"], 2);
    assert_eq!(env.shadows(), Vec::<Value>::new());
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());
    env.vss(&["delete", "--volume", &vol, "--all"])
        .expect_code(3);
    // --volume without --oldest/--all: usage.
    env.vss(&["delete", "--volume", &vol]).expect_code(2);
}

#[test]
fn create_expose_delete_with_vssd() {
    snapshot_admin(Mode::Daemon);
}

#[test]
fn create_expose_delete_embedded() {
    snapshot_admin(Mode::Embedded);
}

// ----- backup --------------------------------------------------------------------------------

fn backup(mode: Mode) {
    let Some(mut env) = Env::new(mode) else {
        return;
    };
    // The writer writes a marker into the data at Thaw, after the snapshot was committed.
    let marker = env.volume().join("data/thaw-marker");
    env.start_writer("tw", &["--write-on-thaw", marker.to_str().unwrap()]);
    let vol = env.volume_str();
    let out = env.path("out/copy");

    let r = env.vss(&[
        "backup",
        &vol,
        "--",
        "sh",
        "-c",
        &format!(
            "test -f {{snapshot}}/data/file && cp -a {{snapshot}}/data {} && env | grep ^VSS_ > {}",
            out.display(),
            env.path("out/env").display()
        ),
    ]);
    r.expect_code(0);
    assert!(r.stdout.contains("tw:comp"), "{}", r.stdout);
    assert!(r.stdout.contains("* WRITER \"tw\""), "{}", r.stdout);
    assert!(
        r.stdout.contains("- Status: 1 (VSS_WS_STABLE)"),
        "{}",
        r.stdout
    );
    // The copy is the data as it was at Freeze: the marker written at Thaw is not in it.
    assert_eq!(std::fs::read_to_string(out.join("file")).unwrap(), "hello");
    assert!(marker.exists(), "the writer wrote its marker at Thaw");
    assert!(
        !out.join("thaw-marker").exists(),
        "a write after the freeze is not in the snapshot"
    );
    // The environment of the command.
    let envs = std::fs::read_to_string(env.path("out/env")).unwrap();
    assert!(envs.contains("VSS_VOLUME_COUNT=1\n"), "{envs}");
    assert!(envs.contains(&format!("VSS_VOLUME_1={vol}\n")), "{envs}");
    assert!(envs.contains("VSS_SNAPSHOT_1=/"), "{envs}");
    assert!(envs.contains("VSS_SNAPSHOT_SET_ID="), "{envs}");
    // The writer saw the whole sequence, BackupComplete with success, and the session ended.
    let names = env.event_names("tw");
    for e in [
        "Identify",
        "PrepareForBackup",
        "PrepareForSnapshot",
        "Freeze",
        "Thaw",
        "PostSnapshot",
        "BackupComplete",
        "BackupShutdown",
    ] {
        assert!(names.contains(&e.to_owned()), "{e} missing from {names:?}");
    }
    assert_eq!(env.last_backup_succeeded("tw"), [true]);
    // The auto-release snapshot is gone with the session.
    assert_eq!(env.shadows(), Vec::<Value>::new());
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());

    // JSON: the command's stdout goes to stderr, stdout stays one document.
    std::fs::remove_file(&marker).unwrap();
    let v = env.vss_json(
        &[
            "backup",
            "--type",
            "copy",
            "--component",
            "tw:comp",
            &vol,
            "--",
            "sh",
            "-c",
            "echo to-stdout; test -f {snapshot}/data/file",
        ],
        0,
    );
    assert_eq!(v["command"]["status"], 0);
    assert_eq!(v["command"]["succeeded"], true);
    assert_eq!(v["components"][0]["writerName"], "tw");
    assert_eq!(v["components"][0]["name"], "comp");
    assert_eq!(v["writers"][0]["writerName"], "tw");
    assert_eq!(v["writers"][0]["state"], 1);
    assert_eq!(v["snapshots"][0]["originalVolume"], vol.as_str());
    assert_eq!(
        v["snapshots"][0]["consistency"]["level"],
        "application-consistent"
    );
    assert_eq!(env.last_backup_succeeded("tw"), [true]);
    let (_, prepare) = env
        .events("tw")
        .into_iter()
        .rev()
        .find(|(e, _)| e == "PrepareForBackup")
        .unwrap();
    assert_eq!(prepare["backupType"], "VSS_BT_COPY");
}

#[test]
fn backup_with_vssd() {
    backup(Mode::Daemon);
}

#[test]
fn backup_embedded() {
    backup(Mode::Embedded);
}

// ----- exit codes ----------------------------------------------------------------------------

fn exit_codes(mode: Mode) {
    let Some(mut env) = Env::new(mode) else {
        return;
    };
    env.start_writer("tw", &[]);
    // Fails PostSnapshot: the snapshot is still made.
    env.start_writer("failer", &["--fail-at", "PostSnapshot"]);
    let vol = env.volume_str();

    // No such volume: 3.
    let missing = env.path("no-such-volume");
    let v = env.vss_json(&["backup", missing.to_str().unwrap(), "--", "true"], 3);
    assert_eq!(v["error"]["code"], "VSS_E_OBJECT_NOT_FOUND", "{v}");
    let r = env.vss(&["backup", missing.to_str().unwrap(), "--", "true"]);
    r.expect_code(3);
    assert!(r.stderr.contains("VSS_E_OBJECT_NOT_FOUND"), "{}", r.stderr);

    // An unsupported volume (ext4, no exec provider): 3.
    let ext4 = Mounted::ext4(64 << 20).expect("ext4 on a loop device");
    let v = env.vss_json(&["backup", ext4.path().to_str().unwrap(), "--", "true"], 3);
    assert_eq!(v["error"]["code"], "VSS_E_VOLUME_NOT_SUPPORTED", "{v}");
    let v = env.vss_json(
        &["create", "--persistent", ext4.path().to_str().unwrap()],
        3,
    );
    assert_eq!(v["error"]["code"], "VSS_E_VOLUME_NOT_SUPPORTED", "{v}");
    drop(ext4);

    // An unknown provider or writer: 3.
    env.vss(&["create", "--persistent", "--provider", "nope", &vol])
        .expect_code(3);
    env.vss(&["backup", "--component", "nope", &vol, "--", "true"])
        .expect_code(3);

    // The command fails: its status, and BackupComplete says the backup failed.
    let r = env.vss(&["backup", "--component", "tw", &vol, "--", "false"]);
    r.expect_code(1);
    assert_eq!(env.last_backup_succeeded("tw"), [false]);
    let v = env.vss_json(
        &[
            "backup",
            "--component",
            "tw",
            &vol,
            "--",
            "sh",
            "-c",
            "exit 9",
        ],
        9,
    );
    assert_eq!(v["command"]["status"], 9);
    assert_eq!(v["command"]["succeeded"], false);
    assert_eq!(env.last_backup_succeeded("tw"), [false]);
    // A command that does not exist: 127.
    env.vss(&[
        "backup",
        "--component",
        "tw",
        &vol,
        "--",
        "/nonexistent/program",
    ])
    .expect_code(127);

    // A selected writer fails (PostSnapshot): 4, though the command ran and succeeded.
    let v = env.vss_json(&["backup", "--component", "failer", &vol, "--", "true"], 4);
    assert_eq!(v["command"]["status"], 0);
    let failer = v["writers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["writerName"] == "failer")
        .unwrap()
        .clone();
    assert_eq!(failer["stateName"], "VSS_WS_FAILED_AT_POST_SNAPSHOT");
    assert_eq!(failer["lastError"], "Retryable error");
    let r = env.vss(&["backup", &vol, "--", "true"]);
    r.expect_code(4);
    assert!(r.stderr.contains("failer"), "{}", r.stderr);
    // `list writers` remembers the failure.
    let v = env.vss_json(&["list", "writers"], 0);
    let f = v["writers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["writerName"] == "failer")
        .unwrap()
        .clone();
    if mode == Mode::Daemon {
        assert_eq!(f["stateLabel"], "[11] Failed", "{v}");
        assert_eq!(f["lastError"], "Retryable error", "{v}");
    } else {
        // A fresh in-process engine has met the writer only now.
        assert_eq!(f["stateLabel"], "[1] Stable", "{v}");
    }

    // The same writer not selected: no failure.
    env.vss(&["backup", "--component", "tw", &vol, "--", "true"])
        .expect_code(0);
    // Usage errors: 2.
    env.vss(&["backup", &vol]).expect_code(2);
    let v = env.vss_json(&["backup", &vol], 2);
    assert!(as_str(&v["error"]["message"]).contains("required"), "{v}");
    env.vss(&["create", &vol]).expect_code(2);
    env.vss(&["list", "nothing"]).expect_code(2);
    env.vss(&["backup", "--type", "weekly", &vol, "--", "true"])
        .expect_code(2);
    env.vss(&["backup", "--component", ":x", &vol, "--", "true"])
        .expect_code(2);
    // The set cannot be made: another set is being created (the host-wide lock is held): 5.
    let lock = std::fs::File::create(env.path("set.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let ran = env.path("out/ran");
    let v = env.vss_json(&["backup", &vol, "--", "touch", ran.to_str().unwrap()], 5);
    assert_eq!(v["error"]["code"], "VSS_E_SNAPSHOT_SET_IN_PROGRESS", "{v}");
    drop(lock);
    // A selected writer fails Freeze: the set is not made, 4, and the command never runs.
    env.start_writer("freezefail", &["--fail-at", "Freeze"]);
    let v = env.vss_json(
        &[
            "backup",
            "--component",
            "freezefail",
            &vol,
            "--",
            "touch",
            ran.to_str().unwrap(),
        ],
        4,
    );
    assert_eq!(v["error"]["code"], "VSS_E_WRITERERROR_RETRYABLE", "{v}");
    assert!(!ran.exists(), "the command did not run");
    assert!(
        env.event_names("freezefail").contains(&"Abort".to_owned())
            || env
                .event_names("freezefail")
                .contains(&"BackupShutdown".to_owned()),
        "{:?}",
        env.event_names("freezefail")
    );
    // Nothing left behind.
    assert_eq!(env.shadows(), Vec::<Value>::new());
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());
}

#[test]
fn exit_codes_with_vssd() {
    exit_codes(Mode::Daemon);
}

#[test]
fn exit_codes_embedded() {
    exit_codes(Mode::Embedded);
}

// ----- embedded mode -------------------------------------------------------------------------

#[test]
fn embedded_impossible_is_6() {
    let Some(env) = Env::new(Mode::Embedded) else {
        return;
    };
    // The catalog cannot be opened: the state directory is a file.
    let file = env.path("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let mut cmd = std::process::Command::new(common::vss_bin());
    cmd.arg("--socket")
        .arg(env.socket())
        .arg("--writers-dir")
        .arg(env.writers_dir())
        .arg("--state-dir")
        .arg(&file)
        .arg("--run-dir")
        .arg(env.path("run"))
        .arg("--lock-file")
        .arg(env.path("set.lock"))
        .args(["--json", "list", "shadows"]);
    let r = common::run_to_end(cmd, common::VSS_TIMEOUT);
    r.expect_code(6);
    assert_eq!(r.json()["error"]["exitCode"], 6);
    assert!(
        r.stderr.contains("cannot run the engine in-process"),
        "{}",
        r.stderr
    );
    // Another embedded run holds the engine: 6, at once.
    let lock = std::fs::File::create(env.path("run/embedded.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let r = env.vss(&["list", "providers"]);
    r.expect_code(6);
    assert!(r.stderr.contains("another vss"), "{}", r.stderr);
    drop(lock);
    env.vss(&["list", "providers"]).expect_code(0);
}

#[test]
fn sigterm_during_the_command_fails_the_backup_and_cleans_up() {
    let Some(mut env) = Env::new(Mode::Embedded) else {
        return;
    };
    env.start_writer("tw", &[]);
    let vol = env.volume_str();
    let started = env.path("out/started");
    let mut cmd = env.vss_command();
    cmd.args([
        "backup",
        &vol,
        "--",
        "sh",
        "-c",
        &format!("touch {}; exec sleep 60", started.display()),
    ]);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = common::ChildGuard {
        child,
        name: "vss".into(),
    };
    common::wait_for(Duration::from_secs(30), || started.exists(), "the command");
    common::signal(guard.child.id(), rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = guard.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "vss did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The command was killed by the forwarded SIGTERM: 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert_eq!(env.last_backup_succeeded("tw"), [false]);
    assert!(env.event_names("tw").contains(&"BackupShutdown".to_owned()));
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());
}

// ----- image volumes -------------------------------------------------------------------------

/// An image snapshot (a clone of the loop device's backing file) must be exposed to be read:
/// `create --persistent -- COMMAND` exposes it for the command; `backup` (non-persistent) fails
/// such a volume with 3 and reports the backup as failed.
fn image_volumes(mode: Mode) {
    if !common::require_root() || !vss_test_support::have_tool("mkfs.xfs") {
        return;
    }
    let outer = Mounted::xfs(512 << 20).expect("xfs with reflink on a loop device");
    let image = Mounted::image_in(outer.path(), "ext4", 64 << 20, false).expect("ext4 image");
    std::fs::write(image.path().join("f"), "in the image").unwrap();
    let Some(env) = Env::new(mode) else {
        return;
    };
    let img = image.path().to_str().unwrap().to_owned();
    let copy = env.path("out/f");

    let v = env.vss_json(
        &[
            "create",
            "--persistent",
            "--no-writers",
            &img,
            "--",
            "cp",
            "{snapshot}/f",
            copy.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(v["snapshots"][0]["providerName"], "image", "{v}");
    assert_eq!(v["command"]["status"], 0);
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "in the image");
    let shadows = env.shadows();
    assert_eq!(shadows.len(), 1);
    assert_eq!(
        shadows[0]["exposedName"],
        Value::Null,
        "unexposed after the command"
    );

    let v = env.vss_json(&["backup", &img, "--", "true"], 3);
    assert!(
        as_str(&v["error"]["message"]).contains("not a directory"),
        "{v}"
    );
    env.vss(&["delete", "--volume", &img, "--all"])
        .expect_code(0);
    assert_eq!(env.shadows(), Vec::<Value>::new());
    drop(env);
    drop(image);
    drop(outer);
}

#[test]
fn image_volumes_with_vssd() {
    image_volumes(Mode::Daemon);
}

#[test]
fn image_volumes_embedded() {
    image_volumes(Mode::Embedded);
}

/// `vss revert`: a persistent snapshot of a subvolume brings its contents back; a snapshot that
/// is not persistent is refused with VSS_E_UNSUPPORTED_CONTEXT; an id that is not one is a
/// usage error.
fn revert(mode: Mode) {
    let Some(env) = Env::new(mode) else {
        return;
    };
    let sub = env.fs.create_subvolume("app");
    std::fs::write(sub.join("state"), "v1").unwrap();
    let vol = sub.to_str().unwrap().to_owned();
    let v = env.vss_json(&["create", "--persistent", &vol], 0);
    let id = as_str(&v["snapshots"][0]["snapshotId"]).to_owned();
    std::fs::write(sub.join("state"), "v2").unwrap();
    std::fs::write(sub.join("later"), "x").unwrap();

    let v = env.vss_json(&["revert", &id], 0);
    assert_eq!(v["volume"], vol.as_str(), "{v}");
    assert_eq!(std::fs::read_to_string(sub.join("state")).unwrap(), "v1");
    assert!(
        !sub.join("later").exists(),
        "a file made after the snapshot survived"
    );
    // The snapshot stays: reverting again works.
    std::fs::write(sub.join("state"), "v3").unwrap();
    let r = env.vss(&["revert", &format!("{{{id}}}")]);
    r.expect_code(0);
    assert!(r.stdout.contains("reverted to shadow copy"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(sub.join("state")).unwrap(), "v1");

    let r = env.vss(&["revert", "not-an-id"]);
    r.expect_code(2);
    assert!(r.stderr.contains("vss list shadows"), "{}", r.stderr);
    let r = env.vss(&["revert", &uuid::Uuid::new_v4().to_string()]);
    r.expect_code(3);
}

#[test]
fn revert_with_vssd() {
    revert(Mode::Daemon);
}

#[test]
fn revert_embedded() {
    revert(Mode::Embedded);
}

//! Requester authorization by SO_PEERCRED: root or members of the requester group; everyone
//! else gets E_ACCESSDENIED for every call.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

const GROUP: &str = "4242";

/// One varlink call as another user, from Python (raw protocol): returns the reply JSON.
fn call_as(socket: &std::path::Path, groups: Option<&str>, method: &str) -> String {
    let script = format!(
        "import socket,json,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect({sock:?})\n\
         s.sendall(json.dumps({{'method':{method:?}}}).encode()+b'\\0')\nb=b''\n\
         while not b.endswith(b'\\0'):\n  c=s.recv(4096)\n  if not c: break\n  b+=c\nprint(b.rstrip(b'\\0').decode())\n",
        sock = socket.to_str().unwrap(),
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    match groups {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    let out = cmd
        .args(["/usr/bin/python3", "-c", &script])
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "{method} as groups {groups:?} on {}: {}",
        socket.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_and_the_requester_group_may_call() {
    let Some(mut env) = Env::new() else { return };
    if !std::path::Path::new("/usr/bin/python3").exists() {
        eprintln!("skipping: /usr/bin/python3 is needed to call vssd as another user");
        return;
    }
    // Let other users reach the socket's directory; the socket itself is 0660 root:GROUP.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.start_vssd(&["--socket-group", GROUP]);
    let mode = std::fs::metadata(env.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);

    // A permissive socket (e.g. a socket unit with SocketMode=0666) lets anyone connect; vssd
    // itself still refuses every call of a user who is neither root nor in the group.
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let denied = call_as(
        &env.socket(),
        Some("65534"),
        "vss.Requester.GetProtocolVersion",
    );
    assert!(
        denied.contains("vss.Requester.VssError") && denied.contains("E_ACCESSDENIED"),
        "{denied}"
    );
    assert!(
        denied.contains("2147942405"),
        "HRESULT 0x80070005: {denied}"
    );
    let member = call_as(
        &env.socket(),
        Some(GROUP),
        "vss.Requester.GetProtocolVersion",
    );
    assert!(
        member.contains("\"version\":1") || member.contains("\"version\": 1"),
        "{member}"
    );
    // Root is always served.
    let mut bc = env.requester().await;
    assert_eq!(bc.get_protocol_version().await.unwrap().version, 1);
}

/// vssd talks only to writers whose socket is owned by, and whose process runs as, a uid on the
/// writer allow-list (root by default); others are skipped and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_outside_the_allow_list_are_skipped() {
    let Some(mut env) = Env::new() else { return };
    let vol = env.volume();
    env.start_vssd(&[]);
    env.start_writer(
        "trusted",
        &["--component", &format!(":a:selectable:{}", vol.display())],
    );
    env.start_writer(
        "planted",
        &["--component", &format!(":b:selectable:{}", vol.display())],
    );
    // The planted writer's socket belongs to another user.
    rustix::fs::chown(
        env.writers_dir().join("planted.sock"),
        Some(rustix::fs::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let names = |env: &Env| {
        let socket = env.socket();
        async move {
            let mut bc = vss_client::BackupComponents::connect(&socket)
                .await
                .unwrap();
            bc.initialize_for_backup(None).await.unwrap();
            bc.gather_writer_metadata().await.unwrap().await.unwrap();
            let mut n: Vec<String> = bc
                .get_writer_metadata()
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.writer_name)
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names(&env).await, vec!["trusted".to_owned()]);
    assert!(
        env.vssd_log().contains("not in the writer allow-list"),
        "{}",
        env.vssd_log()
    );

    // With uid 65534 on the list, the socket's owner is accepted (the process runs as root).
    env.vssd
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(20));
    env.start_vssd(&["--writer-uid", "0", "--writer-uid", "65534"]);
    assert_eq!(
        names(&env).await,
        vec!["planted".to_owned(), "trusted".to_owned()]
    );
}

/// A world-writable writers directory is refused at start: anyone could plant a writer there.
#[test]
fn a_world_writable_writers_directory_is_refused() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let writers = dir.path().join("writers");
    std::fs::create_dir(&writers).unwrap();
    std::fs::set_permissions(&writers, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(bin("vssd"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--writers-dir")
        .arg(&writers)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .arg("--lock-file")
        .arg(dir.path().join("lock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("world-writable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("s.sock").exists(), "nothing was served");
}

/// Every snapshot set leaves an audit line: who asked, which volumes and writers, how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snapshot_set_is_audited() {
    let Some(mut env) = Env::new() else { return };
    env.start_vssd(&[]);
    let mut bc = env.requester().await;
    bc.initialize_for_backup(None).await.unwrap();
    bc.set_context(0x10).await.unwrap();
    let set = bc.start_snapshot_set().await.unwrap();
    bc.add_to_snapshot_set(&env.volume_str(), None)
        .await
        .unwrap();
    bc.do_snapshot_set().await.unwrap().await.unwrap();
    drop(bc);
    wait_for(
        std::time::Duration::from_secs(30),
        || env.vssd_log().contains("audit: snapshot set"),
        "the audit line",
    );
    let log = env.vssd_log();
    let line = log
        .lines()
        .find(|l| l.contains("audit: snapshot set"))
        .unwrap();
    assert!(
        line.contains("uid=0")
            && line.contains(&set.to_string())
            && line.contains(&env.volume_str()),
        "{line}"
    );
    assert!(
        line.contains("duration_ms=") && line.contains("outcome=\"ok\""),
        "{line}"
    );
}

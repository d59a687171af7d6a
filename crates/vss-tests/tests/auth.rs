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

//! The exec provider with a shell script as the administrator's command. The script logs its
//! environment and arguments to files in its temporary directory. No root needed: the provider
//! itself never freezes (vssd does) and the script never touches the volume.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{request, resolve};
use uuid::Uuid;
use vss_model::{ErrorCode, ProviderType};
use vss_provider::exec::{EXEC_PROVIDER_ID, ExecProvider};
use vss_provider::{
    Atomicity, CommittedSnapshot, Exposure, Provider, ProviderConfig, builtin_providers,
};

/// A temporary directory with an executable script `cmd` whose body is `body`, run after a
/// prologue that logs `env` to `<dir>/<action>.env`.
struct Script {
    dir: tempfile::TempDir,
}

impl Script {
    fn new(body: &str) -> Script {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().display();
        let text = format!(
            "#!/bin/sh\n\
             env | sort > '{log}/'\"$VSS_ACTION\".env\n\
             pwd > '{log}/'\"$VSS_ACTION\".cwd\n\
             {body}\n"
        );
        let path = dir.path().join("cmd");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Script { dir }
    }

    fn command(&self) -> PathBuf {
        self.dir.path().join("cmd")
    }

    fn provider(&self, timeout: Duration) -> ExecProvider {
        let mut config = ProviderConfig::new(self.dir.path());
        config.exec_command = Some(self.command());
        config.exec_timeout = timeout;
        ExecProvider::new(config)
    }

    /// The environment the command saw for `action`.
    fn env(&self, action: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{action}.env")))
            .unwrap_or_else(|e| panic!("the command did not run for {action}: {e}"));
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn ran(&self, action: &str) -> bool {
        self.dir.path().join(format!("{action}.env")).exists()
    }
}

const BODY: &str = r#"
case "$VSS_ACTION" in
  supported) [ "$VSS_VOLUME" = / ] ;;
  create) echo "creating..."; echo "snap-$VSS_SNAPSHOT_ID"; echo ""; echo "  " ;;
  delete|unexpose|break) exit 0 ;;
  expose) echo "mounted-by-script" ;;
  *) echo "unknown action $VSS_ACTION" >&2; exit 9 ;;
esac
"#;

fn assert_only_vss_env(env: &BTreeMap<String, String>) {
    for key in env.keys() {
        let allowed = key.starts_with("VSS_")
            || key == "PATH"
            // Set by the shell itself.
            || key == "PWD"
            || key == "OLDPWD"
            || key == "SHLVL"
            || key == "_";
        assert!(allowed, "unexpected variable {key} in {env:?}");
    }
    assert_eq!(env["PATH"], vss_provider::exec::EXEC_PATH);
}

#[test]
fn create_delete_expose_break() {
    let script = Script::new(BODY);
    let p = script.provider(Duration::from_secs(10));
    let info = p.info();
    assert_eq!(info.id, EXEC_PROVIDER_ID);
    assert_eq!(info.provider_type, ProviderType::Hardware);
    assert_eq!(info.atomicity, Atomicity::AcrossSet);
    assert!(info.needs_freeze);

    let root = resolve(Path::new("/"));
    assert!(p.is_volume_supported(&root));
    let env = script.env("supported");
    assert_only_vss_env(&env);
    assert_eq!(env["VSS_ACTION"], "supported");
    assert_eq!(env["VSS_VOLUME"], "/");
    assert_eq!(env["VSS_DEVICE"], root.device);
    assert!(!env.contains_key("VSS_SNAPSHOT_ID"));

    // The script answers "no" for /proc; directories are never offered.
    assert!(!p.is_volume_supported(&resolve(Path::new("/proc"))));
    let tmp = tempfile::tempdir().unwrap();
    assert!(!p.is_volume_supported(&resolve(tmp.path())));

    let req = request(&root);
    p.begin_prepare(&req).unwrap();
    let snap = p.commit(&req).unwrap();
    let identity = format!("snap-{}", req.snapshot_id);
    assert_eq!(snap.locator, identity);
    assert_eq!(snap.snapshot_path, Path::new(&identity));
    let env = script.env("create");
    assert_only_vss_env(&env);
    assert_eq!(env["VSS_ACTION"], "create");
    assert_eq!(env["VSS_VOLUME"], "/");
    assert_eq!(env["VSS_DEVICE"], root.device);
    assert_eq!(env["VSS_SNAPSHOT_ID"], req.snapshot_id.to_string());
    assert_eq!(env["VSS_SNAPSHOT_SET_ID"], req.snapshot_set_id.to_string());
    let cwd = std::fs::read_to_string(script.dir.path().join("create.cwd")).unwrap();
    assert_eq!(cwd.trim(), "/");
    assert!(p.exists(&snap).unwrap());

    let at = tempfile::tempdir().unwrap();
    let exposure = p.expose(&snap, at.path()).unwrap();
    assert_eq!(exposure.path, at.path());
    assert_eq!(exposure.detail.as_deref(), Some("mounted-by-script"));
    let env = script.env("expose");
    assert_eq!(env["VSS_LOCATOR"], identity);
    assert_eq!(env["VSS_EXPOSE_PATH"], at.path().to_str().unwrap());
    assert_eq!(env["VSS_SNAPSHOT_ID"], req.snapshot_id.to_string());
    p.unexpose(&snap, &exposure).unwrap();
    let env = script.env("unexpose");
    assert_eq!(env["VSS_EXPOSE_PATH"], at.path().to_str().unwrap());
    assert_eq!(env["VSS_LOCATOR"], identity);

    p.break_snapshot(&snap).unwrap();
    let env = script.env("break");
    assert_eq!(env["VSS_LOCATOR"], identity);
    assert_eq!(env["VSS_SNAPSHOT_ID"], req.snapshot_id.to_string());

    p.delete(&snap).unwrap();
    let env = script.env("delete");
    assert_only_vss_env(&env);
    assert_eq!(env["VSS_ACTION"], "delete");
    assert_eq!(env["VSS_LOCATOR"], identity);

    // Abort after commit deletes through the command too.
    std::fs::remove_file(script.dir.path().join("delete.env")).unwrap();
    p.abort(&req, Some(&snap)).expect("abort");
    assert!(script.ran("delete"));
}

#[test]
fn failure_is_a_veto_with_stderr() {
    let script = Script::new(
        r#"echo "first line" >&2
echo "the array said no" >&2
exit 3"#,
    );
    let p = script.provider(Duration::from_secs(10));
    let root = resolve(Path::new("/"));
    assert!(!p.is_volume_supported(&root));
    let req = request(&root);
    let err = p.commit(&req).unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderVeto, "{err}");
    assert!(err.message.contains("the array said no"), "{err}");
    assert!(err.message.contains("exit status: 3"), "{err}");
    assert!(err.message.contains("create"), "{err}");
    let snap = CommittedSnapshot {
        snapshot_id: Uuid::new_v4(),
        snapshot_path: PathBuf::from("x"),
        locator: "x".into(),
    };
    assert_eq!(p.delete(&snap).unwrap_err().code, ErrorCode::ProviderVeto);
    assert_eq!(
        p.break_snapshot(&snap).unwrap_err().code,
        ErrorCode::ProviderVeto
    );
    let exposure = Exposure {
        path: PathBuf::from("/nonexistent"),
        detail: None,
    };
    assert_eq!(
        p.unexpose(&snap, &exposure).unwrap_err().code,
        ErrorCode::ProviderVeto
    );
}

#[test]
fn long_stderr_is_trimmed_to_4_kib() {
    let script = Script::new(
        r#"i=0
while [ $i -lt 300 ]; do echo "noise line number $i ........................" >&2; i=$((i+1)); done
echo "the real reason" >&2
exit 1"#,
    );
    let p = script.provider(Duration::from_secs(10));
    let err = p.commit(&request(&resolve(Path::new("/")))).unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderVeto);
    assert!(err.message.contains("the real reason"), "{err}");
    assert!(err.message.len() < 4096 + 600, "{}", err.message.len());
    assert!(!err.message.contains("number 0 "), "the start is cut");
}

#[test]
fn create_without_identity_fails() {
    let script = Script::new("echo; echo '   '; exit 0");
    let p = script.provider(Duration::from_secs(10));
    let err = p.commit(&request(&resolve(Path::new("/")))).unwrap_err();
    assert_eq!(err.code, ErrorCode::ProviderVeto, "{err}");
    assert!(err.message.contains("printed no identity"), "{err}");
}

/// A hanging command is killed with its whole process group within the timeout.
#[test]
fn hanging_command_is_killed_within_the_timeout() {
    let script = Script::new(
        r#"sleep 30 &
echo $! > "$(dirname "$0")/child.pid"
echo $$ > "$(dirname "$0")/shell.pid"
wait"#,
    );
    let p = script.provider(Duration::from_millis(500));
    let req = request(&resolve(Path::new("/")));
    let started = Instant::now();
    let err = p.commit(&req).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.code, ErrorCode::ProviderVeto, "{err}");
    assert!(err.message.contains("did not finish within"), "{err}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The background child was killed with the group.
    let child: i32 = std::fs::read_to_string(script.dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let gone = match std::fs::read_to_string(format!("/proc/{child}/stat")) {
            Err(_) => true,
            // A zombie waiting for its (killed) parent's reaper counts as dead.
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z')),
        };
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sleep {child} survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `supported` under the same timeout answers "no", quickly.
    let started = Instant::now();
    assert!(!p.is_volume_supported(&resolve(Path::new("/"))));
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A command that leaves a background process holding its output still returns at the
/// deadline (the group is killed), with its result.
#[test]
fn background_process_holding_output_does_not_hang() {
    let script =
        Script::new(r#"if [ "$VSS_ACTION" = create ]; then sleep 30 & echo "snap-1"; exit 0; fi"#);
    let p = script.provider(Duration::from_millis(500));
    let started = Instant::now();
    let snap = p.commit(&request(&resolve(Path::new("/")))).unwrap();
    assert_eq!(snap.locator, "snap-1");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn registered_last_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ProviderConfig::new(dir.path());
    let names = |c: &ProviderConfig| -> Vec<String> {
        builtin_providers(c).iter().map(|p| p.info().name).collect()
    };
    assert_eq!(names(&config), ["btrfs", "image", "reflink"]);
    config.exec_command = Some(PathBuf::from("/bin/true"));
    assert_eq!(names(&config), ["btrfs", "image", "reflink", "exec"]);
    assert_eq!(config.exec_timeout, Duration::from_secs(10));
    // Only exec is hardware: its sets can be broken, the others refuse.
    let snap = CommittedSnapshot {
        snapshot_id: Uuid::new_v4(),
        snapshot_path: PathBuf::from("/x"),
        locator: "/x".into(),
    };
    for p in builtin_providers(&config) {
        let hardware = p.info().provider_type == ProviderType::Hardware;
        assert_eq!(hardware, p.info().name == "exec");
        if !hardware {
            assert_eq!(
                p.break_snapshot(&snap).unwrap_err().code,
                ErrorCode::ProviderVeto
            );
        }
    }
}

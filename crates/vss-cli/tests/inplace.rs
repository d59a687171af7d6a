//! `vss backup -- restic backup {snapshot}` and `vss backup --in-place -- restic backup VOLUME`
//! with restic from Debian's packages (scripts/deps.sh installs it; these tests are skipped with
//! a message when it is missing), on a btrfs loop volume with a `vss-test-writer` that writes a
//! marker at Thaw: the restored data is the data as it was at Freeze. In place, the command
//! sees the snapshot at the original path, read-only, restic records the original path, and the
//! host's mount table does not change. Root only. Needs `vssd` and `vss-test-writer` built:
//! `cargo build -p vss-daemon -p vss-tests -p vss-freeze --bins`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    Env, Mode, VSS_TIMEOUT, VssRun, mountinfo_under, mounts_under, run_to_end, vss_bin,
    vss_snapshots,
};
use serde_json::Value;

/// A restic repository in the test's directory (its cache too: never on the volume).
struct Repo {
    bin: PathBuf,
    repo: PathBuf,
    cache: PathBuf,
}

impl Repo {
    /// `restic init` in `<test dir>/repo`; `None` (with a message) when restic is missing.
    fn init(env: &Env) -> Option<Repo> {
        let Some(bin) = common::restic() else {
            eprintln!("skipped: restic is not installed (scripts/deps.sh installs it)");
            return None;
        };
        let r = Repo {
            bin,
            repo: env.path("repo"),
            cache: env.path("restic-cache"),
        };
        r.run(&["init"]);
        Some(r)
    }

    fn envs(&self) -> [(&'static str, &Path); 3] {
        [
            ("RESTIC_REPOSITORY", self.repo.as_path()),
            ("RESTIC_PASSWORD", Path::new("vss-test")),
            ("RESTIC_CACHE_DIR", self.cache.as_path()),
        ]
    }

    /// Runs `restic ARGS...`, which must succeed; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).envs(self.envs());
        let r = run_to_end(cmd, VSS_TIMEOUT);
        assert_eq!(
            r.code, 0,
            "restic {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// The paths of the latest restic snapshot.
    fn latest_paths(&self) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.run(&["snapshots", "--json", "latest"]))
            .expect("restic snapshots --json");
        v[0]["paths"]
            .as_array()
            .expect("paths")
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    }

    /// Restores the latest snapshot into `target` (which must not exist yet).
    fn restore(&self, target: &Path) {
        self.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    }
}

/// `vss ARGS...` with restic's environment.
fn vss_with_restic(env: &Env, repo: &Repo, args: &[&str]) -> VssRun {
    let mut cmd = env.vss_command();
    cmd.envs(repo.envs()).args(args);
    run_to_end(cmd, VSS_TIMEOUT)
}

/// Checks a restored tree: the data as it was at Freeze.
fn check_restored(data: &Path) {
    assert_eq!(
        std::fs::read_to_string(data.join("file"))
            .unwrap_or_else(|e| panic!("{}: {e}", data.join("file").display())),
        "hello"
    );
    assert!(
        !data.join("thaw-marker").exists(),
        "the marker written at Thaw is not in the backup"
    );
}

#[test]
fn restic_backs_up_the_snapshot_path() {
    let t0 = std::time::Instant::now();
    let Some(mut env) = Env::new(Mode::Daemon) else {
        return;
    };
    let Some(repo) = Repo::init(&env) else {
        return;
    };
    let marker = env.volume().join("data/thaw-marker");
    env.start_writer("tw", &["--write-on-thaw", marker.to_str().unwrap()]);
    let vol = env.volume_str();

    let r = vss_with_restic(
        &env,
        &repo,
        &["backup", &vol, "--", "restic", "backup", "{snapshot}"],
    );
    r.expect_code(0);
    assert!(marker.exists(), "the writer wrote its marker at Thaw");
    assert_eq!(env.last_backup_succeeded("tw"), [true]);

    // restic recorded the snapshot's path, below the volume's .vss directory.
    let paths = repo.latest_paths();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(
        paths[0].starts_with(&format!("{vol}/.vss/")),
        "restic recorded {paths:?}"
    );
    let out = env.path("out/restored");
    repo.restore(&out);
    let rel = paths[0].trim_start_matches('/');
    check_restored(&out.join(rel).join("data"));
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());
    eprintln!("restic_backs_up_the_snapshot_path: {:?}", t0.elapsed());
}

#[test]
fn in_place_restic_records_the_original_path() {
    let t0 = std::time::Instant::now();
    let Some(mut env) = Env::new(Mode::Embedded) else {
        return;
    };
    let Some(repo) = Repo::init(&env) else {
        return;
    };
    let marker = env.volume().join("data/thaw-marker");
    env.start_writer("tw", &["--write-on-thaw", marker.to_str().unwrap()]);
    let vol = env.volume_str();
    // Make the volume's mount shared, as / is on a systemd machine: without the recursive
    // slave step, the mounts made inside the command's namespace would propagate back here.
    rustix::mount::mount_change(env.volume(), rustix::mount::MountPropagationFlags::SHARED)
        .expect("make the volume's mount shared");
    let before = mounts_under(None, &env.volume());
    assert!(before[0].contains(" shared:"), "{before:?}");
    assert!(!before.is_empty(), "the volume is mounted");

    // Inside: the snapshot at the original path (no marker), read-only, and the host's mount
    // table (the test process's) as before.
    let during_host = env.path("out/during-host");
    let during_self = env.path("out/during-self");
    let script = format!(
        "set -e
         test -f '{vol}/data/file'
         test ! -e '{vol}/data/thaw-marker'
         test \"$VSS_SNAPSHOT_1\" = '{vol}'
         cat /proc/{pid}/mountinfo > '{host}'
         cat /proc/self/mountinfo > '{own}'
         if touch '{vol}/data/new' 2>/dev/null; then echo 'the volume is writable'; exit 9; fi
         restic backup '{vol}'",
        pid = std::process::id(),
        host = during_host.display(),
        own = during_self.display(),
    );
    let r = vss_with_restic(
        &env,
        &repo,
        &["backup", "--in-place", &vol, "--", "sh", "-c", &script],
    );
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("with the snapshots mounted over the volumes")
    );
    assert!(marker.exists(), "the writer wrote its marker at Thaw");
    assert!(!env.volume().join("data/new").exists());
    assert_eq!(env.last_backup_succeeded("tw"), [true]);

    // The host's mount table did not change, during the command nor after it.
    let during = mountinfo_under(
        &std::fs::read_to_string(&during_host).unwrap(),
        &env.volume(),
    );
    assert_eq!(during, before, "the host's mounts during the command");
    assert_eq!(
        mounts_under(None, &env.volume()),
        before,
        "the host's mounts after the command"
    );
    // In the command's namespace the volume's path is covered by a read-only mount.
    let own = std::fs::read_to_string(&during_self).unwrap();
    let top = own
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(vol.as_str()))
        .unwrap_or_else(|| panic!("no mount at {vol} in the command's namespace:\n{own}"));
    let options = top.split(' ').nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "the snapshot is mounted read-only: {top}"
    );

    // restic recorded the original path; the restore is the data as it was at Freeze.
    assert_eq!(repo.latest_paths(), [vol.as_str()]);
    let out = env.path("out/restored");
    repo.restore(&out);
    check_restored(&out.join(vol.trim_start_matches('/')).join("data"));

    // A second run finds its parent snapshot, since the path is the same.
    let r = vss_with_restic(
        &env,
        &repo,
        &["backup", "--in-place", &vol, "--", "restic", "backup", &vol],
    );
    r.expect_code(0);
    assert!(
        r.stdout.contains("using parent snapshot"),
        "restic found no parent:\n{}",
        r.stdout
    );
    assert_eq!(mounts_under(None, &env.volume()), before);

    // Started inside the volume, the command's working directory is the snapshot's.
    let mut cmd = env.vss_command();
    cmd.current_dir(env.volume().join("data")).args([
        "backup",
        "--in-place",
        &vol,
        "--",
        "sh",
        "-c",
        "test -f file && ! touch new-in-cwd 2>/dev/null",
    ]);
    run_to_end(cmd, VSS_TIMEOUT).expect_code(0);
    assert!(!env.volume().join("data/new-in-cwd").exists());
    // A command that does not exist is still 127.
    env.vss(&["backup", "--in-place", &vol, "--", "/nonexistent/command"])
        .expect_code(127);
    assert_eq!(mounts_under(None, &env.volume()), before);
    assert_eq!(vss_snapshots(&env.volume()), Vec::<String>::new());
    eprintln!(
        "in_place_restic_records_the_original_path: {:?}",
        t0.elapsed()
    );
}

#[test]
fn in_place_refusals() {
    if !common::require_root() {
        return;
    }
    // The volume / is refused before anything is done (E_INVALIDARG, 7).
    let mut cmd = Command::new(vss_bin());
    cmd.args(["--json", "backup", "--in-place", "/", "--", "true"])
        .env_remove("VSS_LOG");
    let r = run_to_end(cmd, VSS_TIMEOUT);
    r.expect_code(7);
    let v = r.json();
    assert_eq!(v["error"]["code"], "E_INVALIDARG", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in-place backup of / is not supported yet"),
        "{v}"
    );

    // Not root: E_ACCESSDENIED (7), before any connection. (If nobody cannot even execute
    // vss where it was built, setpriv fails instead: still refused, with a message.)
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(vss_bin())
        .args(["--json", "backup", "--in-place", "/tmp", "--", "true"])
        .env_remove("VSS_LOG");
    let r = run_to_end(cmd, VSS_TIMEOUT);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!r.stderr.trim().is_empty(), "{r:?}");
    if r.code == 7 {
        let v = r.json();
        assert_eq!(v["error"]["code"], "E_ACCESSDENIED", "{v}");
        assert!(r.stderr.contains("needs root"), "{r:?}");
    } else {
        eprintln!("setpriv could not run vss as nobody: {r:?}");
    }
}

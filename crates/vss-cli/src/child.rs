//! Running the backup program (`vss backup ... -- COMMAND`, `vss create ... -- COMMAND`) while
//! the snapshots exist.
//!
//! The command gets the environment variables `VSS_SNAPSHOT_SET_ID`, `VSS_VOLUME_COUNT`, and
//! for each volume `i` from 1 `VSS_VOLUME_i` (the original volume) and `VSS_SNAPSHOT_i` (a path
//! where its snapshot is readable); every `{snapshot}` inside an argument becomes
//! `VSS_SNAPSHOT_1`. Its standard input and error are `vss`'s; its standard output too, except
//! with `--json`, where it goes to `vss`'s standard error so that standard output stays one JSON
//! document. Its exit status is returned as an exit code (128 + N when killed by signal N, 127
//! when it was not found, 126 when it could not be executed).
//!
//! With `vss backup --in-place` ([`inplace`]) the command runs in a private mount namespace
//! where each snapshot is mounted read-only over its original volume; `VSS_SNAPSHOT_i` and
//! `{snapshot}` are then the original paths.
//!
//! `vss restore` runs its COMMAND the same way ([`run_env`]) with an environment of its own and
//! no placeholder (there is no snapshot).

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::Stdio;

use uuid::Uuid;

use crate::exit::{self, CliError};
use crate::output;
use crate::signals::Signals;

use crate::inplace;

/// The placeholder replaced in the command's arguments.
pub const PLACEHOLDER: &str = "{snapshot}";

/// One volume of the set and where its snapshot is readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    /// The original volume.
    pub volume: String,
    /// Where the snapshot can be read.
    pub path: String,
}

/// Replaces every `{snapshot}` in `arg` with `with`.
pub fn substitute(arg: &OsStr, with: &OsStr) -> OsString {
    let (hay, needle, rep) = (arg.as_bytes(), PLACEHOLDER.as_bytes(), with.as_bytes());
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(rep);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// The command line as a shell would read it back, for messages: arguments with characters a
/// shell treats specially are single-quoted.
pub fn display(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%{}".contains(c));
            if plain {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environment variables the command gets.
pub fn environment(set_id: Uuid, snaps: &[Readable]) -> Vec<(String, String)> {
    let mut env = vec![
        ("VSS_SNAPSHOT_SET_ID".to_owned(), set_id.to_string()),
        ("VSS_VOLUME_COUNT".to_owned(), snaps.len().to_string()),
    ];
    for (i, s) in snaps.iter().enumerate() {
        env.push((format!("VSS_VOLUME_{}", i + 1), s.volume.clone()));
        env.push((format!("VSS_SNAPSHOT_{}", i + 1), s.path.clone()));
    }
    env
}

/// Runs `argv` and returns its exit code. Only a failure to set up its standard output is an
/// error; a command that cannot be started gives 126 or 127 like a shell.
pub async fn run(
    argv: &[OsString],
    set_id: Uuid,
    snaps: &[Readable],
    json: bool,
    signals: &Signals,
) -> Result<u8, CliError> {
    run_with(argv, set_id, snaps, json, signals, false, &[]).await
}

/// [`run`], or with `in_place` in a private mount namespace where every snapshot covers its
/// original volume read-only ([`inplace`]); a failure to make that namespace is an error (exit
/// code 7), and the command does not run. `extra` is added to the environment (e.g. `VSS_BCD`
/// of `vss backup --save-bcd`).
pub async fn run_with(
    argv: &[OsString],
    set_id: Uuid,
    snaps: &[Readable],
    json: bool,
    signals: &Signals,
    in_place: bool,
    extra: &[(String, String)],
) -> Result<u8, CliError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CliError::usage("no command given after --"));
    };
    let plan = if in_place {
        Some(inplace::InPlace::new(snaps)?)
    } else {
        None
    };
    // In place, the command reads each snapshot at its original path.
    let shown_snaps: Vec<Readable> = snaps
        .iter()
        .map(|s| Readable {
            volume: s.volume.clone(),
            path: if in_place {
                s.volume.clone()
            } else {
                s.path.clone()
            },
        })
        .collect();
    let snaps = shown_snaps.as_slice();
    let first = snaps
        .first()
        .map(|s| OsString::from(&s.path))
        .unwrap_or_default();
    let mut cmd = command(program, json)?;
    cmd.args(args.iter().map(|a| substitute(a, &first)))
        .envs(environment(set_id, snaps))
        .envs(extra.iter().cloned());
    let report = match plan {
        Some(p) => Some(p.install(&mut cmd)?),
        None => None,
    };
    spawn_and_wait(cmd, program, report, signals).await
}

/// Runs `argv` with `env` added to the environment, as [`run`] does but without snapshots and
/// without `{snapshot}` placeholders (`vss restore`).
pub async fn run_env(
    argv: &[OsString],
    env: &[(String, String)],
    json: bool,
    signals: &Signals,
) -> Result<u8, CliError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CliError::usage("no command given after --"));
    };
    let mut cmd = command(program, json)?;
    cmd.args(args).envs(env.iter().cloned());
    spawn_and_wait(cmd, program, None, signals).await
}

/// The command with `vss`'s standard input and error, and its standard output (or with `--json`
/// its standard error, so that stdout stays one JSON document).
fn command(program: &OsStr, json: bool) -> Result<tokio::process::Command, CliError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.stdin(Stdio::inherit()).stderr(Stdio::inherit());
    if json {
        let fd = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| CliError::other(format!("cannot duplicate standard error: {e}")))?;
        cmd.stdout(Stdio::from(fd));
    } else {
        cmd.stdout(Stdio::inherit());
    }
    Ok(cmd)
}

/// Starts `cmd`, forwards SIGTERM/SIGHUP to it while it runs, and returns its exit code (126 or
/// 127 when it cannot be started, like a shell; an in-place namespace that failed is an error).
async fn spawn_and_wait(
    mut cmd: tokio::process::Command,
    program: &OsStr,
    report: Option<inplace::Report>,
    signals: &Signals,
) -> Result<u8, CliError> {
    let shown = program.to_string_lossy();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(failure) = report.and_then(|r| r.failure(&e)) {
                return Err(failure);
            }
            output::note(format!("cannot run {shown}: {e}"));
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                exit::COMMAND_NOT_FOUND
            } else {
                exit::COMMAND_NOT_EXECUTABLE
            });
        }
    };
    signals.set_child(child.id());
    let status = child.wait().await;
    signals.set_child(None);
    match status {
        Ok(s) => Ok(exit::status_code(s)),
        Err(e) => Err(CliError::other(format!("waiting for {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_anywhere_in_an_argument() {
        let s = |a: &str| {
            substitute(OsStr::new(a), OsStr::new("/snap"))
                .into_string()
                .unwrap()
        };
        assert_eq!(s("{snapshot}"), "/snap");
        assert_eq!(s("{snapshot}/data"), "/snap/data");
        assert_eq!(s("a{snapshot}b{snapshot}"), "a/snapb/snap");
        assert_eq!(s("{snap}"), "{snap}");
        assert_eq!(s(""), "");
    }

    #[test]
    fn shown_like_a_shell() {
        let argv: Vec<OsString> = ["sh", "-c", "cp -a {snapshot}/x out", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(display(&argv), "sh -c 'cp -a {snapshot}/x out' 'it'\\''s'");
    }

    #[test]
    fn numbered_variables() {
        let id = Uuid::nil();
        let env = environment(
            id,
            &[
                Readable {
                    volume: "/a".into(),
                    path: "/a/.vss/1".into(),
                },
                Readable {
                    volume: "/b".into(),
                    path: "/b/.vss/2".into(),
                },
            ],
        );
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("VSS_SNAPSHOT_SET_ID"), Some(id.to_string().as_str()));
        assert_eq!(get("VSS_VOLUME_COUNT"), Some("2"));
        assert_eq!(get("VSS_VOLUME_2"), Some("/b"));
        assert_eq!(get("VSS_SNAPSHOT_1"), Some("/a/.vss/1"));
    }
}

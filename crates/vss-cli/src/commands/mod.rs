//! The subcommands, one module each. Every command has a `check` (argument rules clap cannot
//! express, made before the engine is reached; a failure is a usage error) and a `run` that
//! returns the exit code of a completed run or a [`CliError`].

use clap::{Subcommand, ValueEnum};
use vss_client::BackupType;

use crate::connection::Engine;
use crate::exit::CliError;
use crate::output::Out;
use crate::signals::Signals;

pub mod backup;
// Commands outside the engine-session flow of `Command` (main.rs's `TopCommand`).
pub mod completions;
pub mod create;
pub mod delete;
pub mod expose;
pub mod list;
pub mod man;
pub mod restore;
pub mod revert;
pub mod unexpose;
pub mod watch;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List writers, providers or snapshots (like vssadmin list).
    #[command(subcommand)]
    List(list::List),
    /// Create a snapshot set (like vshadow): persistent, or alive while a COMMAND runs.
    Create(create::CreateArgs),
    /// Delete snapshots: one, a set, or the oldest or all of a volume.
    Delete(delete::DeleteArgs),
    /// Mount a persistent snapshot read-only at an empty directory.
    Expose(expose::ExposeArgs),
    /// Undo `vss expose`, by snapshot id or by the path it is exposed at.
    Unexpose(unexpose::UnexposeArgs),
    /// Run a backup program on consistent snapshots: the whole VSS backup sequence around it.
    Backup(backup::BackupArgs),
    /// Restore from a backup with the writers: PreRestore, the restore COMMAND, PostRestore.
    Restore(restore::RestoreArgs),
    /// Revert a volume to a persistent snapshot (btrfs): what is on it now is lost.
    Revert(revert::RevertArgs),
}

impl Command {
    /// Argument rules checked before anything else.
    pub fn check(&self) -> Result<(), CliError> {
        match self {
            Command::Create(a) => a.check(),
            Command::Backup(a) => a.check(),
            Command::Restore(a) => a.check(),
            _ => Ok(()),
        }
    }

    /// Runs the command against `engine`.
    pub async fn run(
        &self,
        engine: &Engine,
        out: &mut Out,
        signals: &Signals,
    ) -> Result<u8, CliError> {
        match self {
            Command::List(l) => l.run(engine, out).await,
            Command::Create(a) => a.run(engine, out, signals).await,
            Command::Delete(a) => a.run(engine, out).await,
            Command::Expose(a) => a.run(engine, out).await,
            Command::Unexpose(a) => a.run(engine, out).await,
            Command::Backup(a) => a.run(engine, out, signals).await,
            Command::Restore(a) => a.run(engine, out, signals).await,
            Command::Revert(a) => a.run(engine, out).await,
        }
    }
}

/// `--type`: the backup type given to the writers (`VSS_BACKUP_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// VSS_BT_FULL: everything, and the writers may truncate logs.
    Full,
    /// VSS_BT_COPY: everything, without changing the writers' backup history.
    Copy,
    /// VSS_BT_INCREMENTAL: changes since the last full or incremental backup.
    Incremental,
    /// VSS_BT_DIFFERENTIAL: changes since the last full backup.
    Differential,
    /// VSS_BT_LOG: log files only.
    Log,
}

impl From<TypeArg> for BackupType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Copy => BackupType::Copy,
            TypeArg::Incremental => BackupType::Incremental,
            TypeArg::Differential => BackupType::Differential,
            TypeArg::Log => BackupType::Log,
        }
    }
}

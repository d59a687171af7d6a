//! `vss delete --shadow ID | --set ID | --volume V (--oldest | --all)`, like
//! `vssadmin delete shadows`: DeleteSnapshots for one snapshot or a set, DeleteVolumeSnapshots
//! for the oldest or all snapshots of a volume. An exposed snapshot is unexposed first.
//! Deletion stops at the first snapshot that cannot be deleted; the error says how many were
//! deleted before it.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use serde_json::json;
use uuid::Uuid;
use vss_client::ObjectType;

use crate::connection::Engine;
use crate::exit::{CliError, OK};
use crate::output::Out;
use crate::select;

/// `vss delete`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["shadow", "set", "volume"])))]
#[command(group(ArgGroup::new("which").args(["oldest", "all"])))]
pub struct DeleteArgs {
    /// Delete this snapshot.
    #[arg(long, value_name = "ID")]
    pub shadow: Option<Uuid>,
    /// Delete every snapshot of this set.
    #[arg(long, value_name = "ID")]
    pub set: Option<Uuid>,
    /// Delete snapshots of this original volume (with --oldest or --all).
    #[arg(long, value_name = "VOLUME", requires = "which")]
    pub volume: Option<PathBuf>,
    /// Only the oldest snapshot of --volume.
    #[arg(long, requires = "volume")]
    pub oldest: bool,
    /// Every snapshot of --volume.
    #[arg(long, requires = "volume")]
    pub all: bool,
}

impl DeleteArgs {
    /// Runs it.
    pub async fn run(&self, engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
        let deleted = if let Some(volume) = &self.volume {
            let v = select::canonical(volume).to_string_lossy().into_owned();
            let n = engine
                .admin()
                .await?
                .delete_volume_snapshots(&v, self.oldest)
                .await?;
            u64::try_from(n).unwrap_or(0)
        } else {
            let (id, kind) = match (self.shadow, self.set) {
                (Some(id), _) => (id, ObjectType::Snapshot),
                (None, Some(id)) => (id, ObjectType::SnapshotSet),
                (None, None) => return Err(CliError::usage("give --shadow, --set or --volume")),
            };
            let mut bc = engine.session().await?;
            bc.initialize_for_backup(None).await?;
            bc.delete_snapshots(id, kind, false).await?.deleted
        };
        out.line(format!(
            "Deleted {deleted} shadow cop{}.",
            if deleted == 1 { "y" } else { "ies" }
        ));
        out.set("deleted", json!(deleted));
        Ok(OK)
    }
}

//! `vss revert ID [--force-dismount]`: makes a persistent snapshot's volume hold the snapshot's
//! contents again (RevertToSnapshot; VShadow `-revert`, DiskShadow `revert`). Only the btrfs
//! provider can; the snapshot stays and can be reverted to again. What is on the volume now is
//! lost, so the command names the volume first.

use clap::Args;
use serde_json::json;
use uuid::Uuid;

use crate::connection::Engine;
use crate::exit::{CliError, OK};
use crate::output::Out;

/// `vss revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    /// The persistent snapshot to revert its volume to.
    #[arg(value_name = "ID")]
    pub snapshot: String,

    /// Revert even when the volume is mounted: its mounts are detached and mounted again from
    /// the reverted subvolume (programs with files open there keep the old contents).
    #[arg(long)]
    pub force_dismount: bool,
}

impl RevertArgs {
    /// Runs it.
    pub async fn run(&self, engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
        let trimmed = self.snapshot.trim_start_matches('{').trim_end_matches('}');
        let id = Uuid::parse_str(trimmed).map_err(|e| {
            CliError::usage(format!(
                "'{}' is not a snapshot id ({e}); see `vss list shadows`",
                self.snapshot
            ))
        })?;
        let mut bc = engine.session().await?;
        bc.initialize_for_backup(None).await?;
        let props = bc.get_snapshot_properties(id).await?;
        crate::output::note(format!(
            "reverting {} to shadow copy {{{id}}} of {}",
            props.original_volume, props.creation_timestamp
        ));
        match bc.revert_to_snapshot(id, self.force_dismount).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(vss_client::ErrorCode::VolumeInUse) => {
                return Err(CliError::from_client(e).context(
                    "the volume is in use (stop what uses it, or pass --force-dismount)",
                ));
            }
            Err(e) => return Err(CliError::from_client(e)),
        }
        out.line(format!(
            "{} reverted to shadow copy {{{id}}}.",
            props.original_volume
        ));
        out.set("snapshotId", json!(id.to_string()));
        out.set("volume", json!(props.original_volume));
        Ok(OK)
    }
}

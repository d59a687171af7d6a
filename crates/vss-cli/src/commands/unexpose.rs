//! `vss unexpose ID|PATH`: unmounts an exposed snapshot (UnexposeSnapshot). Given a path, the
//! snapshot exposed there is found with Query (`VSS_CTX_ALL`) by its exposed name.

use clap::Args;
use serde_json::json;
use uuid::Uuid;

use crate::connection::Engine;
use crate::exit::{CliError, OK};
use crate::output::Out;
use crate::select;

/// `vss unexpose`.
#[derive(Debug, Args)]
pub struct UnexposeArgs {
    /// The snapshot id, or the path it is exposed at.
    #[arg(value_name = "ID|PATH")]
    pub target: String,
}

impl UnexposeArgs {
    /// Runs it.
    pub async fn run(&self, engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
        let trimmed = self.target.trim_start_matches('{').trim_end_matches('}');
        let id = match Uuid::parse_str(trimmed) {
            Ok(id) => id,
            Err(_) => {
                let path = select::canonical(std::path::Path::new(&self.target));
                let path = std::path::absolute(&path).unwrap_or(path);
                let shown = path.to_string_lossy().into_owned();
                let mut bc = engine.session().await?;
                bc.initialize_for_backup(None).await?;
                let snaps = bc.query(Some(-1), None, None).await?;
                let found = snaps
                    .iter()
                    .find(|s| s.exposed_name.as_deref() == Some(shown.as_str()))
                    .ok_or_else(|| {
                        CliError::not_found(format!("no snapshot is exposed at {shown}"))
                    })?;
                Uuid::parse_str(&found.snapshot_id).map_err(|e| {
                    CliError::other(format!("snapshot id {}: {e}", found.snapshot_id))
                })?
            }
        };
        engine.admin().await?.unexpose(id).await?;
        out.line(format!("Shadow copy {{{id}}} unexposed."));
        out.set("snapshotId", json!(id.to_string()));
        Ok(OK)
    }
}

//! `vss expose ID PATH`: mounts a persistent snapshot read-only at `PATH`, an existing empty
//! directory (ExposeSnapshot; diskshadow's `expose`). Only persistent snapshots (made with
//! `vss create --persistent`) can be exposed; `vss unexpose` undoes it, and deleting the
//! snapshot unexposes it first.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use uuid::Uuid;

use crate::connection::Engine;
use crate::exit::{CliError, OK};
use crate::output::Out;

/// `vss expose`.
#[derive(Debug, Args)]
pub struct ExposeArgs {
    /// The snapshot (see `vss list shadows`).
    #[arg(value_name = "ID")]
    pub id: Uuid,
    /// An existing empty directory.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

impl ExposeArgs {
    /// Runs it.
    pub async fn run(&self, engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
        let path = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let name = engine
            .admin()
            .await?
            .expose(self.id, &path.to_string_lossy())
            .await?;
        out.line(format!("Shadow copy {{{}}} exposed at {name}", self.id));
        out.set("snapshotId", json!(self.id.to_string()));
        out.set("exposedName", json!(name));
        Ok(OK)
    }
}

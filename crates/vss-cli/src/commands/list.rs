//! `vss list writers|providers|shadows`, like `vssadmin list ...`.
//!
//! - `writers`: every writer instance with its last state and failure as the engine remembers
//!   them (`vss.Admin.ListWriters`). So that writers that are running but were never seen are
//!   listed too, `vss` first runs a session that only gathers metadata and status (Identify
//!   reaches every writer; nothing else happens to them). A writer's remembered state is taken
//!   from before that session, since its Identify starts a fresh record; a writer that fails
//!   Identify now shows that. `answered` tells whether the writer answered this time.
//! - `providers`: `vss.Admin.ListProviders`, in the order of automatic choice.
//! - `shadows`: Query with `VSS_CTX_ALL`, optionally one set or one original volume, grouped by
//!   set, each snapshot with its consistency record.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};
use uuid::Uuid;
use vss_model::WriterState;

use crate::connection::Engine;
use crate::exit::{CliError, OK};
use crate::output::{self, Out};
use crate::sequence;

/// What to list.
#[derive(Debug, Subcommand)]
pub enum List {
    /// Writers with their state and last error (vssadmin list writers).
    Writers,
    /// Snapshot providers, in the order of automatic choice (vssadmin list providers).
    Providers,
    /// Snapshots of every context, grouped by set, with their consistency record (vssadmin
    /// list shadows).
    Shadows {
        /// Only the snapshots of this set.
        #[arg(long, value_name = "ID")]
        set: Option<Uuid>,
        /// Only the snapshots of this original volume.
        #[arg(long, value_name = "VOLUME")]
        volume: Option<PathBuf>,
    },
}

impl List {
    /// Runs the listing.
    pub async fn run(&self, engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
        match self {
            List::Writers => writers(engine, out).await,
            List::Providers => providers(engine, out).await,
            List::Shadows { set, volume } => shadows(engine, out, *set, volume.as_ref()).await,
        }
    }
}

async fn writers(engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
    let mut admin = engine.admin().await?;
    let before = admin.list_writers().await?;
    // A session that reaches every running writer with Identify.
    let answered: HashSet<String> = {
        let mut bc = engine.session().await?;
        bc.initialize_for_backup(None).await?;
        bc.gather_writer_metadata()
            .await?
            .await
            .map_err(|e| CliError::from_client(e).context("GatherWriterMetadata"))?;
        let md = bc.get_writer_metadata().await?;
        sequence::writer_status(&mut bc)
            .await
            .map_err(|e| CliError::from_client(e).context("GatherWriterStatus"))?;
        md.iter().map(|w| w.instance_id.to_string()).collect()
    };
    let after = admin.list_writers().await?;
    let failed_identify = WriterState::FailedAtIdentify.value();
    let merged: Vec<(vss_client::WriterStatus, bool)> = after
        .into_iter()
        .map(|now| {
            let remembered = before.iter().find(|b| b.instance_id == now.instance_id);
            let shown = match remembered {
                Some(b) if now.state != failed_identify => b.clone(),
                _ => now.clone(),
            };
            let ok = answered.contains(&now.instance_id.to_lowercase());
            (shown, ok)
        })
        .collect();
    if merged.is_empty() {
        out.line(output::NO_ITEMS);
    }
    for (s, ok) in &merged {
        for l in output::writer_lines(s) {
            out.line(l);
        }
        if !*ok {
            out.line("   (did not answer now: as last seen)");
        }
        out.line("");
    }
    out.set(
        "writers",
        Value::Array(
            merged
                .iter()
                .map(|(s, ok)| {
                    let mut v = output::writer_json(s);
                    v["answered"] = json!(ok);
                    v
                })
                .collect(),
        ),
    );
    Ok(OK)
}

async fn providers(engine: &Engine, out: &mut Out) -> Result<u8, CliError> {
    let list = engine.admin().await?.list_providers().await?;
    if list.is_empty() {
        out.line(output::NO_ITEMS);
    }
    for p in &list {
        for l in output::provider_lines(p) {
            out.line(l);
        }
        out.line("");
    }
    out.set(
        "providers",
        serde_json::to_value(&list).unwrap_or_else(|_| json!([])),
    );
    Ok(OK)
}

async fn shadows(
    engine: &Engine,
    out: &mut Out,
    set: Option<Uuid>,
    volume: Option<&PathBuf>,
) -> Result<u8, CliError> {
    let providers = sequence::providers(engine).await;
    let mut bc = engine.session().await?;
    bc.initialize_for_backup(None).await?;
    let volume = volume.map(|v| crate::select::canonical(v).to_string_lossy().into_owned());
    let snaps = bc.query(Some(-1), set, volume.as_deref()).await?;
    if snaps.is_empty() {
        out.line(output::NO_ITEMS);
    }
    for l in output::shadow_list_lines(&snaps, &providers) {
        out.line(l);
    }
    out.set(
        "snapshots",
        Value::Array(
            snaps
                .iter()
                .map(|s| output::snapshot_json(s, &providers))
                .collect(),
        ),
    );
    Ok(OK)
}

//! `vss backup [--type T] [--component WRITER:PATH]... VOLUME... -- COMMAND [ARG...]`: the whole
//! VSS backup sequence around a backup program, always in component mode and `VSS_CTX_BACKUP`.
//!
//! Components are chosen as VShadow does, or narrowed with `--component` ([`crate::select`]).
//! The COMMAND runs while the snapshots exist with `VSS_SNAPSHOT_SET_ID`, `VSS_VOLUME_COUNT`,
//! `VSS_VOLUME_i`, `VSS_SNAPSHOT_i` and `{snapshot}` replaced by `VSS_SNAPSHOT_1`
//! ([`crate::child`]). Its exit status decides SetBackupSucceeded for every component; then
//! BackupComplete and GatherWriterStatus, and the writers' final statuses are printed.
//!
//! With `--in-place` (root only) the COMMAND runs in a private mount namespace where each
//! snapshot is mounted read-only over its original volume, so that backup tools record the
//! original paths ([`crate::child::inplace`]); the volume `/` is refused.
//!
//! `--save-bcd FILE` and `--save-dir DIR` keep what `vss restore` needs: the Backup Components
//! Document and the writers' metadata ([`crate::saved`]), written before the COMMAND runs
//! (`VSS_BCD` names the BCD, so the backup program can store it with its data) and again after
//! BackupComplete. A BCD that cannot be written before the COMMAND fails the backup (exit 7):
//! without it the backup cannot be restored through the writers.
//!
//! Exit code: 3, 4 or 5 when the snapshot set could not be made (no such or unsupported volume;
//! a writer failed it; any other reason), else the COMMAND's status when it failed, else 4 when
//! a selected writer failed, else 0.
//!
//! Not yet: snapshots that are not directories (image and exec providers) must be exposed to
//! be read, which vssd allows only for persistent snapshots; `backup` makes non-persistent ones
//! and so fails such volumes with exit code 3 after reporting the backup as failed to the
//! writers (use `vss create --persistent VOLUME -- COMMAND`, then `vss delete`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::TypeArg;
use crate::child;
use crate::connection::Engine;
use crate::exit::{self, CliError};
use crate::output::{self, Out};
use crate::saved::SaveTo;
use crate::select::ComponentSpec;
use crate::sequence::{self, Exposures, Plan, Selection};
use crate::signals::Signals;

/// `vss backup`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  vss backup /srv/data -- restic backup {snapshot}
  vss backup --in-place /srv/data -- restic backup /srv/data
  vss backup --component 'postgres:main' /var/lib/postgresql -- sh -c 'tar -C \"$VSS_SNAPSHOT_1\" -cf /backup/pg.tar .'
  vss backup --save-dir /backup/docs /srv -- sh -c 'cp -a \"$VSS_SNAPSHOT_1\"/data /backup/data'")]
pub struct BackupArgs {
    /// The backup type the writers are told.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full, value_name = "TYPE")]
    pub backup_type: TypeArg,
    /// Include only this writer's components, or only this component: WRITER (name, writer id
    /// or instance id), WRITER:LOGICALPATH\NAME or WRITER:NAME. Repeatable.
    #[arg(long = "component", value_name = "WRITER:PATH")]
    pub components: Vec<ComponentSpec>,
    /// Run the COMMAND in a private mount namespace where each snapshot is mounted read-only
    /// over its original volume, so that it sees (and records) the original paths. Root only;
    /// not for the volume /.
    #[arg(long)]
    pub in_place: bool,
    /// Save the Backup Components Document (what `vss restore --bcd` reads: the components,
    /// the writers' backup metadata and results) to FILE, before the COMMAND runs (it gets
    /// VSS_BCD=FILE) and again after BackupComplete.
    #[arg(long, value_name = "FILE")]
    pub save_bcd: Option<PathBuf>,
    /// Save DIR/bcd.xml (as --save-bcd) and the metadata of every writer with included
    /// components as DIR/wmd-WRITER[-INSTANCE].xml (DIR is created if missing; the COMMAND gets
    /// VSS_SAVE_DIR).
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
    /// Volumes to snapshot: mount points, btrfs subvolume roots, or reflink directories.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<PathBuf>,
    /// The backup program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl BackupArgs {
    /// Nothing clap does not check already.
    pub fn check(&self) -> Result<(), CliError> {
        if self.command.is_empty() {
            return Err(CliError::usage("give the backup command after --"));
        }
        if self.in_place {
            crate::inplace::check_caller()?;
            for v in &self.volumes {
                crate::inplace::check_volume(v)?;
            }
        }
        Ok(())
    }

    /// Runs it.
    pub async fn run(
        &self,
        engine: &Engine,
        out: &mut Out,
        signals: &Signals,
    ) -> Result<u8, CliError> {
        let providers = sequence::providers(engine).await;
        let plan = Plan {
            context: 0,
            backup_type: self.backup_type.into(),
            selection: if self.components.is_empty() {
                Selection::Default
            } else {
                Selection::Explicit(self.components.clone())
            },
            volumes: self
                .volumes
                .iter()
                .map(|v| sequence::absolute_volume(v))
                .collect(),
            provider: None,
        };
        let save = SaveTo {
            bcd: self.save_bcd.clone(),
            dir: self.save_dir.clone(),
        };
        let mut made = sequence::make_set(engine, &plan, out, &providers).await?;
        if save.any() {
            // Before the COMMAND, so that it can keep the documents with the backup's data.
            if let Err(e) = save.save(&mut made.bc, &made.writers, &made.selected).await {
                out.line("The documents cannot be saved; reporting the backup as failed.");
                let _ = sequence::complete(&mut made, false, out).await;
                return Err(e);
            }
        }
        let mut exposures = Exposures::default();
        let readable = match sequence::readable(engine, &made, false, &mut exposures).await {
            Ok(r) => r,
            Err(e) => {
                exposures.release(engine).await;
                out.line("The snapshots cannot be read; reporting the backup as failed.");
                let _ = sequence::complete(&mut made, false, out).await;
                return Err(e);
            }
        };
        let argv: Vec<String> = self
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        out.line(format!(
            "Running {}{}",
            child::display(&self.command),
            if self.in_place {
                " with the snapshots mounted over the volumes"
            } else {
                ""
            }
        ));
        let status = child::run_with(
            &self.command,
            made.set_id,
            &readable,
            out.is_json(),
            signals,
            self.in_place,
            &save.environment(),
        )
        .await;
        exposures.release(engine).await;
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                let _ = sequence::complete(&mut made, false, out).await;
                return Err(e);
            }
        };
        let succeeded = status == 0;
        out.line(format!(
            "The command exited with status {status}; reporting the backup as {} to the writers.",
            if succeeded { "succeeded" } else { "failed" }
        ));
        out.set(
            "command",
            json!({
                "argv": argv,
                "status": status,
                "succeeded": succeeded,
                "inPlace": self.in_place,
            }),
        );
        let statuses = sequence::complete(&mut made, succeeded, out).await?;
        if save.any() {
            // Again: now the BCD also holds each component's backup result.
            let written = save
                .save(&mut made.bc, &made.writers, &made.selected)
                .await?;
            for p in written.bcd.iter().chain(&written.wmd) {
                out.line(format!("Saved {}", p.display()));
            }
            out.set(
                "saved",
                json!({
                    "bcd": written.bcd.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
                    "wmd": written.wmd.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
                }),
            );
        }
        let failed = sequence::failed_selected(&statuses, &made.selected);
        if !succeeded {
            return Ok(status);
        }
        if !failed.is_empty() {
            output::note(format!("selected writer(s) failed: {}", failed.join(", ")));
            return Ok(exit::WRITER_FAILED);
        }
        Ok(exit::OK)
    }
}

//! `vss create [--persistent] [--no-writers] [--provider NAME] [--type T] VOLUME... [-- COMMAND...]`:
//! makes a snapshot set the way vshadow does.
//!
//! Contexts as vshadow: default `VSS_CTX_BACKUP` (0), `--no-writers` `VSS_CTX_FILE_SHARE_BACKUP`
//! (0x10), `--persistent` `VSS_CTX_APP_ROLLBACK` (0x9), both `VSS_CTX_NAS_ROLLBACK` (0x19).
//! With writers the full component-mode sequence runs (components chosen as VShadow does, see
//! [`crate::select`]). Without `--persistent` the snapshots vanish when `vss` exits, so a
//! COMMAND is required; it runs while they exist, with the environment of `vss backup`
//! ([`crate::child`]). When writers took part, BackupComplete follows, each component reported
//! as backed up when the COMMAND succeeded (or when there is none).
//!
//! Exit code: the COMMAND's status when it failed, else 4 when a selected writer failed, else 0.
//! A persistent snapshot that is not a directory (an image file) is exposed in a private
//! directory for the COMMAND and unexposed afterwards.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use uuid::Uuid;
use vss_model::SnapshotContext;

use super::TypeArg;
use crate::child;
use crate::connection::Engine;
use crate::exit::{self, CliError};
use crate::output::{self, Out};
use crate::sequence::{self, Exposures, Plan, Selection};
use crate::signals::Signals;

/// `vss create`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  vss create --persistent /srv/data
  vss create /srv/data -- tar -C {snapshot} -cf /backup/data.tar .")]
pub struct CreateArgs {
    /// Keep the snapshots after vss exits (VSS_CTX_APP_ROLLBACK; with --no-writers
    /// VSS_CTX_NAS_ROLLBACK).
    #[arg(long)]
    pub persistent: bool,
    /// Do not involve writers (VSS_CTX_FILE_SHARE_BACKUP; crash-consistent snapshots).
    #[arg(long)]
    pub no_writers: bool,
    /// Use this provider (btrfs, reflink, image, exec: see `vss list providers`).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// The backup type the writers are told.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full, value_name = "TYPE")]
    pub backup_type: TypeArg,
    /// Volumes to snapshot: mount points, btrfs subvolume roots, or reflink directories.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<PathBuf>,
    /// A command to run while the snapshots exist (required without --persistent), with
    /// VSS_SNAPSHOT_SET_ID, VSS_VOLUME_COUNT, VSS_VOLUME_i, VSS_SNAPSHOT_i set and {snapshot}
    /// in its arguments replaced by VSS_SNAPSHOT_1.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl CreateArgs {
    /// The context vshadow would use for these flags.
    pub fn context(&self) -> SnapshotContext {
        match (self.persistent, self.no_writers) {
            (false, false) => SnapshotContext::BACKUP,
            (false, true) => SnapshotContext::FILE_SHARE_BACKUP,
            (true, false) => SnapshotContext::APP_ROLLBACK,
            (true, true) => SnapshotContext::NAS_ROLLBACK,
        }
    }

    /// Without --persistent a COMMAND is required.
    pub fn check(&self) -> Result<(), CliError> {
        if !self.persistent && self.command.is_empty() {
            return Err(CliError::usage(
                "without --persistent the snapshots vanish when vss exits: give a command to run \
                 while they exist (vss create VOLUME... -- COMMAND...) or use --persistent",
            ));
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
        let provider = match &self.provider {
            None => None,
            Some(name) => Some(provider_id(&providers, name)?),
        };
        let plan = Plan {
            context: i64::from(self.context().value()),
            backup_type: self.backup_type.into(),
            selection: Selection::Default,
            volumes: self
                .volumes
                .iter()
                .map(|v| sequence::absolute_volume(v))
                .collect(),
            provider,
        };
        let mut made = sequence::make_set(engine, &plan, out, &providers).await?;
        let mut code = exit::OK;
        let mut succeeded = true;
        if !self.command.is_empty() {
            let mut exposures = Exposures::default();
            let readable =
                sequence::readable(engine, &made, plan.persistent(), &mut exposures).await;
            let result = match readable {
                Ok(r) => {
                    out.line(format!("Running {}", child::display(&self.command)));
                    child::run(&self.command, made.set_id, &r, out.is_json(), signals).await
                }
                Err(e) => Err(e),
            };
            exposures.release(engine).await;
            match result {
                Ok(status) => {
                    out.line(format!("The command exited with status {status}"));
                    out.set(
                        "command",
                        json!({
                            "argv": self
                                .command
                                .iter()
                                .map(|a| a.to_string_lossy())
                                .collect::<Vec<_>>(),
                            "status": status,
                            "succeeded": status == 0,
                        }),
                    );
                    if status != 0 {
                        succeeded = false;
                        code = status;
                    }
                }
                Err(e) => {
                    if made.with_writers {
                        let _ = sequence::complete(&mut made, false, out).await;
                    }
                    return Err(e);
                }
            }
        }
        if made.with_writers {
            let statuses = sequence::complete(&mut made, succeeded, out).await?;
            let failed = sequence::failed_selected(&statuses, &made.selected);
            if !failed.is_empty() {
                output::note(format!("selected writer(s) failed: {}", failed.join(", ")));
                if code == exit::OK {
                    code = exit::WRITER_FAILED;
                }
            }
        }
        Ok(code)
    }
}

/// The id of the provider called `name` (case-insensitive), or an id given as such.
pub fn provider_id(
    providers: &[vss_protocol::admin::Provider],
    name: &str,
) -> Result<Uuid, CliError> {
    if let Some(p) = providers.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
        return Uuid::parse_str(&p.provider_id)
            .map_err(|e| CliError::other(format!("provider {} has a bad id: {e}", p.name)));
    }
    let trimmed = name.trim_start_matches('{').trim_end_matches('}');
    if let Ok(id) = Uuid::parse_str(trimmed)
        && providers
            .iter()
            .any(|p| p.provider_id.eq_ignore_ascii_case(trimmed))
    {
        return Ok(id);
    }
    Err(CliError::not_found(format!(
        "no provider '{name}' is registered (providers: {})",
        if providers.is_empty() {
            "none".to_owned()
        } else {
            providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(persistent: bool, no_writers: bool, command: &[&str]) -> CreateArgs {
        CreateArgs {
            persistent,
            no_writers,
            provider: None,
            backup_type: TypeArg::Full,
            volumes: vec!["/v".into()],
            command: command.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn vshadow_contexts() {
        assert_eq!(args(false, false, &["x"]).context().value(), 0);
        assert_eq!(args(false, true, &["x"]).context().value(), 0x10);
        assert_eq!(args(true, false, &[]).context().value(), 0x9);
        assert_eq!(args(true, true, &[]).context().value(), 0x19);
    }

    #[test]
    fn non_persistent_needs_a_command() {
        assert_eq!(
            args(false, false, &[]).check().unwrap_err().exit,
            exit::USAGE
        );
        assert!(args(false, false, &["true"]).check().is_ok());
        assert!(args(true, false, &[]).check().is_ok());
    }

    #[test]
    fn provider_names() {
        let p = vec![vss_protocol::admin::Provider {
            provider_id: "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01".into(),
            name: "btrfs".into(),
            provider_type: "VSS_PROV_SOFTWARE".into(),
            version: "1".into(),
        }];
        assert_eq!(
            provider_id(&p, "BTRFS").unwrap().to_string(),
            "0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01"
        );
        assert!(provider_id(&p, "{0b1a5e5c-8f2e-4c6e-9a41-6c1f0b7e2a01}").is_ok());
        assert_eq!(provider_id(&p, "image").unwrap_err().exit, exit::NOT_FOUND);
    }
}

//! The administration calls the commands make outside a backup sequence: `vss.Admin`
//! (ListWriters, ListProviders) and DeleteVolumeSnapshots, ExposeSnapshot and UnexposeSnapshot,
//! through the requester library on a connection of their own.
//!
//! Like any `vss.Requester` call, the administration methods need a backup-mode session on
//! their connection, so [`AdminSession::connect`] opens one with InitializeForBackup;
//! `vss.Admin` needs none.

use std::path::Path;

use uuid::Uuid;
use vss_client::BackupComponents;
use vss_protocol::admin::Provider;
use vss_protocol::requester::WriterStatus;

use crate::exit::CliError;

/// A connection to the engine with an initialized backup-mode session.
#[derive(Debug)]
pub struct AdminSession {
    bc: BackupComponents,
}

impl AdminSession {
    /// Connects to `socket` and calls InitializeForBackup.
    pub async fn connect(socket: &Path) -> Result<Self, CliError> {
        let mut bc = BackupComponents::connect(socket).await?;
        bc.initialize_for_backup(None).await?;
        Ok(AdminSession { bc })
    }

    /// `vss.Admin.ListWriters`: every writer instance the engine has met, with its last state.
    pub async fn list_writers(&mut self) -> Result<Vec<WriterStatus>, CliError> {
        Ok(self.bc.list_writers().await?)
    }

    /// `vss.Admin.ListProviders`, in the order of automatic choice.
    pub async fn list_providers(&mut self) -> Result<Vec<Provider>, CliError> {
        Ok(self.bc.list_providers().await?)
    }

    /// DeleteVolumeSnapshots: the oldest snapshot of `volume`, or all of them.
    pub async fn delete_volume_snapshots(
        &mut self,
        volume: &str,
        oldest_only: bool,
    ) -> Result<i64, CliError> {
        let n = self.bc.delete_volume_snapshots(volume, oldest_only).await?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// ExposeSnapshot: mounts a persistent snapshot read-only at `path`; returns where.
    pub async fn expose(&mut self, snapshot: Uuid, path: &str) -> Result<String, CliError> {
        Ok(self.bc.expose_snapshot(snapshot, path).await?)
    }

    /// UnexposeSnapshot.
    pub async fn unexpose(&mut self, snapshot: Uuid) -> Result<(), CliError> {
        Ok(self.bc.unexpose_snapshot(snapshot).await?)
    }
}

//! Calls the requester library does not offer yet: `vss.Admin` (ListWriters, ListProviders)
//! and the administration methods DeleteVolumeSnapshots, ExposeSnapshot and UnexposeSnapshot,
//! made directly with the protocol crate's transport on a connection of their own.
//!
//! Like any `vss.Requester` call, the administration methods need a backup-mode session on
//! their connection, so [`AdminSession::connect`] opens one with InitializeForBackup;
//! `vss.Admin` needs none.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use vss_model::ErrorCode;
use vss_protocol::Empty;
use vss_protocol::admin::{self, Provider, ProviderList, WriterList};
use vss_protocol::requester::{
    self as rq, DeleteVolumeSnapshots, DeletedCount, ExposeReply, ExposeSnapshot, SnapshotIdParam,
    WriterStatus,
};
use vss_protocol::transport::{self, CallError, Connection};

use crate::exit::CliError;

/// A connection to the engine with an initialized backup-mode session.
#[derive(Debug)]
pub struct AdminSession {
    conn: Connection,
}

/// Maps a transport failure: a failed connect means vssd is unreachable (6), anything else is a
/// broken conversation (7).
pub fn transport_error(e: CallError) -> CliError {
    match e {
        CallError::Connect { .. } => CliError::unreachable(e.to_string()),
        other => CliError::other(format!("talking to the engine: {other}")),
    }
}

impl AdminSession {
    /// Connects to `socket` and calls InitializeForBackup.
    pub async fn connect(socket: &Path) -> Result<Self, CliError> {
        let conn = transport::connect(socket).await.map_err(transport_error)?;
        let mut s = AdminSession { conn };
        let _: serde_json::Value = s
            .call(
                &format!("{}.InitializeForBackup", rq::INTERFACE),
                &rq::InitializeForBackup::default(),
            )
            .await?;
        Ok(s)
    }

    /// One call; a VSS error reply becomes a [`CliError`] classified by its code.
    async fn call<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<R, CliError> {
        let decoded = transport::call::<P, R>(&mut self.conn, method, params)
            .await
            .map_err(transport_error)?;
        transport::into_result(decoded, ErrorCode::Unexpected).map_err(CliError::from_vss)
    }

    /// `vss.Admin.ListWriters`: every writer instance the engine has met, with its last state.
    pub async fn list_writers(&mut self) -> Result<Vec<WriterStatus>, CliError> {
        let r: WriterList = self
            .call(&format!("{}.ListWriters", admin::INTERFACE), &Empty {})
            .await?;
        Ok(r.writers)
    }

    /// `vss.Admin.ListProviders`, in the order of automatic choice.
    pub async fn list_providers(&mut self) -> Result<Vec<Provider>, CliError> {
        let r: ProviderList = self
            .call(&format!("{}.ListProviders", admin::INTERFACE), &Empty {})
            .await?;
        Ok(r.providers)
    }

    /// DeleteVolumeSnapshots: the oldest snapshot of `volume`, or all of them.
    pub async fn delete_volume_snapshots(
        &mut self,
        volume: &str,
        oldest_only: bool,
    ) -> Result<i64, CliError> {
        let r: DeletedCount = self
            .call(
                &format!("{}.DeleteVolumeSnapshots", rq::INTERFACE),
                &DeleteVolumeSnapshots {
                    volume: volume.to_owned(),
                    oldest_only,
                },
            )
            .await?;
        Ok(r.deleted)
    }

    /// ExposeSnapshot: mounts a persistent snapshot read-only at `path`; returns where.
    pub async fn expose(&mut self, snapshot: Uuid, path: &str) -> Result<String, CliError> {
        let r: ExposeReply = self
            .call(
                &format!("{}.ExposeSnapshot", rq::INTERFACE),
                &ExposeSnapshot {
                    snapshot_id: snapshot.to_string(),
                    path: path.to_owned(),
                },
            )
            .await?;
        Ok(r.exposed_name)
    }

    /// UnexposeSnapshot.
    pub async fn unexpose(&mut self, snapshot: Uuid) -> Result<(), CliError> {
        let _: serde_json::Value = self
            .call(
                &format!("{}.UnexposeSnapshot", rq::INTERFACE),
                &SnapshotIdParam {
                    snapshot_id: snapshot.to_string(),
                },
            )
            .await?;
        Ok(())
    }
}

//! The `vss.Requester` server: one task per accepted connection, which owns that connection's
//! session (a backup-components object). End of file or a read error is the disconnect event
//! that releases the session.
//!
//! zlink's ready-made `Server` runs handlers inline in one task and drops dead connections
//! silently, which cannot carry a connection-bound session; hence this loop over
//! `zlink::Connection`. No handler awaits writers: asynchronous calls start an operation task
//! and return its id at once.

use std::future::Future;
use std::sync::Arc;

use vss_model::session::RestoreComponent;
use vss_model::{BackupType, ComponentType, VssError};
use vss_protocol::{
    Empty, RawCall, parse_id,
    requester::{self as rq, ERROR_VSS},
    transport::{self, Connection},
};

use crate::config::Config;
use crate::engine::{Engine, SessionCtx};
use crate::ops::CancelOutcome;

/// Serves until `shutdown` resolves. Binds `config.socket` (replacing a stale socket file).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    for dir in [
        config.socket.parent(),
        Some(config.writers_dir.as_path()),
        Some(config.run_dir.as_path()),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir)?;
    }
    // Writers' sockets are trusted only in a directory others cannot write to.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config.writers_dir)?.permissions().mode();
        if mode & 0o002 != 0 {
            anyhow::bail!(
                "the writers directory {} is world-writable (mode {:o}); anyone could plant a writer there. chmod o-w it",
                config.writers_dir.display(),
                mode & 0o7777
            );
        }
    }
    crate::fanout::set_writer_uids(config.writer_uids.clone());
    // One engine per run directory: a vssd started while an embedded `vss` run is live waits
    // for it, so that its startup recovery never deletes that run's snapshots.
    let _engine_lock = engine_lock(&config.run_dir).await?;
    let engine = Engine::new(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    engine.recover().await;
    // Socket activation: systemd owns the socket (path, mode, group are in vssd.socket).
    let (listener, owns_socket) = match crate::activation::take_listen_fd() {
        Some(fd) => (transport::Listener::from_fd(fd)?, false),
        None => {
            if config.socket.exists() {
                std::fs::remove_file(&config.socket)?;
            }
            let mode = if config.socket_group.is_some() {
                0o660
            } else {
                0o600
            };
            let listener = transport::Listener::bind(&config.socket, mode)?;
            if let Some(gid) = config.socket_group {
                rustix::fs::chown(&config.socket, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            }
            (listener, true)
        }
    };
    crate::activation::notify("READY=1\nSTATUS=serving vss.Requester");
    tracing::info!(socket = %config.socket.display(), writers = %config.writers_dir.display(), "vssd listening");
    tokio::pin!(shutdown);
    // On shutdown every live session is ended as if its requester had closed: writers get
    // BackupShutdown, auto-release snapshots are deleted, the lock is released.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    let (engine, stop) = (engine.clone(), stop_rx.clone());
                    connections.spawn(async move { serve_connection(engine, conn, stop).await });
                }
                Err(e) => {
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    crate::activation::notify("STOPPING=1");
    drop(listener);
    if owns_socket {
        let _ = std::fs::remove_file(&config.socket);
    }
    if !connections.is_empty() {
        tracing::info!(sessions = connections.len(), "ending live sessions");
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    tracing::info!("vssd stopped");
    Ok(())
}

/// Who may use the requester interfaces: root, or a member (primary or supplementary group,
/// from SO_PEERCRED and SO_PEERGROUPS) of the configured requester group.
fn requester_allowed(uid: u32, groups: &[u32], requester_group: Option<u32>) -> bool {
    uid == 0 || requester_group.is_some_and(|g| groups.contains(&g))
}

/// Takes the exclusive `flock` on `<run-dir>/engine.lock`, waiting (and saying so) while
/// another engine holds it. The kernel drops it when its holder dies.
async fn engine_lock(run_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use rustix::fs::{FlockOperation, flock};
    let path = run_dir.join("engine.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
        return Ok(file);
    }
    tracing::warn!(lock = %path.display(), "another engine (vssd, or `vss` running without vssd) uses this run directory; waiting for it to finish");
    let file = tokio::task::spawn_blocking(move || {
        flock(&file, FlockOperation::LockExclusive).map(|()| file)
    })
    .await??;
    Ok(file)
}

async fn serve_connection(
    engine: Arc<Engine>,
    mut conn: Connection,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (uid, allowed) = match conn.peer_credentials().await {
        Ok(c) => {
            let uid = c.unix_user_id().as_raw();
            let groups: Vec<u32> = std::iter::once(c.unix_primary_group_id().as_raw())
                .chain(c.unix_supplementary_group_ids().iter().map(|g| g.as_raw()))
                .collect();
            (
                uid,
                requester_allowed(uid, &groups, engine.config.socket_group),
            )
        }
        Err(e) => {
            tracing::warn!("cannot read peer credentials: {e}; closing the connection");
            return;
        }
    };
    if !allowed {
        tracing::warn!(
            uid,
            "requester is neither root nor in the requester group; every call is refused"
        );
    }
    let ctx = SessionCtx::new(uid);
    tracing::debug!(uid, "requester connected");
    loop {
        let received = tokio::select! {
            r = transport::receive_call(&mut conn) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let call = match received {
            Ok(Some(c)) => c,
            Ok(None) => break,
            // A message that is not a varlink call (bad JSON, not an object, no method): the
            // framing is intact, so answer it and go on.
            Err(transport::CallError::Malformed(m)) => {
                let e = VssError::invalid_arg(format!(
                    "the message is not a varlink call ({m}); send {{\"method\": \"vss.Requester.X\", \"parameters\": {{...}}}}"
                ));
                if transport::reply_error(&mut conn, ERROR_VSS, &e)
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            // The rest of an oversized message was never read: answer, then close.
            Err(transport::CallError::TooLarge) => {
                let e = VssError::invalid_arg(format!(
                    "a message exceeds the limit of {} bytes; the connection is closed. Send smaller calls (a BCD or a component list that large is refused)",
                    vss_protocol::MAX_MESSAGE_BYTES
                ));
                tracing::warn!(uid, "{e}");
                let _ = transport::reply_error(&mut conn, ERROR_VSS, &e).await;
                break;
            }
            Err(e) => {
                tracing::info!(uid, "requester connection ended: {e}");
                break;
            }
        };
        let method = call.method.clone();
        let result = if allowed {
            tokio::select! {
                r = dispatch(&engine, &ctx, &call) => r,
                _ = stop.wait_for(|s| *s) => break,
            }
        } else {
            Err(VssError::new(
                vss_model::ErrorCode::AccessDenied,
                format!(
                    "uid {uid} may not use vssd: requesters must be root or members of the requester group{}",
                    engine
                        .config
                        .socket_group
                        .map(|g| format!(" (gid {g})"))
                        .unwrap_or_else(
                            || " (none is configured: requester_group in vssd.toml)".into()
                        )
                ),
            ))
        };
        let sent = match result {
            Ok(Reply::Json(v)) => transport::reply(&mut conn, &v).await,
            Ok(Reply::NotFound) => transport::reply_method_not_found(&mut conn, &method).await,
            Ok(Reply::InterfaceNotFound) => {
                let iface = method
                    .rsplit_once('.')
                    .map(|(i, _)| i)
                    .unwrap_or(&method)
                    .to_owned();
                transport::reply_varlink_error(
                    &mut conn,
                    "org.varlink.service.InterfaceNotFound",
                    serde_json::json!({ "interface": iface }),
                )
                .await
            }
            Err(e) => {
                tracing::debug!(%method, "{e}");
                transport::reply_error(&mut conn, ERROR_VSS, &e).await
            }
        };
        if sent.is_err() {
            break;
        }
    }
    tracing::debug!(uid, "requester disconnected; releasing its session");
    engine.end_session(&ctx).await;
}

enum Reply {
    Json(serde_json::Value),
    NotFound,
    InterfaceNotFound,
}

fn json<T: serde::Serialize>(t: T) -> Result<Reply, VssError> {
    serde_json::to_value(t)
        .map(Reply::Json)
        .map_err(|e| VssError::unexpected(e.to_string()))
}

fn op(id: vss_model::Id) -> Result<Reply, VssError> {
    json(rq::OperationReply {
        operation: id.to_string(),
    })
}

fn component_type(s: &str) -> Result<ComponentType, VssError> {
    s.parse()
}

/// The component a restore call names, from its wire fields.
fn restore_component<'a>(
    writer_id: &str,
    component_type_name: &str,
    logical_path: &'a Option<String>,
    name: &'a str,
) -> Result<RestoreComponent<'a>, VssError> {
    Ok(RestoreComponent {
        writer_id: parse_id("writerId", writer_id)?,
        instance_id: None,
        component_type: component_type(component_type_name)?,
        logical_path: logical_path.as_deref().unwrap_or(""),
        name,
    })
}

/// `vss.Admin`: read-only, needs no session.
fn dispatch_admin(engine: &Engine, name: &str, call: &RawCall) -> Result<Reply, VssError> {
    use vss_protocol::admin;
    match name {
        "ListWriters" => {
            call.params::<Empty>()?;
            json(admin::WriterList {
                writers: engine.writer_history(),
            })
        }
        "ListProviders" => {
            call.params::<Empty>()?;
            let providers = engine
                .providers()
                .into_iter()
                .map(|p| admin::Provider {
                    provider_id: p.id.to_string(),
                    name: p.name,
                    provider_type: p.provider_type.name().to_owned(),
                    version: p.version,
                })
                .collect();
            json(admin::ProviderList { providers })
        }
        "Events" => {
            let p: admin::EventsParam = call.params()?;
            let (events, last) = engine.events_after(p.after);
            json(admin::EventList { events, last })
        }
        _ => Ok(Reply::NotFound),
    }
}

async fn dispatch(
    engine: &Arc<Engine>,
    ctx: &Arc<SessionCtx>,
    call: &RawCall,
) -> Result<Reply, VssError> {
    if let Some(name) = call.method.strip_prefix("vss.Admin.") {
        return dispatch_admin(engine, name, call);
    }
    let Some(name) = call.method.strip_prefix("vss.Requester.") else {
        return match call.method.as_str() {
            "org.varlink.service.GetInfo" => json(serde_json::json!({
                "vendor": "vss for Linux",
                "product": "vssd",
                "version": env!("CARGO_PKG_VERSION"),
                "url": "https://example.invalid/vss",
                "interfaces": ["org.varlink.service", "vss.Requester", "vss.Admin"],
            })),
            "org.varlink.service.GetInterfaceDescription" => {
                let iface = call.params::<serde_json::Value>()?;
                match iface.get("interface").and_then(|v| v.as_str()) {
                    Some("vss.Requester") => {
                        json(serde_json::json!({ "description": vss_protocol::REQUESTER_IDL }))
                    }
                    Some("vss.Admin") => {
                        json(serde_json::json!({ "description": vss_protocol::ADMIN_IDL }))
                    }
                    _ => Ok(Reply::InterfaceNotFound),
                }
            }
            m if m.starts_with("org.varlink.service.") => Ok(Reply::NotFound),
            _ => Ok(Reply::InterfaceNotFound),
        };
    };
    match name {
        "GetProtocolVersion" => {
            call.params::<Empty>()?;
            json(rq::ProtocolVersion {
                version: vss_protocol::PROTOCOL_VERSION,
                product: "vss for Linux".into(),
                product_version: env!("CARGO_PKG_VERSION").into(),
            })
        }
        "InitializeForBackup" => {
            let p: rq::InitializeForBackup = call.params()?;
            engine.initialize_for_backup(ctx, p.bcd).await?;
            json(Empty {})
        }
        "InitializeForRestore" => {
            let p: rq::InitializeForRestore = call.params()?;
            engine.initialize_for_restore(ctx, p.bcd).await?;
            json(Empty {})
        }
        "SetContext" => {
            let p: rq::SetContext = call.params()?;
            engine.set_context(ctx, p.context).await?;
            json(Empty {})
        }
        "SetBackupState" => {
            let p: rq::SetBackupState = call.params()?;
            let bt: BackupType = p.backup_type.parse()?;
            engine
                .set_backup_state(
                    ctx,
                    p.select_components,
                    p.bootable_system_state,
                    bt,
                    p.partial_file_support,
                )
                .await?;
            json(Empty {})
        }
        "GatherWriterMetadata" => {
            call.params::<Empty>()?;
            op(engine.gather_writer_metadata(ctx).await?)
        }
        "GetWriterMetadata" => {
            call.params::<Empty>()?;
            json(rq::WriterMetadataList {
                writers: engine.get_writer_metadata(ctx).await?,
            })
        }
        "AddComponent" => {
            let p: rq::AddComponent = call.params()?;
            engine
                .add_component(
                    ctx,
                    parse_id("instanceId", &p.instance_id)?,
                    parse_id("writerId", &p.writer_id)?,
                    component_type(&p.component_type)?,
                    p.logical_path.as_deref().unwrap_or(""),
                    &p.name,
                )
                .await?;
            json(Empty {})
        }
        "StartSnapshotSet" => {
            call.params::<Empty>()?;
            let id = engine.start_snapshot_set(ctx).await?;
            json(rq::StartSnapshotSetReply {
                snapshot_set_id: id.to_string(),
            })
        }
        "AddToSnapshotSet" => {
            let p: rq::AddToSnapshotSet = call.params()?;
            let provider = p
                .provider_id
                .as_deref()
                .map(|s| parse_id("providerId", s))
                .transpose()?;
            let id = engine.add_to_snapshot_set(ctx, &p.volume, provider).await?;
            json(rq::AddToSnapshotSetReply {
                snapshot_id: id.to_string(),
            })
        }
        "PrepareForBackup" => {
            call.params::<Empty>()?;
            op(engine.prepare_for_backup(ctx).await?)
        }
        "DoSnapshotSet" => {
            call.params::<Empty>()?;
            op(engine.do_snapshot_set(ctx).await?)
        }
        "GetSnapshotProperties" => {
            let p: rq::SnapshotIdParam = call.params()?;
            json(
                engine
                    .get_snapshot_properties(ctx, parse_id("snapshotId", &p.snapshot_id)?)
                    .await?,
            )
        }
        "SetBackupSucceeded" => {
            let p: rq::SetBackupSucceeded = call.params()?;
            engine
                .set_backup_succeeded(
                    ctx,
                    parse_id("instanceId", &p.instance_id)?,
                    parse_id("writerId", &p.writer_id)?,
                    component_type(&p.component_type)?,
                    p.logical_path.as_deref().unwrap_or(""),
                    &p.name,
                    p.succeeded,
                )
                .await?;
            json(Empty {})
        }
        "BackupComplete" => {
            call.params::<Empty>()?;
            op(engine.backup_complete(ctx).await?)
        }
        "GatherWriterStatus" => {
            call.params::<Empty>()?;
            op(engine.gather_writer_status(ctx).await?)
        }
        "GetWriterStatus" => {
            call.params::<Empty>()?;
            json(rq::WriterStatusList {
                writers: engine.get_writer_status(ctx).await?,
            })
        }
        "AbortBackup" => {
            call.params::<Empty>()?;
            engine.abort_backup(ctx).await?;
            json(Empty {})
        }
        "SaveAsXml" => {
            call.params::<Empty>()?;
            json(rq::SaveAsXmlReply {
                bcd: engine.save_as_xml(ctx).await?,
            })
        }
        "Query" => {
            let p: rq::Query = call.params()?;
            let set = p
                .snapshot_set_id
                .as_deref()
                .map(|s| parse_id("snapshotSetId", s))
                .transpose()?;
            json(rq::QueryReply {
                snapshots: engine.query(ctx, p.context, set, p.volume).await?,
            })
        }
        "DeleteSnapshots" => {
            let p: rq::DeleteSnapshots = call.params()?;
            let id = parse_id("sourceId", &p.source_id)?;
            let is_set = match p.source_type.as_str() {
                "VSS_OBJECT_SNAPSHOT" => false,
                "VSS_OBJECT_SNAPSHOT_SET" => true,
                other => {
                    return Err(VssError::invalid_arg(format!(
                        "sourceType '{other}' is not VSS_OBJECT_SNAPSHOT or VSS_OBJECT_SNAPSHOT_SET"
                    )));
                }
            };
            let (deleted, non) = engine.delete_snapshots(ctx, id, is_set).await?;
            json(rq::DeleteSnapshotsReply {
                deleted,
                non_deleted_snapshot_id: non.map(|i| i.to_string()),
            })
        }
        "DeleteVolumeSnapshots" => {
            let p: rq::DeleteVolumeSnapshots = call.params()?;
            let deleted = engine
                .delete_volume_snapshots(ctx, &p.volume, p.oldest_only)
                .await?;
            json(rq::DeletedCount { deleted })
        }
        "ExposeSnapshot" => {
            let p: rq::ExposeSnapshot = call.params()?;
            let id = parse_id("snapshotId", &p.snapshot_id)?;
            let exposed_name = engine.expose_snapshot(ctx, id, &p.path).await?;
            json(rq::ExposeReply { exposed_name })
        }
        "UnexposeSnapshot" => {
            let p: rq::SnapshotIdParam = call.params()?;
            engine
                .unexpose_snapshot(ctx, parse_id("snapshotId", &p.snapshot_id)?)
                .await?;
            json(Empty {})
        }
        "RevertToSnapshot" => {
            let p: rq::RevertToSnapshot = call.params()?;
            engine
                .revert_to_snapshot(
                    ctx,
                    parse_id("snapshotId", &p.snapshot_id)?,
                    p.force_dismount,
                )
                .await?;
            json(Empty {})
        }
        "SetRestoreState" => {
            let p: rq::SetRestoreState = call.params()?;
            let t = p.restore_type.parse()?;
            engine.restore_call(ctx, |s| s.set_restore_state(t)).await?;
            json(Empty {})
        }
        "SetSelectedForRestore" => {
            let p: rq::SetSelectedForRestore = call.params()?;
            let instance_id = p
                .instance_id
                .as_deref()
                .map(|i| parse_id("instanceId", i))
                .transpose()?;
            let c = RestoreComponent {
                instance_id,
                ..restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?
            };
            engine
                .restore_call(ctx, |s| s.set_selected_for_restore(c, p.selected))
                .await?;
            json(Empty {})
        }
        "SetRestoreOptions" => {
            let p: rq::SetRestoreOptions = call.params()?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            engine
                .restore_call(ctx, |s| s.set_restore_options(c, &p.options))
                .await?;
            json(Empty {})
        }
        "SetAdditionalRestores" => {
            let p: rq::SetAdditionalRestores = call.params()?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            engine
                .restore_call(ctx, |s| s.set_additional_restores(c, p.additional))
                .await?;
            json(Empty {})
        }
        "PreRestore" => {
            call.params::<Empty>()?;
            op(engine.pre_restore(ctx).await?)
        }
        "AddAlternativeLocationMapping" => {
            let p: rq::AddAlternativeLocationMapping = call.params()?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            let mapping = vss_model::bcd::AlternateLocation {
                path: p.path.clone(),
                filespec: p.filespec.clone(),
                recursive: p.recursive,
                destination: p.destination.clone(),
            };
            engine
                .restore_call(ctx, |s| s.add_alternative_location_mapping(c, mapping))
                .await?;
            json(Empty {})
        }
        "SetFileRestoreStatus" => {
            let p: rq::SetFileRestoreStatus = call.params()?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            let status = p.status.parse()?;
            engine
                .restore_call(ctx, |s| s.set_file_restore_status(c, status))
                .await?;
            json(Empty {})
        }
        "PostRestore" => {
            call.params::<Empty>()?;
            op(engine.post_restore(ctx).await?)
        }
        "BreakSnapshotSet" => {
            let p: rq::SetIdParam = call.params()?;
            engine
                .break_snapshot_set(ctx, parse_id("snapshotSetId", &p.snapshot_set_id)?)
                .await?;
            json(Empty {})
        }
        "QueryStatus" => {
            let p: rq::OperationParam = call.params()?;
            let op = engine.ops.get(&p.operation, ctx.uid)?;
            json(rq::StatusReply::from(&op.status()))
        }
        "Wait" => {
            let p: rq::WaitParam = call.params()?;
            let timeout = match p.timeout_ms {
                None => None,
                Some(ms) if ms < 0 => {
                    return Err(VssError::invalid_arg(format!(
                        "timeoutMs {ms} is negative; omit it to wait without limit"
                    )));
                }
                Some(ms) => Some(std::time::Duration::from_millis(ms as u64)),
            };
            let op = engine.ops.get(&p.operation, ctx.uid)?;
            let status = op.wait(timeout).await;
            json(rq::StatusReply::from(&status))
        }
        "Cancel" => {
            let p: rq::OperationParam = call.params()?;
            let op = engine.ops.get(&p.operation, ctx.uid)?;
            match op.cancel() {
                CancelOutcome::Cancelled => json(rq::StatusReply {
                    code: "S_OK".into(),
                    hresult: 0,
                    message: None,
                }),
                CancelOutcome::Already(s) => json(rq::StatusReply::from(&s)),
            }
        }
        _ => Ok(Reply::NotFound),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn requester_authorization() {
        use super::requester_allowed as ok;
        assert!(ok(0, &[0], None), "root always");
        assert!(!ok(1000, &[1000], None), "nobody else without a group");
        assert!(ok(1000, &[1000, 34], Some(34)), "a supplementary group");
        assert!(ok(1000, &[34], Some(34)), "the primary group");
        assert!(!ok(1000, &[1000, 35], Some(34)));
    }
}

//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/`) and the corpus replay tests
//! (`tests/fuzz_corpus.rs` here and in `vss-writer`), so that both run exactly the same code on
//! an input: the fuzzer on nightly, the replay of the committed corpora (`fuzz/corpus/`) on
//! stable (docs/fuzzing.md).
//!
//! Not part of the API: nothing else calls these.
//!
//! Inputs are bytes as they arrive on a socket. They go through the real transport
//! ([`transport::receive_call`], [`transport::call`] on a connection made by
//! [`transport::from_stream`] over one end of a Unix socket pair, the fuzzer's bytes written into
//! the other), so framing (NUL-terminated messages, partial messages, bad UTF-8, JSON that is not
//! a call, the size limit's accounting) is zlink's and ours, not a copy. What follows the transport is the second
//! decoding step of each side, as [`requester_call`] and [`writer_replies`] describe: vssd's
//! dispatch (`vss-daemon/src/server.rs`) and its writer fan-out (`vss-daemon/src/fanout.rs`)
//! decode inline, in a crate this one cannot depend on, so those steps are repeated here with
//! the same functions they call ([`RawCall::params`], [`parse_id`], the enumerations' `FromStr`,
//! the session's checks, [`transport::error_reply_to_vss`]).
//!
//! Each entry point panics when the code under test breaks a promise; that is what the fuzzer
//! reports as a crash. A refused input is not a failure: refusing bad input is the point.

use std::cell::RefCell;
use std::future::Future;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vss_model::bcd::AlternateLocation;
use vss_model::bcd::BackupComponents;
use vss_model::session::{Call, OpKind, RestoreComponent, Session, SetVolume};
use vss_model::writers::WriterRecord;
use vss_model::{BackupType, ComponentType, ErrorCode, VssError, WriterEvent};

use crate::transport::{self, CallError, Connection};
use crate::writer::{BackupShutdownParams, ComponentsReply, EventParams};
use crate::{Decoded, Empty, RawCall, admin, parse_id, requester as rq};

/// What one input did, so that the replay tests can check that the corpus still reaches every
/// method and both outcomes (a corpus of only garbage would pass every property trivially).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Well-formed varlink messages read (calls, or replies).
    pub messages: usize,
    /// Fully qualified method names, in order, whose parameters decoded (for replies: the events
    /// whose reply was a well-formed reply or error reply).
    pub decoded: Vec<String>,
    /// Of those, the ones that also passed validation and the session's checks (for replies:
    /// the events the writer succeeded).
    pub accepted: Vec<String>,
}

/// Why [`decode_requester`] refused a call.
#[derive(Debug)]
enum Refusal {
    /// Not a method vssd serves, or its parameters did not decode.
    Undecoded,
    /// What vssd checks after decoding refused it.
    Checked,
}

impl From<VssError> for Refusal {
    fn from(_: VssError) -> Self {
        Refusal::Checked
    }
}

/// The second decoding step: [`RawCall::params`], as vssd calls it.
fn params<P: serde::de::DeserializeOwned>(call: &RawCall) -> Result<P, Refusal> {
    call.params().map_err(|_| Refusal::Undecoded)
}

/// The `requester_call` target: bytes as they arrive on vssd's requester socket, one session's
/// connection. Each call goes through [`transport::receive_call`] (zlink's `Call` of a
/// [`RawCall`]), then the parameters of the method it names as vssd's dispatch decodes them,
/// then what vssd does with them before any I/O: ids, enumeration names, the snapshot context,
/// a BCD given to InitializeForBackup/InitializeForRestore, and the session's own methods on
/// one [`Session`] per input (call order, components, restore selections and mappings). Where
/// the engine would do I/O, the session sees what a successful engine would give it: an
/// asynchronous operation begins at its call and finishes at the next Wait (Cancel fails it),
/// GatherWriterMetadata finds two writers (`sample_writers`), a provider accepts every
/// volume. As in vssd, a message that is not a call is answered and the connection read on; any
/// other transport error ends it.
///
/// Properties: nothing panics; a BCD is refused only as `VSS_E_INVALID_XML_DOCUMENT`; and the
/// session's BCD, which SaveAsXml returns and InitializeForRestore reads back, survives a round
/// trip through XML after every call.
pub fn requester_call(data: &[u8]) -> Outcome {
    over_socket(data, |mut conn| async move {
        let mut out = Outcome::default();
        let mut s = Sim {
            session: Session::new(),
            running: None,
            volumes: 0,
        };
        loop {
            let call = match transport::receive_call(&mut conn).await {
                Ok(Some(call)) => call,
                Ok(None) => break,
                Err(CallError::Malformed(_)) => continue,
                Err(_) => break,
            };
            out.messages += 1;
            match decode_requester(&mut s, &call) {
                Ok(()) => {
                    out.decoded.push(call.method.clone());
                    out.accepted.push(call.method);
                }
                Err(Refusal::Checked) => out.decoded.push(call.method),
                Err(Refusal::Undecoded) => {}
            }
            vss_model::fuzzing::round_trip(
                "BCD",
                &s.session.bcd,
                BackupComponents::to_xml,
                BackupComponents::from_xml,
            );
        }
        out
    })
}

/// One requester session as the engine keeps it, without the engine.
struct Sim {
    session: Session,
    /// The operation begun and not finished yet.
    running: Option<OpKind>,
    /// Volumes added so far (their snapshot ids).
    volumes: u128,
}

impl Sim {
    /// A read or an administration call: the engine checks it against the session and notes it.
    fn check(&mut self, call: Call) -> Result<(), Refusal> {
        self.session.check(call)?;
        self.session.note_call(call);
        Ok(())
    }

    /// An asynchronous call: the engine begins the operation and returns its id.
    fn begin(&mut self, op: OpKind) -> Result<(), Refusal> {
        self.session.begin(op)?;
        self.running = Some(op);
        Ok(())
    }

    /// The operation's task ends (`ok` unless cancelled), with what it found.
    fn finish(&mut self, ok: bool) {
        if let Some(op) = self.running.take() {
            if ok && op == OpKind::GatherWriterMetadata {
                self.session.set_writers(sample_writers());
            }
            self.session.finish(op, ok);
        }
    }
}

/// vssd's second decoding step for one call (server.rs `dispatch`, and the engine's session
/// calls), without the engine's I/O. `Ok` means vssd would act on the call.
fn decode_requester(s: &mut Sim, call: &RawCall) -> Result<(), Refusal> {
    if let Some(name) = call.method.strip_prefix("vss.Admin.") {
        return match name {
            "ListWriters" | "ListProviders" => params::<Empty>(call).map(drop),
            "Events" => params::<admin::EventsParam>(call).map(drop),
            _ => Err(Refusal::Undecoded),
        };
    }
    let Some(name) = call.method.strip_prefix("vss.Requester.") else {
        return match call.method.as_str() {
            "org.varlink.service.GetInfo" => Ok(()),
            "org.varlink.service.GetInterfaceDescription" => {
                let p = params::<Value>(call)?;
                match p.get("interface").and_then(Value::as_str) {
                    Some("vss.Requester" | "vss.Admin") => Ok(()),
                    // InterfaceNotFound.
                    _ => Err(Refusal::Checked),
                }
            }
            _ => Err(Refusal::Undecoded),
        };
    };
    let session = &mut s.session;
    match name {
        "GetProtocolVersion" => params::<Empty>(call).map(drop),
        "InitializeForBackup" => {
            let p: rq::InitializeForBackup = params(call)?;
            session.check(Call::InitializeForBackup)?;
            let bcd = p.bcd.map(|x| bcd_from_requester(&x)).transpose()?;
            Ok(session.initialize_for_backup(bcd)?)
        }
        "InitializeForRestore" => {
            let p: rq::InitializeForRestore = params(call)?;
            session.check(Call::InitializeForRestore)?;
            let bcd = bcd_from_requester(&p.bcd)?;
            Ok(session.initialize_for_restore(bcd)?)
        }
        "SetContext" => {
            let p: rq::SetContext = params(call)?;
            Ok(session.set_context(p.context)?)
        }
        "SetBackupState" => {
            let p: rq::SetBackupState = params(call)?;
            let bt: BackupType = p.backup_type.parse()?;
            Ok(session.set_backup_state(
                p.select_components,
                p.bootable_system_state,
                bt,
                p.partial_file_support,
            )?)
        }
        "GatherWriterMetadata" => empty_then(call, || s.begin(OpKind::GatherWriterMetadata)),
        "PrepareForBackup" => empty_then(call, || s.begin(OpKind::PrepareForBackup)),
        "DoSnapshotSet" => empty_then(call, || s.begin(OpKind::DoSnapshotSet)),
        "BackupComplete" => empty_then(call, || s.begin(OpKind::BackupComplete)),
        "GatherWriterStatus" => empty_then(call, || s.begin(OpKind::GatherWriterStatus)),
        "PreRestore" => empty_then(call, || s.begin(OpKind::PreRestore)),
        "PostRestore" => empty_then(call, || s.begin(OpKind::PostRestore)),
        "GetWriterMetadata" => empty_then(call, || s.check(Call::GetWriterMetadata)),
        "GetWriterStatus" => empty_then(call, || s.check(Call::GetWriterStatus)),
        "SaveAsXml" => empty_then(call, || s.check(Call::SaveAsXml)),
        "AbortBackup" => {
            params::<Empty>(call)?;
            session.abort_backup()?;
            Ok(())
        }
        "AddComponent" => {
            let p: rq::AddComponent = params(call)?;
            let instance = parse_id("instanceId", &p.instance_id)?;
            let writer = parse_id("writerId", &p.writer_id)?;
            let ct: ComponentType = p.component_type.parse()?;
            Ok(session.add_component(
                instance,
                writer,
                ct,
                p.logical_path.as_deref().unwrap_or(""),
                &p.name,
            )?)
        }
        "StartSnapshotSet" => {
            params::<Empty>(call)?;
            session.check(Call::StartSnapshotSet)?;
            // vssd takes the host-wide lock here, and makes a random id; a fixed one keeps the
            // input's effect reproducible.
            Ok(session.start_snapshot_set(uuid::Uuid::from_u128(0x5e7))?)
        }
        "AddToSnapshotSet" => {
            let p: rq::AddToSnapshotSet = params(call)?;
            let provider = p
                .provider_id
                .as_deref()
                .map(|s| parse_id("providerId", s))
                .transpose()?;
            // vssd checks, resolves the volume and asks a provider (I/O), checks the resolved
            // path, then records it.
            session.check(Call::AddToSnapshotSet)?;
            session.check_add_volume(&p.volume)?;
            s.volumes += 1;
            Ok(s.session.add_volume(SetVolume {
                volume: p.volume,
                snapshot_id: uuid::Uuid::from_u128(s.volumes),
                provider_id: provider.unwrap_or(uuid::Uuid::from_u128(0xb7f5)),
            })?)
        }
        "GetSnapshotProperties" => {
            let p: rq::SnapshotIdParam = params(call)?;
            parse_id("snapshotId", &p.snapshot_id)?;
            s.check(Call::GetSnapshotProperties)
        }
        "SetBackupSucceeded" => {
            let p: rq::SetBackupSucceeded = params(call)?;
            let instance = parse_id("instanceId", &p.instance_id)?;
            let writer = parse_id("writerId", &p.writer_id)?;
            let ct: ComponentType = p.component_type.parse()?;
            Ok(session.set_backup_succeeded(
                instance,
                writer,
                ct,
                p.logical_path.as_deref().unwrap_or(""),
                &p.name,
                p.succeeded,
            )?)
        }
        "Query" => {
            let p: rq::Query = params(call)?;
            p.snapshot_set_id
                .as_deref()
                .map(|s| parse_id("snapshotSetId", s))
                .transpose()?;
            s.check(Call::Query)?;
            // The engine's context filter (engine.rs `query`).
            match p.context {
                None | Some(-1) | Some(0xFFFF_FFFF) => Ok(()),
                Some(v) if u32::try_from(v).is_ok() => Ok(()),
                Some(_) => Err(Refusal::Checked),
            }
        }
        "DeleteSnapshots" => {
            let p: rq::DeleteSnapshots = params(call)?;
            parse_id("sourceId", &p.source_id)?;
            match p.source_type.as_str() {
                "VSS_OBJECT_SNAPSHOT" | "VSS_OBJECT_SNAPSHOT_SET" => s.check(Call::DeleteSnapshots),
                _ => Err(Refusal::Checked),
            }
        }
        "DeleteVolumeSnapshots" => {
            params::<rq::DeleteVolumeSnapshots>(call)?;
            s.check(Call::DeleteVolumeSnapshots)
        }
        "ExposeSnapshot" => {
            let p: rq::ExposeSnapshot = params(call)?;
            parse_id("snapshotId", &p.snapshot_id)?;
            s.check(Call::ExposeSnapshot)?;
            // The engine's first check of the path (engine.rs `expose_snapshot`).
            if std::path::Path::new(&p.path).is_absolute() {
                Ok(())
            } else {
                Err(Refusal::Checked)
            }
        }
        "UnexposeSnapshot" => {
            let p: rq::SnapshotIdParam = params(call)?;
            parse_id("snapshotId", &p.snapshot_id)?;
            s.check(Call::UnexposeSnapshot)
        }
        "RevertToSnapshot" => {
            let p: rq::RevertToSnapshot = params(call)?;
            parse_id("snapshotId", &p.snapshot_id)?;
            s.check(Call::RevertToSnapshot)
        }
        "BreakSnapshotSet" => {
            let p: rq::SetIdParam = params(call)?;
            parse_id("snapshotSetId", &p.snapshot_set_id)?;
            s.check(Call::BreakSnapshotSet)
        }
        "SetRestoreState" => {
            let p: rq::SetRestoreState = params(call)?;
            Ok(session.set_restore_state(p.restore_type.parse()?)?)
        }
        "SetSelectedForRestore" => {
            let p: rq::SetSelectedForRestore = params(call)?;
            let instance_id = p
                .instance_id
                .as_deref()
                .map(|i| parse_id("instanceId", i))
                .transpose()?;
            let c = RestoreComponent {
                instance_id,
                ..restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?
            };
            Ok(session.set_selected_for_restore(c, p.selected)?)
        }
        "SetRestoreOptions" => {
            let p: rq::SetRestoreOptions = params(call)?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            Ok(session.set_restore_options(c, &p.options)?)
        }
        "SetAdditionalRestores" => {
            let p: rq::SetAdditionalRestores = params(call)?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            Ok(session.set_additional_restores(c, p.additional)?)
        }
        "AddAlternativeLocationMapping" => {
            let p: rq::AddAlternativeLocationMapping = params(call)?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            let mapping = AlternateLocation {
                path: p.path.clone(),
                filespec: p.filespec.clone(),
                recursive: p.recursive,
                destination: p.destination.clone(),
            };
            Ok(session.add_alternative_location_mapping(c, mapping)?)
        }
        "SetFileRestoreStatus" => {
            let p: rq::SetFileRestoreStatus = params(call)?;
            let c = restore_component(&p.writer_id, &p.component_type, &p.logical_path, &p.name)?;
            Ok(session.set_file_restore_status(c, p.status.parse()?)?)
        }
        "QueryStatus" => {
            let p: rq::OperationParam = params(call)?;
            parse_id("operation", &p.operation)?;
            Ok(())
        }
        // The running operation ends at the requester's next Wait (it succeeded) or Cancel.
        "Wait" => {
            let p: rq::WaitParam = params(call)?;
            if p.timeout_ms.is_some_and(|ms| ms < 0) {
                return Err(Refusal::Checked);
            }
            parse_id("operation", &p.operation)?;
            s.finish(true);
            Ok(())
        }
        "Cancel" => {
            let p: rq::OperationParam = params(call)?;
            parse_id("operation", &p.operation)?;
            s.finish(false);
            Ok(())
        }
        _ => Err(Refusal::Undecoded),
    }
}

/// The component a restore call names, from its wire fields (server.rs `restore_component`).
fn restore_component<'a>(
    writer_id: &str,
    component_type: &str,
    logical_path: &'a Option<String>,
    name: &'a str,
) -> Result<RestoreComponent<'a>, VssError> {
    Ok(RestoreComponent {
        writer_id: parse_id("writerId", writer_id)?,
        instance_id: None,
        component_type: component_type.parse()?,
        logical_path: logical_path.as_deref().unwrap_or(""),
        name,
    })
}

/// The writers GatherWriterMetadata finds in [`requester_call`]: a file-group writer with one
/// selectable component at the root, and a database writer with a selectable component set
/// and a database under it (what the seeds of the corpus name).
fn sample_writers() -> Vec<WriterRecord> {
    use vss_model::wmd::{FileSpec, WmdComponent, WriterMetadata};
    use vss_model::{ApplicationLevel, RestoreMethod, SourceType, UsageType, WriterRestore};
    let files = |path: &str| FileSpec {
        path: path.into(),
        filespec: "*".into(),
        recursive: true,
        alternate_path: None,
        backup_type_mask: 0xF0F,
    };
    let component = |ct, logical_path: &str, name: &str, selectable, path: &str| WmdComponent {
        component_type: ct,
        logical_path: logical_path.into(),
        name: name.into(),
        caption: String::new(),
        selectable,
        selectable_for_restore: true,
        notify_on_backup_complete: true,
        restore_metadata: false,
        component_flags: 0,
        files: vec![files(path)],
        log_files: vec![],
        dependencies: vec![],
    };
    let writer = |w: u128, i: u128, name: &str, level, components| WriterMetadata {
        writer_id: uuid::Uuid::from_u128(w),
        instance_id: uuid::Uuid::from_u128(i),
        writer_name: name.into(),
        instance_name: String::new(),
        usage_type: UsageType::UserData,
        source_type: SourceType::Other,
        application_level: level,
        freeze_timeout_ms: vss_model::DEFAULT_FREEZE_TIMEOUT_MS,
        restore_method: RestoreMethod::RestoreIfCanReplace,
        writer_restore: WriterRestore::Never,
        restore_service: None,
        backup_schema: 0,
        version: None,
        exclude_files: vec![],
        components,
    };
    vec![
        WriterRecord::new(
            writer(
                SAMPLE_WRITER_IDS[0].0,
                SAMPLE_WRITER_IDS[0].1,
                "files",
                ApplicationLevel::FrontEnd,
                vec![component(
                    ComponentType::FileGroup,
                    "",
                    "data",
                    true,
                    "/srv/data",
                )],
            ),
            "/run/vss/writers/files.sock".into(),
        ),
        WriterRecord::new(
            writer(
                SAMPLE_WRITER_IDS[1].0,
                SAMPLE_WRITER_IDS[1].1,
                "db",
                ApplicationLevel::BackEnd,
                vec![
                    component(ComponentType::FileGroup, "", "main", true, "/var/lib/db"),
                    component(
                        ComponentType::Database,
                        "main",
                        "app",
                        false,
                        "/var/lib/db/app",
                    ),
                ],
            ),
            "/run/vss/writers/db.sock".into(),
        ),
    ]
}

/// The (writer class, writer instance) ids of [`sample_writers`].
const SAMPLE_WRITER_IDS: [(u128, u128); 2] = [
    (
        0x1f3e6c7a_2b4d_4e8f_9a0b_c1d2e3f4a5b6,
        0x0b4e1c2d_3f5a_4b6c_8d7e_9f0a1b2c3d4e,
    ),
    (
        0xa65faa63_5ea8_4ebc_9dbd_a0c4db26912a,
        0x3c2b1a09_8f7e_4d6c_b5a4_938271605f4e,
    ),
];

/// A BCD from a requester (InitializeForBackup/InitializeForRestore). vssd refuses a bad one as
/// an invalid document and nothing else.
fn bcd_from_requester(xml: &str) -> Result<BackupComponents, VssError> {
    let r = BackupComponents::from_xml(xml);
    if let Err(e) = &r {
        assert_eq!(
            e.code,
            ErrorCode::InvalidXmlDocument,
            "a bad BCD must be VSS_E_INVALID_XML_DOCUMENT: {e}"
        );
    }
    r
}

/// A call without parameters, then `then`.
fn empty_then(call: &RawCall, then: impl FnOnce() -> Result<(), Refusal>) -> Result<(), Refusal> {
    params::<Empty>(call)?;
    then()
}

/// How vssd reads the replies of a writer, and what it sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Identify on a connection of its own (fanout.rs `identify_one`): one reply, an
    /// `IdentifyReply` whose metadata is then validated.
    Identify,
    /// The events of a backup on one held connection (fanout.rs `call_on`), starting with this
    /// one and going on in `vss.Writer` order (wrapping around, Identify skipped) while the
    /// replies keep coming and are well formed.
    Events(WriterEvent),
}

/// The reply half of the `writer_messages` target: `data` is what a writer sends back to vssd.
/// vssd sends each call ([`transport::call`], which reads one reply) and interprets the reply
/// as fanout.rs does: the `ComponentsReply` of PrepareForBackup and PostSnapshot, an error
/// reply as a [`VssError`] that must be a writer failure, anything else a failed writer.
///
/// Properties: nothing panics; every error reply maps to a VSS error; writer metadata survives
/// a JSON round trip (vssd passes it on to requesters in GetWriterMetadata); a writer's component
/// updates, stored into the BCD as vssd stores them, survive the BCD's round trip through XML
/// (SaveAsXml, then InitializeForRestore at restore time).
pub fn writer_replies(mode: ReplyMode, data: &[u8]) -> Outcome {
    over_socket(data, |mut conn| async move {
        let mut out = Outcome::default();
        let event = match mode {
            ReplyMode::Identify => {
                let r = transport::call::<_, crate::writer::IdentifyReply>(
                    &mut conn,
                    &WriterEvent::Identify.method(),
                    &Empty {},
                )
                .await;
                match r {
                    Ok(Decoded::Ok(reply)) => {
                        out.messages += 1;
                        out.decoded.push(WriterEvent::Identify.method());
                        // vssd hands the metadata on to requesters (GetWriterMetadata) as JSON
                        // again: it must come out as it went in.
                        let json = serde_json::to_value(&reply.metadata)
                            .expect("writer metadata serializes");
                        match serde_json::from_value::<vss_model::wmd::WriterMetadata>(json) {
                            Ok(again) => assert_eq!(
                                again, reply.metadata,
                                "writer metadata changed in a JSON round trip"
                            ),
                            Err(e) => panic!("writer metadata we wrote as JSON does not read: {e}"),
                        }
                        if reply.metadata.validate().is_ok() {
                            out.accepted.push(WriterEvent::Identify.method());
                        }
                    }
                    Ok(Decoded::Error { name, parameters }) => {
                        out.messages += 1;
                        out.decoded.push(WriterEvent::Identify.method());
                        transport::error_reply_to_vss(
                            &name,
                            &parameters,
                            ErrorCode::WriterErrorNonRetryable,
                        );
                    }
                    Err(_) => {}
                }
                return out;
            }
            ReplyMode::Events(first) => first,
        };
        let mut event = if event == WriterEvent::Identify {
            WriterEvent::PrepareForBackup
        } else {
            event
        };
        let params = sample_event_params();
        loop {
            let r = if event == WriterEvent::BackupShutdown {
                let p = BackupShutdownParams {
                    snapshot_set_id: params.snapshot_set_id.clone(),
                };
                transport::call::<_, Value>(&mut conn, &event.method(), &p).await
            } else {
                transport::call::<_, Value>(&mut conn, &event.method(), &params).await
            };
            let Ok(reply) = r else {
                // vssd drops the connection: the writer is not responding or misbehaves.
                break;
            };
            out.messages += 1;
            out.decoded.push(event.method());
            if interpret(event, reply) {
                out.accepted.push(event.method());
            }
            event = next_event(event);
        }
        out
    })
}

/// fanout.rs `interpret`: whether the writer succeeded. Component updates are stored into a BCD
/// as the engine's `apply_updates` does, and the BCD must survive its round trip.
fn interpret(event: WriterEvent, reply: Decoded<Value>) -> bool {
    match reply {
        Decoded::Ok(v) => {
            if !matches!(
                event,
                WriterEvent::PrepareForBackup | WriterEvent::PostSnapshot
            ) {
                return true;
            }
            let Ok(reply) = serde_json::from_value::<ComponentsReply>(v) else {
                return false;
            };
            let mut bcd = BackupComponents::default();
            let instance = uuid::Uuid::from_u128(1);
            let mut components = Vec::new();
            for u in reply.components.unwrap_or_default() {
                let mut c = vss_model::bcd::BcdComponent::new(
                    ComponentType::FileGroup,
                    &u.logical_path,
                    &u.name,
                );
                c.backup_metadata = u.backup_metadata;
                c.backup_stamp = u.backup_stamp;
                if event == WriterEvent::PrepareForBackup {
                    c.prepare_for_backup_failure_msg = u.failure_message;
                } else {
                    c.post_snapshot_failure_msg = u.failure_message;
                }
                components.push(c);
            }
            bcd.writers.push(vss_model::bcd::WriterComponents {
                writer_id: uuid::Uuid::from_u128(2),
                instance_id: instance,
                components,
            });
            vss_model::fuzzing::round_trip(
                "BCD",
                &bcd,
                BackupComponents::to_xml,
                BackupComponents::from_xml,
            );
            true
        }
        Decoded::Error { name, parameters } => {
            // Whatever the writer sent, it becomes a VSS error (vssd records it as the writer's
            // failure); the mapping itself must not panic.
            transport::error_reply_to_vss(&name, &parameters, ErrorCode::WriterErrorNonRetryable);
            false
        }
    }
}

fn next_event(e: WriterEvent) -> WriterEvent {
    let all = WriterEvent::ALL;
    let i = all.iter().position(|x| *x == e).unwrap_or(0);
    match all[(i + 1) % all.len()] {
        WriterEvent::Identify => all[1],
        next => next,
    }
}

/// The parameters vssd sends with an event in the reply half: a realistic backup.
fn sample_event_params() -> EventParams {
    EventParams {
        snapshot_set_id: "5f3c1c1e-8a4b-4f0e-9d43-3b0e2b7a9c11".into(),
        context: 0,
        backup_type: BackupType::Full,
        select_components: true,
        bootable_system_state: false,
        partial_file_support: false,
        volumes: vec![crate::writer::EventVolume {
            volume: "/srv/data".into(),
            snapshot_id: "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f".into(),
            snapshot_path: None,
        }],
        components: Some(vec![]),
    }
}

/// Reads `data` as the calls a peer sends on a connection, through [`transport::receive_call`]
/// as vssd and the writer SDK do, and hands each call to `each`. `Err(Malformed)` (a message
/// that is not a call) is skipped when `skip_malformed` (vssd answers it and reads on) and ends
/// the connection otherwise (the SDK closes it); any other error ends it. Returns the number of
/// calls read.
pub fn receive_calls(data: &[u8], skip_malformed: bool, mut each: impl FnMut(RawCall)) -> usize {
    over_socket(data, |mut conn| async move {
        let mut n = 0;
        loop {
            match transport::receive_call(&mut conn).await {
                Ok(Some(call)) => {
                    n += 1;
                    each(call);
                }
                Ok(None) => break,
                Err(CallError::Malformed(_)) if skip_malformed => continue,
                Err(_) => break,
            }
        }
        n
    })
}

/// The protocol half of a writer's decoding of one call: the event it names, and its
/// parameters (BackupShutdown's set id is parsed as a UUID). `Ok(None)` is a method that is not
/// an event.
pub fn writer_call(call: &RawCall) -> Result<Option<(WriterEvent, Option<EventParams>)>, VssError> {
    let Some(event) = WriterEvent::from_method(&call.method) else {
        return Ok(None);
    };
    match event {
        // Writers ignore Identify's parameters (vssd sends none).
        WriterEvent::Identify => Ok(Some((event, None))),
        WriterEvent::BackupShutdown => {
            let p: BackupShutdownParams = call.params()?;
            parse_id("snapshotSetId", &p.snapshot_set_id)?;
            Ok(Some((event, None)))
        }
        _ => call
            .params::<EventParams>()
            .map(|ev| Some((event, Some(ev)))),
    }
}

thread_local! {
    // One runtime per thread for all inputs: building one per input would dominate the time.
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs `f` on a connection whose peer sends `data` and then closes its sending side, while it
/// drains whatever `f` sends (so that neither side can block on a full socket buffer).
fn over_socket<T, F, Fut>(data: &[u8], f: F) -> T
where
    F: FnOnce(Connection) -> Fut,
    Fut: Future<Output = T>,
{
    use std::io::Write as _;
    RUNTIME.with(|cell| {
        let mut cell = cell.borrow_mut();
        let rt = cell.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("a tokio runtime")
        });
        rt.block_on(async {
            let (mut peer, ours) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
            // As much of the input as the socket takes goes in before the exchange starts, so
            // that what the reader sees does not depend on how the two sides interleave: the
            // fuzzer would count coverage that varies from run to run as new.
            peer.set_nonblocking(true).expect("a non-blocking socket");
            let mut written = 0;
            while written < data.len() {
                match peer.write(&data[written..]) {
                    Ok(n) => written += n,
                    Err(_) => break,
                }
            }
            if written == data.len() {
                let _ = peer.shutdown(std::net::Shutdown::Write);
            }
            ours.set_nonblocking(true).expect("a non-blocking socket");
            let ours = tokio::net::UnixStream::from_std(ours).expect("a tokio socket");
            let peer = tokio::net::UnixStream::from_std(peer).expect("a tokio socket");
            let conn = transport::from_stream(ours).expect("a connection");
            let (mut peer_rd, mut peer_wr) = peer.into_split();
            let rest = &data[written..];
            let peer = async move {
                if !rest.is_empty() && peer_wr.write_all(rest).await.is_ok() {
                    let _ = peer_wr.shutdown().await;
                }
                let mut sink = [0u8; 4096];
                while matches!(peer_rd.read(&mut sink).await, Ok(n) if n > 0) {}
                // Keep the write half (closed) until `f` is done.
                drop(peer_wr);
                std::future::pending::<()>().await
            };
            // `f` decides when the exchange ends; the peer future is dropped then, so it never
            // writes to a socket its reader has closed (no SIGPIPE in the fuzzer's process).
            tokio::select! {
                out = f(conn) => out,
                () = peer => unreachable!("the peer never finishes"),
            }
        })
    })
}

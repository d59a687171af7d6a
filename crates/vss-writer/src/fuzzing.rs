//! The entry point shared by the `writer_messages` fuzz target (`fuzz/fuzz_targets/`) and its
//! corpus replay test (`tests/fuzz_corpus.rs`), so that both run exactly the same code on an
//! input (docs/fuzzing.md). Not part of the API: nothing else calls it.
//!
//! `vss.Writer` has two directions, and an input picks one with its first byte:
//!
//! * below 0x80: the rest is what vssd sends a writer on one connection, decoded as the runtime
//!   decodes it (`runtime.rs` `handle_call`, whose decoding is inline there): the transport
//!   (through [`vss_protocol::fuzzing::receive_calls`]), the standard `org.varlink.service`
//!   calls, the event, its parameters (with the runtime's choice of the parameter to name in
//!   InvalidParameter when they are bad), and the freeze bookkeeping each event drives
//!   ([`crate::freeze::FreezeTable`], with every hook succeeding). The connection then closes,
//!   which aborts what it froze. Hooks are not run: they are the writer's code, not the SDK's.
//! * 0x80 and above: the rest is what a writer sends back, read by vssd
//!   ([`vss_protocol::fuzzing::writer_replies`]), starting with the event `byte % 11` of
//!   [`WriterEvent::ALL`] (Identify on its own connection).
//!
//! Properties: nothing panics; a Freeze the table let begin and whose hook succeeded starts its
//! timer; the freeze table stays within its bound once the connection closed.

use vss_model::WriterEvent;
use vss_protocol::fuzzing::{Outcome, ReplyMode};

use crate::freeze::{FreezeEnd, FreezeStart, FreezeTable, MAX_REMEMBERED_SETS, set_key};
use crate::service;

/// The `writer_messages` target.
pub fn writer_messages(data: &[u8]) -> Outcome {
    let Some((&selector, rest)) = data.split_first() else {
        return Outcome::default();
    };
    if selector < 0x80 {
        return calls(rest);
    }
    let event = WriterEvent::ALL[usize::from(selector) % WriterEvent::ALL.len()];
    let mode = match event {
        WriterEvent::Identify => ReplyMode::Identify,
        e => ReplyMode::Events(e),
    };
    vss_protocol::fuzzing::writer_replies(mode, rest)
}

/// The connection the calls arrive on (the runtime numbers its connections).
const CONN: crate::freeze::ConnId = 1;

fn calls(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut table = FreezeTable::new();
    // The runtime closes a connection on a message that is not a call.
    out.messages = vss_protocol::fuzzing::receive_calls(data, false, |call| {
        let (decoded, accepted) = decode(&mut table, &call);
        if decoded {
            out.decoded.push(call.method.clone());
        }
        if accepted {
            out.accepted.push(call.method);
        }
    });
    table.connection_closed(CONN);
    // Frozen sets are never forgotten, but only one connection freezes here and it closed.
    assert!(
        table.len() <= MAX_REMEMBERED_SETS,
        "the freeze table remembers {} sets",
        table.len()
    );
    out
}

/// The runtime's decoding of one call: whether its parameters decoded, and whether the runtime
/// would then call the hook (or answer the standard interface) rather than reply with an error.
fn decode(table: &mut FreezeTable, call: &vss_protocol::RawCall) -> (bool, bool) {
    match call.method.as_str() {
        "org.varlink.service.GetInfo" => return (true, true),
        "org.varlink.service.GetInterfaceDescription" => {
            let interface = call
                .parameters
                .as_ref()
                .and_then(|p| p.get("interface"))
                .and_then(serde_json::Value::as_str);
            return (
                interface.is_some(),
                interface.and_then(service::interface_description).is_some(),
            );
        }
        _ => {}
    }
    let decoded = match vss_protocol::fuzzing::writer_call(call) {
        Ok(Some(d)) => d,
        // Not an event: MethodNotFound or InterfaceNotFound.
        Ok(None) => return (false, false),
        Err(_) => {
            if !matches!(
                WriterEvent::from_method(&call.method),
                Some(WriterEvent::Identify | WriterEvent::BackupShutdown)
            ) {
                // The runtime names the bad parameter in its InvalidParameter reply.
                let _ = service::bad_event_parameter(call.parameters.as_ref());
            }
            return (false, false);
        }
    };
    let accepted = match decoded {
        (WriterEvent::BackupShutdown, _) => {
            // writer_call parsed the id; the runtime forgets the set by its canonical form.
            if let Some(set) = call
                .parameters
                .as_ref()
                .and_then(|p| p.get("snapshotSetId"))
                .and_then(serde_json::Value::as_str)
            {
                table.forget(&set_key(set));
            }
            true
        }
        (event, Some(ev)) => {
            let key = set_key(&ev.snapshot_set_id);
            match event {
                WriterEvent::Freeze => match table.begin_freeze(&key, CONN) {
                    FreezeStart::Proceed => {
                        let end = table.end_freeze(&key, CONN, true);
                        assert!(
                            matches!(end, FreezeEnd::StartTimer { .. }),
                            "a freeze that began and succeeded must start its timer, not {end:?}"
                        );
                        true
                    }
                    FreezeStart::Refuse(_) => false,
                },
                WriterEvent::Thaw => {
                    matches!(table.thaw(&key), crate::freeze::ThawDecision::Proceed)
                }
                WriterEvent::Abort => {
                    table.abort_event(&key);
                    true
                }
                _ => true,
            }
        }
        (_, None) => true,
    };
    (true, accepted)
}

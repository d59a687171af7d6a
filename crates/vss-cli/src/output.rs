//! Output: human text by default, one JSON document with `--json`.
//!
//! Commands write through an [`Out`]: [`Out::line`] prints a line of human text at once (so a
//! long backup shows its progress) and does nothing with `--json`; [`Out::set`] records a member
//! of the JSON document, which `main` prints on stdout at the end, with an `error` member when
//! the command failed. The formats of writers, providers and snapshots follow vssadmin and
//! VShadow (vss-model.md §10) so that Windows administrators find what they know.

use std::io::Write;

use serde_json::{Map, Value, json};
use vss_client::{SnapshotProperties, WriterStatus};
use vss_model::WriterState;
use vss_protocol::admin::Provider;

/// Where a command's results go.
#[derive(Debug)]
pub struct Out {
    json: bool,
    doc: Map<String, Value>,
}

impl Out {
    /// An output in JSON mode (`--json`) or human mode.
    pub fn new(json: bool) -> Self {
        Out {
            json,
            doc: Map::new(),
        }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a line of human text on stdout (nothing in JSON mode). A closed stdout is ignored.
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.json {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
    }

    /// Sets a member of the JSON document.
    pub fn set(&mut self, key: &str, value: Value) {
        self.doc.insert(key.to_owned(), value);
    }

    /// The JSON document so far.
    pub fn into_doc(self) -> Map<String, Value> {
        self.doc
    }
}

/// Prints the JSON document on stdout.
pub fn print_json(doc: &Map<String, Value>) {
    let mut o = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".into());
    let _ = writeln!(o, "{text}");
    let _ = o.flush();
}

/// A note on stderr (never on stdout, so that `--json` output stays one document).
pub fn note(text: impl std::fmt::Display) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "vss: {text}");
}

/// vssadmin's empty-result line.
pub const NO_ITEMS: &str = "No items found that satisfy the query.";

/// A writer's state as vssadmin prints it: `[1] Stable`, `[11] Failed`.
pub fn state_label(state: u32) -> String {
    let label = WriterState::from_value(state).map_or("Unknown", WriterState::label);
    format!("[{state}] {label}")
}

/// vssadmin's "Last error" phrase for a writer's failure code name.
pub fn last_error(failure_name: &str) -> String {
    match failure_name {
        "S_OK" => "No error",
        "VSS_E_WRITERERROR_RETRYABLE" => "Retryable error",
        "VSS_E_WRITERERROR_NONRETRYABLE" => "Non-retryable error",
        "VSS_E_WRITERERROR_TIMEOUT" => "Timed out",
        "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT" => "Inconsistent shadow copy",
        "VSS_E_WRITERERROR_OUTOFRESOURCES" => "Out of resources",
        "VSS_E_WRITERERROR_PARTIAL_FAILURE" => "Partial failure",
        "VSS_E_WRITERERROR_RECOVERY_FAILED" => "Recovery failed",
        "VSS_E_WRITER_NOT_RESPONDING" => "Not responding",
        other => other,
    }
    .to_owned()
}

/// Whether a writer status is a failure (a `FAILED_AT_*` state or a failure code).
pub fn writer_failed(s: &WriterStatus) -> bool {
    s.state >= WriterState::FailedAtIdentify.value() || s.failure != 0
}

/// A writer status as JSON: the wire fields plus `stateLabel` and `lastError`.
pub fn writer_json(s: &WriterStatus) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
    v["stateLabel"] = json!(state_label(s.state));
    v["lastError"] = json!(last_error(&s.failure_name));
    v
}

/// `vssadmin list writers` lines for one writer.
pub fn writer_lines(s: &WriterStatus) -> Vec<String> {
    let mut v = vec![
        format!("Writer name: '{}'", s.writer_name),
        format!("   Writer Id: {{{}}}", s.writer_id),
        format!("   Writer Instance Id: {{{}}}", s.instance_id),
        format!("   State: {}", state_label(s.state)),
        format!("   Last error: {}", last_error(&s.failure_name)),
    ];
    if let Some(m) = s.failure_message.as_deref().filter(|m| !m.is_empty()) {
        v.push(format!("   Message: {m}"));
    }
    v
}

/// VShadow's writer status lines (`* WRITER "name"`), printed after a backup.
pub fn writer_status_lines(s: &WriterStatus) -> Vec<String> {
    let mut v = vec![
        format!("* WRITER \"{}\"", s.writer_name),
        format!("   - Status: {} ({})", s.state, s.state_name),
        format!(
            "   - Writer Failure code: 0x{:08x} ({})",
            s.failure, s.failure_name
        ),
        format!("   - Writer ID: {{{}}}", s.writer_id),
        format!("   - Instance ID: {{{}}}", s.instance_id),
    ];
    if let Some(m) = s.failure_message.as_deref().filter(|m| !m.is_empty()) {
        v.push(format!("   - Message: {m}"));
    }
    v
}

/// A provider type name as vssadmin prints it (`VSS_PROV_SOFTWARE` → `Software`).
pub fn provider_type_label(t: &str) -> String {
    match t {
        "VSS_PROV_SYSTEM" => "System".into(),
        "VSS_PROV_SOFTWARE" => "Software".into(),
        "VSS_PROV_HARDWARE" => "Hardware".into(),
        "VSS_PROV_FILESHARE" => "Fileshare".into(),
        other => other.into(),
    }
}

/// `vssadmin list providers` lines for one provider.
pub fn provider_lines(p: &Provider) -> Vec<String> {
    vec![
        format!("Provider name: '{}'", p.name),
        format!(
            "   Provider type: {}",
            provider_type_label(&p.provider_type)
        ),
        format!("   Provider Id: {{{}}}", p.provider_id),
        format!("   Version: {}", p.version),
    ]
}

/// A snapshot context as vssadmin's "Type" names it.
pub fn context_label(context: i64) -> String {
    match context {
        0x0 => "Backup".into(),
        0x10 => "FileShareBackup".into(),
        0x19 => "DataVolumeRollback".into(),
        0x9 => "ApplicationRollback".into(),
        0x1d => "ClientAccessible".into(),
        0xd => "ClientAccessibleWriters".into(),
        other => format!("0x{other:x}"),
    }
}

/// The name of a provider id among `providers` (the id itself when unknown).
pub fn provider_name(providers: &[Provider], id: &str) -> String {
    providers
        .iter()
        .find(|p| p.provider_id.eq_ignore_ascii_case(id))
        .map_or_else(|| id.to_owned(), |p| p.name.clone())
}

/// One snapshot as JSON: the wire `SnapshotProperties` plus `providerName`.
pub fn snapshot_json(p: &SnapshotProperties, providers: &[Provider]) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
    v["providerName"] = json!(provider_name(providers, &p.provider_id));
    v
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The lines of one snapshot (vssadmin's `Shadow Copy ID` block with the consistency record),
/// indented by `indent` spaces.
pub fn snapshot_lines(
    p: &SnapshotProperties,
    providers: &[Provider],
    indent: usize,
) -> Vec<String> {
    let i = " ".repeat(indent);
    let mut v = vec![
        format!("{i}Shadow Copy ID: {{{}}}", p.snapshot_id),
        format!("{i}   Original Volume: {}", p.original_volume),
        format!("{i}   Shadow Copy Volume: {}", p.snapshot_path),
        format!(
            "{i}   Provider: '{}'",
            provider_name(providers, &p.provider_id)
        ),
        format!("{i}   Type: {}", context_label(p.context)),
        format!(
            "{i}   Attributes: {}",
            if p.attribute_names.is_empty() {
                "Auto release".to_owned()
            } else {
                p.attribute_names.join(", ")
            }
        ),
        format!(
            "{i}   Exposed: {}",
            p.exposed_name.as_deref().unwrap_or("not exposed")
        ),
    ];
    if let Some(a) = &p.atomicity {
        v.push(format!("{i}   Atomicity: {a}"));
    }
    if let Some(c) = &p.consistency {
        v.push(format!("{i}   Consistency: {}", c.level));
        v.push(format!(
            "{i}   Writers frozen: {}",
            list_or_none(&c.writers_frozen)
        ));
        v.push(format!(
            "{i}   Writers failed: {}",
            list_or_none(&c.writers_failed)
        ));
        v.push(format!(
            "{i}   Writers skipped: {}",
            list_or_none(&c.writers_skipped)
        ));
        v.push(format!(
            "{i}   Filesystem frozen: {}, commit skew: {} us",
            if c.filesystem_frozen { "yes" } else { "no" },
            c.commit_skew_us
        ));
    }
    v
}

/// `vssadmin list shadows`: snapshots grouped by set, in the order given.
pub fn shadow_list_lines(snaps: &[SnapshotProperties], providers: &[Provider]) -> Vec<String> {
    let mut sets: Vec<(&str, Vec<&SnapshotProperties>)> = Vec::new();
    for s in snaps {
        match sets.iter_mut().find(|(id, _)| *id == s.snapshot_set_id) {
            Some((_, v)) => v.push(s),
            None => sets.push((&s.snapshot_set_id, vec![s])),
        }
    }
    let mut out = Vec::new();
    for (set, members) in sets {
        out.push(format!("Contents of shadow copy set ID: {{{set}}}"));
        out.push(format!(
            "   Contained {} shadow copies at creation time: {}",
            members[0].snapshots_count, members[0].creation_timestamp
        ));
        for s in members {
            out.extend(snapshot_lines(s, providers, 6));
        }
        out.push(String::new());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: u32, failure_name: &str) -> WriterStatus {
        WriterStatus {
            writer_id: "w".into(),
            instance_id: "i".into(),
            writer_name: "db".into(),
            instance_name: String::new(),
            state,
            state_name: "x".into(),
            failure: if failure_name == "S_OK" {
                0
            } else {
                0x8004_23F3
            },
            failure_name: failure_name.into(),
            failure_message: None,
        }
    }

    #[test]
    fn vssadmin_labels() {
        assert_eq!(state_label(1), "[1] Stable");
        assert_eq!(state_label(5), "[5] Waiting for completion");
        assert_eq!(state_label(11), "[11] Failed");
        assert_eq!(state_label(99), "[99] Unknown");
        assert_eq!(last_error("S_OK"), "No error");
        assert_eq!(last_error("VSS_E_WRITERERROR_RETRYABLE"), "Retryable error");
        assert_eq!(
            last_error("VSS_E_WRITERERROR_NONRETRYABLE"),
            "Non-retryable error"
        );
        assert_eq!(last_error("E_FAIL"), "E_FAIL");
        let lines = writer_lines(&status(1, "S_OK"));
        assert_eq!(lines[0], "Writer name: 'db'");
        assert_eq!(lines[3], "   State: [1] Stable");
        assert_eq!(lines[4], "   Last error: No error");
    }

    #[test]
    fn failed_writers() {
        assert!(!writer_failed(&status(1, "S_OK")));
        assert!(writer_failed(&status(11, "VSS_E_WRITERERROR_RETRYABLE")));
        assert!(writer_failed(&status(1, "VSS_E_WRITERERROR_RETRYABLE")));
        let j = writer_json(&status(11, "VSS_E_WRITERERROR_RETRYABLE"));
        assert_eq!(j["stateLabel"], "[11] Failed");
        assert_eq!(j["lastError"], "Retryable error");
        assert_eq!(j["writerName"], "db");
    }

    #[test]
    fn contexts() {
        assert_eq!(context_label(0), "Backup");
        assert_eq!(context_label(0x9), "ApplicationRollback");
        assert_eq!(context_label(0x19), "DataVolumeRollback");
        assert_eq!(context_label(0x20), "0x20");
    }
}

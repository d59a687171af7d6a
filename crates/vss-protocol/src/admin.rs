//! `vss.Admin`: read-only administration served by vssd next to `vss.Requester` (see
//! interfaces/vss.Admin.varlink).

use serde::{Deserialize, Serialize};

pub use crate::requester::WriterStatus;

/// The interface name.
pub const INTERFACE: &str = "vss.Admin";

/// Every method of the interface (without the interface prefix).
pub const METHODS: &[&str] = &["ListWriters", "ListProviders", "Events"];

/// Reply of ListWriters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriterList {
    /// Each writer instance's last known state.
    pub writers: Vec<WriterStatus>,
}

/// One provider (`VSS_PROVIDER_PROP`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// Provider id.
    pub provider_id: String,
    /// Short name (`btrfs`).
    pub name: String,
    /// `VSS_PROVIDER_TYPE` name.
    pub provider_type: String,
    /// Version string.
    pub version: String,
}

/// Reply of ListProviders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderList {
    /// In the order of automatic choice.
    pub providers: Vec<Provider>,
}

/// One thing that happened in vssd (`vss.Admin.Events`): a writer's event with its outcome and
/// duration, a volume's commit, the filesystems' freeze window, an operation's end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increasing sequence number (for `after`).
    pub seq: i64,
    /// RFC 3339 time with milliseconds.
    pub time: String,
    /// The snapshot set, when there is one.
    #[serde(default)]
    pub snapshot_set_id: Option<String>,
    /// `writer`, `volume`, `filesystems` or `operation`.
    pub kind: String,
    /// The writer's name, the volume, or the operation's method.
    pub subject: String,
    /// The writer event (`Freeze`), `Commit`, `Frozen`, or the operation (`DoSnapshotSet`).
    pub phase: String,
    /// `ok`, or the failure's code name.
    pub outcome: String,
    /// How long it took, in microseconds.
    pub elapsed_us: i64,
    /// Detail (a failure's message).
    #[serde(default)]
    pub message: Option<String>,
}

/// Events parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsParam {
    /// Only events with a sequence number above this one.
    #[serde(default)]
    pub after: Option<i64>,
}

/// Reply of Events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// The events, oldest first (at most the last 10,000 are kept).
    pub events: Vec<Event>,
    /// The highest sequence number so far (pass it as `after` next time).
    pub last: i64,
}

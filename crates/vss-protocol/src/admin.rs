//! `vss.Admin`: read-only administration served by vssd next to `vss.Requester` (see
//! interfaces/vss.Admin.varlink).

use serde::{Deserialize, Serialize};

pub use crate::requester::WriterStatus;

/// The interface name.
pub const INTERFACE: &str = "vss.Admin";

/// Every method of the interface (without the interface prefix).
pub const METHODS: &[&str] = &["ListWriters", "ListProviders"];

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

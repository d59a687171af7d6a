//! The wire protocol of vss for Linux: the varlink interfaces `vss.Requester` (served by vssd)
//! and `vss.Writer` (served by each writer), as Rust types.
//!
//! **API Boundary:** this crate, `vss-client` and `vss-writer` are what programs outside the
//! project build on. Method names, parameter names and error names are a public contract;
//! changes are additive only (docs/protocol.md). The interface definitions themselves are the
//! `.varlink` files in `interfaces/`, included here as [`REQUESTER_IDL`] and [`WRITER_IDL`].
//!
//! Calls are decoded in two steps: a [`RawCall`] (method name plus untyped parameters), then the
//! parameters of that one method, so that a call with bad parameters gets a `VssError` reply
//! (`E_INVALIDARG`) instead of a dropped connection.

pub mod admin;
#[doc(hidden)]
pub mod fuzzing;
pub mod requester;
pub mod transport;
pub mod writer;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use vss_model::{ErrorCode, VssError};

/// The protocol version this crate speaks. Version 1 is the first; later versions only add.
pub const PROTOCOL_VERSION: i64 = 1;

/// The `vss.Requester` interface definition.
pub const REQUESTER_IDL: &str = include_str!("../interfaces/vss.Requester.varlink");
/// The `vss.Admin` interface definition.
pub const ADMIN_IDL: &str = include_str!("../interfaces/vss.Admin.varlink");
/// The `vss.Writer` interface definition.
pub const WRITER_IDL: &str = include_str!("../interfaces/vss.Writer.varlink");

/// The largest message either side accepts, in bytes. A larger message is refused with
/// `E_INVALIDARG` (requesters) or treated as a writer failure (writers).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The largest reply a requester accepts from vssd, in bytes. vssd's replies are its own
/// answers (a Query of every snapshot, ~700 bytes each, passes 4 MiB at about 6,000), so a
/// requester trusts them further than vssd trusts what it is sent; still bounded.
pub const MAX_REPLY_FROM_VSSD_BYTES: usize = 64 * 1024 * 1024;

/// A method call before its parameters are decoded: `{"method": "vss.Requester.Wait",
/// "parameters": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawCall {
    /// Fully qualified method name.
    pub method: String,
    /// Parameters, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

impl RawCall {
    /// A call of `method` with typed parameters.
    pub fn new<P: Serialize>(method: &str, parameters: &P) -> Self {
        let v = serde_json::to_value(parameters).unwrap_or(serde_json::Value::Null);
        let parameters = match v {
            serde_json::Value::Object(ref m) if m.is_empty() => None,
            serde_json::Value::Null => None,
            v => Some(v),
        };
        RawCall {
            method: method.to_owned(),
            parameters,
        }
    }

    /// Decodes the parameters as `P`; a missing parameter object counts as `{}`. A mismatch is
    /// `E_INVALIDARG` naming the method and the problem.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, VssError> {
        let v = self
            .parameters
            .clone()
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        serde_json::from_value(v).map_err(|e| {
            VssError::invalid_arg(format!(
                "bad parameters for {}: {e}; see docs/protocol.md for its signature",
                self.method
            ))
        })
    }
}

/// An empty parameter or reply object, `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A varlink error reply: `{"error": "vss.Requester.VssError", "parameters": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorReply<P> {
    /// Fully qualified error name.
    pub error: String,
    /// Its parameters.
    pub parameters: P,
}

/// Parameters of `vss.Requester.VssError` and `vss.Writer.WriterFailure`: the VSS code name,
/// its HRESULT and a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireError {
    /// Symbolic name, e.g. `VSS_E_BAD_STATE`.
    pub code: String,
    /// HRESULT as an unsigned 32-bit value.
    pub hresult: u32,
    /// What happened and what to do. Optional for writers.
    #[serde(default)]
    pub message: Option<String>,
}

impl From<&VssError> for WireError {
    fn from(e: &VssError) -> Self {
        WireError {
            code: e.code.name().to_owned(),
            hresult: e.code.hresult(),
            message: Some(e.message.clone()),
        }
    }
}

impl WireError {
    /// Back to a [`VssError`]. An unknown code or an HRESULT that does not match the name is
    /// reported as `fallback` with the peer's words in the message.
    pub fn to_vss_error(&self, fallback: ErrorCode) -> VssError {
        let message = self.message.clone().unwrap_or_default();
        match ErrorCode::from_name(&self.code) {
            Some(code) if code.hresult() == self.hresult => VssError::new(code, message),
            Some(code) => VssError::new(code, message),
            None => match ErrorCode::from_hresult(self.hresult) {
                Some(code) => VssError::new(code, message),
                None => VssError::new(
                    fallback,
                    format!(
                        "peer reported unknown code {} ({:#x}): {message}",
                        self.code, self.hresult
                    ),
                ),
            },
        }
    }
}

/// The result of [`decode_reply`]: a successful reply's parameters, an error reply, or a reply
/// that is not well formed.
#[derive(Debug)]
pub enum Decoded<T> {
    /// `{"parameters": ...}`.
    Ok(T),
    /// `{"error": name, "parameters": ...}`.
    Error {
        /// Fully qualified error name.
        name: String,
        /// Its parameters as JSON.
        parameters: serde_json::Value,
    },
}

/// A reply message in its raw form.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct RawReply {
    /// Error name, when the reply is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// `continues`, unused by this protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<bool>,
}

impl RawReply {
    /// Decodes the reply as `T` or as an error.
    pub fn decode<T: DeserializeOwned>(self) -> Result<Decoded<T>, serde_json::Error> {
        let params = self
            .parameters
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        match self.error {
            Some(name) => Ok(Decoded::Error {
                name,
                parameters: params,
            }),
            None => serde_json::from_value(params).map(Decoded::Ok),
        }
    }
}

/// Parses an id parameter, naming the parameter in the `E_INVALIDARG` message.
pub fn parse_id(what: &str, s: &str) -> Result<uuid::Uuid, VssError> {
    uuid::Uuid::parse_str(s.trim_start_matches('{').trim_end_matches('}')).map_err(|_| {
        VssError::invalid_arg(format!(
            "{what} '{s}' is not a UUID (like 6ba7b810-9dad-11d1-80b4-00c04fd430c8)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_call_round_trip_and_bad_params() {
        let c = RawCall::new(
            "vss.Requester.SetContext",
            &requester::SetContext { context: 0x10 },
        );
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(
            s,
            r#"{"method":"vss.Requester.SetContext","parameters":{"context":16}}"#
        );
        let back: RawCall = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back.params::<requester::SetContext>().unwrap().context,
            0x10
        );
        let bad: RawCall = serde_json::from_str(
            r#"{"method":"vss.Requester.SetContext","parameters":{"context":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            bad.params::<requester::SetContext>().unwrap_err().code,
            ErrorCode::InvalidArg
        );
        let none: RawCall =
            serde_json::from_str(r#"{"method":"vss.Requester.StartSnapshotSet"}"#).unwrap();
        none.params::<Empty>().unwrap();
    }

    #[test]
    fn wire_error_round_trip() {
        let e = VssError::bad_state("out of sequence");
        let w = WireError::from(&e);
        assert_eq!(w.hresult, 2_147_754_753);
        assert_eq!(w.to_vss_error(ErrorCode::Unexpected), e);
        let unknown = WireError {
            code: "X".into(),
            hresult: 1,
            message: None,
        };
        assert_eq!(
            unknown.to_vss_error(ErrorCode::Unexpected).code,
            ErrorCode::Unexpected
        );
    }

    #[test]
    fn idl_files_name_their_interfaces() {
        assert!(REQUESTER_IDL.contains("interface vss.Requester"));
        assert!(WRITER_IDL.contains("interface vss.Writer"));
        for m in requester::METHODS {
            assert!(
                REQUESTER_IDL.contains(&format!("method {m}(")),
                "{m} missing from the IDL"
            );
        }
        for m in admin::METHODS {
            assert!(
                ADMIN_IDL.contains(&format!("method {m}(")),
                "{m} missing from the IDL"
            );
        }
        for m in writer::METHODS {
            assert!(
                WRITER_IDL.contains(&format!("method {m}(")),
                "{m} missing from the IDL"
            );
        }
    }
}

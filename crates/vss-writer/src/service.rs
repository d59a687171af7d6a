//! The standard `org.varlink.service` interface (GetInfo, GetInterfaceDescription, and the
//! standard errors), so that `varlinkctl info` and `varlinkctl introspect` work on a writer's
//! socket. The coordinator never relies on it.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vss_protocol::transport::{CallError, Connection};
use vss_protocol::writer::{EventComponent, EventVolume};
use vss_protocol::{ErrorReply, WRITER_IDL};

/// The standard interface's name.
pub(crate) const INTERFACE: &str = "org.varlink.service";

/// The standard interface's definition.
pub(crate) const SERVICE_IDL: &str = "\
# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)
";

/// The reply of `org.varlink.service.GetInfo`.
pub(crate) fn info() -> Value {
    json!({
        "vendor": "vss for Linux",
        "product": "vss-writer",
        "version": env!("CARGO_PKG_VERSION"),
        "url": "https://example.invalid/vss",
        "interfaces": [INTERFACE, vss_protocol::writer::INTERFACE],
    })
}

/// The definition of `interface`, if this service implements it.
pub(crate) fn interface_description(interface: &str) -> Option<&'static str> {
    match interface {
        INTERFACE => Some(SERVICE_IDL),
        vss_protocol::writer::INTERFACE => Some(WRITER_IDL),
        _ => None,
    }
}

/// Sends the standard error `org.varlink.service.<name>` with `parameters`.
pub(crate) async fn reply_standard_error(
    conn: &mut Connection,
    name: &str,
    parameters: Value,
) -> Result<(), CallError> {
    let e = ErrorReply {
        error: format!("{INTERFACE}.{name}"),
        parameters,
    };
    vss_protocol::transport::send_message(conn, &e).await
}

/// Sends `org.varlink.service.InvalidParameter(parameter)`.
pub(crate) async fn reply_invalid_parameter(
    conn: &mut Connection,
    parameter: &str,
) -> Result<(), CallError> {
    reply_standard_error(conn, "InvalidParameter", json!({ "parameter": parameter })).await
}

fn is<T: DeserializeOwned>(v: &Value) -> bool {
    T::deserialize(v).is_ok()
}

/// Which parameter of an event's `EventParams` is missing or malformed (the first one found),
/// for the InvalidParameter reply; `"parameters"` when the whole object is wrong.
pub(crate) fn bad_event_parameter(parameters: Option<&Value>) -> String {
    let empty = serde_json::Map::new();
    let map = match parameters {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return "parameters".to_owned(),
    };
    type Check = fn(&Value) -> bool;
    let fields: [(&str, bool, Check); 8] = [
        ("snapshotSetId", true, is::<String>),
        ("context", true, is::<i64>),
        ("backupType", true, is::<vss_model::BackupType>),
        ("selectComponents", true, is::<bool>),
        ("bootableSystemState", false, is::<bool>),
        ("partialFileSupport", false, is::<bool>),
        ("volumes", false, is::<Vec<EventVolume>>),
        ("components", false, is::<Option<Vec<EventComponent>>>),
    ];
    for (name, required, ok) in fields {
        match map.get(name) {
            None if required => return name.to_owned(),
            None => {}
            Some(v) if !ok(v) => return name.to_owned(),
            Some(_) => {}
        }
    }
    "parameters".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_parameter() {
        let good = json!({"snapshotSetId": "s", "context": 0, "backupType": "VSS_BT_FULL",
            "selectComponents": true, "volumes": [], "components": null});
        assert_eq!(bad_event_parameter(Some(&good)), "parameters");
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("context");
        assert_eq!(bad_event_parameter(Some(&missing)), "context");
        let mut wrong = good.clone();
        wrong["backupType"] = json!("VSS_BT_NOPE");
        assert_eq!(bad_event_parameter(Some(&wrong)), "backupType");
        let mut wrong = good.clone();
        wrong["volumes"] = json!([{"volume": 1}]);
        assert_eq!(bad_event_parameter(Some(&wrong)), "volumes");
        assert_eq!(bad_event_parameter(None), "snapshotSetId");
        assert_eq!(bad_event_parameter(Some(&json!([1]))), "parameters");
    }

    #[test]
    fn describes_both_interfaces() {
        assert!(
            interface_description("vss.Writer")
                .unwrap()
                .contains("method Freeze(")
        );
        assert!(
            interface_description(INTERFACE)
                .unwrap()
                .contains("method GetInfo()")
        );
        assert!(interface_description("com.example.nope").is_none());
        assert_eq!(
            info()["interfaces"],
            json!(["org.varlink.service", "vss.Writer"])
        );
    }
}

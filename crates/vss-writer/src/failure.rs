//! How a hook's failure becomes a `vss.Writer.WriterFailure` reply.
//!
//! A writer may only report the `VSS_E_WRITERERROR_*` codes (vss-model.md §5.4). Anything else
//! (a generic `E_FAIL`, a coordinator-side code) is reported as
//! `VSS_E_WRITERERROR_NONRETRYABLE` with the original code kept in the message, and so is a
//! panicking hook: the coordinator must not retry something that crashes.

use std::any::Any;

use vss_model::{ErrorCode, VssError};

/// Whether `code` is one a writer may fail an event with (`VSS_E_WRITERERROR_*`).
pub fn is_writer_error_code(code: ErrorCode) -> bool {
    code.name().starts_with("VSS_E_WRITERERROR_")
}

/// The error to send for a hook's `err`: itself if its code is a writer error code, otherwise
/// `VSS_E_WRITERERROR_NONRETRYABLE` naming the original code.
pub fn to_writer_failure(err: VssError) -> VssError {
    if is_writer_error_code(err.code) {
        err
    } else {
        VssError::new(
            ErrorCode::WriterErrorNonRetryable,
            format!("writer failed with {}: {}", err.code, err.message),
        )
    }
}

/// The error to send when the hook `hook` panicked with `payload`.
pub fn panic_failure(hook: &str, payload: &(dyn Any + Send)) -> VssError {
    VssError::new(
        ErrorCode::WriterErrorNonRetryable,
        format!(
            "the writer's {hook} hook panicked: {}",
            panic_message(payload)
        ),
    )
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_codes_pass_through() {
        for code in [
            ErrorCode::WriterErrorRetryable,
            ErrorCode::WriterErrorNonRetryable,
            ErrorCode::WriterErrorTimeout,
            ErrorCode::WriterErrorOutOfResources,
            ErrorCode::WriterErrorInconsistentSnapshot,
            ErrorCode::WriterErrorPartialFailure,
        ] {
            let e = VssError::new(code, "x");
            assert_eq!(to_writer_failure(e.clone()), e);
        }
    }

    #[test]
    fn other_codes_become_nonretryable_with_the_original_in_the_message() {
        let e = to_writer_failure(VssError::new(ErrorCode::Fail, "disk on fire"));
        assert_eq!(e.code, ErrorCode::WriterErrorNonRetryable);
        assert!(e.message.contains("E_FAIL"), "{}", e.message);
        assert!(e.message.contains("disk on fire"));
        assert!(!is_writer_error_code(ErrorCode::WriterNotResponding));
    }

    #[test]
    fn panic_payloads() {
        let e = panic_failure("freeze", &"boom");
        assert_eq!(e.code, ErrorCode::WriterErrorNonRetryable);
        assert!(e.message.contains("freeze") && e.message.contains("boom"));
        assert_eq!(panic_message(&String::from("s")), "s");
        assert_eq!(panic_message(&5u8), "(non-string panic payload)");
    }
}

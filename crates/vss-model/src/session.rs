//! Placeholder: the requester session state machine lives here.

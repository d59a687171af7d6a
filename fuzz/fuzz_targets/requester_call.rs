//! Bytes as they arrive on vssd's requester socket (`vss.Requester`, `vss.Admin`):
//! `vss_protocol::fuzzing::requester_call`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vss_protocol::fuzzing::requester_call(data);
});

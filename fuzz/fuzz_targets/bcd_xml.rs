//! The Backup Components Document's XML parser and its round trip:
//! `vss_model::fuzzing::bcd_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vss_model::fuzzing::bcd_xml(data);
});

//! The Writer Metadata Document's XML parser and its round trip: `vss_model::fuzzing::wmd_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vss_model::fuzzing::wmd_xml(data);
});

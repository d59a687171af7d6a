//! `vss.Writer` in both directions, calls a writer reads and replies vssd reads:
//! `vss_writer::fuzzing::writer_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vss_writer::fuzzing::writer_messages(data);
});

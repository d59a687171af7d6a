//! Replays the committed fuzz corpora of the two XML documents (`fuzz/corpus/wmd_xml`,
//! `fuzz/corpus/bcd_xml`) through the entry points the fuzz targets call, on stable: every
//! input the fuzzer kept, and every crash it ever found, runs again on each `cargo test`
//! (docs/fuzzing.md).

use vss_model::fuzzing::{Outcome, bcd_xml, wmd_xml};

use vss_test_support::fuzz_corpus as corpus;

/// Replays a corpus and counts each outcome; the file being replayed is printed first, so a
/// panic names it.
fn replay(target: &str, entry: fn(&[u8]) -> Outcome) -> (usize, usize) {
    let (mut parsed, mut rejected) = (0, 0);
    for (name, data) in corpus(target) {
        eprintln!("replaying {name}");
        match entry(&data) {
            Outcome::Parsed => parsed += 1,
            Outcome::Rejected => rejected += 1,
            Outcome::NotText => {}
        }
    }
    (parsed, rejected)
}

#[test]
fn wmd_xml_corpus_replays() {
    let (parsed, rejected) = replay("wmd_xml", wmd_xml);
    // Both sides of the parser must stay covered: documents that round-trip and ones refused.
    assert!(parsed > 0, "no WMD in the corpus parses");
    assert!(rejected > 0, "no WMD in the corpus is refused");
}

#[test]
fn bcd_xml_corpus_replays() {
    let (parsed, rejected) = replay("bcd_xml", bcd_xml);
    assert!(parsed > 0, "no BCD in the corpus parses");
    assert!(rejected > 0, "no BCD in the corpus is refused");
}

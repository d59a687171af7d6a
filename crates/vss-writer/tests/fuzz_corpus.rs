//! Replays the committed fuzz corpus of `vss.Writer` (`fuzz/corpus/writer_messages`) through
//! the entry point the fuzz target calls, on stable: every input the fuzzer kept, and every
//! crash it ever found, runs again on each `cargo test` (docs/fuzzing.md).

use std::collections::BTreeSet;

use vss_writer::fuzzing::writer_messages;

use vss_test_support::fuzz_corpus as corpus;

#[test]
fn writer_messages_corpus_replays() {
    let (mut calls, mut replies) = (BTreeSet::new(), BTreeSet::new());
    let (mut accepted, mut refused) = (0, 0);
    for (name, data) in corpus("writer_messages") {
        // Printed first, so that a panic names the input.
        eprintln!("replaying {name}");
        let out = writer_messages(&data);
        refused += out.messages - out.accepted.len();
        accepted += out.accepted.len();
        // The first byte chooses the direction (see the entry point).
        match data.first() {
            Some(b) if *b < 0x80 => calls.extend(out.decoded),
            _ => replies.extend(out.decoded),
        }
    }
    // The corpus must keep reaching every event in both directions, and both outcomes.
    for m in vss_protocol::writer::METHODS {
        let method = format!("{}.{m}", vss_protocol::writer::INTERFACE);
        assert!(
            calls.contains(&method),
            "no {method} call in the corpus decodes; add a seed (docs/fuzzing.md)"
        );
        assert!(
            replies.contains(&method),
            "no reply to {method} in the corpus is read; add a seed (docs/fuzzing.md)"
        );
    }
    assert!(accepted > 0, "nothing in the corpus is accepted");
    assert!(refused > 0, "nothing in the corpus is refused");
}

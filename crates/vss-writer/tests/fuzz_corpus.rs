//! Replays the committed fuzz corpus of `vss.Writer` (`fuzz/corpus/writer_messages`) through
//! the entry point the fuzz target calls, on stable: every input the fuzzer kept, and every
//! crash it ever found, runs again on each `cargo test` (docs/fuzzing.md).

use std::collections::BTreeSet;
use std::path::PathBuf;

use vss_writer::fuzzing::writer_messages;

/// Every file of a target's corpus, by name. A missing or empty corpus fails: the replay would
/// otherwise pass without testing anything.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("a corpus entry").path();
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path.display().to_string(), data)
        })
        .collect();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files.sort();
    files
}

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

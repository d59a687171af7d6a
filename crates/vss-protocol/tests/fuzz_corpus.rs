//! Replays the committed fuzz corpus of vssd's requester socket (`fuzz/corpus/requester_call`)
//! through the entry point the fuzz target calls, on stable: every input the fuzzer kept, and
//! every crash it ever found, runs again on each `cargo test` (docs/fuzzing.md).

use std::collections::BTreeSet;

use vss_protocol::fuzzing::requester_call;
use vss_protocol::{admin, requester};

use vss_test_support::fuzz_corpus as corpus;

#[test]
fn requester_call_corpus_replays() {
    let (mut decoded, mut accepted, mut refused) = (BTreeSet::new(), 0, 0);
    for (name, data) in corpus("requester_call") {
        // Printed first, so that a panic names the input.
        eprintln!("replaying {name}");
        let out = requester_call(&data);
        refused += out.messages - out.accepted.len();
        accepted += out.accepted.len();
        decoded.extend(out.decoded);
    }
    // The corpus must keep reaching the decoding of every method, and both outcomes.
    let every = requester::METHODS
        .iter()
        .map(|m| format!("{}.{m}", requester::INTERFACE))
        .chain(
            admin::METHODS
                .iter()
                .map(|m| format!("{}.{m}", admin::INTERFACE)),
        );
    for method in every {
        assert!(
            decoded.contains(&method),
            "no call of {method} in the corpus decodes; add a seed (docs/fuzzing.md)"
        );
    }
    assert!(accepted > 0, "no call in the corpus is accepted");
    assert!(refused > 0, "no call in the corpus is refused");
}

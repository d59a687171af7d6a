//! End-to-end tests of vss for Linux, and the programs they drive.
//!
//! The binary `vss-test-writer` (src/bin/vss-test-writer.rs) is a scriptable writer: it logs
//! every event it receives as a JSON line and can hang, fail, crash or write marker files at any
//! event, so tests can check what the coordinator sends and how it copes. Run
//! `vss-test-writer --help` for its flags. The tests themselves live in `tests/`.

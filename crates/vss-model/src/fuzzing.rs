//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/`) and the corpus replay tests
//! (`tests/fuzz_corpus.rs`), so that both run exactly the same code on an input: the fuzzer on
//! nightly, the replay of the committed corpora (`fuzz/corpus/`) on stable (docs/fuzzing.md).
//!
//! Not part of the API: nothing else calls these. Each one panics when the code under test
//! breaks one of its promises, which is what the fuzzer reports as a crash.
//!
//! The properties checked, for both documents:
//!
//! * parsing never panics, and every refusal is `VSS_E_INVALID_XML_DOCUMENT` (what
//!   InitializeForRestore promises a requester for a bad BCD);
//! * a parsed document serializes to XML that parses back to an equal document, and serializing
//!   that again gives the same bytes. The round trip is what SaveAsXml followed by
//!   InitializeForRestore relies on: whatever vssd accepted once it must be able to read again.

use crate::bcd::BackupComponents;
use crate::wmd::WriterMetadata;
use crate::{ErrorCode, VssError};

/// What one input did, so that the replay tests can check that the corpus still reaches the
/// interesting code (a corpus of only garbage would pass every property trivially).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not UTF-8: the documents only ever arrive as strings, so there is nothing to parse.
    NotText,
    /// Refused by the parser (with `VSS_E_INVALID_XML_DOCUMENT`).
    Rejected,
    /// Parsed, and the round trip held.
    Parsed,
}

/// The `wmd_xml` target: a Writer Metadata Document as XML. A parsed document is also validated
/// (the Identify rule), which must not panic either.
pub fn wmd_xml(data: &[u8]) -> Outcome {
    let Ok(xml) = std::str::from_utf8(data) else {
        return Outcome::NotText;
    };
    let wmd = match WriterMetadata::from_xml(xml) {
        Ok(wmd) => wmd,
        Err(e) => return rejected("WMD", &e),
    };
    let _ = wmd.validate();
    round_trip(
        "WMD",
        &wmd,
        WriterMetadata::to_xml,
        WriterMetadata::from_xml,
    );
    Outcome::Parsed
}

/// The `bcd_xml` target: a Backup Components Document as XML (InitializeForBackup and
/// InitializeForRestore take one from the requester).
pub fn bcd_xml(data: &[u8]) -> Outcome {
    let Ok(xml) = std::str::from_utf8(data) else {
        return Outcome::NotText;
    };
    let bcd = match BackupComponents::from_xml(xml) {
        Ok(bcd) => bcd,
        Err(e) => return rejected("BCD", &e),
    };
    round_trip(
        "BCD",
        &bcd,
        BackupComponents::to_xml,
        BackupComponents::from_xml,
    );
    Outcome::Parsed
}

/// Asserts that `doc` survives serialization: `from_xml(to_xml(doc)) == doc`, and serializing the
/// result gives the same bytes. Public for the protocol fuzz targets, whose sessions build a
/// BCD out of requester input.
pub fn round_trip<T: PartialEq + std::fmt::Debug>(
    what: &str,
    doc: &T,
    to_xml: impl Fn(&T) -> String,
    from_xml: impl Fn(&str) -> Result<T, VssError>,
) {
    let xml = to_xml(doc);
    let back = match from_xml(&xml) {
        Ok(back) => back,
        Err(e) => panic!("a {what} we wrote does not parse: {e}\n{xml}\n{doc:#?}"),
    };
    assert_eq!(
        &back, doc,
        "a {what} changed in a round trip through XML:\n{xml}"
    );
    assert_eq!(
        to_xml(&back),
        xml,
        "a {what} serializes differently after a round trip"
    );
}

fn rejected(what: &str, e: &VssError) -> Outcome {
    assert_eq!(
        e.code,
        ErrorCode::InvalidXmlDocument,
        "a bad {what} must be VSS_E_INVALID_XML_DOCUMENT, not {}: {}",
        e.code.name(),
        e.message
    );
    Outcome::Rejected
}

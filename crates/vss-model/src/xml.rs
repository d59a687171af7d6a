//! XML plumbing shared by the Writer Metadata Document ([`crate::wmd`]) and the Backup
//! Components Document ([`crate::bcd`]) (vss-model.md §7.2).
//!
//! Both documents are written with quick-xml's event [`Writer`] and read with its event
//! [`Reader`] into a small element tree ([`Element`]), which the document code then walks with
//! typed accessors that produce `VSS_E_INVALID_XML_DOCUMENT` errors naming the element, its line
//! and the attribute at fault.
//!
//! Conventions of our (versioned, `version="1"`) schema:
//!
//! * booleans are `yes` / `no`; masks, counts and contexts are decimal; enumerations are their
//!   VSS symbolic names (`VSS_UT_USERDATA`); ids are hyphenated UUIDs without braces;
//! * an absent optional string is an absent attribute (or element); an empty one is present and
//!   empty, so `None` and `Some("")` stay distinct;
//! * attribute values are escaped with character references for `\t`, `\n` and `\r`, so they
//!   survive XML attribute-value normalization and round-trip exactly; text content escapes `\r`
//!   for the same reason and is never trimmed;
//! * unknown attributes and elements are ignored (forward compatibility); the root element's
//!   name and its `version` attribute (absent means 1) are checked;
//! * a `<!DOCTYPE>` is refused (we resolve no entities beyond the five predefined ones and
//!   character references), as are documents over 16 MiB or nested deeper than 32 elements.
//!
//! Nothing here does I/O: documents go in and out as strings.

use std::fmt::Display;
use std::str::FromStr;

use quick_xml::events::{BytesDecl, BytesEnd, BytesRef, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer, XmlVersion};

use crate::{
    ApplicationLevel, BackupType, ComponentType, ErrorCode, FileRestoreStatus, Id, RestoreMethod,
    RestoreTarget, RestoreType, SourceType, UsageType, VssError, WriterRestore,
};

/// The schema version we write and the only one we read.
pub(crate) const FORMAT_VERSION: &str = "1";

/// Documents larger than this are refused before parsing.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Deepest element nesting accepted (our documents use 4 levels).
pub(crate) const MAX_DEPTH: usize = 32;

/// A `VSS_E_INVALID_XML_DOCUMENT` error.
pub(crate) fn invalid(message: impl Into<String>) -> VssError {
    VssError::new(ErrorCode::InvalidXmlDocument, message)
}

/// A VSS enumeration that travels as its symbolic name.
pub(crate) trait XmlEnum: Sized + Copy + 'static {
    /// The VSS type name, for error messages (`VSS_BACKUP_TYPE`).
    const TYPE_NAME: &'static str;
    /// Every variant.
    const VARIANTS: &'static [Self];
    /// The symbolic name of the variant.
    fn symbol(self) -> &'static str;
    /// The variant with this symbolic name.
    fn from_symbol(s: &str) -> Option<Self>;
}

macro_rules! xml_enums {
    ($( $ty:ty => $type_name:literal ),+ $(,)?) => {
        $(
            impl XmlEnum for $ty {
                const TYPE_NAME: &'static str = $type_name;
                const VARIANTS: &'static [Self] = <$ty>::ALL;
                fn symbol(self) -> &'static str {
                    self.name()
                }
                fn from_symbol(s: &str) -> Option<Self> {
                    <$ty>::from_name(s)
                }
            }
        )+
    };
}

xml_enums! {
    BackupType => "VSS_BACKUP_TYPE",
    RestoreType => "VSS_RESTORE_TYPE",
    ComponentType => "VSS_COMPONENT_TYPE",
    UsageType => "VSS_USAGE_TYPE",
    SourceType => "VSS_SOURCE_TYPE",
    ApplicationLevel => "VSS_APPLICATION_LEVEL",
    RestoreMethod => "VSS_RESTOREMETHOD_ENUM",
    WriterRestore => "VSS_WRITERRESTORE_ENUM",
    FileRestoreStatus => "VSS_FILE_RESTORE_STATUS",
    RestoreTarget => "VSS_RESTORE_TARGET",
}

/// `yes` or `no`.
pub(crate) fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

// ------------------------------------------------------------------------------------------------
// Writing

/// An element's start tag under construction, with typed attribute setters.
#[derive(Debug)]
pub(crate) struct Tag(BytesStart<'static>);

impl Tag {
    /// A start tag without attributes.
    pub(crate) fn new(name: &'static str) -> Self {
        Tag(BytesStart::new(name))
    }

    /// A string attribute (escaped, `\t` `\n` `\r` as character references).
    pub(crate) fn attr(mut self, key: &str, value: &str) -> Self {
        self.0.push_attribute((key, value));
        self
    }

    /// A string attribute written only when present.
    pub(crate) fn opt(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    /// A `yes`/`no` attribute.
    pub(crate) fn flag(self, key: &str, value: bool) -> Self {
        self.attr(key, yes_no(value))
    }

    /// A UUID attribute (hyphenated, lower case, no braces).
    pub(crate) fn id(self, key: &str, value: Id) -> Self {
        self.attr(key, &value.hyphenated().to_string())
    }

    /// A decimal number attribute.
    pub(crate) fn num(self, key: &str, value: impl Display) -> Self {
        self.attr(key, &value.to_string())
    }

    /// An enumeration attribute, as its symbolic name.
    pub(crate) fn sym<E: XmlEnum>(self, key: &str, value: E) -> Self {
        self.attr(key, value.symbol())
    }

    /// An enumeration attribute written only when present.
    pub(crate) fn opt_sym<E: XmlEnum>(self, key: &str, value: Option<E>) -> Self {
        self.opt(key, value.map(E::symbol))
    }
}

/// An indented XML document being written to memory.
pub(crate) struct XmlWriter(Writer<Vec<u8>>);

impl XmlWriter {
    /// A document starting with `<?xml version="1.0" encoding="UTF-8"?>`.
    pub(crate) fn new() -> Self {
        let mut w = XmlWriter(Writer::new_with_indent(Vec::new(), b' ', 2));
        w.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        w
    }

    fn event(&mut self, event: Event<'_>) {
        // Writing to a Vec<u8> cannot fail.
        self.0
            .write_event(event)
            .expect("writing XML to memory cannot fail");
    }

    /// An element with children written by `body`, or an empty element when it has none.
    pub(crate) fn element(&mut self, tag: Tag, has_children: bool, body: impl FnOnce(&mut Self)) {
        if has_children {
            let end = tag.0.to_end().into_owned();
            self.event(Event::Start(tag.0));
            body(self);
            self.event(Event::End(end));
        } else {
            self.leaf(tag);
        }
    }

    /// An empty element (`<NAME .../>`).
    pub(crate) fn leaf(&mut self, tag: Tag) {
        self.event(Event::Empty(tag.0));
    }

    /// An element whose only content is `text`, kept exactly (no indentation inside).
    pub(crate) fn text_element(&mut self, name: &'static str, text: &str) {
        self.event(Event::Start(BytesStart::new(name)));
        self.event(Event::Text(BytesText::new(text)));
        self.event(Event::End(BytesEnd::new(name)));
    }

    /// An optional text element: written only when present.
    pub(crate) fn opt_text_element(&mut self, name: &'static str, text: Option<&str>) {
        if let Some(text) = text {
            self.text_element(name, text);
        }
    }

    /// The finished document, with a final newline.
    pub(crate) fn finish(self) -> String {
        let mut bytes = self.0.into_inner();
        bytes.push(b'\n');
        String::from_utf8(bytes).expect("XML written from &str is UTF-8")
    }
}

// ------------------------------------------------------------------------------------------------
// Reading

/// One parsed element: its attributes (unescaped), child elements and text content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// Element name, as written (prefix included, if any).
    pub(crate) name: String,
    /// 1-based line of the start tag, for messages.
    pub(crate) line: usize,
    attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub(crate) children: Vec<Element>,
    /// Concatenated character data directly inside the element (references resolved, EOLs
    /// normalized, nothing trimmed).
    pub(crate) text: String,
}

impl Element {
    /// `NAME (line N)`, the prefix of every message about this element.
    fn at(&self) -> String {
        format!("{} (line {})", self.name, self.line)
    }

    /// An invalid-document error about this element.
    pub(crate) fn error(&self, what: impl Display) -> VssError {
        invalid(format!("{}: {what}", self.at()))
    }

    fn bad_attr(&self, key: &str, value: &str, expected: impl Display) -> VssError {
        self.error(format_args!("attribute {key} '{value}' is not {expected}"))
    }

    /// The attribute's value, if present.
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The attribute's value; missing is an error.
    pub(crate) fn required(&self, key: &str) -> Result<&str, VssError> {
        self.attr(key)
            .ok_or_else(|| self.error(format_args!("missing required attribute {key}")))
    }

    /// A required string attribute.
    pub(crate) fn string(&self, key: &str) -> Result<String, VssError> {
        self.required(key).map(str::to_owned)
    }

    /// An optional string attribute.
    pub(crate) fn opt_string(&self, key: &str) -> Option<String> {
        self.attr(key).map(str::to_owned)
    }

    /// An optional string attribute with a default.
    pub(crate) fn string_or(&self, key: &str, default: &str) -> String {
        self.attr(key).unwrap_or(default).to_owned()
    }

    fn parse_flag(&self, key: &str, value: &str) -> Result<bool, VssError> {
        match value {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(self.bad_attr(key, value, "yes or no")),
        }
    }

    /// A required `yes`/`no` attribute.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, VssError> {
        self.parse_flag(key, self.required(key)?)
    }

    /// An optional `yes`/`no` attribute with a default.
    pub(crate) fn flag_or(&self, key: &str, default: bool) -> Result<bool, VssError> {
        self.attr(key)
            .map_or(Ok(default), |v| self.parse_flag(key, v))
    }

    /// A required UUID attribute.
    pub(crate) fn id(&self, key: &str) -> Result<Id, VssError> {
        let v = self.required(key)?;
        Id::try_parse(v).map_err(|_| self.bad_attr(key, v, "a UUID"))
    }

    fn parse_num<T: FromStr>(&self, key: &str, value: &str) -> Result<T, VssError> {
        // Decimal digits only (FromStr would also take a leading '+').
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.bad_attr(key, value, "a decimal number"));
        }
        value
            .parse()
            .map_err(|_| self.bad_attr(key, value, "a decimal number in range"))
    }

    /// A required decimal attribute.
    pub(crate) fn num<T: FromStr>(&self, key: &str) -> Result<T, VssError> {
        self.parse_num(key, self.required(key)?)
    }

    /// An optional decimal attribute with a default.
    pub(crate) fn num_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, VssError> {
        self.attr(key)
            .map_or(Ok(default), |v| self.parse_num(key, v))
    }

    fn parse_sym<E: XmlEnum>(&self, key: &str, value: &str) -> Result<E, VssError> {
        E::from_symbol(value).ok_or_else(|| {
            let names: Vec<_> = E::VARIANTS.iter().map(|v| v.symbol()).collect();
            self.bad_attr(
                key,
                value,
                format_args!("a {}; expected one of {}", E::TYPE_NAME, names.join(", ")),
            )
        })
    }

    /// A required enumeration attribute (symbolic name).
    pub(crate) fn sym<E: XmlEnum>(&self, key: &str) -> Result<E, VssError> {
        self.parse_sym(key, self.required(key)?)
    }

    /// An optional enumeration attribute.
    pub(crate) fn opt_sym<E: XmlEnum>(&self, key: &str) -> Result<Option<E>, VssError> {
        self.attr(key).map(|v| self.parse_sym(key, v)).transpose()
    }

    /// The child elements with this name.
    pub(crate) fn children<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The child element with this name, if any; more than one is an error.
    pub(crate) fn child(&self, name: &str) -> Result<Option<&Element>, VssError> {
        let mut found = self.children(name);
        let first = found.next();
        if let Some(second) = found.next() {
            return Err(second.error(format_args!("more than one {name} in {}", self.name)));
        }
        Ok(first)
    }

    /// The child element with this name; missing or repeated is an error.
    pub(crate) fn required_child(&self, name: &str) -> Result<&Element, VssError> {
        self.child(name)?
            .ok_or_else(|| self.error(format_args!("missing required element {name}")))
    }

    /// The text of an optional child element (`None` when the element is absent).
    pub(crate) fn child_text(&self, name: &str) -> Result<Option<String>, VssError> {
        Ok(self.child(name)?.map(|c| c.text.clone()))
    }
}

/// Turns byte offsets into line numbers, scanning the input once as offsets grow.
struct Lines<'a> {
    input: &'a [u8],
    offset: usize,
    line: usize,
}

impl Lines<'_> {
    fn line_at(&mut self, offset: u64) -> usize {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.input.len());
        if offset < self.offset {
            // Error positions may point back a little; count afresh.
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.input[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.line
    }
}

/// The tree builder fed by the reader's events.
struct Builder<'a> {
    root: &'a str,
    version: XmlVersion,
    stack: Vec<Element>,
    done: Option<Element>,
}

impl Builder<'_> {
    fn open(&self, start: &BytesStart<'_>, line: usize) -> Result<Element, VssError> {
        let name = start.name().as_ref().to_owned();
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| {
                invalid(format!("{} (line {line}): malformed attribute: {e}", name))
            })?;
            let value = attr.normalized_value(self.version).map_err(|e| {
                invalid(format!(
                    "{name} (line {line}): attribute {} has a bad value: {e}",
                    attr.key.as_ref()
                ))
            })?;
            attrs.push((attr.key.as_ref().to_owned(), value.into_owned()));
        }
        Ok(Element {
            name,
            line,
            attrs,
            children: Vec::new(),
            text: String::new(),
        })
    }

    fn push(&mut self, element: Element) -> Result<(), VssError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(element.error(format_args!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        if self.stack.is_empty() && self.done.is_some() {
            return Err(element.error(format_args!("a second root element after {}", self.root)));
        }
        self.stack.push(element);
        Ok(())
    }

    fn close(&mut self) -> Result<(), VssError> {
        let element = self
            .stack
            .pop()
            .ok_or_else(|| invalid("an end tag without a start tag"))?;
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => self.done = Some(element),
        }
        Ok(())
    }

    fn text(&mut self, text: &str, line: usize) -> Result<(), VssError> {
        match self.stack.last_mut() {
            Some(top) => top.text.push_str(text),
            None if text.trim().is_empty() => {}
            None => {
                return Err(invalid(format!(
                    "{}: text outside the root element at line {line}",
                    self.root
                )));
            }
        }
        Ok(())
    }

    fn reference(&mut self, r: &BytesRef<'_>, line: usize) -> Result<(), VssError> {
        let bad = |why: &str| {
            invalid(format!(
                "{}: {why} '&{};' at line {line}",
                self.root,
                r.as_ref()
            ))
        };
        let resolved = match r.resolve_char_ref() {
            Ok(Some(ch)) => ch.to_string(),
            Ok(None) => quick_xml::escape::resolve_xml_entity(r)
                .ok_or_else(|| bad("unknown entity reference"))?
                .to_owned(),
            Err(_) => return Err(bad("invalid character reference")),
        };
        self.text(&resolved, line)
    }
}

/// Parses a whole document whose root element must be `root`, with a `version` attribute that is
/// absent or [`FORMAT_VERSION`]. Every failure is `VSS_E_INVALID_XML_DOCUMENT`.
pub(crate) fn parse(xml: &str, root: &str) -> Result<Element, VssError> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "{root}: the document is {} bytes long; the limit is {MAX_DOCUMENT_BYTES} bytes \
             (16 MiB)",
            xml.len()
        )));
    }
    let mut reader = Reader::from_str(xml);
    let mut lines = Lines {
        input: xml.as_bytes(),
        offset: 0,
        line: 1,
    };
    let mut b = Builder {
        root,
        version: XmlVersion::Implicit1_0,
        stack: Vec::new(),
        done: None,
    };
    loop {
        let line = lines.line_at(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let line = lines.line_at(reader.error_position());
                return Err(invalid(format!(
                    "{root}: malformed XML at line {line}: {e}"
                )));
            }
        };
        match event {
            Event::Decl(decl) => {
                b.version = decl.xml_version().map_err(|e| {
                    invalid(format!("{root}: bad XML declaration at line {line}: {e}"))
                })?;
            }
            Event::DocType(_) => {
                return Err(invalid(format!(
                    "{root}: a <!DOCTYPE> (line {line}) is not allowed in this document"
                )));
            }
            Event::Start(start) => {
                let element = b.open(&start, line)?;
                b.push(element)?;
            }
            Event::Empty(start) => {
                let element = b.open(&start, line)?;
                b.push(element)?;
                b.close()?;
            }
            Event::End(_) => b.close()?,
            Event::Text(text) => b.text(&text.xml_content(b.version), line)?,
            Event::CData(cdata) => b.text(&cdata.xml_content(b.version), line)?,
            Event::GeneralRef(r) => b.reference(&r, line)?,
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = b.stack.last() {
        return Err(open.error("the document ends before this element is closed (truncated?)"));
    }
    let element = b
        .done
        .ok_or_else(|| invalid(format!("{root}: the document has no root element")))?;
    if element.name != root {
        return Err(element.error(format_args!("the root element must be {root}")));
    }
    match element.attr("version") {
        None => {}
        Some(v) if v == FORMAT_VERSION => {}
        Some(v) => {
            return Err(element.error(format_args!(
                "attribute version '{v}' is not supported; this implementation reads version \
                 {FORMAT_VERSION}"
            )));
        }
    }
    Ok(element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_text_round_trip_exactly() {
        let nasty = "  <a & b> \"q\" 'a'\n\tline2\r\nline3\r héllo ✓ 😀  ";
        let mut w = XmlWriter::new();
        w.element(
            Tag::new("ROOT").attr("version", "1").attr("s", nasty),
            true,
            |w| {
                w.text_element("T", nasty);
                w.text_element("E", "");
            },
        );
        let xml = w.finish();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ROOT"),
            "{xml}"
        );
        let root = parse(&xml, "ROOT").unwrap();
        assert_eq!(root.attr("s"), Some(nasty));
        assert_eq!(root.child_text("T").unwrap().as_deref(), Some(nasty));
        assert_eq!(root.child_text("E").unwrap().as_deref(), Some(""));
        assert_eq!(root.child_text("MISSING").unwrap(), None);
    }

    #[test]
    fn accessors_report_element_line_and_attribute() {
        let root = parse("<R\n a='maybe' n='-1' u='x'>\n<C/><C/></R>", "R").unwrap();
        let e = root.flag("a").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidXmlDocument);
        assert_eq!(
            e.message,
            "R (line 1): attribute a 'maybe' is not yes or no"
        );
        assert!(
            root.num::<u32>("n")
                .unwrap_err()
                .message
                .contains("attribute n '-1'")
        );
        assert!(root.id("u").unwrap_err().message.contains("is not a UUID"));
        assert!(
            root.required("zz")
                .unwrap_err()
                .message
                .contains("missing required attribute zz")
        );
        assert!(root.child("C").unwrap_err().message.contains("line 3"));
        assert_eq!(root.flag_or("zz", true), Ok(true));
        assert_eq!(root.num_or::<u32>("zz", 7), Ok(7));
        assert_eq!(root.opt_sym::<BackupType>("zz"), Ok(None));
    }

    #[test]
    fn references_cdata_and_comments() {
        let root = parse(
            "<R><!-- c -->a&#x41;&#66;&lt;&amp;<![CDATA[<x>]]><?pi x?></R>",
            "R",
        )
        .unwrap();
        assert_eq!(root.text, "aAB<&<x>");
        for bad in [
            "<R>&nope;</R>",
            "<R>&#0;</R>",
            "<!DOCTYPE R><R/>",
            "<R/><R/>",
            "x<R/>",
        ] {
            assert_eq!(
                parse(bad, "R").unwrap_err().code,
                ErrorCode::InvalidXmlDocument,
                "{bad}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}{}",
            "<R>".repeat(MAX_DEPTH + 1),
            "</R>".repeat(MAX_DEPTH + 1)
        );
        assert!(
            parse(&deep, "R")
                .unwrap_err()
                .message
                .contains("nest deeper")
        );
        let ok = format!("{}{}", "<R>".repeat(MAX_DEPTH), "</R>".repeat(MAX_DEPTH));
        assert!(parse(&ok, "R").is_ok());
    }
}

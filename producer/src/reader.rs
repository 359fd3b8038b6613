//! Reads a sales CSV into raw records: finds the delimiter from the header, follows RFC 4180
//! quoting across lines, decodes UTF-8 or ISO-8859-1, and keeps each record's line number and
//! raw text for the rejects file.

use std::collections::VecDeque;
use std::io::{self, BufRead};

use csv_core::{ReadRecordResult, ReaderBuilder};
use encoding_rs::{Encoding, WINDOWS_1252};

/// Most physical lines one quoted field may span. A quote that opens a field and does not close
/// within this many lines (or closes into a record of the wrong width) is a stray quote: its line
/// is rejected alone and reading resumes on the next line, so one bad quote costs one row and
/// each line is scanned at most this many times (linear in the input).
pub const MAX_QUOTED_LINES: usize = 100;

/// The byte order mark some tools write before UTF-8 text.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why the input cannot be read as CSV at all (as opposed to one bad row).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input has no header line.
    #[error("the input is empty: expected a header line")]
    Empty,
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Io(#[from] io::Error),
}

/// One line (or, with quoted line breaks, several) of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A blank line or a row whose fields are all empty (`,,,,,,,`): skipped and counted.
    Blank { line: u64 },
    /// A record with its fields decoded.
    Record(RawRecord),
    /// A line that cannot be a record: it opens a quoted field that never closes into a record
    /// of the header's width. Rejected alone; the lines after it are read as usual.
    Malformed {
        line: u64,
        raw: String,
        reason: String,
    },
}

impl Line {
    /// The physical line it starts on (the header is line 1).
    pub fn line(&self) -> u64 {
        match self {
            Self::Blank { line } | Self::Malformed { line, .. } => *line,
            Self::Record(record) => record.line,
        }
    }
}

/// A record as read, before any validation.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The physical line the record starts on (the header is line 1).
    pub line: u64,
    /// Private: for a record without quotes, its fields' text is its raw text too.
    fields: Fields,
    /// The record's text, where its fields are not simply cut from it (quoted or re-decoded
    /// fields); `None` where the fields' text is the record's own.
    raw: Option<String>,
}

impl RawRecord {
    /// A record of `fields` read from `raw`.
    pub fn new(line: u64, raw: String, fields: Fields) -> Self {
        let raw = (raw != fields.text).then_some(raw);
        Self { line, fields, raw }
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The record's text without its line terminator, decoded as its fields are.
    pub fn raw(&self) -> &str {
        self.raw.as_deref().unwrap_or(&self.fields.text)
    }
}

impl PartialEq for RawRecord {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line && self.raw() == other.raw() && self.fields == other.fields
    }
}

impl Eq for RawRecord {}

/// A record's decoded fields: one text and where each field lies in it, so a record costs two
/// allocations however many fields it has (a `String` each was a fifth of the producer's time).
/// A record without quotes keeps its own line as the text, cut where its delimiters are: its
/// fields are never copied.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    text: String,
    /// Each field's start and end in `text`, in order.
    spans: Vec<(usize, usize)>,
}

impl Fields {
    /// Appends a field.
    pub fn push(&mut self, field: &str) {
        let start = self.text.len();
        self.text.push_str(field);
        self.spans.push((start, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The text of field `index`, if the record has it.
    pub fn get(&self, index: usize) -> Option<&str> {
        let &(start, end) = self.spans.get(index)?;
        // Every span starts and ends at a whole field's edge: char boundaries.
        Some(&self.text[start..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// The fields of `text` cut at each `delimiter` (an ASCII byte, so never inside a character),
    /// taken as they stand, with room for `width`. An empty text has none, as the CSV splitter
    /// reads it.
    fn between(text: String, delimiter: u8, width: usize) -> Self {
        if text.is_empty() {
            return Self::default();
        }
        let mut spans = Vec::with_capacity(width);
        let mut start = 0;
        for at in memchr::memchr_iter(delimiter, text.as_bytes()) {
            spans.push((start, at));
            start = at + 1;
        }
        spans.push((start, text.len()));
        Self { text, spans }
    }
}

/// Fields are equal when they hold the same texts, however each is stored.
impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl<'a> FromIterator<&'a str> for Fields {
    fn from_iter<I: IntoIterator<Item = &'a str>>(fields: I) -> Self {
        let mut all = Self::default();
        for field in fields {
            all.push(field);
        }
        all
    }
}

/// How the input's bytes become text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8 where a line's bytes are valid UTF-8, Windows-1252 otherwise: what Excel on Windows
    /// writes. It agrees with ISO-8859-1 on every printable character (a `£` is 0xA3 in both)
    /// and has `€`, `’` and the other typographic characters where ISO-8859-1 has controls.
    #[default]
    Detect,
    /// One encoding for the whole input (`--encoding`).
    Fixed(&'static Encoding),
}

impl TextEncoding {
    /// The encoding a label names (`utf-8`, `windows-1252`, `latin1`, `iso-8859-15`, ... as the
    /// WHATWG Encoding Standard labels them). Encodings that are not ASCII-compatible (UTF-16)
    /// cannot hold this CSV's delimiters and quotes as single bytes and are refused.
    pub fn from_label(label: &str) -> Result<Self, String> {
        let encoding = Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
            format!("unknown encoding {label:?}: try utf-8, windows-1252 or latin1")
        })?;
        if !encoding.is_ascii_compatible() {
            return Err(format!(
                "{} is not ASCII-compatible: convert the file to UTF-8 first",
                encoding.name()
            ));
        }
        Ok(Self::Fixed(encoding))
    }

    /// [`decode`](Self::decode) that keeps the buffer when it already holds UTF-8.
    pub fn decode_owned(self, bytes: Vec<u8>) -> String {
        match (self, String::from_utf8(bytes)) {
            (Self::Detect, Ok(text)) => text,
            (_, Ok(text)) => self.decode(text.as_bytes()),
            (_, Err(e)) => self.decode(e.as_bytes()),
        }
    }

    /// The text of `bytes`; bytes the encoding has no character for become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Self::Detect => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => WINDOWS_1252
                    .decode_without_bom_handling(bytes)
                    .0
                    .into_owned(),
            },
            Self::Fixed(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
        }
    }
}

/// Picks the delimiter from the header line: whichever of `,`, `;` and tab occurs most.
pub fn detect_delimiter(header: &[u8]) -> u8 {
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&d| header.iter().filter(|&&b| b == d).count())
        .unwrap_or(b',')
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

/// A streaming reader of CSV records.
#[derive(Debug)]
pub struct CsvReader<R> {
    input: R,
    delimiter: u8,
    header: Vec<String>,
    /// The physical line number of the next line to read.
    next_line: u64,
    splitter: csv_core::Reader,
    /// Lines read ahead while looking for a closing quote and given back: read again first.
    pending: VecDeque<Vec<u8>>,
    output: Vec<u8>,
    ends: Vec<usize>,
    encoding: TextEncoding,
}

impl<R: BufRead> CsvReader<R> {
    /// Reads the header line. `delimiter` overrides the detected one.
    pub fn new(input: R, delimiter: Option<u8>) -> Result<Self, ReadError> {
        Self::with_encoding(input, delimiter, TextEncoding::Detect)
    }

    /// [`CsvReader::new`] decoding text with `encoding`.
    pub fn with_encoding(
        mut input: R,
        delimiter: Option<u8>,
        encoding: TextEncoding,
    ) -> Result<Self, ReadError> {
        let mut header = Vec::new();
        if input.read_until(b'\n', &mut header)? == 0 {
            return Err(ReadError::Empty);
        }
        let header = trim_line_end(header.strip_prefix(UTF8_BOM).unwrap_or(&header));
        let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(header));
        let mut reader = Self {
            input,
            delimiter,
            header: Vec::new(),
            next_line: 2,
            splitter: ReaderBuilder::new().delimiter(delimiter).build(),
            pending: VecDeque::new(),
            output: vec![0; 1024],
            ends: vec![0; 32],
            encoding,
        };
        reader.header = reader
            .split(header)
            .iter()
            .map(|f| f.trim().to_owned())
            .collect();
        Ok(reader)
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Splits one complete record (no terminator) into decoded fields.
    fn split(&mut self, record: &[u8]) -> Fields {
        self.splitter.reset();
        let (mut out_len, mut ends_len) = (0, 0);
        let mut input = record;
        loop {
            let (result, nin, nout, nend) = self.splitter.read_record(
                input,
                &mut self.output[out_len..],
                &mut self.ends[ends_len..],
            );
            input = &input[nin..];
            out_len += nout;
            ends_len += nend;
            match result {
                ReadRecordResult::OutputFull => self.output.resize(self.output.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                // All input consumed: an empty read tells the splitter the record has ended.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        let (bytes, ends) = (&self.output[..out_len], &self.ends[..ends_len]);
        // Usually the whole record is UTF-8: then its fields are, and one check covers them all.
        if self.encoding == TextEncoding::Detect
            && let Ok(text) = std::str::from_utf8(bytes)
            && ends.iter().all(|&end| text.is_char_boundary(end))
        {
            let mut start = 0;
            let spans = ends
                .iter()
                .map(|&end| (std::mem::replace(&mut start, end), end))
                .collect();
            return Fields {
                text: text.to_owned(),
                spans,
            };
        }
        let mut start = 0;
        let mut fields = Fields::default();
        for &end in ends {
            fields.push(&self.encoding.decode(&bytes[start..end]));
            start = end;
        }
        fields
    }

    /// Scans one physical line on from `state` and returns the quoting state at its end
    /// (RFC 4180: a quote opens a quoted field only at the start of a field, and `""` inside one
    /// is an escaped quote).
    fn scan_quotes(&self, bytes: &[u8], mut state: QuoteState) -> QuoteState {
        // Most lines have no quote at all: then only their last byte matters.
        if !state.in_quotes
            && let Some(&last) = bytes.last()
            && memchr::memchr(b'"', bytes).is_none()
        {
            state.at_field_start = last == self.delimiter || last == b'\n';
            return state;
        }
        let mut iter = bytes.iter().peekable();
        while let Some(&b) = iter.next() {
            if state.in_quotes {
                if b == b'"' {
                    if iter.peek() == Some(&&b'"') {
                        iter.next();
                    } else {
                        state.in_quotes = false;
                        // RFC 4180: a closing quote ends its field.
                        let next = iter.peek().map(|&&n| n);
                        if next.is_some_and(|n| n != self.delimiter && n != b'\r' && n != b'\n') {
                            state.closed_badly = true;
                        }
                    }
                }
            } else if b == b'"' && state.at_field_start {
                state.in_quotes = true;
            }
            state.at_field_start = !state.in_quotes && (b == self.delimiter || b == b'\n');
        }
        state
    }

    /// The next physical line with its terminator (read ahead lines first), `None` at the end.
    fn physical_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        let mut line = Vec::new();
        if self.input.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line))
    }

    /// Calls `f` with field `index` and the line of each record of `width` fields, to the end of
    /// the input: a pass that reads one column (the date order's). It sees the fields
    /// [`next_line`] would give, and also those of rows that are only blanks (which a full read
    /// skips): `f` must ignore a blank field. A line without a quote (nearly all of them) is cut
    /// where it stands in one reused buffer, with no record built; any other line is read by
    /// [`next_line`].
    ///
    /// [`next_line`]: Self::next_line
    pub fn for_each_field(
        &mut self,
        index: usize,
        width: usize,
        mut f: impl FnMut(&str, u64),
    ) -> Result<(), ReadError> {
        let mut buffer = Vec::new();
        loop {
            if self.pending.is_empty() {
                buffer.clear();
                if self.input.read_until(b'\n', &mut buffer)? == 0 {
                    return Ok(());
                }
                if let Some(field) = self.plain_field(trim_line_end(&buffer), index, width) {
                    if let Some(field) = field {
                        f(field, self.next_line);
                    }
                    self.next_line += 1;
                    continue;
                }
                self.pending.push_front(std::mem::take(&mut buffer));
            }
            match self.next_line()? {
                Some(Line::Record(record)) if record.fields.len() == width => {
                    f(record.fields.get(index).unwrap_or_default(), record.line);
                }
                Some(_) => {}
                None => return Ok(()),
            }
        }
    }

    /// Field `index` of `record` (no terminator) if the record can be cut at its delimiters
    /// ([`Self::cut_at_delimiters`]): `Some(None)` if it is plain but not `width` fields wide,
    /// `None` if it is not (to be read as a record). Only the field need be UTF-8: a field that
    /// is reads the same whether the rest of its line is or not.
    #[allow(clippy::option_option)]
    fn plain_field<'b>(
        &self,
        record: &'b [u8],
        index: usize,
        width: usize,
    ) -> Option<Option<&'b str>> {
        if !self.cut_at_delimiters(record) {
            return None;
        }
        // An empty line has no fields, as the splitter reads it.
        let fields = match record.len() {
            0 => 0,
            _ => 1 + record.iter().filter(|&&b| b == self.delimiter).count(),
        };
        if fields != width {
            return Some(None);
        }
        let field = record.split(|&b| b == self.delimiter).nth(index);
        match field.map(std::str::from_utf8) {
            Some(Ok(field)) => Some(Some(field)),
            Some(Err(_)) => None,
            None => Some(Some("")),
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> Result<Option<Line>, ReadError> {
        let line = self.next_line;
        let Some(first) = self.physical_line()? else {
            return Ok(None);
        };
        self.next_line += 1;
        let mut state = self.scan_quotes(&first, QuoteState::default());
        if !state.in_quotes {
            return Ok(Some(self.record(line, first)));
        }
        // A quoted field runs on: take lines until it closes, then keep the record if it has the
        // header's width. Otherwise the quote was stray.
        let mut bytes = first;
        let mut continuation = Vec::new();
        while state.in_quotes && continuation.len() < MAX_QUOTED_LINES {
            let Some(next) = self.physical_line()? else {
                break;
            };
            state = self.scan_quotes(&next, state);
            bytes.extend_from_slice(&next);
            continuation.push(next);
        }
        if !state.in_quotes && !state.closed_badly {
            let fields = self.split(trim_line_end(&bytes));
            if fields.len() == self.header.len() {
                self.next_line += continuation.len() as u64;
                let raw = self.encoding.decode(trim_line_end(&bytes));
                return Ok(Some(Line::Record(RawRecord::new(line, raw, fields))));
            }
        }
        let first_len = bytes.len() - continuation.iter().map(Vec::len).sum::<usize>();
        let reason = if state.in_quotes {
            format!(
                "unterminated quote: a quoted field opens on this line and does not close within \
                 {MAX_QUOTED_LINES} lines; the line is rejected and reading resumes on the next"
            )
        } else {
            format!(
                "stray quote: a quoted field opening on this line closes {} lines later, not at \
                 the end of a field or not into a record of the header's width; the line is \
                 rejected and reading resumes on the next",
                continuation.len()
            )
        };
        for next in continuation.into_iter().rev() {
            self.pending.push_front(next);
        }
        Ok(Some(Line::Malformed {
            line,
            raw: self.encoding.decode(trim_line_end(&bytes[..first_len])),
            reason,
        }))
    }

    /// One complete physical record (with its terminator) as a line.
    fn record(&mut self, line: u64, mut bytes: Vec<u8>) -> Line {
        let record = trim_line_end(&bytes);
        if record.iter().all(u8::is_ascii_whitespace) {
            return Line::Blank { line };
        }
        bytes.truncate(record.len());
        let record = match self.plain_record(bytes) {
            // The line's own buffer becomes its raw text and its fields' text: nothing is copied.
            Ok(raw) => RawRecord {
                line,
                fields: Fields::between(raw, self.delimiter, self.header.len()),
                raw: None,
            },
            Err(bytes) => {
                let fields = self.split(&bytes);
                RawRecord::new(line, self.encoding.decode_owned(bytes), fields)
            }
        };
        if record.fields.iter().all(|f| f.trim().is_empty()) {
            Line::Blank { line }
        } else {
            Line::Record(record)
        }
    }

    /// Whether `record`'s fields are simply what lies between its delimiters, if it is UTF-8
    /// (read as such): no quote (nothing to unescape), no carriage return (which the CSV
    /// splitter would take for the end of the record) and no leading byte order mark (which it
    /// drops: files joined with `cat` carry one at the start of a line). Nearly every line of a
    /// sales export is one, and cutting it at the delimiters is several times faster than the
    /// splitter's byte-by-byte state machine.
    fn cut_at_delimiters(&self, record: &[u8]) -> bool {
        self.encoding == TextEncoding::Detect
            // An ASCII delimiter never falls inside a multi-byte character.
            && self.delimiter.is_ascii()
            && memchr::memchr2(b'"', b'\r', record).is_none()
            && !record.starts_with(UTF8_BOM)
    }

    /// The record as text when it can be cut at its delimiters ([`Self::cut_at_delimiters`]) and
    /// is UTF-8; the bytes back otherwise.
    fn plain_record(&self, bytes: Vec<u8>) -> Result<String, Vec<u8>> {
        if !self.cut_at_delimiters(&bytes) {
            return Err(bytes);
        }
        String::from_utf8(bytes).map_err(|e| e.into_bytes())
    }
}

/// The lines to the end of the input, as [`CsvReader::next_line`] reads them.
impl<R: BufRead> Iterator for CsvReader<R> {
    type Item = Result<Line, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}

/// Where a scan of quoted CSV stands at the end of a line.
#[derive(Debug, Clone, Copy)]
struct QuoteState {
    in_quotes: bool,
    at_field_start: bool,
    /// A quoted field closed somewhere other than at the end of its field (`"a"b`).
    closed_badly: bool,
}

impl Default for QuoteState {
    fn default() -> Self {
        Self {
            in_quotes: false,
            at_field_start: true,
            closed_badly: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8]) -> (Vec<String>, Vec<Line>) {
        let mut reader = CsvReader::new(text, None).expect("header");
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().expect("reads") {
            lines.push(line);
        }
        (reader.header().to_vec(), lines)
    }

    fn fields(line: &Line) -> Vec<&str> {
        match line {
            Line::Record(r) => r.fields.iter().collect(),
            Line::Blank { .. } | Line::Malformed { .. } => Vec::new(),
        }
    }

    fn rows(n: usize, delimiter: char, stray_on: usize) -> String {
        let mut text = format!("a{delimiter}b{delimiter}c\n");
        for i in 1..=n {
            let first = if i == stray_on {
                format!("\"{i}")
            } else {
                i.to_string()
            };
            text.push_str(&format!("{first}{delimiter}x{delimiter}y\n"));
        }
        text
    }

    #[test]
    fn a_stray_quote_costs_its_own_row_only() {
        for delimiter in [',', ';'] {
            let (_, lines) = read_all(rows(3_066, delimiter, 10).as_bytes());
            assert_eq!(lines.len(), 3_066, "every line is read");
            for (i, line) in lines.iter().enumerate() {
                assert_eq!(line.line(), i as u64 + 2, "line numbers follow");
                if i + 1 == 10 {
                    match line {
                        Line::Malformed { raw, reason, .. } => {
                            assert_eq!(raw, &format!("\"10{delimiter}x{delimiter}y"));
                            assert!(reason.contains("unterminated quote"), "{reason}");
                        }
                        other => panic!("expected a malformed line, got {other:?}"),
                    }
                } else {
                    assert_eq!(fields(line), [(i + 1).to_string().as_str(), "x", "y"]);
                }
            }
        }
    }

    #[test]
    fn a_stray_quote_that_closes_into_the_wrong_width_is_rejected_alone() {
        let (_, lines) = read_all(b"a,b\n\"1,x\n2,y\n3,\"z\"\n4,w\n");
        assert!(
            matches!(&lines[0], Line::Malformed { line: 2, reason, .. } if reason.contains("stray quote")),
            "{lines:?}"
        );
        assert_eq!(fields(&lines[1]), ["2", "y"]);
        assert_eq!(fields(&lines[2]), ["3", "z"]);
        assert_eq!(fields(&lines[3]), ["4", "w"]);
        assert_eq!(lines[3].line(), 5);
    }

    #[test]
    fn a_stray_quote_on_every_line_rejects_each_line_alone() {
        let mut text = String::from("a,b\n");
        for i in 0..20_000 {
            text.push_str(&format!("\"{i},x\n"));
        }
        let (_, lines) = read_all(text.as_bytes());
        assert_eq!(lines.len(), 20_000);
        assert!(lines.iter().all(|l| matches!(l, Line::Malformed { .. })));
    }

    #[test]
    fn reads_comma_files_with_crlf_and_quotes() {
        let (header, lines) = read_all(
            b"InvoiceNo,StockCode,Description\r\n536365,85123A,\"WHITE, HANGING \"\"HEART\"\"\"\r\n536366,22633,HAND WARMER\r\n",
        );
        assert_eq!(header, ["InvoiceNo", "StockCode", "Description"]);
        assert_eq!(
            fields(&lines[0]),
            ["536365", "85123A", "WHITE, HANGING \"HEART\""]
        );
        assert_eq!(fields(&lines[1]), ["536366", "22633", "HAND WARMER"]);
        match &lines[0] {
            Line::Record(r) => {
                assert_eq!(r.line, 2);
                assert_eq!(r.raw(), "536365,85123A,\"WHITE, HANGING \"\"HEART\"\"\"");
            }
            _ => panic!("expected a record"),
        }
    }

    #[test]
    fn detects_semicolons_and_tabs() {
        let (header, lines) = read_all(b"a;b;c\n1;2,5;3\n");
        assert_eq!(header, ["a", "b", "c"]);
        assert_eq!(fields(&lines[0]), ["1", "2,5", "3"]);
        let (_, lines) = read_all(b"a\tb\n1\t2\n");
        assert_eq!(fields(&lines[0]), ["1", "2"]);
    }

    #[test]
    fn decodes_latin1_and_utf8_and_strips_a_bom() {
        let (header, lines) = read_all(b"\xEF\xBB\xBFName,Price\nPOUND \xA3,1\nPOUND \xC2\xA3,2\n");
        assert_eq!(header, ["Name", "Price"]);
        assert_eq!(fields(&lines[0]), ["POUND £", "1"]);
        assert_eq!(fields(&lines[1]), ["POUND £", "2"]);
    }

    #[test]
    fn each_field_is_decoded_alone_even_when_the_record_is_utf8() {
        // Together the two fields' bytes are "é" in UTF-8; alone each is invalid UTF-8, so each is
        // Windows-1252, as it would be in a record of its own.
        let (_, lines) = read_all(b"A,B\n\xC3,\xA9\n");
        assert_eq!(fields(&lines[0]), ["\u{c3}", "\u{a9}"]);
    }

    #[test]
    fn windows_1252_is_the_fallback_and_an_encoding_can_be_named() {
        let bytes = b"Name,Price\n\x80 MUG \x91TEA\x92,1\n";
        let (_, lines) = read_all(bytes);
        assert_eq!(fields(&lines[0]), ["\u{20ac} MUG \u{2018}TEA\u{2019}", "1"]);
        let latin9 = TextEncoding::from_label("ISO-8859-15").expect("a label");
        let mut reader = CsvReader::with_encoding(&b"Name,Price\n\xA4 MUG,1\n"[..], None, latin9)
            .expect("header");
        let Some(Line::Record(record)) = reader.next_line().expect("line") else {
            panic!("a record");
        };
        assert_eq!(fields(&Line::Record(record)), ["\u{20ac} MUG", "1"]);
        assert!(TextEncoding::from_label("utf-16le").is_err());
        assert!(TextEncoding::from_label("klingon").is_err());
    }

    #[test]
    fn counts_blank_lines_and_all_empty_rows_with_their_line_numbers() {
        let (_, lines) = read_all(b"a,b\n1,2\n\n,\r\n  \n3,4");
        assert_eq!(
            lines,
            vec![
                Line::Record(RawRecord::new(
                    2,
                    "1,2".into(),
                    ["1", "2"].into_iter().collect()
                )),
                Line::Blank { line: 3 },
                Line::Blank { line: 4 },
                Line::Blank { line: 5 },
                Line::Record(RawRecord::new(
                    6,
                    "3,4".into(),
                    ["3", "4"].into_iter().collect()
                )),
            ]
        );
    }

    #[test]
    fn a_quoted_line_break_stays_in_its_field_and_line_numbers_follow() {
        let (_, lines) = read_all(b"a,b\n1,\"two\nlines\"\n3,4\n");
        assert_eq!(fields(&lines[0]), ["1", "two\nlines"]);
        match &lines[1] {
            Line::Record(r) => assert_eq!(r.line, 4),
            _ => panic!("expected a record"),
        }
    }

    #[test]
    fn a_stray_quote_inside_an_unquoted_field_is_a_character() {
        let (_, lines) = read_all(b"a,b\n12\" RECORD,1\n3,4\n");
        assert_eq!(fields(&lines[0]), ["12\" RECORD", "1"]);
        assert_eq!(fields(&lines[1]), ["3", "4"]);
    }

    #[test]
    fn an_empty_input_has_no_header() {
        assert!(matches!(
            CsvReader::new(&b""[..], None),
            Err(ReadError::Empty)
        ));
    }

    proptest::proptest! {
        /// Whichever way a record is read (cut at its delimiters, or through the CSV splitter
        /// when it has a quote, a carriage return or a byte order mark), it has exactly the
        /// fields the splitter reads from it, and its own text as raw text.
        #[test]
        fn a_record_has_the_fields_the_splitter_reads(
            record in "(\u{FEFF})?[a-zé£ 0-9.,;|\t/:\"\r\u{FEFF}-]{0,40}",
            delimiter in proptest::sample::select(vec![b',', b';', b'\t', b'|', b' ']),
        ) {
            // A record comes without its line's end.
            let record = record.trim_end_matches(['\r', '\n']).to_owned();
            let mut reader = CsvReader::new(&b"a,b\n"[..], Some(delimiter)).expect("header");
            let split = reader.split(record.as_bytes());
            match reader.record(7, record.clone().into_bytes()) {
                Line::Record(read) => {
                    proptest::prop_assert_eq!(&read.fields, &split);
                    proptest::prop_assert_eq!(read.raw(), record);
                }
                Line::Blank { .. } => {
                    proptest::prop_assert!(split.iter().all(|f| f.trim().is_empty()), "{:?}", split);
                }
                Line::Malformed { .. } => proptest::prop_assert!(false, "one line is a record"),
            }
        }

        /// The one-column pass sees each record's field as a full read does, on the same
        /// line, whatever the lines hold: quotes across lines, stray quotes, carriage returns,
        /// blank rows, rows of other widths, bytes that are not UTF-8 (read as Windows-1252).
        #[test]
        fn the_one_column_pass_sees_what_a_full_read_sees(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(b"ab1 ,,\"\"\r\xA3\xC3\xEF\xBB\xBF".to_vec()),
                    0..12,
                ),
                0..12,
            ),
            index in 0..3_usize,
            width in 1..4_usize,
        ) {
            let mut input = b"x,y,z\n".to_vec();
            for line in &lines {
                input.extend_from_slice(line);
                input.push(b'\n');
            }
            let (mut full, mut blank) = (Vec::new(), Vec::new());
            let (_, read) = read_all(&input);
            for line in read {
                match line {
                    Line::Record(record) if record.fields.len() == width => {
                        full.push((record.fields.get(index).unwrap_or_default().to_owned(), record.line));
                    }
                    Line::Blank { line } => blank.push(line),
                    _ => {}
                }
            }
            let mut pass = Vec::new();
            let mut reader = CsvReader::new(&input[..], None).expect("header");
            reader
                .for_each_field(index, width, |field, line| pass.push((field.to_owned(), line)))
                .expect("reads");
            // A blank row (every field empty or spaces) is no record to a full read; the pass
            // gives its blank field.
            pass.retain(|(field, line)| !(field.trim().is_empty() && blank.contains(line)));
            proptest::prop_assert_eq!(pass, full);
        }
    }
}

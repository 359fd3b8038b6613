//! The compact form: the events of one shard as columns in one zstd-compressed record.
//!
//! A shard takes 1 MiB/s. JSON events cost about 300 bytes each, about 55 in a zstd-compressed
//! KPL record; in this form they cost about a fifth of that. What makes them small:
//! - ids and `source` are not sent. Both derive from the input's identity and the event's line
//!   (`event_id(source_id, line)`, `name:line`), so a record carries each input once and a line
//!   number per event, as a difference from the previous event's (a byte);
//! - text that repeats (countries, products, invoices, customers) is sent once per record, then
//!   as an index into that record's dictionary of the column;
//! - numbers are varints, times differences from the previous event's time;
//! - the columns are compressed together, and columns compress far better than rows.
//!
//! ```text
//! FB 53 4C 01 | zstd frame of the body
//!
//! body:  varint n, then each column, every one with n entries:
//!   source                dictionary of (name, id) pairs
//!   line                  zigzag difference from the previous event's line (the first's from 0)
//!   seconds               zigzag difference from the previous event's, of event_time's seconds
//!                         since 1970-01-01T00:00:00 (local time, counted as if it were UTC)
//!   nanos                 event_time's fraction of a second (1e9 or more only in a leap second)
//!   invoice_no, stock_code, description: dictionaries
//!   quantity              zigzag
//!   unit_price            zigzag unscaled value, then its scale: 2.55 is (255, 2)
//!   customer_id, country: dictionaries
//!
//! dictionary:  varint k, k values, then n varint indices: 0 is null, i the i-th value
//! value:       varint length, UTF-8 bytes (a source is two: its name, then its id)
//! varint:      unsigned LEB128; zigzag maps a signed value to one (0, -1, 1, -2 → 0, 1, 2, 3)
//! ```
//!
//! `FB` never begins UTF-8 text, so a compact record cannot be mistaken for a JSON event, nor for
//! a KPL record (`F3`) or a zstd frame (`28`); the last magic byte is the format's version. Only
//! this project's consumer reads the form: choose it for streams that have no other reader.

use std::borrow::Cow;
use std::ops::Range;

use chrono::{DateTime, NaiveDateTime};
use hashbrown::HashMap;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::aggregation::{AggregationError, decompress};
use crate::{EventIds, SalesEventRef, event_id, event_source, write_event_source};

/// The first bytes of a compact record: `FB`, "SL", and the format's version.
pub const COMPACT_MAGIC: [u8; 4] = [0xFB, b'S', b'L', 1];
/// zstd level of compact records: its default. On generated data streamed to four shards, events
/// cost 10.3 bytes at level 1, 8.96 at 3, 8.74 at 6 and no fewer at 9, which takes the producer
/// 25% longer than level 3.
const ZSTD_LEVEL: i32 = 3;
/// Bytes an event adds to a block beyond its text: its varints, each at most 10 bytes (19 for
/// the price), and the lengths of new dictionary values.
const MAX_EVENT_OVERHEAD: usize = 10 * 16 + 19;

/// What a block of no events counts as: its magic, its event count and its six dictionaries'
/// value counts, each varint at most 10 or 5 bytes.
pub const EMPTY_BLOCK_BYTES: usize = COMPACT_MAGIC.len() + 10 + 6 * 5;

/// Where an event came from: what its `event_id` and `source` are derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The input's name, what `source` shows before `:line`.
    pub name: &'a str,
    /// The input's identity, what ids are derived from.
    pub id: &'a str,
    /// The event's line in the input.
    pub line: u64,
}

/// Why a compact block cannot be built or read.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The event's `source` or id is not the one its origin derives, so a reader would derive
    /// another: the form only carries events whose id and source follow the contract's rule.
    #[error("event {event_id} does not derive from {source_name}:{line} (source {source_field})")]
    NotDerived {
        event_id: Uuid,
        source_name: String,
        line: u64,
        source_field: String,
    },
    /// The body ends inside a column.
    #[error("compact record ends inside its {0} column")]
    Truncated(&'static str),
    /// A value in a column is not what the format allows.
    #[error("compact record's {column} column, event {event}: {reason}")]
    Invalid {
        column: &'static str,
        event: usize,
        reason: &'static str,
    },
    /// The record holds no events: nothing in it can be accepted, and a record that vanished
    /// without a trace would break the accounting.
    #[error("compact record holds no events")]
    Empty,
    /// Bytes follow the last column: the record was not written by this format's version.
    #[error("compact record has {0} bytes after its last column")]
    TrailingBytes(usize),
}

/// Builds one compact record from the events of one shard, tracking its size.
#[derive(Debug, Default)]
pub struct CompactBlock {
    events: usize,
    source: Dictionary,
    line: Vec<u8>,
    last_line: u64,
    seconds: Vec<u8>,
    last_second: i64,
    nanos: Vec<u8>,
    invoice_no: Dictionary,
    stock_code: Dictionary,
    description: Dictionary,
    quantity: Vec<u8>,
    price_units: Vec<u8>,
    price_scale: Vec<u8>,
    customer_id: Dictionary,
    country: Dictionary,
}

impl CompactBlock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    pub fn len(&self) -> usize {
        self.events
    }

    /// The uncompressed size of the block so far (magic, event count and columns).
    pub fn size(&self) -> usize {
        let dictionaries = [
            &self.source,
            &self.invoice_no,
            &self.stock_code,
            &self.description,
            &self.customer_id,
            &self.country,
        ];
        let columns = [
            &self.line,
            &self.seconds,
            &self.nanos,
            &self.quantity,
            &self.price_units,
            &self.price_scale,
        ];
        EMPTY_BLOCK_BYTES
            + dictionaries
                .iter()
                .map(|d| d.values.len() + d.indices.len())
                .sum::<usize>()
            + columns.iter().map(|c| c.len()).sum::<usize>()
    }

    /// The most `event` could add to [`size`](Self::size).
    pub fn max_added<'a>(event: impl Into<SalesEventRef<'a>>, origin: Origin<'_>) -> usize {
        let event = event.into();
        let text = [
            origin.name,
            origin.id,
            &event.invoice_no,
            &event.stock_code,
            event.description.as_deref().unwrap_or_default(),
            event.customer_id.as_deref().unwrap_or_default(),
            &event.country,
        ];
        text.iter().map(|t| t.len()).sum::<usize>() + MAX_EVENT_OVERHEAD
    }

    /// Adds an event. Its id and `source` must be those `origin` derives: the record carries
    /// the origin, and its reader derives them again.
    pub fn push<'a>(
        &mut self,
        event: impl Into<SalesEventRef<'a>>,
        origin: Origin<'_>,
    ) -> Result<(), CompactError> {
        let event = event.into();
        let derived_source = event
            .source
            .strip_suffix(itoa::Buffer::new().format(origin.line))
            .and_then(|name| name.strip_suffix(':'))
            == Some(origin.name);
        // Deriving the id again costs a SHA-1 per event; debug builds (every test) check it.
        debug_assert!(
            !derived_source || event.event_id == event_id(origin.id, origin.line),
            "event id of {}",
            event.source
        );
        if !derived_source {
            return Err(CompactError::NotDerived {
                event_id: event.event_id,
                source_name: origin.name.to_owned(),
                line: origin.line,
                source_field: event.source.to_string(),
            });
        }
        self.events += 1;
        self.source.push_source(origin.name, origin.id);
        put(
            &mut self.line,
            zigzag(origin.line as i128 - self.last_line as i128),
        );
        self.last_line = origin.line;
        let time = event.event_time.and_utc();
        put(
            &mut self.seconds,
            zigzag(i128::from(time.timestamp()) - i128::from(self.last_second)),
        );
        self.last_second = time.timestamp();
        put(&mut self.nanos, u128::from(time.timestamp_subsec_nanos()));
        self.invoice_no.push(Some(&event.invoice_no));
        self.stock_code.push(Some(&event.stock_code));
        self.description.push(event.description.as_deref());
        put(&mut self.quantity, zigzag(i128::from(event.quantity)));
        put(&mut self.price_units, zigzag(event.unit_price.mantissa()));
        put(&mut self.price_scale, u128::from(event.unit_price.scale()));
        self.customer_id.push(event.customer_id.as_deref());
        self.country.push(Some(&event.country));
        Ok(())
    }

    /// Encodes the record and empties the block.
    pub fn finish(&mut self, compressor: &mut Compressor) -> Vec<u8> {
        let block = std::mem::take(self);
        let mut body = Vec::with_capacity(block.size());
        put(&mut body, block.events as u128);
        block.source.write(&mut body);
        for column in [&block.line, &block.seconds, &block.nanos] {
            body.extend_from_slice(column);
        }
        block.invoice_no.write(&mut body);
        block.stock_code.write(&mut body);
        block.description.write(&mut body);
        for column in [&block.quantity, &block.price_units, &block.price_scale] {
            body.extend_from_slice(column);
        }
        block.customer_id.write(&mut body);
        block.country.write(&mut body);
        let frame = compressor.compress(&body);
        let mut out = Vec::with_capacity(COMPACT_MAGIC.len() + frame.len());
        out.extend_from_slice(&COMPACT_MAGIC);
        out.extend_from_slice(&frame);
        out
    }
}

/// A zstd context kept from one compact record to the next. Setting one up clears its tables,
/// which cost more than compressing a record did, so a producer keeps one for all its shards.
pub struct Compressor(zstd::bulk::Compressor<'static>);

impl Default for Compressor {
    fn default() -> Self {
        // Creating a context fails only when memory runs out; zstd's default context compresses
        // at level 3 too.
        Self(zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap_or_default())
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Compressor {
    pub fn new() -> Self {
        Self::default()
    }

    fn compress(&mut self, body: &[u8]) -> Vec<u8> {
        // zstd fails only when it cannot allocate its workspace: a fresh context may still
        // manage, and when it does not, memory has run out, which Rust answers by aborting.
        self.0
            .compress(body)
            .or_else(|_| zstd::bulk::compress(body, ZSTD_LEVEL))
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::for_value(body)))
    }
}

/// A text column being built: each distinct value once, then an index per event.
#[derive(Debug, Default)]
struct Dictionary {
    /// Value → its 1-based index (0 is null).
    index: HashMap<String, u32>,
    values: Vec<u8>,
    indices: Vec<u8>,
    /// The last key pushed and its index: the lines of an invoice come one after another, with
    /// the same invoice, customer, country and source, and comparing with the line before is
    /// cheaper than hashing (the lookups were a tenth of the compact producer's time).
    last: Option<(String, u32)>,
}

impl Dictionary {
    fn push(&mut self, value: Option<&str>) {
        let index = value.map_or(0, |value| self.index_of(value, |out| put_text(out, value)));
        put(&mut self.indices, u128::from(index));
    }

    /// A source's entry is its name and its identity, keyed by the identity.
    fn push_source(&mut self, name: &str, id: &str) {
        let index = self.index_of(id, |out| {
            put_text(out, name);
            put_text(out, id);
        });
        put(&mut self.indices, u128::from(index));
    }

    fn index_of(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) -> u32 {
        if let Some((last, index)) = &self.last
            && last == key
        {
            return *index;
        }
        let index = match self.index.get(key) {
            Some(&index) => index,
            None => {
                let index = self.index.len() as u32 + 1;
                write(&mut self.values);
                self.index.insert(key.to_owned(), index);
                index
            }
        };
        // The last key's buffer is reused: no allocation once it is as long as the keys.
        let (last, last_index) = self.last.get_or_insert_default();
        last.clear();
        last.push_str(key);
        *last_index = index;
        index
    }

    fn write(&self, out: &mut Vec<u8>) {
        put(out, self.index.len() as u128);
        out.extend_from_slice(&self.values);
        out.extend_from_slice(&self.indices);
    }
}

/// The events of a compact record, read and checked: every event in it is well formed (whether
/// it is a *valid* sales event is [`SalesEventRef::validate`]'s to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactEvents {
    /// The dictionaries' values, one after the other: their ranges point into it.
    text: String,
    /// Each source's name, and the ids of its lines.
    sources: Vec<(Range<usize>, EventIds)>,
    source: Vec<u32>,
    line: Vec<u64>,
    event_time: Vec<NaiveDateTime>,
    invoice_no: Column,
    stock_code: Column,
    description: Column,
    quantity: Vec<i64>,
    unit_price: Vec<Decimal>,
    customer_id: Column,
    country: Column,
}

/// A text column read back: its values as ranges of `text`, and an index per event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    values: Vec<Range<usize>>,
    indices: Vec<u32>,
}

impl CompactEvents {
    /// Reads a compact record (with its magic).
    pub fn decode(data: &[u8]) -> Result<Self, AggregationError> {
        let body = decompress(&data[COMPACT_MAGIC.len().min(data.len())..])?;
        Ok(Self::parse(&body)?)
    }

    /// How many events a compact record says it holds, from the first bytes of its body alone
    /// (a batch is sized before its records are read in full); `None` if it cannot say.
    pub fn count(data: &[u8]) -> Option<usize> {
        use std::io::Read;
        let frame = data.get(COMPACT_MAGIC.len()..)?;
        let mut head = Vec::new();
        // The count is the body's first varint: at most 19 bytes for a u128.
        zstd::stream::read::Decoder::new(frame)
            .ok()?
            .take(19)
            .read_to_end(&mut head)
            .ok()?;
        let n = Reader {
            body: &head,
            at: 0,
            text: String::new(),
        }
        .count("event count", usize::MAX)
        .ok()?;
        (n > 0).then_some(n)
    }

    fn parse(body: &[u8]) -> Result<Self, CompactError> {
        let mut reader = Reader {
            body,
            at: 0,
            text: String::new(),
        };
        let n = reader.count("event count", usize::MAX)?;
        if n == 0 {
            return Err(CompactError::Empty);
        }
        // Every event takes at least a byte in each of the 12 columns: a count beyond that is a
        // lie, and must not size the allocations below.
        if n > body.len() / 12 {
            return Err(CompactError::Truncated("event count"));
        }
        let sources = reader.values("source", 2)?;
        let sources: Vec<_> = sources
            .chunks_exact(2)
            .map(|pair| {
                (
                    pair[0].clone(),
                    EventIds::new(&reader.text[pair[1].clone()]),
                )
            })
            .collect();
        let source = reader.indices("source", n, sources.len(), false)?;
        let mut line = Vec::with_capacity(n);
        let mut last = 0_i128;
        for event in 0..n {
            last += reader.signed("line")?;
            line.push(u64::try_from(last).map_err(|_| invalid("line", event, "beyond u64"))?);
        }
        let mut seconds = Vec::with_capacity(n);
        let mut last = 0_i128;
        for event in 0..n {
            last += reader.signed("seconds")?;
            seconds.push(i64::try_from(last).map_err(|_| invalid("seconds", event, "beyond i64"))?);
        }
        let mut event_time = Vec::with_capacity(n);
        for (event, seconds) in seconds.into_iter().enumerate() {
            let nanos = reader.count("nanos", 1_999_999_999)? as u32;
            let time = DateTime::from_timestamp(seconds, nanos)
                .ok_or_else(|| invalid("seconds", event, "not a time"))?;
            event_time.push(time.naive_utc());
        }
        let invoice_no = reader.column("invoice_no", n, false)?;
        let stock_code = reader.column("stock_code", n, false)?;
        let description = reader.column("description", n, true)?;
        let mut quantity = Vec::with_capacity(n);
        for event in 0..n {
            let value = reader.signed("quantity")?;
            quantity
                .push(i64::try_from(value).map_err(|_| invalid("quantity", event, "beyond i64"))?);
        }
        let units: Vec<i128> = (0..n)
            .map(|_| reader.signed("unit_price"))
            .collect::<Result<_, _>>()?;
        let mut unit_price = Vec::with_capacity(n);
        for (event, units) in units.into_iter().enumerate() {
            let scale = reader.count("unit_price", 28)? as u32;
            unit_price.push(
                Decimal::try_from_i128_with_scale(units, scale)
                    .map_err(|_| invalid("unit_price", event, "not a decimal"))?,
            );
        }
        let customer_id = reader.column("customer_id", n, true)?;
        let country = reader.column("country", n, false)?;
        if reader.at != body.len() {
            return Err(CompactError::TrailingBytes(body.len() - reader.at));
        }
        Ok(Self {
            text: reader.text,
            sources,
            source,
            line,
            event_time,
            invoice_no,
            stock_code,
            description,
            quantity,
            unit_price,
            customer_id,
            country,
        })
    }

    pub fn len(&self) -> usize {
        self.line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// Event `i`, its id and `source` derived from its origin.
    ///
    /// # Panics
    /// If `i` is not below [`len`](Self::len).
    pub fn event(&self, i: usize) -> SalesEventRef<'_> {
        let (name, line) = self.origin(i);
        self.event_with_source(i, Cow::Owned(event_source(name, line)))
    }

    /// [`event`](Self::event) with its `source` written into `source` (reused from event to
    /// event, it saves an allocation each).
    ///
    /// # Panics
    /// If `i` is not below [`len`](Self::len).
    pub fn event_in<'s>(&'s self, i: usize, source: &'s mut String) -> SalesEventRef<'s> {
        let (name, line) = self.origin(i);
        write_event_source(source, name, line);
        self.event_with_source(i, Cow::Borrowed(source))
    }

    /// The name of event `i`'s source, and its line there.
    fn origin(&self, i: usize) -> (&str, u64) {
        let (name, _) = &self.sources[self.source[i] as usize - 1];
        (self.text(name), self.line[i])
    }

    fn event_with_source<'s>(&'s self, i: usize, source: Cow<'s, str>) -> SalesEventRef<'s> {
        let (_, ids) = &self.sources[self.source[i] as usize - 1];
        SalesEventRef {
            event_id: ids.id(self.line[i]),
            event_time: self.event_time[i],
            invoice_no: self.required(&self.invoice_no, i),
            stock_code: self.required(&self.stock_code, i),
            description: self.optional(&self.description, i),
            quantity: self.quantity[i],
            unit_price: self.unit_price[i],
            customer_id: self.optional(&self.customer_id, i),
            country: self.required(&self.country, i),
            source,
        }
    }

    fn text(&self, range: &Range<usize>) -> &str {
        &self.text[range.clone()]
    }

    fn optional(&self, column: &Column, i: usize) -> Option<Cow<'_, str>> {
        let index = column.indices[i] as usize;
        (index > 0).then(|| Cow::Borrowed(self.text(&column.values[index - 1])))
    }

    fn required(&self, column: &Column, i: usize) -> Cow<'_, str> {
        // Required columns were checked to hold no nulls when the record was read.
        self.optional(column, i).unwrap_or_default()
    }
}

fn invalid(column: &'static str, event: usize, reason: &'static str) -> CompactError {
    CompactError::Invalid {
        column,
        event,
        reason,
    }
}

/// Reads a body front to back; every read says which column ran out.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
    /// The dictionaries' values read so far, checked to be UTF-8 once.
    text: String,
}

impl Reader<'_> {
    fn varint(&mut self, column: &'static str) -> Result<u128, CompactError> {
        let mut value = 0_u128;
        for shift in (0..128).step_by(7) {
            let byte = *self
                .body
                .get(self.at)
                .ok_or(CompactError::Truncated(column))?;
            self.at += 1;
            value |= u128::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid(column, 0, "a varint longer than 128 bits"))
    }

    fn signed(&mut self, column: &'static str) -> Result<i128, CompactError> {
        let value = self.varint(column)?;
        Ok((value >> 1) as i128 ^ -((value & 1) as i128))
    }

    /// A count or small number, at most `max`.
    fn count(&mut self, column: &'static str, max: usize) -> Result<usize, CompactError> {
        usize::try_from(self.varint(column)?)
            .ok()
            .filter(|&value| value <= max)
            .ok_or_else(|| invalid(column, 0, "a number out of range"))
    }

    /// A dictionary's values, `parts` texts each.
    fn values(
        &mut self,
        column: &'static str,
        parts: usize,
    ) -> Result<Vec<Range<usize>>, CompactError> {
        // Each value takes at least its length's byte, so `k` is bounded by the body; still, a
        // damaged count must not reserve sixteen bytes for each of its bytes up front.
        let k = self.count(column, self.body.len() - self.at)?;
        let mut values = Vec::with_capacity((k * parts).min(1024));
        for value in 0..k * parts {
            let len = self.count(column, self.body.len())?;
            let bytes = self
                .body
                .get(self.at..self.at + len)
                .ok_or(CompactError::Truncated(column))?;
            let text = std::str::from_utf8(bytes)
                .map_err(|_| invalid(column, value / parts, "a value that is not UTF-8"))?;
            self.at += len;
            values.push(self.text.len()..self.text.len() + len);
            self.text.push_str(text);
        }
        Ok(values)
    }

    fn indices(
        &mut self,
        column: &'static str,
        n: usize,
        values: usize,
        nullable: bool,
    ) -> Result<Vec<u32>, CompactError> {
        (0..n)
            .map(|event| {
                let index = self.count(column, values)?;
                if index == 0 && !nullable {
                    return Err(invalid(column, event, "null in a column that has a value"));
                }
                Ok(index as u32)
            })
            .collect()
    }

    fn column(
        &mut self,
        column: &'static str,
        n: usize,
        nullable: bool,
    ) -> Result<Column, CompactError> {
        let values = self.values(column, 1)?;
        let indices = self.indices(column, n, values.len(), nullable)?;
        Ok(Column { values, indices })
    }
}

fn zigzag(value: i128) -> u128 {
    ((value << 1) ^ (value >> 127)) as u128
}

fn put(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put(out, text.len() as u128);
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SalesEvent;
    use crate::{Payload, unpack};
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn event(source: &Origin<'_>, invoice: &str, price: &str) -> SalesEvent {
        SalesEvent {
            event_id: event_id(source.id, source.line),
            event_time: NaiveDate::from_ymd_opt(2010, 12, 1)
                .and_then(|d| d.and_hms_opt(8, 26, 0))
                .expect("valid time"),
            invoice_no: invoice.into(),
            stock_code: "85123A".into(),
            description: Some("WHITE HANGING HEART T-LIGHT HOLDER".into()),
            quantity: 6,
            unit_price: Decimal::from_str(price).expect("valid"),
            customer_id: Some("17850".into()),
            country: "United Kingdom".into(),
            source: format!("{}:{}", source.name, source.line),
        }
    }

    fn origin(line: u64) -> Origin<'static> {
        Origin {
            name: "sales.csv",
            id: "sales.csv#0123",
            line,
        }
    }

    fn decoded(data: &[u8]) -> CompactEvents {
        match unpack(data).expect("unpacks") {
            Payload::Compact(events) => *events,
            other => panic!("not compact: {other:?}"),
        }
    }

    #[test]
    fn round_trips_and_derives_ids_and_sources() {
        let mut block = CompactBlock::new();
        let mut events = Vec::new();
        for (line, price) in [(2, "2.55"), (3, "2.550"), (9, "0"), (5, "0.001")] {
            let mut event = event(&origin(line), "536365", price);
            if line == 9 {
                event.description = None;
                event.customer_id = None;
                event.quantity = -MAX_QUANTITY_FOR_TESTS;
            }
            block.push(&event, origin(line)).expect("derived");
            events.push(event);
        }
        assert_eq!(block.len(), 4);
        let record = block.finish(&mut Compressor::new());
        assert!(block.is_empty(), "finish empties the block");
        assert!(record.starts_with(&COMPACT_MAGIC));
        let read = decoded(&record);
        assert_eq!(
            CompactEvents::count(&record),
            Some(4),
            "read from the header alone"
        );
        let back: Vec<SalesEvent> = (0..read.len())
            .map(|i| read.event(i).into_owned())
            .collect();
        assert_eq!(back, events);
        assert_eq!(back[1].unit_price.to_string(), "2.550", "the scale is kept");
        // The same events with `source` written into a reused buffer.
        let mut source = String::from("left over from before");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(read.event_in(i, &mut source).into_owned(), *event);
        }
    }

    const MAX_QUANTITY_FOR_TESTS: i64 = crate::MAX_QUANTITY;

    #[test]
    fn refuses_an_event_its_origin_does_not_derive() {
        let mut block = CompactBlock::new();
        let event = event(&origin(2), "536365", "1");
        assert!(matches!(
            block.push(&event, origin(3)),
            Err(CompactError::NotDerived { line: 3, .. })
        ));
        assert!(block.is_empty());
    }

    #[test]
    fn keeps_a_leap_second() {
        let mut block = CompactBlock::new();
        let mut leap = event(&origin(2), "1", "1");
        leap.event_time = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("leap second");
        block.push(&leap, origin(2)).expect("derived");
        assert_eq!(
            decoded(&block.finish(&mut Compressor::new()))
                .event(0)
                .event_time,
            leap.event_time
        );
    }

    #[test]
    fn is_several_times_smaller_than_compressed_json() {
        let mut block = CompactBlock::new();
        let mut json = crate::Aggregator::new();
        for line in 2..2_002 {
            let mut event = event(&origin(line), &format!("{}", 536_365 + line / 20), "2.55");
            event.quantity = (line % 12) as i64 + 1;
            event.stock_code = format!("{}", 20_000 + line % 300);
            block.push(&event, origin(line)).expect("derived");
            json.push(event.event_id.to_string(), crate::codec::encode(&event));
        }
        let compact = block.finish(&mut Compressor::new()).len();
        let zstd = json.finish(crate::Compression::Zstd).len();
        assert!(
            compact * 3 < zstd,
            "compact {compact} B, zstd JSON {zstd} B"
        );
    }

    #[test]
    fn size_bounds_the_uncompressed_body() {
        let mut block = CompactBlock::new();
        for line in 2..500 {
            let event = event(&origin(line), &line.to_string(), "3.25");
            let before = block.size();
            block.push(&event, origin(line)).expect("derived");
            assert!(block.size() - before <= CompactBlock::max_added(&event, origin(line)));
        }
        let size = block.size();
        let body = zstd::decode_all(&block.finish(&mut Compressor::new())[4..]).expect("zstd");
        assert!(
            body.len() + COMPACT_MAGIC.len() <= size,
            "{} > {size}",
            body.len()
        );
    }

    #[test]
    fn refuses_damaged_records_with_a_reason() {
        let mut block = CompactBlock::new();
        for line in 2..50 {
            block
                .push(&event(&origin(line), "1", "1.5"), origin(line))
                .expect("derived");
        }
        let record = block.finish(&mut Compressor::new());
        let body = zstd::decode_all(&record[4..]).expect("zstd");
        let recompressed = |body: &[u8]| {
            let mut out = COMPACT_MAGIC.to_vec();
            out.extend(zstd::encode_all(body, 3).expect("zstd"));
            out
        };
        let reason = |data: &[u8]| match unpack(data) {
            Err(e) => e.to_string(),
            Ok(payload) => panic!("accepted: {payload:?}"),
        };
        // Cut anywhere, the body ends inside a column.
        for cut in [1, 10, body.len() / 2, body.len() - 1] {
            assert!(reason(&recompressed(&body[..cut])).contains("ends inside"));
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(reason(&recompressed(&longer)).contains("1 bytes after"));
        assert!(reason(&recompressed(&[0])).contains("no events"));
        // A count of a billion events in a few bytes.
        assert!(reason(&recompressed(&[0x80, 0x94, 0xEB, 0xDC, 0x03, 0])).contains("ends inside"));
        assert!(reason(&record[..record.len() - 3]).contains("decompress"));
        assert!(reason(&COMPACT_MAGIC).contains("decompress"));
    }

    #[test]
    fn cannot_be_mistaken_for_json_kpl_or_zstd() {
        assert!(
            COMPACT_MAGIC[0] >= 0xF5,
            "a byte that never begins UTF-8 text"
        );
        assert_ne!(COMPACT_MAGIC, crate::aggregation::KPL_MAGIC);
        assert_ne!(COMPACT_MAGIC, crate::aggregation::ZSTD_MAGIC);
    }

    fn text() -> impl Strategy<Value = String> {
        // The last: a few values, repeated from one row to the next and further apart.
        prop_oneof!["[A-Z0-9 ]{1,12}", "\\PC{1,8}", "[ab]{1,2}"]
    }

    proptest! {
        #[test]
        fn any_events_round_trip(
            rows in prop::collection::vec(
                (
                    0_u64..u64::MAX,
                    -62_000_000_000_i64..200_000_000_000,
                    0_u32..1_000_000_000,
                    (text(), text(), prop::option::of(text())),
                    any::<i64>(),
                    (any::<i64>(), 0_u32..=28),
                    (prop::option::of(text()), text()),
                ),
                1..40,
            )
        ) {
            let mut block = CompactBlock::new();
            let mut events = Vec::new();
            for (line, seconds, nanos, (invoice, stock, description), quantity, (units, scale), (customer, country)) in rows {
                let origin = Origin { name: "a:b.csv", id: "é#1", line };
                let event = SalesEvent {
                    event_id: event_id(origin.id, line),
                    event_time: DateTime::from_timestamp(seconds, nanos).expect("in range").naive_utc(),
                    invoice_no: invoice,
                    stock_code: stock,
                    description,
                    quantity,
                    unit_price: Decimal::from_i128_with_scale(i128::from(units), scale),
                    customer_id: customer,
                    country,
                    source: format!("a:b.csv:{line}"),
                };
                block.push(&event, origin).expect("derived");
                events.push(event);
            }
            let read = decoded(&block.finish(&mut Compressor::new()));
            let back: Vec<SalesEvent> = (0..read.len()).map(|i| read.event(i).into_owned()).collect();
            prop_assert_eq!(back, events);
        }

        #[test]
        fn any_bytes_are_refused_or_read_never_a_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut data = COMPACT_MAGIC.to_vec();
            data.extend(zstd::encode_all(body.as_slice(), 1).expect("zstd"));
            if let Ok(Payload::Compact(events)) = unpack(&data) {
                for i in 0..events.len() {
                    let _ = events.event(i);
                }
            }
        }
    }
}

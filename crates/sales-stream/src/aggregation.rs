//! Many events in one Kinesis record: the KPL aggregated-record format, optionally compressed.
//!
//! A shard takes at most 1,000 records/s *and* 1 MiB/s. One ~300-byte event per record stops at
//! the first limit long before the second, so the producer packs events into aggregated records.
//!
//! The format is the Kinesis Producer Library's (`aggregation-format.md` in
//! awslabs/amazon-kinesis-producer):
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf bytes)
//! ```
//!
//! Every KCL and every deaggregation library reads it. A record may also be one zstd frame whose
//! content is an aggregated record ([`Compression::Zstd`]): JSON events compress about fivefold,
//! which is what lets a shard carry several thousand events a second. A record may also be in this
//! project's compact form ([`crate::compact`]): columns instead of JSON, several times smaller
//! again. The consumer accepts all four forms (plain JSON, aggregated, compressed aggregated,
//! compact), whoever produced them.

use std::cell::RefCell;

use md5::{Digest, Md5};
use prost::Message;
use prost::encoding::encoded_len_varint;

use crate::compact::{COMPACT_MAGIC, CompactError, CompactEvents};

/// The first bytes of a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The first bytes of a zstd frame (RFC 8878).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Length of the MD5 trailer.
const DIGEST_LEN: usize = 16;
/// Largest aggregated record a compressed record may expand to. Kinesis records are at most
/// 1 MiB; anything that inflates far beyond is refused rather than allowed to exhaust memory.
pub const MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;
/// zstd level of compressed aggregated records: level 3 (zstd's default) costs little CPU.
const ZSTD_LEVEL: i32 = 3;

/// `AggregatedRecord`, field for field as the KPL's `messages.proto` declares it.
#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// How aggregated records are stored in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain KPL records: readable by any KCL application.
    None,
    /// A zstd frame around the KPL record: about five times fewer bytes per event.
    #[default]
    Zstd,
}

/// Why a stream record's payload could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum AggregationError {
    /// The record starts with the KPL magic but is too short to hold a body and its digest.
    #[error("aggregated record of {0} bytes is too short")]
    Truncated(usize),
    /// The MD5 trailer does not match the body: the record was corrupted or cut.
    #[error("aggregated record digest mismatch")]
    DigestMismatch,
    /// The body is not a valid `AggregatedRecord` protobuf.
    #[error("aggregated record body is not valid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A user record points outside the partition key table.
    #[error("user record {record} refers to partition key {index} of {table_len}")]
    PartitionKeyIndex {
        record: usize,
        index: u64,
        table_len: usize,
    },
    /// The zstd frame is corrupt, or expands beyond [`MAX_DECOMPRESSED_BYTES`].
    #[error("compressed record does not decompress: {0}")]
    Decompress(std::io::Error),
    /// A valid aggregated record that carries no user records: nothing in it can be accepted,
    /// and a record that vanished without a trace would break the accounting.
    #[error("aggregated record holds no user records")]
    Empty,
    /// A compressed record holds something other than an aggregated record.
    #[error("compressed record does not hold an aggregated record")]
    NotAggregated,
    /// A compact record's columns are damaged.
    #[error(transparent)]
    Compact(#[from] CompactError),
}

/// One event's bytes inside a stream record, with the partition key it was put with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The events a stream record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A plain record: its data is one event.
    Single(&'a [u8]),
    /// An aggregated record: one entry per user record, in order.
    Aggregated(Vec<UserRecord>),
    /// A compact record: the events of one shard as columns (boxed: a dozen of them).
    Compact(Box<CompactEvents>),
}

impl Payload<'_> {
    /// How many events it carries.
    pub fn len(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Aggregated(users) => users.len(),
            Self::Compact(events) => events.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Unpacks a stream record's data into the events it carries.
pub fn unpack(data: &[u8]) -> Result<Payload<'_>, AggregationError> {
    if data.starts_with(&COMPACT_MAGIC) {
        return Ok(Payload::Compact(Box::new(CompactEvents::decode(data)?)));
    }
    if data.starts_with(&ZSTD_MAGIC) {
        let inflated = decompress(data)?;
        if !inflated.starts_with(&KPL_MAGIC) {
            return Err(AggregationError::NotAggregated);
        }
        return Ok(Payload::Aggregated(deaggregate(&inflated)?));
    }
    if data.starts_with(&KPL_MAGIC) {
        return Ok(Payload::Aggregated(deaggregate(data)?));
    }
    Ok(Payload::Single(data))
}

/// How many events a stream record carries: one for a plain record, and for one that cannot be
/// unpacked (it is quarantined as one).
pub fn events_in(data: &[u8]) -> usize {
    if data.starts_with(&COMPACT_MAGIC) {
        // Thousands of events: counted from the header, not decoded twice.
        return CompactEvents::count(data).unwrap_or(1);
    }
    unpack(data).map_or(1, |payload| payload.len())
}

/// Inflates a zstd frame, refusing one that expands beyond [`MAX_DECOMPRESSED_BYTES`].
///
/// A frame that states its size (the producer's do) is inflated in one call, into a buffer of
/// that size, by this thread's decompression context: making a context probes the CPU's
/// features, a few instructions that each leave a virtual machine (measured: about 30 µs a
/// record, 1% of the consumer on compact records). Any other frame, or one that is not what its
/// header says, is read as a stream, which decides.
pub(crate) fn decompress(data: &[u8]) -> Result<Vec<u8>, AggregationError> {
    thread_local! {
        static CONTEXT: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    let stated = zstd::zstd_safe::get_frame_content_size(data).ok().flatten();
    match stated {
        Some(size) if size > MAX_DECOMPRESSED_BYTES as u64 => Err(too_large()),
        Some(size) => CONTEXT
            .with_borrow_mut(|context| {
                let context = match context {
                    Some(context) => context,
                    None => context.insert(zstd::bulk::Decompressor::new()?),
                };
                context.decompress(data, size as usize)
            })
            .or_else(|_| decompress_stream(data)),
        None => decompress_stream(data),
    }
}

fn decompress_stream(data: &[u8]) -> Result<Vec<u8>, AggregationError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(data).map_err(AggregationError::Decompress)?;
    let mut inflated = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    decoder
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(AggregationError::Decompress)?;
    if inflated.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_large());
    }
    Ok(inflated)
}

fn too_large() -> AggregationError {
    AggregationError::Decompress(std::io::Error::other(format!(
        "expands beyond {MAX_DECOMPRESSED_BYTES} bytes"
    )))
}

/// Splits an uncompressed KPL aggregated record into its user records.
fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord>, AggregationError> {
    if data.len() < KPL_MAGIC.len() + DIGEST_LEN {
        return Err(AggregationError::Truncated(data.len()));
    }
    let (body, digest) =
        data[KPL_MAGIC.len()..].split_at(data.len() - KPL_MAGIC.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return Err(AggregationError::DigestMismatch);
    }
    let mut aggregated = AggregatedRecord::decode(body)?;
    if aggregated.records.is_empty() {
        return Err(AggregationError::Empty);
    }
    let keys = std::mem::take(&mut aggregated.partition_key_table);
    aggregated
        .records
        .into_iter()
        .enumerate()
        .map(|(record, user)| {
            let key = usize::try_from(user.partition_key_index)
                .ok()
                .and_then(|index| keys.get(index))
                .ok_or(AggregationError::PartitionKeyIndex {
                    record,
                    index: user.partition_key_index,
                    table_len: keys.len(),
                })?;
            Ok(UserRecord {
                partition_key: key.clone(),
                data: user.data,
            })
        })
        .collect()
}

/// Packs user records into one KPL aggregated record, tracking its exact encoded size so the
/// caller can stop before a limit.
#[derive(Debug, Default)]
pub struct Aggregator {
    record: AggregatedRecord,
    /// Encoded length of `record`'s protobuf body so far.
    body_len: usize,
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.record.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.record.records.len()
    }

    /// The first user record's partition key: the aggregated record is put under it, so it
    /// lands on that record's shard (the caller aggregates only records of one shard).
    pub fn partition_key(&self) -> Option<&str> {
        self.record.partition_key_table.first().map(String::as_str)
    }

    /// Size of the uncompressed aggregated record now (magic, body and digest).
    pub fn size(&self) -> usize {
        KPL_MAGIC.len() + self.body_len + DIGEST_LEN
    }

    /// Size of the uncompressed aggregated record once this user record is added.
    pub fn size_with(&self, partition_key: &str, data_len: usize) -> usize {
        self.size()
            + Self::added_len(
                partition_key.len(),
                self.record.partition_key_table.len(),
                data_len,
            )
    }

    /// Bytes one user record adds to the body: its partition key table entry and its `Record`.
    fn added_len(key_len: usize, key_index: usize, data_len: usize) -> usize {
        let key_entry = 1 + encoded_len_varint(key_len as u64) + key_len;
        let record_len = 1
            + encoded_len_varint(key_index as u64)
            + 1
            + encoded_len_varint(data_len as u64)
            + data_len;
        key_entry + 1 + encoded_len_varint(record_len as u64) + record_len
    }

    pub fn push(&mut self, partition_key: String, data: Vec<u8>) {
        let index = self.record.partition_key_table.len();
        self.body_len += Self::added_len(partition_key.len(), index, data.len());
        self.record.partition_key_table.push(partition_key);
        self.record.records.push(Record {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data,
            tags: Vec::new(),
        });
    }

    /// Encodes the aggregated record and empties the aggregator.
    pub fn finish(&mut self, compression: Compression) -> Vec<u8> {
        let record = std::mem::take(&mut self.record);
        self.body_len = 0;
        let body = record.encode_to_vec();
        let mut out = Vec::with_capacity(KPL_MAGIC.len() + body.len() + DIGEST_LEN);
        out.extend_from_slice(&KPL_MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        match compression {
            Compression::None => out,
            // Compressing an in-memory buffer fails only on allocation failure, which aborts.
            Compression::Zstd => zstd::bulk::compress(&out, ZSTD_LEVEL).unwrap_or(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(i: usize) -> (String, Vec<u8>) {
        (format!("key-{i}"), format!("{{\"n\":{i}}}").into_bytes())
    }

    #[test]
    fn an_aggregated_record_with_no_user_records_is_refused() {
        let empty = Aggregator::new().finish(Compression::None);
        assert!(matches!(unpack(&empty), Err(AggregationError::Empty)));
        let compressed = Aggregator::new().finish(Compression::Zstd);
        assert!(matches!(unpack(&compressed), Err(AggregationError::Empty)));
    }

    #[test]
    fn round_trips_and_predicts_its_size_exactly() {
        for compression in [Compression::None, Compression::Zstd] {
            let mut aggregator = Aggregator::new();
            for i in 0..300 {
                let (key, data) = user(i);
                let predicted = aggregator.size_with(&key, data.len());
                aggregator.push(key, data);
                assert_eq!(aggregator.size(), predicted);
            }
            let size = aggregator.size();
            let bytes = aggregator.finish(compression);
            if compression == Compression::None {
                assert_eq!(bytes.len(), size);
            } else {
                assert!(bytes.starts_with(&ZSTD_MAGIC));
                assert!(bytes.len() < size / 2, "{} vs {size}", bytes.len());
            }
            let Payload::Aggregated(records) = unpack(&bytes).expect("unpacks") else {
                panic!("not aggregated");
            };
            assert_eq!(records.len(), 300);
            for (i, record) in records.iter().enumerate() {
                let (key, data) = user(i);
                assert_eq!((&record.partition_key, &record.data), (&key, &data));
            }
            assert!(aggregator.is_empty());
        }
    }

    /// A record assembled byte by byte from the published format description, not by our
    /// encoder: two user records sharing one partition key, one with an explicit hash key and a
    /// tag, as the KPL writes them.
    #[test]
    fn decodes_a_record_built_from_the_format_description() {
        fn field(tag: u8, wire: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![(tag << 3) | wire, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }
        let mut tag = field(1, 2, b"source");
        tag.extend(field(2, 2, b"test"));
        let mut first = vec![0x08, 0x00, 0x10, 0x00]; // partition_key_index 0, ehk index 0
        first.extend(field(3, 2, b"{\"a\":1}"));
        first.extend(field(4, 2, &tag));
        let mut second = vec![0x08, 0x00];
        second.extend(field(3, 2, b"{\"b\":2}"));
        let mut body = field(1, 2, b"pk-shared");
        body.extend(field(2, 2, b"170141183460469231731687303715884105728"));
        body.extend(field(3, 2, &first));
        body.extend(field(3, 2, &second));
        let mut record = KPL_MAGIC.to_vec();
        record.extend_from_slice(&body);
        record.extend_from_slice(&Md5::digest(&body));

        let Payload::Aggregated(records) = unpack(&record).expect("unpacks") else {
            panic!("not aggregated");
        };
        assert_eq!(
            records,
            vec![
                UserRecord {
                    partition_key: "pk-shared".into(),
                    data: b"{\"a\":1}".to_vec()
                },
                UserRecord {
                    partition_key: "pk-shared".into(),
                    data: b"{\"b\":2}".to_vec()
                },
            ]
        );
    }

    #[test]
    fn plain_records_pass_through() {
        assert_eq!(unpack(b"{}").expect("plain"), Payload::Single(b"{}"));
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let mut aggregator = Aggregator::new();
        let (key, data) = user(1);
        aggregator.push(key, data);
        let good = aggregator.finish(Compression::None);

        let mut flipped = good.clone();
        flipped[6] ^= 0xFF;
        assert!(matches!(
            unpack(&flipped),
            Err(AggregationError::DigestMismatch)
        ));
        assert!(matches!(
            unpack(&good[..10]),
            Err(AggregationError::Truncated(10))
        ));

        let mut bad_index = KPL_MAGIC.to_vec();
        let body = [0x1A, 0x04, 0x08, 0x05, 0x1A, 0x00]; // record with key index 5, no table
        bad_index.extend_from_slice(&body);
        bad_index.extend_from_slice(&Md5::digest(body));
        assert!(matches!(
            unpack(&bad_index),
            Err(AggregationError::PartitionKeyIndex { index: 5, .. })
        ));

        let mut frame = ZSTD_MAGIC.to_vec();
        frame.extend_from_slice(b"garbage");
        assert!(matches!(
            unpack(&frame),
            Err(AggregationError::Decompress(_))
        ));
        let not_kpl = zstd::bulk::compress(b"{\"json\":true}", 3).expect("compresses");
        assert!(matches!(
            unpack(&not_kpl),
            Err(AggregationError::NotAggregated)
        ));
    }

    #[test]
    fn frames_that_misstate_their_size_are_read_as_streams() {
        let mut aggregator = Aggregator::new();
        for i in 0..2 {
            let (key, data) = user(i);
            aggregator.push(key, data);
        }
        let record = aggregator.finish(Compression::None);
        // Two frames one after the other: the first states only its own size.
        let (first, second) = record.split_at(record.len() / 2);
        let mut frames = zstd::bulk::compress(first, 3).expect("compresses");
        frames.extend(zstd::bulk::compress(second, 3).expect("compresses"));
        // A streamed frame, which states no size.
        let mut streamed = Vec::new();
        {
            use std::io::Write;
            let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 3).expect("encoder");
            encoder.include_contentsize(false).expect("no size");
            encoder.write_all(&record).expect("writes");
            encoder.finish().expect("finishes");
        }
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&streamed),
            Ok(None)
        ));
        for data in [frames, streamed] {
            let Ok(Payload::Aggregated(users)) = unpack(&data) else {
                panic!("not unpacked");
            };
            assert_eq!(users.len(), 2);
        }
    }

    #[test]
    fn refuses_decompression_bombs() {
        let mut bomb = KPL_MAGIC.to_vec();
        bomb.resize(MAX_DECOMPRESSED_BYTES + 100, 0);
        let compressed = zstd::bulk::compress(&bomb, 3).expect("compresses");
        assert!(compressed.len() < 1024 * 1024);
        assert!(matches!(
            unpack(&compressed),
            Err(AggregationError::Decompress(_))
        ));
    }
}

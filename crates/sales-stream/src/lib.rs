//! What the producer and the consumer must agree on.
//!
//! - [`SalesEvent`]: one sales line as it travels on the stream, and the rules that make it valid.
//! - [`codec`]: the bytes of one event (a JSON object).
//! - [`aggregation`]: many events in one record (the KPL aggregated-record format, optionally
//!   zstd-compressed), and unpacking any record into its events.
//! - [`compact`]: many events in one record as compressed columns, for the most events a shard
//!   can carry.
//! - [`SequenceNumber`] and [`HashKeyRange`]: Kinesis' ordering and shard assignment, reproduced
//!   exactly so that the embedded stream behaves like the real one.
//! - [`PutEntry`], [`StreamRecord`] and [`StartingPosition`]: a stream's records as Kinesis
//!   defines them, and its limits. The embedded `file://` stream that stores them on a local disk
//!   is its own crate, `local-stream`.
//! - [`StreamLocation`] and [`LakeLocation`]: the URLs users type.

pub mod aggregation;
pub mod codec;
pub mod compact;
mod event;
mod location;
mod record;
mod sequence;
mod shard;
pub mod time;

pub use aggregation::{
    AggregationError, Aggregator, Compression, Payload, UserRecord, events_in, unpack,
};
pub use codec::DecodeError;
pub use compact::{CompactBlock, CompactError, CompactEvents, Compressor, Origin};
pub use event::{
    EVENT_ID_NAMESPACE, EventError, EventIds, MAX_PRICE_SCALE, MAX_QUANTITY, SalesEvent,
    SalesEventRef, event_id, event_source, write_event_source,
};
pub use location::{LakeLocation, LocationError, StreamLocation};
pub use record::{
    MAX_PARTITION_KEY_LEN, MAX_RECORD_BYTES, PutEntry, PutResult, StartingPosition, StreamRecord,
};
pub use sequence::SequenceNumber;
pub use shard::{HashKeyRange, ShardId, hash_key};

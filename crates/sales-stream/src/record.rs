//! A stream's records as Kinesis defines them: what a producer puts, where it lands, what a
//! consumer reads, and the limits on each. The embedded stream (the `local-stream` crate) and the
//! Kinesis adapters speak these types.

use chrono::{DateTime, Utc};

use crate::{SequenceNumber, ShardId};

/// Kinesis limits a partition key to 256 characters; the embedded stream keeps the same limit.
pub const MAX_PARTITION_KEY_LEN: usize = 256;
/// Kinesis limits a record's data plus partition key to 1 MiB; the embedded stream does too.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub shard_id: ShardId,
    pub sequence_number: SequenceNumber,
}

/// A record read back from a shard, as Kinesis hands it to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence_number: SequenceNumber,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub approximate_arrival: DateTime<Utc>,
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record.
    TrimHorizon,
    /// The record just after this one.
    AfterSequenceNumber(SequenceNumber),
}

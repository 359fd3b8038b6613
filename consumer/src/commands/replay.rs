//! `consumer replay`: reads a range of the stream into the lake again, without moving any
//! committed position back.
//!
//! For records the event source mapping gave up on (after its retries, or past its maximum
//! record age) and which sit behind the shard's committed position, and for any range a user
//! doubts. Only records at or before each shard's committed position are replayed: what comes
//! after is the live consumer's.
//!
//! A replay commits into each shard's own state through the same protocol as the live consumer
//! ([`Checkpoint::replay`]), without moving its position: events the shard's id index (or its
//! ancestors') already holds are duplicates, so replaying a range twice, or the whole stream, or
//! beside the live consumer, changes no total. Killed midway, its batch in flight is removed by
//! the next writer of the shard, as any other.

use chrono::{DateTime, Utc};
use sales_stream::{SequenceNumber, StartingPosition, StreamRecord};
use serde::{Deserialize, Serialize};

use crate::commit::index::IdCache;
use crate::commit::{Checkpoint, CommitError};
use crate::core::batch::{BatchCounts, BatchOptions};
use crate::lake::Lake;
use crate::progress::Progress;
use crate::stream::{ShardSource, StreamError, ancestors};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A batch could not be committed (or a shard's state belongs to another stream).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The range names a shard the stream does not have.
    #[error("the stream has no shard {0}")]
    NoSuchShard(String),
    /// A failures-queue message is not one this command reads.
    #[error("not a Kinesis on-failure record: {0}")]
    FailureMessage(String),
}

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    /// Every shard, from its first record that arrived at or after this time.
    Timestamp(DateTime<Utc>),
    /// One shard, from this record on.
    Sequence {
        shard_id: String,
        sequence: SequenceNumber,
    },
}

/// The range to replay; it ends at each shard's committed position at the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRange {
    pub start: ReplayStart,
    /// Records that arrived after this time are left.
    pub to_timestamp: Option<DateTime<Utc>>,
    /// Records after this one are left (with a [`ReplayStart::Sequence`]).
    pub to_sequence: Option<SequenceNumber>,
}

impl ReplayRange {
    fn starts_before(&self, record: &StreamRecord) -> bool {
        match &self.start {
            ReplayStart::Timestamp(from) => record.approximate_arrival < *from,
            ReplayStart::Sequence { sequence, .. } => record.sequence_number < *sequence,
        }
    }

    fn ends_before(&self, record: &StreamRecord) -> bool {
        self.to_timestamp
            .is_some_and(|to| record.approximate_arrival > to)
            || self
                .to_sequence
                .as_ref()
                .is_some_and(|to| record.sequence_number > *to)
    }

    /// The range of the batch an event source mapping gave up on, from the message its
    /// on-failure destination (the failures queue) received.
    pub fn from_failure_message(text: &str) -> Result<(Self, Option<String>), ReplayError> {
        let message: FailureMessage =
            serde_json::from_str(text).map_err(|e| ReplayError::FailureMessage(e.to_string()))?;
        let info = message.batch;
        let sequence = |text: &str| {
            SequenceNumber::parse(text).ok_or_else(|| {
                ReplayError::FailureMessage(format!("{text:?} is not a sequence number"))
            })
        };
        let range = Self {
            start: ReplayStart::Sequence {
                shard_id: info.shard_id,
                sequence: sequence(&info.start_sequence_number)?,
            },
            to_timestamp: None,
            to_sequence: Some(sequence(&info.end_sequence_number)?),
        };
        let stream = info
            .stream_arn
            .as_deref()
            .and_then(|arn| arn.rsplit_once(":stream/"))
            .map(|(_, name)| name.to_owned());
        Ok((range, stream))
    }
}

/// What Lambda sends an event source mapping's on-failure destination for a Kinesis batch it
/// gave up on (only the fields a replay needs).
#[derive(Debug, Deserialize)]
struct FailureMessage {
    #[serde(rename = "KinesisBatchInfo")]
    batch: KinesisBatchInfo,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KinesisBatchInfo {
    shard_id: String,
    start_sequence_number: String,
    end_sequence_number: String,
    stream_arn: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Shards replayed.
    pub shards: usize,
    /// Shards with nothing committed yet (the live consumer reads them from their start).
    pub not_started: Vec<String>,
    pub batches: u64,
    /// `accepted` events were missing from the lake and are now in it; `duplicates` were there.
    pub counts: BatchCounts,
    pub files: u64,
}

/// Replays `range` of `source` into `lake`, `batch_size` records at a time.
pub async fn replay(
    source: &impl ShardSource,
    lake: &impl Lake,
    range: &ReplayRange,
    batch_size: usize,
    options: &BatchOptions,
    progress: &Progress,
) -> Result<ReplaySummary, ReplayError> {
    let stream = source.stream_name().to_owned();
    let identity = source.identity();
    let listing = source.shards().await?;
    let mut shards: Vec<String> = listing.iter().map(|s| s.id.clone()).collect();
    if let ReplayStart::Sequence { shard_id, .. } = &range.start {
        if !shards.contains(shard_id) {
            return Err(ReplayError::NoSuchShard(shard_id.clone()));
        }
        shards.retain(|s| s == shard_id);
    }
    let mut summary = ReplaySummary::default();
    let cache = IdCache::default();
    for shard_id in shards {
        let mut checkpoint = Checkpoint::load(lake, &identity, &stream, &shard_id).await?;
        checkpoint
            .set_ancestors(lake, ancestors(&listing, &shard_id))
            .await?;
        // What comes after the live consumer's position is its to read.
        let Some(committed) = checkpoint.state().sequence_number.clone() else {
            summary.not_started.push(shard_id);
            continue;
        };
        summary.shards += 1;
        let mut position = StartingPosition::TrimHorizon;
        loop {
            let read = source.read(&shard_id, &position, batch_size).await?;
            let Some(last) = read.records.last() else {
                break;
            };
            position = StartingPosition::AfterSequenceNumber(last.sequence_number.clone());
            let mut ended = read.closed;
            let mut batch = Vec::with_capacity(read.records.len());
            for record in read.records {
                if record.sequence_number > committed || range.ends_before(&record) {
                    ended = true;
                    break;
                }
                if !range.starts_before(&record) {
                    batch.push(record);
                }
            }
            if !batch.is_empty() {
                let replayed = checkpoint.replay(lake, &cache, batch, options).await?;
                summary.batches += 1;
                summary.files += replayed.files;
                summary.counts.add(&replayed.counts);
                progress.advance(replayed.counts.records, || {
                    format!(
                        "{shard_id}: {} events written again",
                        summary.counts.accepted
                    )
                });
            }
            if ended {
                break;
            }
        }
        tracing::info!(shard = shard_id, "shard replayed");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_queue_message_names_the_range_to_replay() {
        // What Lambda sends a Kinesis event source mapping's on-failure destination.
        let message = r#"{
            "requestContext": {"requestId": "c9b8fa9f-5a7f-4b7a-9a6d-3a4c9f0e5f1b",
                "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:sales-lake-consumer",
                "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 21},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-11-30T06:01:02.123Z",
            "KinesisBatchInfo": {
                "shardId": "shardId-000000000001",
                "startSequenceNumber": "49630081666084879290581185630324770398608704880802529282",
                "endSequenceNumber": "49630081666084879290581185630324770398608704880802529290",
                "approximateArrivalOfFirstRecord": "2026-11-30T05:01:02.000Z",
                "approximateArrivalOfLastRecord": "2026-11-30T05:01:03.000Z",
                "batchSize": 500,
                "streamArn": "arn:aws:kinesis:eu-west-1:123456789012:stream/sales-lake-events"
            }
        }"#;
        let (range, stream) = ReplayRange::from_failure_message(message).expect("parses");
        assert_eq!(stream.as_deref(), Some("sales-lake-events"));
        assert_eq!(
            range.start,
            ReplayStart::Sequence {
                shard_id: "shardId-000000000001".into(),
                sequence: SequenceNumber::parse(
                    "49630081666084879290581185630324770398608704880802529282"
                )
                .expect("sequence"),
            }
        );
        assert_eq!(
            range.to_sequence.map(|s| s.to_string()).as_deref(),
            Some("49630081666084879290581185630324770398608704880802529290")
        );
        let error = ReplayRange::from_failure_message("{\"Records\": []}").expect_err("not one");
        assert!(error.to_string().contains("KinesisBatchInfo"), "{error}");
    }
}

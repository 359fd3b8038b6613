//! `consumer replay`: reads a range of the stream into the lake again, without moving any
//! committed position back.
//!
//! For records the event source mapping gave up on (after its retries, or past its maximum
//! record age) and which sit behind the shard's committed position, and for any range a user
//! doubts. Only records at or before each shard's committed position are replayed: what comes
//! after is the live consumer's. Events already in the lake are dropped by id: the ids of the
//! `sales_events` partitions a batch touches are read from the lake first, so replaying a range
//! twice, or the whole stream, changes no total.
//!
//! A replay commits through the same protocol as the poller, under its own state
//! (`_state/<stream>.replay/<shard>.json`): killed midway, the next replay removes the files of
//! its batch in flight before it starts.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sales_stream::{Payload, SequenceNumber, StartingPosition, StreamRecord, codec, unpack};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::{BatchCounts, BatchOptions};
use crate::commit::{Checkpoint, CommitError};
use crate::lake::{Lake, LakeError};
use crate::layout::{SALES_EVENTS, partition_dir};
use crate::poll::{PollError, ShardSource};
use crate::state::WindowLimits;
use crate::writer::{WriterError, sales_events_ids};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the stream failed.
    #[error(transparent)]
    Stream(#[from] PollError),
    /// A batch could not be committed (or a shard's state belongs to another stream).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Reading the lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A `sales_events` file could not be read for its ids.
    #[error("{key}: {source}")]
    File { key: String, source: WriterError },
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

/// The stream name a replay's own commit state is kept under.
pub fn replay_stream_name(stream: &str) -> String {
    format!("{stream}.replay")
}

/// Replays `range` of `source` into `lake`, `batch_size` records at a time.
pub async fn replay(
    source: &impl ShardSource,
    lake: &impl Lake,
    range: &ReplayRange,
    batch_size: usize,
    options: &BatchOptions,
) -> Result<ReplaySummary, ReplayError> {
    let stream = source.stream_name().to_owned();
    let identity = source.identity();
    let mut shards: Vec<String> = source.shards().await?.into_iter().map(|s| s.id).collect();
    if let ReplayStart::Sequence { shard_id, .. } = &range.start {
        if !shards.contains(shard_id) {
            return Err(ReplayError::NoSuchShard(shard_id.clone()));
        }
        shards.retain(|s| s == shard_id);
    }
    let mut summary = ReplaySummary::default();
    let mut known = Arc::new(HashSet::new());
    let mut days_read = HashSet::new();
    // Every shard's checkpoints first: the live one's position bounds the replay (and it must be
    // this stream's), and a replay killed midway left a batch in flight whose files go before any
    // id is read from the lake, or their events would count as there and never be written again.
    let replay_stream = replay_stream_name(&stream);
    let mut replays = Vec::new();
    for shard_id in shards {
        let live =
            Checkpoint::load(lake, &identity, &stream, &shard_id, WindowLimits::default()).await?;
        let mut checkpoint = Checkpoint::load(
            lake,
            &identity,
            &replay_stream,
            &shard_id,
            WindowLimits::default(),
        )
        .await?;
        checkpoint.recover(lake).await?;
        match live.state().sequence_number.clone() {
            Some(committed) => replays.push((shard_id, committed, checkpoint)),
            None => summary.not_started.push(shard_id),
        }
    }
    for (shard_id, committed, mut checkpoint) in replays {
        summary.shards += 1;
        checkpoint.forget_position();
        checkpoint.know(known.clone());
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
                let fresh: Vec<NaiveDate> = event_days(&batch)
                    .into_iter()
                    .filter(|day| days_read.insert(*day))
                    .collect();
                if !fresh.is_empty() {
                    // The checkpoint lets go of the set, so it grows in place.
                    checkpoint.know(Arc::default());
                    let ids = Arc::make_mut(&mut known);
                    for day in fresh {
                        ids.extend(ids_in_lake(lake, day).await?);
                    }
                    checkpoint.know(known.clone());
                }
                let committed_batch = checkpoint.commit(lake, batch, options).await?;
                checkpoint.know(Arc::default());
                Arc::make_mut(&mut known).extend(committed_batch.accepted_ids.iter().copied());
                checkpoint.know(known.clone());
                summary.batches += 1;
                summary.files += committed_batch.files;
                summary.counts.add(&committed_batch.counts);
            }
            if ended {
                break;
            }
        }
        tracing::info!(shard = shard_id, "shard replayed");
    }
    Ok(summary)
}

/// The sale dates of the events in `records` (records that hold no valid event are skipped:
/// the batch quarantines them).
fn event_days(records: &[StreamRecord]) -> BTreeSet<NaiveDate> {
    let mut days = BTreeSet::new();
    let mut add = |data: &[u8]| {
        if let Ok(event) = codec::decode(data) {
            days.insert(event.event_time.date());
        }
    };
    for record in records {
        match unpack(&record.data) {
            Ok(Payload::Single(data)) => add(data),
            Ok(Payload::Aggregated(users)) => users.iter().for_each(|u| add(&u.data)),
            Err(_) => {}
        }
    }
    days
}

/// Times the ids of a day are read again because a file went between listing and reading.
const MAX_ID_READS: usize = 5;

/// Every event id in the lake's `sales_events` for `day`.
async fn ids_in_lake(lake: &impl Lake, day: NaiveDate) -> Result<Vec<Uuid>, ReplayError> {
    let dir = partition_dir(SALES_EVENTS, day);
    let mut attempt = 0;
    'listing: loop {
        attempt += 1;
        let mut ids = Vec::new();
        for key in lake.list(&dir).await? {
            if !key.ends_with(".parquet") {
                continue;
            }
            let Some(object) = lake.get(&key).await? else {
                // Compacted away since the listing: its events are in a file this listing did
                // not see. Read the day again.
                if attempt < MAX_ID_READS {
                    continue 'listing;
                }
                continue;
            };
            let file_ids = sales_events_ids(object.bytes)
                .map_err(|source| ReplayError::File { key, source })?;
            ids.extend(file_ids);
        }
        return Ok(ids);
    }
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

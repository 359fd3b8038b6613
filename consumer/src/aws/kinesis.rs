//! Amazon Kinesis Data Streams behind [`ShardSource`]: the only file of the consumer that reads
//! Kinesis.
//!
//! Each shard keeps its `GetRecords` iterator between reads, so a shard costs one
//! `GetShardIterator` at start (and after an iterator expires) rather than one per batch. A
//! closed shard (after a split or merge) ends when its iterator does; [`crate::commands::poll`] then starts
//! its children, whose parents it finished first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, Utc};
use sales_aws::{RetryConfig, sdk_error_reason};
use sales_stream::{SequenceNumber, StartingPosition, StreamRecord};

use crate::commit::state::StreamIdentity;
use crate::stream::{Lineage, ShardInfo, ShardRead, ShardSource, StreamError, ancestors};

/// `GetRecords` returns at most 10,000 records per call.
pub const MAX_RECORDS_PER_GET: usize = 10_000;
/// `GetRecords` is limited to 5 calls per second per shard: consecutive calls on one shard are
/// spaced by at least this much.
const GET_RECORDS_INTERVAL: Duration = Duration::from_millis(200);
/// Attempts per Kinesis request, the first included; throttling
/// (`ProvisionedThroughputExceededException`) is retried with backoff by the SDK's standard mode.
const KINESIS_ATTEMPTS: u32 = 8;

/// Where the next read of a shard continues.
#[derive(Debug)]
struct OpenIterator {
    /// The position the iterator stands at, as the poller names it.
    position: StartingPosition,
    iterator: String,
}

/// A Kinesis stream read shard by shard.
#[derive(Debug)]
pub struct KinesisSource {
    client: Client,
    stream: String,
    identity: StreamIdentity,
    retention: Duration,
    iterators: Mutex<HashMap<String, OpenIterator>>,
}

impl KinesisSource {
    /// Loads the AWS configuration and checks that the stream exists.
    pub async fn connect(stream: &str) -> Result<Self, StreamError> {
        let config = sales_aws::load(RetryConfig::standard().with_max_attempts(KINESIS_ATTEMPTS))
            .await
            .map_err(|e| StreamError::Setup(e.to_string()))?;
        let client = Client::new(&config);
        match client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
        {
            Ok(output) => {
                let summary = output.stream_description_summary();
                let identity = StreamIdentity {
                    id: summary
                        .map(|s| s.stream_arn().to_owned())
                        .unwrap_or_else(|| stream.to_owned()),
                    created: summary.and_then(|s| {
                        DateTime::from_timestamp_millis(
                            s.stream_creation_timestamp().to_millis().ok()?,
                        )
                    }),
                };
                let hours = summary.map_or(24, |s| s.retention_period_hours());
                Ok(Self {
                    client,
                    stream: stream.to_owned(),
                    identity,
                    retention: Duration::from_secs(u64::try_from(hours).unwrap_or(24) * 3600),
                    iterators: Mutex::new(HashMap::new()),
                })
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(StreamError::Setup(format!(
                    "Kinesis stream {stream} does not exist in {}",
                    sales_aws::region(&config)
                )))
            }
            Err(e) => Err(kinesis_error("DescribeStreamSummary", stream, &e)),
        }
    }

    async fn shard_iterator(
        &self,
        shard_id: &str,
        position: &StartingPosition,
    ) -> Result<String, StreamError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard_id);
        let request = match position {
            StartingPosition::TrimHorizon => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            StartingPosition::AfterSequenceNumber(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence.as_str()),
        };
        let output = request
            .send()
            .await
            .map_err(|e| kinesis_error("GetShardIterator", &self.stream, &e))?;
        output
            .shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| StreamError::Kinesis {
                operation: "GetShardIterator",
                stream: self.stream.clone(),
                reason: format!("no iterator for {shard_id}"),
            })
    }

    fn take_iterator(&self, shard_id: &str, position: &StartingPosition) -> Option<String> {
        let mut iterators = self.iterators.lock().unwrap_or_else(|e| e.into_inner());
        iterators
            .remove(shard_id)
            .filter(|open| &open.position == position)
            .map(|open| open.iterator)
    }

    fn keep_iterator(&self, shard_id: &str, position: StartingPosition, iterator: String) {
        let mut iterators = self.iterators.lock().unwrap_or_else(|e| e.into_inner());
        iterators.insert(shard_id.to_owned(), OpenIterator { position, iterator });
    }
}

impl ShardSource for KinesisSource {
    fn stream_name(&self) -> &str {
        &self.stream
    }

    fn identity(&self) -> StreamIdentity {
        self.identity.clone()
    }

    fn retention(&self) -> Option<Duration> {
        Some(self.retention)
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, StreamError> {
        shard_infos(&self.client, &self.stream).await
    }

    async fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> Result<ShardRead, StreamError> {
        let limit = limit.clamp(1, MAX_RECORDS_PER_GET) as i32;
        let mut iterator = match self.take_iterator(shard_id, position) {
            Some(iterator) => iterator,
            None => self.shard_iterator(shard_id, position).await?,
        };
        loop {
            let output = match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(output) => output,
                // Iterators live five minutes; a slow batch (or a long idle wait) outlives one.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_expired_iterator_exception()) =>
                {
                    iterator = self.shard_iterator(shard_id, position).await?;
                    continue;
                }
                Err(e) => return Err(kinesis_error("GetRecords", &self.stream, &e)),
            };
            let records = output
                .records()
                .iter()
                .map(|record| stream_record(&self.stream, record))
                .collect::<Result<Vec<_>, _>>()?;
            let behind = output.millis_behind_latest().unwrap_or(0);
            let Some(next) = output.next_shard_iterator().map(str::to_owned) else {
                // The shard is closed and everything in it has been read.
                return Ok(ShardRead {
                    records,
                    closed: true,
                });
            };
            if records.is_empty() && behind > 0 {
                // Kinesis can answer empty while records lie further on: keep going.
                iterator = next;
                tokio::time::sleep(GET_RECORDS_INTERVAL).await;
                continue;
            }
            let after = match records.last() {
                Some(last) => StartingPosition::AfterSequenceNumber(last.sequence_number.clone()),
                None => position.clone(),
            };
            self.keep_iterator(shard_id, after, next);
            return Ok(ShardRead {
                records,
                closed: false,
            });
        }
    }
}

/// Every shard of `stream`, open and closed, with its parents.
async fn shard_infos(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, StreamError> {
    let shards = sales_aws::list_shards(client, stream)
        .await
        .map_err(|e| kinesis_error("ListShards", stream, &e))?;
    Ok(shards
        .iter()
        .map(|shard| ShardInfo {
            id: shard.shard_id().to_owned(),
            parents: [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
        })
        .collect())
}

/// The Lambda's view of its streams' reshards: `ListShards`, once per new shard.
#[derive(Debug, Clone)]
pub struct KinesisLineage {
    client: Client,
}

impl KinesisLineage {
    /// A Kinesis client from the function's configuration.
    pub async fn connect() -> Result<Self, sales_aws::ConfigError> {
        let config =
            sales_aws::load(RetryConfig::standard().with_max_attempts(KINESIS_ATTEMPTS)).await?;
        Ok(Self {
            client: Client::new(&config),
        })
    }
}

impl Lineage for KinesisLineage {
    async fn ancestors(&self, stream: &str, shard_id: &str) -> Result<Vec<String>, String> {
        let shards = shard_infos(&self.client, stream)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ancestors(&shards, shard_id))
    }
}

fn stream_record(
    stream: &str,
    record: &aws_sdk_kinesis::types::Record,
) -> Result<StreamRecord, StreamError> {
    let sequence_number =
        SequenceNumber::parse(record.sequence_number()).ok_or_else(|| StreamError::Kinesis {
            operation: "GetRecords",
            stream: stream.to_owned(),
            reason: format!("bad sequence number {:?}", record.sequence_number()),
        })?;
    let approximate_arrival = record
        .approximate_arrival_timestamp()
        .and_then(|t| DateTime::<Utc>::from_timestamp_millis(t.to_millis().ok()?))
        .unwrap_or_else(Utc::now);
    Ok(StreamRecord {
        sequence_number,
        partition_key: record.partition_key().unwrap_or_default().to_owned(),
        data: record.data().as_ref().to_vec(),
        approximate_arrival,
    })
}

fn kinesis_error<E>(operation: &'static str, stream: &str, error: &SdkError<E>) -> StreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    StreamError::Kinesis {
        operation,
        stream: stream.to_owned(),
        reason: sdk_error_reason(error),
    }
}

//! Amazon Kinesis Data Streams behind [`RecordSink`]: the only file that speaks the AWS SDK.
//!
//! The SDK's own retries are turned off: every retry decision (of whole requests and of single
//! failed entries) is made in one place, [`crate::retry`], and counted in the summary.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use sales_aws::{RetryConfig, error_chain};
use sales_stream::{HashKeyRange, PutEntry};

use crate::retry::{Retry, RetryPolicy, classify_code, with_retries};
use crate::sink::{EntryFailure, RecordSink, SinkError};

/// Describing the stream at start is retried only briefly: a wrong endpoint should fail fast.
const SETUP_ATTEMPTS: u32 = 3;

/// Why the producer cannot start streaming to Kinesis.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// No region or no credentials.
    #[error(transparent)]
    Config(#[from] sales_aws::ConfigError),
    /// `DescribeStreamSummary` said the stream does not exist.
    #[error("Kinesis stream {stream} does not exist in {region}")]
    StreamMissing { stream: String, region: String },
    /// The stream exists but cannot take records yet (or any more).
    #[error("Kinesis stream {stream} is {status}, not ACTIVE: wait for it, or check its name")]
    StreamNotActive { stream: String, status: String },
    /// The endpoint did not answer, or answered with an error.
    #[error("cannot describe Kinesis stream {stream}")]
    Describe {
        stream: String,
        #[source]
        source: SinkError,
    },
}

/// A Kinesis data stream, ready to take records.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: Client,
    stream: String,
}

impl KinesisSink {
    /// Loads the standard AWS configuration (profiles, environment, `AWS_ENDPOINT_URL`), checks
    /// credentials and that the stream is ACTIVE, and returns the sink with the hash key ranges
    /// of the stream's open shards.
    pub async fn connect(stream: &str) -> Result<(Self, Vec<HashKeyRange>), KinesisError> {
        let config = sales_aws::load(RetryConfig::disabled()).await?;
        let region = sales_aws::region(&config);
        let sink = Self {
            client: Client::new(&config),
            stream: stream.to_owned(),
        };
        let setup_policy = RetryPolicy {
            max_attempts: SETUP_ATTEMPTS,
            ..RetryPolicy::default()
        };
        let describe_error = |source| KinesisError::Describe {
            stream: stream.to_owned(),
            source,
        };
        let status = with_retries(&setup_policy, SinkError::retry, || async {
            let summary = sink
                .client
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await;
            match summary {
                Ok(output) => Ok(Some(
                    output
                        .stream_description_summary()
                        .map(|s| s.stream_status().clone()),
                )),
                Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
                Err(e) => Err(classify("DescribeStreamSummary", &e)),
            }
        })
        .await
        .map_err(describe_error)?;
        match status {
            None => {
                return Err(KinesisError::StreamMissing {
                    stream: stream.to_owned(),
                    region,
                });
            }
            // UPDATING streams (a reshard, a mode change) still take writes.
            Some(Some(StreamStatus::Active | StreamStatus::Updating)) => {}
            Some(other) => {
                return Err(KinesisError::StreamNotActive {
                    stream: stream.to_owned(),
                    status: other.map_or_else(|| "unknown".into(), |s| s.as_str().to_owned()),
                });
            }
        }
        let shards = with_retries(&setup_policy, SinkError::retry, || sink.open_shards())
            .await
            .map_err(describe_error)?;
        Ok((sink, shards))
    }

    /// Hash key ranges of the shards that take writes (those without an ending sequence number).
    async fn open_shards(&self) -> Result<Vec<HashKeyRange>, SinkError> {
        let shards = sales_aws::list_shards(&self.client, &self.stream)
            .await
            .map_err(|e| classify("ListShards", &e))?;
        let parse = |text: Option<&str>| text.and_then(|t| t.parse::<u128>().ok());
        let mut ranges: Vec<_> = shards
            .iter()
            .filter(|shard| {
                shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none())
            })
            .filter_map(|shard| {
                let range = shard.hash_key_range();
                Some(HashKeyRange {
                    starting_hash_key: parse(range.map(|r| r.starting_hash_key()))?,
                    ending_hash_key: parse(range.map(|r| r.ending_hash_key()))?,
                })
            })
            .collect();
        ranges.sort_by_key(|r| r.starting_hash_key);
        Ok(ranges)
    }
}

/// Sorts an SDK error into "send again" or "give up", with a message a user can act on.
fn classify<E>(
    operation: &str,
    error: &SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = error_chain(error);
    match error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = format!(
                "{operation}: {code}: {}",
                service.err().message().unwrap_or("no message")
            );
            let server_side = service.raw().status().is_server_error();
            if server_side || classify_code(code) == Retry::Transient {
                SinkError::Transient(message)
            } else {
                SinkError::Permanent(message)
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            SinkError::Permanent(format!("{operation}: {detail}"))
        }
        SdkError::DispatchFailure(_) => SinkError::Transient(format!(
            "{operation}: cannot reach the Kinesis endpoint: {detail}"
        )),
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            SinkError::Transient(format!("{operation}: {detail}"))
        }
        _ => SinkError::Permanent(format!("{operation}: {detail}")),
    }
}

impl RecordSink for KinesisSink {
    async fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
        let records = entries
            .iter()
            .map(|entry| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&entry.partition_key)
                    .data(Blob::new(entry.data.clone()))
                    .build()
                    .map_err(|e| SinkError::Permanent(format!("PutRecords entry: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| classify("PutRecords", &e))?;
        let results = output.records();
        if results.len() != entries.len() {
            return Err(SinkError::Transient(format!(
                "PutRecords answered {} results for {} records",
                results.len(),
                entries.len()
            )));
        }
        Ok(results
            .iter()
            .map(|result| {
                result.error_code().map(|code| EntryFailure {
                    code: code.to_owned(),
                    message: result.error_message().unwrap_or_default().to_owned(),
                })
            })
            .collect())
    }
}

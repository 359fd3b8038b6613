//! The Kinesis handler: one event's records, shard by shard, through the commit protocol.

use std::time::Instant;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use sales_stream::{SequenceNumber, StreamRecord};

use super::checkpoints::Checkpoints;
use super::config::FunctionConfig;
use super::invocation::EventError;
use crate::commit::state::StreamIdentity;
use crate::commit::{Checkpoint, CommitError};
use crate::core::batch::BatchCounts;
use crate::lake::Lake;
use crate::stream::Lineage;

/// Why one shard's batch was not committed.
#[derive(Debug, thiserror::Error)]
enum ShardError {
    /// The commit protocol failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The shard's ancestors could not be learnt.
    #[error("listing the shards of {stream}: {reason}")]
    Lineage { stream: String, reason: String },
}

/// What one invocation did, for the logs and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InvocationReport {
    pub streams: Vec<String>,
    pub shards: usize,
    pub counts: BatchCounts,
    /// Compare-and-swaps lost to another instance on the same shard (then retried).
    pub conflicts: u64,
    /// Records Lambda will deliver again: those from the first reported failure on.
    pub failed_records: u64,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
}

/// Handles one Kinesis event: the response lists the first sequence number of every shard whose
/// batch could not be made durable (none on success).
pub async fn handle(
    event: KinesisEvent,
    lake: &impl Lake,
    lineage: &impl Lineage,
    config: &FunctionConfig,
    checkpoints: &Checkpoints,
) -> Result<(KinesisEventResponse, InvocationReport), EventError> {
    let started = Instant::now();
    let groups =
        shard_batches(event).map_err(|(index, reason)| EventError::BadRecord { index, reason })?;
    let mut response = KinesisEventResponse::default();
    let mut report = InvocationReport {
        shards: groups.len(),
        ..InvocationReport::default()
    };
    for ShardBatch {
        arn,
        stream,
        shard_id,
        records,
    } in groups
    {
        if !report.streams.contains(&stream) {
            report.streams.push(stream.clone());
        }
        let last = records.last().map(|r| r.sequence_number.clone());
        // What Lambda is told to retry from: the first record after the committed position.
        let mut first_uncommitted = records.first().map(|r| r.sequence_number.clone());
        let mut uncommitted = records.len() as u64;
        let outcome = async {
            let mut checkpoint = match checkpoints.take(&stream, &shard_id) {
                Some(checkpoint) => checkpoint,
                None => {
                    // The ARN: a Lambda event does not say when the stream was created.
                    let identity = StreamIdentity::new(arn.clone());
                    Checkpoint::load(lake, &identity, &stream, &shard_id).await?
                }
            };
            if checkpoint.needs_lineage() {
                let ancestors = lineage
                    .ancestors(&stream, &shard_id)
                    .await
                    .map_err(|reason| ShardError::Lineage {
                        stream: stream.clone(),
                        reason,
                    })?;
                checkpoint.set_ancestors(lake, ancestors).await?;
            }
            if let Some(committed) = &checkpoint.state().sequence_number {
                let mut after = records.iter().filter(|r| r.sequence_number > *committed);
                first_uncommitted = after.next().map(|r| r.sequence_number.clone());
                uncommitted = first_uncommitted
                    .as_ref()
                    .map_or(0, |_| 1 + after.count() as u64);
            }
            let committed = checkpoint
                .commit(lake, checkpoints.ids(), records, &config.batch)
                .await?;
            // Kept only after a success: after a failure the next invocation reads the lake.
            checkpoints.keep(checkpoint);
            Ok::<_, ShardError>(committed)
        };
        match outcome.await {
            Ok(committed) => {
                report.counts.add(&committed.counts);
                report.conflicts += u64::from(committed.conflicts);
                report.files += committed.files;
                report.bytes += committed.bytes;
            }
            Err(failure) => {
                let error = failure.to_string();
                // Should the mapping give these records up after its retries, this brings them
                // back (the failures queue names the same range).
                let replay = match (&first_uncommitted, &last) {
                    (Some(first), Some(last)) => format!(
                        "consumer replay --stream kinesis://{stream} --lake {} --from-sequence \
                         {shard_id}={first} --to-sequence {last}",
                        config.lake
                    ),
                    _ => String::new(),
                };
                tracing::error!(
                    stream,
                    shard = shard_id,
                    error,
                    replay,
                    "batch not committed; Lambda will retry it"
                );
                if let Some(first) = &first_uncommitted {
                    response.add_failure(first.as_str());
                }
                report.failed_records += uncommitted;
            }
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok((response, report))
}

/// The records of one shard of one stream, in order.
#[derive(Debug)]
struct ShardBatch {
    arn: String,
    stream: String,
    shard_id: String,
    records: Vec<StreamRecord>,
}

/// The event's records by (stream, shard), ordered by stream and shard: one event source mapping
/// batch is one shard's, but nothing here depends on that. A record's stream and shard are read
/// in place, and copied only for the first record of its shard (a copy each was a third of a
/// warm invocation's time outside the batch itself). Fails with the index of a bad record.
fn shard_batches(event: KinesisEvent) -> Result<Vec<ShardBatch>, (usize, String)> {
    let mut batches: Vec<ShardBatch> = Vec::new();
    // A mapping's batch is one shard's: the first shard gets room for the whole event (grown by
    // doubling, 10,000 records were copied about twice over), any other grows as it needs.
    let mut room = event.records.len();
    for (index, record) in event.records.into_iter().enumerate() {
        let fail = |reason: String| (index, reason);
        let arn = record
            .event_source_arn
            .as_deref()
            .ok_or_else(|| fail("no eventSourceARN".into()))?;
        let event_id = record
            .event_id
            .as_deref()
            .ok_or_else(|| fail("no eventID".into()))?;
        // Grouped by stream name and shard, the first record's ARN standing for the stream. A
        // record's ARN is nearly always its batch's: only another one is searched for the name.
        let stream = || arn.rsplit_once(":stream/").map(|(_, name)| name);
        let same = |batch: &ShardBatch| {
            (batch.arn == arn || stream() == Some(batch.stream.as_str()))
                && event_id
                    .strip_prefix(batch.shard_id.as_str())
                    .is_some_and(|rest| rest.starts_with(':'))
        };
        let at = match batches.iter().rposition(same) {
            Some(at) => at,
            None => {
                let stream = stream()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("eventSourceARN {arn:?} is not a Kinesis stream's"))
                    .map_err(fail)?;
                let shard_id = event_id
                    .split_once(':')
                    .map(|(shard, _)| shard.to_owned())
                    .ok_or_else(|| format!("eventID {event_id:?} is not shardId:sequenceNumber"))
                    .map_err(fail)?;
                batches.push(ShardBatch {
                    arn: arn.to_owned(),
                    stream,
                    shard_id,
                    records: Vec::with_capacity(std::mem::take(&mut room)),
                });
                batches.len() - 1
            }
        };
        let kinesis = record.kinesis;
        let sequence_number = SequenceNumber::parse_owned(kinesis.sequence_number)
            .map_err(|text| fail(format!("sequenceNumber {text:?} is not a number")))?;
        batches[at].records.push(StreamRecord {
            sequence_number,
            partition_key: kinesis.partition_key,
            data: kinesis.data.0,
            approximate_arrival: kinesis.approximate_arrival_timestamp.0,
        });
    }
    batches.sort_by(|a, b| (&a.stream, &a.shard_id).cmp(&(&b.stream, &b.shard_id)));
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::lake::{LakeError, LocalLake, Object, Precondition, Version};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use rust_decimal::Decimal;
    use serde_json::Value;

    /// A stream never resharded.
    struct Unsplit;

    impl Lineage for Unsplit {
        async fn ancestors(&self, _stream: &str, _shard_id: &str) -> Result<Vec<String>, String> {
            Ok(Vec::new())
        }
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/kinesis/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn batch() -> KinesisEvent {
        serde_json::from_str(&fixture("batch.json")).expect("a Kinesis event")
    }

    /// `batch.json`'s records spread over two shards of the stream and one of another stream.
    fn three_shards() -> KinesisEvent {
        let mut event = batch();
        for (i, record) in event.records.iter_mut().enumerate() {
            let (shard, arn) = match i % 3 {
                0 => ("shardId-000000000001", None),
                1 => ("shardId-000000000000", None),
                _ => (
                    "shardId-000000000000",
                    Some("arn:aws:kinesis:eu-west-1:1:stream/other"),
                ),
            };
            record.event_id = Some(format!("{shard}:{}", record.kinesis.sequence_number));
            if let Some(arn) = arn {
                record.event_source_arn = Some(arn.into());
            }
        }
        event
    }

    #[test]
    fn records_are_grouped_by_stream_and_shard_in_order() {
        let event = three_shards();
        let sequences: Vec<String> = event
            .records
            .iter()
            .map(|r| r.kinesis.sequence_number.clone())
            .collect();
        assert!(
            sequences.len() >= 3,
            "the fixture has records of every group"
        );
        let batches = shard_batches(event).expect("valid records");
        let groups: Vec<(&str, &str)> = batches
            .iter()
            .map(|b| (b.stream.as_str(), b.shard_id.as_str()))
            .collect();
        let stream = batches[2].stream.as_str();
        assert_eq!(
            groups,
            [
                ("other", "shardId-000000000000"),
                (stream, "shardId-000000000000"),
                (stream, "shardId-000000000001"),
            ]
        );
        for (batch, first) in batches.iter().zip([2, 1, 0]) {
            let got: Vec<&str> = batch
                .records
                .iter()
                .map(|r| r.sequence_number.as_str())
                .collect();
            let want: Vec<&str> = sequences
                .iter()
                .skip(first)
                .step_by(3)
                .map(String::as_str)
                .collect();
            assert_eq!(got, want, "{}", batch.shard_id);
        }
    }

    #[test]
    fn a_stream_is_known_by_its_name_whatever_the_arn_says_around_it() {
        let mut event = batch();
        let first_arn = event.records[0].event_source_arn.clone().expect("an ARN");
        let name = first_arn
            .rsplit_once(":stream/")
            .expect("a stream ARN")
            .1
            .to_owned();
        event.records[1].event_source_arn =
            Some(format!("arn:aws:kinesis:us-east-1:2:stream/{name}"));
        let batches = shard_batches(event).expect("valid records");
        assert_eq!(batches.len(), 1, "one stream name, one shard: one batch");
        assert_eq!(
            batches[0].arn, first_arn,
            "the first record's ARN stands for the stream"
        );
    }

    #[test]
    fn a_bad_record_is_named_by_its_index() {
        let mut event = three_shards();
        event.records[2].event_id = Some("no-colon".into());
        assert!(
            matches!(shard_batches(event), Err((2, reason)) if reason.contains("shardId:sequenceNumber"))
        );
        let mut event = three_shards();
        event.records[1].kinesis.sequence_number = "12x".into();
        assert!(
            matches!(shard_batches(event), Err((1, reason)) if reason.contains("not a number"))
        );
    }

    fn expected() -> Value {
        serde_json::from_str(&fixture("batch.expected.json")).expect("JSON")
    }

    fn config(dir: &std::path::Path) -> FunctionConfig {
        FunctionConfig::parse_from([format!("--lake=file://{}", dir.display())]).expect("config")
    }

    /// Sums every daily_sales file of the lake per "date|country|stock_code", as strings.
    fn daily_sales(root: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut totals: BTreeMap<String, BTreeMap<&str, i128>> = BTreeMap::new();
        let mut files = Vec::new();
        let mut dirs = vec![root.join("daily_sales")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        for file in files {
            let file = std::fs::File::open(file).expect("file");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                let column = |name: &str| batch.column_by_name(name).expect(name).clone();
                let dates = column("sale_date");
                let dates = dates.as_primitive::<Date32Type>();
                let (countries, stocks) = (column("country"), column("stock_code"));
                for row in 0..batch.num_rows() {
                    let date = Date32Type::to_naive_date_opt(dates.value(row)).expect("a date");
                    let key = format!(
                        "{date}|{}|{}",
                        countries.as_string::<i32>().value(row),
                        stocks.as_string::<i32>().value(row)
                    );
                    let sums = totals.entry(key).or_default();
                    for name in [
                        "units_sold",
                        "units_returned",
                        "net_quantity",
                        "order_lines",
                    ] {
                        let values = column(name);
                        *sums.entry(name).or_default() +=
                            i128::from(values.as_primitive::<Int64Type>().value(row));
                    }
                    for name in ["gross_revenue", "refunds", "net_revenue"] {
                        let values = column(name);
                        assert!(!values.is_null(row));
                        *sums.entry(name).or_default() +=
                            values.as_primitive::<Decimal128Type>().value(row);
                    }
                }
            }
        }
        totals
            .into_iter()
            .map(|(key, sums)| {
                let sums = sums
                    .into_iter()
                    .map(|(name, value)| {
                        let text = if name.contains("revenue") || name == "refunds" {
                            Decimal::from_i128_with_scale(value, 3).to_string()
                        } else {
                            value.to_string()
                        };
                        (name.to_owned(), text)
                    })
                    .collect();
                (key, sums)
            })
            .collect()
    }

    fn expected_daily_sales() -> BTreeMap<String, BTreeMap<String, String>> {
        serde_json::from_value(expected()["daily_sales"].clone()).expect("totals")
    }

    fn expected_counts() -> BatchCounts {
        serde_json::from_value(expected()["counts"].clone()).expect("counts")
    }

    #[tokio::test]
    async fn a_batch_lands_in_the_lake_with_the_totals_computed_from_its_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let lake = LocalLake::new(dir.path());
        let (response, report) = handle(batch(), &lake, &Unsplit, &config, &Checkpoints::default())
            .await
            .expect("handled");
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.counts, expected_counts());
        assert_eq!(report.streams, ["sales-events"]);
        assert_eq!(daily_sales(dir.path()), expected_daily_sales());
        let quarantine = std::fs::read_dir(dir.path().join("quarantine/year=2010/month=12/day=01"))
            .expect("quarantine partition by arrival date")
            .count();
        assert_eq!(quarantine, 1);
    }

    #[tokio::test]
    async fn a_redelivered_batch_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, lake) = (config(dir.path()), LocalLake::new(dir.path()));
        let warm = Checkpoints::default();
        handle(batch(), &lake, &Unsplit, &config, &warm)
            .await
            .expect("first");
        // Once by the warm instance that committed it, once by a cold one that reads the lake.
        for checkpoints in [&warm, &Checkpoints::default()] {
            let (response, report) = handle(batch(), &lake, &Unsplit, &config, checkpoints)
                .await
                .expect("again");
            assert!(response.batch_item_failures.is_empty());
            assert_eq!(report.counts.replayed, 6);
            assert_eq!(
                report.counts,
                BatchCounts {
                    replayed: 6,
                    ..BatchCounts::default()
                }
            );
        }
        assert_eq!(daily_sales(dir.path()), expected_daily_sales());
    }

    fn failed_items(response: &KinesisEventResponse) -> Vec<Option<String>> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    /// A lake whose writes fail while `down` is set, like S3 throttling past every retry.
    #[derive(Debug)]
    struct FlakyLake {
        inner: LocalLake,
        down: AtomicBool,
    }

    impl Lake for FlakyLake {
        async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
            if self.down.load(Ordering::Relaxed) && !key.starts_with("sales_events") {
                return Err(LakeError::S3 {
                    action: "write",
                    bucket: "lake".into(),
                    key: key.into(),
                    reason: "SlowDown: Please reduce your request rate.".into(),
                });
            }
            self.inner.put(key, bytes).await
        }

        async fn put_if(
            &self,
            key: &str,
            bytes: Vec<u8>,
            expected: Precondition,
        ) -> Result<Version, LakeError> {
            self.inner.put_if(key, bytes, expected).await
        }

        async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
            self.inner.get(key).await
        }

        async fn delete(&self, key: &str) -> Result<(), LakeError> {
            self.inner.delete(key).await
        }

        async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
            self.inner.list(prefix).await
        }
    }

    #[tokio::test]
    async fn a_lake_failure_fails_the_batch_from_its_first_record_and_the_retry_counts_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let lake = FlakyLake {
            inner: LocalLake::new(dir.path()),
            down: AtomicBool::new(true),
        };
        let (response, report) = handle(batch(), &lake, &Unsplit, &config, &Checkpoints::default())
            .await
            .expect("handled");
        let failures = failed_items(&response);
        assert_eq!(
            failures,
            [expected()["first_sequence_number"]
                .as_str()
                .map(str::to_owned)]
        );
        assert_eq!(report.failed_records, 6);

        lake.down.store(false, Ordering::Relaxed);
        let (response, report) = handle(batch(), &lake, &Unsplit, &config, &Checkpoints::default())
            .await
            .expect("retried");
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.counts, expected_counts());
        assert_eq!(daily_sales(dir.path()), expected_daily_sales());
    }

    #[tokio::test]
    async fn a_failure_after_a_partial_redelivery_names_the_first_uncommitted_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let lake = FlakyLake {
            inner: LocalLake::new(dir.path()),
            down: AtomicBool::new(false),
        };
        let mut first_half = batch();
        first_half.records.truncate(3);
        handle(
            first_half,
            &lake,
            &Unsplit,
            &config,
            &Checkpoints::default(),
        )
        .await
        .expect("handled");

        lake.down.store(true, Ordering::Relaxed);
        let whole = batch();
        let fourth = whole.records[3].kinesis.sequence_number.clone();
        let (response, report) = handle(whole, &lake, &Unsplit, &config, &Checkpoints::default())
            .await
            .expect("handled");
        let failures = failed_items(&response);
        assert_eq!(failures, [Some(fourth)]);
        assert_eq!(
            report.failed_records, 3,
            "the three records after the commit"
        );

        lake.down.store(false, Ordering::Relaxed);
        let (response, report) = handle(batch(), &lake, &Unsplit, &config, &Checkpoints::default())
            .await
            .expect("retried");
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.counts.replayed, 3);
        assert_eq!(daily_sales(dir.path()), expected_daily_sales());
        let leftovers: Vec<String> = lake
            .list("sales_events")
            .await
            .expect("list")
            .into_iter()
            .chain(lake.list("daily_sales").await.expect("list"))
            .filter(|key| !key.contains("-1.parquet") && !key.contains("-5.parquet"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "only the two committed batches' files remain: {leftovers:?}"
        );
    }
}

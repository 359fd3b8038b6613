//! The producer's run: read rows, turn them into events, pack them into requests, and send the
//! requests with several in flight, accounting for every row (rows read = events sent +
//! rejected + blank).
//!
//! Reading and encoding run on one blocking thread; sending runs on the async runtime. A
//! bounded channel between them keeps memory flat: the reader waits when requests are slow.

use std::borrow::Cow;
use std::io::BufRead;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sales_stream::{PutEntry, codec};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::acks::Acks;
use crate::batcher::{Batcher, BatcherError, Packing, PutBatch};
use crate::progress::Progress;
use crate::reader::{CsvReader, Line, ReadError};
use crate::rejects::RejectsFile;
use crate::retry::{Retry, RetryPolicy};
use crate::row::RowParser;
use crate::sink::{RecordSink, SinkError};
use crate::throttle::Throttle;

/// How a run sends.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub packing: Packing,
    pub retry: RetryPolicy,
    /// `PutRecords` requests in flight at once.
    pub max_in_flight: usize,
    /// `--rate`: events per second.
    pub rows_per_s: Option<f64>,
    /// `--shard-limit`: stay under this many shards' write limits.
    pub shard_limit: Option<u32>,
    /// `--skip-rows`: rows an earlier run settled.
    pub skip_rows: u64,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            packing: Packing::Plain,
            retry: RetryPolicy::default(),
            max_in_flight: 8,
            rows_per_s: None,
            shard_limit: None,
            skip_rows: 0,
        }
    }
}

/// Why the stream stopped taking records.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    /// Records kept failing, with no progress, until the retry budget ran out.
    #[error(
        "gave up on {records} records after {attempts} attempts without progress; last error: {last_error}"
    )]
    GaveUp {
        records: usize,
        attempts: u32,
        last_error: String,
    },
    /// The stream refused a record for a reason that retrying cannot fix.
    #[error("the stream refused a record: {code}: {message}")]
    Refused { code: String, message: String },
    /// A request failed for a reason that retrying cannot fix.
    #[error(transparent)]
    Sink(SinkError),
}

/// Why a run stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The input could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The rejects file could not be written (rows are never dropped without it).
    #[error("writing the rejects file {path}: {source}")]
    Rejects {
        path: String,
        source: std::io::Error,
    },
    /// An event cannot be sent at all.
    #[error(transparent)]
    Batcher(#[from] BatcherError),
    /// The stream stopped taking records. Rows `1..=resume_after` are settled.
    #[error(
        "{cause}\n  rows 1 to {resume_after} are settled: resume with --skip-rows {resume_after} (re-sent events are dropped by the consumer as duplicates)"
    )]
    Stream {
        cause: StreamFailure,
        resume_after: u64,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Rows read in this run (after `--skip-rows`).
    pub rows_read: u64,
    /// Rows skipped by `--skip-rows`.
    pub rows_skipped: u64,
    pub events_sent: u64,
    pub rejected: u64,
    pub blank: u64,
    /// Stream records acknowledged (an aggregated record carries many events).
    pub records: u64,
    /// Data plus partition key bytes acknowledged: what the shard limits count.
    pub bytes: u64,
    /// Requests sent again after a failure.
    pub retries: u64,
    /// Records sent again after a failure (the whole request, or its failed entries).
    pub records_resent: u64,
    pub elapsed_s: f64,
    /// Rows `1..=resume_after` are settled: the `--skip-rows` that resumes this run.
    pub resume_after: u64,
    /// Ctrl-C stopped the run before the end of the input.
    pub interrupted: bool,
}

impl Summary {
    pub fn rows_per_s(&self) -> f64 {
        self.rows_read as f64 / self.elapsed_s.max(1e-9)
    }
}

/// State shared by the reading thread, the dispatcher and the requests in flight.
#[derive(Debug, Default)]
struct Shared {
    acks: Mutex<Acks>,
    /// Set to stop reading: on Ctrl-C or after a failure.
    stop: AtomicBool,
    events_sent: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    records_resent: AtomicU64,
}

impl Shared {
    fn acks(&self) -> MutexGuard<'_, Acks> {
        // A panic elsewhere poisons the lock; the counts it guards are still consistent.
        self.acks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64, amount: usize) {
        counter.fetch_add(amount as u64, Ordering::Relaxed);
    }
}

/// What the reading thread counted.
#[derive(Debug, Default)]
struct ReadCounts {
    rows_read: u64,
    rows_skipped: u64,
    rejected: u64,
    blank: u64,
}

/// Streams every row of `reader` to `sink`.
pub async fn send_csv<R, S>(
    reader: CsvReader<R>,
    parser: RowParser,
    sink: Arc<S>,
    mut rejects: RejectsFile,
    options: &SendOptions,
    progress: Progress,
) -> Result<(Summary, RejectsFile), SendError>
where
    R: BufRead + Send + 'static,
    S: RecordSink,
{
    let started = Instant::now();
    let shared = Arc::new(Shared {
        acks: Mutex::new(Acks::resuming_after(options.skip_rows)),
        ..Shared::default()
    });
    // One request ready per request in flight: enough to keep them busy, and a bound on memory
    // (a request is up to 5 MiB).
    let (batches, requests) = mpsc::channel(options.max_in_flight.max(1));
    let reading = {
        let shared = Arc::clone(&shared);
        let batcher = Batcher::new(options.packing.clone());
        let skip_rows = options.skip_rows;
        tokio::task::spawn_blocking(move || {
            let counts = read_rows(
                reader,
                &parser,
                batcher,
                &mut rejects,
                progress,
                &batches,
                &shared,
                skip_rows,
            );
            if counts.is_err() {
                shared.stop.store(true, Ordering::Relaxed);
            }
            (counts, rejects)
        })
    };
    let (sent, interrupted) = dispatch(requests, sink, options, Arc::clone(&shared)).await;
    let (counts, rejects) = match reading.await {
        Ok(done) => done,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    };
    let counts = counts?;
    let resume_after = shared.acks().settled_prefix();
    if let Err(cause) = sent {
        return Err(SendError::Stream {
            cause,
            resume_after,
        });
    }
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let summary = Summary {
        rows_read: counts.rows_read,
        rows_skipped: counts.rows_skipped,
        events_sent: load(&shared.events_sent),
        rejected: counts.rejected,
        blank: counts.blank,
        records: load(&shared.records),
        bytes: load(&shared.bytes),
        retries: load(&shared.retries),
        records_resent: load(&shared.records_resent),
        elapsed_s: started.elapsed().as_secs_f64(),
        resume_after,
        interrupted,
    };
    Ok((summary, rejects))
}

/// The reading thread: rows → events → batches, until the input ends or a stop is asked for.
#[allow(clippy::too_many_arguments)]
fn read_rows<R: BufRead>(
    mut reader: CsvReader<R>,
    parser: &RowParser,
    mut batcher: Batcher,
    rejects: &mut RejectsFile,
    mut progress: Progress,
    batches: &mpsc::Sender<PutBatch>,
    shared: &Shared,
    skip_rows: u64,
) -> Result<ReadCounts, SendError> {
    let mut counts = ReadCounts::default();
    let rejects_error = |rejects: &RejectsFile, source| SendError::Rejects {
        path: rejects.path().display().to_string(),
        source,
    };
    // `false` once the dispatcher stopped taking batches. Time spent blocked here is the
    // stream's, not the input's, so it does not age the batcher's buffered events.
    let send = |batcher: &mut Batcher, batch: PutBatch| {
        let waiting = Instant::now();
        let taken = batches.blocking_send(batch).is_ok();
        batcher.postpone(waiting.elapsed());
        taken
    };
    let mut row = 0_u64;
    let mut open = true;
    while open && !shared.stopping() {
        let Some(line) = reader.next_line()? else {
            break;
        };
        row += 1;
        if row <= skip_rows {
            counts.rows_skipped += 1;
            continue;
        }
        if row == skip_rows + 1 && skip_rows > 0 {
            // Rejects of the rows settled before stay; later ones are written again below.
            rejects
                .keep_before(line.line())
                .map_err(|e| rejects_error(rejects, e))?;
        }
        counts.rows_read += 1;
        match line {
            Line::Blank { .. } => {
                counts.blank += 1;
                shared.acks().read(row, false);
            }
            Line::Malformed { line, raw, reason } => {
                counts.rejected += 1;
                rejects
                    .write(line, &reason, &raw)
                    .map_err(|e| rejects_error(rejects, e))?;
                shared.acks().read(row, false);
            }
            Line::Record(record) => match parser.parse(&record) {
                Ok(event) => {
                    shared.acks().read(row, true);
                    let full =
                        batcher.push(row, event.event_id.to_string(), codec::encode(&event))?;
                    if let Some(batch) = full {
                        open = send(&mut batcher, batch);
                    }
                }
                Err(reason) => {
                    counts.rejected += 1;
                    rejects
                        .write(record.line, &reason.to_string(), &record.raw)
                        .map_err(|e| rejects_error(rejects, e))?;
                    shared.acks().read(row, false);
                }
            },
        }
        for batch in batcher.take_if_stale(Instant::now()) {
            open = open && send(&mut batcher, batch);
        }
        progress.update(counts.rows_read, || {
            format!(
                "{} sent, {} rejected, {:.1} MiB, {} retries",
                shared.events_sent.load(Ordering::Relaxed),
                counts.rejected,
                shared.bytes.load(Ordering::Relaxed) as f64 / 1_048_576.0,
                shared.retries.load(Ordering::Relaxed)
            )
        });
    }
    if open && !shared.stopping() {
        for batch in batcher.finish() {
            if !send(&mut batcher, batch) {
                break;
            }
        }
    }
    rejects.flush().map_err(|e| rejects_error(rejects, e))?;
    progress.finish();
    Ok(counts)
}

/// Sends batches as they come, at most `max_in_flight` at once. Returns the first failure, and
/// whether Ctrl-C stopped the run. Either way, it returns only once no request is in flight.
async fn dispatch<S: RecordSink>(
    mut requests: mpsc::Receiver<PutBatch>,
    sink: Arc<S>,
    options: &SendOptions,
    shared: Arc<Shared>,
) -> (Result<(), StreamFailure>, bool) {
    let mut in_flight = JoinSet::new();
    let mut throttle = Throttle::new(options.rows_per_s, options.shard_limit);
    let mut failure = None;
    let mut interrupted = false;
    let mut receiving = true;
    let mut interrupt = pin!(tokio::signal::ctrl_c());
    let max_in_flight = options.max_in_flight.max(1);
    let stop = |requests: &mut mpsc::Receiver<PutBatch>| {
        shared.stop.store(true, Ordering::Relaxed);
        // Batches still queued are not sent; their rows stay unsettled, after the resume point.
        requests.close();
    };
    while receiving || !in_flight.is_empty() {
        tokio::select! {
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                receiving = false;
                stop(&mut requests);
                tracing::warn!(in_flight = in_flight.len(), "interrupted: letting requests in flight settle (Ctrl-C again to quit at once)");
                tokio::spawn(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("interrupted again: quitting without waiting");
                        std::process::exit(130);
                    }
                });
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                let result = match joined {
                    Ok(result) => result,
                    Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
                };
                if let Err(error) = result {
                    tracing::error!(%error, "a request failed for good: stopping");
                    failure.get_or_insert(error);
                    receiving = false;
                    stop(&mut requests);
                }
            }
            batch = requests.recv(), if receiving && in_flight.len() < max_in_flight => {
                let Some(batch) = batch else {
                    receiving = false;
                    continue;
                };
                if !throttle.is_unlimited() {
                    let wait = throttle.take(Instant::now(), batch.events(), batch.entries.len(), batch.bytes);
                    tokio::time::sleep(wait).await;
                }
                in_flight.spawn(put_batch(Arc::clone(&sink), batch, options.retry, Arc::clone(&shared)));
            }
        }
    }
    (failure.map_or(Ok(()), Err), interrupted)
}

/// Sends one request until every record in it is acknowledged: failed entries are sent again
/// by index, with backoff, until the retry policy gives up.
async fn put_batch<S: RecordSink>(
    sink: Arc<S>,
    batch: PutBatch,
    policy: RetryPolicy,
    shared: Arc<Shared>,
) -> Result<(), StreamFailure> {
    let mut pending: Vec<usize> = (0..batch.entries.len()).collect();
    let mut failures = 0_u32;
    loop {
        let entries: Cow<'_, [PutEntry]> = if pending.len() == batch.entries.len() {
            Cow::Borrowed(&batch.entries)
        } else {
            Cow::Owned(pending.iter().map(|&i| batch.entries[i].clone()).collect())
        };
        let last_error = match sink.put_records(&entries).await {
            Ok(outcomes) => {
                let mut still_pending = Vec::new();
                let mut last_error = String::new();
                for (&index, outcome) in pending.iter().zip(outcomes) {
                    match outcome {
                        None => {
                            let rows = batch.rows_of(index);
                            shared.acks().acknowledge(rows);
                            Shared::count(&shared.events_sent, rows.len());
                            Shared::count(&shared.records, 1);
                            Shared::count(
                                &shared.bytes,
                                crate::batcher::entry_bytes(&batch.entries[index]),
                            );
                        }
                        Some(failure) if failure.retry() == Retry::Permanent => {
                            return Err(StreamFailure::Refused {
                                code: failure.code,
                                message: failure.message,
                            });
                        }
                        Some(failure) => {
                            last_error = format!("{}: {}", failure.code, failure.message);
                            still_pending.push(index);
                        }
                    }
                }
                let progressed = still_pending.len() < pending.len();
                pending = still_pending;
                if progressed {
                    failures = 0;
                }
                last_error
            }
            Err(error) if error.retry() == Retry::Transient => error.to_string(),
            Err(error) => return Err(StreamFailure::Sink(error)),
        };
        if pending.is_empty() {
            return Ok(());
        }
        failures += 1;
        if !policy.allows(failures) {
            return Err(StreamFailure::GaveUp {
                records: pending.len(),
                attempts: failures,
                last_error,
            });
        }
        tracing::debug!(records = pending.len(), failures, %last_error, "sending again");
        Shared::count(&shared.retries, 1);
        Shared::count(&shared.records_resent, pending.len());
        let wait = policy.backoff(failures, &mut rand::rng());
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use sales_stream::{Compression, HashKeyRange, Payload, unpack};

    use super::*;
    use crate::columns::ColumnMap;
    use crate::dates::DateParser;
    use crate::generate::{GenerateOptions, generate};
    use crate::sink::EntryFailure;

    /// A stream that fails on schedule: every third request is throttled whole, and in the
    /// others every entry whose `attempts` so far is below `fail_entry_attempts` fails.
    #[derive(Debug, Default)]
    struct FlakySink {
        requests: AtomicU64,
        fail_entry_attempts: u32,
        /// From this request on, everything is throttled.
        blackout_from: Option<u64>,
        attempts: Mutex<HashMap<String, u32>>,
        delivered: Mutex<Vec<PutEntry>>,
    }

    impl RecordSink for FlakySink {
        async fn put_records(
            &self,
            entries: &[PutEntry],
        ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
            let request = self.requests.fetch_add(1, Ordering::Relaxed);
            if self.blackout_from.is_some_and(|from| request >= from) || request % 3 == 1 {
                return Err(SinkError::Transient(
                    "ProvisionedThroughputExceededException".into(),
                ));
            }
            let mut attempts = self.attempts.lock().expect("lock");
            let mut delivered = self.delivered.lock().expect("lock");
            Ok(entries
                .iter()
                .map(|entry| {
                    let seen = attempts.entry(entry.partition_key.clone()).or_default();
                    *seen += 1;
                    if *seen <= self.fail_entry_attempts {
                        return Some(EntryFailure {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "slow down".into(),
                        });
                    }
                    delivered.push(entry.clone());
                    None
                })
                .collect())
        }
    }

    fn input(rows: u64) -> (CsvReader<std::io::Cursor<Vec<u8>>>, RowParser) {
        let mut csv = Vec::new();
        generate(
            &GenerateOptions {
                rows,
                seed: 3,
                ..GenerateOptions::default()
            },
            &mut csv,
        )
        .expect("generates");
        let reader = CsvReader::new(std::io::Cursor::new(csv), None).expect("header");
        let columns = ColumnMap::from_header(reader.header(), &[]).expect("columns");
        (
            reader,
            RowParser::new(columns, DateParser::default(), "t.csv"),
        )
    }

    fn fast_retries(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    async fn send(
        rows: u64,
        sink: &Arc<FlakySink>,
        options: &SendOptions,
        dir: &tempfile::TempDir,
    ) -> Result<Summary, SendError> {
        let (reader, parser) = input(rows);
        let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
        send_csv(
            reader,
            parser,
            Arc::clone(sink),
            rejects,
            options,
            Progress::new(false),
        )
        .await
        .map(|(summary, _)| summary)
    }

    fn delivered_events(sink: &FlakySink) -> Vec<String> {
        let mut keys = Vec::new();
        for entry in sink.delivered.lock().expect("lock").iter() {
            match unpack(&entry.data).expect("unpacks") {
                Payload::Single(_) => keys.push(entry.partition_key.clone()),
                Payload::Aggregated(users) => {
                    keys.extend(users.into_iter().map(|u| u.partition_key))
                }
            }
        }
        keys.sort();
        keys
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_entries_and_requests_are_resent_until_every_event_is_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        for packing in [
            Packing::Plain,
            Packing::Aggregated {
                shards: HashKeyRange::split_evenly(3),
                target_bytes: 8 * 1024,
                compression: Compression::Zstd,
            },
        ] {
            let sink = Arc::new(FlakySink {
                fail_entry_attempts: 2,
                ..FlakySink::default()
            });
            let options = SendOptions {
                packing,
                retry: fast_retries(10),
                ..SendOptions::default()
            };
            let summary = send(5_000, &sink, &options, &dir).await.expect("sends");
            assert_eq!(
                summary.rows_read,
                summary.events_sent + summary.rejected + summary.blank
            );
            assert_eq!(summary.resume_after, summary.rows_read);
            assert!(summary.retries > 0 && summary.records_resent >= 2 * summary.records);
            let delivered = delivered_events(&sink);
            assert_eq!(
                delivered.len() as u64,
                summary.events_sent,
                "each event exactly once"
            );
            assert!(delivered.windows(2).all(|w| w[0] != w[1]));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exhausted_retries_stop_the_run_with_a_resume_point_that_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(FlakySink {
            blackout_from: Some(12),
            ..FlakySink::default()
        });
        let options = SendOptions {
            retry: fast_retries(4),
            max_in_flight: 3,
            ..SendOptions::default()
        };
        let error = send(20_000, &sink, &options, &dir)
            .await
            .expect_err("gives up");
        let message = error.to_string();
        let SendError::Stream {
            cause: StreamFailure::GaveUp { attempts: 4, .. },
            resume_after,
        } = error
        else {
            panic!("unexpected {error}");
        };
        assert!(resume_after > 0);
        assert!(
            message.contains(&format!("--skip-rows {resume_after}")),
            "{message}"
        );
        // Every event of the settled rows was delivered.
        let (mut reader, parser) = input(20_000);
        let mut expected = Vec::new();
        let mut row = 0;
        while let Some(line) = reader.next_line().expect("reads") {
            row += 1;
            if row > resume_after {
                break;
            }
            if let Line::Record(record) = line
                && let Ok(event) = parser.parse(&record)
            {
                expected.push(event.event_id.to_string());
            }
        }
        let delivered = delivered_events(&sink);
        assert!(
            expected
                .iter()
                .all(|id| delivered.binary_search(id).is_ok())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_permanent_entry_error_is_not_retried() {
        #[derive(Debug)]
        struct Refusing;
        impl RecordSink for Refusing {
            async fn put_records(
                &self,
                entries: &[PutEntry],
            ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
                Ok(vec![
                    Some(EntryFailure {
                        code: "KMSAccessDeniedException".into(),
                        message: "no key".into()
                    });
                    entries.len()
                ])
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (reader, parser) = input(100);
        let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
        let result = send_csv(
            reader,
            parser,
            Arc::new(Refusing),
            rejects,
            &SendOptions::default(),
            Progress::new(false),
        )
        .await;
        assert!(matches!(
            result,
            Err(SendError::Stream {
                cause: StreamFailure::Refused { .. },
                resume_after: 0
            })
        ));
    }
}

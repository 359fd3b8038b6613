//! The producer's run: read rows, turn them into events, pack them into requests, and send the
//! requests with several in flight, accounting for every row (rows read = events sent +
//! rejected + blank).
//!
//! Reading and encoding run on one blocking thread ([`rows`]); sending runs on the async runtime
//! ([`dispatcher`]), each request resent by index until acknowledged ([`resend`]). A bounded
//! channel between them keeps memory flat: the reader waits when requests are slow. What they
//! share is [`Shared`]; what the run did is its [`Summary`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::acks::Acks;
use crate::batcher::{Batcher, BatcherError, Packing, RequestLimits};
use crate::input::KeyedLine;
use crate::progress::Progress;
use crate::reader::ReadError;
use crate::rejects::RejectsFile;
use crate::retry::RetryPolicy;
use crate::row::RowParser;
use crate::sink::{RecordSink, SinkError};

mod dispatcher;
mod resend;
mod rows;
mod summary;
#[cfg(test)]
mod tests;

pub use summary::Summary;

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

/// Streams every row of `lines` ([`crate::input::unkeyed`] lines of a [`crate::CsvReader`], or a
/// [`crate::ReadAhead`]
/// of one) to `sink`.
pub async fn send_csv<L, S>(
    lines: L,
    parser: RowParser,
    sink: Arc<S>,
    mut rejects: RejectsFile,
    options: &SendOptions,
    progress: Progress,
) -> Result<(Summary, RejectsFile), SendError>
where
    L: Iterator<Item = Result<KeyedLine, ReadError>> + Send + 'static,
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
        // A paced run keeps Kinesis-sized requests whatever the sink takes: its pace is charged a
        // request at a time, and a 2 MiB request would be a burst every minute at `--rate 100`.
        let limits = if options.rows_per_s.is_some() || options.shard_limit.is_some() {
            RequestLimits::KINESIS
        } else {
            sink.request_limits()
        };
        let batcher = Batcher::new(options.packing.clone()).with_limits(limits);
        let skip_rows = options.skip_rows;
        tokio::task::spawn_blocking(move || {
            let counts = rows::read_rows(
                lines,
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
    let (sent, interrupted) =
        dispatcher::dispatch(requests, sink, options, Arc::clone(&shared)).await;
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

/// State shared by the packing thread, the dispatcher and the requests in flight.
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

//! `consumer poll`: reads every shard of a stream in batches, runs the batch step, writes the
//! files and commits each shard's position and ids.
//!
//! Per batch: read after the committed position → [`process_batch`] → write every file → write
//! the shard state. Files are named by (shard, first sequence number), so a batch retried after a
//! crash before its commit rewrites the same objects, and the committed ids drop events that a
//! producer re-sent in a later batch.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sales_stream::{LocalStream, LocalStreamError, StartingPosition, StreamRecord};
use tokio::task::JoinSet;

use crate::batch::{BatchCounts, BatchError, BatchOptions, process_batch};
use crate::lake::{Lake, LakeError};
use crate::layout::shard_state;
use crate::state::{DEFAULT_DEDUPE_WINDOW, ShardState, StateError};

/// Options of the poller.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Records per batch and shard.
    pub batch_size: usize,
    /// Stop once every shard is caught up, instead of waiting for more.
    pub until_drained: bool,
    /// How long a caught-up shard waits before reading again.
    pub idle_wait: Duration,
    /// Recent committed ids kept per shard to drop re-sent events.
    pub dedupe_window: usize,
    pub batch: BatchOptions,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            until_drained: false,
            idle_wait: Duration::from_secs(1),
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            batch: BatchOptions::default(),
        }
    }
}

/// Why polling stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Reading the stream failed.
    #[error("reading the stream: {0}")]
    Stream(#[from] LocalStreamError),
    /// Writing to or reading from the lake failed.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A shard's state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The batch step failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A shard's worker stopped unexpectedly.
    #[error("a shard worker failed: {0}")]
    Worker(String),
}

/// A stream read shard by shard.
pub trait ShardSource: Send + Sync + 'static {
    fn stream_name(&self) -> &str;
    fn shard_ids(&self) -> Vec<String>;
    /// Up to `limit` records after `position`; empty when caught up.
    fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StreamRecord>, PollError>> + Send;
}

impl ShardSource for LocalStream {
    fn stream_name(&self) -> &str {
        self.name()
    }

    fn shard_ids(&self) -> Vec<String> {
        LocalStream::shard_ids(self).map(str::to_owned).collect()
    }

    async fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, PollError> {
        Ok(LocalStream::read(self, shard_id, position, limit)?)
    }
}

/// What a poll did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PollSummary {
    pub shards: usize,
    pub batches: u64,
    pub counts: BatchCounts,
    pub files: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
}

impl PollSummary {
    fn add(&mut self, other: &PollSummary) {
        self.batches += other.batches;
        self.counts.add(&other.counts);
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// Reads the committed state of a shard, or a fresh one.
pub async fn load_state(
    lake: &impl Lake,
    stream: &str,
    shard_id: &str,
    window: usize,
) -> Result<ShardState, PollError> {
    let key = shard_state(stream, shard_id);
    Ok(match lake.get(&key).await? {
        Some(bytes) => ShardState::decode(&key, &bytes, window)?,
        None => ShardState::new(window),
    })
}

/// Polls every shard concurrently until drained (with `until_drained`) or until `stop` is set.
pub async fn poll<S: ShardSource, L: Lake + 'static>(
    source: Arc<S>,
    lake: Arc<L>,
    options: PollOptions,
    stop: Arc<AtomicBool>,
) -> Result<PollSummary, PollError> {
    let started = Instant::now();
    let mut workers = JoinSet::new();
    let shards = source.shard_ids();
    for shard_id in shards.clone() {
        let (source, lake, options, stop) =
            (source.clone(), lake.clone(), options.clone(), stop.clone());
        workers
            .spawn(async move { poll_shard(&*source, &*lake, &shard_id, &options, &stop).await });
    }
    let mut summary = PollSummary {
        shards: shards.len(),
        ..PollSummary::default()
    };
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(shard)) => summary.add(&shard),
            Ok(Err(e)) => {
                // One failing shard stops the others at their next batch boundary.
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(PollError::Worker(e.to_string()));
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

async fn poll_shard(
    source: &impl ShardSource,
    lake: &impl Lake,
    shard_id: &str,
    options: &PollOptions,
    stop: &AtomicBool,
) -> Result<PollSummary, PollError> {
    let stream = source.stream_name().to_owned();
    let mut state = load_state(lake, &stream, shard_id, options.dedupe_window).await?;
    let mut summary = PollSummary::default();
    while !stop.load(Ordering::Relaxed) {
        let position = match &state.sequence_number {
            Some(sequence) => StartingPosition::AfterSequenceNumber(sequence.clone()),
            None => StartingPosition::TrimHorizon,
        };
        let records = source.read(shard_id, &position, options.batch_size).await?;
        if records.is_empty() {
            if options.until_drained {
                break;
            }
            tokio::time::sleep(options.idle_wait).await;
            continue;
        }
        // The batch step is CPU work (Parquet encoding): keep it off the async workers.
        let (shard, batch_options, window) =
            (shard_id.to_owned(), options.batch.clone(), state.recent_ids);
        let (output, window) = tokio::task::spawn_blocking(move || {
            let output = process_batch(&shard, &records, |id| window.contains(id), &batch_options);
            (output, window)
        })
        .await
        .map_err(|e| PollError::Worker(e.to_string()))?;
        state.recent_ids = window;
        let output = output?;
        for file in &output.files {
            summary.bytes += file.bytes.len() as u64;
        }
        summary.files += output.files.len() as u64;
        for file in output.files {
            lake.put(&file.key, file.bytes).await?;
        }
        // Commit: only now are the batch's ids and position durable.
        for id in &output.accepted_ids {
            state.recent_ids.insert(*id);
        }
        state.sequence_number = output.last_sequence_number;
        state.counts.add(&output.counts);
        state.batches += 1;
        lake.put(
            &shard_state(&stream, shard_id),
            state.encode(&stream, shard_id),
        )
        .await?;
        summary.batches += 1;
        summary.counts.add(&output.counts);
        tracing::info!(
            shard = shard_id,
            received = output.counts.received,
            accepted = output.counts.accepted,
            duplicates = output.counts.duplicates,
            quarantined = output.counts.quarantined,
            "batch committed"
        );
    }
    Ok(summary)
}

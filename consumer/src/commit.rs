//! One shard's batch from records to a committed position: the step the poller and the Lambda
//! share.
//!
//! Order matters: every file of the batch is written first, and only then the shard's state
//! (position and recent ids). A crash in between leaves files that the retried batch overwrites,
//! because file names are deterministic per (shard, first sequence number); the state never
//! points past records whose files are not written.

use futures::{StreamExt, TryStreamExt};
use sales_stream::StreamRecord;

use crate::batch::{BatchCounts, BatchError, BatchOptions, process_batch};
use crate::lake::{Lake, LakeError};
use crate::layout::shard_state;
use crate::state::{IdWindow, ShardState, StateError};

/// Files of one batch written at the same time.
const MAX_CONCURRENT_WRITES: usize = 16;

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Reading or writing the lake failed: nothing after the previous commit is durable.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// The shard's stored state is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The batch step failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The batch step's thread stopped unexpectedly.
    #[error("the batch worker failed: {0}")]
    Worker(String),
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub counts: BatchCounts,
    /// Records at or before the committed position, delivered again and skipped.
    pub replayed: u64,
    pub files: u64,
    pub bytes: u64,
}

/// Reads the committed state of a shard, or a fresh one.
pub async fn load_state(
    lake: &impl Lake,
    stream: &str,
    shard_id: &str,
    window: usize,
) -> Result<ShardState, CommitError> {
    let key = shard_state(stream, shard_id);
    Ok(match lake.get(&key).await? {
        Some(bytes) => ShardState::decode(&key, &bytes, window)?,
        None => ShardState::new(window),
    })
}

/// Runs the batch step over `records` of one shard, writes its files, then commits `state`.
/// Records at or before the committed position were committed before and are skipped.
///
/// After an error `state` may be ahead of what is stored: reload it before trying again.
pub async fn process_and_commit(
    lake: &impl Lake,
    stream: &str,
    shard_id: &str,
    state: &mut ShardState,
    mut records: Vec<StreamRecord>,
    options: &BatchOptions,
) -> Result<Committed, CommitError> {
    let before = records.len();
    if let Some(committed) = &state.sequence_number {
        records.retain(|r| &r.sequence_number > committed);
    }
    let mut committed = Committed {
        replayed: (before - records.len()) as u64,
        ..Committed::default()
    };
    if records.is_empty() {
        return Ok(committed);
    }
    // The batch step is CPU work (Parquet encoding): keep it off the async workers.
    let (shard, batch_options) = (shard_id.to_owned(), options.clone());
    let window = std::mem::replace(&mut state.recent_ids, IdWindow::new(0));
    let (output, window) = tokio::task::spawn_blocking(move || {
        let output = process_batch(&shard, &records, |id| window.contains(id), &batch_options);
        (output, window)
    })
    .await
    .map_err(|e| CommitError::Worker(e.to_string()))?;
    state.recent_ids = window;
    let output = output?;
    committed.files = output.files.len() as u64;
    committed.bytes = output.files.iter().map(|f| f.bytes.len() as u64).sum();
    // A batch spans many date partitions; its files are independent objects, so they are written
    // side by side: on S3 each write is a round trip, and one after another they add up.
    futures::stream::iter(output.files)
        .map(|file| async move { lake.put(&file.key, file.bytes).await })
        .buffer_unordered(MAX_CONCURRENT_WRITES)
        .try_collect::<()>()
        .await?;
    // Commit: only now are the batch's ids and position durable.
    for id in &output.accepted_ids {
        state.recent_ids.insert(*id);
    }
    state.sequence_number = output.last_sequence_number;
    state.counts.add(&output.counts);
    state.batches += 1;
    lake.put(
        &shard_state(stream, shard_id),
        state.encode(stream, shard_id),
    )
    .await?;
    committed.counts = output.counts;
    Ok(committed)
}

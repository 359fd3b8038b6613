//! The commit protocol: one shard's batch from records to a committed position, exactly once,
//! whatever crashes, retries and concurrent writers do. The poller and the Lambda share it.
//!
//! A shard's state object holds the committed position and, while a batch is in flight, the
//! keys that batch will write (its intent). Every write of the state is a compare-and-swap
//! against the version this writer last read or wrote. A batch:
//!
//! 1. If the state has an intent that never committed (a crash, a lost writer), takes the shard
//!    over with a compare-and-swap, then removes that intent's files.
//! 2. Skips records at or before the committed position (redeliveries: counted as replayed).
//! 3. Records its own intent: the keys it will write, named by the intent's generation.
//! 4. Writes its files and its id window.
//! 5. Commits: position, counts, window, no intent. Then removes the superseded id window.
//!
//! Why this is exactly once: the position only moves in step 5, and only if nobody wrote the
//! state since step 3, so a batch's records count once they are all in the lake and never
//! twice. A crash anywhere leaves either the old position (and an intent whose files the next
//! attempt removes before writing its own) or the new one. Files are removed only by a writer
//! that holds the shard: after its own compare-and-swap in step 1, or, when it lost the shard
//! at step 5, its own files, which no one else can have written because their names carry its
//! intent's generation. A writer that loses at step 3 has written nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sales_stream::StreamRecord;
use uuid::Uuid;

use crate::batch::{BatchCounts, BatchError, BatchOptions, OutputFile, process_batch};
use crate::lake::{
    Lake, LakeError, MAX_CONCURRENT_REQUESTS, Precondition, Swapped, Version, remove_all, swap,
};
use crate::layout::{batch_name, shard_state, shard_window};
use crate::state::{IdWindow, Intent, ShardState, StateError, StreamIdentity, WindowLimits};

/// Times a batch is tried again after losing a compare-and-swap to another writer of its shard
/// (each time after reading the winner's state) before the conflict is reported.
const MAX_CONFLICT_RETRIES: u32 = 12;
/// The wait before the first retry after a lost compare-and-swap; it doubles per retry, up to
/// [`MAX_CONFLICT_BACKOFF`], and each wait is a random part of it (full jitter). Two writers
/// that take each other's batches over would otherwise collide again and again.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(20);
const MAX_CONFLICT_BACKOFF: Duration = Duration::from_secs(2);

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
    /// The shard's state holds positions in another stream of the same name.
    #[error(
        "{key} holds positions in stream {stored}, but this is {given}: the stream was deleted \
         and created again, or another stream has the name {stream:?}. Those positions would \
         skip this stream's records, so nothing was written. Consume it into another lake, or \
         remove _state/{stream}/ from this one to start over from the stream's oldest record \
         (the lake's data stays)"
    )]
    OtherStream {
        key: String,
        stream: String,
        stored: String,
        given: String,
    },
    /// A commit's answer was lost and the state, read again, has moved on too far to tell
    /// whether it was applied. Its files are left in place (removing committed files would lose
    /// data); `consumer compact` drops any event they hold twice.
    #[error(
        "shard {shard_id}: could not tell whether the batch of generation {generation} committed"
    )]
    Undecided { shard_id: String, generation: u64 },
    /// Other writers kept committing this shard: every attempt lost its compare-and-swap.
    #[error("shard {shard_id} is being committed by another consumer ({attempts} attempts lost)")]
    Contended { shard_id: String, attempts: u32 },
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Counts of this batch; `replayed` records were skipped as already committed.
    pub counts: BatchCounts,
    pub files: u64,
    pub bytes: u64,
    /// Compare-and-swaps lost to another writer before this commit.
    pub conflicts: u32,
    /// Files of an uncommitted earlier attempt that were removed.
    pub recovered_files: u64,
    /// The ids of the events this batch accepted.
    pub accepted_ids: Vec<Uuid>,
}

/// A shard's commit state as this writer last read or wrote it, with its id window.
///
/// Kept between batches (and, in the Lambda, between warm invocations): a stale copy is safe,
/// because its first write loses the compare-and-swap and the state is read again.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    state: ShardState,
    window: Arc<IdWindow>,
    version: Option<Version>,
    limits: WindowLimits,
    identity: StreamIdentity,
    /// Event ids known to be in the lake already, besides the window (a replay reads them from
    /// the lake's `sales_events`): their events are dropped as duplicates.
    known: Arc<HashSet<Uuid>>,
}

/// The outcome of a compare-and-swap write of the state.
enum Swap {
    /// The write was applied (perhaps found so by reading it back).
    Won,
    /// It was not, or was superseded: the state as read back (`None`: there is none).
    Lost(Option<Box<ShardState>>),
}

/// The result of one attempt at a batch.
enum Attempt {
    Done(Committed),
    /// Lost a compare-and-swap: read the state again and retry.
    Lost,
}

impl Checkpoint {
    /// Reads the committed state of a shard (and its id window), or starts a fresh one.
    ///
    /// The state must belong to `identity`'s stream: positions in another stream of the same
    /// name (re-created, or another embedded stream directory) would skip records, so that is an
    /// error, before anything is written.
    pub async fn load(
        lake: &impl Lake,
        identity: &StreamIdentity,
        stream: &str,
        shard_id: &str,
        limits: WindowLimits,
    ) -> Result<Self, CommitError> {
        let key = shard_state(stream, shard_id);
        let mut previous = None;
        loop {
            let Some(object) = lake.get(&key).await? else {
                return Ok(Self {
                    state: ShardState::new(stream, shard_id, identity),
                    window: Arc::default(),
                    version: None,
                    limits,
                    identity: identity.clone(),
                    known: Arc::default(),
                });
            };
            let mut state = ShardState::decode(&key, &object.bytes)?;
            match &state.stream_identity {
                Some(stored) if !stored.matches(identity) => {
                    return Err(CommitError::OtherStream {
                        key,
                        stream: stream.to_owned(),
                        stored: stored.to_string(),
                        given: identity.to_string(),
                    });
                }
                // Recorded at the next write: what the state lacked (states written before
                // identities were kept, or a creation time only the poller knows).
                Some(stored) if stored.created.is_some() || identity.created.is_none() => {}
                _ => state.stream_identity = Some(identity.clone()),
            }
            let mut window = match &state.window_key {
                Some(window_key) => match lake.get(window_key).await? {
                    Some(window) => IdWindow::decode(window_key, &window.bytes)?,
                    // Another writer committed between the two reads and removed the window
                    // this state named: read the state again. Missing twice for the same state
                    // version, it is lost.
                    None if previous.as_ref() != Some(&object.version) => {
                        previous = Some(object.version);
                        continue;
                    }
                    None => {
                        // Lost for good (removed by hand, or by a tool that did not know the
                        // protocol): the shard goes on with an empty window rather than stop.
                        // Re-sent events it would have caught are dropped when their day is
                        // compacted.
                        tracing::warn!(
                            key,
                            window = window_key,
                            "the shard's id window is missing; starting an empty one"
                        );
                        IdWindow::default()
                    }
                },
                None => IdWindow::default(),
            };
            window.expire(Utc::now(), limits);
            return Ok(Self {
                state,
                window: Arc::new(window),
                version: Some(object.version),
                limits,
                identity: identity.clone(),
                known: Arc::default(),
            });
        }
    }

    pub fn state(&self) -> &ShardState {
        &self.state
    }

    pub fn window(&self) -> &IdWindow {
        &self.window
    }

    /// Drops, from the next batches on, events with these ids as duplicates.
    pub fn know(&mut self, ids: Arc<HashSet<Uuid>>) {
        self.known = ids;
    }

    /// Forgets the committed position (in memory; the next write records it), so that records
    /// at or before it are processed again: a replay re-reads a range it may have read before,
    /// and drops what is in the lake by id instead.
    pub fn forget_position(&mut self) {
        self.state.sequence_number = None;
    }

    /// Commits `records` of the shard (in stream order): writes their files, then the position.
    /// Records at or before the committed position are skipped. A compare-and-swap lost to
    /// another writer is retried from that writer's state.
    ///
    /// After an error the checkpoint may be stale; it is read again at its next use only if the
    /// caller loads it again, which callers do after errors.
    pub async fn commit(
        &mut self,
        lake: &impl Lake,
        records: Vec<StreamRecord>,
        options: &BatchOptions,
    ) -> Result<Committed, CommitError> {
        let records: Arc<[StreamRecord]> = records.into();
        let mut conflicts = 0;
        loop {
            match self.attempt(lake, &records, options).await? {
                Attempt::Done(mut committed) => {
                    committed.conflicts = conflicts;
                    return Ok(committed);
                }
                Attempt::Lost if conflicts < MAX_CONFLICT_RETRIES => {
                    conflicts += 1;
                    let ceiling = CONFLICT_BACKOFF
                        .saturating_mul(1 << conflicts.min(16))
                        .min(MAX_CONFLICT_BACKOFF);
                    let wait = ceiling.mul_f64(rand::random::<f64>());
                    tracing::warn!(
                        stream = self.state.stream,
                        shard = self.state.shard_id,
                        wait_ms = wait.as_millis() as u64,
                        "another consumer wrote this shard's state; reading it again"
                    );
                    tokio::time::sleep(wait).await;
                    self.reload(lake).await?;
                }
                Attempt::Lost => {
                    return Err(CommitError::Contended {
                        shard_id: self.state.shard_id.clone(),
                        attempts: conflicts + 1,
                    });
                }
            }
        }
    }

    /// Reads the shard's state again (after another writer wrote it), keeping what this
    /// checkpoint was told: the stream's identity and the ids known to be in the lake.
    async fn reload(&mut self, lake: &impl Lake) -> Result<(), CommitError> {
        let (stream, shard) = (self.state.stream.clone(), self.state.shard_id.clone());
        let known = self.known.clone();
        *self = Self::load(lake, &self.identity.clone(), &stream, &shard, self.limits).await?;
        self.known = known;
        Ok(())
    }

    /// Takes the shard over from an attempt that did not commit, and removes that attempt's
    /// files: the number removed, or `None` if another writer wrote the state meanwhile.
    async fn take_over(&mut self, lake: &impl Lake) -> Result<Option<u64>, CommitError> {
        let Some(intent) = self.state.in_flight.clone() else {
            return Ok(Some(0));
        };
        if let Swap::Lost(_) = self.swap(lake, self.state.next()).await? {
            return Ok(None);
        }
        remove_all(lake, &intent.keys).await?;
        tracing::info!(
            stream = self.state.stream,
            shard = self.state.shard_id,
            files = intent.keys.len(),
            "removed the files of an attempt that did not commit"
        );
        Ok(Some(intent.keys.len() as u64))
    }

    /// Settles an attempt that did not commit (takes the shard over, removes its files) before
    /// anything else reads the lake: a replay reads the ids already in the lake, and must not
    /// count those of files about to be removed. Returns the files removed.
    pub async fn recover(&mut self, lake: &impl Lake) -> Result<u64, CommitError> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            if let Some(files) = self.take_over(lake).await? {
                return Ok(files);
            }
            self.reload(lake).await?;
        }
        Err(CommitError::Contended {
            shard_id: self.state.shard_id.clone(),
            attempts: MAX_CONFLICT_RETRIES + 1,
        })
    }

    /// Writes `state` if the stored state is still the one this checkpoint knows. A lost answer
    /// is settled by reading the state back ([`swap`]); a loss returns the state as it is now, so
    /// the caller can tell "never applied" from "applied, and moved on from since" with
    /// [`ShardState::has_committed`].
    async fn swap(&mut self, lake: &impl Lake, state: ShardState) -> Result<Swap, CommitError> {
        let key = shard_state(&state.stream, &state.shard_id);
        let expected = Precondition::from_read(self.version.as_ref());
        match swap(lake, &key, state.encode(), expected).await? {
            Swapped::Won(version) => {
                self.version = Some(version);
                self.state = state;
                Ok(Swap::Won)
            }
            Swapped::Lost(Some(object)) => Ok(Swap::Lost(Some(Box::new(ShardState::decode(
                &key,
                &object.bytes,
            )?)))),
            Swapped::Lost(None) => Ok(Swap::Lost(None)),
        }
    }

    async fn attempt(
        &mut self,
        lake: &impl Lake,
        records: &Arc<[StreamRecord]>,
        options: &BatchOptions,
    ) -> Result<Attempt, CommitError> {
        let mut committed = Committed::default();
        // 1. An earlier attempt did not commit: take the shard over, then remove its files.
        match self.take_over(lake).await? {
            Some(files) => committed.recovered_files = files,
            None => return Ok(Attempt::Lost),
        }
        // 2. Redelivered records: the committed position says they are in the lake.
        let start = match &self.state.sequence_number {
            Some(position) => records
                .iter()
                .position(|r| r.sequence_number > *position)
                .unwrap_or(records.len()),
            None => 0,
        };
        committed.counts.replayed = start as u64;
        if start == records.len() {
            if start > 0 || self.state.in_flight.is_some() {
                let mut state = self.state.next();
                state.counts.replayed += committed.counts.replayed;
                state.in_flight = None;
                if let Swap::Lost(_) = self.swap(lake, state).await? {
                    return Ok(Attempt::Lost);
                }
            }
            return Ok(Attempt::Done(committed));
        }
        // 3. The batch step (CPU work: Parquet encoding, off the async workers), then the intent.
        let generation = self.state.generation + 1;
        let (stream, shard_id) = (self.state.stream.clone(), self.state.shard_id.clone());
        let first = records[start].sequence_number.clone();
        let name = batch_name(&stream, &shard_id, first.as_str(), generation);
        let (batch, window, limits) = (records.clone(), self.window.clone(), self.limits);
        let known = self.known.clone();
        let batch_options = options.clone();
        let shard = shard_id.clone();
        let (output, window) = tokio::task::spawn_blocking(move || {
            let records = &batch[start..];
            let output = process_batch(
                &shard,
                &name,
                records,
                |id| window.contains(id) || known.contains(id),
                &batch_options,
            )?;
            let now = Utc::now();
            let mut window = IdWindow::clone(&window);
            window.add(now, output.accepted_ids.iter().copied());
            window.expire(now, limits);
            Ok::<_, BatchError>((output, window))
        })
        .await
        .map_err(|e| CommitError::Worker(e.to_string()))??;
        let window_key = shard_window(&stream, &shard_id, generation);
        committed.files = output.files.len() as u64;
        committed.bytes = output.files.iter().map(|f| f.bytes.len() as u64).sum();
        let mut files = output.files;
        files.push(OutputFile {
            key: window_key.clone(),
            bytes: window.encode(),
            rows: window.len(),
        });
        let keys: Vec<String> = files.iter().map(|f| f.key.clone()).collect();
        let mut state = self.state.next();
        state.in_flight = Some(Intent {
            first_sequence_number: Some(first),
            last_sequence_number: output.last_sequence_number.clone(),
            keys: keys.clone(),
            started_at: Utc::now(),
        });
        if let Swap::Lost(_) = self.swap(lake, state).await? {
            return Ok(Attempt::Lost);
        }
        // 4. The files. A batch spans many date partitions; its files are independent objects,
        // so they are written side by side: on S3 each write is a round trip.
        // Every write is awaited, failed or not, before the batch reports anything: a write
        // dropped in flight could still land after the next attempt removed this attempt's files,
        // and would then count twice.
        let writes: Vec<Result<(), LakeError>> = futures::stream::iter(files)
            .map(|file| async move { lake.put(&file.key, file.bytes).await })
            .buffer_unordered(MAX_CONCURRENT_REQUESTS)
            .collect()
            .await;
        writes.into_iter().collect::<Result<(), LakeError>>()?;
        // 5. Commit.
        let superseded_window = self.state.window_key.clone();
        let mut state = self.state.next();
        state.remember_commit(generation);
        state.sequence_number = output.last_sequence_number;
        state.last_arrival = records.last().map(|r| r.approximate_arrival);
        state.committed_at = Some(Utc::now());
        state.counts.add(&output.counts);
        state.counts.replayed += committed.counts.replayed;
        state.batches += 1;
        for day in &output.days {
            state.touched.insert(*day, state.batches);
        }
        state.window_key = Some(window_key);
        state.in_flight = None;
        if let Swap::Lost(current) = self.swap(lake, state).await? {
            match current.as_ref().and_then(|c| c.has_committed(generation)) {
                // Applied, its answer lost, and other writers have moved on from it since: the
                // files are committed, and this checkpoint is stale.
                Some(true) => {
                    self.reload(lake).await?;
                }
                // Another writer took the shard over while these files were written; they are
                // this attempt's alone (named by its generation), so they go.
                Some(false) => {
                    remove_all(lake, &keys).await?;
                    return Ok(Attempt::Lost);
                }
                None => {
                    return Err(CommitError::Undecided {
                        shard_id,
                        generation,
                    });
                }
            }
        } else {
            self.window = Arc::new(window);
        }
        if let Some(key) = superseded_window
            && let Err(error) = lake.delete(&key).await
        {
            // Only storage is lost: the state no longer names it.
            tracing::warn!(key, error = %error, "could not remove a superseded id window");
        }
        let replayed = committed.counts.replayed;
        committed.counts = output.counts;
        committed.counts.replayed = replayed;
        committed.accepted_ids = output.accepted_ids;
        Ok(Attempt::Done(committed))
    }
}

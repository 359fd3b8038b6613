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
//! 3. Decodes the records, loads the id index of the sale dates they fall on (the shard's and
//!    its ancestors', [`crate::commit::index`]), drops the events committed before, and records its own
//!    intent: the keys it will write (data files and new index segments), named by the intent's
//!    generation.
//! 4. Writes its files and its index segments.
//! 5. Commits: position, counts, the index manifest, no intent. Then removes the index segments
//!    the new ones absorbed.
//!
//! Why this is exactly once: the position only moves in step 5, and only if nobody wrote the
//! state since step 3, so a batch's records count once they are all in the lake and never
//! twice. A crash anywhere leaves either the old position (and an intent whose files the next
//! attempt removes before writing its own) or the new one. Files are removed only by a writer
//! that holds the shard: after its own compare-and-swap in step 1, or, when it lost the shard
//! at step 5, its own files, which no one else can have written because their names carry its
//! intent's generation. A writer that loses at step 3 has written nothing.
//!
//! Why an id is never counted twice: the index a batch checks is the one named by the state
//! version its intent (and so its commit) is conditional on, so no commit can slip in between
//! the check and the commit. A re-sent event falls on the same sale date as its original, whose
//! segments the batch loads; a shard made by a reshard loads its ancestors' too, which are
//! complete because a child is read only after its parents were read to their end.
//!
//! A replay ([`Checkpoint::replay`]) runs the same steps without skipping records at or before
//! the position, and commits without moving it: replaying any range, twice or concurrently with
//! the live consumer, adds only the events the index lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sales_stream::StreamRecord;

use crate::commit::index::{
    DayIds, DayUpdate, IdCache, IndexError, Lookup, ShardIndex, encode_segment, ids_in_lake,
};
use crate::commit::state::{Intent, ShardState, StateError, StreamIdentity};
use crate::core::batch::{
    BatchCounts, BatchError, BatchOptions, OutputFile, decode_batch, finish_batch,
};
use crate::core::layout::{batch_name, id_segment, shard_objects, shard_state};
use crate::lake::{Lake, LakeError, Precondition, Swapped, Version, remove_all, swap};

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
    /// The id index could not be read.
    #[error(transparent)]
    Index(#[from] IndexError),
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
    /// Committed ids the batch's dedupe looked up (the index of the dates it touched).
    pub index_ids: u64,
    /// Index segment objects the batch wrote (part of `files`) and bytes they hold.
    pub index_files: u64,
    pub index_bytes: u64,
}

/// Whether a batch moves its shard's committed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The live consumer: records at or before the position are skipped, and the commit moves
    /// it to the batch's last record.
    Advance,
    /// A replay: every record is processed (the index drops what is in the lake), and the
    /// position stays where the live consumer put it.
    Keep,
}

/// A shard's commit state as this writer last read or wrote it.
///
/// Kept between batches (and, in the Lambda, between warm invocations): a stale copy is safe,
/// because its first write loses the compare-and-swap and the state is read again.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    state: ShardState,
    version: Option<Version>,
    identity: StreamIdentity,
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
    /// Reads the committed state of a shard, or starts a fresh one.
    ///
    /// The state must belong to `identity`'s stream: positions in another stream of the same
    /// name (re-created, or another embedded stream directory) would skip records, so that is an
    /// error, before anything is written.
    pub async fn load(
        lake: &impl Lake,
        identity: &StreamIdentity,
        stream: &str,
        shard_id: &str,
    ) -> Result<Self, CommitError> {
        let key = shard_state(stream, shard_id);
        let Some(object) = lake.get(&key).await? else {
            let mut state = ShardState::new(stream, shard_id, identity);
            // Objects of an earlier state of this shard (its index, or its id window before
            // the index) mean the lake holds its events: the new state's index cannot be the
            // whole story, and dates it lacks are read from the lake.
            let earlier = lake.list(&shard_objects(stream, shard_id)).await?;
            if !earlier.is_empty() {
                tracing::warn!(
                    key,
                    objects = earlier.len(),
                    "the shard's state is missing but its index is not: events of dates the \
                     new state has not indexed are checked against the lake"
                );
                state.index_partial = true;
                // Generations name objects (index segments, batch files), and processes cache
                // segments by name: the new state's must never name an old one.
                state.generation = earlier
                    .iter()
                    .filter_map(|key| generation_in(key))
                    .max()
                    .unwrap_or(0);
            }
            return Ok(Self {
                state,
                version: None,
                identity: identity.clone(),
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
        Ok(Self {
            state,
            version: Some(object.version),
            identity: identity.clone(),
        })
    }

    pub fn state(&self) -> &ShardState {
        &self.state
    }

    /// Whether the shard's ancestors are unknown: its state is new, or was written before they
    /// were recorded. The caller then gives them with [`Checkpoint::set_ancestors`].
    pub fn needs_lineage(&self) -> bool {
        self.state.ancestors.is_none()
    }

    /// Records the shards this one was split or merged from, and their ancestors (a listing of
    /// the stream's shards gives them; ancestors past the stream's retention are found in the
    /// ancestors' states). Written with the next batch.
    pub async fn set_ancestors(
        &mut self,
        lake: &impl Lake,
        ancestors: impl IntoIterator<Item = String>,
    ) -> Result<(), CommitError> {
        let mut known = BTreeSet::new();
        let mut pending: Vec<String> = self.state.ancestors.iter().flatten().cloned().collect();
        pending.extend(ancestors);
        while let Some(shard_id) = pending.pop() {
            if shard_id == self.state.shard_id || !known.insert(shard_id.clone()) {
                continue;
            }
            let key = shard_state(&self.state.stream, &shard_id);
            if let Some(object) = lake.get(&key).await? {
                let state = ShardState::decode(&key, &object.bytes)?;
                pending.extend(state.ancestors.iter().flatten().cloned());
            }
        }
        self.state.ancestors = Some(known.into_iter().collect());
        Ok(())
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
        cache: &IdCache,
        records: Vec<StreamRecord>,
        options: &BatchOptions,
    ) -> Result<Committed, CommitError> {
        self.run(lake, cache, records, options, Position::Advance)
            .await
    }

    /// Commits `records` again without moving the position: events whose ids the index holds
    /// are duplicates, the others (records a failed batch left behind) go into the lake.
    pub async fn replay(
        &mut self,
        lake: &impl Lake,
        cache: &IdCache,
        records: Vec<StreamRecord>,
        options: &BatchOptions,
    ) -> Result<Committed, CommitError> {
        self.run(lake, cache, records, options, Position::Keep)
            .await
    }

    async fn run(
        &mut self,
        lake: &impl Lake,
        cache: &IdCache,
        records: Vec<StreamRecord>,
        options: &BatchOptions,
        position: Position,
    ) -> Result<Committed, CommitError> {
        let records: Arc<[StreamRecord]> = records.into();
        let mut conflicts = 0;
        loop {
            match self
                .attempt(lake, cache, &records, options, position)
                .await?
            {
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
    /// checkpoint was told: the stream's identity and the shard's ancestors.
    async fn reload(&mut self, lake: &impl Lake) -> Result<(), CommitError> {
        let (stream, shard) = (self.state.stream.clone(), self.state.shard_id.clone());
        let ancestors = self.state.ancestors.clone();
        *self = Self::load(lake, &self.identity.clone(), &stream, &shard).await?;
        if self.state.ancestors.is_none()
            && let Some(ancestors) = ancestors
        {
            self.set_ancestors(lake, ancestors).await?;
        }
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

    /// Whether another writer has written the shard's state since this checkpoint read it.
    async fn is_stale(&self, lake: &impl Lake) -> Result<bool, CommitError> {
        let key = shard_state(&self.state.stream, &self.state.shard_id);
        let current = lake.get(&key).await?.map(|object| object.version);
        Ok(current != self.version)
    }

    /// The committed ids of `days`: the shard's index and its ancestors', and the lake's ids of
    /// a date where some segment cannot be had (and, for a replay, of every date). `None` if a
    /// segment is gone because another writer moved the state on (read it again and retry).
    async fn lookup(
        &self,
        lake: &impl Lake,
        cache: &IdCache,
        days: &BTreeSet<NaiveDate>,
        position: Position,
    ) -> Result<Option<Lookup>, CommitError> {
        let own = shard_index(&self.state);
        // Read at every batch: a closed shard's state changes only when a replay commits into
        // it, but then its new ids must count here too.
        let ancestors = if days.is_empty() {
            Vec::new()
        } else {
            read_states(
                lake,
                &self.state.stream,
                self.state.ancestors.iter().flatten(),
            )
            .await?
        };
        let mut lookup = Lookup::default();
        for &day in days {
            let mut ids = DayIds::default();
            let mut from_lake = false;
            match own.load_day(lake, cache, day).await? {
                Some(segments) => ids.own = segments,
                None => {
                    let listed = self.state.ids.get(&day).cloned().unwrap_or_default();
                    if !listed.is_empty() {
                        if self.is_stale(lake).await? {
                            return Ok(None);
                        }
                        tracing::warn!(
                            stream = self.state.stream,
                            shard = self.state.shard_id,
                            %day,
                            "an id segment of the shard is missing; reading the date's ids \
                             from the lake"
                        );
                    }
                    // Superseded by the segment built on the lake's ids.
                    ids.own = listed.into_iter().map(|s| (s, Arc::from([]))).collect();
                    from_lake = true;
                }
            }
            for ancestor in &ancestors {
                match shard_index(ancestor).load_day(lake, cache, day).await? {
                    Some(segments) => ids.consulted.extend(segments.into_iter().map(|(_, s)| s)),
                    None => from_lake = true,
                }
            }
            if from_lake {
                ids.from_lake = Some(ids_in_lake(lake, day).await?);
            } else if position == Position::Keep {
                // A replay re-reads records the stream may also have carried to other shards
                // since (a re-send after a split lands on a child): every id in the lake counts.
                // Consulted, not indexed: the shard's index keeps only its own ids.
                ids.consulted.push(ids_in_lake(lake, day).await?);
            }
            lookup.days.insert(day, ids);
        }
        Ok(Some(lookup))
    }

    async fn attempt(
        &mut self,
        lake: &impl Lake,
        cache: &IdCache,
        records: &Arc<[StreamRecord]>,
        options: &BatchOptions,
        position: Position,
    ) -> Result<Attempt, CommitError> {
        let mut committed = Committed::default();
        // 1. An earlier attempt did not commit: take the shard over, then remove its files.
        match self.take_over(lake).await? {
            Some(files) => committed.recovered_files = files,
            None => return Ok(Attempt::Lost),
        }
        // 2. Redelivered records: the committed position says they are in the lake.
        let start = match (&self.state.sequence_number, position) {
            (Some(committed), Position::Advance) => records
                .iter()
                .position(|r| r.sequence_number > *committed)
                .unwrap_or(records.len()),
            _ => 0,
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
        // 3. Decode (CPU work, off the async workers), look up the committed ids of the dates
        // the events fall on, then dedupe, aggregate and encode.
        let generation = self.state.generation + 1;
        let (stream, shard_id) = (self.state.stream.clone(), self.state.shard_id.clone());
        let first = records[start].sequence_number.clone();
        let name = batch_name(&stream, &shard_id, first.as_str(), generation);
        let (batch, shard) = (records.clone(), shard_id.clone());
        let decode_options = options.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            decode_batch(&shard, &batch[start..], &decode_options)
        })
        .await
        .map_err(|e| CommitError::Worker(e.to_string()))?;
        let Some(lookup) = self.lookup(lake, cache, &decoded.days(), position).await? else {
            return Ok(Attempt::Lost);
        };
        committed.index_ids = lookup.len() as u64;
        let batch_options = options.clone();
        let (output, updates) = tokio::task::spawn_blocking(move || {
            let committed = lookup.committed(&decoded.dates, &decoded.ids);
            let output = finish_batch(
                decoded,
                &name,
                |day, id| committed.contains(&(day, id.as_u128())),
                &batch_options,
            )?;
            let updates: BTreeMap<NaiveDate, DayUpdate> = output
                .accepted_ids
                .iter()
                .map(|(day, ids)| {
                    let known = lookup.days.get(day).cloned().unwrap_or_default();
                    (*day, known.fold(generation, ids))
                })
                .collect();
            Ok::<_, BatchError>((output, updates))
        })
        .await
        .map_err(|e| CommitError::Worker(e.to_string()))??;
        committed.files = output.files.len() as u64;
        committed.bytes = output.files.iter().map(|f| f.bytes.len() as u64).sum();
        let mut files = output.files;
        for (day, update) in &updates {
            let bytes = encode_segment(&update.ids);
            committed.index_files += 1;
            committed.index_bytes += bytes.len() as u64;
            files.push(OutputFile {
                key: id_segment(&stream, &shard_id, *day, generation),
                bytes,
                rows: update.ids.len(),
            });
        }
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
        // 4. The files, together ([`Lake::put_all`]: side by side on S3, one sync for all on a
        // disk). Every write ends, failed or not, before the batch reports anything: a write
        // dropped in flight could still land after the next attempt removed this attempt's
        // files, and would then count twice.
        lake.put_all(files.into_iter().map(|f| (f.key, f.bytes)).collect())
            .await?;
        // 5. Commit.
        let mut state = self.state.next();
        state.remember_commit(generation);
        if position == Position::Advance {
            state.sequence_number = output.last_sequence_number;
            state.last_arrival = records.last().map(|r| r.approximate_arrival);
        }
        state.committed_at = Some(Utc::now());
        state.counts.add(&output.counts);
        state.counts.replayed += committed.counts.replayed;
        state.batches += 1;
        for day in &output.days {
            state.touched.insert(*day, state.batches);
        }
        for (day, update) in &updates {
            state.ids.insert(*day, update.segments.clone());
        }
        state.in_flight = None;
        if let Swap::Lost(current) = self.swap(lake, state).await? {
            match current.as_ref().and_then(|c| c.has_committed(generation)) {
                // Applied, its answer lost, and other writers have moved on from it since: the
                // files are committed, and this checkpoint is stale.
                Some(true) => {
                    self.reload(lake).await?;
                }
                // The state still holds this attempt's intent: the commit's answer was lost and
                // the write may yet land, so its files must stay. The next attempt takes the
                // shard over with a compare-and-swap (which such a write can no longer pass)
                // before it removes them.
                Some(false)
                    if current
                        .as_ref()
                        .is_some_and(|c| c.write_id == self.state.write_id) =>
                {
                    return Err(CommitError::Undecided {
                        shard_id,
                        generation,
                    });
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
        }
        // The new segments are what the next batch of these dates reads first; the ones they
        // absorbed are named by no state from this commit on, so they leave the cache, before
        // the new one comes in (counted beside them, it would push other segments out).
        let mut superseded = Vec::new();
        for (day, update) in updates {
            for old in &update.superseded {
                let key = id_segment(&stream, &shard_id, day, *old);
                cache.remove(&key);
                superseded.push(key);
            }
            cache.insert(id_segment(&stream, &shard_id, day, generation), update.ids);
        }
        if let Err(error) = remove_all(lake, &superseded).await {
            // Only storage is lost: no state names them.
            tracing::warn!(error = %error, "could not remove superseded id segments");
        }
        let replayed = committed.counts.replayed;
        committed.counts = output.counts;
        committed.counts.replayed = replayed;
        Ok(Attempt::Done(committed))
    }
}

/// The index a shard's state names.
fn shard_index(state: &ShardState) -> ShardIndex<'_> {
    ShardIndex {
        stream: &state.stream,
        shard_id: &state.shard_id,
        manifest: &state.ids,
        touched: &state.touched,
        partial: state.index_partial,
    }
}

/// The states of `shards` of `stream`. A shard with no state but objects of one (its state was
/// lost) stands as a state whose index cannot be trusted, so its dates are read from the lake; a
/// shard with neither committed nothing.
async fn read_states<'a>(
    lake: &impl Lake,
    stream: &str,
    shards: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<ShardState>, CommitError> {
    let shards: BTreeSet<&String> = shards.into_iter().collect();
    let reads = shards.into_iter().map(|shard_id| async move {
        let key = shard_state(stream, shard_id);
        match lake.get(&key).await? {
            Some(object) => Ok::<_, CommitError>(Some(ShardState::decode(&key, &object.bytes)?)),
            None if lake
                .list(&shard_objects(stream, shard_id))
                .await?
                .is_empty() =>
            {
                Ok(None)
            }
            None => Ok(Some(ShardState {
                stream: stream.to_owned(),
                shard_id: shard_id.clone(),
                index_partial: true,
                ..ShardState::default()
            })),
        }
    });
    let states = futures::future::try_join_all(reads).await?;
    Ok(states.into_iter().flatten().collect())
}

/// The generation in the name of an object of a shard's folder (an index segment,
/// `<generation>.ids`, or an id window of an older version, `window-<generation>.json`).
fn generation_in(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    stem.trim_start_matches("window-").parse().ok()
}

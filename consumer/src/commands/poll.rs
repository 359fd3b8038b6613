//! `consumer poll`: reads every shard of a stream in batches, runs the batch step, writes the
//! files and commits each shard's position and ids ([`crate::commit`]).
//!
//! Shards are read concurrently. A shard made by a split or merge is read only once its parents
//! are read to their end, so events of one partition key stay in order across a reshard; when a
//! shard ends, the stream's shards are listed again to find its children.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sales_stream::StartingPosition;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::commit::index::IdCache;
use crate::commit::{Checkpoint, CommitError};
use crate::core::batch::{BatchCounts, BatchOptions};
use crate::lake::Lake;
use crate::progress::Progress;
use crate::stream::{ShardInfo, ShardSource, StreamError, ancestors};

/// Options of the poller.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Events per batch and shard: about, as reads are counted in records (see [`read_size`]).
    pub batch_size: usize,
    /// Stop once every shard is caught up, instead of waiting for more.
    pub until_drained: bool,
    /// How long a caught-up shard waits before reading again.
    pub idle_wait: Duration,
    /// Records committed, shown as they are.
    pub progress: Arc<Progress>,
    pub batch: BatchOptions,
}

impl Default for PollOptions {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            until_drained: false,
            idle_wait: Duration::from_secs(1),
            progress: Arc::default(),
            batch: BatchOptions::default(),
        }
    }
}

/// Why polling stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Reading the stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A batch could not be committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A shard's worker stopped unexpectedly.
    #[error("a shard worker failed: {0}")]
    Worker(String),
}

/// Which shards have stopped being read, and whether they were read to their end.
#[derive(Debug, Default)]
struct Lineage {
    ended: Mutex<HashMap<String, bool>>,
    changed: Notify,
}

impl Lineage {
    fn end(&self, shard_id: &str, closed: bool) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.insert(shard_id.to_owned(), closed);
        self.changed.notify_waiters();
    }

    /// Waits until every parent has ended; `true` if all were read to their end, so the child
    /// may be read.
    async fn parents_done(&self, parents: &[String]) -> bool {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            {
                let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
                if parents.iter().all(|p| ended.contains_key(p)) {
                    return parents.iter().all(|p| ended[p]);
                }
            }
            changed.await;
        }
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
    /// Compare-and-swaps lost to another consumer of the same shard (each batch then retried).
    pub conflicts: u64,
    pub elapsed_s: f64,
}

impl PollSummary {
    fn add(&mut self, other: &PollSummary) {
        self.batches += other.batches;
        self.counts.add(&other.counts);
        self.files += other.files;
        self.bytes += other.bytes;
        self.conflicts += other.conflicts;
    }
}

/// A shard's worker's result: what it did, and whether it read the shard to its end.
type ShardOutcome = Result<(PollSummary, bool), PollError>;

/// Marks a shard as ended when its worker finishes, however it finishes (a panic included), so
/// its children never wait for it forever.
struct Ending {
    lineage: Arc<Lineage>,
    shard_id: String,
    closed: bool,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.lineage.end(&self.shard_id, self.closed);
    }
}

/// Polls every shard concurrently until drained (with `until_drained`) or until `stop` is set.
pub async fn poll<S: ShardSource, L: Lake + 'static>(
    source: Arc<S>,
    lake: Arc<L>,
    options: PollOptions,
    stop: Arc<AtomicBool>,
) -> Result<PollSummary, PollError> {
    let started = Instant::now();
    let lineage = Arc::new(Lineage::default());
    let mut workers: JoinSet<ShardOutcome> = JoinSet::new();
    let mut started_shards = HashSet::new();
    let mut summary = PollSummary::default();
    let mut first_error = None;
    // One cache of id segments for every shard: its budget bounds the whole process.
    let cache = Arc::new(IdCache::default());
    // Batches in memory at once: one per core that can work on it. Every shard is polled, but a
    // third batch on two cores would only wait for a core while holding its records, columns and
    // files in memory.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let batches = Arc::new(tokio::sync::Semaphore::new(cores.max(2)));
    let mut spawn_new = |shards: Vec<ShardInfo>, workers: &mut JoinSet<ShardOutcome>| {
        let known: HashSet<String> = shards.iter().map(|s| s.id.clone()).collect();
        let lineage_of: HashMap<String, Vec<String>> = shards
            .iter()
            .map(|s| (s.id.clone(), ancestors(&shards, &s.id)))
            .collect();
        for shard in shards {
            if !started_shards.insert(shard.id.clone()) {
                continue;
            }
            // Parents past the retention period are gone from the listing: nothing to wait for.
            let parents: Vec<String> = shard
                .parents
                .into_iter()
                .filter(|p| known.contains(p))
                .collect();
            let (source, lake, options, stop, lineage, cache, batches) = (
                source.clone(),
                lake.clone(),
                options.clone(),
                stop.clone(),
                lineage.clone(),
                cache.clone(),
                batches.clone(),
            );
            let shard_ancestors = lineage_of.get(&shard.id).cloned().unwrap_or_default();
            workers.spawn(async move {
                let mut ending = Ending {
                    lineage: lineage.clone(),
                    shard_id: shard.id.clone(),
                    closed: false,
                };
                if !lineage.parents_done(&parents).await {
                    return Ok((PollSummary::default(), false));
                }
                let result = poll_shard(
                    &*source,
                    &*lake,
                    (&cache, &batches),
                    (&shard.id, shard_ancestors),
                    &options,
                    &stop,
                )
                .await;
                ending.closed = matches!(result, Ok((_, true)));
                result
            });
        }
    };
    spawn_new(source.shards().await?, &mut workers);
    while let Some(joined) = workers.join_next().await {
        let error = match joined {
            Ok(Ok((shard, closed))) => {
                summary.add(&shard);
                if !closed || stop.load(Ordering::Relaxed) {
                    continue;
                }
                // A shard ended: its children may be new since the last listing.
                match source.shards().await {
                    Ok(shards) => {
                        spawn_new(shards, &mut workers);
                        continue;
                    }
                    Err(e) => e.into(),
                }
            }
            Ok(Err(e)) => e,
            Err(e) => PollError::Worker(e.to_string()),
        };
        // One failing shard stops the others at their next batch boundary.
        stop.store(true, Ordering::Relaxed);
        first_error.get_or_insert(error);
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    summary.shards = started_shards.len();
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// How many records to read for the next batch, so that it holds about `batch_size` events
/// whatever form its records take: a plain record is one event, an aggregated or compact one
/// hundreds to thousands. The first read of a shard asks for `batch_size` records (a read stops
/// at 10 MiB, as Kinesis' does); each later one for as many as the last batch's events per
/// record make `batch_size`.
fn read_size(batch_size: usize, last_batch: Option<&BatchCounts>) -> usize {
    let Some(last) = last_batch.filter(|counts| counts.records > 0) else {
        return batch_size;
    };
    let events_per_record = (last.received / last.records).max(1);
    (batch_size / events_per_record as usize).clamp(1, batch_size)
}

/// How many of `records` make a batch: at least one, and none past the one that brings it to
/// `batch_size` events. A batch's memory grows with its events, and a few compact records hold
/// as many as a whole read of plain ones.
fn batch_len(records: &[sales_stream::StreamRecord], batch_size: usize) -> usize {
    let mut events = 0;
    for (i, record) in records.iter().enumerate() {
        events += sales_stream::events_in(&record.data);
        if events >= batch_size {
            return i + 1;
        }
    }
    records.len()
}

/// Reads one shard (given with its ancestors) batch by batch; `true` with the summary if the
/// shard was read to its end.
async fn poll_shard(
    source: &impl ShardSource,
    lake: &impl Lake,
    (cache, batches): (&IdCache, &tokio::sync::Semaphore),
    (shard_id, ancestors): (&str, Vec<String>),
    options: &PollOptions,
    stop: &AtomicBool,
) -> Result<(PollSummary, bool), PollError> {
    let stream = source.stream_name().to_owned();
    let mut checkpoint = Checkpoint::load(lake, &source.identity(), &stream, shard_id).await?;
    checkpoint.set_ancestors(lake, ancestors).await?;
    let mut summary = PollSummary::default();
    let mut last_batch = None;
    while !stop.load(Ordering::Relaxed) {
        let position = match &checkpoint.state().sequence_number {
            Some(sequence) => StartingPosition::AfterSequenceNumber(sequence.clone()),
            None => StartingPosition::TrimHorizon,
        };
        // Never closed, so it is always granted.
        let in_memory = batches.acquire().await.ok();
        let limit = read_size(options.batch_size, last_batch.as_ref());
        let mut read = source.read(shard_id, &position, limit).await?;
        let len = batch_len(&read.records, options.batch_size);
        if len < read.records.len() {
            // The rest is read again after this batch commits; the shard's end is not reached.
            read.records.truncate(len);
            read.closed = false;
        }
        let caught_up = read.records.is_empty();
        if !caught_up {
            let committed = checkpoint
                .commit(lake, cache, read.records, &options.batch)
                .await?;
            summary.batches += 1;
            summary.files += committed.files;
            summary.bytes += committed.bytes;
            summary.conflicts += u64::from(committed.conflicts);
            summary.counts.add(&committed.counts);
            last_batch = Some(committed.counts);
            options.progress.advance(committed.counts.records, || {
                format!("{shard_id}: {} batches", summary.batches)
            });
            tracing::info!(
                shard = shard_id,
                received = committed.counts.received,
                accepted = committed.counts.accepted,
                duplicates = committed.counts.duplicates,
                quarantined = committed.counts.quarantined,
                replayed = committed.counts.replayed,
                conflicts = committed.conflicts,
                "batch committed"
            );
        }
        drop(in_memory);
        if read.closed {
            tracing::info!(shard = shard_id, "shard read to its end");
            return Ok((summary, true));
        }
        if caught_up {
            if options.until_drained {
                break;
            }
            tokio::time::sleep(options.idle_wait).await;
        }
    }
    Ok((summary, false))
}

#[cfg(test)]
mod tests {
    use sales_stream::{SequenceNumber, StreamRecord};

    use super::*;

    #[test]
    fn reads_are_sized_to_hold_a_batch_of_events() {
        let counts = |records, received| BatchCounts {
            records,
            received,
            ..BatchCounts::default()
        };
        assert_eq!(read_size(10_000, None), 10_000, "the first read finds out");
        assert_eq!(
            read_size(10_000, Some(&counts(1, 1))),
            10_000,
            "plain records"
        );
        assert_eq!(
            read_size(10_000, Some(&counts(3, 600))),
            50,
            "KPL aggregates"
        );
        assert_eq!(
            read_size(10_000, Some(&counts(2, 7_000))),
            2,
            "compact records"
        );
        assert_eq!(read_size(10_000, Some(&counts(1, 40_000))), 1, "never none");
        assert_eq!(read_size(10_000, Some(&counts(0, 0))), 10_000);
    }

    #[test]
    fn a_batch_ends_at_the_record_that_fills_it() {
        let record = |data: Vec<u8>| StreamRecord {
            sequence_number: SequenceNumber::from_u64(1),
            partition_key: "k".into(),
            data,
            approximate_arrival: chrono::DateTime::UNIX_EPOCH,
        };
        let mut aggregator = sales_stream::Aggregator::new();
        for i in 0..40 {
            aggregator.push(format!("k{i}"), b"{}".to_vec());
        }
        let forty = record(aggregator.finish(sales_stream::Compression::Zstd));
        let plain = record(b"{}".to_vec());
        let records = vec![plain.clone(), forty.clone(), forty.clone(), forty, plain];
        assert_eq!(
            batch_len(&records, 100),
            4,
            "1 + 40 + 40 + 40 events reach 100"
        );
        assert_eq!(batch_len(&records, 1), 1);
        assert_eq!(batch_len(&records, 1_000), 5, "all of them");
        assert_eq!(batch_len(&[], 10), 0);
    }
    use crate::commit::state::StreamIdentity;
    use crate::lake::LocalLake;
    use crate::stream::ShardRead;

    /// A stream of three shards: `p`, closed after two records, split into `a` and `b`.
    /// Every read is logged, so the test sees in which order the shards were read.
    #[derive(Debug, Default)]
    struct SplitStream {
        reads: Mutex<Vec<(String, usize)>>,
    }

    impl ShardSource for SplitStream {
        fn stream_name(&self) -> &str {
            "split"
        }

        fn identity(&self) -> StreamIdentity {
            StreamIdentity::new("local:split")
        }

        fn retention(&self) -> Option<Duration> {
            None
        }

        async fn shards(&self) -> Result<Vec<ShardInfo>, StreamError> {
            let shard = |id: &str, parents: &[&str]| ShardInfo {
                id: id.into(),
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            };
            Ok(vec![
                shard("a", &["p"]),
                shard("b", &["p"]),
                shard("p", &[]),
            ])
        }

        async fn read(
            &self,
            shard_id: &str,
            position: &StartingPosition,
            _limit: usize,
        ) -> Result<ShardRead, StreamError> {
            // Parents are slow: a child read too early would be seen first.
            if shard_id == "p" {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let next = match position {
                StartingPosition::TrimHorizon => 1,
                StartingPosition::AfterSequenceNumber(s) => s.as_u64().unwrap_or(0) + 1,
            };
            let last = if shard_id == "p" { 2 } else { 1 };
            let records: Vec<_> = (next..=last)
                .take(1)
                .map(|n| StreamRecord {
                    sequence_number: SequenceNumber::from_u64(n),
                    partition_key: format!("{shard_id}{n}"),
                    data: b"not an event".to_vec(),
                    approximate_arrival: chrono::Utc::now(),
                })
                .collect();
            let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
            reads.push((shard_id.to_owned(), records.len()));
            Ok(ShardRead {
                closed: shard_id == "p" && next > last,
                records,
            })
        }
    }

    #[tokio::test]
    async fn children_are_read_only_after_their_parent_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = Arc::new(SplitStream::default());
        let options = PollOptions {
            batch_size: 1,
            until_drained: true,
            ..PollOptions::default()
        };
        let summary = poll(
            source.clone(),
            Arc::new(LocalLake::new(dir.path())),
            options,
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .expect("polled");
        assert_eq!(summary.shards, 3);
        assert_eq!(
            summary.counts.quarantined, 4,
            "p's two records, a's and b's"
        );
        let reads = source.reads.lock().expect("reads").clone();
        let parent_last = reads.iter().rposition(|(s, _)| s == "p").expect("p read");
        let child_first = reads
            .iter()
            .position(|(s, _)| s != "p")
            .expect("children read");
        assert!(parent_last < child_first, "{reads:?}");
    }
}

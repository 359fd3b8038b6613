//! `compact`: rewrites days of the lake into one file per table.
//!
//! The consumer writes a `sales_events`, a `daily_sales` and a `customer_sales` file per batch
//! and date, which Athena pays for in requests. Compaction reads a day's `sales_events`, drops
//! events whose id was seen before over the whole day (across shards and streams, a second line
//! of defence behind the id index), writes them as one file, and writes `daily_sales` and
//! `customer_sales` aggregated from those events as one file each with one row per key. Then it
//! removes the files it replaced. A day compacted before a table existed is compacted again, and
//! so gains it.
//!
//! It is safe to run twice at once, beside live batches, and to kill at any point. Each day has
//! one record, `_state/compaction/<day>.json`, only ever changed with a compare-and-swap and
//! never removed. A compaction:
//!
//! 1. Finishes a compaction the record shows removing its inputs (its outputs are complete).
//! 2. Lists the day's files, then reads the shards' states, then lists again: a file is an input
//!    if it was listed before the states were read and no batch in flight names it (the second
//!    listing brings both halves of a batch that committed meanwhile). The outputs of a
//!    compaction the record shows writing are never inputs.
//! 3. Claims the day: the record, now `writing`, names this compaction (a random owner id), its
//!    inputs and its outputs, whose names carry the owner id. A compaction that was writing
//!    (killed, or still running elsewhere) has lost the day: its outputs are removed.
//! 4. Reads the inputs one record batch at a time, drops ids seen before, writes both outputs.
//! 5. Commits: the record goes to `removing`, if it still names this compaction. From here the
//!    outputs replace the inputs. A compaction that lost the day here removes its own outputs,
//!    after every write it started has ended, and reports that it was superseded.
//! 6. Removes the inputs, then marks the record `done`.
//!
//! Why nothing is lost or counted twice: inputs are removed only after the compaction that read
//! them has committed its outputs (5), and only that compaction's outputs are committed. Outputs
//! are removed only while their compaction has not committed, and only by a compaction that has
//! taken the day from it (3) or by itself (5). A batch file read as an input but not yet
//! committed (an attempt that then lost its shard) only holds events its shard writes again, and
//! those are dropped by id at the next compaction; `daily_sales` is always recomputed from the
//! deduplicated events, never summed from old aggregated files.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::commit::state::{StateError, shard_states};
use crate::core::aggregate::Aggregates;
use crate::core::layout::{
    CUSTOMER_SALES, DAILY_SALES, SALES_EVENTS, TABLES, compaction, compaction_cursor, data_file,
    partition_dir,
};
use crate::core::writer::{
    Codec, SalesEventsWriter, WriterError, encode_customer_sales, encode_daily_sales,
    read_sales_events,
};
use crate::lake::{Lake, LakeError, Precondition, Swapped, remove_all, swap};
use crate::progress::Progress;

/// The name of a compacted file starts so; then a digest of its inputs and its owner's id.
const COMPACTED: &str = "compacted-";
/// How many committed compactions a day's record remembers (see [`Record::committed`]).
const OWNERS_REMEMBERED: usize = 16;
/// Times `--touched` re-reads and merges the cursor after losing its compare-and-swap to another
/// compaction that advanced it.
const MAX_CURSOR_RETRIES: u32 = 8;

/// Why a day could not be compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading or writing the lake failed; re-running finishes the job.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A shard's state or a compaction record is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// A `sales_events` file could not be read, or the result could not be encoded.
    #[error("{key}: {source}")]
    File { key: String, source: WriterError },
    /// The day's record vanished while this compaction held it (records are never removed).
    #[error("{key} was removed during the compaction; its outputs were kept")]
    RecordGone { key: String },
    /// `--from` is after `--to`.
    #[error("--from {from} is after --to {to}")]
    Range { from: NaiveDate, to: NaiveDate },
    /// The cursor of `--touched` kept being advanced by other compactions.
    #[error("the compaction cursor {key} kept changing under other compactions; run it again")]
    Contended { key: String },
}

/// Which days to compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Days {
    /// One sale date.
    One(NaiveDate),
    /// Every sale date from `from` to `to`, both included.
    Range { from: NaiveDate, to: NaiveDate },
    /// Every sale date a batch wrote since the last `Touched` compaction (the schedule's choice:
    /// late events and backfills land on old days, not on yesterday).
    Touched,
}

/// What a compaction of one day did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    pub day: Option<NaiveDate>,
    /// Files of every table replaced.
    pub files_in: usize,
    /// Files written: one per table.
    pub files_out: usize,
    pub events_in: usize,
    /// Events dropped because an event with the same id came earlier in the day.
    pub duplicates: usize,
    pub events_out: usize,
    pub daily_rows: usize,
    /// Files of batches in flight, left for their batch.
    pub in_flight: usize,
    /// A compaction that was stopped (or overlapped) was finished or taken over first.
    pub resumed: bool,
    /// The day was already one file per table: nothing was written.
    pub already_compacted: bool,
    /// Another compaction took the day over while this one ran; it left the day to that one.
    pub superseded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Writing its outputs; not committed.
    Writing,
    /// Committed: the outputs replace the inputs, which are being removed.
    Removing,
    /// Finished.
    Done,
}

/// A day's compaction record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    day: NaiveDate,
    owner: Uuid,
    phase: Phase,
    started_at: DateTime<Utc>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// The owners of the last [`OWNERS_REMEMBERED`] compactions of the day that committed,
    /// carried from record to record: a compaction whose commit's answer was lost, and which
    /// another compaction then finished and moved on from, finds itself here.
    #[serde(default)]
    committed: Vec<Uuid>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        // Strings, dates and ids only: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Compacts the days `days` names, one after the other. With [`Days::Touched`], the cursor moves
/// past the batches whose days were compacted only once every one of them was.
pub async fn compact(
    lake: &impl Lake,
    days: &Days,
    codec: Codec,
    progress: &Progress,
) -> Result<Vec<CompactReport>, CompactError> {
    let (list, seen) = match *days {
        Days::One(day) => (vec![day], None),
        Days::Range { from, to } => {
            if from > to {
                return Err(CompactError::Range { from, to });
            }
            (from.iter_days().take_while(|d| *d <= to).collect(), None)
        }
        Days::Touched => {
            let (days, seen) = touched_days(lake).await?;
            (days, Some(seen))
        }
    };
    progress.set_total(list.len() as u64);
    let mut reports = Vec::with_capacity(list.len());
    for day in list {
        let report = compact_day(lake, day, codec).await?;
        progress.advance(1, || format!("{day}: {} events", report.events_out));
        reports.push(report);
    }
    if let Some(seen) = seen {
        advance_cursor(lake, seen).await?;
    }
    Ok(reports)
}

/// Compacts `day`: one deduplicated `sales_events` file, one file of each aggregated table.
pub async fn compact_day(
    lake: &impl Lake,
    day: NaiveDate,
    codec: Codec,
) -> Result<CompactReport, CompactError> {
    let record_key = compaction(day);
    let mut report = CompactReport {
        day: Some(day),
        ..CompactReport::default()
    };
    // 1. Finish a committed compaction; note one that was writing, to take it over.
    let (previous, version) = loop {
        let Some((record, version)) = read_record(lake, &record_key).await? else {
            break (None, None);
        };
        if record.phase != Phase::Removing {
            break (Some(record), Some(version));
        }
        remove_all(lake, &record.inputs).await?;
        let done = Record {
            phase: Phase::Done,
            ..record
        };
        // Lost: another compaction finished it first, or has taken the day on; read again.
        swap(
            lake,
            &record_key,
            done.encode(),
            Precondition::Matches(version),
        )
        .await?;
        report.resumed = true;
        tracing::info!(%day, "finished a compaction that was stopped while removing its inputs");
    };
    let committed_before = previous
        .as_ref()
        .map(|record| record.committed.clone())
        .unwrap_or_default();
    let abandoned: Vec<String> = previous
        .filter(|record| record.phase == Phase::Writing)
        .map(|record| record.outputs)
        .unwrap_or_default();

    // 2. The inputs.
    let listed = list_day(lake, day).await?;
    let in_flight = files_in_flight(lake).await?;
    let candidates: HashSet<&str> = listed
        .iter()
        .filter(|key| !in_flight.contains(*key) && !abandoned.contains(key))
        .map(|key| file_name(key))
        .collect();
    report.in_flight = listed.iter().filter(|k| in_flight.contains(*k)).count();
    let inputs: Vec<String> = list_day(lake, day)
        .await?
        .into_iter()
        .filter(|key| candidates.contains(file_name(key)) && !abandoned.contains(key))
        .collect();
    let events_inputs: Vec<&String> = inputs
        .iter()
        .filter(|k| k.starts_with(SALES_EVENTS))
        .collect();
    if abandoned.is_empty() && (inputs.is_empty() || compacted_whole(&inputs)) {
        report.already_compacted = !inputs.is_empty();
        return Ok(report);
    }

    // 3. Claim the day.
    let owner = Uuid::new_v4();
    let name = compacted_name(&inputs, owner);
    let outputs = if events_inputs.is_empty() {
        Vec::new()
    } else {
        TABLES
            .iter()
            .map(|table| data_file(table, day, &name, "parquet"))
            .collect()
    };
    let mut record = Record {
        day,
        owner,
        phase: Phase::Writing,
        started_at: Utc::now(),
        inputs: inputs.clone(),
        outputs: outputs.clone(),
        committed: committed_before,
    };
    let expected = Precondition::from_read(version.as_ref());
    let Swapped::Won(version) = swap(lake, &record_key, record.encode(), expected).await? else {
        report.superseded = true;
        return Ok(report);
    };
    if !abandoned.is_empty() {
        // Its owner, if it still runs, fails to commit and removes what it writes after this.
        remove_all(lake, &abandoned).await?;
        report.resumed = true;
        tracing::info!(%day, files = abandoned.len(), "took over a compaction that did not commit");
    }

    // 4. Read, drop duplicates, write.
    if !outputs.is_empty() {
        // On an error the outputs stay named in the record, still `writing`: whichever
        // compaction takes the day next removes them.
        let counts = write_outputs(lake, &events_inputs, day, &name, codec).await?;
        report.events_in = counts.events_in;
        report.events_out = counts.events_out;
        report.duplicates = counts.events_in - counts.events_out;
        report.daily_rows = counts.daily_rows;
    }

    // 5. Commit.
    record.phase = Phase::Removing;
    record.committed.push(owner);
    let excess = record.committed.len().saturating_sub(OWNERS_REMEMBERED);
    record.committed.drain(..excess);
    let version = match swap(
        lake,
        &record_key,
        record.encode(),
        Precondition::Matches(version),
    )
    .await?
    {
        Swapped::Won(committed) => Some(committed),
        Swapped::Lost(current) => {
            let current = match current {
                Some(object) => Some(decode_record(&record_key, &object.bytes)?),
                None => None,
            };
            match current.map(|c| c.committed.contains(&owner)) {
                // Applied, its answer lost, and another compaction has finished it (or moved
                // on) since: the outputs are committed. Finish the removal; the record is no
                // longer this compaction's to close.
                Some(true) => None,
                // Taken over before the commit: the outputs are this compaction's alone.
                Some(false) => {
                    remove_all(lake, &outputs).await?;
                    report.superseded = true;
                    tracing::info!(%day, "another compaction took the day over; left it to that one");
                    return Ok(report);
                }
                // Records are never removed: someone did by hand. Keep the outputs (a later
                // compaction drops any event they hold twice).
                None => return Err(CompactError::RecordGone { key: record_key }),
            }
        }
    };

    // 6. Remove the inputs, then close the record.
    remove_all(lake, &inputs).await?;
    if let Some(version) = version {
        record.phase = Phase::Done;
        // Lost: a compaction that started meanwhile finished the removal and took the day on.
        swap(
            lake,
            &record_key,
            record.encode(),
            Precondition::Matches(version),
        )
        .await?;
    }
    report.files_in = inputs.len();
    report.files_out = outputs.len();
    Ok(report)
}

struct WriteCounts {
    events_in: usize,
    events_out: usize,
    daily_rows: usize,
}

/// Reads the day's events file by file, record batch by record batch, and writes the outputs
/// (named `name`, one per table). Memory holds the ids seen (16 bytes an event), the day's
/// aggregated rows, one input file and the output files, never the day's events.
async fn write_outputs(
    lake: &impl Lake,
    events_inputs: &[&String],
    day: NaiveDate,
    name: &str,
    codec: Codec,
) -> Result<WriteCounts, CompactError> {
    let file_error = |key: &str| {
        let key = key.to_owned();
        move |source| CompactError::File { key, source }
    };
    let events_key = data_file(SALES_EVENTS, day, name, "parquet");
    let daily_key = data_file(DAILY_SALES, day, name, "parquet");
    let customers_key = data_file(CUSTOMER_SALES, day, name, "parquet");
    let mut seen = HashSet::new();
    let mut writer = SalesEventsWriter::new(codec).map_err(file_error(&events_key))?;
    let mut aggregates = Aggregates::default();
    let mut events_in = 0;
    // A few files are fetched ahead while one is decoded.
    // Owned keys: a stream of futures borrowing them trips the compiler's `Send` check when
    // this runs inside a spawned task.
    let keys: Vec<String> = events_inputs.iter().map(|key| (*key).clone()).collect();
    let mut files = futures::stream::iter(keys)
        .map(|key| async move { lake.get(&key).await.map(|object| (key, object)) })
        .buffered(crate::lake::MAX_CONCURRENT_REQUESTS);
    while let Some(file) = files.next().await {
        let (key, object) = file?;
        // Removed since the listing: an attempt that did not commit, removed by its shard.
        let Some(object) = object else { continue };
        for batch in read_sales_events(object.bytes).map_err(file_error(&key))? {
            let batch = batch.map_err(file_error(&key))?;
            events_in += batch.len();
            let fresh: Vec<_> = batch
                .iter()
                .filter(|e| seen.insert(e.event.event_id))
                .collect();
            for event in &fresh {
                aggregates.add(&event.event);
            }
            writer.write(&fresh).map_err(file_error(&events_key))?;
        }
    }
    let events_out = writer.rows();
    let events_file = writer.finish().map_err(file_error(&events_key))?;
    let rows = aggregates.finish();
    let daily_file = encode_daily_sales(&rows.daily.iter().collect::<Vec<_>>(), codec)
        .map_err(file_error(&daily_key))?;
    let customers_file = encode_customer_sales(&rows.customers.iter().collect::<Vec<_>>(), codec)
        .map_err(file_error(&customers_key))?;
    // Every write ends before any failure is reported (a write left in flight could land after
    // the outputs were removed).
    lake.put_all(vec![
        (events_key, events_file),
        (daily_key, daily_file),
        (customers_key, customers_file),
    ])
    .await?;
    Ok(WriteCounts {
        events_in,
        events_out,
        daily_rows: rows.daily.len(),
    })
}

async fn read_record(
    lake: &impl Lake,
    key: &str,
) -> Result<Option<(Record, crate::lake::Version)>, CompactError> {
    let Some(object) = lake.get(key).await? else {
        return Ok(None);
    };
    Ok(Some((decode_record(key, &object.bytes)?, object.version)))
}

fn decode_record(key: &str, bytes: &[u8]) -> Result<Record, CompactError> {
    Ok(
        serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })?,
    )
}

/// The Parquet files of every table for `day`.
async fn list_day(lake: &impl Lake, day: NaiveDate) -> Result<Vec<String>, LakeError> {
    let mut keys = Vec::new();
    for table in TABLES {
        let listed = lake.list(&partition_dir(table, day)).await?;
        keys.extend(listed.into_iter().filter(|k| k.ends_with(".parquet")));
    }
    Ok(keys)
}

/// Whether a day's files are one compaction's outputs: one file per table, all of one compacted
/// name. A day compacted before a table existed, or with a stray file beside its outputs, is not.
fn compacted_whole(inputs: &[String]) -> bool {
    let names: HashSet<&str> = inputs.iter().map(|key| file_name(key)).collect();
    inputs.len() == TABLES.len()
        && TABLES.iter().all(|table| {
            inputs
                .iter()
                .filter(|key| key.starts_with(&format!("{table}/")))
                .count()
                == 1
        })
        && names.len() == 1
        && names.iter().all(|name| name.starts_with(COMPACTED))
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// `compacted-<digest of the inputs>-<owner>`: the owner makes the names this compaction's
/// alone, so a compaction that takes the day over removes exactly these.
fn compacted_name(inputs: &[String], owner: Uuid) -> String {
    let mut hasher = Md5::new();
    for key in inputs {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{COMPACTED}{hex}-{}", owner.simple())
}

/// The keys named by any shard's batch in flight.
async fn files_in_flight(lake: &impl Lake) -> Result<HashSet<String>, CompactError> {
    Ok(shard_states(lake)
        .await?
        .into_iter()
        .filter_map(|state| state.in_flight)
        .flat_map(|intent| intent.keys)
        .collect())
}

/// How far `--touched` has looked: per shard (`stream/shard`), the batch count it compacted up
/// to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cursor {
    shards: BTreeMap<String, u64>,
    #[serde(default)]
    write_id: Uuid,
}

async fn read_cursor(
    lake: &impl Lake,
) -> Result<(Cursor, Option<crate::lake::Version>), CompactError> {
    let key = compaction_cursor();
    let Some(object) = lake.get(&key).await? else {
        return Ok((Cursor::default(), None));
    };
    let cursor = serde_json::from_slice(&object.bytes).map_err(|e| StateError::Corrupt {
        key,
        reason: e.to_string(),
    })?;
    Ok((cursor, Some(object.version)))
}

/// The days some shard wrote since the cursor, and each shard's batch count as read.
async fn touched_days(
    lake: &impl Lake,
) -> Result<(Vec<NaiveDate>, BTreeMap<String, u64>), CompactError> {
    let (cursor, _) = read_cursor(lake).await?;
    let mut days = BTreeSet::new();
    let mut seen = BTreeMap::new();
    for state in shard_states(lake).await? {
        let shard = format!("{}/{}", state.stream, state.shard_id);
        let done = cursor.shards.get(&shard).copied().unwrap_or(0);
        days.extend(
            state
                .touched
                .iter()
                .filter(|(_, batch)| **batch > done)
                .map(|(day, _)| *day),
        );
        seen.insert(shard, state.batches);
    }
    Ok((days.into_iter().collect(), seen))
}

/// Moves the cursor to `seen` (never back: another `--touched` run may have gone further).
async fn advance_cursor(lake: &impl Lake, seen: BTreeMap<String, u64>) -> Result<(), CompactError> {
    let key = compaction_cursor();
    for _ in 0..MAX_CURSOR_RETRIES {
        let (mut cursor, version) = read_cursor(lake).await?;
        for (shard, batches) in &seen {
            let at = cursor.shards.entry(shard.clone()).or_default();
            *at = (*at).max(*batches);
        }
        cursor.write_id = Uuid::new_v4();
        let bytes = serde_json::to_vec_pretty(&cursor).unwrap_or_default();
        let expected = Precondition::from_read(version.as_ref());
        if let Swapped::Won(_) = swap(lake, &key, bytes, expected).await? {
            return Ok(());
        }
    }
    Err(CompactError::Contended { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(files: &[(&str, &str)]) -> Vec<String> {
        files
            .iter()
            .map(|(table, name)| format!("{table}/year=2011/month=12/day=09/{name}.parquet"))
            .collect()
    }

    #[test]
    fn only_one_compactions_file_per_table_is_compacted_already() {
        let whole = keys(&[
            (SALES_EVENTS, "compacted-a"),
            (DAILY_SALES, "compacted-a"),
            (CUSTOMER_SALES, "compacted-a"),
        ]);
        assert!(compacted_whole(&whole));
        // Compacted before customer_sales existed: compacted again, to gain it.
        assert!(!compacted_whole(&whole[..2]));
        // ... even with a stray file making the count right.
        let stray = keys(&[
            (SALES_EVENTS, "compacted-a"),
            (DAILY_SALES, "compacted-a"),
            (DAILY_SALES, "compacted-b"),
        ]);
        assert!(!compacted_whole(&stray));
        // Two compactions' outputs, one file per table.
        let mixed = keys(&[
            (SALES_EVENTS, "compacted-a"),
            (DAILY_SALES, "compacted-b"),
            (CUSTOMER_SALES, "compacted-a"),
        ]);
        assert!(!compacted_whole(&mixed));
        let batches = keys(&[
            (SALES_EVENTS, "shard-1"),
            (DAILY_SALES, "shard-1"),
            (CUSTOMER_SALES, "shard-1"),
        ]);
        assert!(!compacted_whole(&batches));
    }
}

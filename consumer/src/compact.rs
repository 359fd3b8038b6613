//! `compact`: rewrites a closed day of the lake into one file per table.
//!
//! The consumer writes a `sales_events` and a `daily_sales` file per batch and date, which
//! Athena pays for in requests. Compaction reads a day's `sales_events`, drops events whose id
//! was seen before (over the whole day, beyond the shards' id windows), writes them as one file,
//! and writes `daily_sales` aggregated from those events as one file with one row per key. Then
//! it removes the files it replaced.
//!
//! It is safe to re-run and to kill: before writing, it records its inputs and outputs under
//! `_state/compaction/`. A re-run that finds the record finishes the removal if every output was
//! written, and otherwise removes the partial outputs and starts again. Files of batches still in
//! flight (named in a shard's intent) are left alone: their batch may yet remove them.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::aggregate::aggregate;
use crate::lake::{Lake, LakeError, Precondition, remove_all};
use crate::layout::{DAILY_SALES, SALES_EVENTS, compaction, data_file, partition_dir};
use crate::state::{StateError, shard_states};
use crate::writer::{
    Codec, WriterError, decode_sales_events, encode_daily_sales, encode_sales_events,
};

/// The name of a compacted file starts so; the rest is a digest of what it replaced.
const COMPACTED: &str = "compacted-";

/// Why a day could not be compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading or writing the lake failed; re-running finishes the job.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A shard's state or the compaction record is unreadable.
    #[error(transparent)]
    State(#[from] StateError),
    /// A `sales_events` file could not be read, or the result could not be encoded.
    #[error("{key}: {source}")]
    File { key: String, source: WriterError },
    /// Another compaction of the same day is in progress (or was killed: re-run it then).
    #[error(
        "a compaction of {day} is in progress ({key} exists); if none runs, re-running it resumes"
    )]
    Busy { day: NaiveDate, key: String },
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    pub day: Option<NaiveDate>,
    /// `sales_events` and `daily_sales` files replaced.
    pub files_in: usize,
    /// Files written: one per table with rows.
    pub files_out: usize,
    pub events_in: usize,
    /// Events dropped because an event with the same id came earlier in the day.
    pub duplicates: usize,
    pub events_out: usize,
    pub daily_rows: usize,
    /// Files of batches in flight, left for their batch.
    pub in_flight: usize,
    /// A killed compaction was found and finished or undone first.
    pub resumed: bool,
    /// The day was already one file per table: nothing was written.
    pub already_compacted: bool,
}

/// The record of a compaction in progress.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    day: NaiveDate,
    started_at: DateTime<Utc>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

/// Compacts `day`: one deduplicated `sales_events` file, one `daily_sales` file.
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
    if let Some(object) = lake.get(&record_key).await? {
        report.resumed = true;
        let record: Record =
            serde_json::from_slice(&object.bytes).map_err(|e| StateError::Corrupt {
                key: record_key.clone(),
                reason: e.to_string(),
            })?;
        let mut written = Vec::new();
        for output in &record.outputs {
            if lake.get(output).await?.is_some() {
                written.push(output.clone());
            }
        }
        if written.len() == record.outputs.len() {
            // Killed while removing the inputs: finish.
            remove_all(lake, &record.inputs).await?;
            lake.delete(&record_key).await?;
            report.files_in = record.inputs.len();
            report.files_out = record.outputs.len();
            tracing::info!(%day, "finished a compaction that was stopped while removing its inputs");
            return Ok(report);
        }
        // Killed while writing the outputs: the inputs are all there; undo and start again.
        remove_all(lake, &written).await?;
        lake.delete(&record_key).await?;
    }

    let in_flight = files_in_flight(lake).await?;
    let mut inputs = Vec::new();
    for table in [SALES_EVENTS, DAILY_SALES] {
        let keys = lake.list(&partition_dir(table, day)).await?;
        for key in keys.into_iter().filter(|k| k.ends_with(".parquet")) {
            if in_flight.contains(&key) {
                report.in_flight += 1;
            } else {
                inputs.push(key);
            }
        }
    }
    let is_compacted = |key: &String| file_name(key).starts_with(COMPACTED);
    let events_inputs: Vec<&String> = inputs
        .iter()
        .filter(|k| k.starts_with(SALES_EVENTS))
        .collect();
    if events_inputs.is_empty()
        || (inputs.len() == 2 && events_inputs.len() == 1 && inputs.iter().all(is_compacted))
    {
        report.already_compacted = !events_inputs.is_empty();
        return Ok(report);
    }

    // Read the day's events, a few files at a time; a file removed since the listing belonged to
    // a batch that did not commit.
    let files: Vec<(String, Option<Vec<u8>>)> = futures::stream::iter(events_inputs)
        .map(|key| async move {
            lake.get(key)
                .await
                .map(|object| (key.clone(), object.map(|o| o.bytes)))
        })
        .buffered(crate::lake::MAX_CONCURRENT_REQUESTS)
        .try_collect()
        .await?;
    let mut events = Vec::new();
    for (key, bytes) in files {
        let Some(bytes) = bytes else { continue };
        let decoded = decode_sales_events(bytes).map_err(|source| CompactError::File {
            key: key.clone(),
            source,
        })?;
        events.extend(decoded);
    }
    report.events_in = events.len();
    // The first arrival of an id is the one kept.
    events.sort_by(|a, b| {
        (a.arrival_time, &a.shard_id, &a.sequence_number).cmp(&(
            b.arrival_time,
            &b.shard_id,
            &b.sequence_number,
        ))
    });
    let mut seen = HashSet::with_capacity(events.len());
    events.retain(|e| seen.insert(e.event.event_id));
    report.duplicates = report.events_in - events.len();
    report.events_out = events.len();
    events.sort_by(|a, b| {
        (a.event.event_time, a.event.event_id).cmp(&(b.event.event_time, b.event.event_id))
    });
    let daily = aggregate(events.iter().map(|e| &e.event));
    report.daily_rows = daily.len();

    let name = compacted_name(&inputs);
    let encode_error = |key: &str| {
        let key = key.to_owned();
        move |source| CompactError::File { key, source }
    };
    let events_key = data_file(SALES_EVENTS, day, &name, "parquet");
    let daily_key = data_file(DAILY_SALES, day, &name, "parquet");
    let events_file = encode_sales_events(&events.iter().collect::<Vec<_>>(), codec)
        .map_err(encode_error(&events_key))?;
    let daily_file = encode_daily_sales(&daily.iter().collect::<Vec<_>>(), codec)
        .map_err(encode_error(&daily_key))?;
    let record = Record {
        day,
        started_at: Utc::now(),
        inputs: inputs.clone(),
        outputs: vec![events_key.clone(), daily_key.clone()],
    };
    let record_bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    match lake
        .put_if(&record_key, record_bytes, Precondition::Absent)
        .await
    {
        Ok(_) => {}
        Err(LakeError::Conflict { .. }) => {
            return Err(CompactError::Busy {
                day,
                key: record_key,
            });
        }
        Err(e) => return Err(e.into()),
    }
    lake.put(&events_key, events_file).await?;
    lake.put(&daily_key, daily_file).await?;
    remove_all(lake, &inputs).await?;
    lake.delete(&record_key).await?;
    report.files_in = inputs.len();
    report.files_out = 2;
    Ok(report)
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// `compacted-<digest of the replaced keys>`: re-running over the same inputs gives the same name.
fn compacted_name(inputs: &[String]) -> String {
    let mut hasher = Md5::new();
    for key in inputs {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{COMPACTED}{hex}")
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

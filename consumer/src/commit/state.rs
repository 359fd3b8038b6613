//! Per-shard commit state: the committed position, the batch in flight, the counts, the dates
//! written, and the manifest of the shard's exact id index ([`crate::commit::index`]).
//!
//! The state (`_state/{stream}/{shard}.json`) is the one object written with compare-and-swap,
//! twice per batch (intent, then commit). The ids themselves are in immutable segment objects
//! the state names, so neither write carries them.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use sales_stream::SequenceNumber;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::commit::index::Manifest;
use crate::core::batch::BatchCounts;
use crate::core::layout::STATE;
use crate::lake::{Lake, LakeError};

/// The state format this version writes. 4 replaced the id window with the exact index (`ids`)
/// and added the shard's ancestors: a consumer of format 3 would drop them on its next write, so
/// it refuses format 4 instead.
const FORMAT_VERSION: u32 = 4;
/// The oldest state format this version reads (and upgrades at its next write). Dates written
/// under formats 2 and 3 have no index; their ids are read from the lake when a batch touches
/// them again.
const OLDEST_FORMAT_VERSION: u32 = 2;
/// How many committed batches a shard's state remembers (see [`ShardState::committed_batches`]):
/// a writer reads the state back within moments of a lost answer, long before 64 more batches
/// of the same shard can commit.
pub const COMMITS_REMEMBERED: usize = 64;

/// Why stored state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The object is not state this version wrote.
    #[error("shard state {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// The output a batch in flight will write, recorded before it writes any: if it never commits,
/// the next attempt removes exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub first_sequence_number: Option<SequenceNumber>,
    pub last_sequence_number: Option<SequenceNumber>,
    pub keys: Vec<String>,
    pub started_at: DateTime<Utc>,
}

/// Every record a shard was given, accounted for: `records + replayed` were delivered, and
/// `received = accepted + duplicates + quarantined` events came out of the `records`.
pub type ShardCounts = BatchCounts;

/// Which stream a shard's state belongs to. The name is not enough: a stream deleted and
/// created again under the same name, or another embedded stream directory of the same name,
/// starts its sequence numbers afresh, and old positions would skip its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamIdentity {
    /// The stream's ARN, or `local:<id>` for an embedded stream.
    pub id: String,
    /// When the stream was created, where the reader knows it (the poller asks Kinesis; a Lambda
    /// event carries only the ARN, which a re-created stream keeps).
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
}

impl StreamIdentity {
    /// A stream known by its id alone.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created: None,
        }
    }

    /// Whether `other` can be the same stream: the same id, and the same creation time where
    /// both know it.
    pub fn matches(&self, other: &Self) -> bool {
        self.id == other.id
            && (self.created.is_none() || other.created.is_none() || self.created == other.created)
    }
}

impl std::fmt::Display for StreamIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.created {
            Some(created) => write!(f, "{} (created {created})", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// The committed state of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub format_version: u32,
    pub stream: String,
    pub shard_id: String,
    /// Bumped by every write of the state; a batch's files are named by its intent's.
    pub generation: u64,
    /// The last committed record: everything up to it is in the lake.
    pub sequence_number: Option<SequenceNumber>,
    /// When the last committed record arrived in the stream.
    pub last_arrival: Option<DateTime<Utc>>,
    pub committed_at: Option<DateTime<Utc>>,
    pub counts: ShardCounts,
    pub batches: u64,
    /// The batch in flight, if one started and did not commit.
    pub in_flight: Option<Intent>,
    /// The intent generations of the last [`COMMITS_REMEMBERED`] committed batches, oldest
    /// first. A writer whose commit's answer was lost reads the state again and finds its own
    /// generation here if the commit was applied, even after later writers moved the state on.
    #[serde(default)]
    pub committed_batches: VecDeque<u64>,
    /// A fresh random id per write of the state, so that a writer recognises its own write when
    /// it reads the state back, and two writers never write the same bytes.
    #[serde(default)]
    pub write_id: Uuid,
    /// Every sale date this shard has written, with the batch count (`batches`) of the last
    /// commit that wrote it: `consumer compact --touched` compacts the days touched since it
    /// last ran.
    #[serde(default)]
    pub touched: BTreeMap<NaiveDate, u64>,
    /// The stream these positions are in (states written before it was recorded have none).
    #[serde(default)]
    pub stream_identity: Option<StreamIdentity>,
    /// The segments of the shard's id index, by sale date.
    #[serde(default)]
    pub ids: Manifest,
    /// The shards this one was split or merged from, their ancestors included: their indexes
    /// are looked up too. `None` in a state written before they were recorded (unknown).
    #[serde(default)]
    pub ancestors: Option<Vec<String>>,
    /// The manifest may lack dates this shard wrote: the state was started again while the
    /// shard's earlier objects were still in the lake (a state moved aside), or it was written
    /// before the dates were recorded (format 2). Dates the manifest lacks are then read from
    /// the lake.
    #[serde(default)]
    pub index_partial: bool,
}

impl ShardState {
    pub fn new(stream: &str, shard_id: &str, identity: &StreamIdentity) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            stream: stream.to_owned(),
            shard_id: shard_id.to_owned(),
            stream_identity: Some(identity.clone()),
            ..Self::default()
        }
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let mut state: Self = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&state.format_version) {
            return Err(corrupt(format!(
                "format version {} (this consumer reads {OLDEST_FORMAT_VERSION} to \
                 {FORMAT_VERSION})",
                state.format_version
            )));
        }
        if state.format_version < 3 {
            state.index_partial = true;
        }
        state.format_version = FORMAT_VERSION;
        Ok(state)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Strings, numbers and timestamps only: serialising cannot fail. Compact, not pretty:
        // the manifest grows with the dates written, and the state is written twice per batch.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The next write of this state: generation bumped, a fresh write id.
    pub fn next(&self) -> Self {
        Self {
            generation: self.generation + 1,
            write_id: Uuid::new_v4(),
            ..self.clone()
        }
    }

    /// Records that the batch whose intent had `generation` committed.
    pub fn remember_commit(&mut self, generation: u64) {
        self.committed_batches.push_back(generation);
        while self.committed_batches.len() > COMMITS_REMEMBERED {
            self.committed_batches.pop_front();
        }
    }

    /// Whether the batch whose intent had `generation` is known to have committed: `Some(true)`
    /// or `Some(false)`, or `None` when it is older than what the state remembers.
    pub fn has_committed(&self, generation: u64) -> Option<bool> {
        if self.committed_batches.contains(&generation) {
            return Some(true);
        }
        let forgotten = self.committed_batches.len() >= COMMITS_REMEMBERED
            && self
                .committed_batches
                .front()
                .is_some_and(|&oldest| generation < oldest);
        (!forgotten).then_some(false)
    }
}

/// A shard state object that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableState {
    pub key: String,
    pub reason: String,
}

/// Every shard's state in the lake (`_state/{stream}/{shard}.json`), by stream and shard; an
/// unreadable one is an error.
pub async fn shard_states(lake: &impl Lake) -> Result<Vec<ShardState>, StateError> {
    let (states, unreadable) = read_shard_states(lake).await?;
    match unreadable.into_iter().next() {
        Some(UnreadableState { key, reason }) => Err(StateError::Corrupt { key, reason }),
        None => Ok(states),
    }
}

/// Every shard's state, and apart the ones that could not be read (`consumer status` reports
/// those rather than stopping).
pub async fn read_shard_states(
    lake: &impl Lake,
) -> Result<(Vec<ShardState>, Vec<UnreadableState>), StateError> {
    let mut states = Vec::new();
    let mut unreadable = Vec::new();
    for key in lake.list(STATE).await? {
        let parts: Vec<&str> = key.split('/').collect();
        if parts.len() != 3 || parts[1] == "compaction" || !key.ends_with(".json") {
            continue;
        }
        if let Some(object) = lake.get(&key).await? {
            match ShardState::decode(&key, &object.bytes) {
                Ok(state) => states.push(state),
                Err(StateError::Corrupt { key, reason }) => {
                    unreadable.push(UnreadableState { key, reason });
                }
                Err(e) => return Err(e),
            }
        }
    }
    states.sort_by(|a, b| (&a.stream, &a.shard_id).cmp(&(&b.stream, &b.shard_id)));
    Ok((states, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("time")
    }

    #[test]
    fn state_round_trips() {
        let mut state = ShardState::new(
            "demo",
            "shardId-000000000000",
            &StreamIdentity::new("local:x"),
        );
        state.sequence_number =
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898");
        state.counts.accepted = 5;
        state.in_flight = Some(Intent {
            first_sequence_number: SequenceNumber::parse("1"),
            last_sequence_number: SequenceNumber::parse("2"),
            keys: vec!["daily_sales/x.parquet".into()],
            started_at: at(3),
        });
        state.ids.insert(
            NaiveDate::from_ymd_opt(2011, 12, 9).expect("date"),
            vec![crate::commit::index::SegmentRef {
                generation: 7,
                ids: 1000,
            }],
        );
        state.ancestors = Some(vec!["shardId-000000000000".into()]);
        let back = ShardState::decode("k", &state.encode()).expect("decodes");
        assert_eq!(back, state);
        assert!(ShardState::decode("k", b"{}").is_err());
    }
}

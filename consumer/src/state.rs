//! Per-shard commit state: the committed position, the batch in flight, the counts, and the
//! bounded window of recently committed event ids that drops re-sent events.
//!
//! Two objects per shard. The state itself (`_state/{stream}/{shard}.json`) is small and is the
//! one written with compare-and-swap, twice per batch (intent, then commit). The id window is
//! large (16 bytes per id) and immutable: each commit writes a new window object and the state
//! names it, so the intent write never carries the ids.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use sales_stream::SequenceNumber;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::BatchCounts;
use crate::lake::{Lake, LakeError};
use crate::layout::STATE;

/// Recent committed ids kept per shard unless configured otherwise: 1.6 MB in memory and in the
/// window object. At the typical rate of a shard that is hours of events; at a shard's full
/// 1 MiB/s of aggregated events it is seconds, and [`crate::compact`] catches older re-sends
/// when it deduplicates the day.
pub const DEFAULT_WINDOW_IDS: usize = 100_000;
/// How long a committed id is kept unless configured otherwise. Producers re-send after a
/// timeout, within seconds or minutes; older re-sends are caught by compaction.
pub const DEFAULT_WINDOW_AGE: Duration = Duration::from_secs(60 * 60);
/// The state format this version writes. 3 added the write id, the committed batches, the
/// touched days and the stream identity: a consumer of format 2 would drop them on its next
/// write (and a lost answer could then be misjudged), so it refuses format 3 instead.
const FORMAT_VERSION: u32 = 3;
/// The oldest state format this version reads (and upgrades at its next write).
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

/// How many committed ids a shard remembers, and for how long: whichever bound is hit first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    pub max_ids: usize,
    pub max_age: Duration,
}

impl Default for WindowLimits {
    fn default() -> Self {
        Self {
            max_ids: DEFAULT_WINDOW_IDS,
            max_age: DEFAULT_WINDOW_AGE,
        }
    }
}

/// The ids one commit added, with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    committed_at: DateTime<Utc>,
    ids: VecDeque<Uuid>,
}

/// Recently committed event ids of a shard, oldest first out.
#[derive(Debug, Clone, Default)]
pub struct IdWindow {
    segments: VecDeque<Segment>,
    members: HashSet<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct StoredSegment {
    committed_at: DateTime<Utc>,
    /// The ids as 16 bytes each, base64.
    ids: String,
}

#[derive(Serialize, Deserialize)]
struct StoredWindow {
    format_version: u32,
    segments: Vec<StoredSegment>,
}

impl IdWindow {
    pub fn contains(&self, id: &Uuid) -> bool {
        self.members.contains(id)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Remembers the ids of a commit made at `at`.
    pub fn add(&mut self, at: DateTime<Utc>, ids: impl IntoIterator<Item = Uuid>) {
        let ids: VecDeque<Uuid> = ids
            .into_iter()
            .filter(|id| self.members.insert(*id))
            .collect();
        if !ids.is_empty() {
            self.segments.push_back(Segment {
                committed_at: at,
                ids,
            });
        }
    }

    /// Forgets ids older than `limits.max_age` at `now`, then the oldest beyond `max_ids`.
    pub fn expire(&mut self, now: DateTime<Utc>, limits: WindowLimits) {
        let max_age = chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::MAX);
        while let Some(oldest) = self.segments.front_mut() {
            let too_old = now.signed_duration_since(oldest.committed_at) > max_age;
            if !too_old && self.members.len() <= limits.max_ids {
                break;
            }
            let excess = if too_old {
                oldest.ids.len()
            } else {
                self.members.len() - limits.max_ids
            };
            for id in oldest.ids.drain(..excess.min(oldest.ids.len())) {
                self.members.remove(&id);
            }
            if oldest.ids.is_empty() {
                self.segments.pop_front();
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let segments = self
            .segments
            .iter()
            .map(|segment| {
                let mut bytes = Vec::with_capacity(segment.ids.len() * 16);
                for id in &segment.ids {
                    bytes.extend_from_slice(id.as_bytes());
                }
                StoredSegment {
                    committed_at: segment.committed_at,
                    ids: STANDARD.encode(bytes),
                }
            })
            .collect();
        let stored = StoredWindow {
            format_version: FORMAT_VERSION,
            segments,
        };
        // Strings and timestamps only: serialising cannot fail.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let stored: StoredWindow =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut window = Self::default();
        for segment in stored.segments {
            let bytes = STANDARD
                .decode(&segment.ids)
                .map_err(|e| corrupt(e.to_string()))?;
            if bytes.len() % 16 != 0 {
                return Err(corrupt(format!(
                    "{} id bytes are not whole ids",
                    bytes.len()
                )));
            }
            let ids = bytes
                .chunks_exact(16)
                .map(|chunk| Uuid::from_slice(chunk).map_err(|e| corrupt(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            window.add(segment.committed_at, ids);
        }
        Ok(window)
    }
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
    /// The id window object of the last commit.
    pub window_key: Option<String>,
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
        state.format_version = FORMAT_VERSION;
        Ok(state)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Strings, numbers and timestamps only: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
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

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).expect("time")
    }

    #[test]
    fn the_window_forgets_the_oldest_beyond_its_count() {
        let mut window = IdWindow::default();
        window.add(at(0), (1..=3).map(id));
        window.add(at(1), [id(3), id(4)]);
        assert_eq!(
            window.len(),
            4,
            "an id already remembered is not added twice"
        );
        let limits = WindowLimits {
            max_ids: 3,
            max_age: Duration::from_secs(60),
        };
        window.expire(at(2), limits);
        assert_eq!(window.len(), 3);
        assert!(!window.contains(&id(1)));
        assert!((2..=4).all(|n| window.contains(&id(n))));
    }

    #[test]
    fn the_window_forgets_ids_older_than_its_age() {
        let mut window = IdWindow::default();
        window.add(at(0), [id(1), id(2)]);
        window.add(at(50), [id(3)]);
        let limits = WindowLimits {
            max_ids: 100,
            max_age: Duration::from_secs(30),
        };
        window.expire(at(40), limits);
        assert_eq!(window.len(), 1);
        assert!(window.contains(&id(3)) && !window.contains(&id(1)));
        window.expire(at(81), limits);
        assert!(window.is_empty());
    }

    #[test]
    fn window_and_state_round_trip() {
        let mut window = IdWindow::default();
        window.add(at(0), (1..=5).map(id));
        window.add(at(9), [id(6)]);
        let back = IdWindow::decode("w", &window.encode()).expect("decodes");
        assert_eq!(back.segments, window.segments);
        assert!(IdWindow::decode("w", b"{}").is_err());

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
        let back = ShardState::decode("k", &state.encode()).expect("decodes");
        assert_eq!(back, state);
        assert!(ShardState::decode("k", b"{}").is_err());
    }
}

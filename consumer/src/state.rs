//! Per-shard commit state: the last committed sequence number, the counts, and a bounded window
//! of recently committed event ids that drops re-sent events.

use std::collections::{HashSet, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use sales_stream::SequenceNumber;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::BatchCounts;

/// Recent committed ids kept per shard unless configured otherwise. A re-sent event is caught
/// if fewer than this many newer events of its shard were committed in between.
pub const DEFAULT_DEDUPE_WINDOW: usize = 200_000;
const FORMAT_VERSION: u32 = 1;

/// Why stored state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state object is not state this version wrote.
    #[error("shard state {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The most recent `capacity` committed event ids of a shard, oldest first out.
#[derive(Debug, Clone)]
pub struct IdWindow {
    capacity: usize,
    order: VecDeque<Uuid>,
    members: HashSet<Uuid>,
}

impl IdWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    pub fn contains(&self, id: &Uuid) -> bool {
        self.members.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn insert(&mut self, id: Uuid) {
        if self.capacity == 0 || !self.members.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }

    /// The ids as 16 bytes each, oldest first, base64-encoded: compact state.
    fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.order.len() * 16);
        for id in &self.order {
            bytes.extend_from_slice(id.as_bytes());
        }
        STANDARD.encode(bytes)
    }

    fn decode(text: &str, capacity: usize) -> Result<Self, String> {
        let bytes = STANDARD.decode(text).map_err(|e| e.to_string())?;
        if bytes.len() % 16 != 0 {
            return Err(format!("{} id bytes are not whole ids", bytes.len()));
        }
        let mut window = Self::new(capacity);
        for chunk in bytes.chunks_exact(16) {
            window.insert(Uuid::from_slice(chunk).map_err(|e| e.to_string())?);
        }
        Ok(window)
    }
}

/// The committed state of one shard.
#[derive(Debug, Clone)]
pub struct ShardState {
    pub sequence_number: Option<SequenceNumber>,
    pub counts: BatchCounts,
    pub batches: u64,
    pub recent_ids: IdWindow,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredState {
    format_version: u32,
    stream: String,
    shard_id: String,
    sequence_number: Option<SequenceNumber>,
    counts: BatchCounts,
    batches: u64,
    updated_at: DateTime<Utc>,
    recent_ids: String,
}

impl ShardState {
    pub fn new(window: usize) -> Self {
        Self {
            sequence_number: None,
            counts: BatchCounts::default(),
            batches: 0,
            recent_ids: IdWindow::new(window),
        }
    }

    /// Reads stored state; `window` bounds the id window from now on.
    pub fn decode(key: &str, bytes: &[u8], window: usize) -> Result<Self, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let stored: StoredState =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.format_version != FORMAT_VERSION {
            return Err(corrupt(format!("format version {}", stored.format_version)));
        }
        Ok(Self {
            sequence_number: stored.sequence_number,
            counts: stored.counts,
            batches: stored.batches,
            recent_ids: IdWindow::decode(&stored.recent_ids, window).map_err(corrupt)?,
        })
    }

    pub fn encode(&self, stream: &str, shard_id: &str) -> Vec<u8> {
        let stored = StoredState {
            format_version: FORMAT_VERSION,
            stream: stream.to_owned(),
            shard_id: shard_id.to_owned(),
            sequence_number: self.sequence_number.clone(),
            counts: self.counts,
            batches: self.batches,
            updated_at: Utc::now(),
            recent_ids: self.recent_ids.encode(),
        };
        serde_json::to_vec_pretty(&stored).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_window_forgets_the_oldest_first() {
        let mut window = IdWindow::new(3);
        for n in 1..=4 {
            window.insert(id(n));
        }
        window.insert(id(4));
        assert_eq!(window.len(), 3);
        assert!(!window.contains(&id(1)));
        assert!((2..=4).all(|n| window.contains(&id(n))));
    }

    #[test]
    fn state_round_trips_and_a_smaller_window_keeps_the_newest() {
        let mut state = ShardState::new(10);
        for n in 1..=5 {
            state.recent_ids.insert(id(n));
        }
        state.sequence_number =
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898");
        state.counts.accepted = 5;
        state.batches = 2;
        let bytes = state.encode("demo", "shardId-000000000000");
        let back = ShardState::decode("k", &bytes, 2).expect("decodes");
        assert_eq!(back.sequence_number, state.sequence_number);
        assert_eq!(back.counts, state.counts);
        assert_eq!(back.batches, 2);
        assert_eq!(back.recent_ids.len(), 2);
        assert!(back.recent_ids.contains(&id(5)) && back.recent_ids.contains(&id(4)));
        assert!(ShardState::decode("k", b"{}", 2).is_err());
    }
}

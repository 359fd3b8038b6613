//! What a warm function instance keeps between invocations: shard checkpoints and id index
//! segments, both bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::commit::Checkpoint;
use crate::commit::index::IdCache;

/// Shards whose checkpoints a warm function instance keeps. An instance is given one shard's
/// batch at a time, and a mapping's shards are spread over instances; beyond this many, the
/// least recently used checkpoint is dropped (it is read from the lake again if its shard comes
/// back), so an instance that meets thousands of shards over its life stays bounded.
pub const MAX_CACHED_CHECKPOINTS: usize = 16;

/// Shard checkpoints and id index segments kept between warm invocations, so a shard's state
/// and the index of the dates it writes are read from the lake once per function instance, not
/// once per batch. A stale checkpoint (another instance committed the shard meanwhile) is safe:
/// its first write loses the compare-and-swap and the state is read again; segments never
/// change. At most [`MAX_CACHED_CHECKPOINTS`] checkpoints and
/// [`crate::commit::index::DEFAULT_CACHE_IDS`] ids are kept.
#[derive(Debug, Default)]
pub struct Checkpoints {
    checkpoints: Mutex<CheckpointCache>,
    ids: IdCache,
}

#[derive(Debug, Default)]
struct CheckpointCache {
    /// Each checkpoint with the tick of its last use.
    entries: HashMap<(String, String), (u64, Checkpoint)>,
    tick: u64,
}

impl Checkpoints {
    /// The id segments kept.
    pub fn ids(&self) -> &IdCache {
        &self.ids
    }

    pub(super) fn take(&self, stream: &str, shard_id: &str) -> Option<Checkpoint> {
        let mut cache = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entries
            .remove(&(stream.to_owned(), shard_id.to_owned()))
            .map(|(_, checkpoint)| checkpoint)
    }

    pub(super) fn keep(&self, checkpoint: Checkpoint) {
        let state = checkpoint.state();
        let key = (state.stream.clone(), state.shard_id.clone());
        let mut cache = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let tick = cache.tick;
        cache.entries.insert(key, (tick, checkpoint));
        while cache.entries.len() > MAX_CACHED_CHECKPOINTS {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(key) => cache.entries.remove(&key),
                None => break,
            };
        }
    }

    /// How many checkpoints are kept.
    pub fn len(&self) -> usize {
        self.checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::state::StreamIdentity;
    use crate::lake::LocalLake;

    #[tokio::test]
    async fn the_checkpoint_cache_keeps_the_most_recently_used_shards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        let checkpoints = Checkpoints::default();
        let shard = |n: usize| format!("shardId-{n:012}");
        for n in 0..=MAX_CACHED_CHECKPOINTS {
            let checkpoint =
                Checkpoint::load(&lake, &StreamIdentity::new("local:s"), "s", &shard(n))
                    .await
                    .expect("fresh");
            checkpoints.keep(checkpoint);
            if n == 3 {
                // Shard 0 is used again: it becomes the most recent.
                let again = checkpoints.take("s", &shard(0)).expect("kept");
                checkpoints.keep(again);
            }
        }
        assert_eq!(checkpoints.len(), MAX_CACHED_CHECKPOINTS);
        assert!(
            checkpoints.take("s", &shard(1)).is_none(),
            "the least recently used went"
        );
        assert!(
            checkpoints.take("s", &shard(0)).is_some(),
            "used again, so kept"
        );
        assert!(
            checkpoints
                .take("s", &shard(MAX_CACHED_CHECKPOINTS))
                .is_some()
        );
    }
}

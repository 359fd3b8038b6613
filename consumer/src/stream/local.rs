//! The embedded `file://` stream as a [`ShardSource`]: one generation of shards, never closed,
//! kept for ever.

use std::time::Duration;

use local_stream::LocalStream;
use sales_stream::StartingPosition;

use super::{ShardInfo, ShardRead, ShardSource, StreamError};
use crate::commit::state::StreamIdentity;

impl ShardSource for LocalStream {
    fn stream_name(&self) -> &str {
        self.name()
    }

    fn identity(&self) -> StreamIdentity {
        StreamIdentity::new(LocalStream::identity(self))
    }

    fn retention(&self) -> Option<Duration> {
        None
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, StreamError> {
        Ok(self
            .shard_ids()
            .map(|id| ShardInfo {
                id: id.to_owned(),
                parents: Vec::new(),
            })
            .collect())
    }

    async fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> Result<ShardRead, StreamError> {
        // File reads block: on tokio's blocking threads, as `tokio::fs` would run them. The
        // records are then allocated in the arenas of the threads that decode them, not in the
        // async workers' as well (see the consumer's `main`).
        let (log, position) = (self.shard_log(shard_id)?, position.clone());
        let records = tokio::task::spawn_blocking(move || log.read(&position, limit))
            .await
            .map_err(|e| StreamError::Reader {
                shard_id: shard_id.to_owned(),
                reason: e.to_string(),
            })??;
        Ok(ShardRead {
            records,
            closed: false,
        })
    }
}

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
        Ok(ShardRead {
            records: LocalStream::read(self, shard_id, position, limit)?,
            closed: false,
        })
    }
}

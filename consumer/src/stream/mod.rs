//! The stream the consumer reads, as narrow traits at the edge: [`ShardSource`] reads a stream
//! shard by shard (the poller and replay), [`Lineage`] tells a shard's ancestors (the Lambda
//! function, whose events name only the shard). The embedded stream's implementation is in
//! [`local`]; Kinesis' is an AWS adapter ([`crate::aws::kinesis`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use local_stream::LocalStreamError;
use sales_stream::{StartingPosition, StreamRecord};

use crate::commit::state::StreamIdentity;

mod local;

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the embedded stream failed.
    #[error("reading the stream: {0}")]
    Local(#[from] LocalStreamError),
    /// The stream cannot be read at all: no credentials, no such stream.
    #[error("{0}")]
    Setup(String),
    /// The thread reading the embedded stream's log stopped before it answered (it panicked,
    /// or the runtime is shutting down).
    #[error("reading shard {shard_id}: {reason}")]
    Reader { shard_id: String, reason: String },
    /// A Kinesis request failed after the SDK's retries.
    #[error("{operation} on Kinesis stream {stream}: {reason}")]
    Kinesis {
        operation: &'static str,
        stream: String,
        reason: String,
    },
}

/// A shard and the shards it was split or merged from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
}

/// Every ancestor of `shard_id` in `shards` (its parents, their parents, and so on).
pub fn ancestors(shards: &[ShardInfo], shard_id: &str) -> Vec<String> {
    let parents: HashMap<&str, &[String]> = shards
        .iter()
        .map(|s| (s.id.as_str(), s.parents.as_slice()))
        .collect();
    let mut found = Vec::new();
    let mut pending: Vec<&str> = parents
        .get(shard_id)
        .map_or(Vec::new(), |p| p.iter().map(String::as_str).collect());
    while let Some(shard) = pending.pop() {
        if found.iter().any(|f| f == shard) {
            continue;
        }
        found.push(shard.to_owned());
        pending.extend(
            parents
                .get(shard)
                .into_iter()
                .flat_map(|p| p.iter().map(String::as_str)),
        );
    }
    found.sort();
    found
}

/// One read of a shard.
#[derive(Debug, Clone, Default)]
pub struct ShardRead {
    /// Empty only when the shard is caught up.
    pub records: Vec<StreamRecord>,
    /// The shard is closed (split or merged) and these are its last records.
    pub closed: bool,
}

/// A stream read shard by shard.
pub trait ShardSource: Send + Sync + 'static {
    fn stream_name(&self) -> &str;
    /// What tells this stream from another of the same name (see [`StreamIdentity`]).
    fn identity(&self) -> StreamIdentity;
    /// How long the stream keeps records (`None`: for ever).
    fn retention(&self) -> Option<Duration>;
    /// Every shard of the stream, open or closed, with its parents.
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, StreamError>> + Send;
    /// Up to `limit` records after `position`.
    fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> impl Future<Output = Result<ShardRead, StreamError>> + Send;
}

/// Where the function learns which shards a shard was split or merged from: a Lambda event
/// names only the shard. Asked once per shard, when its state is new.
pub trait Lineage: Send + Sync {
    /// Every ancestor of `shard_id` in the stream named `stream`, as far as the stream lists
    /// them (ancestors older than its retention are found in the ancestors' states).
    fn ancestors(
        &self,
        stream: &str,
        shard_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;
}

//! The consumer: reads sales events from a stream, drops duplicates, aggregates daily sales and
//! writes a Hive-partitioned Parquet lake.
//!
//! The core is pure and synchronous: [`process_batch`] turns a batch of stream records into the
//! lake files to write ([`aggregate`], [`writer`], [`quarantine`]). The stream and the lake sit
//! behind [`ShardSource`] and [`Lake`]; [`poll`] drives them as a long-lived poller, and
//! [`function::handle`] as an AWS Lambda function on Kinesis events.

pub mod aggregate;
pub mod app;
#[cfg(feature = "query")]
pub mod athena;
pub mod batch;
pub mod commit;
pub mod compact;
pub mod function;
pub mod index;
pub mod kinesis;
pub mod lake;
pub mod layout;
pub mod mapping;
pub mod metrics;
pub mod options;
pub mod poll;
pub mod progress;
pub mod quarantine;
#[cfg(feature = "query")]
pub mod query;
pub mod replay;
pub mod s3;
pub mod state;
pub mod status;
pub mod store;
pub mod writer;

pub use aggregate::{DailyKey, DailySales};
pub use batch::{
    BatchCounts, BatchError, BatchOptions, BatchOutput, Decoded, OutputFile, decode_batch,
    finish_batch, process_batch,
};
pub use commit::{Checkpoint, CommitError, Committed};
pub use compact::{CompactError, CompactReport, Days, compact, compact_day};
pub use function::{Checkpoints, FunctionConfig, Invocation, InvocationReport, handle};
pub use index::{DEFAULT_CACHE_IDS, IdCache, IndexError};
pub use kinesis::KinesisSource;
pub use lake::{Lake, LakeError, LocalLake, Object, Precondition, Version};
pub use poll::{PollError, PollOptions, PollSummary, ShardInfo, ShardRead, ShardSource, poll};
pub use replay::{ReplayError, ReplayRange, ReplayStart, ReplaySummary, replay};
pub use s3::S3Lake;
pub use state::{Intent, ShardState, shard_states};
pub use status::Status;
pub use store::LakeStore;
pub use writer::{Codec, WriterError, daily_sales_schema, sales_events_schema, writer_properties};

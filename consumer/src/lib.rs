//! The consumer: reads sales events from a stream, drops duplicates, aggregates daily sales and
//! writes a Hive-partitioned Parquet lake.
//!
//! The folders are the layers, and imports point down them:
//!
//! - [`commands`] (the `consumer` CLI) and [`function`] (the AWS Lambda entry) drive
//! - [`commit`], the exactly-once protocol (shard states, the id index, compaction), over
//! - [`core`], the pure, synchronous batch step: records in, Parquet files out.
//!
//! The stream and the lake sit behind narrow traits, [`stream::ShardSource`] and [`lake::Lake`],
//! each with a local implementation beside it, and report notices behind [`notify::Notifier`];
//! [`aws`] holds the Kinesis, S3, Athena and SNS adapters.

pub mod aws;
pub mod commands;
pub mod commit;
pub mod core;
pub mod function;
pub mod lake;
pub mod notify;
pub mod progress;
pub mod stream;

pub use aws::kinesis::{KinesisLineage, KinesisSource};
pub use aws::s3::S3Lake;
pub use commands::poll::{PollError, PollOptions, PollSummary, poll};
pub use commands::replay::{ReplayError, ReplayRange, ReplayStart, ReplaySummary, replay};
pub use commands::status::Status;
pub use commands::store::LakeStore;
pub use commit::compact::{CompactError, CompactReport, Days, compact, compact_day};
pub use commit::index::{DEFAULT_CACHE_IDS, IdCache, IndexError};
pub use commit::state::{Intent, ShardState, shard_states};
pub use commit::{Checkpoint, CommitError, Committed};
pub use core::aggregate::{DailyKey, DailySales};
pub use core::batch::{
    BatchCounts, BatchError, BatchOptions, BatchOutput, Decoded, OutputFile, decode_batch,
    finish_batch, process_batch,
};
pub use core::writer::{
    Codec, WriterError, customer_sales_schema, daily_sales_schema, sales_events_schema,
    writer_properties,
};
pub use function::{Checkpoints, FunctionConfig, Invocation, InvocationReport, handle};
pub use lake::{Lake, LakeError, LocalLake, Object, Precondition, Version};
pub use stream::{Lineage, ShardInfo, ShardRead, ShardSource, StreamError};

//! The Lambda function: a Kinesis event in, lake files and a partial-batch response out.
//!
//! [`handle`] is a plain async function over the [`crate::lake::Lake`] trait, so it is tested by
//! calling it with fixture events. Per shard in the event: load the shard's state, skip records
//! at or before its committed position (a redelivery), run the batch step, write the files and
//! commit. A malformed record is quarantined and never fails the batch; only a failure to make
//! the batch durable (S3 down or throttled past the SDK's retries) is reported, as the batch's
//! first uncommitted sequence number, so Lambda retries from there (ReportBatchItemFailures) and
//! checkpoints everything before it.
//!
//! One file per concern: what the function is invoked with ([`invocation`]), its configuration
//! ([`config`]), what a warm instance keeps ([`checkpoints`]), the Kinesis handler
//! ([`handler`]), the metrics it logs ([`metrics`]), and its reports ([`report`]).

pub mod checkpoints;
pub mod config;
pub mod handler;
pub mod invocation;
pub mod metrics;
pub mod report;

pub use checkpoints::{Checkpoints, MAX_CACHED_CHECKPOINTS};
pub use config::{ConfigError, DEFAULT_METRICS_NAMESPACE, FunctionConfig};
pub use handler::{InvocationReport, handle};
pub use invocation::{EventError, Invocation};

//! The producer: reads sales CSV exports, turns each row into a [`SalesEvent`] with a
//! deterministic id, writes the rows it cannot accept to a rejects file, and streams the events.
//!
//! The core ([`CsvReader`], [`ColumnMap`], [`DateParser`], [`RowParser`]) is pure and
//! synchronous, and so is [`Batcher`], which packs events into `PutRecords` requests (plain or
//! aggregated). Streams sit behind [`RecordSink`]; [`send_csv`] sends with several requests in
//! flight, resends failed entries by index under one [`RetryPolicy`], and tracks the resume point.
//!
//! [`SalesEvent`]: sales_stream::SalesEvent

pub mod acks;
pub mod app;
pub mod batcher;
pub mod columns;
pub mod dates;
pub mod generate;
pub mod input;
pub mod kinesis;
pub mod options;
pub mod progress;
pub mod read_ahead;
pub mod reader;
pub mod rejects;
pub mod retry;
pub mod row;
pub mod send;
pub mod sink;
pub mod source;
pub mod throttle;

pub use batcher::{
    Batcher, BatcherError, DEFAULT_AGGREGATE_BYTES, EventKey, MAX_BYTES_PER_PUT, MAX_RECORD_BYTES,
    MAX_RECORDS_PER_PUT, Packing, PutBatch, RequestLimits,
};
pub use columns::{ColumnMap, ColumnOverride, Field, HeaderError};
pub use dates::{DateOrder, DateParser, DetectedOrder, OrderDetector};
pub use generate::{GenerateOptions, generate};
pub use kinesis::{KinesisError, KinesisSink};
pub use read_ahead::ReadAhead;
pub use reader::{CsvReader, Fields, Line, RawRecord, ReadError, TextEncoding};
pub use rejects::RejectsFile;
pub use retry::RetryPolicy;
pub use row::{RejectReason, RowParser};
pub use send::{SendError, SendOptions, StreamFailure, Summary, send_csv};
pub use sink::{DryRun, EntryFailure, RecordSink, SinkError};
pub use source::Source;
pub use throttle::Throttle;

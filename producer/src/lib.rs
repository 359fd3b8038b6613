//! The producer: reads sales CSV exports, turns each row into a [`SalesEvent`] with a
//! deterministic id, writes the rows it cannot accept to a rejects file, and streams the events.
//!
//! The core ([`CsvReader`], [`ColumnMap`], [`DateParser`], [`RowParser`]) is pure and
//! synchronous; streams sit behind [`RecordSink`].
//!
//! [`SalesEvent`]: sales_stream::SalesEvent

pub mod app;
pub mod columns;
pub mod dates;
pub mod generate;
pub mod options;
pub mod progress;
pub mod reader;
pub mod rejects;
pub mod row;
pub mod send;
pub mod sink;

pub use columns::{ColumnMap, ColumnOverride, Field, HeaderError};
pub use dates::DateParser;
pub use generate::{GenerateOptions, generate};
pub use reader::{CsvReader, Line, RawRecord, ReadError};
pub use rejects::RejectsFile;
pub use row::{RejectReason, RowParser};
pub use send::{SendError, Summary, send_csv};
pub use sink::{DryRun, MAX_BYTES_PER_PUT, MAX_RECORDS_PER_PUT, RecordSink, SinkError};

//! Where events go: the seam between the producer's pure core and a stream.

use sales_stream::{LocalStream, LocalStreamError, PutEntry};

/// Kinesis `PutRecords` takes at most 500 records per request.
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// Kinesis `PutRecords` takes at most 5 MiB per request (data plus partition keys).
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;

/// Why records could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The embedded stream refused the write.
    #[error(transparent)]
    Local(#[from] LocalStreamError),
}

/// A stream that takes batches of records.
pub trait RecordSink {
    /// Sends a batch (within the limits above); returns once every record is durably accepted.
    fn put_records(&mut self, entries: &[PutEntry]) -> Result<(), SinkError>;
}

impl RecordSink for LocalStream {
    fn put_records(&mut self, entries: &[PutEntry]) -> Result<(), SinkError> {
        LocalStream::put_records(self, entries)?;
        Ok(())
    }
}

/// `--dry-run`: encodes everything, sends nothing.
#[derive(Debug, Default)]
pub struct DryRun;

impl RecordSink for DryRun {
    fn put_records(&mut self, _entries: &[PutEntry]) -> Result<(), SinkError> {
        Ok(())
    }
}

//! Where records go: the seam between the producer and a stream, as narrow as `PutRecords`.

use std::future::Future;

use local_stream::{LocalStream, LocalStreamError};
use sales_stream::PutEntry;

use crate::batcher::RequestLimits;
use crate::retry::{Retry, classify_code};

/// One entry's failure inside an otherwise answered `PutRecords` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    /// The service's error code, e.g. `ProvisionedThroughputExceededException`.
    pub code: String,
    pub message: String,
}

impl EntryFailure {
    pub fn retry(&self) -> Retry {
        classify_code(&self.code)
    }
}

/// Why a whole request failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The request may succeed if sent again: throttling, a service failure, a timeout, a
    /// dropped connection.
    #[error("{0}")]
    Transient(String),
    /// Sending again cannot help: the stream is gone, access is denied, the request is invalid.
    #[error("{0}")]
    Permanent(String),
    /// The embedded stream refused the write.
    #[error(transparent)]
    Local(#[from] LocalStreamError),
}

impl SinkError {
    pub fn retry(&self) -> Retry {
        match self {
            Self::Transient(_) => Retry::Transient,
            Self::Permanent(_) | Self::Local(_) => Retry::Permanent,
        }
    }
}

/// A stream that takes `PutRecords` requests (within the limits in [`crate::batcher`]).
pub trait RecordSink: Send + Sync + 'static {
    /// Sends the entries; on an answer, returns each entry's outcome in order (`None` for
    /// accepted). Failed entries are the caller's to send again.
    fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> impl Future<Output = Result<Vec<Option<EntryFailure>>, SinkError>> + Send;

    /// How large a request it takes.
    fn request_limits(&self) -> RequestLimits {
        RequestLimits::KINESIS
    }
}

/// The most bytes one request to the embedded stream carries: with the requests in flight and
/// queued, what the producer holds (`--max-in-flight` 8 of them, twice over, is 32 MiB).
pub const LOCAL_BYTES_PER_PUT: usize = 2 * 1024 * 1024;

impl RecordSink for LocalStream {
    async fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
        // A local append is a short fsync'd write; the embedded stream serialises appends itself.
        LocalStream::put_records(self, entries)?;
        Ok(vec![None; entries.len()])
    }

    /// A request is one write and one fsync per shard, whatever its number of records: Kinesis's
    /// 500 a request made 4,000 fsyncs of half a million plain records, half the producer's
    /// time. Its bytes stay bounded, as they bound the producer's memory.
    fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            records: usize::MAX,
            bytes: LOCAL_BYTES_PER_PUT,
        }
    }
}

/// `--dry-run`: encodes everything, sends nothing.
#[derive(Debug, Default)]
pub struct DryRun;

impl RecordSink for DryRun {
    async fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
        Ok(vec![None; entries.len()])
    }
}

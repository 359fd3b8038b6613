//! Where records go: the seam between the producer and a stream, as narrow as `PutRecords`.

use std::future::Future;

use local_stream::{LocalStream, LocalStreamError};
use sales_stream::PutEntry;

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
}

impl RecordSink for LocalStream {
    async fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
        // A local append is a short fsync'd write; the embedded stream serialises appends itself.
        LocalStream::put_records(self, entries)?;
        Ok(vec![None; entries.len()])
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

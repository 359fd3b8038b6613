//! One request until every record in it is acknowledged: the failed entries of a partial
//! failure are sent again by index, with backoff, under the one [`RetryPolicy`].

use std::borrow::Cow;
use std::sync::Arc;

use sales_stream::PutEntry;

use super::{Shared, StreamFailure};
use crate::batcher::PutBatch;
use crate::retry::{Retry, RetryPolicy};
use crate::sink::RecordSink;

/// Sends one request until every record in it is acknowledged: failed entries are sent again
/// by index, with backoff, until the retry policy gives up.
pub(super) async fn put_batch<S: RecordSink>(
    sink: Arc<S>,
    batch: PutBatch,
    policy: RetryPolicy,
    shared: Arc<Shared>,
) -> Result<(), StreamFailure> {
    let mut pending: Vec<usize> = (0..batch.entries.len()).collect();
    let mut failures = 0_u32;
    loop {
        let entries: Cow<'_, [PutEntry]> = if pending.len() == batch.entries.len() {
            Cow::Borrowed(&batch.entries)
        } else {
            Cow::Owned(pending.iter().map(|&i| batch.entries[i].clone()).collect())
        };
        let last_error = match sink.put_records(&entries).await {
            Ok(outcomes) => {
                let mut still_pending = Vec::new();
                let mut last_error = String::new();
                for (&index, outcome) in pending.iter().zip(outcomes) {
                    match outcome {
                        None => {
                            let rows = batch.rows_of(index);
                            shared.acks().acknowledge(rows);
                            Shared::count(&shared.events_sent, rows.len());
                            Shared::count(&shared.records, 1);
                            Shared::count(
                                &shared.bytes,
                                crate::batcher::entry_bytes(&batch.entries[index]),
                            );
                        }
                        Some(failure) if failure.retry() == Retry::Permanent => {
                            return Err(StreamFailure::Refused {
                                code: failure.code,
                                message: failure.message,
                            });
                        }
                        Some(failure) => {
                            last_error = format!("{}: {}", failure.code, failure.message);
                            still_pending.push(index);
                        }
                    }
                }
                let progressed = still_pending.len() < pending.len();
                pending = still_pending;
                if progressed {
                    failures = 0;
                }
                last_error
            }
            Err(error) if error.retry() == Retry::Transient => error.to_string(),
            Err(error) => return Err(StreamFailure::Sink(error)),
        };
        if pending.is_empty() {
            return Ok(());
        }
        failures += 1;
        if !policy.allows(failures) {
            return Err(StreamFailure::GaveUp {
                records: pending.len(),
                attempts: failures,
                last_error,
            });
        }
        tracing::debug!(records = pending.len(), failures, %last_error, "sending again");
        Shared::count(&shared.retries, 1);
        Shared::count(&shared.records_resent, pending.len());
        let wait = policy.backoff(failures, &mut rand::rng());
        tokio::time::sleep(wait).await;
    }
}

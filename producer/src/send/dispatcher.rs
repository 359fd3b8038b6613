//! The dispatcher: sends batches as the packing thread hands them over, with a bounded number
//! in flight and the throttle's pace, and stops everything on the first failure or on Ctrl-C.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::resend::put_batch;
use super::{SendOptions, Shared, StreamFailure};
use crate::batcher::PutBatch;
use crate::sink::RecordSink;
use crate::throttle::Throttle;

/// Sends batches as they come, at most `max_in_flight` at once. Returns the first failure, and
/// whether Ctrl-C stopped the run. Either way, it returns only once no request is in flight.
pub(super) async fn dispatch<S: RecordSink>(
    mut requests: mpsc::Receiver<PutBatch>,
    sink: Arc<S>,
    options: &SendOptions,
    shared: Arc<Shared>,
) -> (Result<(), StreamFailure>, bool) {
    let mut in_flight = JoinSet::new();
    let mut throttle = Throttle::new(options.rows_per_s, options.shard_limit);
    let mut failure = None;
    let mut interrupted = false;
    let mut receiving = true;
    let mut interrupt = pin!(tokio::signal::ctrl_c());
    let max_in_flight = options.max_in_flight.max(1);
    let stop = |requests: &mut mpsc::Receiver<PutBatch>| {
        shared.stop.store(true, Ordering::Relaxed);
        // Batches still queued are not sent; their rows stay unsettled, after the resume point.
        requests.close();
    };
    while receiving || !in_flight.is_empty() {
        tokio::select! {
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                receiving = false;
                stop(&mut requests);
                tracing::warn!(in_flight = in_flight.len(), "interrupted: letting requests in flight settle (Ctrl-C again to quit at once)");
                tokio::spawn(async {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("interrupted again: quitting without waiting");
                        std::process::exit(130);
                    }
                });
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                let result = match joined {
                    Ok(result) => result,
                    Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
                };
                if let Err(error) = result {
                    tracing::error!(%error, "a request failed for good: stopping");
                    failure.get_or_insert(error);
                    receiving = false;
                    stop(&mut requests);
                }
            }
            batch = requests.recv(), if receiving && in_flight.len() < max_in_flight => {
                let Some(batch) = batch else {
                    receiving = false;
                    continue;
                };
                if !throttle.is_unlimited() {
                    let wait = throttle.take(Instant::now(), batch.events(), batch.entries.len(), batch.bytes);
                    tokio::time::sleep(wait).await;
                }
                in_flight.spawn(put_batch(Arc::clone(&sink), batch, options.retry, Arc::clone(&shared)));
            }
        }
    }
    (failure.map_or(Ok(()), Err), interrupted)
}

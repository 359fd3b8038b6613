//! The packing thread: rows → events → batches, with every row accounted for (sent, rejected
//! or blank) and every batch handed to the dispatcher through a bounded channel.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{SendError, Shared};
use crate::batcher::{Batcher, PutBatch};
use crate::input::KeyedLine;
use crate::progress::Progress;
use crate::reader::{Line, ReadError};
use crate::rejects::RejectsFile;
use crate::row::RowParser;

/// What the packing thread counted.
#[derive(Debug, Default)]
pub(super) struct ReadCounts {
    pub(super) rows_read: u64,
    pub(super) rows_skipped: u64,
    pub(super) rejected: u64,
    pub(super) blank: u64,
}

/// The packing thread: rows → events → batches, until the input ends or a stop is asked for.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_rows(
    mut lines: impl Iterator<Item = Result<KeyedLine, ReadError>>,
    parser: &RowParser,
    mut batcher: Batcher,
    rejects: &mut RejectsFile,
    mut progress: Progress,
    batches: &mpsc::Sender<PutBatch>,
    shared: &Shared,
    skip_rows: u64,
) -> Result<ReadCounts, SendError> {
    let mut counts = ReadCounts::default();
    let rejects_error = |rejects: &RejectsFile, source| SendError::Rejects {
        path: rejects.path().display().to_string(),
        source,
    };
    // `false` once the dispatcher stopped taking batches. Time spent blocked here is the
    // stream's, not the input's, so it does not age the batcher's buffered events.
    let send = |batcher: &mut Batcher, batch: PutBatch| {
        let waiting = Instant::now();
        let taken = batches.blocking_send(batch).is_ok();
        batcher.postpone(waiting.elapsed());
        taken
    };
    let mut row = 0_u64;
    let mut open = true;
    while open && !shared.stopping() {
        let Some((line, key)) = lines.next().transpose()? else {
            break;
        };
        row += 1;
        if row <= skip_rows {
            counts.rows_skipped += 1;
            continue;
        }
        if row == skip_rows + 1 && skip_rows > 0 {
            // Rejects of the rows settled before stay; later ones are written again below.
            rejects
                .keep_before(line.line())
                .map_err(|e| rejects_error(rejects, e))?;
        }
        counts.rows_read += 1;
        match line {
            Line::Blank { .. } => {
                counts.blank += 1;
                shared.acks().read(row, false);
            }
            Line::Malformed { line, raw, reason } => {
                counts.rejected += 1;
                rejects
                    .write(line, &reason, &raw)
                    .map_err(|e| rejects_error(rejects, e))?;
                shared.acks().read(row, false);
            }
            Line::Record(record) => match key.map_or_else(
                || parser.parse(&record),
                |key| parser.parse_as(&record, key.id),
            ) {
                Ok(event) => {
                    shared.acks().read(row, true);
                    let origin = parser.origin(record.line);
                    let hash_key = key.and_then(|key| key.hash_key);
                    let full = batcher.push_keyed(row, &event, origin, hash_key)?;
                    if let Some(batch) = full {
                        open = send(&mut batcher, batch);
                    }
                }
                Err(reason) => {
                    counts.rejected += 1;
                    rejects
                        .write(record.line, &reason.to_string(), record.raw())
                        .map_err(|e| rejects_error(rejects, e))?;
                    shared.acks().read(row, false);
                }
            },
        }
        // One clock read a row serves both (a read is a few percent of a row's cost).
        let now = Instant::now();
        for batch in batcher.take_if_stale(now) {
            open = open && send(&mut batcher, batch);
        }
        progress.update(now, counts.rows_read, || {
            format!(
                "{} sent, {} rejected, {:.1} MiB, {} retries",
                shared.events_sent.load(Ordering::Relaxed),
                counts.rejected,
                shared.bytes.load(Ordering::Relaxed) as f64 / 1_048_576.0,
                shared.retries.load(Ordering::Relaxed)
            )
        });
    }
    if open && !shared.stopping() {
        for batch in batcher.finish() {
            if !send(&mut batcher, batch) {
                break;
            }
        }
    }
    rejects.flush().map_err(|e| rejects_error(rejects, e))?;
    progress.finish();
    Ok(counts)
}

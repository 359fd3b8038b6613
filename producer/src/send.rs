//! The producer's run: read rows, turn them into events, batch them and send them, accounting
//! for every row (rows read = events sent + rejected + blank).

use std::io::BufRead;
use std::time::Instant;

use sales_stream::{PutEntry, codec};
use serde::Serialize;

use crate::progress::Progress;
use crate::reader::{CsvReader, Line, ReadError};
use crate::rejects::RejectsFile;
use crate::row::RowParser;
use crate::sink::{MAX_BYTES_PER_PUT, MAX_RECORDS_PER_PUT, RecordSink, SinkError};

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The input could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The rejects file could not be written (rows are never dropped without it).
    #[error("writing the rejects file {path}: {source}")]
    Rejects {
        path: String,
        source: std::io::Error,
    },
    /// The stream did not take a batch. Rows before `acknowledged_rows` are safely sent.
    #[error(
        "sending to the stream failed after {acknowledged_rows} rows were acknowledged: {source}"
    )]
    Sink {
        acknowledged_rows: u64,
        source: SinkError,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub rows_read: u64,
    pub events_sent: u64,
    pub rejected: u64,
    pub blank: u64,
    pub records: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
}

impl Summary {
    pub fn rows_per_s(&self) -> f64 {
        self.rows_read as f64 / self.elapsed_s.max(1e-9)
    }
}

/// Accumulates records until a `PutRecords` limit would be crossed.
#[derive(Debug, Default)]
struct Batch {
    entries: Vec<PutEntry>,
    bytes: usize,
    /// Rows read before this batch's first entry: all of them are acknowledged (sent, rejected
    /// or blank) once the previous batch is.
    rows_before: u64,
}

impl Batch {
    fn fits(&self, entry: &PutEntry) -> bool {
        self.entries.len() < MAX_RECORDS_PER_PUT
            && self.bytes + entry.data.len() + entry.partition_key.len() <= MAX_BYTES_PER_PUT
    }
}

/// Streams every row of `reader` to `sink`.
pub fn send_csv<R: BufRead>(
    mut reader: CsvReader<R>,
    parser: &RowParser,
    sink: &mut impl RecordSink,
    rejects: &mut RejectsFile,
    progress: &mut Progress,
) -> Result<Summary, SendError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut batch = Batch::default();
    let mut flush = |batch: &mut Batch, summary: &mut Summary| -> Result<(), SendError> {
        if batch.entries.is_empty() {
            return Ok(());
        }
        sink.put_records(&batch.entries)
            .map_err(|source| SendError::Sink {
                acknowledged_rows: batch.rows_before,
                source,
            })?;
        summary.events_sent += batch.entries.len() as u64;
        summary.records += batch.entries.len() as u64;
        summary.bytes += batch.bytes as u64;
        *batch = Batch::default();
        Ok(())
    };
    let rejects_error = |rejects: &RejectsFile, source| SendError::Rejects {
        path: rejects.path().display().to_string(),
        source,
    };
    while let Some(line) = reader.next_line()? {
        summary.rows_read += 1;
        match line {
            Line::Blank { .. } => summary.blank += 1,
            Line::Record(record) => match parser.parse(&record) {
                Ok(event) => {
                    let entry = PutEntry {
                        partition_key: event.event_id.to_string(),
                        data: codec::encode(&event),
                    };
                    if !batch.fits(&entry) {
                        flush(&mut batch, &mut summary)?;
                    }
                    if batch.entries.is_empty() {
                        batch.rows_before = summary.rows_read - 1;
                    }
                    batch.bytes += entry.data.len() + entry.partition_key.len();
                    batch.entries.push(entry);
                }
                Err(reason) => {
                    summary.rejected += 1;
                    rejects
                        .write(record.line, &reason.to_string(), &record.raw)
                        .map_err(|e| rejects_error(rejects, e))?;
                }
            },
        }
        progress.update(summary.rows_read, || {
            format!(
                "{} sent, {} rejected",
                summary.events_sent, summary.rejected
            )
        });
    }
    flush(&mut batch, &mut summary)?;
    rejects.flush().map_err(|e| rejects_error(rejects, e))?;
    progress.finish();
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

//! What a run did, for the summary line and `--summary-json`.

use serde::Serialize;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Rows read in this run (after `--skip-rows`).
    pub rows_read: u64,
    /// Rows skipped by `--skip-rows`.
    pub rows_skipped: u64,
    pub events_sent: u64,
    pub rejected: u64,
    pub blank: u64,
    /// Stream records acknowledged (an aggregated record carries many events).
    pub records: u64,
    /// Data plus partition key bytes acknowledged: what the shard limits count.
    pub bytes: u64,
    /// Requests sent again after a failure.
    pub retries: u64,
    /// Records sent again after a failure (the whole request, or its failed entries).
    pub records_resent: u64,
    pub elapsed_s: f64,
    /// Rows `1..=resume_after` are settled: the `--skip-rows` that resumes this run.
    pub resume_after: u64,
    /// Ctrl-C stopped the run before the end of the input.
    pub interrupted: bool,
}

impl Summary {
    pub fn rows_per_s(&self) -> f64 {
        self.rows_read as f64 / self.elapsed_s.max(1e-9)
    }
}

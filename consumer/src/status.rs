//! `consumer status`: every shard's committed position, its lag and the counts that account for
//! every record it was given, read from the lake's commit state.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use sales_stream::StartingPosition;
use serde::Serialize;

use crate::batch::BatchCounts;
use crate::poll::{PollError, ShardSource};
use crate::state::ShardState;

/// One shard's line of the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardStatus {
    pub stream: String,
    pub shard_id: String,
    /// The last committed sequence number.
    pub position: Option<String>,
    pub committed_at: Option<DateTime<Utc>>,
    /// Age of the oldest record not yet committed, in seconds: 0 when caught up. Known only
    /// when the stream was read (`--stream`).
    pub lag_s: Option<f64>,
    /// Age of the last committed record, in seconds.
    pub last_record_age_s: Option<f64>,
    pub batches: u64,
    pub counts: BatchCounts,
    /// Files named by a batch in flight (one that started and has not committed, or crashed).
    pub in_flight_files: usize,
    /// What needs doing about this shard, if anything.
    pub warnings: Vec<String>,
}

/// What the stream's retention means for a shard that is `lag` seconds behind.
fn retention_warnings(shard: &ShardStatus, lag: f64, retention: f64) -> Vec<String> {
    let hours = |s: f64| format!("{:.1} h", s / 3600.0);
    let mut warnings = Vec::new();
    if lag > 0.0 && shard.last_record_age_s.is_some_and(|age| age > retention) {
        warnings.push(format!(
            "its committed position is older than the stream's retention ({}): records after \
             it may have expired unread. Compare the lake with the source (its totals) and \
             re-stream what is missing",
            hours(retention)
        ));
    } else if lag > retention / 2.0 {
        warnings.push(format!(
            "its oldest unread record is {} old and the stream keeps records {}: it expires \
             unread unless the consumer catches up (or `consumer replay` reads it) first",
            hours(lag),
            hours(retention)
        ));
    }
    warnings
}

/// The status of every shard, with the sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    pub shards: Vec<ShardStatus>,
    pub totals: BatchCounts,
}

fn seconds(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<f64> {
    since.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
}

impl Status {
    pub fn new(states: Vec<ShardState>, now: DateTime<Utc>) -> Self {
        let mut status = Self::default();
        for state in states {
            status.totals.add(&state.counts);
            status.shards.push(ShardStatus {
                position: state.sequence_number.as_ref().map(ToString::to_string),
                committed_at: state.committed_at,
                lag_s: None,
                last_record_age_s: seconds(state.last_arrival, now),
                batches: state.batches,
                counts: state.counts,
                in_flight_files: state.in_flight.as_ref().map_or(0, |i| i.keys.len()),
                warnings: Vec::new(),
                stream: state.stream,
                shard_id: state.shard_id,
            });
        }
        status
    }

    /// Fills in each shard's lag from the stream: the age of the first record after its
    /// committed position. Shards of other streams are left alone.
    pub async fn measure_lag(
        &mut self,
        source: &impl ShardSource,
        now: DateTime<Utc>,
    ) -> Result<(), PollError> {
        for shard in &mut self.shards {
            if shard.stream != source.stream_name() {
                continue;
            }
            let position = match shard
                .position
                .as_deref()
                .and_then(sales_stream::SequenceNumber::parse)
            {
                Some(sequence) => StartingPosition::AfterSequenceNumber(sequence),
                None => StartingPosition::TrimHorizon,
            };
            let read = source.read(&shard.shard_id, &position, 1).await?;
            let lag = read
                .records
                .first()
                .and_then(|r| seconds(Some(r.approximate_arrival), now))
                .unwrap_or(0.0);
            shard.lag_s = Some(lag);
            if let Some(retention) = source.retention() {
                shard.warnings = retention_warnings(shard, lag, retention.as_secs_f64());
            }
        }
        Ok(())
    }

    /// The status as a text table, one shard per line, then the totals and their identity.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let age = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:>8} {:>10} {:>10} {:>12} {:>12} {:>11} {:>11} {:>11} {:>9}  position",
            "stream",
            "shard",
            "lag",
            "last rec",
            "batches",
            "records",
            "received",
            "accepted",
            "dup by id",
            "dup by seq",
            "quarant."
        );
        for s in &self.shards {
            let c = &s.counts;
            let _ = writeln!(
                out,
                "{:<16} {:<22} {:>8} {:>10} {:>10} {:>12} {:>12} {:>11} {:>11} {:>11} {:>9}  {}{}",
                s.stream,
                s.shard_id,
                age(s.lag_s),
                age(s.last_record_age_s),
                s.batches,
                c.records,
                c.received,
                c.accepted,
                c.duplicates,
                c.replayed,
                c.quarantined,
                s.position.as_deref().unwrap_or("-"),
                if s.in_flight_files > 0 {
                    format!("  (batch in flight: {} files)", s.in_flight_files)
                } else {
                    String::new()
                }
            );
        }
        let t = &self.totals;
        let holds = t.received == t.accepted + t.duplicates + t.quarantined;
        let _ = writeln!(
            out,
            "{} shards: {} records delivered = {} processed + {} duplicates by sequence; \
             {} events received = {} accepted + {} duplicates by id + {} quarantined ({})",
            self.shards.len(),
            t.records + t.replayed,
            t.records,
            t.replayed,
            t.received,
            t.accepted,
            t.duplicates,
            t.quarantined,
            if holds { "adds up" } else { "DOES NOT ADD UP" }
        );
        for s in &self.shards {
            for warning in &s.warnings {
                let _ = writeln!(out, "warning: {} {}: {warning}", s.stream, s.shard_id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StreamIdentity;

    #[test]
    fn the_table_sums_the_shards_and_checks_the_identity() {
        let now = DateTime::from_timestamp(1_700_000_100, 0).expect("time");
        let mut a = ShardState::new(
            "sales",
            "shardId-000000000000",
            &StreamIdentity::new("local:sales"),
        );
        a.counts = BatchCounts {
            records: 10,
            received: 12,
            accepted: 9,
            duplicates: 2,
            quarantined: 1,
            replayed: 4,
        };
        a.last_arrival = DateTime::from_timestamp(1_700_000_000, 0);
        let mut b = ShardState::new(
            "sales",
            "shardId-000000000001",
            &StreamIdentity::new("local:sales"),
        );
        b.counts.records = 1;
        b.counts.received = 1;
        b.counts.accepted = 1;
        let status = Status::new(vec![a, b], now);
        assert_eq!(status.shards[0].last_record_age_s, Some(100.0));
        assert_eq!(status.totals.accepted, 10);
        let table = status.to_table();
        assert!(
            table.contains(
                "2 shards: 15 records delivered = 11 processed + 4 duplicates by sequence; \
                 13 events received = 10 accepted + 2 duplicates by id + 1 quarantined (adds up)"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_position_older_than_the_retention_is_a_warning() {
        let now = DateTime::from_timestamp(1_700_100_000, 0).expect("time");
        let mut state = ShardState::new("s", "shardId-000000000000", &StreamIdentity::new("a"));
        state.last_arrival = DateTime::from_timestamp(1_700_100_000 - 30 * 3600, 0);
        let mut status = Status::new(vec![state], now);
        let day = 24.0 * 3600.0;
        let shard = &status.shards[0];
        assert!(
            retention_warnings(shard, 0.0, day).is_empty(),
            "caught up: nothing lost"
        );
        let behind = retention_warnings(shard, 29.0 * 3600.0, day);
        assert!(
            behind[0].contains("older than the stream's retention (24.0 h)"),
            "{behind:?}"
        );
        status.shards[0].last_record_age_s = Some(60.0);
        let shard = &status.shards[0];
        assert!(retention_warnings(shard, 3600.0, day).is_empty());
        let expiring = retention_warnings(shard, 13.0 * 3600.0, day);
        assert!(expiring[0].contains("expires unread"), "{expiring:?}");
        status.shards[0].warnings = expiring;
        assert!(
            status
                .to_table()
                .contains("warning: s shardId-000000000000: its oldest")
        );
    }
}

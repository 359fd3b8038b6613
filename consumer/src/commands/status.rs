//! `consumer status`: every shard's committed position, its lag and the counts that account for
//! every record it was given, read from the lake's commit state.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use sales_stream::StartingPosition;
use serde::Serialize;

use crate::commit::state::{ShardState, UnreadableState};
use crate::core::batch::BatchCounts;
use crate::stream::{ShardSource, StreamError};

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
    /// State objects that could not be read, each with what to do about it.
    pub unreadable: Vec<String>,
}

/// How long a batch may stay in flight before the status calls it stopped: longer than the
/// Lambda's longest run (15 minutes) and than any poller's batch.
const STOPPED_AFTER: chrono::Duration = chrono::Duration::minutes(15);

fn seconds(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<f64> {
    since.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
}

impl Status {
    pub fn new(states: Vec<ShardState>, now: DateTime<Utc>) -> Self {
        let mut status = Self::default();
        for state in states {
            status.totals.add(&state.counts);
            let mut warnings = Vec::new();
            if let Some(intent) = &state.in_flight
                && now - intent.started_at > STOPPED_AFTER
            {
                warnings.push(format!(
                    "a batch started at {} did not commit: the shard's next batch (`consumer \
                     poll`, or the Lambda's next invocation) removes its {} files and reads its \
                     records again",
                    intent.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    intent.keys.len()
                ));
            }
            status.shards.push(ShardStatus {
                position: state.sequence_number.as_ref().map(ToString::to_string),
                committed_at: state.committed_at,
                lag_s: None,
                last_record_age_s: seconds(state.last_arrival, now),
                batches: state.batches,
                counts: state.counts,
                in_flight_files: state.in_flight.as_ref().map_or(0, |i| i.keys.len()),
                warnings,
                stream: state.stream,
                shard_id: state.shard_id,
            });
        }
        status
    }

    /// Adds the state objects that could not be read.
    pub fn add_unreadable(&mut self, unreadable: Vec<UnreadableState>) {
        for state in unreadable {
            self.unreadable.push(format!(
                "{} is unreadable ({}): its shard stops there. Move it aside (keep it for a bug \
                 report) and the shard starts again from the stream's oldest record; events \
                 already in the lake are then dropped by id, read from the lake",
                state.key, state.reason
            ));
        }
    }

    /// Fills in each shard's lag from the stream: the age of the first record after its
    /// committed position. Shards of other streams are left alone.
    pub async fn measure_lag(
        &mut self,
        source: &impl ShardSource,
        now: DateTime<Utc>,
    ) -> Result<(), StreamError> {
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
                let warnings = retention_warnings(shard, lag, retention.as_secs_f64());
                shard.warnings.extend(warnings);
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
        for problem in &self.unreadable {
            let _ = writeln!(out, "warning: {problem}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::state::StreamIdentity;

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

    #[test]
    fn a_stopped_batch_and_an_unreadable_state_say_what_to_do() {
        let now = DateTime::from_timestamp(1_700_100_000, 0).expect("time");
        let mut state = ShardState::new("s", "shardId-000000000000", &StreamIdentity::new("a"));
        state.in_flight = Some(crate::commit::state::Intent {
            first_sequence_number: None,
            last_sequence_number: None,
            keys: vec!["a".into(), "b".into()],
            started_at: now - chrono::Duration::hours(2),
        });
        let mut status = Status::new(vec![state.clone()], now);
        status.add_unreadable(vec![UnreadableState {
            key: "_state/s/shardId-000000000001.json".into(),
            reason: "expected value at line 1".into(),
        }]);
        let table = status.to_table();
        assert!(table.contains("removes its 2 files"), "{table}");
        assert!(
            table.contains("shardId-000000000001.json is unreadable"),
            "{table}"
        );
        assert!(table.contains("Move it aside"), "{table}");
        // A batch in flight for moments is simply running.
        state.in_flight.as_mut().expect("intent").started_at = now;
        assert!(Status::new(vec![state], now).shards[0].warnings.is_empty());
    }
}

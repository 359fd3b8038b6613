//! Rate control: `--rate ROWS_PER_S` and `--shard-limit N` (stay under N shards' write limits).
//! Pure arithmetic over token buckets; the sender sleeps for what [`Throttle::take`] says.

use std::time::{Duration, Instant};

/// A shard accepts at most 1,000 records per second.
pub const SHARD_RECORDS_PER_S: f64 = 1_000.0;
/// A shard accepts at most 1 MiB per second (data plus partition keys).
pub const SHARD_BYTES_PER_S: f64 = 1_048_576.0;

/// One limit: `rate` units per second, with one second's worth of burst.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    tokens: f64,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        Self { rate, tokens: rate }
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.rate);
    }

    /// Takes `amount` (going into debt if need be); returns how long until the debt is paid.
    fn take(&mut self, amount: f64) -> Duration {
        self.tokens -= amount;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Limits on what the producer sends per second. No limit by default.
#[derive(Debug, Clone)]
pub struct Throttle {
    rows: Option<Bucket>,
    records: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Instant,
}

impl Throttle {
    /// `rows_per_s`: events per second. `shards`: stay under this many shards' record and
    /// byte limits.
    pub fn new(rows_per_s: Option<f64>, shards: Option<u32>) -> Self {
        let shards = shards.map(f64::from);
        Self {
            rows: rows_per_s.filter(|r| *r > 0.0).map(Bucket::new),
            records: shards.map(|n| Bucket::new(n * SHARD_RECORDS_PER_S)),
            bytes: shards.map(|n| Bucket::new(n * SHARD_BYTES_PER_S)),
            last: Instant::now(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rows.is_none() && self.records.is_none()
    }

    /// Accounts for a request of `rows` events in `records` records of `bytes` bytes sent at
    /// `now`; returns how long to wait before sending it so that every limit holds.
    pub fn take(&mut self, now: Instant, rows: usize, records: usize, bytes: usize) -> Duration {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        [
            (&mut self.rows, rows),
            (&mut self.records, records),
            (&mut self.bytes, bytes),
        ]
        .into_iter()
        .filter_map(|(bucket, amount)| {
            let bucket = bucket.as_mut()?;
            bucket.refill(elapsed);
            Some(bucket.take(amount as f64))
        })
        .max()
        .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `requests` requests as fast as the throttle allows; returns the simulated seconds.
    fn simulate(
        throttle: &mut Throttle,
        requests: usize,
        rows: usize,
        records: usize,
        bytes: usize,
    ) -> f64 {
        let start = Instant::now();
        let mut now = start;
        for _ in 0..requests {
            now += throttle.take(now, rows, records, bytes);
        }
        (now - start).as_secs_f64()
    }

    #[test]
    fn rows_per_second_is_held_over_time() {
        let mut throttle = Throttle::new(Some(1_000.0), None);
        // 100 requests of 500 rows = 50,000 rows at 1,000/s: 49 s after the first second's burst.
        let seconds = simulate(&mut throttle, 100, 500, 500, 100);
        assert!((seconds - 49.0).abs() < 0.01, "{seconds}");
    }

    #[test]
    fn a_shard_limit_binds_on_records_or_bytes_whichever_is_tighter() {
        // Plain records: 500 records per request, 2 shards = 2,000 records/s.
        let seconds = simulate(&mut Throttle::new(None, Some(2)), 40, 500, 500, 150_000);
        assert!((seconds - 9.0).abs() < 0.01, "{seconds}");
        // Aggregated records: few records, many bytes. 2 shards = 2 MiB/s.
        let seconds = simulate(&mut Throttle::new(None, Some(2)), 40, 10_000, 20, 1_048_576);
        assert!((seconds - 19.0).abs() < 0.01, "{seconds}");
    }

    #[test]
    fn no_limit_never_waits() {
        let mut throttle = Throttle::new(None, None);
        assert!(throttle.is_unlimited());
        assert_eq!(simulate(&mut throttle, 1_000, 500, 500, 5_000_000), 0.0);
    }
}

//! Events in, `PutRecords` requests out: one record per event, or events packed per shard into
//! aggregated or compact records. Pure and synchronous; the sender does the I/O.

use std::time::{Duration, Instant};

use uuid::Uuid;

use sales_stream::{
    Aggregator, CompactBlock, CompactError, Compression, Compressor, EventIds, HashKeyRange,
    Origin, PutEntry, SalesEventRef, codec, compact::EMPTY_BLOCK_BYTES, hash_key,
};

/// Kinesis `PutRecords` takes at most 500 records per request.
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// Kinesis `PutRecords` takes at most 5 MiB per request (data plus partition keys).
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;
pub use sales_stream::MAX_RECORD_BYTES;

/// How large one `PutRecords` request may be: the stream's own limits (see
/// [`crate::sink::RecordSink::request_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub records: usize,
    pub bytes: usize,
}

impl RequestLimits {
    /// Kinesis `PutRecords`: 500 records and 5 MiB a request.
    pub const KINESIS: Self = Self {
        records: MAX_RECORDS_PER_PUT,
        bytes: MAX_BYTES_PER_PUT,
    };
}
/// Default size of an aggregated record before compression. The KPL's own default is 50 KiB;
/// 64 KiB compresses a little better and keeps a Lambda batch of 100 records far below the
/// 6 MB invocation payload limit.
pub const DEFAULT_AGGREGATE_BYTES: usize = 64 * 1024;
/// The longest an event waits in a filling aggregate or request before it is sent anyway (checked
/// at the next row), so a slow input (`--rate`, a pipe) still flows. Like the KPL's
/// `RecordMaxBufferedTime`, the clock is the oldest event's: only aggregates that old are closed
/// early, so a fast input still packs full ones.
pub const MAX_LINGER: Duration = Duration::from_millis(500);

/// How events become records.
#[derive(Debug, Clone)]
pub enum Packing {
    /// One record per event, partition key = event id.
    Plain,
    /// Events of the same shard packed into KPL aggregated records.
    Aggregated {
        /// The stream's open shards' hash key ranges: an aggregate only holds events of one
        /// shard, so every event lands where its own partition key would have put it.
        shards: Vec<HashKeyRange>,
        /// Uncompressed size an aggregated record is closed at.
        target_bytes: usize,
        compression: Compression,
    },
    /// Events of the same shard packed into compact records ([`sales_stream::compact`]): the
    /// most events a shard can carry, for streams that only this project's consumer reads.
    Compact {
        shards: Vec<HashKeyRange>,
        /// Uncompressed size a compact record is closed at.
        target_bytes: usize,
    },
}

impl Packing {
    /// The shards events are packed for (none when they are not packed).
    fn shards(&self) -> &[HashKeyRange] {
        match self {
            Packing::Plain => &[],
            Packing::Aggregated { shards, .. } | Packing::Compact { shards, .. } => shards,
        }
    }

    /// Whether [`Batcher::push_keyed`] uses an event's hash key: compact records over more than
    /// one shard (the event's own partition key picks its shard).
    pub fn routes_by_hash_key(&self) -> bool {
        matches!(self, Packing::Compact { shards, .. } if shards.len() > 1)
    }
}

/// What a row's event is sent under, derived from its source and line alone, so the thread that
/// reads the lines can derive it ahead of the one that packs them (an id is a SHA-1, a hash
/// key an MD5: a fifth of the packing thread's work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKey {
    pub id: Uuid,
    /// The Kinesis hash key of the id's text (the partition key), where the packing routes by it
    /// ([`Packing::routes_by_hash_key`]).
    pub hash_key: Option<u128>,
}

impl EventKey {
    /// The key of the event of `line`, with its hash key if `hashed`.
    pub fn derive(ids: &EventIds, line: u64, hashed: bool) -> Self {
        let id = ids.id(line);
        let hash_key =
            hashed.then(|| hash_key(id.hyphenated().encode_lower(&mut Uuid::encode_buffer())));
        Self { id, hash_key }
    }
}

/// One `PutRecords` request, and the input rows each of its records carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutBatch {
    pub entries: Vec<PutEntry>,
    /// Rows of entry `i`: `rows[row_starts[i]..row_starts[i + 1]]` (the last runs to the end).
    rows: Vec<u64>,
    row_starts: Vec<usize>,
    /// Data plus partition key bytes: what Kinesis counts against the limits.
    pub bytes: usize,
}

impl PutBatch {
    /// The input rows (1-based data row numbers) that entry `index` carries.
    pub fn rows_of(&self, index: usize) -> &[u64] {
        let start = self.row_starts[index];
        let end = self
            .row_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.rows.len());
        &self.rows[start..end]
    }

    pub fn events(&self) -> usize {
        self.rows.len()
    }

    fn fits(&self, entry_bytes: usize, limits: RequestLimits) -> bool {
        self.entries.len() < limits.records && self.bytes + entry_bytes <= limits.bytes
    }

    fn push(&mut self, entry: PutEntry, rows: &[u64]) {
        self.bytes += entry_bytes(&entry);
        self.row_starts.push(self.rows.len());
        self.rows.extend_from_slice(rows);
        self.entries.push(entry);
    }
}

/// What a record costs against the shard and request limits.
pub fn entry_bytes(entry: &PutEntry) -> usize {
    entry.data.len() + entry.partition_key.len()
}

/// Why an event cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    /// One event alone is bigger than a Kinesis record may be.
    #[error("row {row}: the event is {bytes} bytes, over the {MAX_RECORD_BYTES}-byte record limit")]
    EventTooLarge { row: u64, bytes: usize },
    /// The event cannot be put in a compact record.
    #[error("row {row}: {source}")]
    Compact { row: u64, source: CompactError },
}

/// Room left under [`MAX_RECORD_BYTES`] for a compact record's partition key and for what zstd
/// adds to data it cannot compress (a frame header and 3 bytes per 128 KiB block).
const COMPACT_SLACK: usize = 2048;

/// The events of one shard waiting to become one record.
#[derive(Debug)]
struct ShardBucket {
    pending: Pending,
    rows: Vec<u64>,
    /// The first event's partition key: the record is put under it, so it lands on that
    /// event's shard (and so do the others: they are all of one shard).
    partition_key: String,
    /// When its oldest event arrived.
    since: Option<Instant>,
}

#[derive(Debug)]
enum Pending {
    Kpl(Aggregator, Compression),
    /// Boxed: a block has a dozen columns.
    Compact(Box<CompactBlock>),
}

impl ShardBucket {
    fn new(packing: &Packing) -> Self {
        Self {
            pending: match packing {
                Packing::Compact { .. } => Pending::Compact(Box::default()),
                Packing::Aggregated { compression, .. } => {
                    Pending::Kpl(Aggregator::new(), *compression)
                }
                // Plain packing has no buckets.
                Packing::Plain => Pending::Kpl(Aggregator::new(), Compression::None),
            },
            rows: Vec::new(),
            partition_key: String::new(),
            since: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The bucket's KPL aggregate: aggregated packing fills only those.
    fn kpl(&mut self) -> &mut Aggregator {
        match &mut self.pending {
            Pending::Kpl(aggregator, _) => aggregator,
            Pending::Compact(_) => unreachable!("aggregated packing fills KPL aggregates"),
        }
    }

    /// The bucket's compact block: compact packing fills only those.
    fn compact(&mut self) -> &mut CompactBlock {
        match &mut self.pending {
            Pending::Compact(block) => block,
            Pending::Kpl(..) => unreachable!("compact packing fills compact blocks"),
        }
    }

    /// Counts in the event of `row`; the first one gives the record its partition key and
    /// starts its clock (reading the clock for every event cost 2% of the producer).
    fn started(&mut self, row: u64, partition_key: impl FnOnce() -> String) {
        if self.rows.is_empty() {
            self.partition_key = partition_key();
        }
        self.rows.push(row);
        self.since.get_or_insert_with(Instant::now);
    }

    /// The record, the rows it carries and when the oldest of them arrived; empties the bucket.
    fn close(&mut self, compressor: &mut Compressor) -> (PutEntry, Vec<u64>, Instant) {
        let data = match &mut self.pending {
            Pending::Kpl(aggregator, compression) => aggregator.finish(*compression),
            Pending::Compact(block) => block.finish(compressor),
        };
        (
            PutEntry {
                partition_key: std::mem::take(&mut self.partition_key),
                data,
            },
            std::mem::take(&mut self.rows),
            self.since.take().unwrap_or_else(Instant::now),
        )
    }
}

/// Turns events into full `PutRecords` batches.
#[derive(Debug)]
pub struct Batcher {
    packing: Packing,
    limits: RequestLimits,
    buckets: Vec<ShardBucket>,
    open: PutBatch,
    /// When the oldest event in `open` arrived.
    open_since: Option<Instant>,
    /// Compresses every shard's compact records.
    compressor: Compressor,
}

impl Batcher {
    /// A batcher of requests within Kinesis's limits.
    pub fn new(packing: Packing) -> Self {
        Self {
            buckets: (0..packing.shards().len())
                .map(|_| ShardBucket::new(&packing))
                .collect(),
            packing,
            limits: RequestLimits::KINESIS,
            open: PutBatch::default(),
            open_since: None,
            compressor: Compressor::new(),
        }
    }

    /// Requests within `limits` instead.
    pub fn with_limits(self, limits: RequestLimits) -> Self {
        Self { limits, ..self }
    }

    /// Adds `event`, read at `row` from `origin`, in the packing's form; returns a batch when
    /// one is full.
    pub fn push_event<'a>(
        &mut self,
        row: u64,
        event: impl Into<SalesEventRef<'a>>,
        origin: Origin<'_>,
    ) -> Result<Option<PutBatch>, BatcherError> {
        self.push_keyed(row, event, origin, None)
    }

    /// [`Self::push_event`] with the hash key of the event's partition key (its id's text) when
    /// the caller derived it ahead ([`EventKey`]); it must be that key's.
    pub fn push_keyed<'a>(
        &mut self,
        row: u64,
        event: impl Into<SalesEventRef<'a>>,
        origin: Origin<'_>,
        hash_key: Option<u128>,
    ) -> Result<Option<PutBatch>, BatcherError> {
        let event = event.into();
        let Packing::Compact {
            shards,
            target_bytes,
        } = &self.packing
        else {
            return self.push(row, event.event_id.to_string(), codec::encode(&event));
        };
        let mut id = Uuid::encode_buffer();
        let partition_key = event.event_id.hyphenated().encode_lower(&mut id);
        let shard = match hash_key {
            Some(key) if shards.len() > 1 => shard_holding(shards, key),
            _ => shard_of(shards, partition_key),
        };
        let max_bytes = MAX_RECORD_BYTES - COMPACT_SLACK;
        let added = CompactBlock::max_added(&event, origin);
        if EMPTY_BLOCK_BYTES + added > max_bytes {
            return Err(BatcherError::EventTooLarge { row, bytes: added });
        }
        let mut ready = None;
        let block = self.buckets[shard].compact();
        // As in a KPL aggregate, an event bigger than the target still goes, alone.
        if !block.is_empty() && block.size() + added > (*target_bytes).min(max_bytes) {
            let (entry, rows, since) = self.buckets[shard].close(&mut self.compressor);
            ready = self.add(entry, &rows, Some(since));
        }
        let bucket = &mut self.buckets[shard];
        bucket
            .compact()
            .push(event, origin)
            .map_err(|source| BatcherError::Compact { row, source })?;
        bucket.started(row, || partition_key.to_owned());
        Ok(ready)
    }

    /// Adds the encoded event of `row`; returns a batch when one is full.
    pub fn push(
        &mut self,
        row: u64,
        partition_key: String,
        data: Vec<u8>,
    ) -> Result<Option<PutBatch>, BatcherError> {
        let bytes = data.len() + partition_key.len();
        if bytes > MAX_RECORD_BYTES {
            return Err(BatcherError::EventTooLarge { row, bytes });
        }
        let Packing::Aggregated {
            shards,
            target_bytes,
            ..
        } = &self.packing
        else {
            return Ok(self.add(
                PutEntry {
                    partition_key,
                    data,
                },
                &[row],
                None,
            ));
        };
        let shard = shard_of(shards, &partition_key);
        let mut ready = None;
        let limit = (*target_bytes).min(MAX_RECORD_BYTES - partition_key.len());
        let aggregator = self.buckets[shard].kpl();
        if !aggregator.is_empty() && aggregator.size_with(&partition_key, data.len()) > limit {
            let (entry, rows, since) = self.buckets[shard].close(&mut self.compressor);
            ready = self.add(entry, &rows, Some(since));
        }
        let bucket = &mut self.buckets[shard];
        let first_key = bucket.is_empty().then(|| partition_key.clone());
        bucket.kpl().push(partition_key, data);
        bucket.started(row, || first_key.unwrap_or_default());
        Ok(ready)
    }

    /// Adds a record whose oldest event arrived at `since` (`None`: now) to the open request;
    /// returns the request it closed to make room.
    fn add(&mut self, entry: PutEntry, rows: &[u64], since: Option<Instant>) -> Option<PutBatch> {
        let mut ready = None;
        if !self.open.fits(entry_bytes(&entry), self.limits) {
            ready = self.take_open();
        }
        // The clock is read only for the first record of a request: later ones are no older.
        self.open_since = match (self.open_since, since) {
            (Some(open), Some(since)) => Some(open.min(since)),
            (Some(open), None) => Some(open),
            (None, since) => Some(since.unwrap_or_else(Instant::now)),
        };
        self.open.push(entry, rows);
        ready
    }

    fn take_open(&mut self) -> Option<PutBatch> {
        self.open_since = None;
        (!self.open.entries.is_empty()).then(|| std::mem::take(&mut self.open))
    }

    /// What holds an event older than [`MAX_LINGER`] at `now`: such aggregates are closed, and
    /// the request they land in is returned with the rest of its entries.
    pub fn take_if_stale(&mut self, now: Instant) -> Vec<PutBatch> {
        let stale = |since: Option<Instant>| {
            since.is_some_and(|at| now.saturating_duration_since(at) >= MAX_LINGER)
        };
        let mut batches = Vec::new();
        for shard in 0..self.buckets.len() {
            if stale(self.buckets[shard].since) {
                let (entry, rows, since) = self.buckets[shard].close(&mut self.compressor);
                batches.extend(self.add(entry, &rows, Some(since)));
            }
        }
        if stale(self.open_since) {
            batches.extend(self.take_open());
        }
        batches
    }

    /// Stops the clocks for `pause`: time the caller spent waiting for the stream to take a
    /// request is not time the input was slow, and closing aggregates early then would only
    /// make more, smaller records exactly when the stream is the bottleneck.
    pub fn postpone(&mut self, pause: Duration) {
        let clocks = self.buckets.iter_mut().map(|b| &mut b.since);
        for since in clocks.chain([&mut self.open_since]).flatten() {
            *since += pause;
        }
    }

    /// Closes every aggregate and returns the remaining batches.
    pub fn finish(&mut self) -> Vec<PutBatch> {
        let mut batches = Vec::new();
        for shard in 0..self.buckets.len() {
            if self.buckets[shard].is_empty() {
                continue;
            }
            let (entry, rows, since) = self.buckets[shard].close(&mut self.compressor);
            batches.extend(self.add(entry, &rows, Some(since)));
        }
        batches.extend(self.take_open());
        batches
    }
}

/// The shard whose hash key range holds `partition_key`'s.
fn shard_of(shards: &[HashKeyRange], partition_key: &str) -> usize {
    if shards.len() == 1 {
        // One shard takes every event: no need to hash the key to find it.
        return 0;
    }
    shard_holding(shards, hash_key(partition_key))
}

/// The shard whose hash key range holds `key`.
fn shard_holding(shards: &[HashKeyRange], key: u128) -> usize {
    shards.iter().position(|r| r.contains(key)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sales_stream::{Payload, SalesEvent, unpack};

    fn key(i: u64) -> String {
        sales_stream::event_id("t.csv", i).to_string()
    }

    fn drain(batcher: &mut Batcher, rows: u64, size: usize) -> Vec<PutBatch> {
        let mut batches = Vec::new();
        for row in 1..=rows {
            batches.extend(batcher.push(row, key(row), vec![b'x'; size]).expect("fits"));
        }
        batches.extend(batcher.finish());
        batches
    }

    #[test]
    fn plain_batches_stay_within_put_records_limits() {
        let batches = drain(&mut Batcher::new(Packing::Plain), 1_234, 10);
        assert_eq!(
            batches.iter().map(|b| b.entries.len()).collect::<Vec<_>>(),
            [500, 500, 234]
        );
        assert_eq!(batches[1].rows_of(0), [501]);
        assert_eq!(batches[0].bytes, 500 * (36 + 10));

        let big = drain(&mut Batcher::new(Packing::Plain), 30, 400 * 1024);
        assert!(big.iter().all(|b| b.bytes <= MAX_BYTES_PER_PUT));
        assert_eq!(big.iter().map(PutBatch::events).sum::<usize>(), 30);
    }

    #[test]
    fn a_stream_with_its_own_limits_gets_requests_within_them() {
        let limits = RequestLimits {
            records: 2_000,
            bytes: 50_000,
        };
        let mut batcher = Batcher::new(Packing::Plain).with_limits(limits);
        let batches = drain(&mut batcher, 2_500, 10);
        assert_eq!(
            batches.iter().map(|b| b.entries.len()).collect::<Vec<_>>(),
            [1_086, 1_086, 328],
            "50,000 bytes hold 1,086 records of 46 bytes"
        );
        let mut batcher = Batcher::new(Packing::Plain).with_limits(RequestLimits {
            bytes: usize::MAX,
            ..limits
        });
        let counts: Vec<_> = drain(&mut batcher, 2_500, 10)
            .iter()
            .map(|b| b.entries.len())
            .collect();
        assert_eq!(counts, [2_000, 500]);
    }

    #[test]
    fn aggregates_hold_one_shard_each_and_every_row_once() {
        let shards = HashKeyRange::split_evenly(4);
        let mut batcher = Batcher::new(Packing::Aggregated {
            shards: shards.clone(),
            target_bytes: 4096,
            compression: Compression::None,
        });
        let batches = drain(&mut batcher, 2_000, 100);
        let mut seen = Vec::new();
        for batch in &batches {
            for (i, entry) in batch.entries.iter().enumerate() {
                assert!(entry.data.len() <= 4096);
                let Payload::Aggregated(users) = unpack(&entry.data).expect("unpacks") else {
                    panic!("plain record");
                };
                let shard_of = |k: &str| shards.iter().position(|r| r.contains(hash_key(k)));
                let shard = shard_of(&entry.partition_key);
                assert!(users.iter().all(|u| shard_of(&u.partition_key) == shard));
                let rows = batch.rows_of(i);
                assert_eq!(rows.len(), users.len());
                for (row, user) in rows.iter().zip(&users) {
                    assert_eq!(user.partition_key, key(*row));
                }
                seen.extend_from_slice(rows);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=2_000).collect::<Vec<_>>());
    }

    #[test]
    fn compact_records_hold_one_shard_each_and_every_row_once() {
        let shards = HashKeyRange::split_evenly(3);
        let mut batcher = Batcher::new(Packing::Compact {
            shards: shards.clone(),
            target_bytes: 2048,
        });
        let origin = |line| Origin {
            name: "t.csv",
            id: "t.csv",
            line,
        };
        let mut batches = Vec::new();
        for row in 1..=3_000 {
            let line = row + 1;
            let event = SalesEvent {
                event_id: sales_stream::event_id("t.csv", line),
                event_time: chrono::DateTime::from_timestamp(1_291_000_000 + row as i64, 0)
                    .expect("time")
                    .naive_utc(),
                invoice_no: format!("{}", 536_000 + row / 7),
                stock_code: format!("{}", 20_000 + row % 97),
                description: Some(format!("PRODUCT {}", row % 97)),
                quantity: 1 + (row % 5) as i64,
                unit_price: rust_decimal::Decimal::new(255, 2),
                customer_id: None,
                country: "France".into(),
                source: format!("t.csv:{line}"),
            };
            batches.extend(batcher.push_event(row, &event, origin(line)).expect("fits"));
        }
        batches.extend(batcher.finish());
        let mut seen = Vec::new();
        for batch in &batches {
            for (i, entry) in batch.entries.iter().enumerate() {
                let Payload::Compact(events) = unpack(&entry.data).expect("unpacks") else {
                    panic!("not a compact record");
                };
                let shard_of = |k: &str| shards.iter().position(|r| r.contains(hash_key(k)));
                let shard = shard_of(&entry.partition_key);
                let rows = batch.rows_of(i);
                assert_eq!(rows.len(), events.len());
                for (j, row) in rows.iter().enumerate() {
                    let event = events.event(j);
                    assert_eq!(event.source, format!("t.csv:{}", row + 1));
                    assert_eq!(shard_of(&event.event_id.to_string()), shard);
                }
                seen.extend_from_slice(rows);
            }
        }
        let records: usize = batches.iter().map(|b| b.entries.len()).sum();
        assert!(
            records > 3 * 2,
            "closed at the target size: {records} records"
        );
        seen.sort_unstable();
        assert_eq!(seen, (1..=3_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_compact_event_over_the_target_goes_alone_and_one_over_the_record_limit_is_refused() {
        let mut batcher = Batcher::new(Packing::Compact {
            shards: HashKeyRange::split_evenly(1),
            target_bytes: 2048,
        });
        let event = |line: u64, description: usize| SalesEvent {
            event_id: sales_stream::event_id("t.csv", line),
            event_time: chrono::NaiveDateTime::default(),
            invoice_no: "1".into(),
            stock_code: "A".into(),
            description: Some("D".repeat(description)),
            quantity: 1,
            unit_price: rust_decimal::Decimal::ONE,
            customer_id: None,
            country: "France".into(),
            source: format!("t.csv:{line}"),
        };
        let origin = |line| Origin {
            name: "t.csv",
            id: "t.csv",
            line,
        };
        let mut batches = Vec::new();
        for (line, description) in [(2, 10), (3, 10_000), (4, 10)] {
            let pushed = batcher.push_event(line, &event(line, description), origin(line));
            batches.extend(pushed.expect("fits a record"));
        }
        batches.extend(batcher.finish());
        let rows: Vec<_> = batches
            .iter()
            .flat_map(|b| (0..b.entries.len()).map(|i| b.rows_of(i).to_vec()))
            .collect();
        assert_eq!(
            rows,
            [vec![2], vec![3], vec![4]],
            "each record holds one or more events"
        );
        let huge = event(5, MAX_RECORD_BYTES);
        let error = batcher
            .push_event(5, &huge, origin(5))
            .expect_err("too large");
        assert!(matches!(error, BatcherError::EventTooLarge { row: 5, .. }));
        assert!(batcher.finish().is_empty());
    }

    #[test]
    fn a_compact_record_refuses_an_event_not_derived_from_its_line() {
        let mut batcher = Batcher::new(Packing::Compact {
            shards: HashKeyRange::split_evenly(1),
            target_bytes: DEFAULT_AGGREGATE_BYTES,
        });
        let event = SalesEvent {
            event_id: sales_stream::event_id("t.csv", 2),
            event_time: chrono::NaiveDateTime::default(),
            invoice_no: "1".into(),
            stock_code: "A".into(),
            description: None,
            quantity: 1,
            unit_price: rust_decimal::Decimal::ONE,
            customer_id: None,
            country: "France".into(),
            source: "t.csv:2".into(),
        };
        let origin = Origin {
            name: "t.csv",
            id: "t.csv",
            line: 3,
        };
        let error = batcher.push_event(9, &event, origin).expect_err("refused");
        assert!(
            matches!(error, BatcherError::Compact { row: 9, .. }),
            "{error}"
        );
        assert!(batcher.finish().is_empty(), "nothing half-added");
    }

    #[test]
    fn refuses_an_event_over_the_record_limit() {
        let mut batcher = Batcher::new(Packing::Plain);
        let error = batcher
            .push(7, key(7), vec![0; MAX_RECORD_BYTES])
            .expect_err("too large");
        assert!(matches!(error, BatcherError::EventTooLarge { row: 7, .. }));
    }

    #[test]
    fn only_aggregates_holding_an_event_past_the_linger_time_are_closed() {
        let shards = HashKeyRange::split_evenly(2);
        let mut batcher = Batcher::new(Packing::Aggregated {
            shards: shards.clone(),
            target_bytes: DEFAULT_AGGREGATE_BYTES,
            compression: Compression::Zstd,
        });
        let shard_of = |row: u64| shards.iter().position(|r| r.contains(hash_key(&key(row))));
        let other = (2..)
            .find(|&row| shard_of(row) != shard_of(1))
            .expect("two shards");
        let push = |batcher: &mut Batcher, row| {
            let full = batcher.push(row, key(row), b"{}".to_vec()).expect("fits");
            assert!(full.is_none());
        };
        push(&mut batcher, 1);
        let between = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        push(&mut batcher, other);

        assert!(batcher.take_if_stale(between).is_empty(), "nothing old yet");
        let batches = batcher.take_if_stale(between + MAX_LINGER);
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].entries.len(),
            1,
            "the younger aggregate keeps filling"
        );
        assert_eq!(batches[0].rows_of(0), [1]);

        batcher.postpone(MAX_LINGER);
        let later = between + MAX_LINGER + Duration::from_millis(100);
        assert!(
            batcher.take_if_stale(later).is_empty(),
            "time spent waiting does not count"
        );
        let batches = batcher.take_if_stale(later + MAX_LINGER);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].rows_of(0), [other]);
        assert!(batcher.finish().is_empty());
    }

    #[test]
    fn a_plain_request_goes_once_its_first_event_is_stale() {
        let mut batcher = Batcher::new(Packing::Plain);
        let before = Instant::now();
        for row in 1..=3 {
            assert!(
                batcher
                    .push(row, key(row), b"{}".to_vec())
                    .expect("fits")
                    .is_none()
            );
        }
        assert!(batcher.take_if_stale(before).is_empty());
        let batches = batcher.take_if_stale(Instant::now() + MAX_LINGER);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].events(), 3);
    }
}

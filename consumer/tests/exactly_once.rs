//! Fault injection: the real commit protocol ([`Checkpoint::commit`]) and compaction are driven
//! through every crash point, with Lambda-style retries and bisected batches, replays from the
//! start of the stream and a producer that re-sends 10% of its events. Afterwards the lake must
//! hold every source row exactly once.
//!
//! The source CSV and the lakes (before and after compaction) are left in
//! `$CARGO_TARGET_TMPDIR/exactly-once/`, where the end-to-end suite checks them with DuckDB
//! against the CSV (`tests/e2e/test_exactly_once.py`): this file checks them with its own sums.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
use chrono::{DateTime, NaiveDate};
use consumer::commit::Checkpoint;
use consumer::commit::compact::compact_day;
use consumer::commit::index::IdCache;
use consumer::commit::state::{StreamIdentity, shard_states};
use consumer::core::batch::BatchOptions;
use consumer::core::writer::Codec;
use consumer::lake::{Lake, LakeError, LocalLake, Object, Precondition, Version};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use producer::{ColumnMap, CsvReader, DateParser, GenerateOptions, Line, RowParser};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use sales_stream::{Aggregator, Compression, SalesEvent, SequenceNumber, StreamRecord, codec};

const STREAM: &str = "faults";

/// The stream's identity, as an embedded stream gives it.
fn identity() -> StreamIdentity {
    StreamIdentity::new("local:faults")
}
const SHARDS: u64 = 2;
const ROWS: u64 = 4_000;

/// Lake methods a fault-injecting test lake hands straight to its inner local lake.
macro_rules! pass_reads_through {
    () => {
        async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
            self.inner.get(key).await
        }

        async fn delete(&self, key: &str) -> Result<(), LakeError> {
            self.inner.delete(key).await
        }

        async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
            self.inner.list(prefix).await
        }
    };
}

macro_rules! pass_put_through {
    () => {
        async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
            self.inner.put(key, bytes).await
        }
    };
}

/// Where a crash can happen: after which kind of lake operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CrashAfter {
    /// After the state write that records a batch's intent (or takes over a failed one).
    Intent,
    /// After the state write that commits a batch: its position, counts and index manifest.
    Commit,
    /// After writing a data file or an id index segment.
    FileWrite,
    /// After removing a file (recovery, a merged index segment, compaction).
    Remove,
    /// After the compaction record or a compacted file was written.
    CompactionWrite,
}

/// A lake that dies after its `crash_after`-th write or removal: that operation takes effect,
/// it and every later one fail, as for a process killed right after the request.
#[derive(Debug)]
struct CrashingLake {
    inner: LocalLake,
    operations: AtomicU64,
    crash_after: AtomicU64,
    /// Only operations of this kind are counted towards `crash_after` (`None`: all).
    counted: Mutex<Option<CrashAfter>>,
    dead: AtomicBool,
    crashes: Mutex<BTreeMap<CrashAfter, u64>>,
}

impl CrashingLake {
    fn new(root: &Path) -> Self {
        Self {
            inner: LocalLake::new(root),
            operations: AtomicU64::new(0),
            crash_after: AtomicU64::new(u64::MAX),
            counted: Mutex::default(),
            dead: AtomicBool::new(false),
            crashes: Mutex::default(),
        }
    }

    /// Arms a crash after `n` more writes or removals (`None`: no crash).
    fn arm(&self, n: Option<u64>) {
        self.operations.store(0, Ordering::SeqCst);
        self.crash_after
            .store(n.unwrap_or(u64::MAX), Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
    }

    /// Arms a crash after the `n`-th operation of kind `point` from now.
    fn arm_at(&self, point: CrashAfter, n: u64) {
        self.arm(Some(n));
        *self.counted.lock().expect("counted") = Some(point);
    }

    fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    fn died() -> LakeError {
        LakeError::BadKey("the process was killed".into())
    }

    /// Runs one mutating operation; the armed one takes effect and then reports a crash.
    async fn mutate<T>(
        &self,
        point: CrashAfter,
        operation: impl Future<Output = Result<T, LakeError>>,
    ) -> Result<T, LakeError> {
        if self.crashed() {
            return Err(Self::died());
        }
        let result = operation.await;
        if self
            .counted
            .lock()
            .expect("counted")
            .is_some_and(|counted| counted != point)
        {
            return result;
        }
        let n = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_after.load(Ordering::SeqCst) && result.is_ok() {
            self.dead.store(true, Ordering::SeqCst);
            *self
                .crashes
                .lock()
                .expect("crashes")
                .entry(point)
                .or_default() += 1;
            return Err(Self::died());
        }
        result
    }
}

impl Lake for CrashingLake {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let point = if key.starts_with("_state/compaction") || key.contains("compacted-") {
            CrashAfter::CompactionWrite
        } else {
            CrashAfter::FileWrite
        };
        self.mutate(point, self.inner.put(key, bytes)).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let point = if key.starts_with("_state/compaction") {
            CrashAfter::CompactionWrite
        } else if String::from_utf8_lossy(&bytes).contains("\"in_flight\":null") {
            CrashAfter::Commit
        } else {
            CrashAfter::Intent
        };
        self.mutate(point, self.inner.put_if(key, bytes, expected))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
        if self.crashed() {
            return Err(Self::died());
        }
        self.inner.get(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.mutate(CrashAfter::Remove, self.inner.delete(key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        if self.crashed() {
            return Err(Self::died());
        }
        self.inner.list(prefix).await
    }
}

/// The source: a generated Online-Retail-like CSV, parsed by the producer's own reader.
fn source_events(csv: &Path) -> Vec<SalesEvent> {
    let options = GenerateOptions {
        rows: ROWS,
        seed: 7,
        ..GenerateOptions::default()
    };
    let file = std::fs::File::create(csv).expect("csv");
    producer::generate(&options, std::io::BufWriter::new(file)).expect("generated");
    let input = std::io::BufReader::new(std::fs::File::open(csv).expect("csv"));
    let mut reader = CsvReader::new(input, None).expect("header");
    let columns = ColumnMap::from_header(reader.header(), &[]).expect("columns");
    let parser = RowParser::new(columns, DateParser::default(), "sales.csv");
    let mut events = Vec::new();
    while let Some(line) = reader.next_line().expect("line") {
        if let Line::Record(record) = line
            && let Ok(event) = parser.parse(&record)
        {
            events.push(event.into_owned());
        }
    }
    events
}

/// The stream: each shard's records in order. Events are packed into plain and aggregated
/// records; 10% are re-sent later (as a producer does after a timeout), and a few records are
/// garbage.
fn stream(events: &[SalesEvent], rng: &mut ChaCha8Rng) -> (Vec<Vec<StreamRecord>>, u64, u64) {
    let mut sent: Vec<&SalesEvent> = events.iter().collect();
    let resent = events.len() as u64 / 10;
    for _ in 0..resent {
        let pick = rng.random_range(0..events.len());
        let at = rng.random_range(pick + 1..=sent.len());
        sent.insert(at, &events[pick]);
    }
    let mut shards: Vec<Vec<StreamRecord>> = vec![Vec::new(); SHARDS as usize];
    let mut pending: Vec<Vec<&SalesEvent>> = vec![Vec::new(); SHARDS as usize];
    let arrival = DateTime::from_timestamp(1_323_400_000, 0).expect("time");
    let mut garbage = 0;
    let mut push = |shard: usize, data: Vec<u8>, key: String| {
        let records = &mut shards[shard];
        records.push(StreamRecord {
            sequence_number: SequenceNumber::from_u64(1_000 + 10 * records.len() as u64),
            partition_key: key,
            data,
            approximate_arrival: arrival + chrono::Duration::milliseconds(records.len() as i64),
        });
    };
    for event in sent {
        // The partition key is the event id: a re-sent event lands on the same shard.
        let shard = (event.event_id.as_u128() % u128::from(SHARDS)) as usize;
        if rng.random_bool(0.01) {
            push(shard, b"{\"event_id\": garbage".to_vec(), "garbage".into());
            garbage += 1;
        }
        pending[shard].push(event);
        let size = rng.random_range(1..=12);
        if pending[shard].len() >= size {
            let batch = std::mem::take(&mut pending[shard]);
            if batch.len() == 1 {
                push(
                    shard,
                    codec::encode(batch[0]),
                    batch[0].event_id.to_string(),
                );
            } else {
                let mut aggregator = Aggregator::new();
                for e in &batch {
                    aggregator.push(e.event_id.to_string(), codec::encode(*e));
                }
                push(shard, aggregator.finish(Compression::Zstd), "agg".into());
            }
        }
    }
    for (shard, batch) in pending.into_iter().enumerate() {
        for e in batch {
            push(shard, codec::encode(e), e.event_id.to_string());
        }
    }
    (shards, resent, garbage)
}

/// Delivers every shard's records the way Lambda's event source mapping does: batches from the
/// last checkpoint, retried from the first uncommitted record after a failure, halved when
/// bisecting; a crash loses the instance's memory (its cached checkpoint).
async fn deliver(
    lake: &CrashingLake,
    shards: &[Vec<StreamRecord>],
    rng: &mut ChaCha8Rng,
    crash_probability: f64,
) -> u64 {
    let options = BatchOptions {
        codec: Codec::Zstd,
        ..BatchOptions::default()
    };
    let mut invocations = 0;
    for (shard, records) in shards.iter().enumerate() {
        let shard_id = format!("shardId-{shard:012}");
        let mut warm: Option<Checkpoint> = None;
        let mut from = 0;
        let mut size = rng.random_range(1..=40);
        while from < records.len() {
            invocations += 1;
            let crash = rng
                .random_bool(crash_probability)
                .then(|| rng.random_range(1..=12));
            lake.arm(crash);
            let batch = records[from..(from + size).min(records.len())].to_vec();
            let delivered = batch.len();
            let outcome = async {
                let mut checkpoint = match warm.take() {
                    Some(checkpoint) => checkpoint,
                    None => Checkpoint::load(lake, &identity(), STREAM, &shard_id).await?,
                };
                checkpoint
                    .commit(lake, &IdCache::default(), batch, &options)
                    .await?;
                Ok::<_, consumer::commit::CommitError>(checkpoint)
            }
            .await;
            match outcome {
                Ok(checkpoint) => {
                    warm = Some(checkpoint);
                    from += delivered;
                    size = rng.random_range(1..=40);
                }
                Err(_) => {
                    // Lambda retries from the first record after the committed position, which
                    // a fresh instance reads from the lake; with bisecting, half as many.
                    lake.arm(None);
                    let state = Checkpoint::load(lake, &identity(), STREAM, &shard_id)
                        .await
                        .expect("state readable after a crash");
                    from = match &state.state().sequence_number {
                        Some(position) => records
                            .iter()
                            .position(|r| r.sequence_number > *position)
                            .unwrap_or(records.len()),
                        None => 0,
                    };
                    if rng.random_bool(0.5) {
                        size = (size / 2).max(1);
                    }
                }
            }
        }
    }
    lake.arm(None);
    invocations
}

/// Totals per `date|country|stock_code`, computed from the source events with decimals.
fn expected_totals(events: &[SalesEvent]) -> BTreeMap<String, [Decimal; 7]> {
    let mut totals: BTreeMap<String, [Decimal; 7]> = BTreeMap::new();
    for e in events {
        let key = format!("{}|{}|{}", e.event_time.date(), e.country, e.stock_code);
        let q = Decimal::from(e.quantity);
        let amount = q * e.unit_price;
        let t = totals.entry(key).or_default();
        if e.quantity > 0 {
            t[0] += q;
            t[3] += amount;
        } else {
            t[1] -= q;
            t[4] -= amount;
        }
        t[2] += q;
        t[5] += amount;
        t[6] += Decimal::ONE;
    }
    totals
}

fn parquet_files(root: &Path, table: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.join(table)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files
}

/// Totals of the lake's daily_sales files, summed per key.
fn lake_totals(root: &Path) -> BTreeMap<String, [Decimal; 7]> {
    let mut totals: BTreeMap<String, [Decimal; 7]> = BTreeMap::new();
    for path in parquet_files(root, "daily_sales") {
        let file = std::fs::File::open(&path).expect("file");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = |name: &str| batch.column_by_name(name).expect(name).clone();
            let dates = column("sale_date");
            let (countries, stocks) = (column("country"), column("stock_code"));
            let ints = ["units_sold", "units_returned", "net_quantity"].map(column);
            let money = ["gross_revenue", "refunds", "net_revenue"].map(column);
            let lines = column("order_lines");
            for row in 0..batch.num_rows() {
                let date =
                    Date32Type::to_naive_date_opt(dates.as_primitive::<Date32Type>().value(row))
                        .expect("date");
                let key = format!(
                    "{date}|{}|{}",
                    countries.as_string::<i32>().value(row),
                    stocks.as_string::<i32>().value(row)
                );
                let t = totals.entry(key).or_default();
                for (i, c) in ints.iter().enumerate() {
                    t[i] += Decimal::from(c.as_primitive::<Int64Type>().value(row));
                }
                for (i, c) in money.iter().enumerate() {
                    assert!(!c.is_null(row));
                    t[3 + i] += Decimal::from_i128_with_scale(
                        c.as_primitive::<Decimal128Type>().value(row),
                        3,
                    );
                }
                t[6] += Decimal::from(lines.as_primitive::<Int64Type>().value(row));
            }
        }
    }
    for t in totals.values_mut() {
        for v in t.iter_mut() {
            *v = v.normalize();
        }
    }
    totals
}

fn normalized(mut totals: BTreeMap<String, [Decimal; 7]>) -> BTreeMap<String, [Decimal; 7]> {
    for t in totals.values_mut() {
        for v in t.iter_mut() {
            *v = v.normalize();
        }
    }
    totals
}

fn rows(root: &Path, table: &str) -> usize {
    parquet_files(root, table)
        .iter()
        .map(|path| {
            let file = std::fs::File::open(path).expect("file");
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
            builder.metadata().file_metadata().num_rows() as usize
        })
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("dir").flatten() {
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_lands_once_through_crashes_retries_bisects_replays_and_resends() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exactly-once");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("out dir");
    let (csv, root) = (out.join("sales.csv"), out.join("lake"));
    let events = source_events(&csv);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (shards, resent, garbage) = stream(&events, &mut rng);
    let records: u64 = shards.iter().map(|s| s.len() as u64).sum();
    let lake = CrashingLake::new(&root);

    let invocations = deliver(&lake, &shards, &mut rng, 0.5).await;
    // A replay of the whole stream from TRIM_HORIZON, with crashes too.
    let replay_invocations = deliver(&lake, &shards, &mut rng, 0.2).await;

    let crashes = lake.crashes.lock().expect("crashes").clone();
    println!(
        "{} events, {resent} re-sent, {garbage} garbage records, {records} records; \
         {invocations} + {replay_invocations} invocations; crashes {crashes:?}",
        events.len()
    );
    for point in [
        CrashAfter::Intent,
        CrashAfter::FileWrite,
        CrashAfter::Commit,
        CrashAfter::Remove,
    ] {
        assert!(
            crashes.get(&point).is_some_and(|n| *n >= 3),
            "too few crashes {point:?}"
        );
    }

    // Accounting: every record processed exactly once; every event accounted for.
    let states = shard_states(&lake).await.expect("states");
    assert_eq!(states.len(), SHARDS as usize);
    let mut counts = consumer::core::batch::BatchCounts::default();
    for state in &states {
        assert!(state.in_flight.is_none(), "nothing left in flight");
        counts.add(&state.counts);
    }
    assert_eq!(counts.records, records, "each record committed once");
    assert_eq!(counts.received, events.len() as u64 + resent + garbage);
    assert_eq!(counts.accepted, events.len() as u64);
    assert_eq!(counts.duplicates, resent);
    assert_eq!(counts.quarantined, garbage);
    assert!(
        counts.replayed > 0,
        "the replay was skipped by sequence number"
    );
    assert_eq!(
        counts.received,
        counts.accepted + counts.duplicates + counts.quarantined
    );
    // No orphan files: the lake holds exactly the accepted events, and exact totals.
    assert_eq!(rows(&root, "sales_events"), events.len());
    let expected = normalized(expected_totals(&events));
    assert_eq!(lake_totals(&root), expected);

    // Compaction of every day, killed at random points and re-run until it finishes.
    copy_dir(&root, &out.join("lake-before-compaction"));
    let days: BTreeSet<NaiveDate> = events.iter().map(|e| e.event_time.date()).collect();
    let mut compaction_crashes = 0;
    for day in &days {
        loop {
            let crash = rng.random_bool(0.7).then(|| rng.random_range(1..=6));
            lake.arm(crash);
            match compact_day(&lake, *day, Codec::Zstd).await {
                Ok(_) => break,
                Err(_) if lake.crashed() => compaction_crashes += 1,
                Err(e) => panic!("compacting {day}: {e}"),
            }
        }
        lake.arm(None);
        let again = compact_day(&lake, *day, Codec::Zstd).await.expect("re-run");
        assert!(again.already_compacted, "a re-run changes nothing");
    }
    let crashes = lake.crashes.lock().expect("crashes").clone();
    assert!(compaction_crashes >= 3 && crashes.contains_key(&CrashAfter::CompactionWrite));
    println!(
        "compacted {} days through {compaction_crashes} crashes",
        days.len()
    );
    assert_eq!(lake_totals(&root), expected, "compaction keeps the totals");
    assert_eq!(rows(&root, "sales_events"), events.len());
    let mut per_day: HashMap<String, usize> = HashMap::new();
    for table in ["sales_events", "daily_sales"] {
        for path in parquet_files(&root, table) {
            let dir = path.parent().expect("partition").display().to_string();
            *per_day.entry(dir).or_default() += 1;
        }
    }
    assert!(
        per_day.values().all(|n| *n == 1),
        "one file per table and day"
    );
    for key in lake.list("_state/compaction").await.expect("list") {
        let record = lake.get(&key).await.expect("get").expect("record");
        let record: serde_json::Value = serde_json::from_slice(&record.bytes).expect("json");
        assert_eq!(record["phase"], "done", "{key}: every compaction finished");
    }
}

#[tokio::test]
async fn of_two_writers_on_one_shard_only_one_commits_a_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = LocalLake::new(dir.path());
    let events = source_events(&dir.path().join("sales.csv"));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (shards, _, _) = stream(&events[..300], &mut rng);
    let records = &shards[0];
    let options = BatchOptions::default();
    let shard = "shardId-000000000000";
    // Both read the same state; the first commits; the second loses its compare-and-swap at
    // its intent, reads the winner's state and finds the records committed.
    let mut first = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("a");
    let mut second = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("b");
    let a = first
        .commit(&lake, &IdCache::default(), records.clone(), &options)
        .await
        .expect("first commits");
    let b = second
        .commit(&lake, &IdCache::default(), records.clone(), &options)
        .await
        .expect("second retries");
    assert_eq!((a.conflicts, b.conflicts), (0, 1));
    assert_eq!(b.counts.replayed, records.len() as u64);
    assert_eq!(b.counts.accepted, 0);
    // And the first, now stale, loses to the second's write and catches up the same way.
    let c = first
        .commit(&lake, &IdCache::default(), records.clone(), &options)
        .await
        .expect("stale writer");
    assert_eq!(c.conflicts, 1);
    let state = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("state");
    assert_eq!(state.state().counts.records, records.len() as u64);
    assert_eq!(state.state().batches, 1);
}

/// A temporary directory with the generated source events, the stream of them (with re-sent
/// events and garbage) and where the lake goes.
struct Setup {
    _dir: tempfile::TempDir,
    events: Vec<SalesEvent>,
    shards: Vec<Vec<StreamRecord>>,
    resent: u64,
    garbage: u64,
    root: PathBuf,
}

fn setup(seed: u64) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (shards, resent, garbage) = stream(&events, &mut rng);
    let root = dir.path().join("lake");
    Setup {
        _dir: dir,
        events,
        shards,
        resent,
        garbage,
        root,
    }
}

/// How a [`LostAnswers`] lake treats a conditional write it loses the answer of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// The write is applied; the answer is a failure, as after a reset or a 5xx.
    Reset,
    /// The write is applied; the SDK's retry then meets it and gets 412.
    RetriedInto,
    /// The write is applied, another writer moves the state on, then the answer is 412.
    Overtaken,
}

/// A lake that loses the answer of every `every`-th conditional write, in turn as each [`Lost`].
#[derive(Debug)]
struct LostAnswers {
    inner: LocalLake,
    every: u64,
    writes: AtomicU64,
    lost: Mutex<BTreeMap<String, u64>>,
}

impl LostAnswers {
    fn new(root: &Path, every: u64) -> Self {
        Self {
            inner: LocalLake::new(root),
            every,
            writes: AtomicU64::new(0),
            lost: Mutex::default(),
        }
    }
}

impl Lake for LostAnswers {
    pass_put_through!();

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let commits = String::from_utf8_lossy(&bytes).contains("\"in_flight\":null");
        let version = self.inner.put_if(key, bytes.clone(), expected).await?;
        if !n.is_multiple_of(self.every) {
            return Ok(version);
        }
        let mode = match (n / self.every) % 3 {
            0 => Lost::Reset,
            1 => Lost::RetriedInto,
            _ if commits => Lost::Overtaken,
            _ => Lost::RetriedInto,
        };
        *self
            .lost
            .lock()
            .expect("lost")
            .entry(format!("{mode:?}"))
            .or_default() += 1;
        let conflict = LakeError::Conflict {
            key: key.to_owned(),
        };
        match mode {
            Lost::Reset => Err(LakeError::S3 {
                action: "write",
                bucket: "lake".into(),
                key: key.to_owned(),
                reason: "connection reset by peer (injected)".into(),
            }),
            Lost::RetriedInto => Err(conflict),
            Lost::Overtaken => {
                // Another instance reads the committed state and writes it on (a batch of
                // replayed records does just that) before this writer hears back.
                let mut state: serde_json::Value = serde_json::from_slice(&bytes).expect("state");
                state["generation"] =
                    (state["generation"].as_u64().expect("generation") + 1).into();
                state["write_id"] = "00000000-0000-4000-8000-000000000001".into();
                let moved = serde_json::to_vec_pretty(&state).expect("json");
                self.inner
                    .put_if(key, moved, Precondition::Matches(version))
                    .await?;
                Err(conflict)
            }
        }
    }

    pass_reads_through!();
}

#[tokio::test]
async fn a_state_write_whose_answer_was_lost_is_settled_by_reading_it_back() {
    // `_dir` keeps the temporary directory until the test ends.
    let Setup {
        _dir,
        events,
        shards,
        resent,
        garbage,
        root,
    } = setup(3);
    let lake = LostAnswers::new(&root, 3);
    let options = BatchOptions::default();
    for (n, records) in shards.iter().enumerate() {
        let shard = format!("shardId-{n:012}");
        let mut checkpoint = Checkpoint::load(&lake, &identity(), STREAM, &shard)
            .await
            .expect("load");
        for batch in records.chunks(97) {
            // Every batch commits first time: no lost answer is taken for a lost race.
            checkpoint
                .commit(&lake, &IdCache::default(), batch.to_vec(), &options)
                .await
                .expect("commits");
        }
        // And a later run picks the shard up where it is.
        let again = Checkpoint::load(&lake, &identity(), STREAM, &shard)
            .await
            .expect("the state reads back, its window included");
        assert_eq!(
            again.state().sequence_number,
            records.last().map(|r| r.sequence_number.clone())
        );
    }
    let lost = lake.lost.lock().expect("lost").clone();
    println!("lost answers: {lost:?}");
    for mode in ["Reset", "RetriedInto", "Overtaken"] {
        assert!(
            lost.get(mode).is_some_and(|n| *n >= 2),
            "too few {mode}: {lost:?}"
        );
    }
    let states = shard_states(&lake).await.expect("states");
    let mut counts = consumer::core::batch::BatchCounts::default();
    for state in &states {
        assert!(state.in_flight.is_none());
        counts.add(&state.counts);
    }
    assert_eq!(counts.accepted, events.len() as u64);
    assert_eq!(counts.duplicates, resent);
    assert_eq!(counts.quarantined, garbage);
    assert_eq!(
        rows(&root, "sales_events"),
        events.len(),
        "nothing lost, nothing twice"
    );
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
}

/// Where a second compaction of the same day runs to its end inside the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverlapAt {
    /// Before the first one's first output write lands: the second takes the day over.
    OutputWrite,
    /// After the first one's commit (its record going to `removing`) is applied, before its
    /// answer: the second finishes the first's removal, and the first hears a conflict.
    CommitApplied,
}

/// A lake on which two compactions of one day overlap, once, at `at`.
#[derive(Debug)]
struct Overlapping {
    inner: LocalLake,
    day: NaiveDate,
    at: OverlapAt,
    done: AtomicBool,
}

impl Overlapping {
    fn new(root: &Path, day: NaiveDate, at: OverlapAt) -> Self {
        Self {
            inner: LocalLake::new(root),
            day,
            at,
            done: AtomicBool::new(false),
        }
    }

    /// Runs the second compaction if `at` is now and it has not run yet.
    async fn overlap(&self, at: OverlapAt) -> Option<consumer::CompactReport> {
        if at != self.at || self.done.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(
            compact_day(&self.inner, self.day, Codec::Zstd)
                .await
                .expect("the overlapping compaction"),
        )
    }
}

impl Lake for Overlapping {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        if key.contains("/compacted-")
            && let Some(other) = self.overlap(OverlapAt::OutputWrite).await
        {
            assert!(
                other.resumed && other.files_out == consumer::core::layout::TABLES.len(),
                "{other:?}"
            );
        }
        self.inner.put(key, bytes).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let commit = String::from_utf8_lossy(&bytes).contains("\"phase\": \"removing\"");
        let version = self.inner.put_if(key, bytes, expected).await?;
        if commit && let Some(other) = self.overlap(OverlapAt::CommitApplied).await {
            assert!(
                other.resumed,
                "it finished the first one's removal: {other:?}"
            );
            return Err(LakeError::Conflict {
                key: key.to_owned(),
            });
        }
        Ok(version)
    }

    pass_reads_through!();
}

/// Commits every shard's records into a local lake at `root`, in batches of `size`.
async fn commit_all(lake: &impl Lake, shards: &[Vec<StreamRecord>], size: usize) {
    for (n, records) in shards.iter().enumerate() {
        let shard = format!("shardId-{n:012}");
        let mut checkpoint = Checkpoint::load(lake, &identity(), STREAM, &shard)
            .await
            .expect("load");
        for batch in records.chunks(size) {
            checkpoint
                .commit(
                    lake,
                    &IdCache::default(),
                    batch.to_vec(),
                    &BatchOptions::default(),
                )
                .await
                .expect("commits");
        }
    }
}

fn files_per_partition(root: &Path) -> HashMap<String, usize> {
    let mut per_day: HashMap<String, usize> = HashMap::new();
    for table in ["sales_events", "daily_sales"] {
        for path in parquet_files(root, table) {
            let dir = path.parent().expect("partition").display().to_string();
            *per_day.entry(dir).or_default() += 1;
        }
    }
    per_day
}

#[tokio::test]
async fn a_compaction_overtaken_by_another_leaves_the_day_to_it() {
    let Setup {
        _dir,
        events,
        shards,
        root,
        ..
    } = setup(5);
    let local = LocalLake::new(&root);
    commit_all(&local, &shards, 300).await;
    let day = events[0].event_time.date();
    let lake = Overlapping::new(&root, day, OverlapAt::OutputWrite);
    // The first compaction claims the day; the second takes it over (removing the first's
    // outputs, not yet written) and finishes; then the first's output write lands. The first
    // then fails to commit, removes what it wrote, and leaves the day to the second.
    let first = compact_day(&lake, day, Codec::Zstd)
        .await
        .expect("compacts");
    assert!(first.superseded, "{first:?}");
    assert!(
        files_per_partition(&root)
            .iter()
            .filter(|(dir, _)| dir.ends_with(&format!("day={:02}", chrono::Datelike::day(&day))))
            .all(|(_, n)| *n == 1)
    );
    assert_eq!(rows(&root, "sales_events"), events.len());
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
    let again = compact_day(&local, day, Codec::Zstd).await.expect("re-run");
    assert!(again.already_compacted, "{again:?}");
}

#[tokio::test]
async fn touched_compaction_compacts_the_days_written_since_it_last_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let (old, late) = events.split_at(events.len() - 40);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let root = dir.path().join("lake");
    let lake = LocalLake::new(&root);
    let (shards, _, _) = stream(old, &mut rng);
    commit_all(&lake, &shards, 250).await;
    let days: BTreeSet<NaiveDate> = old.iter().map(|e| e.event_time.date()).collect();
    let reports = consumer::compact(
        &lake,
        &consumer::Days::Touched,
        Codec::Zstd,
        &Default::default(),
    )
    .await
    .expect("compacts");
    let compacted: BTreeSet<NaiveDate> = reports.iter().filter_map(|r| r.day).collect();
    assert_eq!(compacted, days, "every day written so far");
    assert!(files_per_partition(&root).values().all(|n| *n == 1));
    let nothing = consumer::compact(
        &lake,
        &consumer::Days::Touched,
        Codec::Zstd,
        &Default::default(),
    )
    .await
    .expect("nothing to do");
    assert!(nothing.is_empty(), "{nothing:?}");

    // Late events of a few old days arrive, on fresh sequence numbers.
    let (mut late_shards, _, _) = stream(late, &mut rng);
    for (n, records) in late_shards.iter_mut().enumerate() {
        let last = shards[n]
            .last()
            .map(|r| r.sequence_number.as_str().parse::<u64>().expect("n"));
        for (i, record) in records.iter_mut().enumerate() {
            record.sequence_number =
                SequenceNumber::from_u64(last.unwrap_or(0) + 10 * (i as u64 + 1));
        }
    }
    commit_all(&lake, &late_shards, 250).await;
    let late_days: BTreeSet<NaiveDate> = late.iter().map(|e| e.event_time.date()).collect();
    let reports = consumer::compact(
        &lake,
        &consumer::Days::Touched,
        Codec::Zstd,
        &Default::default(),
    )
    .await
    .expect("compacts");
    let compacted: BTreeSet<NaiveDate> = reports.iter().filter_map(|r| r.day).collect();
    assert_eq!(
        compacted, late_days,
        "only the days the late events touched"
    );
    assert!(files_per_partition(&root).values().all(|n| *n == 1));
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
}

#[tokio::test]
async fn positions_of_another_stream_of_the_same_name_are_refused_before_any_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (shards, _, _) = stream(&events[..200], &mut rng);
    let lake = LocalLake::new(dir.path().join("lake"));
    let shard = "shardId-000000000000";
    let arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/faults";
    let created = |s: i64| StreamIdentity {
        id: arn.into(),
        created: DateTime::from_timestamp(1_700_000_000 + s, 0),
    };
    // The Lambda knows the ARN only.
    let mut lambda = Checkpoint::load(&lake, &StreamIdentity::new(arn), STREAM, shard)
        .await
        .expect("fresh");
    lambda
        .commit(
            &lake,
            &IdCache::default(),
            shards[0][..10].to_vec(),
            &BatchOptions::default(),
        )
        .await
        .expect("commits");
    // The poller knows the creation time too: the same stream, and the time is recorded.
    let mut poller = Checkpoint::load(&lake, &created(0), STREAM, shard)
        .await
        .expect("the same stream");
    poller
        .commit(
            &lake,
            &IdCache::default(),
            shards[0][10..20].to_vec(),
            &BatchOptions::default(),
        )
        .await
        .expect("commits");
    let before = std::fs::read(
        dir.path()
            .join("lake/_state/faults/shardId-000000000000.json"),
    )
    .expect("state");
    for other in [created(60), StreamIdentity::new("local:faults")] {
        let error = Checkpoint::load(&lake, &other, STREAM, shard)
            .await
            .expect_err("another stream");
        let message = error.to_string();
        assert!(
            message.contains("deleted and created again") && message.contains("_state/faults/"),
            "{message}"
        );
    }
    let after = std::fs::read(
        dir.path()
            .join("lake/_state/faults/shardId-000000000000.json"),
    )
    .expect("state");
    assert_eq!(before, after, "nothing written");
    let state = serde_json::from_slice::<serde_json::Value>(&after).expect("json");
    assert_eq!(state["stream_identity"]["id"], arn);
    assert!(state["stream_identity"]["created"].is_string(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_brings_back_a_range_given_up_on_and_changes_nothing_else() {
    use consumer::commands::replay::{ReplayRange, ReplayStart, replay};
    use local_stream::LocalStream;
    use sales_stream::{PutEntry, StartingPosition};

    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let stream = LocalStream::open_or_create(&dir.path().join(STREAM), 2).expect("stream");
    let entries: Vec<PutEntry> = events
        .iter()
        .map(|e| PutEntry {
            partition_key: e.event_id.to_string(),
            data: codec::encode(e),
        })
        .collect();
    for chunk in entries.chunks(500) {
        stream.put_records(chunk).expect("put");
    }
    let (shard, other) = ("shardId-000000000000", "shardId-000000000001");
    let read = |shard| {
        stream
            .read(shard, &StartingPosition::TrimHorizon, usize::MAX)
            .expect("read")
    };
    let (records, others) = (read(shard), read(other));
    assert_eq!(records.len() + others.len(), events.len());
    // The event source mapping gives up on records 1,000..1,500 of the first shard: the next
    // batches commit past them, so the lake lacks their events. The other shard is whole.
    let lake = LocalLake::new(dir.path().join("lake"));
    let identity = StreamIdentity::new(stream.identity());
    for (id, batches) in [
        (shard, vec![&records[..1_000], &records[1_500..]]),
        (other, vec![&others[..]]),
    ] {
        let mut checkpoint = Checkpoint::load(&lake, &identity, STREAM, id)
            .await
            .expect("load");
        for batch in batches {
            for part in batch.chunks(400) {
                checkpoint
                    .commit(
                        &lake,
                        &IdCache::default(),
                        part.to_vec(),
                        &BatchOptions::default(),
                    )
                    .await
                    .expect("commits");
            }
        }
    }
    let root = dir.path().join("lake");
    let expected = normalized(expected_totals(&events));
    assert_ne!(lake_totals(&root), expected);

    // Replaying that range (as the failures-queue message names it) brings them back...
    let range = ReplayRange {
        start: ReplayStart::Sequence {
            shard_id: shard.into(),
            sequence: records[1_000].sequence_number.clone(),
        },
        to_timestamp: None,
        to_sequence: Some(records[1_499].sequence_number.clone()),
    };
    // A first replay is killed right after its second batch's intent: the shard's state holds
    // that batch in flight. The next replay takes the shard over, as any writer would, and
    // commits the batch.
    let crashing = CrashingLake::new(&root);
    crashing.arm_at(CrashAfter::Intent, 2);
    let killed = replay(
        &stream,
        &crashing,
        &range,
        300,
        &BatchOptions::default(),
        &Default::default(),
    )
    .await;
    assert!(killed.is_err() && crashing.crashed(), "{killed:?}");
    let summary = replay(
        &stream,
        &lake,
        &range,
        300,
        &BatchOptions::default(),
        &Default::default(),
    )
    .await
    .expect("replays");
    assert_eq!(summary.counts.records, 500);
    assert!(summary.counts.accepted > 0 && summary.counts.accepted < 500);
    assert_eq!(
        summary.counts.accepted + summary.counts.duplicates,
        500,
        "the first replay's committed batch is there already"
    );
    assert_eq!(lake_totals(&root), expected);
    // ... and replaying the whole stream, twice, changes nothing.
    let everything = ReplayRange {
        start: ReplayStart::Timestamp(DateTime::from_timestamp(0, 0).expect("time")),
        to_timestamp: None,
        to_sequence: None,
    };
    for _ in 0..2 {
        let summary = replay(
            &stream,
            &lake,
            &everything,
            700,
            &BatchOptions::default(),
            &Default::default(),
        )
        .await
        .expect("replays");
        assert_eq!(summary.counts.accepted, 0, "{summary:?}");
        assert_eq!(summary.counts.duplicates, events.len() as u64);
    }
    assert_eq!(lake_totals(&root), expected);
    assert_eq!(rows(&root, "sales_events"), events.len());
    // Two replays of the whole stream at once: one loses compare-and-swaps to the other and
    // reads the state again, with the index the other committed.
    let (options, quiet) = (BatchOptions::default(), Default::default());
    let (a, b) = tokio::join!(
        replay(&stream, &lake, &everything, 250, &options, &quiet),
        replay(&stream, &lake, &everything, 250, &options, &quiet),
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.counts.accepted + b.counts.accepted, 0, "{a:?} {b:?}");
    assert_eq!(lake_totals(&root), expected);
    assert_eq!(rows(&root, "sales_events"), events.len());
    // The live position did not move.
    let live = Checkpoint::load(&lake, &identity, STREAM, shard)
        .await
        .expect("load");
    assert_eq!(
        live.state().sequence_number.as_ref(),
        records.last().map(|r| &r.sequence_number)
    );
}

#[tokio::test]
async fn a_compaction_whose_commit_answer_was_lost_keeps_its_outputs() {
    let Setup {
        _dir,
        events,
        shards,
        root,
        ..
    } = setup(13);
    commit_all(&LocalLake::new(&root), &shards, 300).await;
    let day = events[0].event_time.date();
    let lake = Overlapping::new(&root, day, OverlapAt::CommitApplied);
    let report = compact_day(&lake, day, Codec::Zstd)
        .await
        .expect("compacts");
    assert!(!report.superseded, "its commit was applied: {report:?}");
    assert_eq!(rows(&root, "sales_events"), events.len(), "nothing lost");
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
    assert!(files_per_partition(&root).values().all(|n| *n >= 1));
}

#[tokio::test]
async fn a_checkpoint_that_loses_its_compare_and_swap_dedupes_against_the_winners_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let lake = LocalLake::new(dir.path().join("lake"));
    let shard = "shardId-000000000000";
    // Event `n` sent as the record of sequence number `sequence`.
    let record = |(n, sequence): (usize, u64)| StreamRecord {
        sequence_number: SequenceNumber::from_u64(sequence),
        partition_key: events[n].event_id.to_string(),
        data: codec::encode(&events[n]),
        approximate_arrival: DateTime::from_timestamp(1_323_400_000, 0).expect("time"),
    };
    let cache = IdCache::default();
    let mut stale = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    let mut other = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    other
        .commit(
            &lake,
            &cache,
            (0..10).map(|n| (n, 1_000 + n as u64)).map(record).collect(),
            &BatchOptions::default(),
        )
        .await
        .expect("commits");
    // Its first write loses to the other's commit; it reads the state (and the index the other
    // committed) again and retries: events 5..10, re-sent, are the other's.
    let committed = stale
        .commit(
            &lake,
            &cache,
            (5..15).map(|n| (n, 2_000 + n as u64)).map(record).collect(),
            &BatchOptions::default(),
        )
        .await
        .expect("commits");
    assert_eq!(committed.conflicts, 1);
    assert_eq!(
        (committed.counts.accepted, committed.counts.duplicates),
        (5, 5)
    );
    assert_eq!(rows(&dir.path().join("lake"), "sales_events"), 15);
}

/// Asserts that a send of every event again counted none of them.
fn assert_all_duplicates(counts: &consumer::BatchCounts, events: &[SalesEvent]) {
    assert_eq!(
        (counts.accepted, counts.duplicates),
        (0, events.len() as u64),
        "{counts:?}"
    );
}

/// Asserts that the lake holds every event once, with exact totals.
fn assert_counted_once(root: &Path, events: &[SalesEvent]) {
    assert_eq!(rows(root, "sales_events"), events.len());
    assert_eq!(lake_totals(root), normalized(expected_totals(events)));
}

/// A generated CSV's events and an empty lake, in a temporary directory.
fn fresh_lake() -> (tempfile::TempDir, Vec<SalesEvent>, PathBuf, LocalLake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = source_events(&dir.path().join("sales.csv"));
    let root = dir.path().join("lake");
    let lake = LocalLake::new(&root);
    (dir, events, root, lake)
}

/// The events as plain records of one shard, from `first_sequence` on.
fn plain_records(events: &[&SalesEvent], first_sequence: u64) -> Vec<StreamRecord> {
    let arrival = DateTime::from_timestamp(1_323_400_000, 0).expect("time");
    events
        .iter()
        .enumerate()
        .map(|(i, event)| StreamRecord {
            sequence_number: SequenceNumber::from_u64(first_sequence + i as u64),
            partition_key: event.event_id.to_string(),
            data: codec::encode(*event),
            approximate_arrival: arrival + chrono::Duration::seconds(first_sequence as i64),
        })
        .collect()
}

/// Commits `records` through `checkpoint`, `size` at a time; the summed counts.
async fn commit_in_batches(
    checkpoint: &mut Checkpoint,
    lake: &impl Lake,
    cache: &IdCache,
    records: &[StreamRecord],
    size: usize,
) -> consumer::BatchCounts {
    let mut counts = consumer::BatchCounts::default();
    for batch in records.chunks(size) {
        let committed = checkpoint
            .commit(lake, cache, batch.to_vec(), &BatchOptions::default())
            .await
            .expect("commits");
        counts.add(&committed.counts);
    }
    counts
}

#[tokio::test]
async fn an_event_re_sent_days_and_many_batches_later_is_never_counted_twice() {
    let (_dir, events, root, lake) = fresh_lake();
    let all: Vec<&SalesEvent> = events.iter().collect();
    let shard = "shardId-000000000000";
    let mut live = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    let cache = IdCache::default();
    let first = commit_in_batches(&mut live, &lake, &cache, &plain_records(&all, 1_000), 100).await;
    assert_eq!(first.accepted, events.len() as u64);
    assert_eq!(
        cache.ids(),
        events.len(),
        "the cache holds each id once: a segment merged into a later one leaves it"
    );
    // The whole file again, three days (and 40 batches) later: the old window kept an hour and
    // 100,000 ids; the index keeps every id. Once by the warm process, once by a cold one (its
    // index read from the lake), and once more after every touched day was compacted.
    let later = 1_000_000 + 3 * 24 * 3600;
    let again = plain_records(&all, later);
    let warm = commit_in_batches(&mut live, &lake, &cache, &again, 250).await;
    assert_eq!((warm.accepted, warm.duplicates), (0, events.len() as u64));
    let mut cold = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    let resent = plain_records(&all, 2 * later);
    let counts = commit_in_batches(&mut cold, &lake, &IdCache::new(100), &resent, 1_000).await;
    assert_all_duplicates(&counts, &events);
    consumer::compact(
        &lake,
        &consumer::Days::Touched,
        Codec::Zstd,
        &Default::default(),
    )
    .await
    .expect("compacts");
    let resent = plain_records(&all, 3 * later);
    let counts = commit_in_batches(&mut cold, &lake, &cache, &resent, 700).await;
    assert_all_duplicates(&counts, &events);
    assert_counted_once(&root, &events);
}

#[tokio::test]
async fn shards_split_or_merged_from_others_drop_what_their_ancestors_committed() {
    let (_dir, events, root, lake) = fresh_lake();
    let cache = IdCache::default();
    let stream = identity();
    let load = |shard: &'static str| Checkpoint::load(&lake, &stream, STREAM, shard);
    // The parent commits the first half of the file, then is split into two children.
    let half: Vec<&SalesEvent> = events[..events.len() / 2].iter().collect();
    let mut parent = load("shardId-000000000000").await.expect("load");
    commit_in_batches(
        &mut parent,
        &lake,
        &cache,
        &plain_records(&half, 1_000),
        300,
    )
    .await;
    // The whole file is sent again, spread over the children by id.
    let mut children = Vec::new();
    for (n, shard) in ["shardId-000000000001", "shardId-000000000002"]
        .into_iter()
        .enumerate()
    {
        let mut child = load(shard).await.expect("load");
        assert!(child.needs_lineage(), "a new state knows no ancestors");
        child
            .set_ancestors(&lake, ["shardId-000000000000".to_owned()])
            .await
            .expect("ancestors");
        let mine: Vec<&SalesEvent> = events
            .iter()
            .filter(|e| e.event_id.as_u128() % 2 == n as u128)
            .collect();
        let counts =
            commit_in_batches(&mut child, &lake, &cache, &plain_records(&mine, 5_000), 300).await;
        let old = mine.iter().filter(|e| half.contains(e)).count() as u64;
        assert_eq!(
            (counts.duplicates, counts.accepted),
            (old, mine.len() as u64 - old)
        );
        children.push(child);
    }
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
    // The two children merge into a third shard, a grandchild of the first: it is told only
    // its parents, and finds the grandparent in their states. A cold process sends everything
    // a third time.
    let mut merged = load("shardId-000000000003").await.expect("load");
    merged
        .set_ancestors(
            &lake,
            [
                "shardId-000000000001".to_owned(),
                "shardId-000000000002".to_owned(),
            ],
        )
        .await
        .expect("ancestors");
    let all: Vec<&SalesEvent> = events.iter().collect();
    let counts = commit_in_batches(
        &mut merged,
        &lake,
        &IdCache::new(0),
        &plain_records(&all, 9_000),
        500,
    )
    .await;
    assert_all_duplicates(&counts, &events);
    let state = Checkpoint::load(&lake, &identity(), STREAM, "shardId-000000000003")
        .await
        .expect("load");
    assert_eq!(
        state.state().ancestors.as_deref(),
        Some(
            &[
                "shardId-000000000000".to_owned(),
                "shardId-000000000001".to_owned(),
                "shardId-000000000002".to_owned()
            ][..]
        )
    );
    assert_counted_once(&root, &events);
}

#[tokio::test]
async fn a_lost_index_segment_or_state_is_made_good_from_the_lake() {
    let (dir, events, root, lake) = fresh_lake();
    let all: Vec<&SalesEvent> = events.iter().collect();
    let shard = "shardId-000000000000";
    let mut live = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    // One process throughout: its cache holds segments of the state that will be lost.
    let cache = IdCache::default();
    commit_in_batches(&mut live, &lake, &cache, &plain_records(&all, 1_000), 400).await;
    // A segment is removed by hand: the next batch of its date reads the date's ids from the
    // lake, and indexes it again.
    let segments = lake
        .list(&format!("_state/{STREAM}/{shard}/ids"))
        .await
        .expect("list");
    lake.delete(&segments[0]).await.expect("delete");
    let counts = commit_in_batches(
        &mut live,
        &lake,
        &IdCache::new(0),
        &plain_records(&all, 100_000),
        400,
    )
    .await;
    assert_all_duplicates(&counts, &events);
    // The state is moved aside (unreadable, say): the shard starts again from the stream's
    // first record, with a new state whose index is empty, and its leftover segments say that
    // the lake already holds its events.
    std::fs::rename(
        root.join(format!("_state/{STREAM}/{shard}.json")),
        dir.path().join("moved-aside.json"),
    )
    .expect("move");
    let mut fresh = Checkpoint::load(&lake, &identity(), STREAM, shard)
        .await
        .expect("load");
    assert!(fresh.state().index_partial);
    let newest_segment = lake
        .list(&format!("_state/{STREAM}/{shard}/ids"))
        .await
        .expect("list")
        .iter()
        .filter_map(|key| {
            key.rsplit('/')
                .next()?
                .strip_suffix(".ids")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("segments");
    assert!(
        fresh.state().generation >= newest_segment,
        "the new state's generations name no old segment"
    );
    let counts =
        commit_in_batches(&mut fresh, &lake, &cache, &plain_records(&all, 1_000), 400).await;
    assert_all_duplicates(&counts, &events);
    assert_counted_once(&root, &events);
}

#[tokio::test]
async fn a_replay_into_a_closed_parent_and_its_children_never_count_an_event_twice() {
    let (dir, events, root, lake) = fresh_lake();
    let cache = IdCache::default();
    let stream = identity();
    let load = |shard: &'static str| Checkpoint::load(&lake, &stream, STREAM, shard);
    let (parent_id, child_id) = ("shardId-000000000000", "shardId-000000000001");
    // The parent commits all but a quarter of the file: the event source mapping gave that range
    // up (its batches failed past their retries), and the position moved on past it.
    let quarter = events.len() / 4;
    let given_up: Vec<&SalesEvent> = events[quarter..2 * quarter].iter().collect();
    let mut parent = load(parent_id).await.expect("load");
    let records = plain_records(&events.iter().collect::<Vec<_>>(), 1_000);
    for range in [0..quarter, 2 * quarter..events.len()] {
        commit_in_batches(&mut parent, &lake, &cache, &records[range], 300).await;
    }
    // The shard is split. The producer re-sends the first half of the given-up range, which
    // lands on the child; the child's process stays warm.
    let mut child = load(child_id).await.expect("load");
    child
        .set_ancestors(&lake, [parent_id.to_owned()])
        .await
        .expect("ancestors");
    let half = given_up.len() / 2;
    let counts = commit_in_batches(
        &mut child,
        &lake,
        &cache,
        &plain_records(&given_up[..half], 50_000),
        300,
    )
    .await;
    assert_eq!(counts.accepted, half as u64);
    // The given-up range is replayed into the parent: what the child committed since counts
    // already (the replay reads the ids in the lake), the rest comes back.
    let mut replayed = consumer::BatchCounts::default();
    for batch in records[quarter..2 * quarter].chunks(300) {
        let committed = parent
            .replay(&lake, &cache, batch.to_vec(), &BatchOptions::default())
            .await
            .expect("replays");
        replayed.add(&committed.counts);
    }
    assert_eq!(
        (replayed.accepted, replayed.duplicates),
        ((given_up.len() - half) as u64, half as u64)
    );
    // Then the producer re-sends the whole range to the warm child: the parent's new ids
    // (committed after the child read its state) count as well.
    let counts = commit_in_batches(
        &mut child,
        &lake,
        &cache,
        &plain_records(&given_up, 60_000),
        300,
    )
    .await;
    assert_eq!(
        (counts.accepted, counts.duplicates),
        (0, given_up.len() as u64)
    );
    assert_counted_once(&root, &events);
    // The parent's state is lost (moved aside) while its index is not: a shard merged from it
    // later still finds its events, in the lake.
    std::fs::rename(
        root.join(format!("_state/{STREAM}/{parent_id}.json")),
        dir.path().join("moved-aside.json"),
    )
    .expect("move");
    let mut merged = load("shardId-000000000002").await.expect("load");
    merged
        .set_ancestors(&lake, [parent_id.to_owned(), child_id.to_owned()])
        .await
        .expect("ancestors");
    let counts = commit_in_batches(&mut merged, &lake, &cache, &records, 500).await;
    assert_all_duplicates(&counts, &events);
    assert_eq!(lake_totals(&root), normalized(expected_totals(&events)));
}

//! The consumer's one pure step: a batch of stream records in, the lake files to write out.
//!
//! decode → validate ([`decode_batch`]), then drop duplicates → aggregate → encode
//! ([`finish_batch`]). No I/O happens here: between the two halves the commit protocol loads the
//! id index of the sale dates the decoded events fall on ([`crate::commit::index`]), and after them it
//! writes what they return. [`process_batch`] is the two in one, for callers that know the
//! committed ids already.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{RecordBatch, UInt32Array};
use chrono::NaiveDate;
use hashbrown::HashSet;
use sales_stream::{
    AggregationError, Payload, SalesEventRef, SequenceNumber, StreamRecord, codec, unpack,
};
use uuid::Uuid;

use crate::core::aggregate::Aggregates;
use crate::core::layout::{CUSTOMER_SALES, DAILY_SALES, QUARANTINE, SALES_EVENTS, data_file};
use crate::core::quarantine::{self, QuarantinedRecord};
use crate::core::writer::{
    Codec, SalesEventsBuilder, SalesEventsColumns, WriterError, encode_customer_sales,
    encode_daily_sales, encode_sales_events_batch,
};

/// Options of the batch step.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    pub codec: Codec,
    /// Encode a batch's `sales_events` files on a second thread while this one aggregates and
    /// encodes the rest: for a caller with a batch at a time and a core to spare (a function
    /// instance). Off, the step uses one thread.
    pub parallel: bool,
}

/// A file the batch writes, keyed relative to the lake root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub key: String,
    pub bytes: Vec<u8>,
    pub rows: usize,
}

/// What happened to the records of a batch and to the events in them.
///
/// `received = accepted + duplicates + quarantined` counts events: an aggregated record counts
/// once per event it carries (or once, as quarantined, when it cannot be unpacked). Records
/// delivered again at or before the committed position are not processed; they are counted as
/// `replayed` (duplicates by sequence number) beside the `records` that were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchCounts {
    /// Stream records in the batch, plain or aggregated.
    #[serde(default)]
    pub records: u64,
    pub received: u64,
    pub accepted: u64,
    /// Events whose id was already committed or already seen earlier in the batch.
    pub duplicates: u64,
    pub quarantined: u64,
    /// Records skipped because they were at or before the committed position.
    #[serde(default)]
    pub replayed: u64,
}

impl BatchCounts {
    pub fn add(&mut self, other: &BatchCounts) {
        self.records += other.records;
        self.received += other.received;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.quarantined += other.quarantined;
        self.replayed += other.replayed;
    }
}

/// The result of a batch: files to write, then ids and position to commit.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    pub files: Vec<OutputFile>,
    /// Ids of the accepted events by sale date, each in stream order.
    pub accepted_ids: BTreeMap<NaiveDate, Vec<Uuid>>,
    pub counts: BatchCounts,
    /// The position to commit once the files are written.
    pub last_sequence_number: Option<SequenceNumber>,
    /// The sale dates of the accepted events: the table partitions this batch writes.
    pub days: BTreeSet<NaiveDate>,
}

/// Why a batch could not be turned into files.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Encoding the Parquet files failed.
    #[error(transparent)]
    Writer(#[from] WriterError),
}

fn group_by_date<T>(
    items: impl IntoIterator<Item = (NaiveDate, T)>,
) -> BTreeMap<NaiveDate, Vec<T>> {
    let mut groups: BTreeMap<NaiveDate, Vec<T>> = BTreeMap::new();
    for (date, item) in items {
        groups.entry(date).or_default().push(item);
    }
    groups
}

/// A batch's records decoded and validated: the events to dedupe, and what was quarantined.
#[derive(Debug)]
pub struct Decoded {
    /// Valid events in stream order (duplicates included), as `sales_events` columns: decoded
    /// straight into the columns the lake stores, with no event-by-event copy in between. One
    /// part, or two decoded side by side (the first with room for both).
    pub events: Vec<SalesEventsBuilder>,
    /// Each event's id and sale date, row for row: what the dedupe reads.
    pub ids: Vec<Uuid>,
    pub dates: Vec<NaiveDate>,
    pub quarantined: Vec<QuarantinedRecord>,
    /// `records` and `received` are known here; the rest once the batch is finished.
    pub counts: BatchCounts,
    pub last_sequence_number: Option<SequenceNumber>,
}

impl Decoded {
    /// The sale dates the events fall on: the dates whose committed ids the dedupe needs.
    pub fn days(&self) -> BTreeSet<NaiveDate> {
        self.dates.iter().copied().collect()
    }

    /// `later`'s events and quarantined records after these: the records that follow.
    fn append(&mut self, later: Decoded) {
        self.events.extend(later.events);
        self.ids.extend(later.ids);
        self.dates.extend(later.dates);
        self.quarantined.extend(later.quarantined);
        self.counts.add(&later.counts);
        if later.last_sequence_number.is_some() {
            self.last_sequence_number = later.last_sequence_number;
        }
    }
}

/// Decodes and validates the records of one shard; what is not a valid event is quarantined.
/// With `options.parallel`, the records' first and second halves (by the work in them) are
/// decoded side by side, and the second's columns then appended to the first's.
pub fn decode_batch(shard_id: &str, records: &[StreamRecord], options: &BatchOptions) -> Decoded {
    let mut payloads: Vec<_> = records.iter().map(|r| unpack(&r.data)).collect();
    // Room for every event up front: a compact record holds thousands, and columns grown by
    // doubling cost a copy of each.
    let events: usize = payloads.iter().flatten().map(Payload::len).sum();
    if !options.parallel {
        return decode_payloads(shard_id, records, payloads, events);
    }
    // The halves are cut by work: a record that cannot be unpacked is one to quarantine.
    let work =
        |payload: &Result<Payload<'_>, AggregationError>| payload.as_ref().map_or(1, Payload::len);
    let all_work: usize = payloads.iter().map(work).sum();
    let mut first_work = 0;
    let half = payloads
        .iter()
        .position(|payload| {
            first_work += work(payload);
            first_work * 2 >= all_work
        })
        .map_or(payloads.len(), |last| last + 1);
    let second_payloads = payloads.split_off(half);
    let first_events: usize = payloads.iter().flatten().map(Payload::len).sum();
    let (records, second_records) = records.split_at(half);
    let (mut decoded, second) = both(
        true,
        // The first half's columns have room for the whole batch's.
        || decode_payloads(shard_id, records, payloads, events),
        || {
            decode_payloads(
                shard_id,
                second_records,
                second_payloads,
                events - first_events,
            )
        },
    );
    decoded.append(second);
    decoded
}

/// [`decode_batch`] of `records` unpacked into `payloads`, with room for `capacity` events.
fn decode_payloads(
    shard_id: &str,
    records: &[StreamRecord],
    payloads: Vec<Result<Payload<'_>, AggregationError>>,
    capacity: usize,
) -> Decoded {
    let mut builder = SalesEventsBuilder::with_capacity(capacity);
    let mut ids = Vec::with_capacity(capacity);
    let mut dates = Vec::with_capacity(capacity);
    let mut quarantined = Vec::new();
    let mut counts = BatchCounts::default();
    // A compact event's `source`, written here for each in turn.
    let mut source = String::new();
    for (record, payload) in records.iter().zip(payloads) {
        counts.records += 1;
        let payload = match payload {
            Ok(payload) => payload,
            Err(e) => {
                counts.received += 1;
                quarantined.push(QuarantinedRecord::new(shard_id, record, e.to_string()));
                continue;
            }
        };
        let arrival = record.approximate_arrival.timestamp_millis();
        // Appends a valid event; says why an event is not one.
        let mut accept = |event: &SalesEventRef<'_>| {
            let invalid = |e: &dyn std::fmt::Display| format!("invalid event: {e}");
            event.validate().map_err(|e| invalid(&e))?;
            // After validation this cannot fail; it appends nothing when it does.
            builder
                .append(event, shard_id, record.sequence_number.as_str(), arrival)
                .map_err(|e| invalid(&e))?;
            ids.push(event.event_id);
            dates.push(event.event_time.date());
            Ok::<_, String>(())
        };
        let mut json = |sub_record: Option<usize>, partition_key: &str, data: &[u8]| {
            counts.received += 1;
            let accepted = codec::decode_ref(data)
                .map_err(|e| e.to_string())
                .and_then(|event| accept(&event));
            if let Err(reason) = accepted {
                quarantined.push(QuarantinedRecord::part(
                    shard_id,
                    record,
                    sub_record,
                    partition_key,
                    data,
                    reason,
                ));
            }
        };
        match &payload {
            Payload::Single(data) => json(None, &record.partition_key, data),
            Payload::Aggregated(users) => {
                for (i, user) in users.iter().enumerate() {
                    json(Some(i), &user.partition_key, &user.data);
                }
            }
            Payload::Compact(events) => {
                counts.received += events.len() as u64;
                for i in 0..events.len() {
                    let event = events.event_in(i, &mut source);
                    if let Err(reason) = accept(&event) {
                        // Quarantined as the JSON event it stands for: readable, and replayable.
                        quarantined.push(QuarantinedRecord::part(
                            shard_id,
                            record,
                            Some(i),
                            &event.event_id.to_string(),
                            &codec::encode(&event.into_owned()),
                            reason,
                        ));
                    }
                }
            }
        }
    }
    Decoded {
        events: vec![builder],
        ids,
        dates,
        quarantined,
        counts,
        last_sequence_number: records.last().map(|r| r.sequence_number.clone()),
    }
}

/// Drops the events whose id was committed before (`already_committed(sale date, id)`) or seen
/// earlier in the batch, and turns the rest into lake files named `batch_name` (see
/// [`crate::core::layout::batch_name`]).
pub fn finish_batch(
    decoded: Decoded,
    name: &str,
    already_committed: impl Fn(NaiveDate, &Uuid) -> bool,
    options: &BatchOptions,
) -> Result<BatchOutput, BatchError> {
    let Decoded {
        events,
        ids,
        dates,
        quarantined,
        counts,
        last_sequence_number,
    } = decoded;
    let mut output = BatchOutput {
        counts,
        last_sequence_number,
        ..BatchOutput::default()
    };
    // hashbrown's hasher (foldhash, seeded per process) is several times SipHash's speed on ids.
    let mut seen_in_batch = HashSet::with_capacity(ids.len());
    // The rows each sale date keeps, in stream order.
    let mut kept: BTreeMap<NaiveDate, Vec<u32>> = BTreeMap::new();
    for (row, (id, day)) in ids.iter().zip(&dates).enumerate() {
        if already_committed(*day, id) || !seen_in_batch.insert(*id) {
            output.counts.duplicates += 1;
            continue;
        }
        kept.entry(*day).or_default().push(row as u32);
    }
    output.counts.quarantined = quarantined.len() as u64;

    let events = SalesEventsBuilder::finish_parts(events)?;
    for (date, rows) in &kept {
        output.counts.accepted += rows.len() as u64;
        output.days.insert(*date);
        output
            .accepted_ids
            .insert(*date, rows.iter().map(|&row| ids[row as usize]).collect());
    }
    let (events_files, aggregates_files) = both(
        options.parallel,
        || sales_events_files(&events, &kept, name, options.codec),
        || aggregates_files(&events, &kept, name, options.codec),
    );
    output.files.extend(events_files?);
    output.files.extend(aggregates_files?);
    for (date, rows) in group_by_date(quarantined.iter().map(|q| (q.arrival_time.date_naive(), q)))
    {
        output.files.push(OutputFile {
            key: data_file(QUARANTINE, date, name, "jsonl"),
            bytes: quarantine::encode(&rows),
            rows: rows.len(),
        });
    }
    Ok(output)
}

/// Each date's `sales_events` file: the rows it keeps (in stream order) of `events`.
fn sales_events_files(
    events: &RecordBatch,
    kept: &BTreeMap<NaiveDate, Vec<u32>>,
    name: &str,
    codec: Codec,
) -> Result<Vec<OutputFile>, BatchError> {
    let mut files = Vec::with_capacity(kept.len());
    for (date, rows) in kept {
        let count = rows.len();
        // Rows arrive in time order, so a date's rows are usually one run: a view, not a copy.
        // (A kept date has a row at least, in increasing order.)
        let (first, last) = (rows[0] as usize, rows[count - 1] as usize);
        let day_events = if last + 1 - first == count {
            events.slice(first, count)
        } else {
            arrow::compute::take_record_batch(events, &UInt32Array::from(rows.clone()))
                .map_err(WriterError::from)?
        };
        files.push(OutputFile {
            key: data_file(SALES_EVENTS, *date, name, "parquet"),
            bytes: encode_sales_events_batch(&day_events, codec)?,
            rows: count,
        });
    }
    Ok(files)
}

/// The `daily_sales` and `customer_sales` files of the rows each date keeps of `events`.
fn aggregates_files(
    events: &RecordBatch,
    kept: &BTreeMap<NaiveDate, Vec<u32>>,
    name: &str,
    codec: Codec,
) -> Result<Vec<OutputFile>, BatchError> {
    let columns = SalesEventsColumns::of(events)?;
    // Keys borrow the batch's text: no group copies a string.
    let mut aggregates = Aggregates::<&str>::default();
    for (date, rows) in kept {
        for row in rows {
            aggregates.add_line(&columns.line(*row as usize, *date));
        }
    }
    let aggregates = aggregates.finish();
    let mut files = Vec::new();
    for (date, rows) in group_by_date(aggregates.daily.iter().map(|d| (d.key.sale_date, d))) {
        files.push(OutputFile {
            key: data_file(DAILY_SALES, date, name, "parquet"),
            bytes: encode_daily_sales(&rows, codec)?,
            rows: rows.len(),
        });
    }
    for (date, rows) in group_by_date(aggregates.customers.iter().map(|c| (c.key.sale_date, c))) {
        files.push(OutputFile {
            key: data_file(CUSTOMER_SALES, date, name, "parquet"),
            bytes: encode_customer_sales(&rows, codec)?,
            rows: rows.len(),
        });
    }
    Ok(files)
}

/// `a()` and `b()`; when `parallel`, side by side on rayon's threads (kept from batch to batch:
/// a thread made for one batch starts with an empty heap, and paid for it in page faults more
/// than the second core gave).
fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if parallel {
        rayon::join(a, b)
    } else {
        (a(), b())
    }
}

/// Turns the records of one shard into lake files named `name`: [`decode_batch`], then
/// [`finish_batch`].
pub fn process_batch(
    shard_id: &str,
    name: &str,
    records: &[StreamRecord],
    already_committed: impl Fn(NaiveDate, &Uuid) -> bool,
    options: &BatchOptions,
) -> Result<BatchOutput, BatchError> {
    finish_batch(
        decode_batch(shard_id, records, options),
        name,
        already_committed,
        options,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDateTime};
    use rust_decimal::Decimal;
    use sales_stream::SalesEvent;
    use std::str::FromStr;

    fn event(line: u64, day: u32) -> SalesEvent {
        SalesEvent {
            event_id: sales_stream::event_id("t.csv", line),
            event_time: NaiveDateTime::from_str(&format!("2011-12-{day:02}T10:00:00"))
                .expect("time"),
            invoice_no: "1".into(),
            stock_code: "A".into(),
            description: None,
            quantity: 2,
            unit_price: Decimal::from_str("1.5").expect("price"),
            customer_id: None,
            country: "France".into(),
            source: format!("t.csv:{line}"),
        }
    }

    fn record(seq: u64, data: Vec<u8>) -> StreamRecord {
        StreamRecord {
            sequence_number: SequenceNumber::from_u64(seq),
            partition_key: format!("k{seq}"),
            data,
            approximate_arrival: DateTime::from_timestamp_millis(1_323_400_000_000).expect("time"),
        }
    }

    #[test]
    fn accounts_for_every_record_and_partitions_by_sale_date() {
        let mut invalid = event(9, 1);
        invalid.unit_price = Decimal::from_str("-1").expect("price");
        let records = vec![
            record(10, codec::encode(&event(1, 1))),
            record(20, codec::encode(&event(2, 2))),
            record(30, codec::encode(&event(1, 1))), // re-sent within the batch
            record(40, b"{not json".to_vec()),
            record(50, codec::encode(&invalid)),
            record(60, codec::encode(&event(3, 1))), // committed by an earlier batch
        ];
        let committed = sales_stream::event_id("t.csv", 3);
        let output = process_batch(
            "shardId-000000000001",
            "shardId-000000000001-10-1",
            &records,
            |_, id| *id == committed,
            &BatchOptions::default(),
        )
        .expect("processes");
        assert_eq!(
            output.counts,
            BatchCounts {
                records: 6,
                received: 6,
                accepted: 2,
                duplicates: 2,
                quarantined: 2,
                replayed: 0
            }
        );
        assert_eq!(
            output.last_sequence_number,
            Some(SequenceNumber::from_u64(60))
        );
        let day = |d| NaiveDate::from_ymd_opt(2011, 12, d).expect("date");
        assert_eq!(
            output.accepted_ids,
            BTreeMap::from([
                (day(1), vec![sales_stream::event_id("t.csv", 1)]),
                (day(2), vec![sales_stream::event_id("t.csv", 2)]),
            ])
        );
        let keys: Vec<&str> = output.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sales_events/year=2011/month=12/day=01/shardId-000000000001-10-1.parquet",
                "sales_events/year=2011/month=12/day=02/shardId-000000000001-10-1.parquet",
                "daily_sales/year=2011/month=12/day=01/shardId-000000000001-10-1.parquet",
                "daily_sales/year=2011/month=12/day=02/shardId-000000000001-10-1.parquet",
                "customer_sales/year=2011/month=12/day=01/shardId-000000000001-10-1.parquet",
                "customer_sales/year=2011/month=12/day=02/shardId-000000000001-10-1.parquet",
                "quarantine/year=2011/month=12/day=09/shardId-000000000001-10-1.jsonl",
            ]
        );
        let quarantine = String::from_utf8(output.files[6].bytes.clone()).expect("utf-8");
        assert_eq!(quarantine.lines().count(), 2);
        assert!(quarantine.contains("not a sales event"), "{quarantine}");
        assert!(quarantine.contains("negative unit price"), "{quarantine}");
    }

    #[test]
    fn each_date_keeps_its_own_rows_whether_they_run_together_or_not() {
        // Lines 1-3 on the 1st then 4-5 on the 2nd (each date one run), then 6 back on the 1st.
        let days = [1, 1, 1, 2, 2, 1];
        let records: Vec<_> = (1..=6)
            .map(|line| {
                record(
                    line * 10,
                    codec::encode(&event(line, days[line as usize - 1])),
                )
            })
            .collect();
        for (records, first_day_lines) in [
            (&records[..5], vec![1, 2, 3]),
            (&records[..], vec![1, 2, 3, 6]),
        ] {
            let output = process_batch("s", "s-1", records, |_, _| false, &BatchOptions::default())
                .expect("processes");
            let lines = |file: &OutputFile| -> Vec<u64> {
                crate::core::writer::decode_sales_events(file.bytes.clone())
                    .expect("reads back")
                    .iter()
                    .map(|e| {
                        e.event
                            .source
                            .rsplit(':')
                            .next()
                            .and_then(|l| l.parse().ok())
                            .expect("line")
                    })
                    .collect()
            };
            assert_eq!(lines(&output.files[0]), first_day_lines);
            assert_eq!(lines(&output.files[1]), [4, 5]);
        }
    }

    #[test]
    fn a_batch_of_bad_records_is_quarantined_on_two_threads_too() {
        // A zstd frame's magic and nothing after it: a record that cannot be unpacked.
        let records: Vec<_> = (1..=3)
            .map(|seq| record(seq, vec![0x28, 0xB5, 0x2F, 0xFD]))
            .collect();
        let options = BatchOptions {
            parallel: true,
            ..BatchOptions::default()
        };
        for records in [&records[..1], &records[..]] {
            let output =
                process_batch("s", "s-1", records, |_, _| false, &options).expect("processes");
            assert_eq!(output.counts.quarantined, records.len() as u64);
            assert_eq!(output.counts.accepted, 0);
        }
    }

    #[test]
    fn a_batch_encoded_on_two_threads_writes_what_one_thread_writes() {
        // Three dates out of order, a re-sent event, a committed one and a bad record in each
        // half.
        let days = [1, 2, 1, 3, 2, 1, 3, 1];
        let mut records: Vec<_> = (1..=8)
            .map(|line| {
                record(
                    line * 10,
                    codec::encode(&event(line, days[line as usize - 1])),
                )
            })
            .collect();
        records.insert(2, record(25, b"[bad".to_vec()));
        records.push(record(90, codec::encode(&event(2, 2))));
        records.push(record(100, b"{not json".to_vec()));
        let committed = sales_stream::event_id("t.csv", 5);
        let run = |parallel| {
            let options = BatchOptions {
                parallel,
                ..BatchOptions::default()
            };
            process_batch("s", "s-1", &records, |_, id| *id == committed, &options)
                .expect("processes")
        };
        let (one, two) = (run(false), run(true));
        assert_eq!(
            two.files, one.files,
            "the same files, byte for byte, in order"
        );
        assert_eq!(one.files.len(), 3 * 3 + 1);
        assert_eq!(one.counts.quarantined, 2);
        assert_eq!(
            (two.counts, two.accepted_ids, two.days),
            (one.counts, one.accepted_ids, one.days)
        );
        assert_eq!(
            two.last_sequence_number,
            Some(SequenceNumber::from_u64(100))
        );
    }

    /// Processes the plain event of line 2, then `pack` (holding that event's twin, line 3's
    /// event and an invalid one) and a `damaged` record; checks that every event is accounted
    /// for and returns the quarantine file's lines.
    fn after_a_plain_twin(pack: Vec<u8>, damaged: Vec<u8>) -> Vec<QuarantinedRecord> {
        let records = [
            record(10, codec::encode(&event(2, 1))),
            record(20, pack),
            record(30, damaged),
        ];
        let output = process_batch("s", "s-1", &records, |_, _| false, &BatchOptions::default())
            .expect("processes");
        assert_eq!(
            output.counts,
            BatchCounts {
                records: 3,
                received: 5,
                accepted: 2,
                duplicates: 1,
                quarantined: 2,
                replayed: 0
            },
            "the twin is a duplicate, whatever form it came in"
        );
        let quarantine = output
            .files
            .iter()
            .find(|f| f.key.starts_with(QUARANTINE))
            .expect("quarantine file");
        String::from_utf8_lossy(&quarantine.bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    #[test]
    fn unpacks_aggregated_records_event_by_event() {
        let mut aggregator = sales_stream::Aggregator::new();
        for (key, data) in [
            ("a", codec::encode(&event(1, 1))),
            ("b", b"{broken".to_vec()),
            ("c", codec::encode(&event(2, 1))),
        ] {
            aggregator.push(key.into(), data);
        }
        let compressed = aggregator.finish(sales_stream::Compression::Zstd);
        aggregator.push("d".into(), codec::encode(&event(3, 1)));
        let mut corrupt = aggregator.finish(sales_stream::Compression::None);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let lines = after_a_plain_twin(compressed, corrupt);
        assert_eq!(lines[0].sub_record, Some(1));
        assert_eq!(lines[0].partition_key, "b");
        assert_eq!(lines[0].data_text.as_deref(), Some("{broken"));
        assert_eq!(lines[1].sub_record, None);
        assert!(lines[1].reason.contains("digest"), "{}", lines[1].reason);
    }

    #[test]
    fn reads_compact_records_event_by_event() {
        let origin = |line| sales_stream::Origin {
            name: "t.csv",
            id: "t.csv",
            line,
        };
        let mut invalid = event(4, 2);
        invalid.unit_price = Decimal::from_str("-1").expect("price");
        let mut block = sales_stream::CompactBlock::new();
        for (line, event) in [(2, event(2, 1)), (3, event(3, 2)), (4, invalid.clone())] {
            block.push(&event, origin(line)).expect("derived");
        }
        let compact = block.finish(&mut sales_stream::Compressor::new());
        let mut damaged = compact.clone();
        damaged.truncate(damaged.len() - 2);
        let lines = after_a_plain_twin(compact, damaged);
        assert_eq!(lines[0].sub_record, Some(2));
        assert_eq!(lines[0].partition_key, invalid.event_id.to_string());
        assert!(lines[0].reason.contains("negative unit price"));
        let text = lines[0].data_text.as_deref().expect("JSON");
        assert_eq!(codec::decode(text.as_bytes()).expect("an event"), invalid);
        assert_eq!(lines[1].sub_record, None);
        assert!(
            lines[1].reason.contains("decompress"),
            "{}",
            lines[1].reason
        );
    }

    #[test]
    fn the_same_batch_gives_the_same_files() {
        let records: Vec<_> = (0..50)
            .map(|i| record(i * 10, codec::encode(&event(i, 1 + (i % 3) as u32))))
            .collect();
        let a =
            process_batch("s", "s-1", &records, |_, _| false, &BatchOptions::default()).expect("a");
        let b =
            process_batch("s", "s-1", &records, |_, _| false, &BatchOptions::default()).expect("b");
        assert_eq!(a.files, b.files, "a retried batch overwrites its own files");
    }

    #[test]
    fn a_leap_second_is_aggregated_on_its_own_day() {
        // chrono reads `23:59:60` as the last second plus a second of nanoseconds: in
        // milliseconds since the epoch that is the next midnight.
        let mut late = event(1, 9);
        late.event_time = sales_stream::time::parse("2011-12-09T23:59:60").expect("leap second");
        let output = process_batch(
            "s",
            "s-1",
            &[record(1, codec::encode(&late))],
            |_, _| false,
            &BatchOptions::default(),
        )
        .expect("processes");
        let keys: Vec<&str> = output.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sales_events/year=2011/month=12/day=09/s-1.parquet",
                "daily_sales/year=2011/month=12/day=09/s-1.parquet",
                "customer_sales/year=2011/month=12/day=09/s-1.parquet",
            ]
        );
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        let output =
            process_batch("s", "s-1", &[], |_, _| false, &BatchOptions::default()).expect("empty");
        assert!(output.files.is_empty());
        assert_eq!(output.last_sequence_number, None);
    }
}

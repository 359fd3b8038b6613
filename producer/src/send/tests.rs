use std::collections::HashMap;
use std::time::Duration;

use sales_stream::{Compression, HashKeyRange, Payload, PutEntry, unpack};

use super::*;
use crate::batcher::{MAX_RECORDS_PER_PUT, Packing};
use crate::columns::ColumnMap;
use crate::dates::DateParser;
use crate::generate::{GenerateOptions, generate};
use crate::input::unkeyed;
use crate::reader::{CsvReader, Line};
use crate::retry::RetryPolicy;
use crate::row::RowParser;
use crate::sink::EntryFailure;
use crate::sink::{RecordSink, SinkError};

/// A stream that fails on schedule: every third request is throttled whole, and in the
/// others every entry whose `attempts` so far is below `fail_entry_attempts` fails.
#[derive(Debug, Default)]
struct FlakySink {
    requests: AtomicU64,
    fail_entry_attempts: u32,
    /// From this request on, everything is throttled.
    blackout_from: Option<u64>,
    attempts: Mutex<HashMap<String, u32>>,
    delivered: Mutex<Vec<PutEntry>>,
}

impl RecordSink for FlakySink {
    async fn put_records(
        &self,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
        let request = self.requests.fetch_add(1, Ordering::Relaxed);
        if self.blackout_from.is_some_and(|from| request >= from) || request % 3 == 1 {
            return Err(SinkError::Transient(
                "ProvisionedThroughputExceededException".into(),
            ));
        }
        let mut attempts = self.attempts.lock().expect("lock");
        let mut delivered = self.delivered.lock().expect("lock");
        Ok(entries
            .iter()
            .map(|entry| {
                let seen = attempts.entry(entry.partition_key.clone()).or_default();
                *seen += 1;
                if *seen <= self.fail_entry_attempts {
                    return Some(EntryFailure {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "slow down".into(),
                    });
                }
                delivered.push(entry.clone());
                None
            })
            .collect())
    }
}

fn input(rows: u64) -> (CsvReader<std::io::Cursor<Vec<u8>>>, RowParser) {
    let mut csv = Vec::new();
    generate(
        &GenerateOptions {
            rows,
            seed: 3,
            ..GenerateOptions::default()
        },
        &mut csv,
    )
    .expect("generates");
    let reader = CsvReader::new(std::io::Cursor::new(csv), None).expect("header");
    let columns = ColumnMap::from_header(reader.header(), &[]).expect("columns");
    (
        reader,
        RowParser::new(columns, DateParser::default(), "t.csv"),
    )
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

async fn send(
    rows: u64,
    sink: &Arc<FlakySink>,
    options: &SendOptions,
    dir: &tempfile::TempDir,
) -> Result<Summary, SendError> {
    let (reader, parser) = input(rows);
    let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
    send_csv(
        unkeyed(reader),
        parser,
        Arc::clone(sink),
        rejects,
        options,
        Progress::new(false),
    )
    .await
    .map(|(summary, _)| summary)
}

fn delivered_events(sink: &FlakySink) -> Vec<String> {
    let mut keys = Vec::new();
    for entry in sink.delivered.lock().expect("lock").iter() {
        match unpack(&entry.data).expect("unpacks") {
            Payload::Single(_) => keys.push(entry.partition_key.clone()),
            Payload::Aggregated(users) => keys.extend(users.into_iter().map(|u| u.partition_key)),
            Payload::Compact(events) => {
                keys.extend((0..events.len()).map(|i| events.event(i).event_id.to_string()));
            }
        }
    }
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_entries_and_requests_are_resent_until_every_event_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    for packing in [
        Packing::Plain,
        Packing::Aggregated {
            shards: HashKeyRange::split_evenly(3),
            target_bytes: 8 * 1024,
            compression: Compression::Zstd,
        },
        Packing::Compact {
            shards: HashKeyRange::split_evenly(3),
            target_bytes: 8 * 1024,
        },
    ] {
        let sink = Arc::new(FlakySink {
            fail_entry_attempts: 2,
            ..FlakySink::default()
        });
        let options = SendOptions {
            packing,
            retry: fast_retries(10),
            ..SendOptions::default()
        };
        let summary = send(5_000, &sink, &options, &dir).await.expect("sends");
        assert_eq!(
            summary.rows_read,
            summary.events_sent + summary.rejected + summary.blank
        );
        assert_eq!(summary.resume_after, summary.rows_read);
        assert!(summary.retries > 0 && summary.records_resent >= 2 * summary.records);
        let delivered = delivered_events(&sink);
        assert_eq!(
            delivered.len() as u64,
            summary.events_sent,
            "each event exactly once"
        );
        assert!(delivered.windows(2).all(|w| w[0] != w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_stop_the_run_with_a_resume_point_that_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(FlakySink {
        blackout_from: Some(12),
        ..FlakySink::default()
    });
    let options = SendOptions {
        retry: fast_retries(4),
        max_in_flight: 3,
        ..SendOptions::default()
    };
    let error = send(20_000, &sink, &options, &dir)
        .await
        .expect_err("gives up");
    let message = error.to_string();
    let SendError::Stream {
        cause: StreamFailure::GaveUp { attempts: 4, .. },
        resume_after,
    } = error
    else {
        panic!("unexpected {error}");
    };
    assert!(resume_after > 0);
    assert!(
        message.contains(&format!("--skip-rows {resume_after}")),
        "{message}"
    );
    // Every event of the settled rows was delivered.
    let (mut reader, parser) = input(20_000);
    let mut expected = Vec::new();
    let mut row = 0;
    while let Some(line) = reader.next_line().expect("reads") {
        row += 1;
        if row > resume_after {
            break;
        }
        if let Line::Record(record) = line
            && let Ok(event) = parser.parse(&record)
        {
            expected.push(event.event_id.to_string());
        }
    }
    let delivered = delivered_events(&sink);
    assert!(
        expected
            .iter()
            .all(|id| delivered.binary_search(id).is_ok())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_entry_error_is_not_retried() {
    #[derive(Debug)]
    struct Refusing;
    impl RecordSink for Refusing {
        async fn put_records(
            &self,
            entries: &[PutEntry],
        ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
            Ok(vec![
                Some(EntryFailure {
                    code: "KMSAccessDeniedException".into(),
                    message: "no key".into()
                });
                entries.len()
            ])
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (reader, parser) = input(100);
    let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
    let result = send_csv(
        unkeyed(reader),
        parser,
        Arc::new(Refusing),
        rejects,
        &SendOptions::default(),
        Progress::new(false),
    )
    .await;
    assert!(matches!(
        result,
        Err(SendError::Stream {
            cause: StreamFailure::Refused { .. },
            resume_after: 0
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_sinks_limits_unless_the_run_is_paced() {
    /// Takes requests of any number of records, and remembers how many each had.
    #[derive(Debug, Default)]
    struct Roomy {
        sizes: Mutex<Vec<usize>>,
    }
    impl RecordSink for Roomy {
        async fn put_records(
            &self,
            entries: &[PutEntry],
        ) -> Result<Vec<Option<EntryFailure>>, SinkError> {
            self.sizes.lock().expect("lock").push(entries.len());
            Ok(vec![None; entries.len()])
        }
        fn request_limits(&self) -> RequestLimits {
            RequestLimits {
                records: usize::MAX,
                bytes: 5 * 1024 * 1024,
            }
        }
    }
    for (rows_per_s, largest) in [(None, 1_200), (Some(1e9), MAX_RECORDS_PER_PUT)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (reader, parser) = input(1_200);
        let sink = Arc::new(Roomy::default());
        let options = SendOptions {
            rows_per_s,
            ..SendOptions::default()
        };
        let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
        send_csv(
            unkeyed(reader),
            parser,
            Arc::clone(&sink),
            rejects,
            &options,
            Progress::new(false),
        )
        .await
        .expect("sent");
        let sizes = sink.sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 1_200);
        assert_eq!(
            sizes.iter().max(),
            Some(&largest),
            "{rows_per_s:?}: {sizes:?}"
        );
    }
}

/// The events each shard received: (shard, event id), sorted. Where records close depends on
/// the clock (a compact record lingers at most `MAX_LINGER`), where events go does not.
fn events_by_shard(sink: &FlakySink, shards: &[HashKeyRange]) -> Vec<(usize, String)> {
    let shard_of = |key: &str| {
        let key = sales_stream::hash_key(key);
        shards.iter().position(|r| r.contains(key)).unwrap_or(0)
    };
    let mut events = Vec::new();
    for entry in sink.delivered.lock().expect("lock").iter() {
        let shard = shard_of(&entry.partition_key);
        match unpack(&entry.data).expect("unpacks") {
            Payload::Compact(compact) => events
                .extend((0..compact.len()).map(|i| (shard, compact.event(i).event_id.to_string()))),
            _ => events.push((shard, entry.partition_key.clone())),
        }
    }
    events.sort();
    events
}

/// Keys derived ahead on the thread that reads the input ([`crate::input::read_ahead`]) are the ones the
/// packing thread derives itself, and send each event to the same shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_derived_ahead_send_the_same_events_to_the_same_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shards = HashKeyRange::split_evenly(4);
    for packing in [
        Packing::Plain,
        Packing::Compact {
            shards: shards.clone(),
            target_bytes: 8 * 1024,
        },
    ] {
        let hashed = packing.routes_by_hash_key();
        assert_eq!(hashed, matches!(packing, Packing::Compact { .. }));
        // Every record after the skipped rows comes with its key, as the parser would derive it.
        let (reader, parser) = input(3_000);
        let lines = crate::input::read_ahead(reader, parser.ids().clone(), hashed, 10);
        let mut events = 0;
        for (row, line) in lines.expect("spawns").enumerate() {
            let (line, key) = line.expect("reads");
            let Line::Record(record) = line else { continue };
            let Ok(event) = parser.parse(&record) else {
                continue;
            };
            events += 1;
            if row < 10 {
                assert_eq!(key, None);
                continue;
            }
            let key = key.expect("a key derived ahead");
            assert_eq!(key.id, event.event_id);
            let text = event.event_id.to_string();
            assert_eq!(key.hash_key, hashed.then(|| sales_stream::hash_key(&text)));
        }
        let options = SendOptions {
            packing: packing.clone(),
            retry: fast_retries(10),
            ..SendOptions::default()
        };
        let mut delivered = Vec::new();
        for ahead in [false, true] {
            let (reader, parser) = input(3_000);
            let sink = Arc::new(FlakySink::default());
            let rejects = RejectsFile::new(dir.path().join("rejects.csv"));
            let lines: crate::input::Lines = if ahead {
                let ids = parser.ids().clone();
                crate::input::read_ahead(reader, ids, hashed, 0).expect("spawns")
            } else {
                Box::new(unkeyed(reader))
            };
            send_csv(
                lines,
                parser,
                Arc::clone(&sink),
                rejects,
                &options,
                Progress::new(false),
            )
            .await
            .expect("sent");
            delivered.push(events_by_shard(&sink, &shards));
        }
        assert_eq!(delivered[0].len(), events);
        assert!(delivered[0] == delivered[1], "{packing:?}");
    }
}

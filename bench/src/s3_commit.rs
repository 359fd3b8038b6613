//! The commit protocol's cost per batch against the S3 emulator (moto on 127.0.0.1): every lake
//! request a batch makes, by kind, with its time, and what the exact id index adds (requests,
//! milliseconds, and bytes per event at rest).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use consumer::aws::s3::S3Lake;
use consumer::commit::Checkpoint;
use consumer::commit::index::IdCache;
use consumer::core::batch::BatchOptions;
use consumer::lake::{Lake, LakeError, Object, Precondition, Version};
use sales_stream::StreamRecord;

use crate::Emulator;

const BATCHES: usize = 20;
const BATCH_RECORDS: usize = 1_000;

/// A lake that times every request, by what the request is for.
#[derive(Debug)]
struct TimedLake<L> {
    inner: L,
    requests: Mutex<BTreeMap<&'static str, (u64, Duration)>>,
}

impl<L: Lake> TimedLake<L> {
    async fn timed<T>(
        &self,
        kind: &'static str,
        request: impl Future<Output = Result<T, LakeError>>,
    ) -> Result<T, LakeError> {
        let started = Instant::now();
        let result = request.await;
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let entry = requests.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += started.elapsed();
        result
    }
}

impl<L: Lake> Lake for TimedLake<L> {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let kind = if key.contains("/ids/") {
            "PUT id segment (index)"
        } else {
            "PUT data file"
        };
        self.timed(kind, self.inner.put(key, bytes)).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let kind = if String::from_utf8_lossy(&bytes).contains("\"in_flight\":null") {
            "PUT state, If-Match (commit)"
        } else {
            "PUT state, If-Match (intent, protocol)"
        };
        self.timed(kind, self.inner.put_if(key, bytes, expected))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
        let kind = if key.contains("/ids/") {
            "GET id segment (index)"
        } else {
            "GET"
        };
        self.timed(kind, self.inner.get(key)).await
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        self.timed("DELETE merged id segment (index)", self.inner.delete(key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        self.timed("LIST", self.inner.list(prefix)).await
    }
}

/// Commits `BATCHES` batches into moto S3 and prints the requests per batch.
pub fn commit_figures(moto_server: &Path, records: &[StreamRecord]) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _moto = Emulator(
        Command::new(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", moto_server.display()))?,
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = aws_config::from_env()
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .load()
            .await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(s3);
        client.create_bucket().bucket("bench").send().await?;
        let lake = TimedLake {
            inner: S3Lake::new(client, "bench", "lake"),
            requests: Mutex::default(),
        };
        let options = BatchOptions::default();
        let mut checkpoint = Checkpoint::load(
            &lake,
            &consumer::commit::state::StreamIdentity::new("local:bench"),
            "bench",
            "shardId-000000000000",
        )
        .await?;
        // A fresh process for every batch would read each segment; a warm one reads none.
        let cache = IdCache::default();
        lake.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let (mut files, mut accepted) = (0, 0);
        let started = Instant::now();
        for batch in records.chunks(BATCH_RECORDS).take(BATCHES) {
            let committed = checkpoint
                .commit(&lake, &cache, batch.to_vec(), &options)
                .await?;
            files += committed.files;
            accepted += committed.counts.accepted;
        }
        let total = started.elapsed();
        println!(
            "commit protocol into moto S3 ({BATCHES} batches of {BATCH_RECORDS} records, \
             {:.1} data files and {:.0} ms per batch):",
            files as f64 / BATCHES as f64,
            total.as_secs_f64() * 1000.0 / BATCHES as f64
        );
        let requests = lake
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut protocol = (0.0, Duration::ZERO);
        let mut index = (0.0, Duration::ZERO);
        for (kind, (count, time)) in requests.iter() {
            let per_batch = *count as f64 / BATCHES as f64;
            let ms = time.as_secs_f64() * 1000.0 / BATCHES as f64;
            println!("  {kind:<40} {per_batch:>5.1} per batch, {ms:>7.1} ms per batch");
            let sum = if kind.contains("protocol") {
                &mut protocol
            } else if kind.contains("index") {
                &mut index
            } else {
                continue;
            };
            sum.0 += per_batch;
            sum.1 += *time;
        }
        for (what, (count, time)) in [("protocol", protocol), ("id index", index)] {
            println!(
                "  the {what}'s own requests: {:>14.1} per batch, {:>7.1} ms per batch",
                count,
                time.as_secs_f64() * 1000.0 / BATCHES as f64
            );
        }
        println!("  (files are written 16 at a time, so time sums exceed the wall time)");
        let mut index_bytes = 0;
        for key in lake
            .inner
            .list("_state/bench/shardId-000000000000/ids")
            .await?
        {
            index_bytes += lake.inner.get(&key).await?.map_or(0, |o| o.bytes.len());
        }
        println!(
            "  id index at rest: {index_bytes} bytes for {accepted} events, {:.1} bytes per event",
            index_bytes as f64 / accepted.max(1) as f64
        );
        Ok::<_, anyhow::Error>(())
    })
}

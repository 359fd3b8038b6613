//! `make bench`: figures, never assertions. Prints producer and consumer throughput of the pure
//! cores (no I/O), end-to-end throughput of the real binaries through a file:// stream and lake,
//! peak memory, and bytes per row on the stream.

mod s3_commit;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use consumer::stream::Lineage;
use consumer::{BatchOptions, Checkpoints, FunctionConfig, LocalLake, handle, process_batch};
use producer::{ColumnMap, CsvReader, DateParser, GenerateOptions, Line, RowParser, generate};
use sales_stream::{SequenceNumber, StreamRecord, codec};

#[derive(Debug, Parser)]
struct Args {
    /// Generated rows.
    #[arg(long, default_value_t = 500_000)]
    rows: u64,
    /// Where the release producer and consumer binaries are.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Records per consumer batch.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// The Kinesis emulator to stream into (kinesalite's executable); `make bench` installs it.
    #[arg(long)]
    kinesalite: PathBuf,
    /// The S3 emulator (moto's `moto_server`) to measure the commit protocol against.
    #[arg(long)]
    moto: PathBuf,
    /// Shards of the emulator streams.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Measure the pure cores only (for profiling).
    #[arg(long)]
    cores_only: bool,
}

/// A process's peak resident memory (`VmHWM`), in MiB.
fn peak_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs a binary to completion; returns its wall time and peak memory. The peak is sampled from
/// `/proc` while it runs: `getrusage(RUSAGE_CHILDREN)` would count the parent's pages at exec.
fn run(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let pid = child.id().to_string();
    let mut peak = 0.0_f64;
    let status = loop {
        peak = peak.max(peak_mib(&pid));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)?;
        }
        bail!("{} failed: {stderr}", bin.display());
    }
    Ok((started.elapsed().as_secs_f64(), peak))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "bench: {} generated rows, consumer batches of {}",
        args.rows, args.batch_size
    );

    let mut csv = Vec::new();
    generate(
        &GenerateOptions {
            rows: args.rows,
            seed: 7,
            ..GenerateOptions::default()
        },
        &mut csv,
    )?;

    // Producer core: parse + validate + encode, no I/O.
    let started = Instant::now();
    let mut reader = CsvReader::new(csv.as_slice(), None)?;
    let parser = RowParser::new(
        ColumnMap::from_header(reader.header(), &[])?,
        DateParser::default(),
        "bench.csv",
    );
    let mut records = Vec::new();
    let (mut rows, mut wire_bytes) = (0_u64, 0_usize);
    while let Some(line) = reader.next_line()? {
        rows += 1;
        if let Line::Record(record) = line
            && let Ok(event) = parser.parse(&record)
        {
            let data = codec::encode(&event);
            let key = event.event_id.to_string();
            wire_bytes += data.len() + key.len();
            records.push(StreamRecord {
                sequence_number: SequenceNumber::from_u64(records.len() as u64),
                partition_key: key,
                data,
                approximate_arrival: chrono::Utc::now(),
            });
        }
    }
    let producer_s = started.elapsed().as_secs_f64();
    println!(
        "producer core (parse+validate+encode): {:>10.0} rows/s",
        rows as f64 / producer_s
    );
    println!(
        "bytes per event on the stream:         {:>10.1} B (JSON data + partition key)",
        wire_bytes as f64 / records.len() as f64
    );

    // Consumer core: decode → Parquet bytes, 10,000-record batches, no I/O.
    let started = Instant::now();
    let mut parquet_bytes = 0;
    for chunk in records.chunks(args.batch_size) {
        let output = process_batch(
            "shardId-000000000000",
            "bench",
            chunk,
            |_, _| false,
            &BatchOptions::default(),
        )?;
        parquet_bytes += output.files.iter().map(|f| f.bytes.len()).sum::<usize>();
    }
    let consumer_s = started.elapsed().as_secs_f64();
    println!(
        "consumer core (decode→Parquet):        {:>10.0} records/s",
        records.len() as f64 / consumer_s
    );
    println!(
        "Parquet bytes per event (both tables): {:>10.1} B",
        parquet_bytes as f64 / records.len() as f64
    );
    if args.cores_only {
        return Ok(());
    }
    lambda_figure(&records)?;
    s3_commit::commit_figures(&args.moto, &records)?;
    println!(
        "bench process peak memory:             {:>10.1} MiB",
        peak_mib("self")
    );
    drop(records);

    // End to end through the real binaries, file:// stream and lake.
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, &csv)?;
    let stream = format!("file://{}", dir.path().join("stream").display());
    let lake = format!("file://{}", dir.path().join("lake").display());
    let rejects = dir.path().join("rejects.csv");
    let (producer_wall, producer_peak) = run(
        &args.bin_dir.join("producer"),
        &[
            "--input",
            &input.to_string_lossy(),
            "--stream",
            &stream,
            "--rejects",
            &rejects.to_string_lossy(),
        ],
        &[],
    )?;
    let batch_size = args.batch_size.to_string();
    let (consumer_wall, consumer_peak) = run(
        &args.bin_dir.join("consumer"),
        &[
            "poll",
            "--stream",
            &stream,
            "--lake",
            &lake,
            "--until-drained",
            "--batch-size",
            &batch_size,
        ],
        &[],
    )?;
    let stream_bytes: u64 = std::fs::read_dir(dir.path().join("stream"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "producer binary to file:// stream:     {:>10.0} rows/s ({producer_wall:.2} s)",
        rows as f64 / producer_wall
    );
    println!(
        "consumer binary file:// → lake:        {:>10.0} rows/s ({consumer_wall:.2} s)",
        rows as f64 / consumer_wall
    );
    println!(
        "end to end (producer then consumer):   {:>10.0} rows/s",
        rows as f64 / (producer_wall + consumer_wall)
    );
    println!(
        "stream log bytes per row:              {:>10.1} B",
        stream_bytes as f64 / rows as f64
    );
    println!("peak memory: producer {producer_peak:.1} MiB, consumer {consumer_peak:.1} MiB");

    kinesis_figures(&args, &input, dir.path())
}

/// Fake credentials for the emulator, which checks their form only.
const EMULATOR_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "AKIDBENCHBENCHBENCH0"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Stops the emulator when the bench ends, however it ends.
struct Emulator(std::process::Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The producer binary into a Kinesis emulator, plain and aggregated: rows/s, bytes per row on
/// the wire, and what one shard could carry under both of its write limits.
fn kinesis_figures(args: &Args, input: &Path, dir: &Path) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _emulator = Emulator(
        Command::new(&args.kinesalite)
            .args([
                "--port",
                &port.to_string(),
                "--host",
                "127.0.0.1",
                "--createStreamMs",
                "0",
                "--shardLimit",
                "100",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", args.kinesalite.display()))?,
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(async {
        let config = aws_config::from_env()
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::for_tests())
            .load()
            .await;
        aws_sdk_kinesis::Client::new(&config)
    });
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "kinesalite did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut env: Vec<(&str, &str)> = EMULATOR_ENV.to_vec();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    println!(
        "into Kinesis (kinesalite on 127.0.0.1, {} shards, producer binary):",
        args.shards
    );
    for (stream, name, extra) in [
        ("bench-plain", "plain", &[][..]),
        (
            "bench-zstd",
            "aggregated (KPL, zstd)",
            &["--aggregate", "--compression", "zstd"][..],
        ),
        (
            "bench-kpl",
            "aggregated (standard KPL)",
            &["--aggregate"][..],
        ),
    ] {
        runtime.block_on(
            client
                .create_stream()
                .stream_name(stream)
                .shard_count(args.shards)
                .send(),
        )?;
        let summary_path = dir.join(format!("{stream}.json"));
        let mut producer_args = vec![
            "--input".to_owned(),
            input.to_string_lossy().into_owned(),
            "--stream".to_owned(),
            format!("kinesis://{stream}"),
            "--rejects".to_owned(),
            dir.join("rejects.csv").to_string_lossy().into_owned(),
            "--summary-json".to_owned(),
            summary_path.to_string_lossy().into_owned(),
        ];
        producer_args.extend(extra.iter().map(|s| (*s).to_owned()));
        let producer_args: Vec<&str> = producer_args.iter().map(String::as_str).collect();
        let (wall, peak) = run(&args.bin_dir.join("producer"), &producer_args, &env)?;
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path)?)?;
        let number = |key: &str| summary[key].as_f64().unwrap_or(0.0);
        let (rows, events, records, bytes) = (
            number("rows_read"),
            number("events_sent"),
            number("records"),
            number("bytes"),
        );
        let bytes_per_row = bytes / events.max(1.0);
        let rows_per_record = events / records.max(1.0);
        let per_shard = (1000.0 * rows_per_record).min(1_048_576.0 / bytes_per_row);
        println!(
            "  {name:<31} {:>8.0} rows/s, {bytes_per_row:>6.1} B/row on the wire, {rows_per_record:>6.1} rows/record, \
             {per_shard:>6.0} rows per shard-second, peak {peak:.1} MiB",
            rows / wall
        );
    }
    Ok(())
}

/// The bench's stream is never resharded.
struct Unsplit;

impl Lineage for Unsplit {
    async fn ancestors(&self, _stream: &str, _shard_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

/// The Lambda handler in process: a 10,000-record Kinesis event (as the event source mapping
/// delivers it, base64 and all) → a local lake, warm (after a first event of the same shard).
fn lambda_figure(records: &[StreamRecord]) -> anyhow::Result<()> {
    const BATCH: usize = 10_000;
    if records.len() < 2 * BATCH {
        return Ok(());
    }
    let event = |records: &[StreamRecord], first_sequence: usize| {
        let records: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let sequence = format!(
                    "4965495021935837161708973510418742043149739061844{:07}",
                    first_sequence + i
                );
                serde_json::json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key,
                        "sequenceNumber": sequence,
                        "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                        "approximateArrivalTimestamp": 1_300_000_000.5,
                    },
                    "eventSource": "aws:kinesis",
                    "eventID": format!("shardId-000000000000:{sequence}"),
                    "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/bench",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records }))
    };
    let dir = tempfile::tempdir()?;
    let lake = LocalLake::new(dir.path());
    let config = FunctionConfig::parse_from([format!("--lake=file://{}", dir.path().display())])?;
    let runtime = tokio::runtime::Runtime::new()?;
    // One warm function instance: the second event finds the shard's state in memory.
    let warm = Checkpoints::default();
    let lineage = Unsplit;
    runtime.block_on(handle(
        event(&records[..BATCH], 0)?,
        &lake,
        &lineage,
        &config,
        &warm,
    ))?;
    let second = event(&records[BATCH..2 * BATCH], BATCH)?;
    let started = Instant::now();
    let (response, report) = runtime.block_on(handle(second, &lake, &lineage, &config, &warm))?;
    let elapsed = started.elapsed();
    if !response.batch_item_failures.is_empty() || report.counts.accepted != BATCH as u64 {
        bail!("the Lambda handler did not accept the whole batch: {report:?}");
    }
    println!(
        "Lambda handler, 10,000-record event:   {:>10.0} ms warm ({} files → local lake)",
        elapsed.as_secs_f64() * 1000.0,
        report.files
    );
    Ok(())
}

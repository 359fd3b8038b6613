//! `make bench`: figures, never assertions. Every goal of the speed work is measured here, best
//! of three runs, and printed in one table beside its goal and the Python baseline:
//!
//! - the pure cores (no I/O): the producer's parse → validate → id → encode, and the consumer's
//!   batch step (decode → dedupe → aggregate → Parquet bytes) on batches of live traffic (two
//!   days) and of a backfill (forty days);
//! - the Lambda handler in process on a 10,000-record Kinesis event, warm;
//! - the real binaries through a `file://` stream and lake, with their peak memory, against the
//!   same job written in Python (`bench/baseline.py`), whose lake DuckDB first checks holds the
//!   same data (`bench/same_sums.py`);
//! - the commit protocol against the S3 emulator, and rows per shard-second into the Kinesis
//!   emulator with each wire form.

mod s3_commit;

use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use consumer::stream::Lineage;
use consumer::{
    BatchOptions, Checkpoints, FunctionConfig, Invocation, LocalLake, handle, process_batch,
};
use producer::{
    Batcher, ColumnMap, CsvReader, DEFAULT_AGGREGATE_BYTES, DateParser, GenerateOptions, Line,
    Packing, RowParser, generate,
};
use sales_stream::{HashKeyRange, SequenceNumber, StreamRecord};

/// The cores and the handler measured here run in the producer and the Lambda function, both on
/// mimalloc (their `main`s say why): measured on glibc's malloc, they would show what neither
/// binary does. `consumer poll`, on glibc's, is measured as a binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Generated rows of each data set.
    #[arg(long, default_value_t = 500_000)]
    rows: u64,
    /// Where the release producer and consumer binaries are.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Records per consumer batch.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Runs of each measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The Kinesis emulator to stream into (kinesalite's executable); `make bench` installs it.
    #[arg(long)]
    kinesalite: PathBuf,
    /// The S3 emulator (moto's `moto_server`) to measure the commit protocol against.
    #[arg(long)]
    moto: PathBuf,
    /// The Python with pandas, pyarrow and DuckDB (`bench/requirements.txt`) for the baseline.
    #[arg(long)]
    python: PathBuf,
    /// Shards of the emulator streams.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Measure the pure cores only (for profiling).
    #[arg(long, conflicts_with = "lambda_only")]
    cores_only: bool,
    /// Measure the Lambda handler only (for profiling: `--rows 2000000 --runs 150` runs it for
    /// a few seconds).
    #[arg(long)]
    lambda_only: bool,
}

/// What a figure should be.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

/// One line of the closing table.
#[derive(Debug)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    goal: Goal,
}

/// The figures measured so far, printed as one table at the end.
#[derive(Debug, Default)]
struct Table(Vec<Figure>);

impl Table {
    fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str, goal: Goal) {
        let name = name.into();
        println!("  {name}: {} {unit}", thousands(value));
        self.0.push(Figure {
            name,
            value,
            unit,
            goal,
        });
    }

    fn print(&self) {
        println!();
        println!(
            "{:<58} {:>14} {:>14}  {:<9}",
            "figure (best of runs)", "measured", "goal", "unit"
        );
        for figure in &self.0 {
            let (goal, met) = match figure.goal {
                Goal::AtLeast(goal) => (format!(">= {}", thousands(goal)), figure.value >= goal),
                Goal::AtMost(goal) => (format!("<= {}", thousands(goal)), figure.value <= goal),
                Goal::None => (String::new(), true),
            };
            let mark = match (figure.goal, met) {
                (Goal::None, _) => "",
                (_, true) => "met",
                (_, false) => "MISSED",
            };
            println!(
                "{:<58} {:>14} {:>14}  {:<9} {mark}",
                figure.name,
                thousands(figure.value),
                goal,
                figure.unit
            );
        }
    }
}

/// `1234567.8` as `1,234,568`; small values keep one decimal.
fn thousands(value: f64) -> String {
    if value.abs() < 100.0 {
        return format!("{value:.1}");
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// The shortest of `runs` timings of `f`.
fn best_of(runs: usize, f: impl FnMut() -> anyhow::Result<Duration>) -> anyhow::Result<f64> {
    Ok(best_of_each(runs, &mut [Box::new(f)])?[0])
}

/// The shortest of `runs` timings of each of `cores`, taken in turns (each core once, then each
/// again): on a shared machine a slow minute then costs one run of each core, not every run of
/// one.
fn best_of_each(
    runs: usize,
    cores: &mut [Box<dyn FnMut() -> anyhow::Result<Duration> + '_>],
) -> anyhow::Result<Vec<f64>> {
    let mut best = vec![f64::INFINITY; cores.len()];
    for _ in 0..runs.max(1) {
        for (core, best) in cores.iter_mut().zip(&mut best) {
            *best = best.min(core()?.as_secs_f64());
        }
    }
    Ok(best)
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
fn run(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<(Duration, f64)> {
    let (wall, peak, _) = run_output(bin, args, envs)?;
    Ok((wall, peak))
}

/// [`run`], also returning what the process printed.
fn run_output(
    bin: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> anyhow::Result<(Duration, f64, String)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let pid = child.id().to_string();
    // Read standard output on a thread: a full pipe would stall the child.
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut peak = 0.0_f64;
    let status = loop {
        peak = peak.max(peak_mib(&pid));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let output = reader.join().unwrap_or_default();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)?;
        }
        bail!("{} failed: {stderr}{output}", bin.display());
    }
    Ok((wall, peak, output))
}

/// A generated data set: the CSV, and its valid rows as the plain JSON records and the compact
/// records the producer sends.
struct DataSet {
    csv: Vec<u8>,
    records: Vec<StreamRecord>,
    /// The same events in compact records.
    compact: Vec<StreamRecord>,
}

fn generated(rows: u64, days: Option<u32>) -> anyhow::Result<DataSet> {
    let mut csv = Vec::new();
    generate(
        &GenerateOptions {
            rows,
            seed: 7,
            days,
            ..GenerateOptions::default()
        },
        &mut csv,
    )?;
    let (_, records) = produce(&csv, Packing::Plain, true)?;
    let (_, compact) = produce(&csv, compact(), true)?;
    Ok(DataSet {
        csv,
        records,
        compact,
    })
}

/// The producer's core on `csv`: read, parse, validate, derive ids, encode, pack. Returns the
/// rows read and, if `keep`, the records (the producer itself hands each request to the stream
/// and frees it; keeping half a million records costs the measurement a third in page faults).
fn produce(csv: &[u8], packing: Packing, keep: bool) -> anyhow::Result<(u64, Vec<StreamRecord>)> {
    let mut reader = CsvReader::new(csv, None)?;
    let parser = RowParser::new(
        ColumnMap::from_header(reader.header(), &[])?,
        DateParser::default(),
        "bench.csv",
    );
    let mut batcher = Batcher::new(packing);
    let mut batches = Vec::new();
    let mut rows = 0_u64;
    while let Some(line) = reader.next_line()? {
        rows += 1;
        if let Line::Record(record) = line
            && let Ok(event) = parser.parse(&record)
        {
            let full = batcher.push_event(rows, &event, parser.origin(record.line))?;
            batches.extend(full.filter(|_| keep));
        }
    }
    batches.extend(batcher.finish().into_iter().filter(|_| keep));
    let arrival = chrono::Utc::now();
    let records = batches
        .into_iter()
        .flat_map(|batch| batch.entries)
        .enumerate()
        .map(|(i, entry)| StreamRecord {
            sequence_number: SequenceNumber::from_u64(i as u64),
            partition_key: entry.partition_key,
            data: entry.data,
            approximate_arrival: arrival,
        })
        .collect();
    Ok((rows, records))
}

/// One shard's compact records, as `--aggregate --compression compact` sends them.
fn compact() -> Packing {
    Packing::Compact {
        shards: HashKeyRange::split_evenly(1),
        target_bytes: DEFAULT_AGGREGATE_BYTES,
    }
}

/// The consumer's batch step over `records` in batches: returns the time and Parquet bytes.
fn consume(records: &[StreamRecord], batch_size: usize) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let mut parquet_bytes = 0;
    for chunk in records.chunks(batch_size) {
        let output = process_batch(
            "shardId-000000000000",
            "bench",
            chunk,
            |_, _| false,
            &BatchOptions::default(),
        )?;
        parquet_bytes += output.files.iter().map(|f| f.bytes.len()).sum::<usize>();
    }
    Ok((started.elapsed(), parquet_bytes))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The cores and the handler run as the producer and the function do: without transparent
    // huge pages (their `main`s say why). Turned back on below, before the binaries: the setting
    // passes to child processes, and each binary and the baseline run as they would alone.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    println!(
        "bench: {} generated rows per data set, consumer batches of {}, best of {} runs",
        thousands(args.rows as f64),
        args.batch_size,
        args.runs
    );
    let mut table = Table::default();
    let live = generated(args.rows, Some(2))?;
    if args.lambda_only {
        lambda_figures(&live.records, args.runs, &mut table)?;
        table.print();
        return Ok(());
    }
    let backfill = generated(args.rows, Some(40))?;
    let paced = generated(args.rows, None)?;

    println!("pure cores, one thread:");
    let producers = [
        (
            "producer core: read, parse, validate, id, encode JSON",
            Packing::Plain,
            Goal::None,
        ),
        (
            "producer core: read, parse, validate, id, encode compact",
            compact(),
            Goal::AtLeast(1_000_000.0),
        ),
    ];
    let consumers = [
        (
            "consumer core, live traffic (2 days), JSON records",
            &live.records,
            live.records.len(),
            Goal::AtLeast(1_000_000.0),
        ),
        (
            "consumer core, live traffic (2 days), compact records",
            &live.compact,
            live.records.len(),
            Goal::AtLeast(1_000_000.0),
        ),
        (
            "consumer core, backfill (40 days), JSON records",
            &backfill.records,
            backfill.records.len(),
            Goal::AtLeast(500_000.0),
        ),
    ];
    // What the runs report besides their times: the rows of the paced file (the same for both
    // producer cores), the Parquet bytes each consumer core wrote.
    let rows = Cell::new(0_u64);
    let mut bytes = [0_usize; 3];
    let mut cores: Vec<Box<dyn FnMut() -> anyhow::Result<Duration> + '_>> = Vec::new();
    for (_, packing, _) in &producers {
        let (csv, rows) = (&paced.csv, &rows);
        cores.push(Box::new(move || {
            let started = Instant::now();
            rows.set(produce(csv, packing.clone(), false)?.0);
            Ok(started.elapsed())
        }));
    }
    for ((_, records, events, _), bytes) in consumers.iter().zip(&mut bytes) {
        // A batch of compact records holds as many events as a batch of JSON records.
        let batch = (args.batch_size * records.len() / events).max(1);
        cores.push(Box::new(move || {
            let (elapsed, parquet) = consume(records, batch)?;
            *bytes = parquet;
            Ok(elapsed)
        }));
    }
    let seconds = best_of_each(args.runs, &mut cores)?;
    drop(cores);
    let (producer_seconds, consumer_seconds) = seconds.split_at(producers.len());
    let mut producer_cores = [0.0; 2];
    for (((name, _, goal), seconds), core) in producers
        .into_iter()
        .zip(producer_seconds)
        .zip(&mut producer_cores)
    {
        *core = rows.get() as f64 / seconds;
        table.add(name, *core, "rows/s", goal);
    }
    for (name, records) in [
        ("plain JSON record", &paced.records),
        ("compact records", &paced.compact),
    ] {
        let wire: usize = records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .sum();
        table.add(
            format!("  {name} on the stream (data + partition key)"),
            wire as f64 / paced.records.len() as f64,
            "B/event",
            Goal::None,
        );
    }
    for (((name, _, events, goal), seconds), bytes) in
        consumers.into_iter().zip(consumer_seconds).zip(bytes)
    {
        table.add(name, events as f64 / seconds, "events/s", goal);
        table.add(
            "  Parquet bytes per event (three tables)",
            bytes as f64 / events as f64,
            "B/event",
            Goal::None,
        );
    }
    if args.cores_only {
        table.print();
        return Ok(());
    }
    lambda_figures(&live.records, args.runs, &mut table)?;
    s3_commit::commit_figures(&args.moto, &live.records)?;
    drop((live, backfill));

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, &paced.csv)?;
    let paced_rows = rows.get();
    drop(paced);
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(false);
    binaries_figures(
        &args,
        &input,
        paced_rows,
        producer_cores,
        dir.path(),
        &mut table,
    )?;
    kinesis_figures(&args, &input, dir.path(), &mut table)?;
    table.print();
    Ok(())
}

/// The producer and consumer binaries through a `file://` stream and lake, with plain records
/// (the producer's default) and with compact ones, against the Python baseline on the same file;
/// DuckDB checks that each lake holds the same data as the baseline's first.
fn binaries_figures(
    args: &Args,
    input: &Path,
    rows: u64,
    producer_cores: [f64; 2],
    dir: &Path,
    table: &mut Table,
) -> anyhow::Result<()> {
    println!(
        "binaries, {} rows (about 900 a day, as the real data):",
        thousands(rows as f64)
    );
    let batch_size = args.batch_size.to_string();
    let rows = rows as f64;
    let mut end_to_end = Vec::new();
    for ((form, extra), producer_core) in [
        ("plain records", &[][..]),
        (
            "compact records",
            &["--aggregate", "--compression", "compact"][..],
        ),
    ]
    .into_iter()
    .zip(producer_cores)
    {
        let (mut producer_best, mut consumer_best, mut both_best) =
            (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        let (mut producer_peak, mut consumer_peak) = (0.0_f64, 0.0_f64);
        let mut stream_bytes = 0;
        let tag = form.split(' ').next().unwrap_or(form);
        for run_number in 0..args.runs.max(1) {
            let stream_dir = dir.join(format!("stream-{tag}-{run_number}"));
            let stream = format!("file://{}", stream_dir.display());
            let lake = format!(
                "file://{}",
                dir.join(format!("lake-{tag}-{run_number}")).display()
            );
            let rejects = dir.join("rejects.csv");
            let mut producer_args = vec![
                "--input".to_owned(),
                input.to_string_lossy().into_owned(),
                "--stream".to_owned(),
                stream.clone(),
                "--rejects".to_owned(),
                rejects.to_string_lossy().into_owned(),
            ];
            producer_args.extend(extra.iter().map(|s| (*s).to_owned()));
            let producer_args: Vec<&str> = producer_args.iter().map(String::as_str).collect();
            let (producer_wall, peak) = run(&args.bin_dir.join("producer"), &producer_args, &[])?;
            producer_peak = producer_peak.max(peak);
            let (consumer_wall, peak) = run(
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
            consumer_peak = consumer_peak.max(peak);
            producer_best = producer_best.min(producer_wall.as_secs_f64());
            consumer_best = consumer_best.min(consumer_wall.as_secs_f64());
            both_best = both_best.min((producer_wall + consumer_wall).as_secs_f64());
            stream_bytes = std::fs::read_dir(&stream_dir)?
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
        table.add(
            format!("producer binary into a file:// stream, {form}"),
            rows / producer_best,
            "rows/s",
            Goal::AtLeast(producer_core / 2.0),
        );
        table.add(
            "  consumer binary, file:// stream to lake",
            rows / consumer_best,
            "rows/s",
            Goal::None,
        );
        table.add(
            "  end to end (producer, then consumer)",
            rows / both_best,
            "rows/s",
            Goal::None,
        );
        table.add(
            "  stream log bytes per row",
            stream_bytes as f64 / rows,
            "B/row",
            Goal::None,
        );
        table.add("  producer peak memory", producer_peak, "MiB", Goal::None);
        table.add(
            format!("  consumer peak memory (batches of {batch_size})"),
            consumer_peak,
            "MiB",
            Goal::AtMost(64.0),
        );
        end_to_end.push((form, tag, both_best));
    }

    // The same job in Python, on the same file, checked equal before it is compared.
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut python_best = f64::INFINITY;
    for run_number in 0..args.runs.max(1) {
        let lake = dir.join(format!("python-lake-{run_number}"));
        let (wall, _, _) = run_output(
            &args.python,
            &[
                &baseline.join("baseline.py").to_string_lossy(),
                "--input",
                &input.to_string_lossy(),
                "--lake",
                &lake.to_string_lossy(),
                "--batch-size",
                &batch_size,
            ],
            &[],
        )?;
        python_best = python_best.min(wall.as_secs_f64());
    }
    table.add(
        "Python baseline (pandas + pyarrow), end to end",
        rows / python_best,
        "rows/s",
        Goal::None,
    );
    for (form, tag, seconds) in end_to_end {
        let (_, _, same) = run_output(
            &args.python,
            &[
                &baseline.join("same_sums.py").to_string_lossy(),
                &dir.join(format!("lake-{tag}-0")).to_string_lossy(),
                &dir.join("python-lake-0").to_string_lossy(),
            ],
            &[],
        )
        .with_context(|| format!("the project's lake ({form}) and the Python baseline's differ"))?;
        println!("  {form}: {}", same.trim());
        table.add(
            format!("end to end, times the Python baseline, {form}"),
            python_best / seconds,
            "x",
            Goal::AtLeast(20.0),
        );
    }
    Ok(())
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
fn kinesis_figures(args: &Args, input: &Path, dir: &Path, table: &mut Table) -> anyhow::Result<()> {
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
        (
            "bench-compact",
            "compact",
            &["--aggregate", "--compression", "compact"][..],
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
        let wall = wall.as_secs_f64();
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
        table.add(
            format!("Kinesis rows per shard-second, {name}"),
            per_shard,
            "rows",
            if name == "compact" {
                Goal::AtLeast(50_000.0)
            } else {
                Goal::None
            },
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

/// The Lambda handler in process: its lake in memory (`/dev/shm`, where there is one) for the
/// goal, there again with the batch step on one thread (as on a function with less than two
/// cores), and in the temporary directory (on disk here). A function's lake is S3, never a local
/// disk: the sync of the objects written (a journal commit on this machine's virtual disk) is not
/// work the function does, and on disk the figure moved by tens of milliseconds from run to run.
/// Beside the first, what reading the event's JSON costs before the handler starts: an
/// invocation pays for it too.
fn lambda_figures(records: &[StreamRecord], runs: usize, table: &mut Table) -> anyhow::Result<()> {
    let in_memory = tempfile::tempdir_in("/dev/shm").ok();
    if let Some(dir) = &in_memory
        && let Some(figure) = lambda_figure(records, runs, dir.path(), Threads::AsConfigured)?
    {
        table.add(
            format!(
                "Lambda handler, 10,000 records, warm ({} files, lake in memory)",
                figure.files
            ),
            figure.handler_ms,
            "ms",
            Goal::AtMost(15.0),
        );
        table.add(
            "  before it, the event read from its JSON".to_owned(),
            figure.reading_ms,
            "ms",
            Goal::None,
        );
        // A lake of its own: the same events again would find their shard's position past them.
        let one_thread = tempfile::tempdir_in("/dev/shm")?;
        if let Some(figure) = lambda_figure(records, runs, one_thread.path(), Threads::One)? {
            table.add(
                "  the same, the batch step on one thread".to_owned(),
                figure.handler_ms,
                "ms",
                Goal::None,
            );
        }
    }
    let dir = tempfile::tempdir()?;
    if let Some(figure) = lambda_figure(records, runs, dir.path(), Threads::AsConfigured)? {
        table.add(
            format!(
                "  the same, lake in {} ({} files)",
                std::env::temp_dir().display(),
                figure.files
            ),
            figure.handler_ms,
            "ms",
            if in_memory.is_some() {
                Goal::None
            } else {
                Goal::AtMost(15.0)
            },
        );
    }
    Ok(())
}

/// The threads the handler's batch step may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// As a function instance configures itself: two where it has two cores.
    AsConfigured,
    /// One, as on a function with less than a core.
    One,
}

/// A 10,000-record Kinesis event (as the event source mapping delivers it, base64 and all) → a
/// local lake in `dir`, warm (after a first event of the same shard): the best of `runs` further
/// events, in milliseconds, and the files each wrote.
fn lambda_figure(
    records: &[StreamRecord],
    runs: usize,
    dir: &Path,
    threads: Threads,
) -> anyhow::Result<Option<LambdaFigure>> {
    const BATCH: usize = 10_000;
    if records.len() < (runs + 1) * BATCH {
        return Ok(None);
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
        serde_json::to_string(&serde_json::json!({ "Records": records }))
    };
    let kinesis = |payload: &str| match Invocation::from_json(payload)? {
        Invocation::Kinesis(event) => Ok(event),
        _ => bail!("the bench's payload is not read as a Kinesis event"),
    };
    let lake = LocalLake::new(dir);
    let mut config = FunctionConfig::parse_from([format!("--lake=file://{}", dir.display())])?;
    if threads == Threads::One {
        config.batch.parallel = false;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // One warm function instance: later events find the shard's state in memory.
    let warm = Checkpoints::default();
    let lineage = Unsplit;
    runtime.block_on(handle(
        kinesis(&event(&records[..BATCH], 0)?)?,
        &lake,
        &lineage,
        &config,
        &warm,
    ))?;
    let mut files = 0;
    let mut number = 0;
    let mut reading = Duration::MAX;
    let seconds = best_of(runs, || {
        number += 1;
        let payload = event(
            &records[number * BATCH..(number + 1) * BATCH],
            number * BATCH,
        )?;
        let read = Instant::now();
        let next = kinesis(&payload)?;
        reading = reading.min(read.elapsed());
        let started = Instant::now();
        let (response, report) = runtime.block_on(handle(next, &lake, &lineage, &config, &warm))?;
        let elapsed = started.elapsed();
        if !response.batch_item_failures.is_empty() || report.counts.accepted != BATCH as u64 {
            bail!("the Lambda handler did not accept the whole batch: {report:?}");
        }
        files = report.files;
        Ok(elapsed)
    })?;
    Ok(Some(LambdaFigure {
        handler_ms: seconds * 1000.0,
        reading_ms: reading.as_secs_f64() * 1000.0,
        files,
    }))
}

/// What [`lambda_figure`] measured: the best handler time, the best time to read the event's
/// JSON before it (the runtime hands the payload over as text), and the files of a batch.
struct LambdaFigure {
    handler_ms: f64,
    reading_ms: f64,
    files: u64,
}

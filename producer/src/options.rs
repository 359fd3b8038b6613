//! The producer's command line. Every flag can also come from an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sales_stream::StreamLocation;

use crate::batcher::DEFAULT_AGGREGATE_BYTES;
use crate::input::InputArgs;

/// Streams sales CSV exports into Kinesis or the embedded file:// stream, one event per row.
#[derive(Debug, Parser)]
#[command(name = "producer", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub send: SendOptions,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes synthetic Online-Retail-like CSV (to stdout, or --output).
    Generate(GenerateArgs),
}

/// `producer --input FILE --stream URL`
#[derive(Debug, Args)]
pub struct SendOptions {
    /// The CSV to stream (plain or gzip). Repeat it, or give a quoted glob
    /// (`--input 'exports/*.csv'`), to stream several files in one run, each its own source;
    /// `-` reads standard input (alone, with --source-id).
    #[arg(long, env = "PRODUCER_INPUT", value_name = "FILE")]
    pub input: Vec<PathBuf>,
    /// Where to send: kinesis://NAME or file://DIR.
    #[arg(long, env = "STREAM_URL", value_name = "URL")]
    pub stream: Option<StreamLocation>,
    /// Shards of a file:// stream created by this run (an existing stream keeps its own).
    #[arg(long, env = "PRODUCER_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Where rejected rows go [default: <input>.rejects.csv beside the input; for standard
    /// input, <source id>.rejects.csv in the current directory].
    #[arg(long, env = "PRODUCER_REJECTS", value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// What event ids are derived from [default: the input's file name and a digest of its
    /// bytes, so that the same file always sends the same ids and two files never share them].
    /// Required for standard input. The same rows under the same source id send the same ids,
    /// so the lake counts them once.
    #[arg(long, env = "PRODUCER_SOURCE_ID")]
    pub source_id: Option<String>,
    #[command(flatten)]
    pub read: InputArgs,
    /// Packs events into KPL aggregated records, per shard, so a shard carries up to its
    /// 1 MiB/s instead of 1,000 events/s. The consumer reads plain and aggregated records.
    #[arg(long, env = "PRODUCER_AGGREGATE")]
    pub aggregate: bool,
    /// Form of aggregated records: `none` (standard KPL records, which the KCL and AWS's
    /// de-aggregation libraries read); `zstd` (KPL records compressed: about five times fewer
    /// bytes, so five times the events per shard); or `compact` (the events as compressed
    /// columns, their ids derived from line numbers: about five times fewer bytes again). Only
    /// this project's consumer reads `zstd` and `compact`: choose them when it is the stream's
    /// only reader.
    #[arg(long, env = "PRODUCER_COMPRESSION", value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Uncompressed size at which an aggregated record is closed, in bytes (at most 1 MiB).
    #[arg(long, env = "PRODUCER_AGGREGATE_BYTES", default_value_t = DEFAULT_AGGREGATE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub aggregate_bytes: u64,
    /// Sends at most this many events per second.
    #[arg(long, env = "PRODUCER_RATE", value_name = "ROWS_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Stays under the write limits of this many shards (1,000 records and 1 MiB per second
    /// each), e.g. to leave room for other producers on the stream.
    #[arg(long, env = "PRODUCER_SHARD_LIMIT", value_name = "SHARDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_limit: Option<u32>,
    /// `PutRecords` requests in flight at once.
    #[arg(long, env = "PRODUCER_MAX_IN_FLIGHT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_in_flight: u32,
    /// Attempts of a request without progress before the run stops (with the row to resume at).
    #[arg(long, env = "PRODUCER_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// Skips the first N rows: resumes a run that stopped, with the N it printed. Event ids
    /// depend only on the source id and line, so rows sent twice are counted once.
    #[arg(
        long,
        env = "PRODUCER_SKIP_ROWS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub skip_rows: u64,
    /// Reads, validates and encodes everything, and sends nothing.
    #[arg(long, env = "PRODUCER_DRY_RUN")]
    pub dry_run: bool,
    /// Also writes the final summary as JSON to this file.
    #[arg(long, env = "PRODUCER_SUMMARY_JSON", value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

/// `producer generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Data lines to write.
    #[arg(long, env = "GENERATE_ROWS", default_value_t = 100_000)]
    pub rows: u64,
    /// The same seed always gives the same file.
    #[arg(long, env = "GENERATE_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Spreads the rows evenly over this many days from 2010-12-01 (default: the real data's
    /// pace, about 900 lines a day).
    #[arg(long, env = "GENERATE_DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: Option<u32>,
    /// Writes here instead of standard output.
    #[arg(long, env = "GENERATE_OUTPUT", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--compression`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    None,
    Compact,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "expected a positive number of rows per second, got {text:?}"
        )),
    }
}

//! The consumer's command line. Every flag can also come from an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use producer::input::InputArgs;
use sales_stream::{LakeLocation, SequenceNumber, StreamLocation};

use crate::aws::athena::{AthenaOptions, DEFAULT_DATABASE, DEFAULT_WORKGROUP};
use crate::commit::compact::Days;
use crate::core::batch::BatchOptions;
use crate::core::writer::Codec;

/// Consumes sales events into a Parquet lake, and queries the lake.
#[derive(Debug, Parser)]
#[command(name = "consumer", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reads every shard, writes sales_events, daily_sales and quarantine, commits positions.
    Poll(PollArgs),
    /// Rewrites days into one deduplicated file per table: one day, a range, or every day
    /// touched since the last `--touched` run.
    Compact(CompactArgs),
    /// Prints each shard's committed position, lag and record counts.
    Status(StatusArgs),
    /// Loads the country → region table into the lake (the shipped one, or --file), replacing
    /// the one there.
    Regions(RegionsArgs),
    /// Reads a range of the stream into the lake again (records given up on), dropping events
    /// already in the lake; committed positions stay where they are.
    Replay(ReplayArgs),
    /// Runs SQL over the lake's sales_events and daily_sales tables: locally for a file:// lake,
    /// on Athena for an s3:// lake.
    #[cfg(feature = "query")]
    Query(QueryArgs),
    /// Writes one country's daily sales over a range of days as a CSV (the answer of
    /// queries/daily_sales_by_country.sql): locally for a file:// lake, on Athena for s3://.
    #[cfg(feature = "query")]
    Report(ReportArgs),
    /// Reconciles the lake with the files streamed into it: recomputes every (sale_date,
    /// country, stock_code) total from the files and compares it with daily_sales; exits 1 on
    /// any difference.
    Verify(VerifyArgs),
}

/// The lake a command writes, and how: shared by every command that writes Parquet and by the
/// Lambda function (which reads it from the environment only).
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    /// The lake: s3://BUCKET/PREFIX, file://DIR or a path.
    #[arg(id = "lake", long = "lake", env = "LAKE_URL", value_name = "URL")]
    pub url: LakeLocation,
    /// Parquet compression.
    #[arg(long, env = "CONSUMER_COMPRESSION", value_enum, ignore_case = true, default_value_t = Compression::Zstd)]
    pub compression: Compression,
}

impl LakeArgs {
    /// How the batch step writes its files: on one thread (a command works on a batch per core
    /// already).
    pub fn batch(&self) -> BatchOptions {
        BatchOptions {
            codec: self.compression.into(),
            parallel: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// The stream: kinesis://NAME or file://DIR.
    #[arg(long, env = "STREAM_URL", value_name = "URL")]
    pub stream: StreamLocation,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Stop once every shard is caught up.
    #[arg(long, env = "CONSUMER_UNTIL_DRAINED")]
    pub until_drained: bool,
    /// Events per batch and shard, about: each read asks for as many records as hold that many
    /// events at the last batch's events per record (a plain record is one event, an aggregated
    /// or compact one hundreds to thousands; the first read of a shard is one record).
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Also writes the final summary as JSON to this file.
    #[arg(long, env = "CONSUMER_SUMMARY_JSON", value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("days").required(true).args(["day", "from", "touched"])
))]
pub struct CompactArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// The day to compact (the sale date), YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub day: Option<NaiveDate>,
    /// The first day of a range to compact (with --to; both included).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
    pub from: Option<NaiveDate>,
    /// The last day of the range.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
    pub to: Option<NaiveDate>,
    /// Every day some batch wrote since the last --touched run (what the schedule runs).
    #[arg(long)]
    pub touched: bool,
}

impl CompactArgs {
    /// The days the flags name (clap makes sure exactly one form is given).
    pub fn days(&self) -> Days {
        match (self.day, self.from, self.to) {
            (Some(day), _, _) => Days::One(day),
            (None, Some(from), Some(to)) => Days::Range { from, to },
            _ => Days::Touched,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("start")
        .required(true)
        .args(["from_timestamp", "from_sequence", "failure_message"])
))]
pub struct ReplayArgs {
    /// The stream: kinesis://NAME or file://DIR.
    #[arg(long, env = "STREAM_URL", value_name = "URL")]
    pub stream: StreamLocation,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Every shard, from the records that arrived at this time (RFC 3339: 2011-12-09T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from_timestamp: Option<DateTime<Utc>>,
    /// One shard, from this record: SHARD=SEQUENCE_NUMBER.
    #[arg(long, value_name = "SHARD=SEQ", value_parser = parse_shard_sequence)]
    pub from_sequence: Option<(String, SequenceNumber)>,
    /// Records that arrived after this time are left.
    #[arg(long, value_name = "TIME")]
    pub to_timestamp: Option<DateTime<Utc>>,
    /// With --from-sequence: records after this one are left.
    #[arg(long, value_name = "SEQ", requires = "from_sequence", value_parser = parse_sequence)]
    pub to_sequence: Option<SequenceNumber>,
    /// The range of a batch the Lambda's event source mapping gave up on: the body of the
    /// message in the failures queue, from a file (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub failure_message: Option<PathBuf>,
    /// Records per batch.
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Also writes the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

fn parse_sequence(text: &str) -> Result<SequenceNumber, String> {
    SequenceNumber::parse(text.trim()).ok_or_else(|| format!("{text:?} is not a sequence number"))
}

fn parse_shard_sequence(text: &str) -> Result<(String, SequenceNumber), String> {
    let (shard, sequence) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write SHARD=SEQUENCE_NUMBER"))?;
    Ok((shard.trim().to_owned(), parse_sequence(sequence)?))
}

#[derive(Debug, Args)]
pub struct RegionsArgs {
    /// The lake: s3://BUCKET/PREFIX, file://DIR or a path.
    #[arg(long, env = "LAKE_URL", value_name = "URL")]
    pub lake: LakeLocation,
    /// A CSV with the header country,region,sub_region (default: reference/regions.csv, built
    /// in).
    #[arg(long, env = "REGIONS_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The lake: s3://BUCKET/PREFIX, file://DIR or a path.
    #[arg(long, env = "LAKE_URL", value_name = "URL")]
    pub lake: LakeLocation,
    /// Also reads the stream (kinesis://NAME or file://DIR) to tell each shard's lag.
    #[arg(long, env = "STREAM_URL", value_name = "URL")]
    pub stream: Option<StreamLocation>,
    /// Prints JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "query")]
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The lake: file://DIR or a path (queried here), or s3://BUCKET/PREFIX (queried on Athena).
    #[arg(long, env = "LAKE_URL", value_name = "URL")]
    pub lake: LakeLocation,
    /// The SQL to run (or --file).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,
    /// Reads the SQL from a file, such as one in queries/.
    #[arg(long, env = "QUERY_FILE")]
    pub file: Option<PathBuf>,
    /// A value for the next `?` in the SQL, bound as a string literal.
    #[arg(long = "param", value_name = "VALUE")]
    pub params: Vec<String>,
    /// How to print the result.
    #[arg(long, env = "QUERY_FORMAT", value_enum, default_value_t = crate::commands::query::OutputFormat::Table)]
    pub format: crate::commands::query::OutputFormat,
    #[command(flatten)]
    pub athena: AthenaArgs,
}

/// Where an S3 lake is queried: shared by `query`, `report` and the Lambda function.
#[derive(Debug, Clone, Args)]
pub struct AthenaArgs {
    /// Athena: the workgroup, which holds the results location (`make deploy` prints it).
    #[arg(long, env = "ATHENA_WORKGROUP", default_value = DEFAULT_WORKGROUP, value_parser = NonEmptyStringValueParser::new())]
    pub workgroup: String,
    /// Athena: the Glue database with the lake's tables (`make deploy` prints it).
    #[arg(long, env = "ATHENA_DATABASE", default_value = DEFAULT_DATABASE, value_parser = NonEmptyStringValueParser::new())]
    pub database: String,
    /// Athena: how long to wait for the query before stopping it (90s, 10m, 1h).
    #[arg(long, env = "QUERY_TIMEOUT", default_value = "30m", value_parser = parse_age)]
    pub timeout: Duration,
}

impl AthenaArgs {
    pub fn options(&self) -> AthenaOptions {
        AthenaOptions {
            workgroup: self.workgroup.clone(),
            database: self.database.clone(),
            timeout: self.timeout,
        }
    }
}

/// `consumer report`
#[cfg(feature = "query")]
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The lake: file://DIR or a path (queried here), or s3://BUCKET/PREFIX (queried on Athena).
    #[arg(long, env = "LAKE_URL", value_name = "URL")]
    pub lake: LakeLocation,
    /// The country, as the sales name it (United Kingdom, EIRE, ...).
    #[arg(long, env = "REPORT_COUNTRY")]
    pub country: String,
    /// The first day of the report, YYYY-MM-DD (included).
    #[arg(long, env = "REPORT_FROM", value_name = "YYYY-MM-DD")]
    pub from: NaiveDate,
    /// The last day of the report, YYYY-MM-DD (included).
    #[arg(long, env = "REPORT_TO", value_name = "YYYY-MM-DD")]
    pub to: NaiveDate,
    /// Where the CSV goes: a file, or s3://BUCKET/KEY [default: standard output].
    #[arg(long, env = "REPORT_OUTPUT", value_name = "FILE|s3://BUCKET/KEY")]
    pub output: Option<String>,
    #[command(flatten)]
    pub athena: AthenaArgs,
}

/// `consumer verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The lake: s3://BUCKET/PREFIX, file://DIR or a path.
    #[arg(long, env = "LAKE_URL", value_name = "URL")]
    pub lake: LakeLocation,
    /// Every CSV file streamed into the lake (repeat it, or give a quoted glob), read as the
    /// producer read it: give the reading flags the producer was given.
    #[arg(long, env = "VERIFY_INPUT", value_name = "FILE", required = true)]
    pub input: Vec<PathBuf>,
    /// The --source-id the producer was given for the one input (its event ids derive from it);
    /// `-` as the input then reads standard input.
    #[arg(long, env = "PRODUCER_SOURCE_ID")]
    pub source_id: Option<String>,
    #[command(flatten)]
    pub read: InputArgs,
    /// How many differing cells to print (all are counted).
    #[arg(long, env = "VERIFY_SHOW", default_value_t = 10, value_name = "N")]
    pub show: usize,
}

/// A duration such as `90s`, `30m`, `2h` or `1d`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e}; write it as 90s, 30m, 2h"))
}

/// `--compression`: the Parquet codec of the files a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// Smaller files.
    Zstd,
    /// Faster to write and read.
    Snappy,
}

impl From<Compression> for Codec {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::Zstd => Self::Zstd,
            Compression::Snappy => Self::Snappy,
        }
    }
}

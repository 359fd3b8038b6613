//! The producer's command line. Every flag can also come from an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sales_stream::StreamLocation;

use crate::columns::ColumnOverride;

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
    /// The CSV to stream; `-` reads standard input.
    #[arg(long, env = "PRODUCER_INPUT", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where to send: kinesis://NAME or file://DIR.
    #[arg(long, env = "STREAM_URL", value_name = "URL")]
    pub stream: Option<StreamLocation>,
    /// Shards of a file:// stream created by this run (an existing stream keeps its own).
    #[arg(long, env = "PRODUCER_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,
    /// Where rejected rows go [default: <input name>.rejects.csv in the current directory].
    #[arg(long, env = "PRODUCER_REJECTS", value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// The name event ids are derived from [default: the input's file name]. Re-sending the same
    /// rows under the same source id sends the same ids, so the lake counts them once.
    #[arg(long, env = "PRODUCER_SOURCE_ID")]
    pub source_id: Option<String>,
    /// Field delimiter [default: detected from the header: `,`, `;` or tab].
    #[arg(long, env = "PRODUCER_DELIMITER", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// strftime format of InvoiceDate [default: detected per row, month first].
    #[arg(long, env = "PRODUCER_DATE_FORMAT")]
    pub date_format: Option<String>,
    /// Columns of other layouts, as FIELD=HEADER (fields: invoice_no, stock_code, description,
    /// quantity, invoice_date, unit_price, customer_id, country).
    #[arg(long, env = "PRODUCER_COLUMNS", value_delimiter = ',')]
    pub columns: Vec<ColumnOverride>,
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
    /// Writes here instead of standard output.
    #[arg(long, env = "GENERATE_OUTPUT", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!(
            "expected one ASCII character or `tab`, got {text:?}"
        )),
    }
}

//! The producer's commands, from parsed options to a printed summary.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use sales_stream::{LocalStream, StreamLocation};

use crate::columns::ColumnMap;
use crate::dates::DateParser;
use crate::generate::{GenerateOptions, generate};
use crate::options::{Cli, Command, GenerateArgs, SendOptions};
use crate::progress::Progress;
use crate::reader::CsvReader;
use crate::rejects::RejectsFile;
use crate::row::RowParser;
use crate::send::{Summary, send_csv};
use crate::sink::DryRun;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Generate(args)) => generate_command(&args),
        None => send_command(cli.send),
    }
}

fn generate_command(args: &GenerateArgs) -> anyhow::Result<()> {
    let options = GenerateOptions {
        rows: args.rows,
        seed: args.seed,
        ..GenerateOptions::default()
    };
    match &args.output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let rows = generate(&options, BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(rows, seed = args.seed, path = %path.display(), "generated");
        }
        None => {
            let stdout = io::stdout().lock();
            generate(&options, BufWriter::new(stdout)).context("writing to standard output")?;
        }
    }
    Ok(())
}

fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        bail!("input {} is a directory, not a CSV file", path.display());
    }
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

fn send_command(options: SendOptions) -> anyhow::Result<()> {
    let Some(input) = options.input else {
        bail!("--input is required: a CSV file, or - for standard input (see producer --help)");
    };
    let reader = CsvReader::new(open_input(&input)?, options.delimiter)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let columns = ColumnMap::from_header(reader.header(), &options.columns)?;
    let source_id = options
        .source_id
        .unwrap_or_else(|| match input.file_name() {
            Some(name) if input.as_os_str() != "-" => name.to_string_lossy().into_owned(),
            _ => "stdin".to_owned(),
        });
    let parser = RowParser::new(
        columns,
        DateParser::new(options.date_format),
        source_id.clone(),
    );
    let mut rejects = RejectsFile::new(
        options
            .rejects
            .unwrap_or_else(|| format!("{source_id}.rejects.csv").into()),
    );
    let mut progress = Progress::new(true);
    let destination = match &options.stream {
        Some(stream) if !options.dry_run => stream.to_string(),
        _ => "nowhere (dry run)".to_owned(),
    };
    let summary = match (options.dry_run, options.stream) {
        (true, _) => send_csv(reader, &parser, &mut DryRun, &mut rejects, &mut progress)?,
        (false, Some(StreamLocation::Local { dir })) => {
            let mut stream = LocalStream::open_or_create(&dir, options.shards)?;
            send_csv(reader, &parser, &mut stream, &mut rejects, &mut progress)?
        }
        (false, Some(StreamLocation::Kinesis { name })) => {
            bail!(
                "kinesis://{name}: this build streams to file:// only; Kinesis support comes next"
            )
        }
        (false, None) => {
            bail!(
                "--stream is required: kinesis://NAME or file://DIR (or --dry-run to send nothing)"
            )
        }
    };
    print_summary(&input, &destination, &summary, &rejects)?;
    if let Some(path) = options.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("encoding the summary")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_summary(
    input: &Path,
    destination: &str,
    summary: &Summary,
    rejects: &RejectsFile,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} -> {destination}: {} rows read = {} events sent + {} rejected + {} blank",
        input.display(),
        summary.rows_read,
        summary.events_sent,
        summary.rejected,
        summary.blank
    )?;
    writeln!(
        out,
        "  {} records, {} bytes ({:.0} B/event), {:.2} s, {:.0} rows/s",
        summary.records,
        summary.bytes,
        summary.bytes as f64 / summary.events_sent.max(1) as f64,
        summary.elapsed_s,
        summary.rows_per_s()
    )?;
    if rejects.count() > 0 {
        writeln!(out, "  rejected rows: {}", rejects.path().display())?;
    }
    Ok(())
}

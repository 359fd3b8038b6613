//! The producer's commands, from parsed options to a printed summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::ValueEnum;
use local_stream::{LocalStream, LocalStreamError};
use sales_stream::{Compression, HashKeyRange, StreamLocation};

use crate::batcher::Packing;
use crate::columns::ColumnMap;
use crate::generate::{GenerateOptions, generate};
use crate::input::{
    DateOrigin, OpenedInput, REJECTS_SUFFIX, input_paths, lines_of, open_reader, open_rows,
};
use crate::kinesis::KinesisSink;
use crate::options::{Cli, Command, CompressionArg, GenerateArgs, SendOptions};
use crate::progress::Progress;
use crate::rejects::RejectsFile;
use crate::retry::RetryPolicy;
use crate::send::{self, Summary, send_csv};
use crate::sink::{DryRun, RecordSink};
use crate::source::Source;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Generate(args)) => generate_command(&args).map(|()| ExitCode::SUCCESS),
        None => send_command(cli.send).await,
    }
}

fn generate_command(args: &GenerateArgs) -> anyhow::Result<()> {
    let options = GenerateOptions {
        rows: args.rows,
        seed: args.seed,
        days: args.days,
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

async fn send_command(options: SendOptions) -> anyhow::Result<ExitCode> {
    if options.compression != CompressionArg::None && !options.aggregate {
        let form = options.compression.to_possible_value();
        bail!(
            "--compression {} is a form of aggregated records: add --aggregate",
            form.as_ref().map_or("", |v| v.get_name())
        );
    }
    let inputs = input_paths(&options.input)?;
    if inputs.len() > 1 {
        for (flag, given) in [
            ("--source-id", options.source_id.is_some()),
            ("--rejects", options.rejects.is_some()),
            ("--skip-rows", options.skip_rows > 0),
        ] {
            if given {
                bail!(
                    "{flag} applies to one input, and {} were given: run that input alone",
                    inputs.len()
                );
            }
        }
    }
    // Every file's header is checked before anything is sent: a wrong file stops the run at
    // once. (Standard input is read once, when it is sent.)
    for input in inputs.iter().filter(|input| input.as_os_str() != "-") {
        let reader = open_reader(input, &options.read)?;
        ColumnMap::from_header(reader.header(), &options.read.columns)
            .with_context(|| format!("{}", input.display()))?;
    }
    let mut send = send::SendOptions {
        retry: RetryPolicy {
            max_attempts: options.max_attempts,
            ..RetryPolicy::default()
        },
        max_in_flight: options.max_in_flight as usize,
        rows_per_s: options.rate,
        shard_limit: options.shard_limit,
        skip_rows: options.skip_rows,
        ..send::SendOptions::default()
    };
    let packing = |shards: Vec<HashKeyRange>| {
        let target_bytes = options.aggregate_bytes as usize;
        let kpl = |compression| Packing::Aggregated {
            shards: shards.clone(),
            target_bytes,
            compression,
        };
        match (options.aggregate, options.compression) {
            (false, _) => Packing::Plain,
            (true, CompressionArg::None) => kpl(Compression::None),
            (true, CompressionArg::Zstd) => kpl(Compression::Zstd),
            (true, CompressionArg::Compact) => Packing::Compact {
                shards,
                target_bytes,
            },
        }
    };
    let (destination, sent) = match (options.dry_run, &options.stream) {
        (true, stream) => {
            // A dry run packs as a stream of --shards shards would (or the named local one).
            let shards = match stream {
                Some(StreamLocation::Local { dir }) => match LocalStream::open(dir) {
                    Ok(existing) => existing.hash_key_ranges(),
                    Err(LocalStreamError::NotFound(_)) => {
                        HashKeyRange::split_evenly(options.shards)
                    }
                    Err(e) => return Err(e.into()),
                },
                _ => HashKeyRange::split_evenly(options.shards),
            };
            send.packing = packing(shards);
            let sent = send_all(&inputs, &options, Arc::new(DryRun), &send).await;
            ("nothing (dry run)".to_owned(), sent)
        }
        (false, Some(StreamLocation::Local { dir })) => {
            let stream = LocalStream::open_or_create(dir, options.shards)?;
            send.packing = packing(stream.hash_key_ranges());
            let sent = send_all(&inputs, &options, Arc::new(stream), &send).await;
            (format!("file://{}", dir.display()), sent)
        }
        (false, Some(StreamLocation::Kinesis { name })) => {
            let (sink, shards) = KinesisSink::connect(name).await?;
            send.packing = packing(shards);
            let sent = send_all(&inputs, &options, Arc::new(sink), &send).await;
            (format!("kinesis://{name}"), sent)
        }
        (false, None) => {
            bail!(
                "--stream is required: kinesis://NAME or file://DIR (or --dry-run to send nothing)"
            )
        }
    };
    let sent = sent?;
    for input in &sent {
        print_summary(
            &input.path,
            &destination,
            &input.summary,
            &input.rejects,
            &input.dates,
        )?;
    }
    let summary = total(&sent);
    if sent.len() > 1 {
        writeln!(
            io::stdout().lock(),
            "{} inputs -> {destination}: {} rows read = {} events sent + {} rejected + {} blank, \
             {:.2} s, {:.0} rows/s",
            sent.len(),
            summary.rows_read,
            summary.events_sent,
            summary.rejected,
            summary.blank,
            summary.elapsed_s,
            summary.rows_per_s()
        )?;
    }
    if let Some(path) = options.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("encoding the summary")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(last) = sent.last().filter(|last| last.summary.interrupted) {
        let unsent = inputs.len() - sent.len();
        eprintln!(
            "interrupted: rows 1 to {0} of {1} are settled; resume with --input {1} \
             --skip-rows {0}{2}",
            last.summary.resume_after,
            last.path.display(),
            if unsent > 0 {
                format!(", then send the {unsent} inputs after it")
            } else {
                String::new()
            }
        );
        // 128 + SIGINT, as shells report a command stopped by Ctrl-C.
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// What one input sent.
struct Sent {
    path: PathBuf,
    summary: Summary,
    rejects: RejectsFile,
    dates: DateOrigin,
}

/// Sends each input in turn into `sink`; stops after an input that was interrupted.
async fn send_all<S: RecordSink>(
    inputs: &[PathBuf],
    options: &SendOptions,
    sink: Arc<S>,
    send: &send::SendOptions,
) -> anyhow::Result<Vec<Sent>> {
    let mut sent = Vec::with_capacity(inputs.len());
    for input in inputs {
        let OpenedInput {
            reader,
            parser,
            dates,
        } = open_rows(input, &options.read, options.source_id.as_deref())?;
        let rejects = RejectsFile::new(
            options
                .rejects
                .clone()
                .unwrap_or_else(|| default_rejects(input, parser.source())),
        );
        let progress = Progress::new(true);
        let ids = parser.ids().clone();
        let hashed = send.packing.routes_by_hash_key();
        let lines = lines_of(input, reader, ids, hashed, send.skip_rows)?;
        let (summary, rejects) = send_csv(lines, parser, sink.clone(), rejects, send, progress)
            .await
            .with_context(|| match sent.len() {
                0 => format!("sending {}", input.display()),
                n => format!(
                    "sending {} (the {n} inputs before it were sent in full; send it and the \
                     ones after it again)",
                    input.display()
                ),
            })?;
        let interrupted = summary.interrupted;
        sent.push(Sent {
            path: input.clone(),
            summary,
            rejects,
            dates,
        });
        if interrupted {
            break;
        }
    }
    Ok(sent)
}

/// The summaries of several inputs as one.
fn total(sent: &[Sent]) -> Summary {
    let mut total = Summary::default();
    for Sent { summary, .. } in sent {
        total.rows_read += summary.rows_read;
        total.rows_skipped += summary.rows_skipped;
        total.events_sent += summary.events_sent;
        total.rejected += summary.rejected;
        total.blank += summary.blank;
        total.records += summary.records;
        total.bytes += summary.bytes;
        total.retries += summary.retries;
        total.records_resent += summary.records_resent;
        total.elapsed_s += summary.elapsed_s;
        total.resume_after = summary.resume_after;
        total.interrupted |= summary.interrupted;
    }
    total
}

/// Where rejected rows go unless `--rejects` says: beside the input (`<input>.rejects.csv`), or
/// for standard input, `<source id>.rejects.csv` in the working directory.
fn default_rejects(input: &Path, source: &Source) -> PathBuf {
    if input.as_os_str() == "-" {
        return format!("{}{REJECTS_SUFFIX}", source.name).into();
    }
    let mut path = input.as_os_str().to_owned();
    path.push(REJECTS_SUFFIX);
    path.into()
}

fn print_summary(
    input: &Path,
    destination: &str,
    summary: &Summary,
    rejects: &RejectsFile,
    dates: &DateOrigin,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    // Only an interrupted run leaves events unsent; they lie after the resume point.
    let unsent = summary
        .rows_read
        .saturating_sub(summary.events_sent + summary.rejected + summary.blank);
    write!(
        out,
        "{} -> {destination}: {} rows read = {} events sent + {} rejected + {} blank",
        input.display(),
        summary.rows_read,
        summary.events_sent,
        summary.rejected,
        summary.blank
    )?;
    if unsent > 0 {
        write!(out, " + {unsent} not sent")?;
    }
    if summary.rows_skipped > 0 {
        write!(out, " (after {} rows skipped)", summary.rows_skipped)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "  {} records, {} bytes ({:.1} B/event), {} retries ({} records resent), {:.2} s, {:.0} rows/s",
        summary.records,
        summary.bytes,
        summary.bytes as f64 / summary.events_sent.max(1) as f64,
        summary.retries,
        summary.records_resent,
        summary.elapsed_s,
        summary.rows_per_s()
    )?;
    writeln!(out, "  dates read {dates}")?;
    if rejects.count() > 0 {
        writeln!(out, "  rejected rows: {}", rejects.path().display())?;
    }
    Ok(())
}

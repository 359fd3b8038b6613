//! The consumer's commands, from parsed options to printed results.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use local_stream::LocalStream;
use sales_stream::StreamLocation;

use crate::aws::kinesis::KinesisSource;
#[cfg(feature = "query")]
use crate::aws::s3::S3Lake;
#[cfg(feature = "query")]
use crate::commands::options::ReportArgs;
use crate::commands::options::{
    Cli, Command, CompactArgs, PollArgs, RegionsArgs, ReplayArgs, StatusArgs, VerifyArgs,
};
use crate::commands::poll::{PollOptions, PollSummary, poll};
use crate::commands::regions::{ensure_regions, load_regions};
use crate::commands::replay::{ReplayRange, ReplayStart, replay};
use crate::commands::status::Status;
use crate::commands::store::LakeStore;
use crate::commands::verify::{Reconciliation, TableCheck, verify};
use crate::commit::compact::{CompactReport, Days, compact};
use crate::commit::state::read_shard_states;
use crate::core::aggregate::Totals;
use crate::core::layout::regions_file;
use crate::core::regions::Regions;
#[cfg(feature = "query")]
use crate::lake::Lake;
use crate::progress::Progress;
use crate::stream::ShardSource;
#[cfg(feature = "query")]
use arrow::array::RecordBatch;

/// `println!` that returns the error instead of panicking when standard output is closed
/// (`consumer query ... | head`): `main` then ends quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Poll(args) => poll_command(args).await,
        Command::Compact(args) => compact_command(args).await,
        Command::Status(args) => status_command(args).await,
        Command::Regions(args) => regions_command(args).await,
        Command::Replay(args) => replay_command(args).await,
        #[cfg(feature = "query")]
        Command::Query(args) => query_command(args).await,
        #[cfg(feature = "query")]
        Command::Report(args) => report_command(args).await,
        Command::Verify(args) => verify_command(args).await,
    }
}

async fn verify_command(args: VerifyArgs) -> anyhow::Result<()> {
    let lake = open_lake(&args.lake).await?;
    let reconciliation = verify(&lake, &args.input, args.source_id.as_deref(), &args.read)
        .await
        .with_context(|| format!("verifying {}", args.lake))?;
    let Reconciliation {
        rows,
        daily,
        customers,
    } = &reconciliation;
    outln!(
        "source: {} rows read = {} events + {} rejected + {} blank ({} events repeated, counted once)",
        rows.rows_read,
        rows.events,
        rows.rejected,
        rows.blank,
        rows.duplicates
    )?;
    print_check(
        &args,
        "daily_sales",
        "(sale_date, country, stock_code)",
        daily,
        |k| format!("{} {} {}", k.sale_date, k.country, k.stock_code),
    )?;
    print_check(
        &args,
        "customer_sales",
        "(sale_date, customer_id, country, invoice_no)",
        customers,
        |k| {
            format!(
                "{} {} {} {}",
                k.sale_date,
                if k.customer_id.is_empty() {
                    "(no customer)"
                } else {
                    &k.customer_id
                },
                k.country,
                k.invoice_no
            )
        },
    )?;
    if !reconciliation.matches() {
        anyhow::bail!(
            "{} of {} daily_sales cells and {} of {} customer_sales cells differ between the lake \
             and the source files",
            daily.differences.len(),
            daily.cells,
            customers.differences.len(),
            customers.cells
        );
    }
    Ok(())
}

/// One table's line of `verify`, then its first differing cells.
fn print_check<K>(
    args: &VerifyArgs,
    table: &str,
    key: &str,
    check: &TableCheck<K>,
    describe: impl Fn(&K) -> String,
) -> anyhow::Result<()> {
    outln!(
        "{}: {} {table} files; {} cells {key} checked, {} differ",
        args.lake,
        check.files,
        check.cells,
        check.differences.len()
    )?;
    for difference in check.differences.iter().take(args.show) {
        outln!(
            "  {}: source {}, lake {}",
            describe(&difference.key),
            describe_totals(difference.source.as_ref()),
            describe_totals(difference.lake.as_ref())
        )?;
    }
    if check.differences.len() > args.show {
        outln!("  ... and {} more", check.differences.len() - args.show)?;
    }
    Ok(())
}

/// A cell's sums as `verify` prints them.
fn describe_totals(totals: Option<&Totals>) -> String {
    match totals {
        None => "no row".to_owned(),
        Some(t) => format!(
            "{} lines, {} units, {} net revenue",
            t.order_lines,
            t.net_quantity,
            rust_decimal::Decimal::from_i128_with_scale(t.net_revenue, 3)
        ),
    }
}

#[cfg(feature = "query")]
async fn report_command(args: ReportArgs) -> anyhow::Result<()> {
    use sales_stream::LakeLocation;

    use crate::aws::athena::Athena;
    use crate::commands::output::to_csv;
    use crate::commands::report::{ReportRequest, run_locally, run_on_athena};

    let request = ReportRequest::new(&args.country, args.from, args.to)?;
    let batches = match &args.lake {
        LakeLocation::Local { dir } => run_locally(dir, &request).await?,
        LakeLocation::S3 { .. } => {
            let athena = Athena::connect(args.athena.options()).await?;
            run_on_athena(&athena, &request).await?
        }
    };
    let csv = to_csv(&batches)?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    match args.output.as_deref() {
        None | Some("-") => std::io::stdout().lock().write_all(&csv)?,
        Some(url) if url.starts_with("s3://") => {
            let Ok(LakeLocation::S3 { bucket, prefix }) = url.parse::<LakeLocation>() else {
                anyhow::bail!("--output {url}: write s3://BUCKET/KEY");
            };
            if prefix.is_empty() {
                anyhow::bail!("--output {url}: name the object, s3://BUCKET/KEY");
            }
            S3Lake::connect(&bucket, "")
                .await?
                .put(&prefix, csv)
                .await
                .with_context(|| format!("writing {url}"))?;
            eprintln!("{rows} days of {} written to {url}", request.country);
        }
        Some(path) => {
            std::fs::write(path, &csv).with_context(|| format!("writing {path}"))?;
            eprintln!("{rows} days of {} written to {path}", request.country);
        }
    }
    Ok(())
}

async fn regions_command(args: RegionsArgs) -> anyhow::Result<()> {
    let regions = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Regions::parse(&text).with_context(|| format!("{}", path.display()))?
        }
        None => Regions::default_table(),
    };
    let lake = open_lake(&args.lake).await?;
    load_regions(&lake, &regions)
        .await
        .with_context(|| format!("writing the regions table of {}", args.lake))?;
    outln!(
        "{} countries written to {}/{}",
        regions.len(),
        args.lake,
        regions_file()
    )?;
    Ok(())
}

async fn poll_command(args: PollArgs) -> anyhow::Result<()> {
    let lake = Arc::new(open_lake(&args.lake.url).await?);
    // The region queries join this table: a new lake gets the shipped one.
    if ensure_regions(lake.as_ref())
        .await
        .with_context(|| format!("writing the regions table of {}", args.lake.url))?
    {
        tracing::info!(lake = %args.lake.url, "wrote the shipped regions table");
    }
    let summary = match &args.stream {
        StreamLocation::Local { dir } => {
            let stream = Arc::new(LocalStream::open(dir)?);
            run_poll(stream, lake, &args).await?
        }
        StreamLocation::Kinesis { name } => {
            let stream = Arc::new(KinesisSource::connect(name).await?);
            run_poll(stream, lake, &args).await?
        }
    };
    let c = &summary.counts;
    outln!(
        "{} -> {}: {} records = {} accepted + {} duplicates + {} quarantined",
        args.stream,
        args.lake.url,
        c.received,
        c.accepted,
        c.duplicates,
        c.quarantined
    )?;
    outln!(
        "  {} shards, {} batches, {} files, {} bytes, {} conflicts, {:.2} s, {:.0} records/s",
        summary.shards,
        summary.batches,
        summary.files,
        summary.bytes,
        summary.conflicts,
        summary.elapsed_s,
        c.received as f64 / summary.elapsed_s.max(1e-9)
    )?;
    if let Some(path) = args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("encoding the summary")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn open_lake(location: &sales_stream::LakeLocation) -> anyhow::Result<LakeStore> {
    LakeStore::open(location)
        .await
        .with_context(|| format!("cannot open the lake {location}"))
}

async fn compact_command(args: CompactArgs) -> anyhow::Result<()> {
    let lake = open_lake(&args.lake.url).await?;
    let days = args.days();
    let progress = Progress::new("days");
    let reports = compact(&lake, &days, args.lake.compression.into(), &progress)
        .await
        .with_context(|| format!("compacting {} of {}", describe(&days), args.lake.url))?;
    progress.finish();
    if reports.is_empty() {
        outln!("no day to compact")?;
    }
    for report in reports {
        outln!("{}", compact_line(&report))?;
    }
    Ok(())
}

fn describe(days: &Days) -> String {
    match days {
        Days::One(day) => day.to_string(),
        Days::Range { from, to } => format!("{from} to {to}"),
        Days::Touched => "the days touched since the last run".to_owned(),
    }
}

/// One line per compacted day.
fn compact_line(report: &CompactReport) -> String {
    let day = report.day.map(|d| d.to_string()).unwrap_or_default();
    if report.superseded {
        return format!("{day}: another compaction took this day over; left to it");
    }
    if report.already_compacted {
        return format!("{day}: already one file per table");
    }
    if report.files_in == 0 {
        return format!("{day}: no files to compact");
    }
    let mut line = format!(
        "{day}: {} files -> {}; {} events -> {} ({} duplicates dropped), {} daily_sales rows",
        report.files_in,
        report.files_out,
        report.events_in,
        report.events_out,
        report.duplicates,
        report.daily_rows,
    );
    if report.resumed {
        line.push_str("; finished or took over a stopped compaction first");
    }
    if report.in_flight > 0 {
        line.push_str(&format!(
            "; {} files of batches in flight left alone",
            report.in_flight
        ));
    }
    line
}

async fn replay_command(args: ReplayArgs) -> anyhow::Result<()> {
    let range = replay_range(&args)?;
    let lake = open_lake(&args.lake.url).await?;
    let options = args.lake.batch();
    let batch_size = args.batch_size as usize;
    let progress = Progress::new("records");
    let summary = match &args.stream {
        StreamLocation::Local { dir } => {
            let source = LocalStream::open(dir)?;
            replay(&source, &lake, &range, batch_size, &options, &progress).await?
        }
        StreamLocation::Kinesis { name } => {
            let source = KinesisSource::connect(name).await?;
            replay(&source, &lake, &range, batch_size, &options, &progress).await?
        }
    };
    progress.finish();
    let c = &summary.counts;
    outln!(
        "{} -> {}: {} shards replayed, {} records: {} events missing from the lake written, {} \
         already there, {} quarantined; {} files",
        args.stream,
        args.lake.url,
        summary.shards,
        c.records,
        c.accepted,
        c.duplicates,
        c.quarantined,
        summary.files
    )?;
    if !summary.not_started.is_empty() {
        outln!(
            "  nothing committed yet on {} (`consumer poll` reads them from their start)",
            summary.not_started.join(", ")
        )?;
    }
    if let Some(path) = args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("encoding the summary")?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The range the flags name: a timestamp, a shard's sequence number, or a failures-queue
/// message (whose stream must be the one given).
fn replay_range(args: &ReplayArgs) -> anyhow::Result<ReplayRange> {
    if let Some(path) = &args.failure_message {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the message from stdin")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        };
        let (range, stream) = ReplayRange::from_failure_message(&text)?;
        if let (Some(stream), StreamLocation::Kinesis { name }) = (&stream, &args.stream)
            && stream != name
        {
            anyhow::bail!("the message is about stream {stream}, not {name}");
        }
        return Ok(range);
    }
    let start = match (&args.from_timestamp, &args.from_sequence) {
        (Some(time), _) => ReplayStart::Timestamp(*time),
        (None, Some((shard_id, sequence))) => ReplayStart::Sequence {
            shard_id: shard_id.clone(),
            sequence: sequence.clone(),
        },
        (None, None) => {
            anyhow::bail!("give --from-timestamp, --from-sequence or --failure-message")
        }
    };
    Ok(ReplayRange {
        start,
        to_timestamp: args.to_timestamp,
        to_sequence: args.to_sequence.clone(),
    })
}

async fn status_command(args: StatusArgs) -> anyhow::Result<()> {
    let lake = open_lake(&args.lake).await?;
    let (states, unreadable) = read_shard_states(&lake)
        .await
        .with_context(|| format!("reading the commit state of {}", args.lake))?;
    let now = chrono::Utc::now();
    let mut status = Status::new(states, now);
    status.add_unreadable(unreadable);
    match &args.stream {
        None => {}
        Some(StreamLocation::Local { dir }) => {
            status.measure_lag(&LocalStream::open(dir)?, now).await?;
        }
        Some(StreamLocation::Kinesis { name }) => {
            status
                .measure_lag(&KinesisSource::connect(name).await?, now)
                .await?;
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        write!(std::io::stdout().lock(), "{}", status.to_table())?;
    }
    Ok(())
}

async fn run_poll<S: ShardSource>(
    stream: Arc<S>,
    lake: Arc<LakeStore>,
    args: &PollArgs,
) -> anyhow::Result<PollSummary> {
    let options = PollOptions {
        batch_size: args.batch_size as usize,
        until_drained: args.until_drained,
        batch: args.lake.batch(),
        progress: Arc::new(Progress::new("records")),
        ..PollOptions::default()
    };
    let progress = options.progress.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("stopping after the batches in flight");
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let summary = poll(stream, lake, options, stop).await;
    progress.finish();
    Ok(summary?)
}

#[cfg(feature = "query")]
async fn query_command(args: crate::commands::options::QueryArgs) -> anyhow::Result<()> {
    use sales_stream::LakeLocation;

    use crate::aws::athena::Athena;
    use crate::commands::query::{format_batches, run_query};
    use crate::core::sql::{bind_parameters, execution_parameters};

    let sql = match (&args.sql, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => anyhow::bail!("give the SQL, or --file"),
    };
    let batches = match &args.lake {
        LakeLocation::Local { dir } => {
            run_query(dir, &bind_parameters(&sql, &args.params)?).await?
        }
        LakeLocation::S3 { .. } => {
            // The tables are the Glue database's, which `make deploy` points at this lake.
            let parameters = execution_parameters(&sql, &args.params)?;
            let athena = Athena::connect(args.athena.options()).await?;
            let (batches, statistics) = athena.run(&sql, parameters).await?;
            eprintln!(
                "Athena execution {}: {} scanned, {} ms in the engine",
                statistics.execution_id,
                indicatif::HumanBytes(
                    u64::try_from(statistics.data_scanned_bytes).unwrap_or_default()
                ),
                statistics.engine_time_ms
            );
            batches
        }
    };
    let text = format_batches(&batches, args.format)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end())?;
    Ok(())
}

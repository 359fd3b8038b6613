//! The consumer as an AWS Lambda function on a Kinesis event source mapping (custom runtime
//! `provided.al2023`). Configuration comes from the environment, read once at cold start:
//! `LAKE_URL` (required), `CONSUMER_COMPRESSION`, `METRICS_NAMESPACE`, and for reports
//! `ATHENA_WORKGROUP`, `ATHENA_DATABASE` and `REPORT_TOPIC_ARN`.
//!
//! The same function compacts days when invoked by an EventBridge schedule (every day a batch
//! touched since the last scheduled run) or with `{"action": "compact", "day": "YYYY-MM-DD"}`
//! (or `"from"` and `"to"`), and writes a report with `{"action": "report", "country": …,
//! "from": …, "to": …}`: Athena answers queries/daily_sales_by_country.sql, the CSV goes under
//! `{lake}/reports/`, and its location to the SNS topic `REPORT_TOPIC_ARN`.

use consumer::aws::athena::Athena;
use consumer::aws::kinesis::KinesisLineage;
use consumer::aws::mapping::check_mappings;
use consumer::aws::sns::SnsTopic;
use consumer::commands::report::run_on_athena;
use consumer::commands::store::LakeStore;
use consumer::commit::compact::compact;
use consumer::function::metrics::emf_line;
use consumer::function::report::{ReportActionError, publish_report};
use consumer::function::{Checkpoints, FunctionConfig, Invocation, handle};
use consumer::progress::Progress;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use tokio::sync::OnceCell;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: a warm 10,000-record invocation spent a fifth of its time
/// in glibc's `free` (each event record's strings, the batch's columns), and took 26.5 ms in
/// `make bench` against 16.9 ms on mimalloc. A function's memory is sized for speed (1024 MB by
/// default), so the larger heap mimalloc keeps between batches is not the cost it is for
/// `consumer poll` (which keeps glibc's: see its `main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // No transparent huge pages for mimalloc's memory: a first touch would zero 2 MiB, however
    // little a batch uses of it (as in the producer: see its `main`).
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    // JSON lines on stdout: CloudWatch Logs indexes their fields.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .init();
    let config = FunctionConfig::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "bad configuration");
    })?;
    // Outside Lambda (and `cargo lambda watch`) the runtime would panic on its missing variables.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let error = "AWS_LAMBDA_RUNTIME_API is not set: consumer-lambda runs under AWS Lambda or \
                     `cargo lambda watch`; `consumer poll` reads a stream from a shell";
        tracing::error!(error, "not running under Lambda");
        return Err(error.into());
    }
    let lake = LakeStore::open(&config.lake).await.inspect_err(|e| {
        tracing::error!(error = %e, lake = %config.lake, "cannot open the lake");
    })?;
    // Refuse to run under a mapping that reads a shard in parallel lanes (it would skip records).
    if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        check_mappings(&function).await.inspect_err(|e| {
            tracing::error!(error = %e, function, "refusing to run");
        })?;
    }
    // Asked for a new shard's ancestors, so dedupe holds across reshards.
    let lineage = KinesisLineage::connect().await.inspect_err(|e| {
        tracing::error!(error = %e, "cannot set up the Kinesis client");
    })?;
    // Reports: Athena for the answer, SNS for the notice. Set up at the first report: most
    // instances only ever see Kinesis batches, and a cold start should not pay for them.
    let reports: OnceCell<(Athena, SnsTopic)> = OnceCell::new();
    // Shard states and id index segments stay in memory between warm invocations.
    let checkpoints = Checkpoints::default();
    let (config, lake, lineage, checkpoints) = (&config, &lake, &lineage, &checkpoints);
    let reports = &reports;
    // The payload as text, read here: see `Invocation::from_json`.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            let invocation = Invocation::from_json(event.payload.get())?;
            // The payload's text (megabytes for a batch) goes before the batch is handled.
            drop(event);
            match invocation {
                Invocation::Kinesis(event) => {
                    let (response, report) =
                        handle(event, lake, lineage, config, checkpoints).await?;
                    let now = chrono::Utc::now().timestamp_millis();
                    println!("{}", emf_line(&config.metrics_namespace, &report, now));
                    tracing::info!(
                        records = report.counts.records,
                        accepted = report.counts.accepted,
                        duplicates = report.counts.duplicates,
                        quarantined = report.counts.quarantined,
                        replayed = report.counts.replayed,
                        conflicts = report.conflicts,
                        failed_records = report.failed_records,
                        files = report.files,
                        duration_ms = report.duration_ms,
                        "batch handled"
                    );
                    Ok::<_, Error>(serde_json::to_value(response)?)
                }
                Invocation::Compact(days) => {
                    let reports =
                        compact(lake, &days, config.batch.codec, &Progress::default()).await?;
                    for report in &reports {
                        tracing::info!(
                            day = ?report.day,
                            files_in = report.files_in,
                            events_out = report.events_out,
                            duplicates = report.duplicates,
                            superseded = report.superseded,
                            "day compacted"
                        );
                    }
                    Ok(serde_json::to_value(reports)?)
                }
                Invocation::Report(request) => {
                    let arn = config
                        .report_topic
                        .as_deref()
                        .ok_or(ReportActionError::NoTopic)?;
                    let (athena, topic) = reports
                        .get_or_try_init(|| async {
                            let athena = Athena::connect(config.athena.clone()).await?;
                            Ok::<_, Error>((athena, SnsTopic::connect(arn).await?))
                        })
                        .await
                        .inspect_err(
                            |e| tracing::error!(error = %e, "cannot set up Athena and SNS"),
                        )?;
                    let answer = run_on_athena(athena, &request)
                        .await
                        .map_err(ReportActionError::from)?;
                    let notice = publish_report(
                        &request,
                        &answer,
                        lake,
                        &config.lake,
                        topic,
                        chrono::Utc::now(),
                    )
                    .await
                    .inspect_err(|e| tracing::error!(error = %e, "report failed"))?;
                    tracing::info!(report = %notice.report, days = notice.days, "report published");
                    Ok(serde_json::to_value(notice)?)
                }
            }
        },
    ))
    .await
}

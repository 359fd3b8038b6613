//! The consumer as an AWS Lambda function on a Kinesis event source mapping (custom runtime
//! `provided.al2023`). Configuration comes from the environment, read once at cold start:
//! `LAKE_URL` (required), `CONSUMER_COMPRESSION`, `CONSUMER_DEDUPE_WINDOW`, `METRICS_NAMESPACE`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use consumer::function::{FunctionConfig, handle};
use consumer::lake::LakeStore;
use consumer::metrics::emf_line;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines on stdout: CloudWatch Logs indexes their fields.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .with_target(false)
        .init();
    let config = FunctionConfig::from_env(|name| std::env::var(name).ok()).inspect_err(|e| {
        tracing::error!(error = %e, "bad configuration");
    })?;
    let lake = LakeStore::open(&config.lake).await.inspect_err(|e| {
        tracing::error!(error = %e, lake = %config.lake, "cannot open the lake");
    })?;
    let (config, lake) = (&config, &lake);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            let (response, report) = handle(event.payload, lake, config).await?;
            println!(
                "{}",
                emf_line(
                    &config.metrics_namespace,
                    &report,
                    chrono::Utc::now().timestamp_millis()
                )
            );
            tracing::info!(
                records = report.counts.records,
                accepted = report.counts.accepted,
                duplicates = report.counts.duplicates,
                quarantined = report.counts.quarantined,
                replayed = report.replayed,
                failed_records = report.failed_records,
                files = report.files,
                duration_ms = report.duration_ms,
                "batch handled"
            );
            Ok::<_, Error>(response)
        },
    ))
    .await
}

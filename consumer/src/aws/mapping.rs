//! The function's own event source mappings, checked at cold start.
//!
//! The commit protocol needs each shard's batches one at a time, in order. A Kinesis mapping with
//! a `ParallelizationFactor` above 1 (set by hand, or by a deployment other than `terraform/`,
//! whose variable refuses it) runs several batches of one shard at once, and a batch whose
//! records sit at or before another lane's commit would be skipped as already done. So the
//! function refuses to run under such a mapping, loudly, rather than skip records.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::error::ProvideErrorMetadata;
use sales_aws::{RetryConfig, sdk_error_reason};

/// The one `ParallelizationFactor` the commit protocol allows.
pub const REQUIRED_PARALLELIZATION_FACTOR: i32 = 1;

/// Why the function will not run.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// A Kinesis mapping of this function reads its shards in parallel lanes.
    #[error(
        "the event source mapping {uuid} from {stream} has ParallelizationFactor {factor}: this \
         function commits each shard's records in order and would skip records with more than \
         {REQUIRED_PARALLELIZATION_FACTOR} batch per shard at a time. Set it to \
         {REQUIRED_PARALLELIZATION_FACTOR} (terraform/: parallelization_factor); for more \
         throughput, add shards"
    )]
    Parallel {
        uuid: String,
        stream: String,
        factor: i32,
    },
    /// The Lambda API could not be asked.
    #[error(
        "cannot list the event source mappings of {function} (the function's role needs \
         lambda:ListEventSourceMappings): {reason}"
    )]
    Api { function: String, reason: String },
    /// No region or credentials.
    #[error(transparent)]
    Config(#[from] sales_aws::ConfigError),
}

/// Checks every Kinesis event source mapping of `function`.
pub async fn check_mappings(function: &str) -> Result<(), MappingError> {
    let config = sales_aws::load(RetryConfig::standard()).await?;
    let client = Client::new(&config);
    let mut pages = client
        .list_event_source_mappings()
        .function_name(function)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            // A function the Lambda API does not know: it runs outside Lambda (`cargo lambda
            // watch`), under no mapping at all.
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(()),
            Err(e) => {
                return Err(MappingError::Api {
                    function: function.to_owned(),
                    reason: sdk_error_reason(&e),
                });
            }
        };
        for mapping in page.event_source_mappings() {
            let source = mapping.event_source_arn().unwrap_or_default();
            let factor = mapping.parallelization_factor().unwrap_or(1);
            if source.contains(":kinesis:") && factor != REQUIRED_PARALLELIZATION_FACTOR {
                return Err(MappingError::Parallel {
                    uuid: mapping.uuid().unwrap_or_default().to_owned(),
                    stream: source.to_owned(),
                    factor,
                });
            }
        }
    }
    Ok(())
}

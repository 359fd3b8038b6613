//! The AWS configuration shared by the producer, the poller and the Lambda: the standard chain
//! (environment, profiles, SSO, `credential_process`, `AWS_ENDPOINT_URL`), checked once at start so
//! a missing region or credentials is one clear error instead of a failure deep in a request.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::types::Shard;

pub use aws_config::retry::RetryConfig;

/// Connecting takes at most this long: an unreachable endpoint is reported, not waited on.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request takes at most this long before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the AWS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No region in the environment or the profile.
    #[error("no AWS region configured: set AWS_REGION (or a region in your AWS profile)")]
    NoRegion,
    /// The credential chain found nothing usable.
    #[error(
        "no AWS credentials: {0}\n  set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or sign in with `aws sso login`"
    )]
    NoCredentials(String),
}

/// Loads the configuration with `retries` for every client made from it, and checks that it has
/// a region and credentials.
pub async fn load(retries: RetryConfig) -> Result<SdkConfig, ConfigError> {
    let config = aws_config::from_env()
        .retry_config(retries)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .load()
        .await;
    if config.region().is_none_or(|r| r.as_ref().is_empty()) {
        return Err(ConfigError::NoRegion);
    }
    let credentials = config
        .credentials_provider()
        .ok_or_else(|| ConfigError::NoCredentials("no credential provider".into()))?;
    credentials
        .provide_credentials()
        .await
        .map_err(|e| ConfigError::NoCredentials(error_chain(&e)))?;
    Ok(config)
}

/// The region of a configuration [`load`] accepted.
pub fn region(config: &SdkConfig) -> String {
    config.region().map(ToString::to_string).unwrap_or_default()
}

/// Every shard of a Kinesis stream, open and closed, over all pages of `ListShards`.
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<Shard>, SdkError<ListShardsError>> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            // ListShards takes the stream name or a token, never both.
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await?;
        shards.extend_from_slice(page.shards());
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(shards);
        }
    }
}

/// What went wrong with an SDK call, for a user: the service's `code: message` when it
/// answered, else the cause chain ("Connection refused"). Any service's `SdkError` will do.
pub fn sdk_error_reason<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or_default()),
        None => error_chain(error),
    }
}

/// An error and its causes on one line, `outer: inner: root`. The SDK's own `Display` says only
/// "dispatch failure"; the cause a user can act on ("Connection refused") is at the root.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text = format!("{text}: {message}");
        }
        source = cause.source();
    }
    text
}

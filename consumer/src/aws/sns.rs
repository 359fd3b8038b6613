//! The report topic on SNS, as the function's [`Notifier`].

use aws_sdk_sns::Client;
use sales_aws::{RetryConfig, sdk_error_reason};

use crate::notify::Notifier;

/// An SNS topic the function publishes report notices to.
#[derive(Debug, Clone)]
pub struct SnsTopic {
    client: Client,
    topic_arn: String,
}

impl SnsTopic {
    /// Loads the AWS configuration (the standard chain, `AWS_ENDPOINT_URL` included).
    pub async fn connect(topic_arn: &str) -> Result<Self, sales_aws::ConfigError> {
        let config = sales_aws::load(RetryConfig::standard()).await?;
        Ok(Self {
            client: Client::new(&config),
            topic_arn: topic_arn.to_owned(),
        })
    }
}

impl Notifier for SnsTopic {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), String> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("publishing to {}: {}", self.topic_arn, sdk_error_reason(&e)))
    }
}

//! The function's configuration, read once at cold start from the environment through the same
//! clap arguments as the `consumer` commands ([`LakeArgs`], [`AthenaArgs`]): `LAKE_URL`,
//! `CONSUMER_COMPRESSION`, `METRICS_NAMESPACE`, and for reports `ATHENA_WORKGROUP`,
//! `ATHENA_DATABASE` and `REPORT_TOPIC_ARN`.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use sales_stream::LakeLocation;

use crate::aws::athena::AthenaOptions;
use crate::commands::options::{AthenaArgs, LakeArgs};
use crate::core::batch::BatchOptions;

/// The CloudWatch namespace of the function's metrics unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "SalesLake";

/// Why the function cannot start: its environment is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{name} is not set: {help}")]
    Missing { name: String, help: String },
    /// A variable is set to something unusable.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// Anything else clap refused (not expected of an environment).
    #[error("{0}")]
    Other(String),
}

/// The function's settings, as clap reads them.
#[derive(Debug, Parser)]
#[command(name = "consumer-lambda", no_binary_name = true)]
struct FunctionArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// The CloudWatch namespace of the function's metrics.
    #[arg(long, env = "METRICS_NAMESPACE", default_value = DEFAULT_METRICS_NAMESPACE, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    metrics_namespace: String,
    #[command(flatten)]
    athena: AthenaArgs,
    /// The SNS topic report notices are published to.
    #[arg(long, env = "REPORT_TOPIC_ARN", value_name = "ARN")]
    report_topic: Option<String>,
}

/// The function's configuration, read once at cold start from the environment.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// `LAKE_URL`, required.
    pub lake: LakeLocation,
    /// `CONSUMER_COMPRESSION`: zstd (default) or snappy. A batch is encoded on two threads
    /// where the instance has two cores (a function handles one batch at a time).
    pub batch: BatchOptions,
    /// `METRICS_NAMESPACE`.
    pub metrics_namespace: String,
    /// `ATHENA_WORKGROUP`, `ATHENA_DATABASE`, `QUERY_TIMEOUT`: where reports are queried.
    pub athena: AthenaOptions,
    /// `REPORT_TOPIC_ARN`: where report notices go (reports are refused without it).
    pub report_topic: Option<String>,
}

impl FunctionConfig {
    /// Reads the configuration from the process environment only: a Lambda function has no
    /// command line.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse_from(std::iter::empty::<String>())
    }

    /// Reads the configuration from flags (`--lake URL`), then the environment for what they
    /// leave out: for tests and tools that run the handler in-process.
    pub fn parse_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = FunctionArgs::try_parse_from(args).map_err(config_error)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            batch: BatchOptions {
                parallel: cores > 1,
                ..args.lake.batch()
            },
            lake: args.lake.url,
            metrics_namespace: args.metrics_namespace,
            athena: args.athena.options(),
            report_topic: args.report_topic.filter(|arn| !arn.trim().is_empty()),
        })
    }
}

/// Turns clap's answer into one that names the environment variable, since that is all a
/// function's operator can set.
fn config_error(error: clap::Error) -> ConfigError {
    let strings = |kind| match error.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(s)) => s.clone(),
        _ => Vec::new(),
    };
    let command = FunctionArgs::command();
    // clap names an argument as `--lake <URL>`; find it to learn its variable and help.
    let argument = strings(ContextKind::InvalidArg)
        .into_iter()
        .find_map(|shown| {
            command.get_arguments().find(|arg| {
                arg.get_long().is_some_and(|long| {
                    shown.split_whitespace().next() == Some(&format!("--{long}"))
                })
            })
        });
    let Some(argument) = argument else {
        return ConfigError::Other(error.to_string());
    };
    let name = argument.get_env().map_or_else(
        || argument.get_id().to_string(),
        |env| env.to_string_lossy().into_owned(),
    );
    let value = strings(ContextKind::InvalidValue).concat();
    let missing = || ConfigError::Missing {
        name: name.clone(),
        help: argument
            .get_help()
            .map_or_else(String::new, ToString::to_string),
    };
    match error.kind() {
        ErrorKind::MissingRequiredArgument => missing(),
        // Terraform writes an unset variable as an empty one.
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
            if value.trim().is_empty() && argument.is_required_set() =>
        {
            missing()
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let valid = strings(ContextKind::ValidValue);
            let reason = if !valid.is_empty() {
                format!("use {}", valid.join(" or "))
            } else {
                std::error::Error::source(&error)
                    .map_or_else(|| error.kind().to_string(), ToString::to_string)
            };
            ConfigError::Invalid {
                name,
                value,
                reason,
            }
        }
        _ => ConfigError::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::writer::Codec;

    #[test]
    fn configuration_errors_name_the_variable() {
        // The process environment of a test run has none of the function's variables; the
        // flags stand for them (the binary's own test sets them in its environment).
        let missing = FunctionConfig::parse_from(Vec::<String>::new()).expect_err("no lake");
        assert!(
            missing.to_string().contains("LAKE_URL is not set"),
            "{missing}"
        );
        let bad = FunctionConfig::parse_from(["--lake=ftp://x"]).expect_err("scheme");
        assert!(bad.to_string().starts_with("LAKE_URL=\"ftp://x\""), "{bad}");
        let bad = FunctionConfig::parse_from(["--lake=s3://bucket/lake", "--compression=lz4"])
            .expect_err("codec");
        assert!(bad.to_string().contains("zstd or snappy"), "{bad}");
        let config =
            FunctionConfig::parse_from(["--lake=s3://bucket/lake", "--compression=SNAPPY"])
                .expect("valid");
        assert_eq!(config.batch.codec, Codec::Snappy);
        assert_eq!(config.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
    }
}

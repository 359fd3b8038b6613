//! The function's configuration, read once at cold start from the environment.

use sales_stream::LakeLocation;

use crate::batch::BatchOptions;
use crate::writer::Codec;

/// The CloudWatch namespace of the function's metrics unless `METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "SalesLake";

/// Why the function cannot start: its environment is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set: give the lake as s3://BUCKET/PREFIX (or file://DIR for local runs)")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// The function's configuration, read once at cold start from the environment.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// `LAKE_URL`, required.
    pub lake: LakeLocation,
    /// `CONSUMER_COMPRESSION`: zstd (default) or snappy.
    pub batch: BatchOptions,
    /// `METRICS_NAMESPACE`.
    pub metrics_namespace: String,
}

impl FunctionConfig {
    /// Reads the configuration through `var` (the process environment, or a map in tests).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &'static str| var(name).filter(|v| !v.trim().is_empty());
        let invalid = |name, value: &str, reason: String| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason,
        };
        let lake_url = set("LAKE_URL").ok_or(ConfigError::Missing("LAKE_URL"))?;
        let lake = lake_url.parse().map_err(|e: sales_stream::LocationError| {
            invalid("LAKE_URL", &lake_url, e.to_string())
        })?;
        let codec = match set("CONSUMER_COMPRESSION") {
            None => Codec::default(),
            Some(value) => value.parse::<Codec>().map_err(|_| {
                invalid("CONSUMER_COMPRESSION", &value, "use zstd or snappy".into())
            })?,
        };
        Ok(Self {
            lake,
            batch: BatchOptions { codec },
            metrics_namespace: set("METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_name_the_variable() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let missing = FunctionConfig::from_env(env(&[])).expect_err("no lake");
        assert!(missing.to_string().contains("LAKE_URL is not set"));
        let bad = FunctionConfig::from_env(env(&[("LAKE_URL", "ftp://x")])).expect_err("scheme");
        assert!(bad.to_string().starts_with("LAKE_URL=\"ftp://x\""), "{bad}");
        let bad = FunctionConfig::from_env(env(&[
            ("LAKE_URL", "s3://bucket/lake"),
            ("CONSUMER_COMPRESSION", "lz4"),
        ]))
        .expect_err("codec");
        assert!(bad.to_string().contains("zstd or snappy"), "{bad}");
        let config = FunctionConfig::from_env(env(&[
            ("LAKE_URL", "s3://bucket/lake"),
            ("CONSUMER_COMPRESSION", "SNAPPY"),
        ]))
        .expect("valid");
        assert_eq!(config.batch.codec, Codec::Snappy);
        assert_eq!(config.metrics_namespace, DEFAULT_METRICS_NAMESPACE);
    }
}

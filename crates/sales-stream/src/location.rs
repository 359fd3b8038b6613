//! The URLs users type for a stream and a lake (DESIGN.md, "The users and what they type").

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Why a location could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The URL's scheme is not one this kind of location accepts.
    #[error("unsupported {kind} location {url:?}: expected {expected}")]
    Scheme {
        kind: &'static str,
        url: String,
        expected: &'static str,
    },
    /// The URL has a scheme but nothing after it.
    #[error("{kind} location {url:?} names no {what}")]
    Empty {
        kind: &'static str,
        url: String,
        what: &'static str,
    },
}

/// Where events are streamed: a Kinesis stream, or the embedded stream in a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLocation {
    /// `kinesis://NAME`
    Kinesis { name: String },
    /// `file://DIR`
    Local { dir: PathBuf },
}

/// Where the lake lives: an S3 bucket and prefix, or a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    /// `s3://BUCKET/PREFIX` (the prefix may be empty).
    S3 { bucket: String, prefix: String },
    /// `file://DIR` or a plain path.
    Local { dir: PathBuf },
}

fn local_path(rest: &str, kind: &'static str, url: &str) -> Result<PathBuf, LocationError> {
    if rest.is_empty() {
        return Err(LocationError::Empty {
            kind,
            url: url.to_owned(),
            what: "directory",
        });
    }
    Ok(PathBuf::from(rest))
}

impl FromStr for StreamLocation {
    type Err = LocationError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        const KIND: &str = "stream";
        if let Some(name) = url.strip_prefix("kinesis://") {
            let name = name.trim_end_matches('/');
            if name.is_empty() {
                return Err(LocationError::Empty {
                    kind: KIND,
                    url: url.to_owned(),
                    what: "stream",
                });
            }
            return Ok(Self::Kinesis {
                name: name.to_owned(),
            });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            return Ok(Self::Local {
                dir: local_path(rest, KIND, url)?,
            });
        }
        Err(LocationError::Scheme {
            kind: KIND,
            url: url.to_owned(),
            expected: "kinesis://NAME or file://DIR",
        })
    }
}

impl FromStr for LakeLocation {
    type Err = LocationError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        const KIND: &str = "lake";
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::Empty {
                    kind: KIND,
                    url: url.to_owned(),
                    what: "bucket",
                });
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            return Ok(Self::Local {
                dir: local_path(rest, KIND, url)?,
            });
        }
        if url.contains("://") {
            return Err(LocationError::Scheme {
                kind: KIND,
                url: url.to_owned(),
                expected: "s3://BUCKET/PREFIX, file://DIR or a path",
            });
        }
        Ok(Self::Local {
            dir: local_path(url, KIND, url)?,
        })
    }
}

impl fmt::Display for StreamLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kinesis { name } => write!(f, "kinesis://{name}"),
            Self::Local { dir } => write!(f, "file://{}", dir.display()),
        }
    }
}

impl fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Local { dir } => write!(f, "file://{}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams() {
        assert_eq!(
            "kinesis://sales-events".parse(),
            Ok(StreamLocation::Kinesis {
                name: "sales-events".into()
            })
        );
        assert_eq!(
            "file://./.lake-demo/stream".parse(),
            Ok(StreamLocation::Local {
                dir: "./.lake-demo/stream".into()
            })
        );
        assert_eq!(
            "file:///tmp/s".parse(),
            Ok(StreamLocation::Local {
                dir: "/tmp/s".into()
            })
        );
        assert!(matches!(
            "sales".parse::<StreamLocation>(),
            Err(LocationError::Scheme { .. })
        ));
        assert!(matches!(
            "kinesis://".parse::<StreamLocation>(),
            Err(LocationError::Empty { .. })
        ));
    }

    #[test]
    fn parses_lakes() {
        assert_eq!(
            "s3://my-lake/sales/".parse(),
            Ok(LakeLocation::S3 {
                bucket: "my-lake".into(),
                prefix: "sales".into()
            })
        );
        assert_eq!(
            "s3://my-lake".parse(),
            Ok(LakeLocation::S3 {
                bucket: "my-lake".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "./lake".parse(),
            Ok(LakeLocation::Local {
                dir: "./lake".into()
            })
        );
        assert_eq!(
            "file://lake".parse(),
            Ok(LakeLocation::Local { dir: "lake".into() })
        );
        assert!("gs://x/y".parse::<LakeLocation>().is_err());
        assert!("s3:///x".parse::<LakeLocation>().is_err());
    }
}

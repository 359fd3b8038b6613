//! The lake's storage: a narrow trait at the edge, the local-directory implementation, and
//! [`LakeStore`], the lake a URL names (a directory or an S3 bucket).

use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sales_stream::LakeLocation;

use crate::s3::S3Lake;

/// Why a lake operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The key would leave the lake (`..`, an absolute path).
    #[error("invalid lake key {0:?}")]
    BadKey(String),
    /// The bucket does not exist, or these credentials may not see it.
    #[error("S3 bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },
    /// An S3 request failed after the SDK's retries.
    #[error("{action} s3://{bucket}/{key}: {reason}")]
    S3 {
        action: &'static str,
        bucket: String,
        key: String,
        reason: String,
    },
    /// No region or credentials for an S3 lake.
    #[error(transparent)]
    Config(#[from] sales_aws::ConfigError),
}

/// Checks that a key stays inside the lake: relative, no empty, `.` or `..` parts.
pub fn check_key(key: &str) -> Result<&str, LakeError> {
    let valid = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(key)
    } else {
        Err(LakeError::BadKey(key.to_owned()))
    }
}

/// Object storage for the lake: whole objects, written atomically.
pub trait Lake: Send + Sync {
    /// Writes an object; readers see either the old or the new content, never a part.
    fn put(&self, key: &str, bytes: Vec<u8>) -> impl Future<Output = Result<(), LakeError>> + Send;
    /// Reads an object, `None` if there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, LakeError>> + Send;
}

/// A lake in a local directory (`file://DIR`). Objects are files; a write goes to a temporary
/// file that is synced and then renamed over the target, so it is atomic.
#[derive(Debug)]
pub struct LocalLake {
    root: PathBuf,
    counter: AtomicU64,
}

impl LocalLake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            counter: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, LakeError> {
        Ok(self.root.join(check_key(key)?))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
        let error = |action| {
            move |source| LakeError::Io {
                action,
                path: path.to_owned(),
                source,
            }
        };
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(error("create directory for"))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A dot-prefixed temporary name: query engines skip hidden files while it exists.
        let temp = dir.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            std::fs::rename(&temp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(error("write"))
    }
}

impl Lake for LocalLake {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let path = self.path(key)?;
        self.write_atomically(&path, &bytes)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LakeError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }
}

/// The lake a `--lake`/`LAKE_URL` names.
#[derive(Debug)]
pub enum LakeStore {
    Local(LocalLake),
    S3(S3Lake),
}

impl LakeStore {
    /// Opens the lake at `location`; an S3 lake loads the AWS configuration and checks that the
    /// bucket is there.
    pub async fn open(location: &LakeLocation) -> Result<Self, LakeError> {
        Ok(match location {
            LakeLocation::Local { dir } => Self::Local(LocalLake::new(dir)),
            LakeLocation::S3 { bucket, prefix } => Self::S3(S3Lake::connect(bucket, prefix).await?),
        })
    }
}

impl Lake for LakeStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        match self {
            Self::Local(lake) => lake.put(key, bytes).await,
            Self::S3(lake) => lake.put(key, bytes).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, LakeError> {
        match self {
            Self::Local(lake) => lake.get(key).await,
            Self::S3(lake) => lake.get(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_replace_whole_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = LocalLake::new(dir.path());
        assert_eq!(lake.get("a/b.txt").await.expect("get"), None);
        lake.put("a/b.txt", b"one".to_vec()).await.expect("put");
        lake.put("a/b.txt", b"two".to_vec()).await.expect("put");
        assert_eq!(
            lake.get("a/b.txt").await.expect("get"),
            Some(b"two".to_vec())
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["b.txt"], "no temporary files are left behind");
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_lake() {
        let lake = LocalLake::new("/tmp/lake");
        for key in ["", "/etc/passwd", "a/../../b", "a//b", "./a"] {
            assert!(
                matches!(lake.put(key, vec![]).await, Err(LakeError::BadKey(_))),
                "{key}"
            );
        }
    }
}

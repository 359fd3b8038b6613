//! The lake's storage: a narrow trait at the edge, and the local-directory implementation
//! ([`local`]). S3's is an AWS adapter ([`crate::aws::s3`]), and a command opens the one a URL
//! names ([`crate::commands::store`]).
//!
//! Besides whole-object reads and writes, a lake offers one compare-and-swap write
//! ([`Lake::put_if`]): the commit protocol needs it so that two writers of one shard's state
//! cannot both win. S3 does it with conditional writes (`If-Match`, `If-None-Match`); a local
//! lake with a lock file around the read-compare-rename.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;

use md5::{Digest, Md5};

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
    /// A compare-and-swap write lost: another writer changed the object since it was read.
    #[error("{key} was changed by another writer")]
    Conflict { key: String },
}

impl LakeError {
    /// A compare-and-swap lost to another writer.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether a failed write may have been applied all the same: its answer lost, or a retry
    /// of it refused because the first try had already changed the object (a conflict).
    pub fn may_have_been_applied(&self) -> bool {
        matches!(
            self,
            Self::Conflict { .. } | Self::S3 { .. } | Self::Io { .. }
        )
    }
}

/// A stored object's version, compared by [`Lake::put_if`]: the ETag on S3, the MD5 of the
/// content locally (which is what S3's ETag of a single-part upload is, too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    pub fn new(tag: impl Into<String>) -> Self {
        Self(tag.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version a local lake gives `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Md5::digest(bytes);
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a compare-and-swap write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No object under the key (`If-None-Match: *`).
    Absent,
    /// The object as it was at this version (`If-Match`).
    Matches(Version),
}

impl Precondition {
    /// What to expect where `version` was read (`None`: there was no object).
    pub fn from_read(version: Option<&Version>) -> Self {
        version.map_or(Self::Absent, |v| Self::Matches(v.clone()))
    }
}

/// An object read with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub version: Version,
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
    /// Writes an object only if it is as `expected`, atomically with that check; otherwise
    /// [`LakeError::Conflict`] and nothing is written. Returns the new version.
    fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> impl Future<Output = Result<Version, LakeError>> + Send;
    /// Reads an object, `None` if there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Object>, LakeError>> + Send;
    /// Removes an object; removing one that is not there is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), LakeError>> + Send;
    /// The keys of every object under `prefix` (a folder, no trailing slash), sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, LakeError>> + Send;

    /// Writes several objects, each as [`Lake::put`] does: when it succeeds every one is
    /// durable. It returns only once no write is in flight, failed or not: a write dropped in
    /// flight could still land after its caller had moved on (and, say, removed what it wrote).
    /// By default the writes go side by side (on S3 each is a round trip).
    fn put_all(
        &self,
        objects: Vec<(String, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), LakeError>> + Send {
        use futures::StreamExt;
        async move {
            let writes: Vec<Result<(), LakeError>> = futures::stream::iter(objects)
                .map(|(key, bytes)| async move { self.put(&key, bytes).await })
                .buffer_unordered(MAX_CONCURRENT_REQUESTS)
                .collect()
                .await;
            writes.into_iter().collect()
        }
    }
}

/// Requests a lake is sent at the same time by one batch or compaction.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

/// Removes objects, several at a time.
pub async fn remove_all(lake: &impl Lake, keys: &[String]) -> Result<(), LakeError> {
    use futures::{StreamExt, TryStreamExt};
    // Owned keys: a stream of futures borrowing from the slice trips the compiler's `Send`
    // check in spawned tasks.
    futures::stream::iter(keys.to_vec())
        .map(|key| async move { lake.delete(&key).await })
        .buffer_unordered(MAX_CONCURRENT_REQUESTS)
        .try_collect::<()>()
        .await
}

/// What a compare-and-swap write came to, once any doubt was settled by reading back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// The write was applied: the object is these bytes, at this version.
    Won(Version),
    /// It was not (or was overwritten since): the object as it is now, if there is one.
    Lost(Option<Object>),
}

/// [`Lake::put_if`] that never takes a failure at its word.
///
/// A write whose answer is lost (a timeout, a reset, a 5xx after the write) may have been
/// applied, and a retry of an applied conditional write meets its own write and is refused as a
/// conflict. So after a conflict or a failed write the object is read again, and the answer is
/// decided from what is there: `bytes` themselves means the write was applied. The bytes must be
/// unique to this writer (a write id, an owner id) for that to be a proof.
pub async fn swap(
    lake: &impl Lake,
    key: &str,
    bytes: Vec<u8>,
    expected: Precondition,
) -> Result<Swapped, LakeError> {
    let failure = match lake.put_if(key, bytes.clone(), expected).await {
        Ok(version) => return Ok(Swapped::Won(version)),
        Err(e) if e.may_have_been_applied() => e,
        Err(e) => return Err(e),
    };
    let current = match lake.get(key).await {
        Ok(current) => current,
        // Nothing can be decided: the caller reads the object again before its next write.
        Err(_) if !failure.is_conflict() => return Err(failure),
        Err(e) => return Err(e),
    };
    match current {
        Some(object) if object.bytes == bytes => {
            tracing::info!(
                key,
                "a conditional write's answer was lost; reading it back shows it was applied"
            );
            Ok(Swapped::Won(object.version))
        }
        current => Ok(Swapped::Lost(current)),
    }
}

mod local;

pub use local::LocalLake;

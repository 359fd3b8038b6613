//! [`LakeStore`]: the lake a `--lake`/`LAKE_URL` names, a directory ([`LocalLake`]) or an S3
//! bucket ([`S3Lake`]). The one place that knows both stores, so that neither knows the other.

use sales_stream::LakeLocation;

use crate::aws::s3::S3Lake;
use crate::lake::{Lake, LakeError, LocalLake, Object, Precondition, Version};

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

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        match self {
            Self::Local(lake) => lake.put_if(key, bytes, expected).await,
            Self::S3(lake) => lake.put_if(key, bytes, expected).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
        match self {
            Self::Local(lake) => lake.get(key).await,
            Self::S3(lake) => lake.get(key).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        match self {
            Self::Local(lake) => lake.delete(key).await,
            Self::S3(lake) => lake.delete(key).await,
        }
    }

    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), LakeError> {
        match self {
            Self::Local(lake) => lake.put_all(objects).await,
            Self::S3(lake) => lake.put_all(objects).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        match self {
            Self::Local(lake) => lake.list(prefix).await,
            Self::S3(lake) => lake.list(prefix).await,
        }
    }
}

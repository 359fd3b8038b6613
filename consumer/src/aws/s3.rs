//! The lake in Amazon S3 behind [`Lake`]: the only file that speaks S3.
//!
//! Each object is one `PutObject`, which S3 makes visible whole or not at all. The SDK's standard
//! retries (with backoff, throttling included) handle transient errors; what still fails is an
//! infrastructure failure that the caller reports (the Lambda, as a partial batch failure).

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use sales_aws::{RetryConfig, error_chain, sdk_error_reason};

use crate::lake::{Lake, LakeError, Object, Precondition, Version, check_key};

/// Attempts per S3 request, the first included (the SDK's standard mode backs off between them).
const S3_ATTEMPTS: u32 = 5;

/// A lake under `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone)]
pub struct S3Lake {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Lake {
    /// Loads the AWS configuration and checks that the bucket exists and can be reached.
    pub async fn connect(bucket: &str, prefix: &str) -> Result<Self, LakeError> {
        let config =
            sales_aws::load(RetryConfig::standard().with_max_attempts(S3_ATTEMPTS)).await?;
        let mut s3 = aws_sdk_s3::config::Builder::from(&config);
        if config.endpoint_url().is_some() {
            // S3-compatible stores and emulators (MinIO, moto) on a plain host:port cannot take
            // the bucket as a subdomain.
            s3 = s3.force_path_style(true);
        }
        let lake = Self::new(Client::from_conf(s3.build()), bucket, prefix);
        lake.check_bucket().await?;
        Ok(lake)
    }

    pub fn new(client: Client, bucket: &str, prefix: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    async fn check_bucket(&self) -> Result<(), LakeError> {
        let reason = match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                "no such bucket".to_owned()
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                "access denied".to_owned()
            }
            Err(e) => error_chain(&e),
        };
        Err(LakeError::Bucket {
            bucket: self.bucket.clone(),
            reason,
        })
    }

    fn object_key(&self, key: &str) -> Result<String, LakeError> {
        let key = check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// The key under the lake's prefix, back to a lake key.
    fn lake_key<'a>(&self, object_key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(object_key)
        } else {
            object_key
                .strip_prefix(self.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        }
    }

    fn error<E>(&self, action: &'static str, key: &str, error: &SdkError<E>) -> LakeError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        LakeError::S3 {
            action,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason: sdk_error_reason(error),
        }
    }
}

impl Lake for S3Lake {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let key = self.object_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error("write", &key, &e))?;
        Ok(())
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: Precondition,
    ) -> Result<Version, LakeError> {
        let key = self.object_key(key)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(bytes));
        let request = match expected {
            Precondition::Absent => request.if_none_match("*"),
            Precondition::Matches(version) => request.if_match(version.as_str()),
        };
        match request.send().await {
            Ok(output) => Ok(Version::new(output.e_tag.unwrap_or_default())),
            // 412: the object is not as expected; 409: another conditional write to it is in
            // progress; NoSuchKey: `If-Match` on an object that is gone. Each means another
            // writer. (A missing bucket is a 404 too, and an error.)
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412))
                    || e.code() == Some("NoSuchKey") =>
            {
                Err(LakeError::Conflict { key })
            }
            Err(e) => Err(self.error("write", &key, &e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        let key = self.object_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("remove", &key, &e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let folder = format!("{}/", self.object_key(prefix)?);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&folder)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", &folder, &e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| self.lake_key(k)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, LakeError> {
        let key = self.object_key(key)?;
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.error("read", &key, &e)),
        };
        let version = Version::new(object.e_tag.clone().unwrap_or_default());
        let body = object.body.collect().await.map_err(|e| LakeError::S3 {
            action: "read",
            bucket: self.bucket.clone(),
            key: key.clone(),
            reason: error_chain(&e),
        })?;
        Ok(Some(Object {
            bytes: body.into_bytes().to_vec(),
            version,
        }))
    }
}

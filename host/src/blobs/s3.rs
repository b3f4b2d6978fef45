//! An S3-compatible bucket as the blob store (`blob_url = s3://bucket/prefix`),
//! through `object_store`: AWS S3, or any server that speaks its API at
//! `s3_endpoint` (MinIO, Ceph, moto in the tests).

use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use secrecy::ExposeSecret;

use super::{BlobInfo, BlobStore, ByteStream};

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Put before every key (`pingvas/`), empty for the bucket's root.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl S3Settings {
    /// From `blob_url` (`s3://bucket/prefix`) and the `s3_*` keys.
    pub fn of(config: &crate::config::Config, url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("s3://").unwrap_or(url);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(!bucket.is_empty(), "blob_url {url}: no bucket");
        Ok(S3Settings {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: config.s3_endpoint.clone().filter(|e| !e.is_empty()),
            region: config.s3_region.clone(),
            access_key_id: config.s3_access_key_id.clone(),
            secret_access_key: config
                .s3_secret_access_key
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
        })
    }
}

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    settings: S3Settings,
}

fn io(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string())
        }
        other => std::io::Error::other(other.to_string()),
    }
}

impl S3Blobs {
    pub fn open(s: &S3Settings) -> anyhow::Result<Self> {
        // A few quick retries: a request must not hang for minutes while
        // the store is down (`object_store`'s default is 3 minutes).
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(10),
            ..Default::default()
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_retry(retry);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(k) = &s.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        Ok(Self {
            store: Arc::new(b.build()?),
            settings: s.clone(),
        })
    }

    /// The object path of `key`; keys with `..` or empty segments are
    /// refused, as the directory store refuses keys that leave it.
    fn path(&self, key: &str) -> std::io::Result<ObjectPath> {
        let full = if self.settings.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.settings.prefix)
        };
        if full
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad key {key}"),
            ));
        }
        ObjectPath::parse(&full)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// `key` of an object path (the prefix taken off).
    fn key_of(&self, path: &ObjectPath) -> String {
        let p = path.as_ref();
        if self.settings.prefix.is_empty() {
            p.to_owned()
        } else {
            p.strip_prefix(&format!("{}/", self.settings.prefix))
                .unwrap_or(p)
                .to_owned()
        }
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> std::io::Result<bool> {
        let path = self.path(key)?;
        // Keys are unique or content-addressed: a blob there already is
        // the same one.
        match self.store.head(&path).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(io(e)),
        }
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(io)?;
        Ok(true)
    }

    async fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        let got = self.store.get(&self.path(key)?).await.map_err(io)?;
        Ok(got.bytes().await.map_err(io)?.to_vec())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        Ok(self
            .store
            .get_range(&self.path(key)?, range)
            .await
            .map_err(io)?
            .to_vec())
    }

    /// The object's body as the S3 client receives it: nothing is read
    /// ahead of the consumer past the connection's own buffers.
    async fn stream(&self, key: &str, range: Range<u64>) -> std::io::Result<ByteStream> {
        let path = self.path(key)?;
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&path, opts).await.map_err(io)?;
        Ok(got.into_stream().map_err(io).boxed())
    }

    async fn head(&self, key: &str) -> std::io::Result<Option<u64>> {
        match self.store.head(&self.path(key)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn list(&self, prefix: &str) -> std::io::Result<Vec<BlobInfo>> {
        let folder = self.path(prefix.trim_end_matches('/'))?;
        let metas: Vec<_> = self
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(io)?;
        Ok(metas
            .into_iter()
            .map(|m| BlobInfo {
                key: self.key_of(&m.location),
                bytes: m.size,
                modified: m.last_modified.into(),
            })
            .collect())
    }

    fn describe(&self) -> String {
        let s = &self.settings;
        match (&s.endpoint, s.prefix.is_empty()) {
            (Some(e), true) => format!("s3://{} at {e}", s.bucket),
            (Some(e), false) => format!("s3://{}/{} at {e}", s.bucket, s.prefix),
            (None, true) => format!("s3://{}", s.bucket),
            (None, false) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(prefix: &str) -> S3Blobs {
        S3Blobs::open(&S3Settings {
            bucket: "b".into(),
            prefix: prefix.into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        })
        .unwrap()
    }

    #[test]
    fn keys_stay_under_the_prefix() {
        let s = store("pingvas/run-1");
        let p = s.path("images/u/a.png").unwrap();
        assert_eq!(p.as_ref(), "pingvas/run-1/images/u/a.png");
        assert_eq!(s.key_of(&p), "images/u/a.png");
        for bad in [
            "../outside",
            "images/../x",
            "/etc/passwd",
            "images//a",
            "./a",
        ] {
            assert!(s.path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            store("").path("plugins/x.wasm").unwrap().as_ref(),
            "plugins/x.wasm"
        );
        assert_eq!(s.describe(), "s3://b/pingvas/run-1 at http://127.0.0.1:9");
    }
}

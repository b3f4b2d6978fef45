//! Blob storage for bytes the database only references: plugin components,
//! generated images, thumbnails and uploaded inputs. Keys are relative
//! paths (`plugins/<sha256>.wasm`, `images/<user>/<id>.png`). One async
//! `BlobStore` trait, two stores: a directory under the data dir, reached
//! through cap-std so no key can escape it (the embedded default), and an
//! S3-compatible bucket through `object_store` (`blob_url = s3://…`).

pub mod local;
pub mod s3;
pub mod signed;

use std::ops::Range;
use std::sync::Arc;

pub use local::LocalBlobs;
pub use s3::{S3Blobs, S3Settings};

/// A stored blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub bytes: u64,
    pub modified: std::time::SystemTime,
}

pub type Blobs = Arc<dyn BlobStore>;

/// A blob's bytes as chunks, read from the store as the consumer takes
/// them: a slow consumer holds one chunk, never the whole blob.
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// Chunks a stream reads at most at once.
pub const STREAM_CHUNK: usize = 64 << 10;

#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `bytes` under `key` unless a blob of that key exists (keys
    /// are content-addressed or unique); true when this call created it.
    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> std::io::Result<bool>;

    async fn get(&self, key: &str) -> std::io::Result<Vec<u8>>;

    /// `range` of the blob's bytes (within its length).
    async fn get_range(&self, key: &str, range: Range<u64>) -> std::io::Result<Vec<u8>>;

    /// `range` of the blob's bytes (within its length) as a stream.
    async fn stream(&self, key: &str, range: Range<u64>) -> std::io::Result<ByteStream>;

    /// The blob's length; `None` when there is none.
    async fn head(&self, key: &str) -> std::io::Result<Option<u64>>;

    /// Removes the blob of `key`; a missing one is not an error.
    async fn delete(&self, key: &str) -> std::io::Result<()>;

    /// Every blob under the folder `prefix`.
    async fn list(&self, prefix: &str) -> std::io::Result<Vec<BlobInfo>>;

    /// What `/readyz` reports (`local:<dir>`, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    async fn put(&self, key: &str, bytes: Vec<u8>) -> std::io::Result<()> {
        self.put_new(key, bytes).await.map(|_| ())
    }
}

/// The store `blob_url` names: unset, the directory `<data_dir>/blobs`;
/// `s3://bucket/prefix`, that bucket.
pub fn open(config: &crate::config::Config) -> anyhow::Result<Blobs> {
    match config.blob_url.as_deref().filter(|u| !u.is_empty()) {
        None => Ok(Arc::new(LocalBlobs::open(&config.data_dir.join("blobs"))?)),
        Some(url) if url.starts_with("s3://") => {
            Ok(Arc::new(S3Blobs::open(&S3Settings::of(config, url)?)?))
        }
        Some(url) => {
            let path = url.strip_prefix("file://").unwrap_or(url);
            Ok(Arc::new(LocalBlobs::open(std::path::Path::new(path))?))
        }
    }
}

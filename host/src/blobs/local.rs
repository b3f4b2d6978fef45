//! The embedded blob store: a directory, reached through cap-std so no key
//! can escape it; blocking file work runs on the blocking pool.

use std::io::Write;
use std::path::Path;

use std::ops::Range;
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::{BlobInfo, BlobStore, ByteStream, STREAM_CHUNK};

pub struct LocalBlobs {
    root: Arc<Dir>,
    path: std::path::PathBuf,
}

impl LocalBlobs {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self {
            root: Arc::new(Dir::open_ambient_dir(path, ambient_authority())?),
            path: path.to_path_buf(),
        })
    }
}

/// Writes `bytes` under `key` atomically (temp file, then rename); an
/// existing blob of that key is left as it is; true when this call made it.
fn put_new(root: &Dir, key: &str, bytes: &[u8]) -> std::io::Result<bool> {
    if root.exists(key) {
        return Ok(false);
    }
    if let Some(parent) = Path::new(key)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        root.create_dir_all(parent)?;
    }
    let tmp = format!("{key}.tmp-{}", uuid::Uuid::now_v7().simple());
    let mut f = root.create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    root.rename(&tmp, root, key)?;
    Ok(true)
}

/// Every blob under the folder `prefix`; a missing folder has none.
/// Unfinished writes (`.tmp-` files) are left out.
fn list(root: &Dir, prefix: &str) -> std::io::Result<Vec<BlobInfo>> {
    let mut out = Vec::new();
    let mut folders = vec![prefix.trim_end_matches('/').to_owned()];
    while let Some(folder) = folders.pop() {
        let entries = match root.read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{folder}/{name}");
            let meta = entry.metadata()?;
            if meta.is_dir() {
                folders.push(key);
            } else if !name.contains(".tmp-") {
                out.push(BlobInfo {
                    key,
                    bytes: meta.len(),
                    modified: meta.modified()?.into_std(),
                });
            }
        }
    }
    Ok(out)
}

/// The file of `key`, opened at `start`.
fn open_at(root: &Dir, key: &str, start: u64) -> std::io::Result<cap_std::fs::File> {
    use std::io::{Seek, SeekFrom};
    let mut f = root.open(key)?;
    f.seek(SeekFrom::Start(start))?;
    Ok(f)
}

fn read_range(root: &Dir, key: &str, range: Range<u64>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = open_at(root, key, range.start)?;
    let mut out = Vec::new();
    f.take(range.end.saturating_sub(range.start))
        .read_to_end(&mut out)?;
    Ok(out)
}

impl LocalBlobs {
    /// Runs `f` on the directory on the blocking pool.
    async fn on_dir<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Dir) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(std::io::Error::other)?
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobs {
    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> std::io::Result<bool> {
        let key = key.to_owned();
        self.on_dir(move |d| put_new(d, &key, &bytes)).await
    }

    async fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        let key = key.to_owned();
        self.on_dir(move |d| d.read(&key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> std::io::Result<Vec<u8>> {
        let key = key.to_owned();
        self.on_dir(move |d| read_range(d, &key, range)).await
    }

    async fn stream(&self, key: &str, range: Range<u64>) -> std::io::Result<ByteStream> {
        let key = key.to_owned();
        let start = range.start;
        let file = self.on_dir(move |d| open_at(d, &key, start)).await?;
        let part =
            tokio::fs::File::from_std(file.into_std()).take(range.end.saturating_sub(range.start));
        Ok(ReaderStream::with_capacity(part, STREAM_CHUNK).boxed())
    }

    async fn head(&self, key: &str) -> std::io::Result<Option<u64>> {
        let key = key.to_owned();
        self.on_dir(move |d| match d.metadata(&key) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, key: &str) -> std::io::Result<()> {
        let key = key.to_owned();
        self.on_dir(move |d| match d.remove_file(&key) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    async fn list(&self, prefix: &str) -> std::io::Result<Vec<BlobInfo>> {
        let prefix = prefix.to_owned();
        self.on_dir(move |d| list(d, &prefix)).await
    }

    fn describe(&self) -> String {
        format!("local:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::LocalBlobs;
    use crate::blobs::BlobStore;
    use futures::TryStreamExt;

    async fn streamed(blobs: &LocalBlobs, key: &str, range: std::ops::Range<u64>) -> Vec<u8> {
        let chunks: Vec<_> = blobs
            .stream(key, range)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(&dir.path().join("blobs")).unwrap();
        assert!(
            blobs
                .put_new("plugins/abc.wasm", b"hello".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !blobs
                .put_new("plugins/abc.wasm", b"other".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(blobs.get("plugins/abc.wasm").await.unwrap(), b"hello");
        assert_eq!(
            blobs.get_range("plugins/abc.wasm", 1..4).await.unwrap(),
            b"ell"
        );
        assert_eq!(blobs.head("plugins/abc.wasm").await.unwrap(), Some(5));
        assert_eq!(streamed(&blobs, "plugins/abc.wasm", 1..4).await, b"ell");
        assert_eq!(streamed(&blobs, "plugins/abc.wasm", 0..5).await, b"hello");
        assert!(blobs.stream("../outside", 0..1).await.is_err());
        assert_eq!(blobs.head("plugins/none.wasm").await.unwrap(), None);
        assert!(blobs.put("../outside", b"x".to_vec()).await.is_err());
        assert!(blobs.get("/etc/passwd").await.is_err());
        assert!(!dir.path().join("outside").exists());
        blobs
            .put("plugins/deeper/def.wasm", b"hi".to_vec())
            .await
            .unwrap();
        let mut listed: Vec<_> = blobs
            .list("plugins")
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.key, b.bytes))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("plugins/abc.wasm".into(), 5),
                ("plugins/deeper/def.wasm".into(), 2)
            ]
        );
        assert!(blobs.list("nothing-here").await.unwrap().is_empty());
        blobs.delete("plugins/abc.wasm").await.unwrap();
        assert!(blobs.get("plugins/abc.wasm").await.is_err());
        blobs.delete("plugins/abc.wasm").await.unwrap();
    }
}

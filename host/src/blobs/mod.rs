//! Blob storage for bytes the database only references: plugin components,
//! generated images, thumbnails and uploaded inputs. Keys are relative paths (`plugins/<sha256>.wasm`).
//! The embedded default is a directory under the data dir, reached through
//! cap-std so no key can escape it; S3-compatible storage comes with the
//! scale-out work.

pub mod signed;

use std::io::Write;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// A stored blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub bytes: u64,
    pub modified: std::time::SystemTime,
}

pub struct LocalBlobs {
    root: Dir,
}

impl LocalBlobs {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self {
            root: Dir::open_ambient_dir(path, ambient_authority())?,
        })
    }

    /// Writes `bytes` under `key` atomically (temp file, then rename); an
    /// existing blob of that key is left as it is (content-addressed keys).
    pub fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.put_new(key, bytes).map(|_| ())
    }

    /// Like `put`; true when this call created the blob.
    pub fn put_new(&self, key: &str, bytes: &[u8]) -> std::io::Result<bool> {
        if self.root.exists(key) {
            return Ok(false);
        }
        if let Some(parent) = Path::new(key)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            self.root.create_dir_all(parent)?;
        }
        let tmp = format!("{key}.tmp-{}", uuid::Uuid::now_v7().simple());
        let mut f = self.root.create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        self.root.rename(&tmp, &self.root, key)?;
        Ok(true)
    }

    pub fn get(&self, key: &str) -> std::io::Result<Vec<u8>> {
        self.root.read(key)
    }

    /// Every blob under the folder `prefix` (`images`, `inputs/<user>`), as
    /// (key, bytes, last modified); a missing folder has none. Unfinished
    /// writes (`.tmp-` files) are left out.
    pub fn list(&self, prefix: &str) -> std::io::Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        let mut folders = vec![prefix.trim_end_matches('/').to_owned()];
        while let Some(folder) = folders.pop() {
            let entries = match self.root.read_dir(&folder) {
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

    /// Removes the blob of `key`; a missing one is not an error.
    pub fn delete(&self, key: &str) -> std::io::Result<()> {
        match self.root.remove_file(key) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LocalBlobs;

    #[test]
    fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(&dir.path().join("blobs")).unwrap();
        blobs.put("plugins/abc.wasm", b"hello").unwrap();
        assert_eq!(blobs.get("plugins/abc.wasm").unwrap(), b"hello");
        assert!(blobs.put("../outside", b"x").is_err());
        assert!(blobs.get("/etc/passwd").is_err());
        assert!(!dir.path().join("outside").exists());
        blobs.put("plugins/deeper/def.wasm", b"hi").unwrap();
        let mut listed: Vec<_> = blobs
            .list("plugins")
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
        assert!(blobs.list("nothing-here").unwrap().is_empty());
        blobs.delete("plugins/abc.wasm").unwrap();
        assert!(blobs.get("plugins/abc.wasm").is_err());
        blobs.delete("plugins/abc.wasm").unwrap();
    }
}

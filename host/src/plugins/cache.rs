//! The caches of compiled plugins: linked and ready in memory (least
//! recently used dropped past a number of entries), and serialised on disk
//! per engine fingerprint (oldest files dropped past a size), written under
//! unique temporary names and renamed only after they are on disk.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Linked plugins kept in memory at most.
pub const MEMORY_ENTRIES: usize = 256;
/// Bytes of compiled code of the linked plugins kept in memory at most.
pub const MEMORY_BYTES: usize = 512 << 20;
/// Bytes of compiled code kept on disk at most.
pub const DISK_BYTES: u64 = 2 << 30;

/// Least recently used entries dropped past a count and a total size.
pub struct MemoryCache<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    clock: AtomicU64,
    max_entries: usize,
    max_bytes: usize,
}

struct Entry<V> {
    value: V,
    bytes: usize,
    used: u64,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> MemoryCache<K, V> {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("plugin cache");
        let entry = entries.get_mut(key)?;
        entry.used = now;
        Some(entry.value.clone())
    }

    /// Keeps `value` (of `bytes`), dropping the least recently used
    /// entries while over either bound (the newest always stays).
    pub fn insert(&self, key: K, value: V, bytes: usize) {
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("plugin cache");
        entries.insert(key.clone(), Entry { value, bytes, used });
        loop {
            let total: usize = entries.values().map(|e| e.bytes).sum();
            if entries.len() <= self.max_entries && total <= self.max_bytes {
                break;
            }
            let Some(oldest) = entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("plugin cache").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
    max_bytes: u64,
}

impl DiskCache {
    pub fn open(dir: PathBuf, fingerprint: &str, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            fingerprint: fingerprint.to_owned(),
            max_bytes,
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// The compiled component of `sha256`, if this engine wrote one.
    pub fn read(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `Component::serialize` of this
        // engine configuration (its fingerprint is in the name) into the
        // host's own data dir, and renamed into place only once complete.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "discarding unreadable compiled plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `component` for `sha256`, then drops the oldest files while
    /// the cache is over its size.
    pub fn write(&self, sha256: &str, component: &Component) {
        let Ok(code) = component.serialize() else {
            return;
        };
        let path = self.path(sha256);
        let tmp = self
            .dir
            .join(format!(".{sha256}.{}.tmp", uuid::Uuid::now_v7().simple()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&code)?;
            f.sync_all()
        });
        if written.and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        trim(&self.dir, self.max_bytes);
    }
}

/// Removes the least recently modified `.cwasm` files of `dir` until the
/// rest fit in `max_bytes`.
fn trim(dir: &Path, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cache_keeps_to_its_count_and_size() {
        let cache: MemoryCache<&str, u32> = MemoryCache::new(3, 100);
        cache.insert("a", 1, 10);
        cache.insert("b", 2, 10);
        cache.insert("c", 3, 10);
        assert_eq!(cache.get(&"a"), Some(1)); // a is now the most recent
        cache.insert("d", 4, 10);
        assert_eq!(
            (cache.len(), cache.get(&"b")),
            (3, None),
            "b was least recent"
        );
        // Past the size bound, the least recent go until it fits:
        // c, then a; d (10) and e (85) stay.
        cache.insert("e", 5, 85);
        assert_eq!(cache.len(), 2);
        assert_eq!((cache.get(&"c"), cache.get(&"a")), (None, None));
        assert_eq!((cache.get(&"d"), cache.get(&"e")), (Some(4), Some(5)));
        // One larger than the bound still stays (it is in use).
        cache.insert("f", 6, 500);
        assert_eq!((cache.len(), cache.get(&"f")), (1, Some(6)));
    }

    #[test]
    fn trim_drops_the_oldest_files_first() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let p = dir.path().join(format!("{name}.cwasm"));
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(dir.path().join("keep.txt"), vec![0u8; 1000]).unwrap();
        trim(dir.path(), 200);
        assert!(!dir.path().join("a.cwasm").exists());
        assert!(dir.path().join("b.cwasm").exists());
        assert!(dir.path().join("c.cwasm").exists());
        assert!(dir.path().join("keep.txt").exists());
    }
}

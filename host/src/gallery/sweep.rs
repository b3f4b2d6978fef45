//! The storage sweep: deletes files that nothing references any more —
//! images and thumbnails without a row (a host died between writing a
//! job's files and recording them), and inputs of jobs that have ended —
//! once they are older than a grace period, and never a file a job that
//! has not ended uses.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Gallery, GalleryResult};
use crate::blobs::BlobInfo;
use crate::queue::job::JobSpec;
use crate::store::images as img;

/// How old an unreferenced file must be before the sweep removes it: the
/// time a job's files may wait for the transaction that records them.
pub const SWEEP_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub bytes: u64,
}

/// The user a key belongs to (`images/<user>/<file>`).
fn owner(key: &str) -> Option<&str> {
    key.split('/').nth(1)
}

impl Gallery {
    async fn listed(&self, prefix: &'static str) -> GalleryResult<Vec<BlobInfo>> {
        Ok(self.blobs.list(prefix).await.map_err(anyhow::Error::from)?)
    }

    /// Removes unreferenced files last written before `now - SWEEP_GRACE`.
    pub async fn sweep(&self, now: DateTime<Utc>) -> GalleryResult<Swept> {
        let cutoff = std::time::SystemTime::from(now) - SWEEP_GRACE;
        let live: HashSet<String> = img::live_job_params(&self.db)
            .await?
            .iter()
            .filter_map(|p| serde_json::from_str::<JobSpec>(p).ok())
            .flat_map(|s| s.input_keys())
            .collect();
        let mut doomed: Vec<BlobInfo> = Vec::new();
        let mut rows_of: HashMap<String, HashSet<String>> = HashMap::new();
        for prefix in ["images", "thumbnails"] {
            for blob in self.listed(prefix).await? {
                if blob.modified > cutoff || live.contains(&blob.key) {
                    continue;
                }
                let Some(user) = owner(&blob.key) else {
                    continue;
                };
                if !rows_of.contains_key(user) {
                    let keys = img::keys_of_user(&self.db, user).await?;
                    rows_of.insert(user.to_owned(), keys.into_iter().collect());
                }
                if !rows_of[user].contains(&blob.key) {
                    doomed.push(blob);
                }
            }
        }
        let mut inputs_freed: HashMap<String, i64> = HashMap::new();
        for blob in self.listed("inputs").await? {
            if blob.modified <= cutoff && !live.contains(&blob.key) {
                if let Some(user) = owner(&blob.key) {
                    *inputs_freed.entry(user.to_owned()).or_default() += blob.bytes as i64;
                }
                doomed.push(blob);
            }
        }
        let swept = Swept {
            files: doomed.len(),
            bytes: doomed.iter().map(|b| b.bytes).sum(),
        };
        for b in doomed {
            if let Err(e) = self.blobs.delete(&b.key).await {
                tracing::warn!(key = %b.key, error = %e, "sweep: deleting a file");
            }
        }
        for (user, bytes) in inputs_freed {
            let mut tx = self.db.begin().await?;
            img::release_other_bytes(&mut tx, &user, bytes).await?;
            tx.commit().await?;
        }
        if swept.files > 0 {
            tracing::info!(
                files = swept.files,
                bytes = swept.bytes,
                "storage sweep removed unreferenced files"
            );
        }
        Ok(swept)
    }
}

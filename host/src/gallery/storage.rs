//! Storage a user takes against their plan's quota, from the counter the
//! store keeps (one row read, never a SUM over images).

use serde::Serialize;

use super::{Gallery, GalleryError, GalleryResult};
use crate::billing::plans::Catalogue;
use crate::store::Db;
use crate::store::images as img;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    /// Originals and thumbnails of gallery images.
    pub images: i64,
    /// Stored workflow definitions.
    pub workflows: i64,
    /// Inputs of generation requests.
    pub other: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StorageUsage {
    pub used_bytes: i64,
    pub quota_bytes: i64,
    pub used_percentage: f64,
    pub breakdown: Breakdown,
}

/// Refuses new bytes once the user's storage has reached their tier's
/// quota (a job that crosses it completes; the next is refused).
pub async fn check_quota(
    db: &Db,
    plans: &Catalogue,
    user_id: &str,
    tier: &str,
) -> GalleryResult<()> {
    let quota = i64::try_from(plans.tier(tier).storage_quota_bytes()).unwrap_or(i64::MAX);
    // The counter as the (cached) profile shows it.
    use crate::store::profiles::{Part, read};
    let used = read(db, user_id, &[Part::Storage])
        .await?
        .map_or(0, |p| p.storage_used);
    if used >= quota {
        return Err(GalleryError::StorageExceeded { used, quota });
    }
    Ok(())
}

impl Gallery {
    pub async fn usage(&self, user_id: &str, tier: &str) -> GalleryResult<StorageUsage> {
        let stored = img::storage_of_user(&self.db, user_id).await?;
        let quota = i64::try_from(self.plans.tier(tier).storage_quota_bytes()).unwrap_or(i64::MAX);
        let used = stored.total();
        let pct = if quota > 0 {
            used as f64 * 100.0 / quota as f64
        } else {
            100.0
        };
        Ok(StorageUsage {
            used_bytes: used,
            quota_bytes: quota,
            used_percentage: (pct * 100.0).round() / 100.0,
            breakdown: Breakdown {
                images: stored.image_bytes,
                workflows: stored.workflow_bytes,
                other: stored.other_bytes,
            },
        })
    }
}

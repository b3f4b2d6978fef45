//! A user's images: list, look at, star, share, delete, upload.

use chrono::{DateTime, Duration, Utc};

use super::{Gallery, GalleryError, GalleryResult, invalid, storage};
use crate::imaging::gate::{self, GateError};
use crate::queue::results;
use crate::store::images::{self as img, ImageFilter, ImageRow};
use crate::store::{Page, new_id};

/// Largest upload taken (bytes of the encoded file).
pub const MAX_UPLOAD_BYTES: usize = 20 << 20;
/// Largest side of an upload unless configured (`upload_max_side`).
pub const DEFAULT_UPLOAD_MAX_SIDE: u32 = 2048;
/// Longest share a link may be made for.
pub const MAX_SHARE_HOURS: u32 = 24 * 365;

/// Formats an upload may come in, by its first bytes.
fn upload_format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpeg")
    } else if bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    }
}

impl Gallery {
    /// The user's image, or `NotFound` (also for another user's).
    pub async fn image(&self, user_id: &str, id: &str) -> GalleryResult<ImageRow> {
        img::get(&self.db, id)
            .await?
            .filter(|r| r.user_id == user_id)
            .ok_or(GalleryError::NotFound)
    }

    /// A page of the user's images; a board filter must name their board.
    pub async fn list(
        &self,
        f: &ImageFilter<'_>,
        page: Page,
    ) -> GalleryResult<(Vec<ImageRow>, i64)> {
        if let Some(board) = f.board_id {
            self.board(f.user_id, board).await?;
        }
        Ok(img::list(&self.db, f, page).await?)
    }

    /// The boards (id, name) an image of the user is on.
    pub async fn boards_of(&self, image_id: &str) -> GalleryResult<Vec<(String, String)>> {
        Ok(img::boards_of_image(&self.db, image_id).await?)
    }

    pub async fn star(&self, user_id: &str, id: &str, starred: bool) -> GalleryResult<()> {
        self.image(user_id, id).await?;
        img::set_starred(&self.db.write().await, id, starred).await?;
        self.revisions.bump(user_id);
        Ok(())
    }

    /// Shares an image by a link (the same token while it stays shared),
    /// until revoked or for `hours`.
    pub async fn share(
        &self,
        user_id: &str,
        id: &str,
        hours: Option<u32>,
    ) -> GalleryResult<(String, Option<DateTime<Utc>>)> {
        if let Some(h) = hours
            && !(1..=MAX_SHARE_HOURS).contains(&h)
        {
            return Err(invalid(
                "expires_in_hours",
                format!("1 to {MAX_SHARE_HOURS}"),
            ));
        }
        let row = self.image(user_id, id).await?;
        let token = match row.live_share(Utc::now()) {
            Some(t) => t.to_owned(),
            None => crate::auth::tokens::new_secret()[..32].to_owned(),
        };
        let expires_at = hours.map(|h| Utc::now() + Duration::hours(i64::from(h)));
        img::set_share(&self.db.write().await, id, Some(&token), expires_at).await?;
        self.revisions.bump(user_id);
        Ok((token, expires_at))
    }

    pub async fn unshare(&self, user_id: &str, id: &str) -> GalleryResult<()> {
        self.image(user_id, id).await?;
        img::set_share(&self.db.write().await, id, None, None).await?;
        self.revisions.bump(user_id);
        Ok(())
    }

    /// The image behind a live share link.
    pub async fn shared(&self, token: &str) -> GalleryResult<ImageRow> {
        if token.len() > 64 {
            return Err(GalleryError::NotFound);
        }
        img::by_share_token(&self.db, token)
            .await?
            .filter(|r| r.live_share(Utc::now()).is_some())
            .ok_or(GalleryError::NotFound)
    }

    /// Deletes an image: its row and board links, then its files — unless
    /// a job that has not ended uses it as input (its files stay for it).
    pub async fn delete(&self, user_id: &str, id: &str) -> GalleryResult<()> {
        let mut tx = self.db.begin().await?;
        let row = img::get_in(&mut tx, id)
            .await?
            .filter(|r| r.user_id == user_id)
            .ok_or(GalleryError::NotFound)?;
        img::delete_in(&mut tx, &row).await?;
        tx.commit().await?;
        self.revisions.bump(user_id);
        if img::used_by_live_job(&self.db, &row.blob_key).await? {
            tracing::info!(image = %row.id, "deleted image kept on disk for a job that uses it");
            return Ok(());
        }
        for k in [row.blob_key, row.thumb_key] {
            if let Err(e) = self.blobs.delete(&k).await {
                tracing::warn!(key = %k, error = %e, "deleting an image file");
            }
        }
        Ok(())
    }

    /// Stores an uploaded PNG, JPEG or WebP as a gallery image, counted
    /// against storage. Its size is read from its header first (at most
    /// `upload_max_side` a side); then it is decoded once, through the
    /// decode gate, into the stored PNG and its thumbnail.
    pub async fn upload(
        &self,
        user_id: &str,
        tier: &str,
        bytes: Vec<u8>,
    ) -> GalleryResult<ImageRow> {
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(invalid("file", format!("at most {MAX_UPLOAD_BYTES} bytes")));
        }
        if upload_format(&bytes).is_none() {
            return Err(invalid("file", "PNG, JPEG or WebP only"));
        }
        let refused = |e: GateError| invalid("file", e.to_string());
        let (width, height) = gate::measure(&bytes, self.upload_max_side).map_err(refused)?;
        storage::check_quota(&self.db, &self.plans, user_id, tier).await?;
        let id = new_id();
        let encoded = self
            .decoding
            .run(move || gate::reencode(&bytes, width, height))
            .await?
            .map_err(|e| refused(GateError::Unreadable(e)))?;
        let stored = results::store_encoded(&self.blobs, user_id, &id, encoded)
            .await
            .map_err(|e| GalleryError::Internal(anyhow::anyhow!(e)))?;
        let row = ImageRow {
            id,
            user_id: user_id.to_owned(),
            job_id: None,
            blob_key: stored.blob_key,
            thumb_key: stored.thumb_key,
            width: i64::from(stored.width),
            height: i64::from(stored.height),
            file_size: stored.file_size as i64,
            mime_type: "image/png".into(),
            is_starred: false,
            is_public: false,
            share_token: None,
            metadata: r#"{"source":"upload"}"#.into(),
            created_at: Utc::now(),
            thumb_size: stored.thumb_size as i64,
            share_expires_at: None,
        };
        let saved = async {
            let mut tx = self.db.begin().await?;
            img::insert(&mut tx, &row).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = saved {
            for k in [&row.blob_key, &row.thumb_key] {
                let _ = self.blobs.delete(k).await;
            }
            return Err(e.into());
        }
        self.revisions.bump(user_id);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::upload_format;

    #[test]
    fn uploads_are_recognised_by_their_bytes() {
        assert_eq!(upload_format(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(upload_format(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpeg"));
        assert_eq!(upload_format(b"RIFF\0\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(upload_format(b"GIF89a......"), None);
        assert_eq!(upload_format(b"<svg"), None);
    }
}

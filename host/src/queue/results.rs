//! Turning a worker's output into stored files: each image is checked to be
//! a PNG, written to blob storage with a JPEG thumbnail, and described for
//! its `images` row.

use crate::blobs::Blobs;
use crate::imaging::{self, Encoded};

#[derive(Debug, Clone)]
pub struct StoredImage {
    pub id: String,
    pub blob_key: String,
    pub thumb_key: String,
    pub width: u32,
    pub height: u32,
    pub file_size: usize,
    pub thumb_size: usize,
}

/// Stores one PNG with its thumbnail (one decode, on the blocking pool,
/// gives the thumbnail and the size; then the two writes, together).
pub async fn store_png(
    blobs: &Blobs,
    user_id: &str,
    image_id: &str,
    png: Vec<u8>,
) -> Result<StoredImage, String> {
    let encoded = tokio::task::spawn_blocking(move || imaging::gate::with_thumbnail(png))
        .await
        .map_err(|e| e.to_string())??;
    store_encoded(blobs, user_id, image_id, encoded).await
}

/// Writes an image decoded once (`imaging::Encoded`) and its thumbnail
/// under the keys of `image_id`; neither stays when one write fails.
pub async fn store_encoded(
    blobs: &Blobs,
    user_id: &str,
    image_id: &str,
    encoded: Encoded,
) -> Result<StoredImage, String> {
    let Encoded {
        png,
        thumbnail,
        width,
        height,
    } = encoded;
    let blob_key = format!("images/{user_id}/{image_id}.png");
    let thumb_key = format!("thumbnails/{user_id}/{image_id}.jpg");
    let (file_size, thumb_size) = (png.len(), thumbnail.len());
    // The two writes (each made durable) side by side.
    let (image, thumb) = tokio::join!(blobs.put(&blob_key, png), blobs.put(&thumb_key, thumbnail));
    let failed = match (&image, &thumb) {
        (Err(e), _) => Some(format!("writing image: {e}")),
        (_, Err(e)) => Some(format!("writing thumbnail: {e}")),
        _ => None,
    };
    if let Some(reason) = failed {
        if image.is_ok() {
            let _ = blobs.delete(&blob_key).await;
        }
        if thumb.is_ok() {
            let _ = blobs.delete(&thumb_key).await;
        }
        return Err(reason);
    }
    Ok(StoredImage {
        id: image_id.to_owned(),
        blob_key,
        thumb_key,
        width,
        height,
        file_size,
        thumb_size,
    })
}

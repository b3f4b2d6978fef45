//! Turning a worker's output into stored files: each image is checked to be
//! a PNG, written to blob storage with a JPEG thumbnail, and described for
//! its `images` row.

use crate::blobs::LocalBlobs;
use crate::imaging;

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

/// Stores one generated PNG (blocking: decode, thumbnail, file writes).
pub fn store_png(
    blobs: &LocalBlobs,
    user_id: &str,
    image_id: &str,
    png: &[u8],
) -> Result<StoredImage, String> {
    let decoded = imaging::decode_png(png)?;
    let thumb = imaging::thumbnail_jpeg(&decoded)?;
    let blob_key = format!("images/{user_id}/{image_id}.png");
    let thumb_key = format!("thumbnails/{user_id}/{image_id}.jpg");
    blobs
        .put(&blob_key, png)
        .map_err(|e| format!("writing image: {e}"))?;
    blobs
        .put(&thumb_key, &thumb)
        .map_err(|e| format!("writing thumbnail: {e}"))?;
    Ok(StoredImage {
        id: image_id.to_owned(),
        blob_key,
        thumb_key,
        width: decoded.width(),
        height: decoded.height(),
        file_size: png.len(),
        thumb_size: thumb.len(),
    })
}

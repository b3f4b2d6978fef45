//! Turning a worker's output into stored files: each image is checked to be
//! a PNG, written to blob storage with a JPEG thumbnail, and described for
//! its `images` row.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

use crate::blobs::LocalBlobs;

/// Longest side of a thumbnail.
pub const THUMBNAIL_SIZE: u32 = 256;

#[derive(Debug, Clone)]
pub struct StoredImage {
    pub id: String,
    pub blob_key: String,
    pub thumb_key: String,
    pub width: u32,
    pub height: u32,
    pub file_size: usize,
}

/// Stores one generated PNG (blocking: decode, thumbnail, file writes).
pub fn store_png(
    blobs: &LocalBlobs,
    user_id: &str,
    image_id: &str,
    png: &[u8],
) -> Result<StoredImage, String> {
    let reader = ImageReader::with_format(Cursor::new(png), ImageFormat::Png);
    let decoded = reader
        .decode()
        .map_err(|e| format!("not a PNG image: {e}"))?;
    let thumb = decoded.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE).to_rgb8();
    let mut thumb_bytes = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut thumb_bytes), ImageFormat::Jpeg)
        .map_err(|e| format!("encoding thumbnail: {e}"))?;
    let blob_key = format!("images/{user_id}/{image_id}.png");
    let thumb_key = format!("thumbnails/{user_id}/{image_id}.jpg");
    blobs
        .put(&blob_key, png)
        .map_err(|e| format!("writing image: {e}"))?;
    blobs
        .put(&thumb_key, &thumb_bytes)
        .map_err(|e| format!("writing thumbnail: {e}"))?;
    Ok(StoredImage {
        id: image_id.to_owned(),
        blob_key,
        thumb_key,
        width: decoded.width(),
        height: decoded.height(),
        file_size: png.len(),
    })
}

//! Turning a worker's output into stored files: each image is checked to be
//! a PNG, written to blob storage with a JPEG thumbnail, and described for
//! its `images` row.

use crate::blobs::Blobs;
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

/// Stores one PNG with its thumbnail (decoding and scaling on the
/// blocking pool, then the two writes).
pub async fn store_png(
    blobs: &Blobs,
    user_id: &str,
    image_id: &str,
    png: Vec<u8>,
) -> Result<StoredImage, String> {
    let (png, thumb, width, height) = tokio::task::spawn_blocking(move || {
        let decoded = imaging::decode_png(&png)?;
        let thumb = imaging::thumbnail_jpeg(&decoded)?;
        Ok::<_, String>((png, thumb, decoded.width(), decoded.height()))
    })
    .await
    .map_err(|e| e.to_string())??;
    let blob_key = format!("images/{user_id}/{image_id}.png");
    let thumb_key = format!("thumbnails/{user_id}/{image_id}.jpg");
    let (file_size, thumb_size) = (png.len(), thumb.len());
    blobs
        .put(&blob_key, png)
        .await
        .map_err(|e| format!("writing image: {e}"))?;
    if let Err(e) = blobs.put(&thumb_key, thumb).await {
        let _ = blobs.delete(&blob_key).await;
        return Err(format!("writing thumbnail: {e}"));
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

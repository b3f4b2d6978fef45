//! The one gate every decode of bytes from outside passes (uploads to the
//! gallery, a request's input images): the size is read from the header
//! first, which costs nothing; only an image within the caller's largest
//! side is decoded, on the blocking pool, at most as many at once as the
//! gate has permits, with decoder limits sized to that header — so no
//! decoder allocates past what an accepted image needs. One decode serves
//! the pixel check, the stored PNG, the thumbnail and the stored size.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Decodes at most as many images at once as it has permits.
#[derive(Clone)]
pub struct DecodeGate {
    permits: Arc<Semaphore>,
}

/// Why an image did not pass the gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Not an image the codecs read (or its pixels break its header).
    #[error("not a readable image: {0}")]
    Unreadable(String),
    /// Larger than allowed, by its header; nothing was decoded.
    #[error("{width}x{height} pixels; at most {max_side}x{max_side}")]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
    },
}

/// An image decoded once and made ready to store.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub png: Vec<u8>,
    /// JPEG, at most `THUMBNAIL_SIZE` on its longer side.
    pub thumbnail: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Width and height from the header, refused past `max_side` on either
/// side, before any pixel is decoded.
pub fn measure(bytes: &[u8], max_side: u32) -> Result<(u32, u32), GateError> {
    let (width, height) = super::dimensions(bytes).map_err(GateError::Unreadable)?;
    if width > max_side || height > max_side {
        return Err(GateError::TooLarge {
            width,
            height,
            max_side,
        });
    }
    Ok((width, height))
}

/// Decodes an image measured as `width` x `height` and re-encodes it as a
/// PNG with its thumbnail: one decode for all three.
pub fn reencode(bytes: &[u8], width: u32, height: u32) -> Result<Encoded, String> {
    let decoded = super::decode_sized(bytes, width, height)?;
    let png = super::encode_png_of(&decoded)?;
    let thumbnail = super::thumbnail_jpeg(&decoded)?;
    Ok(Encoded {
        png,
        thumbnail,
        width,
        height,
    })
}

/// A PNG kept as it is, with its thumbnail and size from one decode.
pub fn with_thumbnail(png: Vec<u8>) -> Result<Encoded, String> {
    let decoded = super::decode_png(&png)?;
    let thumbnail = super::thumbnail_jpeg(&decoded)?;
    Ok(Encoded {
        width: decoded.width(),
        height: decoded.height(),
        png,
        thumbnail,
    })
}

impl DecodeGate {
    /// At most `permits` decodes at once (at least one).
    pub fn new(permits: usize) -> Self {
        Self::from(Arc::new(Semaphore::new(permits.max(1))))
    }

    /// As many decodes at once as the machine has cores.
    pub fn for_cores() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
    }

    /// The permits, for code that holds them as a semaphore.
    pub fn semaphore(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Runs `work` on the blocking pool once a permit is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.clone().acquire_owned().await?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

impl From<Arc<Semaphore>> for DecodeGate {
    fn from(permits: Arc<Semaphore>) -> Self {
        Self { permits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, RgbaImage};

    /// A small PNG whose header says `side` x `side` black grey pixels
    /// (a decoder expands it into `side`² bytes or more).
    fn bomb(side: u32) -> Vec<u8> {
        let img = GrayImage::from_pixel(side, side, Luma([0]));
        let mut out = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn the_header_decides_before_any_pixel_is_decoded() {
        let png = bomb(4096);
        assert!(png.len() < 128 << 10, "{} bytes", png.len());
        match measure(&png, 2048) {
            Err(GateError::TooLarge {
                width: 4096,
                height: 4096,
                max_side: 2048,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(measure(&png, 4096).unwrap(), (4096, 4096));
        assert!(matches!(
            measure(b"not an image", 2048),
            Err(GateError::Unreadable(_))
        ));
    }

    #[test]
    fn a_decode_is_held_to_its_header() {
        let img = RgbaImage::from_pixel(64, 32, image::Rgba([1, 2, 3, 255]));
        let png = super::super::encode_png(&img).unwrap();
        let done = reencode(&png, 64, 32).unwrap();
        assert_eq!((done.width, done.height), (64, 32));
        assert_eq!(super::super::decode(&done.png).unwrap(), img);
        assert!(super::super::decode(&done.thumbnail).is_ok());
        // Limits of a smaller image than the bytes hold: refused.
        assert!(reencode(&png, 32, 32).is_err());
        let kept = with_thumbnail(png.clone()).unwrap();
        assert_eq!((kept.png, kept.width, kept.height), (png, 64, 32));
    }

    #[tokio::test]
    async fn the_gate_runs_no_more_decodes_at_once_than_its_permits() {
        let gate = DecodeGate::new(1);
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs = (0..4).map(|_| {
            let (busy, most) = (busy.clone(), most.clone());
            gate.run(move || {
                use std::sync::atomic::Ordering::SeqCst;
                let now = busy.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                reencode(&bomb(64), 64, 64).unwrap();
                busy.fetch_sub(1, SeqCst);
            })
        });
        for done in futures::future::join_all(runs).await {
            done.unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            measure(&bomb(4096), 2048).unwrap_err().to_string(),
            "4096x4096 pixels; at most 2048x2048"
        );
    }
}

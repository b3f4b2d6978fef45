//! The host side of a job image a guest holds a handle to (the
//! `pingvas:plugin/images.image` resource of every ABI version): pixels
//! live on the host, shared and reference-counted.

use std::sync::Arc;

/// Largest image a guest may create (pixels).
pub const MAX_PIXELS: u64 = 4096 * 4096;

/// An RGBA8 image of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageHandle {
    pub width: u32,
    pub height: u32,
    pub rgba: Arc<Vec<u8>>,
    pub metadata: Vec<(String, String)>,
    /// Bytes this image holds against the call's host budget (the guest
    /// created it or set its metadata); 0 for the job's own images.
    pub charged: usize,
    /// The guest created it (it holds one of the call's image handles).
    pub created: bool,
}

impl ImageHandle {
    pub fn new(width: u32, height: u32, rgba: Vec<u8>) -> Result<Self, String> {
        if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(format!("image size {width}x{height} out of range"));
        }
        let expected = width as usize * height as usize * 4;
        if rgba.len() != expected {
            return Err(format!(
                "expected {expected} bytes of RGBA for {width}x{height}, got {}",
                rgba.len()
            ));
        }
        Ok(Self {
            width,
            height,
            rgba: Arc::new(rgba),
            metadata: Vec::new(),
            charged: 0,
            created: false,
        })
    }
}

//! `images`: job images as resources. Pixels live on the host (shared,
//! reference-counted); a guest gets a handle and copies pixels in only when
//! it calls `read-rgba`.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::images::{Host, HostImage};
use crate::plugins::state::PluginState;

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

impl Host for PluginState {
    async fn create(
        &mut self,
        width: u32,
        height: u32,
        rgba: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<ImageHandle>, String>> {
        let bytes = rgba.len();
        let mut img = match ImageHandle::new(width, height, rgba) {
            Ok(img) => img,
            Err(e) => return Ok(Err(e)),
        };
        let limits = self.limiter.limits;
        if let Err(what) = self.budget.take(&limits, bytes, true) {
            // Past a budget the call ends; `classify` reports which.
            wasmtime::bail!("{what} budget exceeded");
        }
        img.charged = bytes;
        img.created = true;
        Ok(Ok(self.table.push(img)?))
    }
}

impl HostImage for PluginState {
    async fn width(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&img)?.width)
    }

    async fn height(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&img)?.height)
    }

    async fn read_rgba(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&img)?.rgba.as_ref().clone())
    }

    async fn metadata(
        &mut self,
        img: Resource<ImageHandle>,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.table.get(&img)?.metadata.clone())
    }

    async fn set_metadata(
        &mut self,
        img: Resource<ImageHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        if key.len() > 256 || value.len() > 16 << 10 {
            wasmtime::bail!("image metadata limit reached");
        }
        let bytes = key.len() + value.len();
        let limits = self.limiter.limits;
        if let Err(what) = self.budget.take(&limits, bytes, false) {
            wasmtime::bail!("{what} budget exceeded");
        }
        let image = self.table.get_mut(&img)?;
        if image.metadata.len() >= 256 {
            wasmtime::bail!("image metadata limit reached");
        }
        image.charged += bytes;
        match image.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => image.metadata.push((key, value)),
        }
        Ok(())
    }

    async fn drop(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<()> {
        let image = self.table.delete(img)?;
        self.budget.give_back(image.charged, image.created);
        Ok(())
    }
}

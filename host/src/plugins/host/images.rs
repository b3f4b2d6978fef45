//! `images`: job images as resources. Pixels live on the host (shared,
//! reference-counted); a guest gets a handle and copies pixels in only when
//! it calls `read-rgba`.

use wasmtime::component::Resource;

use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::images::{Host, HostImage};
use crate::plugins::state::PluginState;

use crate::plugins::image_handle::ImageHandle;

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

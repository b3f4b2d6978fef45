//! Host bindings of `pingvas:plugin@0.2.0`. `node` and `workflow` are the
//! worlds of 0.1.0 under a new package version: their imports are linked
//! next to 0.1.0's (one linker serves both), each call delegating to the
//! one host implementation, and their exports are called through the
//! 0.1.0 bindings — export names carry no version and component types are
//! structural, so one set of calls runs both. Billing adapters speak 0.2.0
//! only.

use wasmtime::component::Resource;

use crate::plugins::host::images::ImageHandle;
use crate::plugins::state::PluginState;

use super::v0_1_0::node::pingvas::plugin as v1;

/// The version of the `pingvas:plugin` package these bindings speak.
pub const VERSION: &str = "0.2.0";

pub mod node {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "node",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/images.image": crate::plugins::host::images::ImageHandle,
        },
    });
}

pub mod billing {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "billing-adapter",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": super::node::pingvas::plugin::types,
            "pingvas:plugin/log": super::node::pingvas::plugin::log,
        },
    });
}

use node::pingvas::plugin as v2;

impl v2::types::Host for PluginState {}
impl v2::node_types::Host for PluginState {}
impl billing::pingvas::plugin::billing_types::Host for PluginState {}

impl v2::log::Host for PluginState {
    async fn log(&mut self, level: v2::log::Level, message: String) -> wasmtime::Result<()> {
        use v1::log::Level as L1;
        use v2::log::Level as L2;
        let level = match level {
            L2::Trace => L1::Trace,
            L2::Debug => L1::Debug,
            L2::Info => L1::Info,
            L2::Warn => L1::Warn,
            L2::Error => L1::Error,
        };
        v1::log::Host::log(self, level, message).await
    }
}

impl v2::images::Host for PluginState {
    async fn create(
        &mut self,
        width: u32,
        height: u32,
        rgba: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<ImageHandle>, String>> {
        v1::images::Host::create(self, width, height, rgba).await
    }
}

impl v2::images::HostImage for PluginState {
    async fn width(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        v1::images::HostImage::width(self, img).await
    }

    async fn height(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        v1::images::HostImage::height(self, img).await
    }

    async fn read_rgba(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<Vec<u8>> {
        v1::images::HostImage::read_rgba(self, img).await
    }

    async fn metadata(
        &mut self,
        img: Resource<ImageHandle>,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        v1::images::HostImage::metadata(self, img).await
    }

    async fn set_metadata(
        &mut self,
        img: Resource<ImageHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        v1::images::HostImage::set_metadata(self, img, key, value).await
    }

    async fn drop(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<()> {
        v1::images::HostImage::drop(self, img).await
    }
}

impl From<v2::types::PluginError> for v1::types::PluginError {
    fn from(e: v2::types::PluginError) -> Self {
        match e {
            v2::types::PluginError::InvalidInput(m) => Self::InvalidInput(m),
            v2::types::PluginError::Rejected(m) => Self::Rejected(m),
            v2::types::PluginError::Failed(m) => Self::Failed(m),
        }
    }
}

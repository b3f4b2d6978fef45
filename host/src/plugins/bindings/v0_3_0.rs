//! Host bindings of `pingvas:plugin@0.3.0`: the `billing-adapter` world,
//! whose payment events say why their invoice was raised. A record that
//! gains a field is a new type to the component model, so 0.2.x adapters
//! keep their own binding (`v0_2_0::billing`) and this one is linked beside
//! it; its imports (`types`, `log`, `http`, `config`) are 0.2.0's under a
//! new version, each call delegating to the one host implementation.
//!
//! The billing types of this version are the host's (`runtime` re-exports
//! them); `v0_2_0` maps its own to them.

use super::v0_1_0::node::pingvas::plugin as v1;
use super::v0_2_0::billing::pingvas::plugin as v2;
use crate::plugins::state::PluginState;

/// The version of the `pingvas:plugin` package these bindings speak.
pub const VERSION: &str = "0.3.0";

pub mod billing {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.3.0",
        world: "billing-adapter",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use billing::pingvas::plugin as v3;

impl v3::types::Host for PluginState {}
impl v3::billing_types::Host for PluginState {}

impl v3::log::Host for PluginState {
    async fn log(&mut self, level: v3::log::Level, message: String) -> wasmtime::Result<()> {
        use v1::log::Level as L1;
        use v3::log::Level as L3;
        let level = match level {
            L3::Trace => L1::Trace,
            L3::Debug => L1::Debug,
            L3::Info => L1::Info,
            L3::Warn => L1::Warn,
            L3::Error => L1::Error,
        };
        v1::log::Host::log(self, level, message).await
    }
}

impl v3::config::Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        v2::config::Host::get(self, key).await
    }

    async fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        v2::config::Host::secret(self, key).await
    }
}

impl v3::http::Host for PluginState {
    async fn send(
        &mut self,
        req: v3::http::Request,
    ) -> wasmtime::Result<Result<v3::http::Response, v3::http::HttpError>> {
        let req = v2::http::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        Ok(v2::http::Host::send(self, req)
            .await?
            .map(|r| v3::http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(|e| match e {
                v2::http::HttpError::Denied(m) => v3::http::HttpError::Denied(m),
                v2::http::HttpError::Timeout => v3::http::HttpError::Timeout,
                v2::http::HttpError::Failed(m) => v3::http::HttpError::Failed(m),
            }))
    }
}

impl From<v3::types::PluginError> for v1::types::PluginError {
    fn from(e: v3::types::PluginError) -> Self {
        match e {
            v3::types::PluginError::InvalidInput(m) => Self::InvalidInput(m),
            v3::types::PluginError::Rejected(m) => Self::Rejected(m),
            v3::types::PluginError::Failed(m) => Self::Failed(m),
        }
    }
}

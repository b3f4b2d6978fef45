//! `config`: operator settings and secrets of a billing adapter.

use crate::plugins::bindings::v0_2_0::billing::pingvas::plugin::config::Host;
use crate::plugins::state::PluginState;

impl Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.settings.get(&key).cloned())
    }

    async fn secret(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.secrets.get(&key).cloned())
    }
}

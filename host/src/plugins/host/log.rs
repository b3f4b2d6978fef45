//! `log`: a guest's log lines, tagged with the plugin, into `tracing`.

use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::log::{Host, Level};
use crate::plugins::state::PluginState;

/// Longest log line kept; the rest is cut.
const MAX_LINE: usize = 4096;

impl Host for PluginState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LINE {
            let cut = (0..=MAX_LINE)
                .rev()
                .find(|i| message.is_char_boundary(*i))
                .unwrap_or(0);
            message.truncate(cut);
        }
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

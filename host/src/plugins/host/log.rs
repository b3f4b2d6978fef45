//! `log`: a guest's log lines, tagged with the plugin, into `tracing` —
//! at most `Limits::log_lines` lines and `Limits::output_bytes` bytes a
//! call (the rest is dropped and counted), at most at `warn` level, with
//! control characters escaped so a guest cannot forge log lines.

use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::log::{Host, Level};
use crate::plugins::output::escape_controls;
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
        let message = escape_controls(&message);
        let limits = self.limiter.limits;
        let b = &mut self.budget;
        if b.log_lines >= limits.log_lines || b.log_bytes + message.len() > limits.output_bytes {
            b.log_dropped += 1;
            return Ok(());
        }
        b.log_lines += 1;
        b.log_bytes += message.len();
        let plugin = self.plugin.as_str();
        // A guest's own errors are warnings of the host: they are about its
        // job, not about the server.
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn | Level::Error => tracing::warn!(plugin, "{message}"),
        }
        Ok(())
    }
}

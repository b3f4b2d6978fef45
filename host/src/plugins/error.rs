//! Why a plugin call failed, naming the plugin and the cause. The host
//! keeps serving whatever a plugin does.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PluginError {
    #[error("plugin {plugin}: not a valid component: {reason}")]
    InvalidComponent { plugin: String, reason: String },
    #[error("plugin {plugin}: does not target the {expected} world: {reason}")]
    WrongWorld {
        plugin: String,
        expected: String,
        reason: String,
    },
    #[error("plugin {plugin}: ran past its {limit:?} deadline")]
    Timeout { plugin: String, limit: Duration },
    #[error("plugin {plugin}: ran out of fuel ({fuel} instructions)")]
    OutOfFuel { plugin: String, fuel: u64 },
    #[error("plugin {plugin}: hit its memory limit of {limit_bytes} bytes")]
    MemoryLimit { plugin: String, limit_bytes: usize },
    #[error("plugin {plugin}: overflowed its stack")]
    StackOverflow { plugin: String },
    #[error("plugin {plugin}: exceeded its {budget} budget")]
    ResourceLimit { plugin: String, budget: String },
    #[error("plugin {plugin}: trapped: {trap}{}", stderr_suffix(.stderr))]
    Trapped {
        plugin: String,
        trap: String,
        stderr: String,
    },
    #[error("plugin {plugin}: bad output: {reason}")]
    BadOutput { plugin: String, reason: String },
    #[error("plugin {plugin}: invalid input: {message}")]
    InvalidInput { plugin: String, message: String },
    #[error("plugin {plugin}: rejected: {message}")]
    Rejected { plugin: String, message: String },
    #[error("plugin {plugin}: failed: {message}")]
    Failed { plugin: String, message: String },
    #[error("plugin {plugin}: host error: {reason}")]
    Host { plugin: String, reason: String },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {})", stderr.trim())
    }
}

impl PluginError {
    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::InvalidComponent { plugin, .. }
            | PluginError::WrongWorld { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::OutOfFuel { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::StackOverflow { plugin }
            | PluginError::ResourceLimit { plugin, .. }
            | PluginError::Trapped { plugin, .. }
            | PluginError::BadOutput { plugin, .. }
            | PluginError::InvalidInput { plugin, .. }
            | PluginError::Rejected { plugin, .. }
            | PluginError::Failed { plugin, .. }
            | PluginError::Host { plugin, .. } => plugin,
        }
    }

    /// What a job's owner may be told: the plugin and the cause, plus the
    /// message a node returned on purpose when it refused or failed the
    /// job. Trap text, captured output and host details stay in the log.
    pub fn user_reason(&self) -> String {
        match self {
            PluginError::InvalidInput { plugin, message }
            | PluginError::Rejected { plugin, message }
            | PluginError::Failed { plugin, message } => {
                format!("{plugin}: {}: {message}", self.cause())
            }
            other => format!("{}: {}", other.plugin(), other.cause()),
        }
    }

    /// A short machine-readable name of the cause.
    pub fn cause(&self) -> &'static str {
        match self {
            PluginError::InvalidComponent { .. } => "invalid_component",
            PluginError::WrongWorld { .. } => "wrong_world",
            PluginError::Timeout { .. } => "timeout",
            PluginError::OutOfFuel { .. } => "out_of_fuel",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::StackOverflow { .. } => "stack_overflow",
            PluginError::ResourceLimit { .. } => "resource_limit",
            PluginError::Trapped { .. } => "trap",
            PluginError::BadOutput { .. } => "bad_output",
            PluginError::InvalidInput { .. } => "invalid_input",
            PluginError::Rejected { .. } => "rejected",
            PluginError::Failed { .. } => "failed",
            PluginError::Host { .. } => "host_error",
        }
    }
}

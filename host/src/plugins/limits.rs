//! Per-call budgets of a plugin and the store limiter that enforces the
//! memory, table and instance caps (and remembers when one was hit).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

use super::PluginKind;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest linear memory, bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Instruction budget when the engine counts fuel.
    pub fuel: Option<u64>,
    pub table_elements: usize,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// Bytes a guest may hand the host in one host call.
    pub hostcall_bytes: usize,
    /// Bytes of stdout + stderr kept for the log.
    pub output_bytes: usize,
}

impl Limits {
    pub fn for_kind(kind: PluginKind) -> Self {
        let timeout = match kind {
            PluginKind::Node => Duration::from_secs(10),
            PluginKind::Workflow => Duration::from_secs(300),
            PluginKind::Billing => Duration::from_secs(5),
        };
        Limits {
            memory_bytes: 128 << 20,
            timeout,
            fuel: None,
            table_elements: 20_000,
            instances: 16,
            tables: 8,
            memories: 4,
            hostcall_bytes: 64 << 20,
            output_bytes: 64 << 10,
        }
    }
}

pub use crate::config::LimitsOverride;

pub fn resolve(
    kind: PluginKind,
    plugin: &str,
    overrides: &HashMap<String, LimitsOverride>,
) -> Limits {
    let mut limits = Limits::for_kind(kind);
    for key in [kind.as_str(), plugin] {
        if let Some(o) = overrides.get(key) {
            if let Some(m) = o.memory_mib {
                limits.memory_bytes = (m << 20).min(super::engine::MAX_MEMORY_BYTES);
            }
            if let Some(t) = o.timeout_ms {
                limits.timeout = Duration::from_millis(t);
            }
            if o.fuel.is_some() {
                limits.fuel = o.fuel;
            }
            if let Some(k) = o.output_kib {
                limits.output_bytes = k << 10;
            }
        }
    }
    limits
}

/// Enforces `Limits` on one store and records which cap was hit.
pub struct Limiter {
    pub limits: Limits,
    pub memory_hit: bool,
    pub peak_memory: usize,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            memory_hit: false,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.memory_hit = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}

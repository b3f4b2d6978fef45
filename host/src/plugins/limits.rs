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
    /// Host memory a call may hold for the guest (pixels of images it
    /// creates, metadata it sets); by default the memory limit.
    pub host_bytes: usize,
    /// Images a call may create and keep alive at once.
    pub handles: usize,
    /// Log lines a call may write (more are dropped and counted).
    pub log_lines: usize,
    /// Images a post-node may return; `None`: as many as it was given.
    pub max_outputs: Option<usize>,
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
            host_bytes: 128 << 20,
            handles: 64,
            log_lines: 200,
            max_outputs: None,
        }
    }

    /// With the deadline cut to `reserved_ms` when that is shorter: the
    /// time a job paid for.
    pub fn within(self, reserved_ms: Option<u64>) -> Self {
        let timeout = reserved_ms.map_or(self.timeout, |ms| {
            self.timeout.min(Duration::from_millis(ms))
        });
        Self { timeout, ..self }
    }

    /// The budget of a `describe()` call: it needs no images.
    pub fn for_describe(self) -> Self {
        Self {
            host_bytes: 64 << 10,
            handles: 1,
            ..self
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
                limits.host_bytes = limits.memory_bytes;
            }
            if o.max_outputs.is_some() {
                limits.max_outputs = o.max_outputs;
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

/// Enforces `Limits` on one store and records which cap was hit. The
/// memory limit counts all of the store's linear memories together.
pub struct Limiter {
    pub limits: Limits,
    pub memory_hit: bool,
    pub peak_memory: usize,
    /// Bytes of all linear memories of the store.
    total_memory: usize,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            memory_hit: false,
            peak_memory: 0,
            total_memory: 0,
        }
    }
}

/// What a call holds on the host for its guest, against `Limits::host_bytes`
/// and `Limits::handles`; `hit` names the budget that was exceeded.
#[derive(Debug, Default)]
pub struct HostBudget {
    pub bytes: usize,
    pub handles: usize,
    pub log_lines: usize,
    pub log_bytes: usize,
    pub log_dropped: usize,
    pub hit: Option<&'static str>,
}

impl HostBudget {
    /// Takes `bytes` (and a handle when `handle`), or records the budget
    /// that would be exceeded and refuses.
    pub fn take(
        &mut self,
        limits: &Limits,
        bytes: usize,
        handle: bool,
    ) -> Result<(), &'static str> {
        let what = if self.bytes.saturating_add(bytes) > limits.host_bytes {
            "host memory"
        } else if handle && self.handles >= limits.handles {
            "image handle"
        } else {
            self.bytes += bytes;
            self.handles += usize::from(handle);
            return Ok(());
        };
        self.hit = Some(what);
        Err(what)
    }

    /// Gives back what a dropped image held.
    pub fn give_back(&mut self, bytes: usize, handle: bool) {
        self.bytes = self.bytes.saturating_sub(bytes);
        self.handles = self.handles.saturating_sub(usize::from(handle));
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total_memory - current.min(self.total_memory) + desired;
        if total > self.limits.memory_bytes {
            self.memory_hit = true;
            return Ok(false);
        }
        self.total_memory = total;
        self.peak_memory = self.peak_memory.max(total);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_counts_every_memory_of_the_store() {
        let limits = Limits {
            memory_bytes: 100,
            ..Limits::for_kind(PluginKind::Node)
        };
        let mut l = Limiter::new(limits);
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory may only take what the first left.
        assert!(!l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_hit);
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert!(!l.memory_growing(40, 41, None).unwrap());
        assert_eq!(l.peak_memory, 100);
    }

    #[test]
    fn host_budget_refuses_past_bytes_or_handles() {
        let limits = Limits {
            host_bytes: 100,
            handles: 2,
            ..Limits::for_kind(PluginKind::Node)
        };
        let mut b = HostBudget::default();
        assert!(b.take(&limits, 40, true).is_ok());
        assert!(b.take(&limits, 40, true).is_ok());
        assert_eq!(b.take(&limits, 1, true), Err("image handle"));
        b.give_back(40, true);
        assert_eq!(b.take(&limits, 70, true), Err("host memory"));
        assert_eq!(b.hit, Some("host memory"));
        assert!(b.take(&limits, 60, true).is_ok());
    }
}

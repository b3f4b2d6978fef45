//! The one place that configures wasmtime: component model, pooling
//! allocator, copy-on-write memory images, epoch interruption driven by a
//! ticker thread, optional fuel, and the guest stack size.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of wall-clock deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Upper bound of any plugin's linear memory; per-call limits sit below it.
pub const MAX_MEMORY_BYTES: usize = 512 << 20;

/// Bytes of each freed linear memory kept resident for the next instance.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Instances the pool keeps slots for (concurrent plugin calls).
    pub pool_instances: u32,
    /// Count instructions too (deterministic budgets; ~10-30 % slower).
    pub fuel: bool,
    /// Guest call-stack size in bytes.
    pub max_wasm_stack: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pool_instances: 64,
            fuel: false,
            max_wasm_stack: 512 << 10,
        }
    }
}

/// The engine and the thread that ticks its epoch.
pub struct PluginEngine {
    pub engine: Engine,
    pub fuel: bool,
    /// Identifies this engine's compiled-code format: part of the on-disk
    /// cache key, so a wasmtime upgrade or setting change recompiles.
    pub fingerprint: String,
    stop: Arc<AtomicBool>,
}

impl PluginEngine {
    pub fn new(opts: &EngineOptions) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(opts.pool_instances)
            .total_core_instances(opts.pool_instances * 4)
            .total_memories(opts.pool_instances * 2)
            .total_tables(opts.pool_instances * 4)
            .total_stacks(opts.pool_instances)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .max_memory_size(MAX_MEMORY_BYTES)
            .table_elements(20_000)
            // Keep the first pages of a freed memory resident (zeroed, not
            // unmapped): the next instance in that slot skips the page faults.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(opts.fuel)
            .max_wasm_stack(opts.max_wasm_stack)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e:?}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            fingerprint: format!("{:016x}", h.finish()),
            engine,
            fuel: opts.fuel,
            stop,
        })
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

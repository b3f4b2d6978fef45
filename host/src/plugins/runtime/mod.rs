//! Loading and calling plugins. A component is compiled once per content
//! hash (and cached on disk next to the engine's fingerprint), linked once
//! into an `InstancePre`, and every call gets a fresh, limited `Store`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::v0_1_0::node::pingvas::plugin::node_types::{
    Descriptor, NodeInput, NodeOutput, PostInput, PreInput,
};
use super::bindings::v0_1_0::node::pingvas::plugin::types::GenerationParams;
use super::bindings::v0_1_0::node::{Node, NodePre};
use super::bindings::v0_2_1::workflow::{Workflow, WorkflowPre};
use super::cache::{self, DiskCache, MemoryCache};
use super::engine::{EngineOptions, PluginEngine};
use super::error::PluginError;
use super::host::workflow::WorkflowHost;
use super::image_handle::ImageHandle;
use super::limits::Limits;
use super::state::{Grants, PluginState};
use super::world::{PluginKind, Shape};

pub use super::bindings::v0_1_0::node::pingvas::plugin::types::Lora;
// The host's billing types are the newest billing world's; older adapters'
// are mapped to them by their binding.
pub use super::bindings::v0_3_0::billing::pingvas::plugin::billing_types::{
    BillingEvent, ChangeTiming, Checkout, CheckoutRequest, EventKind, InvoiceReason, PlanChange,
    SubscriptionState, Webhook,
};
pub type NodeDescriptor = Descriptor;
pub type Params = GenerationParams;

mod billing;
use billing::BillingPre;
pub use billing::{BillingAnswer, BillingCall, WebhookError};
mod load;

pub use super::output::MAX_PROMPT_BYTES;
use super::output::{
    bad_output, check_descriptor, check_params, escape_controls, guest_error, last_lines,
};

enum Linked {
    Node(NodePre<PluginState>),
    Billing(BillingPre),
    Workflow(WorkflowPre<PluginState>),
}

/// The in-memory cache of linked plugins, by content hash and kind.
type LinkedCache = MemoryCache<(String, PluginKind), Arc<LoadedPlugin>>;

/// A compiled, linked plugin ready to instantiate.
pub struct LoadedPlugin {
    pub sha256: String,
    pub kind: PluginKind,
    pub shape: Shape,
    /// Bytes of its compiled code in memory.
    pub code_bytes: usize,
    linked: Linked,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("sha256", &self.sha256)
            .field("kind", &self.kind)
            .finish()
    }
}

/// What a node call produced, with what it cost.
#[derive(Debug)]
pub struct NodeRun<T> {
    pub output: T,
    pub elapsed: Duration,
    pub peak_memory: usize,
    pub log: String,
}

pub struct PluginRuntime {
    engine: PluginEngine,
    node_linker: Linker<PluginState>,
    billing_linker: Linker<PluginState>,
    workflow_linker: Linker<PluginState>,
    disk: Option<Arc<DiskCache>>,
    loaded: LinkedCache,
    http: reqwest::Client,
}

/// A component compiled and linked but not cached yet (publishing keeps it
/// only once the version is recorded).
pub struct Compiled {
    pub plugin: Arc<LoadedPlugin>,
    component: Component,
}

fn link_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

impl PluginRuntime {
    /// `cache_dir` keeps compiled code across restarts; `None` compiles in
    /// memory only.
    pub fn new(opts: &EngineOptions, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let engine = PluginEngine::new(opts)?;
        let mut node_linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut node_linker).map_err(link_err)?;
        // Both ABI versions' imports: a node built against either links.
        Node::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut node_linker, |s| s)
            .map_err(link_err)?;
        super::bindings::v0_2_0::node::Node::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut node_linker,
            |s| s,
        )
        .map_err(link_err)?;
        // Both billing worlds' imports: 0.2.x adapters find 0.2.0's, 0.3.0
        // adapters their own (0.3 is not semver-compatible with 0.2).
        let mut billing_linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut billing_linker).map_err(link_err)?;
        super::bindings::v0_2_0::billing::BillingAdapter::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut billing_linker, |s| s)
        .map_err(link_err)?;
        super::bindings::v0_3_0::billing::BillingAdapter::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut billing_linker, |s| s)
        .map_err(link_err)?;
        // 0.2.1's imports; components built against 0.2.0 link to them too
        // (the linker matches semver-compatible versions).
        let mut workflow_linker = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut workflow_linker).map_err(link_err)?;
        Workflow::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut workflow_linker, |s| s)
            .map_err(link_err)?;
        // 0.2.1 shares `types`, `log` and `images` with 0.2.0 (the bindings
        // reuse them), so those are linked once, as 0.2.0's: a 0.2.1 import
        // finds them as the semver-compatible 0.2.
        {
            use super::bindings::v0_2_0::node::pingvas::plugin as v2;
            use wasmtime::component::HasSelf;
            v2::types::add_to_linker::<_, HasSelf<_>>(&mut workflow_linker, |s| s)
                .map_err(link_err)?;
            v2::log::add_to_linker::<_, HasSelf<_>>(&mut workflow_linker, |s| s)
                .map_err(link_err)?;
            v2::images::add_to_linker::<_, HasSelf<_>>(&mut workflow_linker, |s| s)
                .map_err(link_err)?;
        }
        let disk = match cache_dir {
            Some(dir) => Some(Arc::new(DiskCache::open(
                dir,
                &engine.fingerprint,
                cache::DISK_BYTES,
            )?)),
            None => None,
        };
        Ok(Self {
            engine,
            node_linker,
            billing_linker,
            workflow_linker,
            disk,
            loaded: LinkedCache::new(cache::MEMORY_ENTRIES, cache::MEMORY_BYTES),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine.engine
    }

    fn store(&self, plugin: &str, limits: Limits, grants: Arc<Grants>) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine.engine,
            PluginState::new(plugin, limits, grants, self.http.clone()),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(limits.hostcall_bytes);
        if self.engine.fuel {
            let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        // Every epoch tick: past the deadline, interrupt; otherwise yield to
        // the async runtime so a busy guest never starves other tasks.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.deadline_hit = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Turns a failed call into a typed error naming the cause.
    fn classify(
        &self,
        plugin: &str,
        err: wasmtime::Error,
        store: &mut Store<PluginState>,
    ) -> PluginError {
        let (stderr, _) = store.data().output.take();
        let state = store.data();
        let limits = state.limiter.limits;
        if state.deadline_hit {
            return PluginError::Timeout {
                plugin: plugin.into(),
                limit: limits.timeout,
            };
        }
        if let Some(budget) = state.budget.hit {
            return PluginError::ResourceLimit {
                plugin: plugin.into(),
                budget: budget.into(),
            };
        }
        if state.limiter.memory_hit {
            return PluginError::MemoryLimit {
                plugin: plugin.into(),
                limit_bytes: limits.memory_bytes,
            };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::StackOverflow) => PluginError::StackOverflow {
                plugin: plugin.into(),
            },
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin: plugin.into(),
                fuel: limits.fuel.unwrap_or(0),
            },
            Some(trap) => PluginError::Trapped {
                plugin: plugin.into(),
                trap: trap.to_string(),
                stderr: last_lines(&stderr, 5),
            },
            None => PluginError::Host {
                plugin: plugin.into(),
                reason: format!("{err:#}"),
            },
        }
    }

    fn finish<T>(&self, store: &mut Store<PluginState>, started: Instant, output: T) -> NodeRun<T> {
        let (log, dropped) = store.data().output.take();
        if !log.is_empty() {
            tracing::info!(plugin = %store.data().plugin, dropped_bytes = dropped, "plugin output: {}", escape_controls(log.trim_end()));
        }
        let budget = &store.data().budget;
        if budget.log_dropped > 0 {
            tracing::warn!(plugin = %store.data().plugin, dropped_lines = budget.log_dropped, "plugin log lines past its budget were dropped");
        }
        NodeRun {
            output,
            elapsed: started.elapsed(),
            peak_memory: store.data().limiter.peak_memory,
            log,
        }
    }

    fn node_pre<'a>(
        &self,
        name: &str,
        plugin: &'a LoadedPlugin,
    ) -> Result<&'a NodePre<PluginState>, PluginError> {
        match &plugin.linked {
            Linked::Node(pre) => Ok(pre),
            _ => Err(PluginError::WrongWorld {
                plugin: name.into(),
                expected: "node".into(),
                reason: format!("is a {} plugin", plugin.kind.as_str()),
            }),
        }
    }

    /// Calls a node's `describe()` within `limits`.
    pub async fn describe(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        limits: Limits,
    ) -> Result<NodeRun<NodeDescriptor>, PluginError> {
        let pre = self.node_pre(name, plugin)?;
        let started = Instant::now();
        let mut store = self.store(name, limits.for_describe(), Arc::default());
        let result = async {
            let node = pre.instantiate_async(&mut store).await?;
            node.call_describe(&mut store).await
        }
        .await;
        match result {
            Ok(d) => {
                check_descriptor(name, &d)?;
                Ok(self.finish(&mut store, started, d))
            }
            Err(e) => Err(self.classify(name, e, &mut store)),
        }
    }

    /// Instantiates a node in a fresh store and calls `process(input)`;
    /// the store comes back with the output for the caller to unpack.
    async fn process(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        mut store: Store<PluginState>,
        input: NodeInput,
    ) -> Result<(Store<PluginState>, NodeOutput), PluginError> {
        let pre = self.node_pre(name, plugin)?;
        let result = async {
            let node = pre.instantiate_async(&mut store).await?;
            node.call_process(&mut store, &input).await
        }
        .await;
        match result {
            Ok(Ok(output)) => Ok((store, output)),
            Ok(Err(e)) => Err(guest_error(name, e)),
            Err(e) => Err(self.classify(name, e, &mut store)),
        }
    }

    /// Runs a pre-node: generation parameters in, rewritten parameters out.
    pub async fn run_pre(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        limits: Limits,
        params: Params,
        config: &str,
    ) -> Result<NodeRun<Params>, PluginError> {
        let started = Instant::now();
        let store = self.store(name, limits, Arc::default());
        let input = NodeInput::Pre(PreInput {
            params,
            config: config.to_owned(),
        });
        match self.process(name, plugin, store, input).await? {
            (mut store, NodeOutput::Pre(params)) => {
                check_params(name, &params)?;
                Ok(self.finish(&mut store, started, params))
            }
            (_, NodeOutput::Post(_)) => Err(bad_output(name, "a pre-node returned images")),
        }
    }

    /// Runs a post-node: images in, images out. Pixels enter the guest only
    /// if it reads them.
    pub async fn run_post(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        limits: Limits,
        params: Params,
        images: Vec<ImageHandle>,
        config: &str,
    ) -> Result<NodeRun<Vec<ImageHandle>>, PluginError> {
        let started = Instant::now();
        let mut store = self.store(name, limits, Arc::default());
        let host_err = |e: wasmtime::component::ResourceTableError| PluginError::Host {
            plugin: name.into(),
            reason: e.to_string(),
        };
        let given = images.len();
        let handles = images
            .into_iter()
            .map(|img| store.data_mut().table.push(img).map_err(host_err))
            .collect::<Result<Vec<Resource<ImageHandle>>, _>>()?;
        let input = NodeInput::Post(PostInput {
            params,
            images: handles,
            config: config.to_owned(),
        });
        match self.process(name, plugin, store, input).await? {
            (mut store, NodeOutput::Post(out)) => {
                let images = take_images(name, &mut store, out)?;
                if images.is_empty() {
                    return Err(bad_output(name, "a post-node returned no images"));
                }
                let most = limits.max_outputs.unwrap_or(given);
                if images.len() > most {
                    return Err(bad_output(
                        name,
                        &format!("returned {} images; at most {most}", images.len()),
                    ));
                }
                Ok(self.finish(&mut store, started, images))
            }
            (_, NodeOutput::Pre(_)) => Err(bad_output(name, "a post-node returned parameters")),
        }
    }
}

/// What a workflow component returned: its images and other outputs.
#[derive(Debug)]
pub struct WorkflowOutput {
    pub images: Vec<ImageHandle>,
    /// A JSON object.
    pub outputs: String,
}

impl PluginRuntime {
    /// Runs a workflow component's `run(inputs)` in a fresh store whose
    /// imports reach `host` (the worker's side of the job). The deadline
    /// counts the guest's own time: inference and node calls move it on.
    pub async fn run_workflow(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        limits: Limits,
        host: Arc<dyn WorkflowHost>,
        inputs: &str,
    ) -> Result<NodeRun<WorkflowOutput>, PluginError> {
        let Linked::Workflow(pre) = &plugin.linked else {
            return Err(PluginError::WrongWorld {
                plugin: name.into(),
                expected: "workflow".into(),
                reason: format!("is a {} plugin", plugin.kind.as_str()),
            });
        };
        let started = Instant::now();
        let mut store = self.store(name, limits, Arc::default());
        store.data_mut().workflow = Some(host);
        let result = async {
            let wf = pre.instantiate_async(&mut store).await?;
            wf.call_run(&mut store, inputs).await
        }
        .await;
        match result {
            Ok(Ok(out)) => {
                let images = take_images(name, &mut store, out.images)?;
                if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&out.outputs)
                    .is_err()
                    && !out.outputs.is_empty()
                {
                    return Err(bad_output(name, "outputs is not a JSON object"));
                }
                let output = WorkflowOutput {
                    images,
                    outputs: out.outputs,
                };
                Ok(self.finish(&mut store, started, output))
            }
            Ok(Err(e)) => Err(guest_error(name, e)),
            Err(e) => match store.data_mut().aborted.take() {
                Some(reason) => Err(PluginError::Host {
                    plugin: name.into(),
                    reason,
                }),
                None => Err(self.classify(name, e, &mut store)),
            },
        }
    }
}

/// The images behind the handles a guest returned, out of its table.
fn take_images(
    name: &str,
    store: &mut Store<PluginState>,
    handles: Vec<Resource<ImageHandle>>,
) -> Result<Vec<ImageHandle>, PluginError> {
    handles
        .into_iter()
        .map(|h| {
            store
                .data_mut()
                .table
                .delete(h)
                .map_err(|e| bad_output(name, &format!("bad image handle: {e}")))
        })
        .collect()
}

/// A component's preamble: `\0asm`, then version 0x0d and layer 1.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

//! Loading components: compile (or take from the caches), check the world
//! read from the component, link, and keep the result cached.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{BillingPre, Compiled, Linked, LoadedPlugin, PluginRuntime, wasmparser_is_component};
use crate::plugins::bindings::v0_1_0::node::NodePre;
use crate::plugins::bindings::v0_2_1::workflow::WorkflowPre;
use crate::plugins::bindings::{v0_2_0, v0_3_0};
use crate::plugins::error::PluginError;
use crate::plugins::world::{PluginKind, Shape};

impl PluginRuntime {
    /// Compiles (or fetches from the caches), checks the world, links,
    /// and keeps the result cached. `kind` is what the caller expects;
    /// `None` detects it.
    pub async fn load(
        &self,
        name: &str,
        bytes: &[u8],
        kind: Option<PluginKind>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        if let Some(kind) = kind
            && let Some(hit) = self.loaded.get(&(sha256.clone(), kind))
        {
            return Ok(hit);
        }
        if let Some(component) = self
            .disk
            .as_ref()
            .and_then(|d| d.read(&self.engine.engine, &sha256))
        {
            let plugin = Arc::new(self.link(name, sha256, &component, kind)?);
            self.remember(plugin.clone());
            return Ok(plugin);
        }
        let compiled = self.check(name, bytes, kind).await?;
        let plugin = compiled.plugin.clone();
        self.keep(compiled).await;
        Ok(plugin)
    }

    /// Compiles, checks the world and links, caching nothing.
    pub async fn check(
        &self,
        name: &str,
        bytes: &[u8],
        kind: Option<PluginKind>,
    ) -> Result<Compiled, PluginError> {
        let invalid = |reason: String| PluginError::InvalidComponent {
            plugin: name.into(),
            reason,
        };
        if !wasmparser_is_component(bytes) {
            return Err(invalid(
                "not a WebAssembly component (a core module or other bytes)".into(),
            ));
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let engine = self.engine.engine.clone();
        let owned = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, owned))
            .await
            .map_err(|e| invalid(e.to_string()))?
            .map_err(|e| invalid(format!("{e:#}")))?;
        let plugin = Arc::new(self.link(name, sha256, &component, kind)?);
        Ok(Compiled { plugin, component })
    }

    /// Keeps a checked component in the caches.
    pub async fn keep(&self, compiled: Compiled) {
        self.remember(compiled.plugin.clone());
        if let Some(disk) = self.disk.clone() {
            let sha256 = compiled.plugin.sha256.clone();
            let component = compiled.component;
            // Serialising and writing to disk block.
            let _ = tokio::task::spawn_blocking(move || disk.write(&sha256, &component)).await;
        }
    }

    fn remember(&self, plugin: Arc<LoadedPlugin>) {
        let key = (plugin.sha256.clone(), plugin.kind);
        let bytes = plugin.code_bytes;
        self.loaded.insert(key, plugin, bytes);
    }

    /// Checks the component's world (the `kind` expected, or detected) and
    /// links it.
    fn link(
        &self,
        name: &str,
        sha256: String,
        component: &Component,
        kind: Option<PluginKind>,
    ) -> Result<LoadedPlugin, PluginError> {
        let shape = Shape::of(component, &self.engine.engine);
        let kind = match kind {
            Some(k) => {
                shape.check(k).map_err(|reason| PluginError::WrongWorld {
                    plugin: name.into(),
                    expected: k.world().into(),
                    reason,
                })?;
                k
            }
            None => shape.detect().ok_or_else(|| PluginError::WrongWorld {
                plugin: name.into(),
                expected: "node, workflow or billing-adapter".into(),
                reason: format!("exports {:?}, imports {:?}", shape.exports, shape.imports),
            })?,
        };
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: name.into(),
            expected: kind.world().into(),
            reason: format!("{e:#}"),
        };
        let linked = match kind {
            PluginKind::Node => {
                let pre = self.node_linker.instantiate_pre(component).map_err(wrong)?;
                Linked::Node(NodePre::new(pre).map_err(wrong)?)
            }
            PluginKind::Billing => {
                let pre = self
                    .billing_linker
                    .instantiate_pre(component)
                    .map_err(wrong)?;
                // Each billing world's exports through its own binding.
                Linked::Billing(if shape.abi_version() == v0_3_0::VERSION {
                    BillingPre::V0_3(v0_3_0::billing::BillingAdapterPre::new(pre).map_err(wrong)?)
                } else {
                    BillingPre::V0_2(v0_2_0::billing::BillingAdapterPre::new(pre).map_err(wrong)?)
                })
            }
            PluginKind::Workflow => {
                let pre = self
                    .workflow_linker
                    .instantiate_pre(component)
                    .map_err(wrong)?;
                Linked::Workflow(WorkflowPre::new(pre).map_err(wrong)?)
            }
        };
        let code = component.image_range();
        Ok(LoadedPlugin {
            sha256,
            kind,
            shape,
            code_bytes: (code.end as usize).saturating_sub(code.start as usize),
            linked,
        })
    }
}

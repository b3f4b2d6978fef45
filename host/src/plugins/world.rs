//! Which world a component targets, read from its own imports and exports
//! (never trusted from a manifest).

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{BILLING_VERSIONS, NODE_VERSIONS, WORKFLOW_VERSIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    Node,
    Workflow,
    Billing,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::Node, PluginKind::Workflow, PluginKind::Billing];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Node => "node",
            PluginKind::Workflow => "workflow",
            PluginKind::Billing => "billing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Node => "node",
            PluginKind::Workflow => "workflow",
            PluginKind::Billing => "billing-adapter",
        }
    }

    fn required_exports(self) -> &'static [&'static str] {
        match self {
            PluginKind::Node => &["describe", "process"],
            PluginKind::Workflow => &["run"],
            PluginKind::Billing => &[
                "verify-webhook",
                "normalise-event",
                "create-checkout",
                "change-plan",
                "cancel",
                "resume",
            ],
        }
    }

    /// The `pingvas:plugin` versions a component of this kind may speak:
    /// nodes 0.1.0 to 0.2.1; workflows 0.2.x (they run from 0.2.0, and
    /// 0.2.1 links 0.2.0); billing adapters 0.2.x and 0.3.0 (0.2.0 changed
    /// the billing world, 0.3.0 again — it holds that world alone).
    pub fn abi_versions(self) -> &'static [&'static str] {
        match self {
            PluginKind::Node => NODE_VERSIONS,
            PluginKind::Workflow => WORKFLOW_VERSIONS,
            PluginKind::Billing => BILLING_VERSIONS,
        }
    }

    /// The `pingvas:plugin` interfaces the world imports.
    fn allowed_interfaces(self) -> &'static [&'static str] {
        match self {
            PluginKind::Node => &["types", "log", "images", "node-types"],
            PluginKind::Workflow => &[
                "types",
                "log",
                "images",
                "node-types",
                "inference",
                "nodes",
                "progress",
                "job-inputs",
            ],
            PluginKind::Billing => &["types", "log", "http", "config", "billing-types"],
        }
    }
}

/// What a component's type says about it.
#[derive(Debug, Clone)]
pub struct Shape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Shape {
    pub fn of(component: &Component, engine: &Engine) -> Self {
        let ty = component.component_type();
        Shape {
            // A world's `use` of a type (the workflow world's `image`)
            // is a type import bound to an instance's type: nothing to link.
            imports: ty
                .imports(engine)
                .filter(|(_, item)| {
                    !matches!(
                        item.ty,
                        wasmtime::component::types::ComponentItem::Type(_)
                            | wasmtime::component::types::ComponentItem::Resource(_)
                    )
                })
                .map(|(name, _)| name.to_owned())
                .collect(),
            exports: ty
                .exports(engine)
                .map(|(name, _)| name.to_owned())
                .collect(),
        }
    }

    /// The `pingvas:plugin` version the component imports (when it imports
    /// none, the newest version every world has).
    pub fn abi_version(&self) -> &str {
        self.imports
            .iter()
            .filter_map(|i| i.strip_prefix("pingvas:plugin/"))
            .find_map(|rest| rest.split_once('@').map(|(_, v)| v))
            .unwrap_or(WORKFLOW_VERSIONS[0])
    }

    /// Checks the component against `kind`'s world; the reason it does not
    /// fit otherwise.
    pub fn check(&self, kind: PluginKind) -> Result<(), String> {
        let abi = self.abi_version();
        for export in kind.required_exports() {
            if !self.exports.iter().any(|e| e == export) {
                return Err(format!("missing export `{export}`"));
            }
        }
        for import in &self.imports {
            if import.starts_with("wasi:") {
                continue;
            }
            let Some(rest) = import.strip_prefix("pingvas:plugin/") else {
                return Err(format!("imports `{import}`, which no world provides"));
            };
            let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
            if !kind.abi_versions().contains(&version) {
                return Err(format!(
                    "imports `{import}`: this host runs {} plugins of pingvas:plugin@{}",
                    kind.as_str(),
                    kind.abi_versions().join(", @")
                ));
            }
            if version != abi {
                return Err(format!(
                    "imports `{import}` next to pingvas:plugin@{abi}: one version per component"
                ));
            }
            if !kind.allowed_interfaces().contains(&iface) {
                return Err(format!(
                    "imports `{import}`, which the {} world does not offer",
                    kind.world()
                ));
            }
        }
        Ok(())
    }

    /// The kind whose world this component fits, if any.
    pub fn detect(&self) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|k| self.check(*k).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(version: &str, kind: PluginKind) -> Shape {
        Shape {
            imports: ["log", "http", "config", "types"]
                .iter()
                .filter(|i| kind == PluginKind::Billing || ["log", "types"].contains(i))
                .map(|i| format!("pingvas:plugin/{i}@{version}"))
                .chain(["wasi:cli/environment@0.2.0".to_owned()])
                .collect(),
            exports: kind
                .required_exports()
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        }
    }

    #[test]
    fn nodes_speak_every_version_billing_adapters_and_workflows_0_2() {
        for v in ["0.1.0", "0.2.0", "0.2.1"] {
            assert_eq!(
                shape(v, PluginKind::Node).check(PluginKind::Node),
                Ok(()),
                "{v}"
            );
        }
        for v in ["0.2.0", "0.2.1"] {
            for kind in [PluginKind::Workflow, PluginKind::Billing] {
                assert_eq!(shape(v, kind).check(kind), Ok(()), "{v} {kind:?}");
            }
        }
        // 0.3.0 holds the billing world alone.
        let billing = shape("0.3.0", PluginKind::Billing);
        assert_eq!(billing.check(PluginKind::Billing), Ok(()));
        assert_eq!(billing.abi_version(), "0.3.0");
        for kind in [PluginKind::Node, PluginKind::Workflow] {
            assert!(shape("0.3.0", kind).check(kind).is_err(), "{kind:?}");
        }
        let old = shape("0.1.0", PluginKind::Billing).check(PluginKind::Billing);
        assert!(
            old.is_err_and(
                |e| e.contains("billing plugins of pingvas:plugin@0.3.0, @0.2.1, @0.2.0")
            )
        );
        let old = shape("0.1.0", PluginKind::Workflow).check(PluginKind::Workflow);
        assert!(old.is_err_and(|e| e.contains("workflow plugins of pingvas:plugin@0.2.1")));
        assert!(
            shape("0.4.0", PluginKind::Node)
                .check(PluginKind::Node)
                .is_err()
        );
        let mut mixed = shape("0.2.0", PluginKind::Node);
        mixed.imports.push("pingvas:plugin/images@0.1.0".into());
        assert!(
            mixed
                .check(PluginKind::Node)
                .unwrap_err()
                .contains("one version per component")
        );
        assert_eq!(shape("0.1.0", PluginKind::Node).abi_version(), "0.1.0");
    }
}

//! Host bindings of the WIT worlds, one `bindgen!` per world. Interfaces
//! shared between worlds are generated once (in `node`) and reused, so one
//! host implementation serves them all.

pub mod node {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "node",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/images.image": crate::plugins::host::images::ImageHandle,
        },
    });
}

pub mod billing {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "billing-adapter",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": super::node::pingvas::plugin::types,
            "pingvas:plugin/log": super::node::pingvas::plugin::log,
        },
    });
}

pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "workflow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": super::node::pingvas::plugin::types,
            "pingvas:plugin/log": super::node::pingvas::plugin::log,
            "pingvas:plugin/images": super::node::pingvas::plugin::images,
        },
    });
}

// Interfaces that only define types still get a (method-less) host trait.
impl node::pingvas::plugin::types::Host for crate::plugins::state::PluginState {}
impl node::pingvas::plugin::node_types::Host for crate::plugins::state::PluginState {}
impl billing::pingvas::plugin::billing_types::Host for crate::plugins::state::PluginState {}

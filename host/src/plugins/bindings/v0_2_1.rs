//! Host bindings of `pingvas:plugin@0.2.1`: the `workflow` world gains
//! `job-inputs`. Its shared interfaces are the earlier versions' (types and
//! resources are structural), so the one host implementation of `types`,
//! `log` and `images` serves it; the workflow linker defines 0.2.1, which
//! also satisfies components built against 0.2.0 (the linker matches
//! semver-compatible `0.2.*` imports).

/// The version of the `pingvas:plugin` package these bindings speak.
pub const VERSION: &str = "0.2.1";

pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.1",
        world: "workflow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": crate::plugins::bindings::v0_1_0::node::pingvas::plugin::types,
            "pingvas:plugin/log": crate::plugins::bindings::v0_1_0::node::pingvas::plugin::log,
            "pingvas:plugin/images": crate::plugins::bindings::v0_1_0::node::pingvas::plugin::images,
        },
    });
}

//! The WebAssembly plugin runtime: one shared wasmtime `Engine`, compiled
//! components cached by content hash, a fresh sandboxed `Store` per call,
//! and the host functions guests reach through the WIT worlds in `wit/`.
//!
//! Layout, one job per file: `engine` (the only place that touches
//! `wasmtime::Config`), `limits` (per-call budgets and the limiter),
//! `state` (store data: WASI context, resources, captured output),
//! `bindings` (bindgen! per world), `host/` (one module per host interface),
//! `world` (which world a component targets), `runtime` (load and call),
//! `error` (typed failures), `registry` (published plugins).

pub mod bindings;
pub mod cache;
pub mod check;
pub mod engine;
pub mod error;
pub mod host;
pub mod image_handle;
pub mod limits;
pub mod output;
pub mod registry;
pub mod runtime;
pub mod state;
pub mod world;

pub use error::PluginError;
pub use runtime::{LoadedPlugin, PluginRuntime};
pub use world::PluginKind;

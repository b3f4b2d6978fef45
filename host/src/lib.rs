//! Pingvas Studio host: the REST API server, its store, auth, credit
//! ledger and (in later modules) the GPU queue and WASM plugin runtime.

pub mod admin;
pub mod app;
pub mod auth;
pub mod billing;
pub mod blobs;
pub mod config;
pub mod error;
pub mod events;
pub mod generation;
pub mod http;
pub mod i18n;
pub mod inference;
pub mod models;
pub mod plugins;
pub mod queue;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod users;
pub mod worker;

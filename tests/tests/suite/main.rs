//! The black-box suite as one test binary: every area is a module, so the
//! host and its dependencies are linked once, not once per area. Tests that
//! need a process of their own (a signal to the process, a memory baseline)
//! stay separate binaries (`reload_signal`, `sandbox_leaks`).

mod auth;
mod billing;
mod budgets;
mod cli;
mod cluster;
mod credentials;
mod errors;
mod gallery;
mod generate;
mod ledger;
mod mail;
mod memory;
mod models;
mod oauth;
mod ops;
mod plugins;
mod pricing;
mod queue;
mod ratelimit;
mod sandbox;
mod users;
mod web;
mod workers;
mod workflows;

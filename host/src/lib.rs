//! Pingvas Studio host: the REST API server, its store, auth, credit
//! ledger, GPU queue and workers, and the WASM plugin runtime. The layers,
//! bottom up: `store`, `blobs`, `imaging`, `events`, `metrics`, `mail`; the domain
//! modules (`billing`, `models`, `plugins`, `inference`, `queue`,
//! `generation`, `workflows`, `users`, `auth`); `worker`; then `app`, `http`, `server`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod billing;
pub mod blobs;
pub mod config;
pub mod error;
pub mod events;
pub mod gallery;
pub mod generation;
pub mod hourly;
pub mod http;
pub mod i18n;
pub mod imaging;
pub mod inference;
pub mod mail;
pub mod metrics;
pub mod models;
pub mod plugins;
pub mod provenance;
pub mod queue;
pub mod ratelimit;
pub mod revisions;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod users;
pub mod worker;
pub mod workflows;

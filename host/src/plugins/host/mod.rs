//! Host side of the WIT interfaces, one module per capability a guest can
//! be granted. Each adds its functions to a linker and keeps its checks.

pub mod config;
pub mod http;
pub mod images;
pub mod log;
pub mod workflow;

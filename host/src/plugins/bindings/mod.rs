//! Host bindings of the plugin ABI, one module per `pingvas:plugin`
//! version (as `wit/plugin@<version>/` holds one package per version), so
//! guests built against an older version keep running when a newer one is
//! added beside it.

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_2_1;

/// The ABI versions this host runs, newest first.
pub const ABI_VERSIONS: &[&str] = &[v0_2_1::VERSION, v0_2_0::VERSION, v0_1_0::VERSION];

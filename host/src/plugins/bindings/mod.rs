//! Host bindings of the plugin ABI, one module per `pingvas:plugin`
//! version (as `wit/plugin@<version>/` holds one package per version), so
//! guests built against an older version keep running when a newer one is
//! added beside it.

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_2_1;
pub mod v0_3_0;

/// The ABI versions this host runs, newest first.
pub const ABI_VERSIONS: &[&str] = &[
    v0_3_0::VERSION,
    v0_2_1::VERSION,
    v0_2_0::VERSION,
    v0_1_0::VERSION,
];

/// The versions a node component may speak, newest first (0.3.0 holds the
/// billing world alone).
pub const NODE_VERSIONS: &[&str] = &[v0_2_1::VERSION, v0_2_0::VERSION, v0_1_0::VERSION];
/// The versions a workflow component may speak, newest first.
pub const WORKFLOW_VERSIONS: &[&str] = &[v0_2_1::VERSION, v0_2_0::VERSION];
/// The versions a billing adapter may speak, newest first (0.2.1's billing
/// world is 0.2.0's).
pub const BILLING_VERSIONS: &[&str] = &[v0_3_0::VERSION, v0_2_1::VERSION, v0_2_0::VERSION];

//! Plans and tiers, and the credit ledger.

pub mod ledger;
pub mod plans;

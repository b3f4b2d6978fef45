//! Plans and tiers, the credit ledger, and subscriptions through the
//! payment-provider adapter.

pub mod adapter;
pub mod event;
pub mod ledger;
pub mod plans;
pub mod reservations;
pub mod subscriptions;
pub mod webhooks;

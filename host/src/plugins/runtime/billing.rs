//! Calls into a billing adapter: one fresh, limited instance per call (a
//! webhook's verification and normalisation share one). An adapter of
//! 0.2.x and one of 0.3.0 are called through their own bindings, with the
//! host's (0.3.0) types mapped to and from theirs.

use std::sync::Arc;

use wasmtime::Store;

use super::{
    BillingEvent, Checkout, CheckoutRequest, Linked, LoadedPlugin, PlanChange, PluginRuntime,
    SubscriptionState, Webhook,
};
use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::types::PluginError as GuestError;
use crate::plugins::bindings::{v0_2_0, v0_3_0};
use crate::plugins::error::PluginError;
use crate::plugins::limits::Limits;
use crate::plugins::output::guest_error;
use crate::plugins::state::{Grants, PluginState};

/// One call of the billing-adapter world.
#[derive(Debug, Clone)]
pub enum BillingCall {
    /// `verify-webhook`, then (on the same instance) `normalise-event`.
    Webhook(Webhook),
    Checkout(CheckoutRequest),
    ChangePlan(PlanChange),
    Cancel {
        subscription_id: String,
        at_period_end: bool,
    },
    Resume(String),
}

/// What a billing call answered.
#[derive(Debug, Clone)]
pub enum BillingAnswer {
    Event(BillingEvent),
    Checkout(Checkout),
    State(SubscriptionState),
}

/// Why a webhook was not taken: its signature, or the adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebhookError {
    #[error("signature does not verify: {0}")]
    Signature(PluginError),
    #[error(transparent)]
    Adapter(PluginError),
}

/// A linked billing adapter, by the world version it speaks.
pub(super) enum BillingPre {
    /// 0.2.0 or 0.2.1 (the same billing world): its events name no invoice
    /// reason.
    V0_2(v0_2_0::billing::BillingAdapterPre<PluginState>),
    V0_3(v0_3_0::billing::BillingAdapterPre<PluginState>),
}

enum Refused {
    Signature(GuestError),
    Guest(GuestError),
}

/// A guest's answer as the host's, its error as the host's guest error.
fn guest<T, E: Into<GuestError>>(
    r: Result<T, E>,
    f: impl FnOnce(T) -> BillingAnswer,
) -> Result<BillingAnswer, Refused> {
    r.map(f).map_err(|e| Refused::Guest(e.into()))
}

/// Runs one call on an instance of either binding: the host's types go in
/// and come back through `Into` (the identity for 0.3.0). Evaluates to
/// `wasmtime::Result<Result<BillingAnswer, Refused>>`.
macro_rules! run {
    ($adapter:expr, $store:expr, $call:expr) => {{
        let adapter = &$adapter;
        let store: &mut Store<PluginState> = $store;
        wasmtime::Result::Ok(match $call {
            BillingCall::Webhook(hook) => {
                let hook = hook.into();
                match adapter.call_verify_webhook(&mut *store, &hook).await? {
                    Err(e) => Err(Refused::Signature(e.into())),
                    Ok(()) => guest(
                        adapter.call_normalise_event(&mut *store, &hook).await?,
                        |e| BillingAnswer::Event(e.into()),
                    ),
                }
            }
            BillingCall::Checkout(req) => guest(
                adapter
                    .call_create_checkout(&mut *store, &req.into())
                    .await?,
                |c| BillingAnswer::Checkout(c.into()),
            ),
            BillingCall::ChangePlan(req) => guest(
                adapter.call_change_plan(&mut *store, &req.into()).await?,
                |s| BillingAnswer::State(s.into()),
            ),
            BillingCall::Cancel {
                subscription_id,
                at_period_end,
            } => guest(
                adapter
                    .call_cancel(&mut *store, &subscription_id, at_period_end)
                    .await?,
                |s| BillingAnswer::State(s.into()),
            ),
            BillingCall::Resume(id) => guest(adapter.call_resume(&mut *store, &id).await?, |s| {
                BillingAnswer::State(s.into())
            }),
        })
    }};
}

impl PluginRuntime {
    fn billing_pre<'a>(
        name: &str,
        plugin: &'a LoadedPlugin,
    ) -> Result<&'a BillingPre, PluginError> {
        match &plugin.linked {
            Linked::Billing(pre) => Ok(pre),
            _ => Err(PluginError::WrongWorld {
                plugin: name.into(),
                expected: "billing-adapter".into(),
                reason: format!("is a {} plugin", plugin.kind.as_str()),
            }),
        }
    }

    /// Runs one billing call in a fresh instance within `limits`. A webhook
    /// whose signature does not verify is `WebhookError::Signature`.
    pub async fn billing_call(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        limits: Limits,
        grants: Arc<Grants>,
        call: BillingCall,
    ) -> Result<BillingAnswer, WebhookError> {
        let pre = Self::billing_pre(name, plugin).map_err(WebhookError::Adapter)?;
        let mut store = self.store(name, limits, grants);
        let result = async {
            match pre {
                BillingPre::V0_2(pre) => {
                    let adapter = pre.instantiate_async(&mut store).await?;
                    run!(adapter, &mut store, call)
                }
                BillingPre::V0_3(pre) => {
                    let adapter = pre.instantiate_async(&mut store).await?;
                    run!(adapter, &mut store, call)
                }
            }
        }
        .await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Refused::Signature(e))) => Err(WebhookError::Signature(guest_error(name, e))),
            Ok(Err(Refused::Guest(e))) => Err(WebhookError::Adapter(guest_error(name, e))),
            Err(e) => Err(WebhookError::Adapter(self.classify(name, e, &mut store))),
        }
    }
}

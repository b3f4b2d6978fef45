//! Calls into a billing adapter: one fresh, limited instance per call (a
//! webhook's verification and normalisation share one).

use std::sync::Arc;

use wasmtime::Store;

use super::{
    BillingEvent, Checkout, CheckoutRequest, Linked, LoadedPlugin, PlanChange, PluginRuntime,
    SubscriptionState, Webhook,
};
use crate::plugins::bindings::v0_2_0::billing::{BillingAdapter, BillingAdapterPre};
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

type GuestResult<T> =
    Result<T, crate::plugins::bindings::v0_2_0::node::pingvas::plugin::types::PluginError>;

impl PluginRuntime {
    fn billing_pre<'a>(
        name: &str,
        plugin: &'a LoadedPlugin,
    ) -> Result<&'a BillingAdapterPre<PluginState>, PluginError> {
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
            let adapter = pre.instantiate_async(&mut store).await?;
            run(&adapter, &mut store, call).await
        }
        .await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Refused::Signature(e))) => {
                Err(WebhookError::Signature(guest_error(name, e.into())))
            }
            Ok(Err(Refused::Guest(e))) => Err(WebhookError::Adapter(guest_error(name, e.into()))),
            Err(e) => Err(WebhookError::Adapter(self.classify(name, e, &mut store))),
        }
    }
}

enum Refused {
    Signature(crate::plugins::bindings::v0_2_0::node::pingvas::plugin::types::PluginError),
    Guest(crate::plugins::bindings::v0_2_0::node::pingvas::plugin::types::PluginError),
}

async fn run(
    adapter: &BillingAdapter,
    store: &mut Store<PluginState>,
    call: BillingCall,
) -> wasmtime::Result<Result<BillingAnswer, Refused>> {
    fn guest<T>(
        r: GuestResult<T>,
        f: impl FnOnce(T) -> BillingAnswer,
    ) -> Result<BillingAnswer, Refused> {
        r.map(f).map_err(Refused::Guest)
    }
    Ok(match call {
        BillingCall::Webhook(hook) => {
            if let Err(e) = adapter.call_verify_webhook(&mut *store, &hook).await? {
                return Ok(Err(Refused::Signature(e)));
            }
            guest(
                adapter.call_normalise_event(&mut *store, &hook).await?,
                BillingAnswer::Event,
            )
        }
        BillingCall::Checkout(req) => guest(
            adapter.call_create_checkout(&mut *store, &req).await?,
            BillingAnswer::Checkout,
        ),
        BillingCall::ChangePlan(req) => guest(
            adapter.call_change_plan(&mut *store, &req).await?,
            BillingAnswer::State,
        ),
        BillingCall::Cancel {
            subscription_id,
            at_period_end,
        } => guest(
            adapter
                .call_cancel(&mut *store, &subscription_id, at_period_end)
                .await?,
            BillingAnswer::State,
        ),
        BillingCall::Resume(id) => guest(
            adapter.call_resume(&mut *store, &id).await?,
            BillingAnswer::State,
        ),
    })
}

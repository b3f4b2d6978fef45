//! Host bindings of `pingvas:plugin@0.2.0`. `node` and `workflow` are the
//! worlds of 0.1.0 under a new package version: their imports are linked
//! next to 0.1.0's (one linker serves both), each call delegating to the
//! one host implementation, and their exports are called through the
//! 0.1.0 bindings — export names carry no version and component types are
//! structural, so one set of calls runs both. Billing adapters of 0.2.x
//! keep this binding of their world; the host's billing types are 0.3.0's,
//! and the conversions at the end of this file map between them.

use wasmtime::component::Resource;

use crate::plugins::image_handle::ImageHandle;
use crate::plugins::state::PluginState;

use super::v0_1_0::node::pingvas::plugin as v1;

/// The version of the `pingvas:plugin` package these bindings speak.
pub const VERSION: &str = "0.2.0";

pub mod node {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "node",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/images.image": crate::plugins::image_handle::ImageHandle,
        },
    });
}

pub mod billing {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.2.0",
        world: "billing-adapter",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": super::node::pingvas::plugin::types,
            "pingvas:plugin/log": super::node::pingvas::plugin::log,
        },
    });
}

use node::pingvas::plugin as v2;

impl v2::types::Host for PluginState {}
impl v2::node_types::Host for PluginState {}
impl billing::pingvas::plugin::billing_types::Host for PluginState {}

impl v2::log::Host for PluginState {
    async fn log(&mut self, level: v2::log::Level, message: String) -> wasmtime::Result<()> {
        use v1::log::Level as L1;
        use v2::log::Level as L2;
        let level = match level {
            L2::Trace => L1::Trace,
            L2::Debug => L1::Debug,
            L2::Info => L1::Info,
            L2::Warn => L1::Warn,
            L2::Error => L1::Error,
        };
        v1::log::Host::log(self, level, message).await
    }
}

impl v2::images::Host for PluginState {
    async fn create(
        &mut self,
        width: u32,
        height: u32,
        rgba: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<ImageHandle>, String>> {
        v1::images::Host::create(self, width, height, rgba).await
    }
}

impl v2::images::HostImage for PluginState {
    async fn width(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        v1::images::HostImage::width(self, img).await
    }

    async fn height(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<u32> {
        v1::images::HostImage::height(self, img).await
    }

    async fn read_rgba(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<Vec<u8>> {
        v1::images::HostImage::read_rgba(self, img).await
    }

    async fn metadata(
        &mut self,
        img: Resource<ImageHandle>,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        v1::images::HostImage::metadata(self, img).await
    }

    async fn set_metadata(
        &mut self,
        img: Resource<ImageHandle>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        v1::images::HostImage::set_metadata(self, img, key, value).await
    }

    async fn drop(&mut self, img: Resource<ImageHandle>) -> wasmtime::Result<()> {
        v1::images::HostImage::drop(self, img).await
    }
}

impl From<v2::types::PluginError> for v1::types::PluginError {
    fn from(e: v2::types::PluginError) -> Self {
        match e {
            v2::types::PluginError::InvalidInput(m) => Self::InvalidInput(m),
            v2::types::PluginError::Rejected(m) => Self::Rejected(m),
            v2::types::PluginError::Failed(m) => Self::Failed(m),
        }
    }
}

/// 0.2.x billing adapters, called with the host's (0.3.0) billing types.
mod billing_types {
    use super::billing::pingvas::plugin::billing_types as b2;
    use crate::plugins::bindings::v0_3_0::billing::pingvas::plugin::billing_types as host;

    impl From<host::Webhook> for b2::Webhook {
        fn from(h: host::Webhook) -> Self {
            b2::Webhook {
                headers: h.headers,
                body: h.body,
            }
        }
    }

    impl From<host::CheckoutRequest> for b2::CheckoutRequest {
        fn from(r: host::CheckoutRequest) -> Self {
            b2::CheckoutRequest {
                user_id: r.user_id,
                email: r.email,
                plan: r.plan,
                billing_cycle: r.billing_cycle,
            }
        }
    }

    impl From<host::PlanChange> for b2::PlanChange {
        fn from(c: host::PlanChange) -> Self {
            b2::PlanChange {
                subscription_id: c.subscription_id,
                plan: c.plan,
                billing_cycle: c.billing_cycle,
                effective: match c.effective {
                    host::ChangeTiming::Immediately => b2::ChangeTiming::Immediately,
                    host::ChangeTiming::AtPeriodEnd => b2::ChangeTiming::AtPeriodEnd,
                },
            }
        }
    }

    impl From<b2::Checkout> for host::Checkout {
        fn from(c: b2::Checkout) -> Self {
            host::Checkout {
                url: c.url,
                expires_at: c.expires_at,
            }
        }
    }

    impl From<b2::SubscriptionState> for host::SubscriptionState {
        fn from(s: b2::SubscriptionState) -> Self {
            host::SubscriptionState {
                subscription_id: s.subscription_id,
                customer_id: s.customer_id,
                plan: s.plan,
                billing_cycle: s.billing_cycle,
                status: s.status,
                current_period_start: s.current_period_start,
                current_period_end: s.current_period_end,
                cancel_at_period_end: s.cancel_at_period_end,
                card_brand: s.card_brand,
                card_last_four: s.card_last_four,
                updated_at: s.updated_at,
            }
        }
    }

    /// A 0.2.x event says no invoice reason.
    impl From<b2::BillingEvent> for host::BillingEvent {
        fn from(e: b2::BillingEvent) -> Self {
            use b2::EventKind as K2;
            use host::EventKind as K;
            host::BillingEvent {
                kind: match e.kind {
                    K2::SubscriptionCreated => K::SubscriptionCreated,
                    K2::SubscriptionUpdated => K::SubscriptionUpdated,
                    K2::SubscriptionRenewed => K::SubscriptionRenewed,
                    K2::SubscriptionCancelled => K::SubscriptionCancelled,
                    K2::SubscriptionExpired => K::SubscriptionExpired,
                    K2::PaymentSucceeded => K::PaymentSucceeded,
                    K2::PaymentFailed => K::PaymentFailed,
                    K2::Refunded => K::Refunded,
                    K2::Other => K::Other,
                },
                provider_event: e.provider_event,
                event_id: e.event_id,
                user_id: e.user_id,
                invoice_id: e.invoice_id,
                invoice_reason: None,
                subscription: e.subscription.map(Into::into),
            }
        }
    }
}

//! Provider webhooks: verified by the adapter before anything is parsed,
//! stored once per `(provider, event id)`, answered, then applied from the
//! store — so a replay is a no-op and a failed apply is retried.

use chrono::Utc;

use super::event::{Event, Kind};
use super::subscriptions::{ApplyError, Billing, Notice};
use crate::plugins::PluginError;
use crate::plugins::runtime::{BillingAnswer, BillingCall, Webhook, WebhookError};
use crate::store::billing::{self as q, BillingEventRow, NewBillingEvent};
use crate::store::{StoreError, new_id};

/// Tries an event gets before it stays `failed` for an operator.
pub const MAX_ATTEMPTS: i32 = 10;

/// Largest webhook body taken: providers send a few KiB; anything bigger
/// is refused before an adapter copies and hashes it.
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WebhookRefused {
    /// No adapter (now or in grace) for this provider.
    #[error("no billing adapter for provider `{0}`")]
    UnknownProvider(String),
    #[error("billing is not configured")]
    NotConfigured,
    #[error("signature does not verify")]
    Signature,
    #[error("body larger than {MAX_WEBHOOK_BYTES} bytes")]
    TooLarge,
    /// The adapter failed on a verified webhook: the provider should retry.
    #[error(transparent)]
    Adapter(PluginError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to a verified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Stored; it is applied next.
    Stored { id: String },
    /// The same event was stored before.
    Replay,
}

impl Billing {
    /// Verifies and stores one delivery to `/webhooks/<provider>`.
    pub async fn receive(
        &self,
        provider: &str,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> Result<Received, WebhookRefused> {
        if body.len() > MAX_WEBHOOK_BYTES {
            return Err(WebhookRefused::TooLarge);
        }
        let candidates = self.adapters.for_webhook(provider);
        if candidates.is_empty() {
            return Err(match self.adapters.current() {
                None => WebhookRefused::NotConfigured,
                Some(_) => WebhookRefused::UnknownProvider(provider.to_owned()),
            });
        }
        let hook = Webhook {
            headers,
            body: body.to_vec(),
        };
        let mut event = None;
        for adapter in &candidates {
            match self
                .adapters
                .call(adapter, BillingCall::Webhook(hook.clone()))
                .await
            {
                Ok(BillingAnswer::Event(e)) => {
                    event = Some((adapter, e));
                    break;
                }
                Ok(other) => {
                    return Err(WebhookRefused::Adapter(PluginError::BadOutput {
                        plugin: adapter.name.clone(),
                        reason: format!("unexpected answer {other:?}"),
                    }));
                }
                Err(WebhookError::Signature(e)) => {
                    tracing::debug!(provider, adapter = %adapter.name, error = %e, "webhook signature refused");
                }
                Err(WebhookError::Adapter(e)) => return Err(WebhookRefused::Adapter(e)),
            }
        }
        let Some((adapter, raw)) = event else {
            tracing::warn!(
                provider,
                bytes = body.len(),
                "webhook refused: signature does not verify"
            );
            return Err(WebhookRefused::Signature);
        };
        let event = Event::try_from(raw).map_err(|reason| {
            WebhookRefused::Adapter(PluginError::BadOutput {
                plugin: adapter.name.clone(),
                reason,
            })
        })?;
        Ok(self.record(provider, &event, body).await?)
    }

    /// Stores a verified event (`body` as received); a replay of a stored
    /// one is `Received::Replay`.
    pub async fn record(
        &self,
        provider: &str,
        event: &Event,
        body: &[u8],
    ) -> Result<Received, StoreError> {
        let id = new_id();
        let normalised = serde_json::to_string(event).expect("an event serialises");
        let stored = q::insert_event(
            &self.db().write().await,
            &NewBillingEvent {
                id: &id,
                provider,
                event_id: &event.event_id,
                event_name: &event.provider_event,
                body,
                normalised: &normalised,
                now: Utc::now(),
            },
        )
        .await?;
        Ok(if stored {
            Received::Stored { id }
        } else {
            tracing::info!(provider, event_id = %event.event_id, "webhook replay ignored");
            Received::Replay
        })
    }

    /// Applies stored events not applied yet, oldest first; a second pass
    /// when the first applied something another event waited for (a
    /// payment delivered before its subscription).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let _one_at_a_time = self.applying.lock().await;
        let mut applied = 0;
        for _ in 0..2 {
            let pending = q::pending_events(self.db(), MAX_ATTEMPTS, 500).await?;
            let mut failed = 0;
            let before = applied;
            for row in pending {
                if self.apply_stored(&row).await? {
                    applied += 1;
                } else {
                    failed += 1;
                }
            }
            if failed == 0 || applied == before {
                break;
            }
        }
        Ok(applied)
    }

    /// Applies one stored event in one transaction; records why not.
    async fn apply_stored(&self, row: &BillingEventRow) -> Result<bool, StoreError> {
        let result = match serde_json::from_str::<Event>(&row.normalised) {
            Ok(event) => self.apply(&row.id, &row.provider, &event).await,
            Err(e) => Err(ApplyError::Unusable(format!(
                "stored event unreadable: {e}"
            ))),
        };
        match result {
            Ok(notices) => {
                self.tell(notices);
                Ok(true)
            }
            Err(ApplyError::Store(e)) if !e.is_check_violation() && !e.is_unique_violation() => {
                Err(e)
            }
            Err(e) => {
                tracing::warn!(provider = %row.provider, event_id = %row.event_id, error = %e, "billing event not applied");
                q::mark_failed(&self.db().write().await, &row.id, &e.to_string()).await?;
                Ok(false)
            }
        }
    }

    async fn apply(
        &self,
        id: &str,
        provider: &str,
        event: &Event,
    ) -> Result<Vec<Notice>, ApplyError> {
        let now = Utc::now();
        let mut tx = self.db().begin().await?;
        let mut notices = Vec::new();
        match (&event.kind, &event.subscription) {
            (Kind::PaymentSucceeded | Kind::PaymentFailed, Some(state)) => {
                // Payment events name the subscription; its plan is ours.
                let Some(mut row) = q::find_subscription_in(&mut tx, provider, &state.id).await?
                else {
                    return Err(ApplyError::Unusable(format!(
                        "subscription {} not known yet",
                        state.id
                    )));
                };
                if event.kind == Kind::PaymentSucceeded
                    && let Some(invoice) = &event.invoice_id
                {
                    notices.extend(
                        self.grant_paid_invoice(&mut tx, &row, invoice, event.reason())
                            .await?,
                    );
                }
                if state.card_last_four.is_some() && state.card_last_four != row.card_last_four {
                    row.card_brand = state.card_brand.clone();
                    row.card_last_four = state.card_last_four.clone();
                    row.updated_at = now;
                    q::save_subscription_in(&mut tx, &row).await?;
                }
            }
            (_, Some(state)) => {
                notices.extend(
                    self.merge(&mut tx, provider, event.user_id.as_deref(), state, now)
                        .await?
                        .notices,
                );
                if event.kind == Kind::SubscriptionRenewed
                    && let Some(invoice) = &event.invoice_id
                    && let Some(row) = q::find_subscription_in(&mut tx, provider, &state.id).await?
                {
                    notices.extend(
                        self.grant_paid_invoice(&mut tx, &row, invoice, event.reason())
                            .await?,
                    );
                }
            }
            (_, None) => {
                tracing::info!(provider, event = %event.provider_event, "billing event without a subscription: recorded only");
            }
        }
        q::mark_applied_in(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(notices)
    }
}

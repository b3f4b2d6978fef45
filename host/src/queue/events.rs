//! The events a user's WebSocket channel carries (documented in
//! `docs/websocket-events.md`): one enum, serialised as `type` + `data`,
//! and the queue's helpers that publish them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Queue;
use super::failure::JobError;
use super::job::{JobStatus, JobType};
use super::views::ResultImage;
use crate::billing::subscriptions::{Notice, Notify, SubscriptionUpdated};

#[derive(Debug, Clone, PartialEq, Serialize, strum::EnumDiscriminants)]
#[serde(tag = "type", content = "data")]
#[strum_discriminants(name(UserEventKind), derive(strum::EnumIter, strum::IntoStaticStr))]
pub enum UserEvent {
    /// A job was accepted and its credits reserved.
    #[serde(rename = "job.queued")]
    JobQueued(JobQueued),
    /// A worker leased the job.
    #[serde(rename = "job.started")]
    JobStarted(JobStarted),
    /// Step progress from the backend.
    #[serde(rename = "job.progress")]
    JobProgress(JobProgress),
    /// The job's worker was lost; the job is back in the queue.
    #[serde(rename = "job.requeued")]
    JobRequeued(JobRequeued),
    #[serde(rename = "job.completed")]
    JobCompleted(JobCompleted),
    #[serde(rename = "job.failed")]
    JobFailed(JobFailed),
    #[serde(rename = "job.cancelled")]
    JobCancelled(JobCancelled),
    /// After every reservation and settlement.
    #[serde(rename = "credits.updated")]
    CreditsUpdated(CreditsUpdated),
    /// The user's subscription or tier changed (a webhook or their own
    /// change through the API).
    #[serde(rename = "subscription.updated")]
    SubscriptionUpdated(SubscriptionUpdated),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobQueued {
    pub job_id: String,
    pub status: JobStatus,
    pub job_type: JobType,
    pub queue_position: usize,
    pub estimated_wait_seconds: u64,
    pub estimated_credits: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStarted {
    pub job_id: String,
    pub status: JobStatus,
    /// Counts from 1; a job whose worker died is leased again with the
    /// next attempt.
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobProgress {
    pub job_id: String,
    pub percent: i64,
    pub step: i64,
    pub total_steps: i64,
    /// A workflow's node at work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A short word on it (a workflow step's kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRequeued {
    pub job_id: String,
    pub status: JobStatus,
    pub attempt: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCompleted {
    pub job_id: String,
    pub status: JobStatus,
    pub images: Vec<ResultImage>,
    pub credits_used: i64,
    pub credits_refunded: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobFailed {
    pub job_id: String,
    pub status: JobStatus,
    pub error: JobError,
    /// What the user's own failing node made the worker do.
    pub credits_used: i64,
    pub credits_refunded: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCancelled {
    pub job_id: String,
    pub status: JobStatus,
    pub credits_used: i64,
    pub credits_refunded: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditsUpdated {
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
}

impl UserEventKind {
    /// The `type` a client sees.
    pub fn name(self) -> &'static str {
        match self {
            UserEventKind::JobQueued => "job.queued",
            UserEventKind::JobStarted => "job.started",
            UserEventKind::JobProgress => "job.progress",
            UserEventKind::JobRequeued => "job.requeued",
            UserEventKind::JobCompleted => "job.completed",
            UserEventKind::JobFailed => "job.failed",
            UserEventKind::JobCancelled => "job.cancelled",
            UserEventKind::CreditsUpdated => "credits.updated",
            UserEventKind::SubscriptionUpdated => "subscription.updated",
        }
    }
}

impl Queue {
    pub(super) fn notify(&self, user_id: &str, event: UserEvent) {
        self.parts.events.publish(user_id, &event);
    }

    /// Tells the user their balance after a reservation or settlement.
    pub async fn notify_credits(&self, user_id: &str) {
        if let Ok(Some(a)) = crate::store::credits::account(&self.parts.db, user_id).await {
            self.notify_balance(user_id, a.into());
        }
    }

    /// `credits.updated` with a balance the caller read in its write.
    pub fn notify_balance(&self, user_id: &str, b: crate::billing::ledger::Balance) {
        self.notify(
            user_id,
            UserEvent::CreditsUpdated(CreditsUpdated {
                balance: b.balance,
                reserved: b.reserved,
                available: b.available,
            }),
        );
    }
}

/// Billing's notices go out on the same channel as the queue's.
pub struct BillingNotices {
    pub queue: std::sync::Arc<Queue>,
}

impl Notify for BillingNotices {
    fn notify(&self, notice: Notice) {
        match notice {
            Notice::Credits { user_id } => {
                let queue = self.queue.clone();
                tokio::spawn(async move { queue.notify_credits(&user_id).await });
            }
            Notice::Subscription { user_id, update } => {
                self.queue
                    .notify(&user_id, UserEvent::SubscriptionUpdated(update));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use crate::queue::failure::FailureCode;
    use strum::IntoEnumIterator;

    /// A filled-in event of every kind (the match makes a new kind add its
    /// sample here).
    fn sample(kind: UserEventKind) -> UserEvent {
        let job_id = "0193".to_owned();
        match kind {
            UserEventKind::JobQueued => UserEvent::JobQueued(JobQueued {
                job_id,
                status: JobStatus::Queued,
                job_type: JobType::TextToImage,
                queue_position: 1,
                estimated_wait_seconds: 0,
                estimated_credits: 3,
            }),
            UserEventKind::JobStarted => UserEvent::JobStarted(JobStarted {
                job_id,
                status: JobStatus::Processing,
                attempt: 1,
                started_at: Utc::now(),
            }),
            UserEventKind::JobProgress => UserEvent::JobProgress(JobProgress {
                job_id,
                percent: 50,
                step: 1,
                total_steps: 2,
                node: None,
                message: None,
            }),
            UserEventKind::JobRequeued => UserEvent::JobRequeued(JobRequeued {
                job_id,
                status: JobStatus::Queued,
                attempt: 1,
            }),
            UserEventKind::JobCompleted => UserEvent::JobCompleted(JobCompleted {
                job_id,
                status: JobStatus::Completed,
                images: vec![ResultImage {
                    image_id: "i".into(),
                    image_url: "/f".into(),
                    thumbnail_url: "/t".into(),
                    width: 8,
                    height: 8,
                }],
                credits_used: 1,
                credits_refunded: 2,
            }),
            UserEventKind::JobFailed => UserEvent::JobFailed(JobFailed {
                job_id,
                status: JobStatus::Failed,
                error: JobError::new(FailureCode::PluginFailed, Some("r".into()), Lang::En),
                credits_used: 1,
                credits_refunded: 2,
            }),
            UserEventKind::JobCancelled => UserEvent::JobCancelled(JobCancelled {
                job_id,
                status: JobStatus::Cancelled,
                credits_used: 0,
                credits_refunded: 3,
            }),
            UserEventKind::CreditsUpdated => UserEvent::CreditsUpdated(CreditsUpdated {
                balance: 10,
                reserved: 3,
                available: 7,
            }),
            UserEventKind::SubscriptionUpdated => {
                UserEvent::SubscriptionUpdated(SubscriptionUpdated {
                    plan: "pro".into(),
                    status: "active".into(),
                    billing_cycle: "monthly".into(),
                    current_period_end: Some(Utc::now()),
                    cancel_at_period_end: false,
                    pending_plan: Some("starter".into()),
                    tier: "pro".into(),
                })
            }
        }
    }

    /// Every key of `v` and of the objects nested in it.
    fn field_names(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    out.push(k.clone());
                    field_names(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| field_names(x, out)),
            _ => {}
        }
    }

    #[test]
    fn each_kind_serialises_with_its_type_name() {
        for kind in UserEventKind::iter() {
            let v = serde_json::to_value(sample(kind)).unwrap();
            assert_eq!(v["type"], kind.name());
            assert!(v["data"].is_object());
        }
    }

    /// `docs/websocket-events.md` documents every event and every field the
    /// server sends, and every failure code.
    #[test]
    fn the_events_document_names_every_event_and_field() {
        let doc = include_str!("../../../docs/websocket-events.md");
        for kind in UserEventKind::iter() {
            let heading = format!("### `{}`", kind.name());
            let start = doc
                .find(&heading)
                .unwrap_or_else(|| panic!("docs/websocket-events.md lacks {heading}"));
            let section = &doc[start + heading.len()..];
            let section = &section[..section.find("\n### ").unwrap_or(section.len())];
            let data = serde_json::to_value(sample(kind)).unwrap()["data"].clone();
            let mut fields = Vec::new();
            field_names(&data, &mut fields);
            for field in fields {
                assert!(
                    section.contains(&format!("\"{field}\"")),
                    "the {heading} section does not show the field \"{field}\""
                );
            }
        }
        for code in FailureCode::iter().filter(|c| *c != FailureCode::Cancelled) {
            assert!(
                doc.contains(&format!("`{}`", code.as_str())),
                "docs/websocket-events.md does not list {}",
                code.as_str()
            );
        }
    }
}

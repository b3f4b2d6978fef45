//! Heartbeats: a worker renews its lease, reports progress, and learns
//! whether to go on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::events::{JobProgress, UserEvent};
use super::job::JobStatus;
use super::{Queue, QueueResult};
use crate::store::jobs as q;

/// What a heartbeat tells the worker; on the internal API as
/// `{"action": "continue", "lease_expires_at": …}`, `{"action":
/// "cancelled"}` or `{"action": "lost"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BeatReply {
    /// Keep going; the lease now lasts until then.
    Continue {
        #[serde(rename = "lease_expires_at")]
        expires_at: DateTime<Utc>,
    },
    /// The user cancelled: stop, the job is settled.
    Cancelled,
    /// The lease is gone (expired and given to another worker, or the job
    /// ended): stop and drop the work.
    Lost,
}

/// Percent done of `step` out of `total`.
fn percent(step: u32, total: u32) -> i64 {
    if total == 0 {
        return 0;
    }
    (u64::from(step) * 100 / u64::from(total)).min(100) as i64
}

/// How far a job is: steps done of the total, and for a workflow the node
/// at work and a short message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    pub step: u32,
    pub total_steps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepProgress {
    pub fn steps(step: u32, total_steps: u32) -> Self {
        Self {
            step,
            total_steps,
            ..Self::default()
        }
    }
}

/// At most `max` characters, control characters dropped (a worker is not
/// trusted to have).
fn clip(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl Queue {
    /// Renews a lease, records progress, and tells the worker whether to go
    /// on.
    pub async fn heartbeat(
        &self,
        job_id: &str,
        token: &str,
        progress: Option<StepProgress>,
        gpu_started_at: Option<DateTime<Utc>>,
    ) -> QueueResult<BeatReply> {
        let expires_at = Utc::now() + self.settings.lease_ttl;
        let beat = q::Beat {
            job_id,
            token,
            expires_at,
            progress: progress.as_ref().map(|p| {
                (
                    percent(p.step, p.total_steps),
                    i64::from(p.step),
                    i64::from(p.total_steps),
                )
            }),
            gpu_started_at,
        };
        let held = q::heartbeat(&self.parts.db.write().await, &beat).await?;
        let Some((user_id, worker_id)) = held else {
            let row = q::get(&self.parts.db, job_id).await?;
            return Ok(match row {
                Some(r) if r.status == JobStatus::Cancelled => BeatReply::Cancelled,
                _ => BeatReply::Lost,
            });
        };
        if let Some(p) = progress {
            self.notify(
                &user_id,
                UserEvent::JobProgress(JobProgress {
                    job_id: job_id.to_owned(),
                    percent: percent(p.step, p.total_steps),
                    step: i64::from(p.step),
                    total_steps: i64::from(p.total_steps),
                    node: p.node.map(|n| clip(&n, 64)),
                    message: p.message.map(|m| clip(&m, 200)),
                }),
            );
        }
        if let Some(worker) = worker_id {
            self.heard_from(worker).await?;
        }
        Ok(BeatReply::Continue { expires_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_travel_as_tagged_actions() {
        let at = Utc::now();
        let v = serde_json::to_value(BeatReply::Continue { expires_at: at }).unwrap();
        assert_eq!(v["action"], "continue");
        assert!(v["lease_expires_at"].is_string());
        assert_eq!(
            serde_json::to_value(BeatReply::Lost).unwrap(),
            serde_json::json!({ "action": "lost" })
        );
        let back: BeatReply =
            serde_json::from_value(serde_json::json!({ "action": "cancelled" })).unwrap();
        assert_eq!(back, BeatReply::Cancelled);
        assert!(
            serde_json::from_value::<BeatReply>(serde_json::json!({ "action": "maybe" })).is_err()
        );
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(0, 0), 0);
        assert_eq!(percent(5, 10), 50);
        assert_eq!(percent(12, 10), 100);
    }
}

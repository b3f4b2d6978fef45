//! Enqueueing: the job is priced and checked against the live workers,
//! then its estimate is reserved and the job inserted in one transaction,
//! under the per-user and global caps (`batch`).

use std::sync::Arc;

use super::job::{JobSpec, JobType, credits_for, estimate_credits, node_credits};
use super::scheduler;
use super::{Queue, QueueError, QueueResult};
use crate::store::jobs as q;
use crate::store::new_id;

/// What a job is expected to cost.
struct Priced {
    credits: i64,
    gpu_seconds: f64,
}

/// A job accepted into the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub job_id: String,
    pub queue_position: usize,
    pub estimated_wait_seconds: u64,
    pub estimated_credits: i64,
    pub websocket_channel: String,
}

/// A priced job to queue, with the limits of its user's tier.
pub(super) struct NewEnqueue {
    pub id: String,
    pub user_id: String,
    pub job_type: JobType,
    pub model: String,
    pub params: String,
    pub save_to_board: Option<String>,
    pub priority: u32,
    pub max_queued: u32,
    /// Queued jobs of all users this tier may enqueue up to.
    pub room: u64,
    pub credits: i64,
    pub gpu_seconds: f64,
    /// Bytes of uploads stored for the job.
    pub input_bytes: i64,
}

impl Queue {
    /// The job's price, when its models are known and some live worker
    /// serves them all.
    async fn servable(&self, spec: &JobSpec) -> QueueResult<Priced> {
        let priced = self.priced(spec)?;
        // The checkpoint(s), and the LoRAs and ControlNet the job applies:
        // a backend without them could not apply what the job is charged.
        for model in std::iter::once(spec.model()).chain(spec.adapters()) {
            if !self.is_served(model).await? {
                return Err(QueueError::NoWorker {
                    model: model.to_owned(),
                });
            }
        }
        Ok(priced)
    }

    /// The estimate and expected GPU time: one operation at its model's
    /// rate, or a workflow's inference steps each at its own.
    fn priced(&self, spec: &JobSpec) -> QueueResult<Priced> {
        match &spec.workflow {
            None => {
                let (model, catalogue) = (self.model(spec.model())?, &self.parts.models);
                Ok(Priced {
                    credits: estimate_credits(spec, model, catalogue),
                    gpu_seconds: spec.expected_gpu_seconds(model, catalogue),
                })
            }
            Some(plan) => {
                let mut p = Priced {
                    credits: 0,
                    gpu_seconds: 0.0,
                };
                for (name, secs) in plan.inferences() {
                    p.credits += credits_for(secs, self.model(name)?);
                    p.gpu_seconds += secs;
                }
                // Its plugins' time, at its first model's rate (as settled).
                let first = plan.models().into_iter().next().unwrap_or_default();
                p.credits += node_credits(spec, self.model(&first)?);
                Ok(p)
            }
        }
    }

    /// What `enqueue` would refuse without a transaction — a model nobody
    /// serves, an estimate above the credits available now — for callers
    /// about to do costly work for the job (decode its images) first.
    pub async fn preflight(&self, user_id: &str, spec: &JobSpec) -> QueueResult<()> {
        let required = self.servable(spec).await?.credits;
        let available = crate::store::credits::account(&self.parts.db, user_id)
            .await?
            .map_or(0, |a| a.balance - a.reserved);
        if required > available {
            return Err(QueueError::Insufficient {
                required,
                available,
            });
        }
        Ok(())
    }

    /// Reserves the estimate and queues the job, in one transaction with
    /// the other enqueues of the moment (`batch`); `input_bytes` of
    /// uploads stored for it count against the user's storage in the same
    /// transaction.
    pub async fn enqueue(
        self: &Arc<Self>,
        user_id: &str,
        tier: &str,
        spec: JobSpec,
        input_bytes: i64,
    ) -> QueueResult<Enqueued> {
        let priced = self.servable(&spec).await?;
        let plan = self.parts.plans.tier(tier);
        let params =
            serde_json::to_string(&spec).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let job = NewEnqueue {
            id: new_id(),
            user_id: user_id.to_owned(),
            job_type: spec.job_type,
            model: spec.model().to_owned(),
            params,
            save_to_board: spec.save_to_board.clone(),
            priority: plan.rank,
            max_queued: plan.max_queued,
            room: tier_room(
                self.settings.max_queued,
                self.settings.tier_headroom,
                plan.rank,
                self.parts.plans.top_rank(),
            ),
            credits: priced.credits,
            gpu_seconds: priced.gpu_seconds,
            input_bytes,
        };
        self.commit_enqueue(job).await
    }

    /// Seconds until a job at `position` starts: the jobs ahead of it at
    /// the measured mean job time, spread over the live workers.
    pub(super) async fn estimated_wait(&self, position: usize, fallback_secs: f64) -> u64 {
        let mean = self
            .job_seconds
            .lock()
            .expect("throughput lock")
            .unwrap_or(fallback_secs);
        let workers = self.served().await.map_or(1, |s| s.workers).max(1);
        (position.saturating_sub(1) as f64 * mean / workers as f64).ceil() as u64
    }
}

/// How many queued jobs (of all users) a tier of `rank` may enqueue up
/// to: the top tier the whole `cap`, each lower tier a `headroom` share
/// less in steps, so a flood from a low tier fills its share and stops
/// while higher tiers still get in.
pub fn tier_room(cap: u64, headroom: f64, rank: u32, top_rank: u32) -> u64 {
    if top_rank == 0 {
        return cap;
    }
    let below_top = f64::from(top_rank.saturating_sub(rank)) / f64::from(top_rank);
    let share = 1.0 - headroom.clamp(0.0, 1.0) * below_top;
    (cap as f64 * share).floor() as u64
}

/// The store's per-user queue summaries as the scheduler takes them.
pub(super) fn summaries(groups: &[q::QueuedGroup]) -> Vec<scheduler::QueuedGroup> {
    groups
        .iter()
        .map(|g| scheduler::QueuedGroup {
            user_id: g.user_id.clone(),
            priority: g.priority as u32,
            queued: g.queued as usize,
            oldest: g.oldest,
            last_dispatch: g.last_dispatch,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::tier_room;

    #[test]
    fn lower_tiers_leave_headroom_for_higher_ones() {
        // Five tiers, ranks 0..=4, 20 % headroom.
        let rooms: Vec<u64> = (0..=4).map(|r| tier_room(10_000, 0.2, r, 4)).collect();
        assert_eq!(rooms, [8_000, 8_500, 9_000, 9_500, 10_000]);
        assert_eq!(tier_room(10_000, 0.0, 0, 4), 10_000);
        assert_eq!(tier_room(10, 0.5, 0, 0), 10);
        assert_eq!(tier_room(100, 7.0, 0, 4), 0);
    }
}

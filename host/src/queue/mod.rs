//! The GPU job queue: jobs and their states, the scheduler's dispatch
//! order, leases for workers, and the settlement of each job's credit
//! reservation.

pub mod job;
pub mod results;
pub mod scheduler;
pub mod service;

pub use service::{
    BeatReply, Enqueued, Finished, Lease, Queue, QueueError, QueueResult, QueueSettings,
    QueueStatus, Settled, WorkerInfo,
};

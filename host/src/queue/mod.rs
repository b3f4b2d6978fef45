//! The GPU job queue. So far: the scheduler's ordering rules, as pure
//! logic; jobs, leases, workers and events follow with the queue issue.

pub mod scheduler;

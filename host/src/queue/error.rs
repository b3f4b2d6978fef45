//! What the queue answers when it cannot do what was asked.

use crate::billing::ledger::LedgerError;
use crate::store::StoreError;

use super::job::JobStatus;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("insufficient credits: {required} required, {available} available")]
    Insufficient { required: i64, available: i64 },
    #[error("{limit} jobs already queued for this user")]
    QuotaExceeded { limit: u32 },
    #[error("the queue is full ({limit} jobs)")]
    QueueFull { limit: u64 },
    #[error("no worker serves model {model}")]
    NoWorker { model: String },
    #[error("no such job")]
    NotFound,
    #[error("job already {}", status.as_str())]
    Ended { status: JobStatus },
    #[error("the lease is no longer held")]
    LeaseLost,
    /// A worker id registered by another process (another key).
    #[error("the worker id belongs to another worker")]
    NotYourWorker,
    /// A plugin download for a job the asking worker does not hold, or a
    /// version the job did not pin.
    #[error("not a plugin of a job this worker holds")]
    NotPinned,
    #[error("invalid: {0}")]
    Invalid(String),
    /// The transaction this job shared with others failed (logged once
    /// with its cause).
    #[error("the enqueue transaction failed")]
    Failed,
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerError> for QueueError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Insufficient {
                required,
                available,
            } => QueueError::Insufficient {
                required,
                available,
            },
            LedgerError::Store(s) => QueueError::Store(s),
            other => QueueError::Ledger(other),
        }
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Store(e.into())
    }
}

pub type QueueResult<T> = Result<T, QueueError>;

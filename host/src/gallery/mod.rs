//! The gallery: a user's images (list, look at, star, share, delete,
//! upload), boards, and the storage they take. Free of HTTP; the store
//! keeps the per-user byte counter in the transactions that add or remove
//! bytes.

pub mod boards;
pub mod images;
pub mod storage;
pub mod sweep;

use crate::billing::plans::Catalogue;
use crate::blobs::Blobs;
use crate::imaging::DecodeGate;
use crate::revisions::{Revision, Revisions};
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// Missing, or another user's (the same answer for both).
    #[error("not found")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("at most {max} {what}")]
    Limit { what: &'static str, max: usize },
    #[error("storage quota exceeded: {used} of {quota} bytes")]
    StorageExceeded { used: i64, quota: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> GalleryError {
    GalleryError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub type GalleryResult<T> = Result<T, GalleryError>;

pub struct Gallery {
    db: Db,
    blobs: Blobs,
    plans: Catalogue,
    revisions: Revisions,
    /// Uploads are decoded through this gate, at most `upload_max_side` a
    /// side (`with_uploads`).
    decoding: DecodeGate,
    upload_max_side: u32,
}

impl Gallery {
    /// `revisions` is shared with the queue, which adds generated images.
    pub fn new(db: Db, blobs: Blobs, plans: Catalogue, revisions: Revisions) -> Self {
        Self {
            db,
            blobs,
            plans,
            revisions,
            decoding: DecodeGate::for_cores(),
            upload_max_side: images::DEFAULT_UPLOAD_MAX_SIDE,
        }
    }

    /// Uploads decoded through `gate` (the one generation inputs pass), at
    /// most `max_side` pixels a side.
    pub fn with_uploads(mut self, gate: DecodeGate, max_side: u32) -> Self {
        self.decoding = gate;
        self.upload_max_side = max_side.clamp(1, crate::imaging::MAX_DECODED_SIDE);
        self
    }

    /// The user's gallery revision: read it before listing, and a page
    /// listed under it stays true while it is unchanged (`None`: keep no
    /// page).
    pub fn revision(&self, user_id: &str) -> Option<Revision> {
        self.revisions.of(user_id)
    }
}

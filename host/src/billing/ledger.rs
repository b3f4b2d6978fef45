//! The credit ledger: per-user `balance` and `reserved`, an append-only log
//! of every balance change, and two-phase holds (TigerBeetle's pending
//! transfers): `reserve` holds credits, `capture` charges up to the held
//! amount and returns the rest, `release` returns all. Each hold resolves
//! exactly once; every operation carries an idempotency key so a retry
//! never charges twice. Every operation is one database transaction.
//!
//! The `*_in` functions run inside a caller's transaction (a job insert and
//! its reservation commit together); the others open their own.

use chrono::Utc;

use crate::store::credits::{self as q, HoldRow, NewTransaction, TransactionRow};
use crate::store::{Db, Page, StoreError, Tx, new_id};

/// Kinds of ledger transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    SignupGrant,
    SubscriptionGrant,
    GenerationUse,
    GenerationRefund,
    AdminAdjustment,
}

impl TxKind {
    pub const ALL: [TxKind; 5] = [
        TxKind::SignupGrant,
        TxKind::SubscriptionGrant,
        TxKind::GenerationUse,
        TxKind::GenerationRefund,
        TxKind::AdminAdjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::SignupGrant => "signup_grant",
            TxKind::SubscriptionGrant => "subscription_grant",
            TxKind::GenerationUse => "generation_use",
            TxKind::GenerationRefund => "generation_refund",
            TxKind::AdminAdjustment => "admin_adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient credits: {required} required, {available} available")]
    Insufficient { required: i64, available: i64 },
    #[error("no credit account for this user")]
    NoAccount,
    #[error("no such hold")]
    HoldNotFound,
    #[error("hold already {state}")]
    HoldResolved { state: String },
    #[error("cannot charge {requested}, only {held} is held")]
    CaptureExceedsHold { requested: i64, held: i64 },
    #[error("idempotency key already used for a different operation")]
    KeyReused,
    #[error("amount must be {0}")]
    BadAmount(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Store(e.into())
    }
}

pub type LedgerResult<T> = Result<T, LedgerError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    pub balance: i64,
    pub reserved: i64,
    pub available: i64,
}

impl From<q::AccountRow> for Balance {
    fn from(a: q::AccountRow) -> Self {
        Balance {
            balance: a.balance,
            reserved: a.reserved,
            available: a.balance - a.reserved,
        }
    }
}

/// A balance change that was posted (or had been posted by an earlier call
/// with the same idempotency key: `replayed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub transaction_id: String,
    pub amount: i64,
    pub balance_after: i64,
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub user_id: String,
    pub amount: i64,
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub hold_id: String,
    /// Credits taken off the balance.
    pub charged: i64,
    /// Credits returned to `available`.
    pub released: i64,
    pub replayed: bool,
}

/// The error for a refused debit or reservation, with what is available.
async fn insufficient(tx: &mut Tx, user_id: &str, required: i64) -> LedgerError {
    match q::account_in(tx, user_id).await {
        Ok(Some(a)) => LedgerError::Insufficient {
            required,
            available: a.balance - a.reserved,
        },
        Ok(None) => LedgerError::NoAccount,
        Err(e) => e.into(),
    }
}

/// Opens a user's account with an optional signup grant (inside the
/// registration transaction).
pub async fn open_account_in(tx: &mut Tx, user_id: &str, signup_grant: i64) -> LedgerResult<()> {
    q::create_account(tx, user_id, Utc::now()).await?;
    if signup_grant > 0 {
        credit_in(
            tx,
            user_id,
            signup_grant,
            TxKind::SignupGrant,
            "가입 축하 크레딧",
            None,
        )
        .await?;
    }
    Ok(())
}

/// Posts a balance change of `amount` (negative only for adjustments).
/// With a key, a second call with the same key returns the first posting.
pub async fn credit_in(
    tx: &mut Tx,
    user_id: &str,
    amount: i64,
    kind: TxKind,
    description: &str,
    key: Option<&str>,
) -> LedgerResult<Posted> {
    if amount == 0 || (amount < 0 && kind != TxKind::AdminAdjustment) {
        return Err(LedgerError::BadAmount(
            "positive (negative only for admin adjustments)",
        ));
    }
    let previous = match key {
        Some(key) => q::find_transaction_by_key(tx, user_id, key).await?,
        None => None,
    };
    if let Some(prev) = previous {
        if prev.kind != kind.as_str() || prev.amount != amount {
            return Err(LedgerError::KeyReused);
        }
        return Ok(Posted {
            transaction_id: prev.id,
            amount: prev.amount,
            balance_after: prev.balance_after,
            replayed: true,
        });
    }
    let now = Utc::now();
    let Some(balance_after) = q::add_to_balance(tx, user_id, amount, now).await? else {
        return Err(insufficient(tx, user_id, -amount).await);
    };
    let id = new_id();
    q::insert_transaction(
        tx,
        &NewTransaction {
            id: &id,
            user_id,
            kind: kind.as_str(),
            amount,
            description,
            balance_after,
            hold_id: None,
            idempotency_key: key,
            now,
        },
    )
    .await?;
    Ok(Posted {
        transaction_id: id,
        amount,
        balance_after,
        replayed: false,
    })
}

/// Reserves `amount` credits under `key`; a retry with the same key returns
/// the same hold instead of reserving again.
pub async fn reserve_in(
    tx: &mut Tx,
    user_id: &str,
    amount: i64,
    description: &str,
    key: &str,
) -> LedgerResult<Hold> {
    if amount <= 0 {
        return Err(LedgerError::BadAmount("positive"));
    }
    if let Some(prev) = q::find_hold_by_key(tx, user_id, key).await? {
        if prev.amount != amount {
            return Err(LedgerError::KeyReused);
        }
        return Ok(Hold {
            id: prev.id,
            user_id: prev.user_id,
            amount: prev.amount,
            replayed: true,
        });
    }
    let now = Utc::now();
    if q::add_reserved(tx, user_id, amount, now).await?.is_none() {
        return Err(insufficient(tx, user_id, amount).await);
    }
    let id = new_id();
    let hold = q::NewHold {
        id: &id,
        user_id,
        amount,
        key,
        description,
        now,
    };
    q::insert_holds(tx, &[hold]).await?;
    Ok(Hold {
        id,
        user_id: user_id.to_owned(),
        amount,
        replayed: false,
    })
}

/// Charges `charge` (at most the held amount) of a hold and returns the
/// rest; `charge == 0` is a full release. Resolving a hold a second time
/// with the same `key` replays the first result; with another key it fails.
pub async fn settle_in(
    tx: &mut Tx,
    hold_id: &str,
    charge: i64,
    description: &str,
    key: &str,
) -> LedgerResult<Settlement> {
    let hold = q::find_hold(tx, hold_id)
        .await?
        .ok_or(LedgerError::HoldNotFound)?;
    if charge < 0 {
        return Err(LedgerError::BadAmount("zero or positive"));
    }
    if charge > hold.amount {
        return Err(LedgerError::CaptureExceedsHold {
            requested: charge,
            held: hold.amount,
        });
    }
    let now = Utc::now();
    let state = if charge > 0 { "captured" } else { "released" };
    if !q::resolve_hold(tx, hold_id, state, charge, key, now).await? {
        return replay_settlement(hold, key);
    }
    let balance_after = q::settle_reservation(tx, &hold.user_id, hold.amount, charge, now).await?;
    if charge > 0 {
        q::insert_transaction(
            tx,
            &NewTransaction {
                id: &new_id(),
                user_id: &hold.user_id,
                kind: TxKind::GenerationUse.as_str(),
                amount: -charge,
                description,
                balance_after,
                hold_id: Some(hold_id),
                idempotency_key: None,
                now,
            },
        )
        .await?;
    }
    Ok(Settlement {
        hold_id: hold.id,
        charged: charge,
        released: hold.amount - charge,
        replayed: false,
    })
}

fn replay_settlement(hold: HoldRow, key: &str) -> LedgerResult<Settlement> {
    if hold.resolution_key.as_deref() != Some(key) {
        return Err(LedgerError::HoldResolved { state: hold.state });
    }
    Ok(Settlement {
        hold_id: hold.id,
        charged: hold.captured,
        released: hold.amount - hold.captured,
        replayed: true,
    })
}

/// The ledger over one database; each call is its own transaction.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Db,
}

impl Ledger {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn balance(&self, user_id: &str) -> LedgerResult<Balance> {
        Ok(q::account(&self.db, user_id)
            .await?
            .ok_or(LedgerError::NoAccount)?
            .into())
    }

    pub async fn credit(
        &self,
        user_id: &str,
        amount: i64,
        kind: TxKind,
        description: &str,
        key: Option<&str>,
    ) -> LedgerResult<Posted> {
        let mut tx = self.db.begin().await?;
        let posted = credit_in(&mut tx, user_id, amount, kind, description, key).await?;
        tx.commit().await?;
        Ok(posted)
    }

    pub async fn reserve(
        &self,
        user_id: &str,
        amount: i64,
        description: &str,
        key: &str,
    ) -> LedgerResult<Hold> {
        let mut tx = self.db.begin().await?;
        let hold = reserve_in(&mut tx, user_id, amount, description, key).await?;
        tx.commit().await?;
        Ok(hold)
    }

    pub async fn capture(
        &self,
        hold_id: &str,
        charge: i64,
        description: &str,
        key: &str,
    ) -> LedgerResult<Settlement> {
        let mut tx = self.db.begin().await?;
        let s = settle_in(&mut tx, hold_id, charge, description, key).await?;
        tx.commit().await?;
        Ok(s)
    }

    pub async fn release(&self, hold_id: &str, key: &str) -> LedgerResult<Settlement> {
        self.capture(hold_id, 0, "", key).await
    }

    /// One page of history, newest first, with the total count.
    pub async fn history(
        &self,
        user_id: &str,
        kind: Option<TxKind>,
        page: Page,
    ) -> LedgerResult<(Vec<TransactionRow>, i64)> {
        Ok(q::list_transactions(&self.db, user_id, kind.map(TxKind::as_str), page).await?)
    }

    /// Sum of the user's log; equals `balance` whenever the ledger is sound.
    pub async fn log_sum(&self, user_id: &str) -> LedgerResult<i64> {
        Ok(q::transaction_sum(&self.db, user_id).await?)
    }
}

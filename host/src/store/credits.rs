//! Credit accounts, holds and the append-only transaction log. The rules
//! (what may happen when) live in `billing::ledger`; these are the single
//! statements it composes. Every balance-changing statement is conditional,
//! and the CHECK constraints back them up.

use chrono::{DateTime, Utc};

use super::profiles::Part;
use super::{Db, Page, StoreResult, Tx};
use crate::{exec, exec_one, on_db, on_tx};

#[derive(Debug, Clone, Copy, sqlx::FromRow, PartialEq, Eq)]
pub struct AccountRow {
    pub balance: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HoldRow {
    pub id: String,
    pub user_id: String,
    pub amount: i64,
    pub state: String,
    pub captured: i64,
    pub idempotency_key: String,
    pub resolution_key: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TransactionRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub amount: i64,
    pub description: String,
    pub balance_after: i64,
    pub hold_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub struct NewTransaction<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: &'a str,
    pub amount: i64,
    pub description: &'a str,
    pub balance_after: i64,
    pub hold_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub now: DateTime<Utc>,
}

const ACCOUNT_SELECT: &str = "SELECT balance, reserved FROM credit_accounts WHERE user_id = $1";
const HOLD_COLUMNS: &str = "id, user_id, amount, state, captured, idempotency_key, resolution_key";
const TX_COLUMNS: &str = "id, type, amount, description, balance_after, hold_id, created_at";

pub async fn create_account(tx: &mut Tx, user_id: &str, now: DateTime<Utc>) -> StoreResult<()> {
    tx.profile_changed(Part::Balance, user_id);
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO credit_accounts (user_id, balance, reserved, updated_at) VALUES ($1, 0, 0, $2)",
    )
    .bind(user_id)
    .bind(now)))?;
    Ok(())
}

pub async fn account(db: &Db, user_id: &str) -> StoreResult<Option<AccountRow>> {
    Ok(on_db!(db, p => sqlx::query_as(ACCOUNT_SELECT)
    .bind(user_id)
    .fetch_optional(p)
    .await)?)
}

pub async fn account_in(tx: &mut Tx, user_id: &str) -> StoreResult<Option<AccountRow>> {
    Ok(on_tx!(tx, c => sqlx::query_as(ACCOUNT_SELECT)
    .bind(user_id)
    .fetch_optional(c)
    .await)?)
}

/// Adds `delta` (may be negative) to the balance unless that would leave
/// less than what is reserved. The new balance, or `None` when refused.
pub async fn add_to_balance(
    tx: &mut Tx,
    user_id: &str,
    delta: i64,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    tx.profile_changed(Part::Balance, user_id);
    Ok(on_tx!(tx, c => sqlx::query_scalar(
        "UPDATE credit_accounts SET balance = balance + $2, updated_at = $3 \
         WHERE user_id = $1 AND balance + $2 >= reserved RETURNING balance",
    )
    .bind(user_id)
    .bind(delta)
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

/// Ends a reservation of `held`, taking `charge` (≤ `held`) off the balance.
/// Returns the new balance.
pub async fn settle_reservation(
    tx: &mut Tx,
    user_id: &str,
    held: i64,
    charge: i64,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    tx.profile_changed(Part::Balance, user_id);
    Ok(on_tx!(tx, c => sqlx::query_scalar(
        "UPDATE credit_accounts SET reserved = reserved - $2, balance = balance - $3, updated_at = $4 \
         WHERE user_id = $1 RETURNING balance",
    )
    .bind(user_id)
    .bind(held)
    .bind(charge)
    .bind(now)
    .fetch_one(c)
    .await)?)
}

/// A pending hold to insert.
pub struct NewHold<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub amount: i64,
    pub key: &'a str,
    pub description: &'a str,
    pub now: DateTime<Utc>,
}

/// Inserts pending holds, all in one statement.
pub async fn insert_holds(tx: &mut Tx, holds: &[NewHold<'_>]) -> StoreResult<()> {
    if holds.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO credit_holds (id, user_id, amount, state, captured, idempotency_key, description, created_at) \
         VALUES {}",
        super::value_rows(holds.len(), 6, |row| {
            row.insert(3, "'pending'".into());
            row.insert(4, "0".into());
        })
    );
    on_tx!(tx, c => {
        let mut q = sqlx::query(&sql);
        for h in holds {
            q = q
                .bind(h.id)
                .bind(h.user_id)
                .bind(h.amount)
                .bind(h.key)
                .bind(h.description)
                .bind(h.now);
        }
        exec!(c, q)
    })?;
    Ok(())
}

/// The accounts of `user_ids`, locked for the rest of the transaction on
/// PostgreSQL (in id order, so two batches never wait on each other in a
/// circle).
pub async fn accounts_in(tx: &mut Tx, user_ids: &[&str]) -> StoreResult<Vec<(String, AccountRow)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT user_id, balance, reserved FROM credit_accounts WHERE user_id IN {} \
         ORDER BY user_id{}",
        super::value_rows(1, user_ids.len(), |_| {}),
        tx.row_lock()
    );
    let rows: Vec<(String, i64, i64)> = on_tx!(tx, c => {
        let mut q = sqlx::query_as(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, balance, reserved)| (id, AccountRow { balance, reserved }))
        .collect())
}

/// Adds `amount` to what the user has reserved, if that much is
/// available; the account after it, or `None` when refused.
pub async fn add_reserved(
    tx: &mut Tx,
    user_id: &str,
    amount: i64,
    now: DateTime<Utc>,
) -> StoreResult<Option<AccountRow>> {
    tx.profile_changed(Part::Balance, user_id);
    Ok(on_tx!(tx, c => sqlx::query_as(
        "UPDATE credit_accounts SET reserved = reserved + $2, updated_at = $3 \
         WHERE user_id = $1 AND balance - reserved >= $2 RETURNING balance, reserved",
    )
    .bind(user_id)
    .bind(amount)
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

pub async fn find_hold(tx: &mut Tx, id: &str) -> StoreResult<Option<HoldRow>> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM credit_holds WHERE id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(id).fetch_optional(c).await)?)
}

pub async fn find_hold_by_key(
    tx: &mut Tx,
    user_id: &str,
    key: &str,
) -> StoreResult<Option<HoldRow>> {
    let sql = format!(
        "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE user_id = $1 AND idempotency_key = $2"
    );
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(user_id).bind(key).fetch_optional(c).await)?)
}

/// Resolves a pending hold; false when it was already resolved.
pub async fn resolve_hold(
    tx: &mut Tx,
    id: &str,
    state: &str,
    captured: i64,
    resolution_key: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    Ok(on_tx!(tx, c => exec_one!(c, sqlx::query(
        "UPDATE credit_holds SET state = $2, captured = $3, resolution_key = $4, resolved_at = $5 \
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(state)
    .bind(captured)
    .bind(resolution_key)
    .bind(now)))?)
}

pub async fn insert_transaction(tx: &mut Tx, t: &NewTransaction<'_>) -> StoreResult<()> {
    on_tx!(tx, c => exec!(c, sqlx::query(
        "INSERT INTO credit_transactions \
         (id, user_id, type, amount, description, balance_after, hold_id, idempotency_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(t.id)
    .bind(t.user_id)
    .bind(t.kind)
    .bind(t.amount)
    .bind(t.description)
    .bind(t.balance_after)
    .bind(t.hold_id)
    .bind(t.idempotency_key)
    .bind(t.now)))?;
    Ok(())
}

pub async fn find_transaction_by_key(
    tx: &mut Tx,
    user_id: &str,
    key: &str,
) -> StoreResult<Option<TransactionRow>> {
    let sql = format!(
        "SELECT {TX_COLUMNS} FROM credit_transactions WHERE user_id = $1 AND idempotency_key = $2"
    );
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(user_id).bind(key).fetch_optional(c).await)?)
}

pub async fn find_transaction_by_hold(
    tx: &mut Tx,
    hold_id: &str,
) -> StoreResult<Option<TransactionRow>> {
    let sql = format!("SELECT {TX_COLUMNS} FROM credit_transactions WHERE hold_id = $1");
    Ok(on_tx!(tx, c => sqlx::query_as(&sql).bind(hold_id).fetch_optional(c).await)?)
}

/// One page of a user's transactions, newest first, and the total count.
pub async fn list_transactions(
    db: &Db,
    user_id: &str,
    kind: Option<&str>,
    page: Page,
) -> StoreResult<(Vec<TransactionRow>, i64)> {
    let filter = "WHERE user_id = $1 AND ($2 IS NULL OR type = $2)";
    let list_sql = format!(
        "SELECT {TX_COLUMNS} FROM credit_transactions {filter} \
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    );
    let count_sql = format!("SELECT COUNT(*) FROM credit_transactions {filter}");
    Ok(on_db!(db, p => {
        let rows = sqlx::query_as(&list_sql)
            .bind(user_id).bind(kind).bind(page.limit()).bind(page.offset())
            .fetch_all(p).await?;
        let total: i64 = sqlx::query_scalar(&count_sql).bind(user_id).bind(kind).fetch_one(p).await?;
        Ok::<_, sqlx::Error>((rows, total))
    })?)
}

/// Sum of all transaction amounts of a user: must equal the balance.
pub async fn transaction_sum(db: &Db, user_id: &str) -> StoreResult<i64> {
    Ok(on_db!(db, p => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM credit_transactions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(p)
    .await)?)
}

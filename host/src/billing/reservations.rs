//! Many reservations in one transaction (the queue's group commit of
//! enqueues): the accounts are read — and on PostgreSQL locked — once,
//! each request is checked in memory in its turn, and the holds accepted
//! are written together: one update per user, one insert for every hold.
//! What a user may reserve is exactly what `ledger::reserve_in` allows,
//! request after request.

use std::collections::HashMap;

use chrono::Utc;

use super::ledger::{Balance, LedgerError, LedgerResult};
use crate::store::credits::{self as q, AccountRow, NewHold};
use crate::store::{Tx, new_id};

struct Account {
    row: AccountRow,
    /// Reserved in this batch so far.
    taken: i64,
}

struct Held {
    id: String,
    user_id: String,
    amount: i64,
    key: String,
    description: String,
}

/// A batch of reservations open in one transaction.
pub struct Reservations {
    accounts: HashMap<String, Account>,
    held: Vec<Held>,
}

impl Reservations {
    /// Reads (and locks) the accounts of `user_ids`.
    pub async fn open_in(tx: &mut Tx, user_ids: &[&str]) -> LedgerResult<Self> {
        let mut ids = user_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let accounts = q::accounts_in(tx, &ids)
            .await?
            .into_iter()
            .map(|(id, row)| (id, Account { row, taken: 0 }))
            .collect();
        Ok(Self {
            accounts,
            held: Vec::new(),
        })
    }

    /// Holds `amount` of what `user_id` has available, under `key` (made
    /// for this hold: it names an id just minted); the hold's id.
    pub fn hold(
        &mut self,
        user_id: &str,
        amount: i64,
        key: String,
        description: String,
    ) -> LedgerResult<String> {
        if amount <= 0 {
            return Err(LedgerError::BadAmount("positive"));
        }
        let account = self
            .accounts
            .get_mut(user_id)
            .ok_or(LedgerError::NoAccount)?;
        let available = account.row.balance - account.row.reserved - account.taken;
        if amount > available {
            return Err(LedgerError::Insufficient {
                required: amount,
                available,
            });
        }
        account.taken += amount;
        let id = new_id();
        self.held.push(Held {
            id: id.clone(),
            user_id: user_id.to_owned(),
            amount,
            key,
            description,
        });
        Ok(id)
    }

    /// Gives back the last hold (what it was for was refused after all).
    pub fn undo_last(&mut self) {
        if let Some(h) = self.held.pop()
            && let Some(a) = self.accounts.get_mut(&h.user_id)
        {
            a.taken -= h.amount;
        }
    }

    /// Writes the holds; each account's balance after them.
    pub async fn write_in(self, tx: &mut Tx) -> LedgerResult<HashMap<String, Balance>> {
        let now = Utc::now();
        let mut after = HashMap::new();
        let mut users: Vec<(&String, &Account)> =
            self.accounts.iter().filter(|(_, a)| a.taken > 0).collect();
        users.sort_unstable_by_key(|(id, _)| *id);
        for (user_id, account) in users {
            // Checked again in the statement: the rows are ours until the
            // commit, so this refuses only what the in-memory count missed.
            let row = q::add_reserved(tx, user_id, account.taken, now)
                .await?
                .ok_or(LedgerError::Insufficient {
                    required: account.taken,
                    available: account.row.balance - account.row.reserved,
                })?;
            after.insert(user_id.clone(), Balance::from(row));
        }
        let holds: Vec<NewHold<'_>> = self
            .held
            .iter()
            .map(|h| NewHold {
                id: &h.id,
                user_id: &h.user_id,
                amount: h.amount,
                key: &h.key,
                description: &h.description,
                now,
            })
            .collect();
        q::insert_holds(tx, &holds).await?;
        Ok(after)
    }
}

//! The credit ledger on the real database: atomic reservations under
//! concurrency, idempotent settlement, the balance equal to the log.

use std::sync::Arc;

use pingvas_host::billing::ledger::{LedgerError, TxKind};
use pingvas_host::on_db;
use pingvas_host::store::Page;
use pingvas_tests::TestServer;
use proptest::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reserves_against_credit_for_ten() {
    let srv = TestServer::start_with(|c| c.signup_grant_credits = 0).await;
    let u = srv.signup("race@example.com").await;
    srv.state
        .ledger
        .credit(&u.user_id, 100, TxKind::AdminAdjustment, "seed", None)
        .await
        .unwrap();
    let ledger = Arc::new(srv.state.ledger.clone());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let ledger = ledger.clone();
            let user = u.user_id.clone();
            tokio::spawn(async move { ledger.reserve(&user, 10, "job", &format!("job-{i}")).await })
        })
        .collect();
    let mut ok = 0;
    let mut insufficient = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LedgerError::Insufficient {
                required: 10,
                available,
            }) => {
                assert!(available < 10);
                insufficient += 1;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, insufficient), (10, 40));
    let b = srv.state.ledger.balance(&u.user_id).await.unwrap();
    assert_eq!((b.balance, b.reserved, b.available), (100, 100, 0));
}

#[tokio::test]
async fn capture_twice_with_one_key_charges_once() {
    let srv = TestServer::start().await;
    let u = srv.signup("idem@example.com").await;
    let l = &srv.state.ledger;
    let hold = l
        .reserve(&u.user_id, 40, "job", "job-1:reserve")
        .await
        .unwrap();
    // A retried reserve returns the same hold and reserves nothing more.
    let again = l
        .reserve(&u.user_id, 40, "job", "job-1:reserve")
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.replayed),
        (hold.id.as_str(), true)
    );
    assert_eq!(l.balance(&u.user_id).await.unwrap().reserved, 40);

    let first = l
        .capture(&hold.id, 25, "생성 (25초)", "job-1:settle")
        .await
        .unwrap();
    let second = l
        .capture(&hold.id, 25, "생성 (25초)", "job-1:settle")
        .await
        .unwrap();
    assert_eq!(
        (first.charged, first.released, first.replayed),
        (25, 15, false)
    );
    assert_eq!(
        (second.charged, second.released, second.replayed),
        (25, 15, true)
    );
    let b = l.balance(&u.user_id).await.unwrap();
    assert_eq!((b.balance, b.reserved), (75, 0));
    let (rows, total) = l
        .history(
            &u.user_id,
            Some(TxKind::GenerationUse),
            Page {
                page: 1,
                per_page: 20,
            },
        )
        .await
        .unwrap();
    assert_eq!((total, rows[0].amount, rows[0].balance_after), (1, -25, 75));

    // Settling the resolved hold with another key is refused, not applied.
    assert!(matches!(
        l.release(&hold.id, "other-key").await,
        Err(LedgerError::HoldResolved { .. })
    ));
    assert_eq!(l.balance(&u.user_id).await.unwrap().balance, 75);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settlements_of_one_hold_resolve_it_once() {
    let srv = TestServer::start().await;
    let u = srv.signup("settle@example.com").await;
    let l = Arc::new(srv.state.ledger.clone());
    let hold = l.reserve(&u.user_id, 50, "job", "j").await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let l = l.clone();
            let id = hold.id.clone();
            tokio::spawn(async move { l.capture(&id, 30, "job", &format!("k{i}")).await })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        if let Ok(s) = t.await.unwrap() {
            assert!(!s.replayed);
            applied += 1;
        }
    }
    assert_eq!(applied, 1);
    let b = l.balance(&u.user_id).await.unwrap();
    assert_eq!((b.balance, b.reserved), (70, 0));
}

#[tokio::test]
async fn ledger_rules() {
    let srv = TestServer::start().await;
    let u = srv.signup("rules@example.com").await;
    let l = &srv.state.ledger;
    let hold = l.reserve(&u.user_id, 60, "job", "a").await.unwrap();
    // More than held cannot be captured.
    assert!(matches!(
        l.capture(&hold.id, 61, "job", "a:settle").await,
        Err(LedgerError::CaptureExceedsHold {
            requested: 61,
            held: 60
        })
    ));
    // An adjustment cannot take away reserved credits.
    assert!(matches!(
        l.credit(&u.user_id, -50, TxKind::AdminAdjustment, "x", None)
            .await,
        Err(LedgerError::Insufficient {
            required: 50,
            available: 40
        })
    ));
    // Same key, different amount: refused.
    assert!(matches!(
        l.reserve(&u.user_id, 10, "job", "a").await,
        Err(LedgerError::KeyReused)
    ));
    // Only adjustments may be negative; zero never posts.
    assert!(matches!(
        l.credit(&u.user_id, -1, TxKind::SubscriptionGrant, "x", None)
            .await,
        Err(LedgerError::BadAmount(_))
    ));
    assert!(matches!(
        l.credit(&u.user_id, 0, TxKind::AdminAdjustment, "x", None)
            .await,
        Err(LedgerError::BadAmount(_))
    ));
    // Idempotent grants.
    let g1 = l
        .credit(
            &u.user_id,
            15000,
            TxKind::SubscriptionGrant,
            "Pro",
            Some("sub-1:2025-11"),
        )
        .await
        .unwrap();
    let g2 = l
        .credit(
            &u.user_id,
            15000,
            TxKind::SubscriptionGrant,
            "Pro",
            Some("sub-1:2025-11"),
        )
        .await
        .unwrap();
    assert_eq!(
        (g1.transaction_id.clone(), g2.replayed),
        (g2.transaction_id.clone(), true)
    );
    let released = l.release(&hold.id, "a:settle").await.unwrap();
    assert_eq!((released.charged, released.released), (0, 60));
    let b = l.balance(&u.user_id).await.unwrap();
    assert_eq!((b.balance, b.reserved), (15100, 0));
    assert_eq!(l.log_sum(&u.user_id).await.unwrap(), b.balance);
}

#[tokio::test]
async fn database_constraints_forbid_reserving_more_than_the_balance() {
    let srv = TestServer::start().await;
    let u = srv.signup("check@example.com").await;
    let db = &srv.state.db;
    // Bypassing the ledger code, the database itself refuses.
    let over = on_db!(db, p => sqlx::query("UPDATE credit_accounts SET reserved = balance + 1 WHERE user_id = $1").bind(&u.user_id).execute(p).await.map(|_| ()));
    assert!(over.is_err(), "CHECK balance >= reserved");
    let negative = on_db!(db, p => sqlx::query("UPDATE credit_accounts SET reserved = -1 WHERE user_id = $1").bind(&u.user_id).execute(p).await.map(|_| ()));
    assert!(negative.is_err(), "CHECK reserved >= 0");
    let rewrite = on_db!(db, p => sqlx::query("UPDATE credit_transactions SET amount = 1000000 WHERE user_id = $1").bind(&u.user_id).execute(p).await.map(|_| ()));
    assert!(rewrite.is_err(), "the log is append-only");
    assert_eq!(
        srv.state.ledger.balance(&u.user_id).await.unwrap().balance,
        100
    );
}

#[derive(Debug, Clone)]
enum Op {
    Grant(i64),
    Adjust(i64),
    Reserve(i64),
    Capture(usize, i64),
    Release(usize),
    RetryLastCapture,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..500).prop_map(Op::Grant),
        (-300i64..300).prop_map(Op::Adjust),
        (1i64..300).prop_map(Op::Reserve),
        (0usize..8, 0i64..300).prop_map(|(h, c)| Op::Capture(h, c)),
        (0usize..8).prop_map(Op::Release),
        Just(Op::RetryLastCapture),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// After any sequence of operations, successful or refused, the balance
    /// equals the sum of the log and `available` is never negative.
    #[test]
    fn balance_always_equals_the_log(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let srv = TestServer::start().await;
            let u = srv.signup("prop@example.com").await;
            let l = &srv.state.ledger;
            let mut holds: Vec<(String, i64)> = Vec::new();
            let mut last_capture: Option<(String, i64, String)> = None;
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Grant(n) => { l.credit(&u.user_id, n, TxKind::SubscriptionGrant, "g", Some(&format!("g{i}"))).await.unwrap(); }
                    Op::Adjust(n) => { let _ = l.credit(&u.user_id, n, TxKind::AdminAdjustment, "a", None).await; }
                    Op::Reserve(n) => {
                        if let Ok(h) = l.reserve(&u.user_id, n, "r", &format!("r{i}")).await { holds.push((h.id, n)); }
                    }
                    Op::Capture(h, c) => if let Some((id, _)) = holds.get(h % holds.len().max(1)).cloned() {
                        let key = format!("c{i}");
                        if l.capture(&id, c, "c", &key).await.is_ok() { last_capture = Some((id, c, key)); }
                    },
                    Op::Release(h) => if let Some((id, _)) = holds.get(h % holds.len().max(1)).cloned() {
                        let _ = l.release(&id, &format!("x{i}")).await;
                    },
                    Op::RetryLastCapture => if let Some((id, c, key)) = &last_capture {
                        let s = l.capture(id, *c, "c", key).await.unwrap();
                        assert!(s.replayed);
                    },
                }
                let b = l.balance(&u.user_id).await.unwrap();
                assert!(b.available >= 0 && b.reserved >= 0, "{b:?}");
                assert_eq!(l.log_sum(&u.user_id).await.unwrap(), b.balance);
            }
            srv.stop().await;
        });
    }
}

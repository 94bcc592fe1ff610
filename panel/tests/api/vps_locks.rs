//! A customer's action racing billing on the same VPS, on a real PostgreSQL: both take the one
//! lock order (subscription, then instance) of `panel::vps::lock`, so neither deadlocks.
//! Before it, the customer path locked the instance first and billing the subscription first.

use crate::billing_world::World;
use panel::clock::Clock;
use panel::instances::{request_action, InstanceError};
use panel::plans::BillingCycle::Monthly;
use std::time::Duration;
use uuid::Uuid;
use vessel_core::Action;

/// Waits until some backend waits for a row lock (the customer's transaction is blocked).
async fn until_someone_waits_for_a_lock(pool: &sqlx::PgPool) {
    for _ in 0..200 {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
                .fetch_one(pool)
                .await
                .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the customer's action never waited for billing's lock");
}

fn is_deadlock(e: &InstanceError) -> bool {
    matches!(e, InstanceError::Db(sqlx::Error::Database(d)) if d.code().as_deref() == Some("40P01"))
}

/// The worst interleaving, forced: billing holds the subscription, the customer's action
/// starts and blocks, then billing goes on to the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_action_racing_dunning_waits_instead_of_deadlocking() {
    let w = World::new("2026-05-10T09:00:00Z").await;
    let ed = w.customer("ed@example.com", None).await;
    let placed = w.order(ed, "burst-s", Monthly, None).await;
    w.credit(ed, 300).await;
    w.pay(ed, placed.invoice_id).await;
    let instance: Uuid = w.scalar("SELECT id FROM instances").await;

    // Billing's transaction locks the subscription first, as dunning and payments do.
    let mut billing = w.pool.begin().await.unwrap();
    panel::db::subscriptions::lock(&mut billing, placed.subscription_id, None).await.unwrap().unwrap();

    let (pool, clock) = (w.pool.clone(), w.clock.clone());
    let customer = tokio::spawn(async move { request_action(&pool, &clock, ed.into(), instance.into(), Action::Stop).await });
    until_someone_waits_for_a_lock(&w.pool).await;

    // Billing goes on to the instance: suspended for an overdue invoice.
    let suspended =
        panel::subscriptions::suspend(&mut billing, placed.subscription_id.into(), ed.into(), placed.invoice_id.into(), w.clock.now())
            .await;
    assert!(suspended.is_ok(), "billing must not be the deadlock's victim: {suspended:?}");
    billing.commit().await.unwrap();

    let customer = customer.await.unwrap();
    match &customer {
        Err(e) if is_deadlock(e) => panic!("deadlock: {e}"),
        // It waited, then saw billing's suspension.
        Err(InstanceError::Suspended) => {}
        other => panic!("expected the suspension to win: {other:?}"),
    }
    assert_eq!(w.scalar::<String>("SELECT desired_state::text FROM instances").await, "suspended");
}

/// Many customer actions and billing changes at once on one VPS: every one finishes, none is a
/// deadlock, and the VPS ends in a state one of them asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_customer_actions_and_billing_never_deadlock() {
    let w = World::new("2026-05-10T09:00:00Z").await;
    let ed = w.customer("ed@example.com", None).await;
    let placed = w.order(ed, "burst-s", Monthly, None).await;
    w.credit(ed, 300).await;
    w.pay(ed, placed.invoice_id).await;
    let instance: Uuid = w.scalar("SELECT id FROM instances").await;
    let sub = placed.subscription_id;

    let mut tasks = Vec::new();
    for i in 0..40 {
        let (pool, clock) = (w.pool.clone(), w.clock.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let action = if i % 4 == 0 { Action::Start } else { Action::Stop };
                match request_action(&pool, &clock, ed.into(), instance.into(), action).await {
                    Ok(()) | Err(InstanceError::Suspended) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
                panel::db::subscriptions::lock(&mut tx, sub, None).await.map_err(|e| e.to_string())?;
                let r = if i % 4 == 1 {
                    panel::subscriptions::suspend(&mut tx, sub.into(), ed.into(), placed.invoice_id.into(), clock.now()).await
                } else {
                    panel::subscriptions::unsuspend(&mut tx, sub.into(), ed.into(), clock.now()).await
                };
                r.map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())
            }
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    let desired = w.scalar::<String>("SELECT desired_state::text FROM instances").await;
    assert!(["running", "stopped", "suspended"].contains(&desired.as_str()), "{desired}");
}

//! The money fuzz test: concurrent actors (customers ordering, paying, resizing, redeeming
//! coupons, ending servers, changing their country and VAT ID; admins recording payments,
//! reusing references and voiding; the renewal and dunning runs; the scheduler finding no room
//! and the refund of orders that waited too long) for a fixed number of rounds on a moving
//! clock, then invariants from the database alone. Seeded: `VESSEL_MONEY_SEED=<n>` replays a run; the seed is printed on failure.

use crate::billing_world::{check_invariants, eur, World};
use panel::billing::{dunning, payments, proration, renewal, BillingError};
use panel::clock::Clock;
use panel::orders::{place_order, OrderError, OrderRequest};
use panel::plans::BillingCycle;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const CUSTOMERS: usize = 6;
const ROUNDS: usize = 40;

/// A refusal a customer or admin can act on is fine; anything else (a deadlock, a constraint
/// the code did not check first, a panic) fails the run.
fn billing_ok(e: &BillingError) -> bool {
    !matches!(e, BillingError::Db(_))
}

async fn act(pool: sqlx::PgPool, clock: panel::clock::FixedClock, admin: Uuid, who: Uuid, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let plans = ["burst-s", "burst-m", "burst-l"];
    let pick = |rng: &mut StdRng, rows: Vec<Uuid>| if rows.is_empty() { None } else { Some(rows[rng.gen_range(0..rows.len())]) };
    match rng.gen_range(0..13) {
        0 | 1 => {
            let coupon = match rng.gen_range(0..4) {
                0 => Some("ONCE".to_string()),
                1 => Some("FREE2".to_string()),
                _ => None,
            };
            let req = OrderRequest {
                plan_code: plans[rng.gen_range(0..3)].into(),
                cycle: BillingCycle::Monthly,
                os_template: "debian-12".into(),
                hostname: "fuzz.example.com".into(),
                coupon,
            };
            match place_order(&pool, &clock, who, req).await {
                Err(e @ OrderError::Db(_)) | Err(e @ OrderError::Billing(BillingError::Db(_))) => return Err(format!("order: {e}")),
                _ => {}
            }
        }
        2 | 3 => {
            let open: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM invoices WHERE account_id = $1 AND kind = 'invoice' AND status = 'issued'")
                    .bind(who)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if let Some(inv) = pick(&mut rng, open) {
                if let Err(e) = payments::pay_invoice_with_credit(&pool, &clock, who, inv).await {
                    if !billing_ok(&e) {
                        return Err(format!("pay: {e}"));
                    }
                }
            }
        }
        4 | 5 => {
            let subs: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM subscriptions WHERE account_id = $1 AND status = 'active'")
                .bind(who)
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(sub) = pick(&mut rng, subs) {
                if let Err(e) = proration::change_plan(&pool, &clock, who, sub, plans[rng.gen_range(0..3)]).await {
                    if !billing_ok(&e) {
                        return Err(format!("resize: {e}"));
                    }
                }
            }
        }
        6 | 7 => {
            // An admin records a transfer; sometimes with a reference already used.
            let reference = format!("bank-{}", rng.gen_range(0..30));
            if let Err(e) =
                payments::record_manual_payment(&pool, &clock, admin, who, eur(rng.gen_range(100..2_000)), &reference, None, None).await
            {
                if !billing_ok(&e) {
                    return Err(format!("record payment: {e}"));
                }
            }
        }
        8 => {
            let any: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM invoices WHERE account_id = $1 AND kind = 'invoice' AND status IN ('issued', 'paid')")
                    .bind(who)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if let Some(inv) = pick(&mut rng, any) {
                if let Err(e) = panel::billing::invoices::void_with_credit_note(&pool, &clock, admin, inv, None).await {
                    if !billing_ok(&e) {
                        return Err(format!("void: {e}"));
                    }
                }
            }
        }
        10 => {
            // The customer ends one of its servers now: the unused part comes back (once).
            let live: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM instances WHERE account_id = $1 AND desired_state <> 'terminated'")
                .bind(who)
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(id) = pick(&mut rng, live) {
                match panel::instances::terminate_now(&pool, &clock, who.into(), id.into()).await {
                    Err(e @ panel::instances::InstanceError::Db(_))
                    | Err(e @ panel::instances::InstanceError::Billing(BillingError::Db(_))) => return Err(format!("terminate: {e}")),
                    _ => {}
                }
            }
        }
        11 => {
            // The scheduler finds no host (there is none), then the refund of what waited 48 h.
            let unplaced: Vec<Uuid> =
                sqlx::query_scalar("SELECT id FROM instances WHERE account_id = $1 AND host_id IS NULL AND desired_state <> 'terminated'")
                    .bind(who)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if let Some(id) = pick(&mut rng, unplaced) {
                panel::scheduler::place(&pool, &clock, id.into()).await.map_err(|e| format!("place: {e}"))?;
            }
            panel::capacity::refund_overdue(&pool, clock.now(), chrono::Duration::hours(48)).await.map_err(|e| format!("refund: {e}"))?;
        }
        12 => {
            // The customer moves or registers a business: renewals and orders follow the facts.
            let (country, vat) = [("DE", ""), ("FR", "FR40303265045"), ("FR", ""), ("US", ""), ("", "")][rng.gen_range(0..5)];
            let p = panel::auth::Profile { name: "Fuzz", country, time_zone: "UTC", address: "1 Main St", vat_id: vat };
            panel::auth::update_profile(&pool, who, p).await.map_err(|e| format!("profile: {e}"))?;
        }
        _ => {
            let r = if rng.gen_bool(0.5) {
                renewal::run(&pool, &clock, renewal::RenewalPolicy::default()).await.map(|_| ())
            } else {
                dunning::run(&pool, &clock, dunning::DunningPolicy::default()).await.map(|_| ())
            };
            if let Err(e) = r {
                return Err(format!("billing run: {e}"));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn money_fuzz_keeps_every_invariant() {
    let seed: u64 = std::env::var("VESSEL_MONEY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("money fuzz seed: {seed} (replay with VESSEL_MONEY_SEED={seed})");
    let w = World::new("2026-03-01T08:00:00Z").await;
    panel::db::invoices::set_seller(&w.pool, &crate::tax::seller()).await.unwrap();
    sqlx::query("INSERT INTO coupons (code, percent_off, max_redemptions) VALUES ('ONCE', 100, 1), ('FREE2', 100, 2)")
        .execute(&w.pool)
        .await
        .unwrap();
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        customers.push(w.customer(&format!("fuzz{i}@example.com"), if i % 2 == 0 { Some("DE") } else { None }).await);
    }
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..ROUNDS {
        // Two actors per customer: the same credit, invoices and subscriptions are raced.
        let tasks: Vec<_> = customers
            .iter()
            .chain(customers.iter())
            .map(|&c| tokio::spawn(act(w.pool.clone(), w.clock.clone(), w.admin, c, rng.gen())))
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("seed {seed}, round {round}: {e}"),
                Err(e) => panic!("seed {seed}, round {round}: an actor panicked: {e}"),
            }
        }
        w.clock.advance(chrono::Duration::hours(rng.gen_range(1..60)));
    }
    // The runs catch up, so every debt has met dunning at the final time.
    renewal::run(&w.pool, &w.clock, renewal::RenewalPolicy::default()).await.unwrap();
    dunning::run(&w.pool, &w.clock, dunning::DunningPolicy::default()).await.unwrap();
    panel::capacity::refund_overdue(&w.pool, w.clock.now(), chrono::Duration::hours(48)).await.unwrap();
    eprintln!("{ROUNDS} rounds of {} actors in {:?}", 2 * CUSTOMERS, started.elapsed());

    let q = |sql: &'static str| {
        let pool = w.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}")) }
    };
    let seeded = |what: &str| format!("seed {seed}: {what}");
    check_invariants(&w.pool).await;
    assert_eq!(
        q("SELECT count(*) FROM ledger_accounts WHERE code = 'credit' AND balance_minor > 0").await,
        0,
        "{}",
        seeded("a credit balance below zero")
    );
    // The kept balance is the ledger's sum.
    assert_eq!(
        q("SELECT count(*) FROM ledger_accounts a WHERE a.code = 'credit' AND a.balance_minor <>
             (SELECT COALESCE(sum(e.debit_minor - e.credit_minor), 0) FROM ledger_entries e WHERE e.ledger_account_id = a.id)")
        .await,
        0,
        "{}",
        seeded("a kept credit balance differs from the ledger")
    );
    // Credit = money in − credit applied + credit notes given as credit.
    assert_eq!(
        q("WITH c AS (SELECT a.account_id, -a.balance_minor AS credit FROM ledger_accounts a WHERE a.code = 'credit'),
               m AS (SELECT account_id,
                            sum(CASE WHEN method = 'account_credit' THEN -amount_minor ELSE amount_minor END) AS net
                       FROM payments GROUP BY 1),
               n AS (SELECT a.account_id, sum(e.credit_minor) AS notes FROM ledger_entries e
                       JOIN ledger_accounts a ON a.id = e.ledger_account_id
                       JOIN ledger_transactions t ON t.id = e.transaction_id
                      WHERE a.code = 'credit' AND t.description = 'credit note' GROUP BY 1)
           SELECT count(*) FROM c LEFT JOIN m USING (account_id) LEFT JOIN n USING (account_id)
            WHERE c.credit <> COALESCE(m.net, 0) + COALESCE(n.notes, 0)")
        .await,
        0,
        "{}",
        seeded("credit is not money in − credit applied + credit notes")
    );
    assert_eq!(
        q("SELECT count(*) FROM (SELECT invoice_id FROM payments WHERE invoice_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x").await,
        0,
        "{}",
        seeded("an invoice paid twice")
    );
    // Nothing is given back twice: an invoice's credit notes never exceed it.
    assert_eq!(
        q("SELECT count(*) FROM invoices i WHERE i.kind = 'invoice' AND
             (i.subtotal_minor, i.tax_minor) < (SELECT COALESCE(sum(c.subtotal_minor), 0), 0 FROM invoices c WHERE c.corrects_invoice_id = i.id)
              OR i.tax_minor < (SELECT COALESCE(sum(c.tax_minor), 0) FROM invoices c WHERE c.corrects_invoice_id = i.id)").await,
        0,
        "{}",
        seeded("credit notes gave back more than an invoice charged")
    );
    // No order waits past the refund time: each was refunded (its subscription cancelled).
    let overdue_waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances WHERE host_id IS NULL AND desired_state <> 'terminated' AND waiting_since <= $1",
    )
    .bind(w.clock.now() - chrono::Duration::hours(48))
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(overdue_waiting, 0, "{}", seeded("an order waits for capacity past the refund time"));
    assert_eq!(
        q("SELECT count(*) FROM subscriptions s WHERE s.status = 'cancelled' AND EXISTS (SELECT 1 FROM instances n WHERE n.subscription_id = s.id)
             AND EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = s.id AND i.status = 'paid' AND i.kind = 'invoice' AND i.subtotal_minor > 0)
             AND NOT EXISTS (SELECT 1 FROM invoices c JOIN invoices i ON i.id = c.corrects_invoice_id WHERE i.subscription_id = s.id)").await,
        0,
        "{}",
        seeded("a refunded order got no credit note")
    );
    // Tax follows the facts: no reverse charge without a VAT ID on the invoice, no 0 % for an EU consumer.
    assert_eq!(
        q("SELECT count(*) FROM invoices WHERE kind = 'invoice' AND status <> 'draft' AND
             ((tax_treatment = 'reverse_charge' AND (buyer_vat_id IS NULL OR tax_minor <> 0))
              OR (tax_treatment IN ('domestic', 'eu_consumer', 'unknown') AND subtotal_minor >= 100 AND tax_minor = 0))")
        .await,
        0,
        "{}",
        seeded("an invoice's tax disagrees with its treatment")
    );
    assert_eq!(
        q("SELECT count(*) FROM coupons WHERE max_redemptions IS NOT NULL AND redemptions > max_redemptions").await,
        0,
        "{}",
        seeded("a coupon over its limit")
    );
    assert_eq!(
        q("SELECT count(*) FROM coupons c WHERE redemptions <> (SELECT count(*) FROM orders o WHERE o.coupon_id = c.id)").await,
        0,
        "{}",
        seeded("a coupon's count differs from its orders")
    );
    // Every running server's subscription is paid, or its debt is inside the grace dunning
    // allows before suspension.
    let grace = w.clock.now() - chrono::Duration::days(dunning::DunningPolicy::default().suspend_after_days);
    let unpaid_running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances n JOIN subscriptions s ON s.id = n.subscription_id
          WHERE n.desired_state = 'running'
            AND (s.status <> 'active' OR EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'invoice'
                                                   AND i.status = 'issued' AND i.total_minor > 0 AND i.due_at <= $1))",
    )
    .bind(grace)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(unpaid_running, 0, "{}", seeded("a server runs unpaid past its grace"));
    // Ledger balanced per account: Σ over every account of debit − credit is zero per currency.
    assert_eq!(
        q("SELECT count(*) FROM (SELECT a.currency FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.ledger_account_id
             GROUP BY 1 HAVING sum(e.debit_minor) <> sum(e.credit_minor)) x")
        .await,
        0,
        "{}",
        seeded("the ledger does not balance")
    );
    // The run did something: orders, payments, plan changes and voids all happened.
    let (orders, paid, notes, charges): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM invoices WHERE status = 'paid'),
                (SELECT count(*) FROM invoices WHERE kind = 'credit_note'),
                (SELECT count(*) FROM invoices WHERE kind = 'invoice' AND period_start IS NULL)",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let (ended, refunded): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM subscriptions WHERE status = 'terminated'), (SELECT count(*) FROM subscriptions WHERE status = 'cancelled')",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    eprintln!("orders {orders}, paid invoices {paid}, credit notes {notes}, plan-change charges {charges}, ended {ended}, refunded for capacity {refunded}");
    assert!(orders > 0 && paid > 0 && notes > 0, "{}", seeded("the actors did nothing worth checking"));
    assert!(ended + refunded > 0, "{}", seeded("no server ended early: the new paths went unexercised"));
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{}", seeded("the fuzz run is meant to take seconds"));
}

//! Money that cannot leak: each attack of issue 14 as a test that runs the attack in parallel
//! against a real PostgreSQL, then checks what the database says.

use crate::billing_world::World;
use panel::billing::payments::pay_invoice_with_credit;
use panel::billing::BillingError;
use panel::clock::Clock;
use panel::orders::{place_order, OrderError, OrderRequest};
use panel::plans::BillingCycle::Monthly;

/// Twenty parallel "pay with credit" for twenty invoices, with credit for exactly one: one is
/// paid, nineteen are refused, the credit never goes below zero and one server is requested.
#[tokio::test]
async fn parallel_pay_with_credit_spends_the_credit_once() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    w.credit(ana, 357).await; // one burst-s month with 19 % VAT
    let mut invoices = Vec::new();
    for _ in 0..20 {
        invoices.push(w.order(ana, "burst-s", Monthly, None).await.invoice_id);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(invoices.len()));
    let tasks: Vec<_> = invoices
        .iter()
        .map(|&inv| {
            let (pool, clock, barrier) = (w.pool.clone(), w.clock.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                pay_invoice_with_credit(&pool, &clock, ana, inv).await
            })
        })
        .collect();
    let mut paid = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => paid += 1,
            Err(BillingError::InsufficientCredit { .. }) => {}
            Err(e) => panic!("a parallel payment failed with something other than a clear refusal: {e}"),
        }
    }
    assert_eq!(paid, 1, "the same 3.57 of credit paid {paid} invoices");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices WHERE status = 'paid'").await, 1);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 1, "one paid invoice, one server");
    let negative = w
        .scalar::<i64>(
            "SELECT count(*) FROM (SELECT a.id FROM ledger_accounts a JOIN ledger_entries e ON e.ledger_account_id = a.id
               WHERE a.code = 'credit' GROUP BY a.id HAVING sum(e.credit_minor - e.debit_minor) < 0) x",
        )
        .await;
    assert_eq!(negative, 0, "a credit balance went below zero");
    w.invariants().await;
}

/// The database itself refuses credit below zero, whatever path posts it.
#[tokio::test]
async fn the_database_refuses_a_negative_credit_balance() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    let ana = w.customer("ana@example.com", None).await;
    w.credit(ana, 100).await;
    let mut tx = w.pool.begin().await.unwrap();
    let r = panel::billing::ledger::post(
        &mut tx,
        "EUR",
        "spend more than there is",
        Default::default(),
        &[
            panel::billing::ledger::debit(panel::billing::ledger::LedgerAccount::Credit(ana), 101),
            panel::billing::ledger::credit(panel::billing::ledger::LedgerAccount::Revenue, 101),
        ],
        w.clock.now(),
    )
    .await;
    let e = r.expect_err("credit went below zero");
    assert!(e.to_string().contains("ledger_accounts_credit_never_negative"), "{e}");
}

/// A single-use 100 %-off coupon offered by ten parallel orders: one order gets it, nine are
/// told it is used up, and nine free servers are not made.
#[tokio::test]
async fn parallel_orders_redeem_a_single_use_coupon_once() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    sqlx::query("INSERT INTO coupons (code, percent_off, max_redemptions) VALUES ('ONCEFREE', 100, 1), ('TWICE', 50, 2)")
        .execute(&w.pool)
        .await
        .unwrap();
    let mut customers = Vec::new();
    for i in 0..10 {
        customers.push(w.customer(&format!("c{i}@example.com"), None).await);
    }
    for (code, max) in [("ONCEFREE", 1), ("TWICE", 2)] {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(customers.len()));
        let tasks: Vec<_> = customers
            .iter()
            .map(|&c| {
                let (pool, clock, barrier) = (w.pool.clone(), w.clock.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let req = OrderRequest {
                        plan_code: "burst-l".into(),
                        cycle: Monthly,
                        os_template: "debian-12".into(),
                        hostname: "free.example.com".into(),
                        coupon: Some(code.into()),
                    };
                    place_order(&pool, &clock, c, req).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(OrderError::BadCoupon(m)) => assert_eq!(m, "this coupon has been used up"),
                Err(e) => panic!("a parallel order failed with something other than a clear refusal: {e}"),
            }
        }
        assert_eq!(ok, max, "{code} (max {max}) was redeemed {ok} times");
        let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders o JOIN coupons c ON c.id = o.coupon_id WHERE c.code = $1")
            .bind(code)
            .fetch_one(&w.pool)
            .await
            .unwrap();
        assert_eq!(orders, max as i64);
    }
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 1, "one free server, not ten");
    w.invariants().await;
}

async fn credit_of(w: &World, who: uuid::Uuid) -> i64 {
    panel::billing::payments::credit_balance(&w.pool, who, panel::money::Currency::parse("EUR").unwrap()).await.unwrap().minor
}

/// Ten upgrade/downgrade cycles on the first day, never paying an upgrade: the downgrades void
/// the unpaid upgrade charges instead of turning them into credit. Credit is what was left
/// after paying the period, to the cent, and nothing is owed.
#[tokio::test]
async fn a_resize_loop_makes_no_credit_from_nothing() {
    use panel::billing::proration::change_plan;
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", None).await;
    let placed = w.order(ana, "burst-s", Monthly, None).await;
    w.credit(ana, 10_000).await;
    w.pay(ana, placed.invoice_id).await;
    assert_eq!(credit_of(&w, ana).await, 9_700);
    for _ in 0..10 {
        change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-l").await.unwrap();
        change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-s").await.unwrap();
    }
    assert_eq!(credit_of(&w, ana).await, 9_700, "resizing made credit");
    assert_eq!(
        w.scalar::<i64>("SELECT COALESCE(sum(total_minor), 0)::bigint FROM invoices WHERE kind = 'invoice' AND status = 'issued'").await,
        0
    );
    // Down once more than up: the period paid 3.00 for burst-s; burst-s → burst-m → burst-s
    // after paying the upgrade gives back at most what was paid for it.
    let up = change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-m").await.unwrap();
    let panel::billing::proration::PlanChange::Charged { invoice_id, .. } = up else { panic!("{up:?}") };
    w.pay(ana, invoice_id).await;
    let paid_up = 9_700 - credit_of(&w, ana).await;
    change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-s").await.unwrap();
    assert_eq!(credit_of(&w, ana).await, 9_700, "the paid upgrade ({paid_up}) comes back, not more");
    w.invariants().await;
}

/// A server that runs before it is paid (the API's way): the loop on it leaves the payer owing
/// exactly the first period and no credit at all.
#[tokio::test]
async fn a_resize_loop_on_an_unpaid_server_reduces_what_it_owes() {
    use panel::billing::proration::change_plan;
    let w = World::new("2026-05-01T10:00:00Z").await;
    let rex = w.customer("rex@example.com", None).await;
    let placed = w.order(rex, "burst-s", Monthly, None).await;
    // Active while its first invoice is unpaid, as a server made through the API is.
    sqlx::query("UPDATE subscriptions SET status = 'active' WHERE id = $1").bind(placed.subscription_id).execute(&w.pool).await.unwrap();
    for _ in 0..10 {
        change_plan(&w.pool, &w.clock, rex, placed.subscription_id, "burst-l").await.unwrap();
        change_plan(&w.pool, &w.clock, rex, placed.subscription_id, "burst-s").await.unwrap();
    }
    // One more upgrade, left unpaid: owed is the first period and that upgrade, nothing else.
    change_plan(&w.pool, &w.clock, rex, placed.subscription_id, "burst-l").await.unwrap();
    assert_eq!(credit_of(&w, rex).await, 0, "resizing an unpaid server made credit");
    let owed =
        w.scalar::<i64>("SELECT COALESCE(sum(total_minor), 0)::bigint FROM invoices WHERE kind = 'invoice' AND status = 'issued'").await;
    assert_eq!(owed, 300 + (1200 - 300) * 31 / 31, "owed: the first period plus one prorated upgrade");
    w.invariants().await;
}

/// An admin voids a paid invoice (its amount becomes credit); a downgrade after that does not
/// credit the same money a second time.
#[tokio::test]
async fn a_voided_invoice_is_never_credited_twice() {
    use panel::billing::proration::{change_plan, PlanChange};
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    let placed = w.order(ana, "burst-l", Monthly, None).await;
    w.credit(ana, 10_000).await;
    w.pay(ana, placed.invoice_id).await;
    panel::billing::invoices::void_with_credit_note(&w.pool, &w.clock, w.admin, placed.invoice_id, None).await.unwrap();
    assert_eq!(credit_of(&w, ana).await, 10_000, "the void gave the payment back");
    let down = change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-s").await.unwrap();
    assert_eq!(down, PlanChange::Even, "nothing paid is left to give back");
    assert_eq!(credit_of(&w, ana).await, 10_000, "the voided invoice was credited twice");
    w.invariants().await;
}

/// A server that ran unpaid and was terminated before dunning reached it: its invoice is still
/// chased, and its payer can order nothing new until it is paid.
#[tokio::test]
async fn a_terminated_servers_debt_is_still_chased_and_blocks_new_orders() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    let rex = w.customer("rex@example.com", None).await;
    let placed = w.order(rex, "burst-s", Monthly, None).await;
    // Running unpaid (as the API makes servers), then terminated on its first day.
    sqlx::query("UPDATE subscriptions SET status = 'terminated', terminated_at = now() WHERE id = $1")
        .bind(placed.subscription_id)
        .execute(&w.pool)
        .await
        .unwrap();
    w.set("2026-06-01T10:00:00Z"); // well past any due date
    let d = w.dunning().await;
    assert_eq!(d.reminded_after, 1, "the terminated server's invoice is chased");
    let e = place_order(
        &w.pool,
        &w.clock,
        rex,
        OrderRequest {
            plan_code: "burst-s".into(),
            cycle: Monthly,
            os_template: "debian-12".into(),
            hostname: "b.example.com".into(),
            coupon: None,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, OrderError::Billing(BillingError::Overdue(_))), "{e}");
    assert!(e.to_string().contains("overdue invoices to pay first (INV-2026-000001: 3.00 EUR in all)"), "{e}");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders").await, 1, "no second order");
    w.credit(rex, 300).await;
    w.pay(rex, placed.invoice_id).await;
    w.order(rex, "burst-s", Monthly, None).await;
    w.invariants().await;
}

/// Every mail template the code queues exists and renders: scanned from the source, so a new
/// `insert_for_admins(.., "capacity_needed", ..)` without its template fails here, not in the
/// outbox worker ten retries later.
#[test]
fn every_email_template_the_code_names_renders() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut named = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for call in ["outbox::enqueue(", "insert_for_invoices(", "insert_for_admins(", " mail(tx,"] {
            for (at, _) in text.match_indices(call) {
                let args = &text[at + call.len()..(at + call.len() + 300).min(text.len())];
                // The template is the first string literal, before any JSON data.
                let args = &args[..args.find("json!").or_else(|| args.find('{')).unwrap_or(args.len())];
                if let Some(start) = args.find('"') {
                    let rest = &args[start + 1..];
                    let Some(end) = rest.find('"') else { continue };
                    let name = &rest[..end];
                    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                        named.insert(name.to_string());
                    }
                }
            }
        }
    }
    for must in ["capacity_needed", "invoice_issued", "payment_received", "service_suspended", "verify_email"] {
        assert!(named.contains(must), "the scan found {named:?}, not {must}");
    }
    for name in &named {
        assert!(panel::email::TEMPLATES.contains(&name.as_str()), "the code queues mail template {name:?}, which does not exist");
        panel::email::render(name, &serde_json::json!({})).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A reference another customer's payment already has: a clear error, and nothing changes (no
/// credit, no invoice paid, no audit row). The same submission twice stays harmless.
#[tokio::test]
async fn a_reused_manual_payment_reference_is_refused_and_changes_nothing() {
    use panel::billing::payments::record_manual_payment;
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", None).await;
    let bo = w.customer("bo@example.com", None).await;
    let eur = |m| panel::money::Money::new(m, panel::money::Currency::parse("EUR").unwrap());
    record_manual_payment(&w.pool, &w.clock, w.admin, ana, eur(500), "TRF-1", None, None).await.unwrap();
    let again = record_manual_payment(&w.pool, &w.clock, w.admin, ana, eur(500), "TRF-1", None, None).await.unwrap();
    assert_eq!(again, None, "a double submit is harmless");
    let audits = w.scalar::<i64>("SELECT count(*) FROM audit_log WHERE action = 'payment.record'").await;
    let e = record_manual_payment(&w.pool, &w.clock, w.admin, bo, eur(700), "TRF-1", None, None).await.unwrap_err();
    assert!(e.to_string().contains("already recorded for another payment"), "{e}");
    assert_eq!(credit_of(&w, bo).await, 0);
    assert_eq!(credit_of(&w, ana).await, 500);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM audit_log WHERE action = 'payment.record'").await, audits);
    w.invariants().await;
}

/// Recorded credit pays open invoices, oldest due first, at once; the mail says which, and
/// what credit is left.
#[tokio::test]
async fn recorded_credit_pays_open_invoices_oldest_first_and_the_mail_says_so() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", None).await;
    let first = w.order(ana, "burst-s", Monthly, None).await; // 3.00
    w.set("2026-05-02T10:00:00Z");
    let second = w.order(ana, "burst-m", Monthly, None).await; // 6.00
    w.set("2026-05-03T10:00:00Z");
    let third = w.order(ana, "burst-l", Monthly, None).await; // 12.00
    w.credit(ana, 1_000).await; // pays the first two, not the third
    let status = |id: uuid::Uuid| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status::text FROM invoices WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap()
        }
    };
    assert_eq!(status(first.invoice_id).await, "paid");
    assert_eq!(status(second.invoice_id).await, "paid");
    assert_eq!(status(third.invoice_id).await, "issued");
    assert_eq!(credit_of(&w, ana).await, 100);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 2);
    let data: serde_json::Value = w.scalar("SELECT data FROM email_outbox WHERE template = 'payment_received'").await;
    let mail = panel::email::render("payment_received", &panel::email::enrich(&w.pool, "", &data).await.unwrap()).unwrap();
    assert!(mail.body.contains("It paid INV-2026-000001, INV-2026-000002."), "{}", mail.body);
    assert!(mail.body.contains("Your account credit is now 1.00 EUR."), "{}", mail.body);
    w.invariants().await;
}

/// A recurring 100 %-off coupon: its 0.00 renewals are settled at issue and never dunned; and
/// the invoice mail names the same last day of the period as the invoice.
#[tokio::test]
async fn zero_renewals_are_settled_and_mail_and_invoice_agree_on_the_period() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    sqlx::query("INSERT INTO coupons (code, percent_off, recurring) VALUES ('ALWAYSFREE', 100, true)").execute(&w.pool).await.unwrap();
    let ana = w.customer("ana@example.com", None).await;
    let placed = w.order(ana, "burst-s", Monthly, Some("ALWAYSFREE")).await;
    w.set("2026-07-20T10:00:00Z");
    w.renew().await;
    let d = w.dunning().await;
    assert_eq!((d.reminded_after, d.suspended), (0, 0), "a 0.00 invoice is not dunned");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices WHERE status = 'issued'").await, 0, "every 0.00 invoice is settled");
    assert_eq!(w.scalar::<String>("SELECT status::text FROM subscriptions").await, "active");
    let _ = placed;
    let line: String = w
        .scalar("SELECT l.description FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.period_start = '2026-06-01'")
        .await;
    assert!(line.ends_with("2026-06-01 to 2026-06-30"), "{line}");
    let data: serde_json::Value =
        w.scalar("SELECT o.data FROM email_outbox o JOIN invoices i ON o.dedupe_key = 'invoice_issued:' || i.id WHERE i.period_start = '2026-06-01'").await;
    let mail = panel::email::render("invoice_issued", &panel::email::enrich(&w.pool, "", &data).await.unwrap()).unwrap();
    assert!(mail.body.contains("It covers 2026-06-01 to 2026-06-30."), "{}", mail.body);
    w.invariants().await;
}

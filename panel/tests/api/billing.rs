//! Billing scenarios on a controllable clock. After each, the invariants of billing_world hold:
//! balanced ledger, balances equal invoices and payments, one invoice per period, no gaps.

use crate::billing_world::{at, eur, World};
use panel::billing::payments::{credit_balance, pay_invoice_with_credit};
use panel::billing::proration::{change_plan, PlanChange};
use panel::billing::{invoices, BillingError};
use panel::money::Currency;
use panel::orders::{place_order, OrderError, OrderRequest};
use panel::plans::BillingCycle::{Annual, Monthly};
use uuid::Uuid;

#[tokio::test]
async fn order_then_pay_with_credit_activates_and_requests_the_vps() {
    let w = World::new("2026-01-31T10:00:00Z").await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    let placed = w.order(ana, "burst-s", Monthly, None).await;
    // 3.00 + 19 % VAT.
    let (total, status): (i64, String) = sqlx::query_as("SELECT total_minor, status::text FROM invoices WHERE id = $1")
        .bind(placed.invoice_id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!((total, status.as_str()), (357, "issued"));
    assert_eq!(w.scalar::<String>("SELECT current_period_end::text FROM subscriptions").await, "2026-02-28");

    let err = pay_invoice_with_credit(&w.pool, &w.clock, ana, placed.invoice_id).await.unwrap_err();
    assert!(matches!(err, BillingError::InsufficientCredit { .. }), "{err}");
    assert_eq!(err.to_string(), "not enough account credit: the invoice is 3.57 EUR, the credit is 0.00 EUR");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 0, "nothing requested before payment");

    w.credit(ana, 1000).await;
    w.pay(ana, placed.invoice_id).await;
    assert_eq!(w.scalar::<String>("SELECT status::text FROM subscriptions").await, "active");
    assert_eq!(w.scalar::<String>("SELECT status::text FROM orders").await, "paid");
    let (desired, observed): (String, String) =
        sqlx::query_as("SELECT desired_state::text, observed_state::text FROM instances").fetch_one(&w.pool).await.unwrap();
    assert_eq!((desired.as_str(), observed.as_str()), ("running", "pending"));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM jobs WHERE kind = 'instance.create' AND dedupe_key LIKE 'create:%'").await, 1);
    assert_eq!(credit_balance(&w.pool, ana, Currency::parse("EUR").unwrap()).await.unwrap(), eur(643));

    let again = pay_invoice_with_credit(&w.pool, &w.clock, ana, placed.invoice_id).await.unwrap_err();
    assert!(matches!(again, BillingError::AlreadyPaid(_)), "{again}");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 1, "paying twice requests nothing twice");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM email_outbox WHERE template = 'invoice_issued'").await, 1);
    w.invariants().await;
}

#[tokio::test]
async fn renewals_follow_the_anchor_across_month_ends_and_leap_years() {
    let w = World::new("2028-01-31T12:00:00Z").await;
    let bo = w.customer("bo@example.com", None).await;
    let placed = w.order(bo, "burst-s", Monthly, None).await;
    w.credit(bo, 100_000).await;
    w.pay(bo, placed.invoice_id).await;

    w.set("2028-02-21T12:00:00Z");
    assert_eq!(w.renew().await.invoices_issued, 0, "8 days before: not yet");
    w.set("2028-02-22T12:00:00Z");
    assert_eq!(w.renew().await.invoices_issued, 1);
    assert_eq!(w.renew().await.invoices_issued, 0, "a second run issues nothing");
    // The runner was down for months: it catches up period by period.
    w.set("2028-06-15T12:00:00Z");
    w.renew().await;
    assert_eq!(
        w.invoiced_periods(placed.subscription_id).await,
        vec!["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31"]
    );
    assert_eq!(
        w.scalar::<String>("SELECT current_period_start::text || ' ' || current_period_end::text FROM subscriptions").await,
        "2028-05-31 2028-06-30"
    );
    w.invariants().await;
}

#[tokio::test]
async fn annual_renewals_from_a_leap_day() {
    let w = World::new("2028-02-29T08:00:00Z").await;
    let cy = w.customer("cy@example.com", None).await;
    let placed = w.order(cy, "kvm-s2", Annual, None).await;
    w.credit(cy, 1_000_000).await;
    w.pay(cy, placed.invoice_id).await;
    w.set("2032-03-01T00:00:00Z");
    w.renew().await;
    assert_eq!(
        w.invoiced_periods(placed.subscription_id).await,
        vec!["2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29"]
    );
    w.invariants().await;
}

#[tokio::test]
async fn coupons_and_taxes() {
    let w = World::new("2026-03-10T10:00:00Z").await;
    sqlx::query(
        "INSERT INTO coupons (code, percent_off, amount_off_minor, currency, recurring, valid_until, max_redemptions) VALUES
           ('HALF', 50, NULL, NULL, false, NULL, NULL),
           ('FIVE', NULL, 500, 'EUR', true, NULL, NULL),
           ('OLD', 10, NULL, NULL, false, '2026-01-01', NULL),
           ('ONCE', 10, NULL, NULL, false, NULL, 1),
           ('FREE', 100, NULL, NULL, false, NULL, NULL)",
    )
    .execute(&w.pool)
    .await
    .unwrap();
    let fr = w.customer("fr@example.com", Some("FR")).await;
    let nl = w.customer("nl@example.com", Some("NL")).await;
    let xx = w.customer("xx@example.com", None).await;
    let line = |inv: Uuid| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64, i32, i64, i64)>(
                "SELECT l.discount_minor, l.amount_minor, l.tax_rate_bp, l.tax_minor, i.total_minor
                   FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE i.id = $1",
            )
            .bind(inv)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // 50 % off the first period only, 20 % French VAT stored on the line.
    let half = w.order(fr, "burst-s", Monthly, Some("half")).await;
    assert_eq!(line(half.invoice_id).await, (150, 150, 2000, 30, 180));
    // 5.00 off every period, 21 % Dutch VAT.
    let five = w.order(nl, "burst-m", Monthly, Some("FIVE")).await;
    assert_eq!(line(five.invoice_id).await, (500, 100, 2100, 21, 121));
    // No country, no tax; a 100 % coupon settles at once and requests the VPS.
    let free = w.order(xx, "burst-s", Monthly, Some("FREE")).await;
    assert_eq!(line(free.invoice_id).await, (300, 0, 0, 0, 0));
    assert_eq!(w.scalar::<String>(&format!("SELECT status::text FROM invoices WHERE id = '{}'", free.invoice_id)).await, "paid");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances").await, 1);

    for c in [fr, nl] {
        w.credit(c, 10_000).await;
    }
    w.pay(fr, half.invoice_id).await;
    w.pay(nl, five.invoice_id).await;
    w.set("2026-04-03T10:00:00Z");
    w.renew().await;
    let renewal = |sub: Uuid| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM invoices WHERE subscription_id = $1 AND period_start = '2026-04-10'")
                .bind(sub)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(line(renewal(half.subscription_id).await).await, (0, 300, 2000, 60, 360), "first-period coupon is gone");
    assert_eq!(line(renewal(five.subscription_id).await).await, (500, 100, 2100, 21, 121), "recurring coupon stays");

    // Expired and used-up coupons are refused, naming the coupon field; nothing is written.
    let orders_before = w.scalar::<i64>("SELECT count(*) FROM orders").await;
    let req = |c: &str| OrderRequest {
        plan_code: "burst-s".into(),
        cycle: Monthly,
        os_template: "debian-12".into(),
        hostname: "a.example.com".into(),
        coupon: Some(c.into()),
    };
    let e = place_order(&w.pool, &w.clock, fr, req("OLD")).await.unwrap_err();
    assert_eq!((e.field(), e.to_string().as_str()), (Some("coupon"), "coupon: this coupon has expired"));
    place_order(&w.pool, &w.clock, fr, req("ONCE")).await.unwrap();
    let e = place_order(&w.pool, &w.clock, nl, req("ONCE")).await.unwrap_err();
    assert_eq!(e.to_string(), "coupon: this coupon has been used up");
    let e = place_order(&w.pool, &w.clock, nl, req("NOPE")).await.unwrap_err();
    assert_eq!(e.field(), Some("coupon"));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders").await, orders_before + 1);
    w.invariants().await;
}

#[tokio::test]
async fn bad_orders_name_the_field_and_change_nothing() {
    let w = World::new("2026-03-10T10:00:00Z").await;
    let ana = w.customer("ana@example.com", None).await;
    let unverified: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('customer', 'new@example.com') RETURNING id")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name, for_kvm) VALUES ('alpine-ct', 'Alpine (containers only)', false)")
        .execute(&w.pool)
        .await
        .unwrap();
    let base = OrderRequest {
        plan_code: "burst-s".into(),
        cycle: Monthly,
        os_template: "debian-12".into(),
        hostname: "web.example.com".into(),
        coupon: None,
    };
    let cases: Vec<(Uuid, OrderRequest, Option<&str>)> = vec![
        (ana, OrderRequest { plan_code: "nope".into(), ..base.clone() }, Some("plan")),
        (ana, OrderRequest { hostname: "-bad-".into(), ..base.clone() }, Some("hostname")),
        (ana, OrderRequest { hostname: "".into(), ..base.clone() }, Some("hostname")),
        (ana, OrderRequest { os_template: "windows".into(), ..base.clone() }, Some("os_template")),
        (ana, OrderRequest { plan_code: "kvm-d2".into(), os_template: "alpine-ct".into(), ..base.clone() }, Some("os_template")),
        (unverified, base.clone(), None),
    ];
    for (who, req, field) in cases {
        let e = place_order(&w.pool, &w.clock, who, req.clone()).await.unwrap_err();
        assert!(e.is_user_error(), "{e}");
        assert_eq!(e.field(), field, "{req:?}: {e}");
    }
    assert!(matches!(place_order(&w.pool, &w.clock, unverified, base).await, Err(OrderError::Account(m)) if m.contains("verify")));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders").await, 0);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices").await, 0);
}

#[tokio::test]
async fn upgrades_and_downgrades_prorate_the_unused_days() {
    let w = World::new("2026-04-01T00:00:00Z").await;
    let de = w.customer("de@example.com", Some("DE")).await;
    let placed = w.order(de, "burst-s", Monthly, None).await;
    w.credit(de, 10_000).await;
    w.pay(de, placed.invoice_id).await;
    w.set("2026-04-16T09:00:00Z"); // 15 of 30 days left

    let up = change_plan(&w.pool, &w.clock, de, placed.subscription_id, "burst-m").await.unwrap();
    let PlanChange::Charged { invoice_id, amount_minor } = up else { panic!("{up:?}") };
    assert_eq!(amount_minor, 150); // (6.00 − 3.00) × 15/30
    assert_eq!(w.scalar::<i64>(&format!("SELECT total_minor FROM invoices WHERE id = '{invoice_id}'")).await, 179); // + 19 %
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM jobs WHERE kind = 'instance.resize'").await, 1);

    let down = change_plan(&w.pool, &w.clock, de, placed.subscription_id, "burst-s").await.unwrap();
    let PlanChange::Credited { credit_note_id, amount_minor } = down else { panic!("{down:?}") };
    assert_eq!(amount_minor, 150);
    assert_eq!(w.scalar::<i64>(&format!("SELECT total_minor FROM invoices WHERE id = '{credit_note_id}'")).await, 179);
    assert_eq!(w.scalar::<i64>("SELECT price_minor FROM subscriptions").await, 300);

    let e = change_plan(&w.pool, &w.clock, de, placed.subscription_id, "kvm-d2").await.unwrap_err();
    assert!(e.to_string().contains("cannot become a KVM"), "{e}");
    let other = w.customer("other@example.com", None).await;
    assert!(matches!(
        change_plan(&w.pool, &w.clock, other, placed.subscription_id, "burst-m").await,
        Err(BillingError::SubscriptionNotFound)
    ));
    w.invariants().await;
}

#[tokio::test]
async fn dunning_reminds_suspends_unsuspends_and_terminates() {
    let w = World::new("2026-05-10T09:00:00Z").await;
    let ed = w.customer("ed@example.com", None).await;
    let placed = w.order(ed, "burst-s", Monthly, None).await;
    w.credit(ed, 300).await;
    w.pay(ed, placed.invoice_id).await;
    let instance: Uuid = w.scalar("SELECT id FROM instances").await;
    let sub_status = || w.scalar::<String>("SELECT status::text FROM subscriptions");
    let desired = || w.scalar::<String>("SELECT desired_state::text FROM instances");

    w.set("2026-06-03T10:00:00Z");
    assert_eq!(w.renew().await.invoices_issued, 1); // period from 10 June, due 10 June
    let june: Uuid = w.scalar("SELECT id FROM invoices WHERE period_start = '2026-06-10'").await;
    assert_eq!(w.dunning().await.reminded_before, 0, "too early for a reminder");
    w.set("2026-06-07T10:00:00Z");
    assert_eq!(w.dunning().await.reminded_before, 1);
    assert_eq!(w.dunning().await.reminded_before, 0, "once");
    w.set("2026-06-11T10:00:00Z");
    w.renew().await;
    let d = w.dunning().await;
    assert_eq!((d.reminded_after, d.suspended), (1, 0));
    w.set("2026-06-17T01:00:00Z");
    assert_eq!(w.dunning().await.suspended, 1);
    assert_eq!((sub_status().await, desired().await), ("suspended".into(), "suspended".into()));
    let start =
        panel::instances::request_action(&w.pool, &w.clock, ed.into(), instance.into(), vessel_core::Action::Start).await.unwrap_err();
    assert!(matches!(start, panel::instances::InstanceError::Suspended), "{start}");

    // Paying the overdue invoice unsuspends at once.
    w.credit(ed, 300).await;
    w.pay(ed, june).await;
    assert_eq!((sub_status().await, desired().await), ("active".into(), "running".into()));

    // The next one is never paid: suspended after 7 days, terminated after 30.
    w.set("2026-07-03T10:00:00Z");
    w.renew().await;
    w.set("2026-07-17T10:00:00Z");
    w.renew().await;
    assert_eq!(w.dunning().await.suspended, 1);
    w.set("2026-08-09T10:00:00Z");
    w.renew().await;
    assert_eq!(w.dunning().await.terminated, 1);
    assert_eq!((sub_status().await, desired().await), ("terminated".into(), "terminated".into()));
    let invoices_before = w.scalar::<i64>("SELECT count(*) FROM invoices").await;
    w.set("2026-10-20T10:00:00Z");
    w.renew().await;
    w.dunning().await;
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices").await, invoices_before, "a terminated subscription is not billed");

    let mails: Vec<(String, i64)> =
        sqlx::query_as("SELECT template, count(*) FROM email_outbox GROUP BY 1 ORDER BY 1").fetch_all(&w.pool).await.unwrap();
    let count = |t: &str| mails.iter().find(|(n, _)| n == t).map(|(_, c)| *c).unwrap_or(0);
    assert_eq!(count("payment_reminder_before"), 2, "{mails:?}");
    assert!(count("payment_reminder_after") >= 2, "{mails:?}");
    assert_eq!(count("service_suspended"), 2, "{mails:?}");
    assert_eq!(count("service_unsuspended"), 1, "{mails:?}");
    assert_eq!(count("service_terminated"), 1, "{mails:?}");
    w.invariants().await;
}

#[tokio::test]
async fn voiding_issues_a_credit_note() {
    let w = World::new("2026-02-02T10:00:00Z").await;
    let de = w.customer("de@example.com", Some("DE")).await;
    let unpaid = w.order(de, "burst-s", Monthly, None).await;
    let cn = invoices::void_with_credit_note(&w.pool, &w.clock, w.admin, unpaid.invoice_id, None).await.unwrap();
    let (number, total): (i32, i64) =
        sqlx::query_as(&format!("SELECT number_seq, total_minor FROM invoices WHERE id = '{cn}' AND kind = 'credit_note'"))
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!((number, total), (1, 357));
    assert_eq!(w.scalar::<String>(&format!("SELECT status::text FROM invoices WHERE id = '{}'", unpaid.invoice_id)).await, "void");
    assert!(matches!(
        invoices::void_with_credit_note(&w.pool, &w.clock, w.admin, unpaid.invoice_id, None).await,
        Err(BillingError::InvoiceVoid(_))
    ));
    // A paid invoice stays paid; its amount becomes credit.
    let paid = w.order(de, "burst-s", Monthly, None).await;
    w.credit(de, 357).await;
    w.pay(de, paid.invoice_id).await;
    invoices::void_with_credit_note(&w.pool, &w.clock, w.admin, paid.invoice_id, None).await.unwrap();
    assert_eq!(credit_balance(&w.pool, de, Currency::parse("EUR").unwrap()).await.unwrap(), eur(357));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM audit_log WHERE action = 'invoice.void'").await, 2);
    w.invariants().await;
}

#[tokio::test]
async fn another_customer_sees_nothing_and_can_do_nothing() {
    let w = World::new("2026-02-02T10:00:00Z").await;
    let a = w.customer("a@example.com", None).await;
    let b = w.customer("b@example.com", None).await;
    let placed = w.order(a, "burst-s", Monthly, None).await;
    w.credit(b, 10_000).await;
    assert!(matches!(pay_invoice_with_credit(&w.pool, &w.clock, b, placed.invoice_id).await, Err(BillingError::InvoiceNotFound)));
    assert!(invoices::get_for(&w.pool, b, placed.invoice_id).await.unwrap().is_none());
    assert!(invoices::get_for(&w.pool, a, placed.invoice_id).await.unwrap().is_some());
    assert!(panel::orders::get_for(&w.pool, b, placed.order_id).await.unwrap().is_none());
    w.credit(a, 300).await;
    w.pay(a, placed.invoice_id).await;
    let instance: Uuid = w.scalar("SELECT id FROM instances").await;
    assert!(panel::instances::get_for(&w.pool, b.into(), instance.into()).await.unwrap().is_none());
    let e = panel::instances::request_action(&w.pool, &w.clock, b.into(), instance.into(), vessel_core::Action::Stop).await.unwrap_err();
    assert!(matches!(e, panel::instances::InstanceError::NotFound));
    assert_eq!(w.scalar::<String>("SELECT desired_state::text FROM instances").await, "running");
    w.invariants().await;
}

#[tokio::test]
async fn stripe_webhooks_credit_once_and_refuse_bad_signatures() {
    use panel::billing::stripe::{handle_webhook, sign, WebhookOutcome};
    let w = World::new("2026-02-02T10:00:00Z").await;
    let de = w.customer("de@example.com", Some("DE")).await;
    let placed = w.order(de, "burst-s", Monthly, None).await;
    let event = |evt: &str| {
        serde_json::json!({
            "id": evt, "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_test_1", "amount_total": 357, "currency": "eur", "payment_status": "paid",
                                 "client_reference_id": de.to_string(), "metadata": {"invoice_id": placed.invoice_id.to_string()}}}
        })
        .to_string()
    };
    let now = at("2026-02-02T10:00:00Z").timestamp();
    let body = event("evt_1");
    let bad = handle_webhook(&w.pool, &w.clock, "whsec_x", body.as_bytes(), &sign(body.as_bytes(), "whsec_wrong", now)).await;
    assert!(matches!(bad, Err(BillingError::BadSignature(_))));
    let stale = handle_webhook(&w.pool, &w.clock, "whsec_x", body.as_bytes(), &sign(body.as_bytes(), "whsec_x", now - 3600)).await;
    assert!(matches!(stale, Err(BillingError::BadSignature(_))));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM payments").await, 0);

    let ok = handle_webhook(&w.pool, &w.clock, "whsec_x", body.as_bytes(), &sign(body.as_bytes(), "whsec_x", now)).await.unwrap();
    assert!(matches!(ok, WebhookOutcome::Credited { invoice_paid: true, .. }), "{ok:?}");
    let again = handle_webhook(&w.pool, &w.clock, "whsec_x", body.as_bytes(), &sign(body.as_bytes(), "whsec_x", now)).await.unwrap();
    assert_eq!(again, WebhookOutcome::AlreadyProcessed);
    // The same payment under a new event id (Stripe resends differently) adds nothing either.
    let body2 = event("evt_2");
    let dup = handle_webhook(&w.pool, &w.clock, "whsec_x", body2.as_bytes(), &sign(body2.as_bytes(), "whsec_x", now)).await.unwrap();
    assert_eq!(dup, WebhookOutcome::AlreadyProcessed);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM payments WHERE method = 'stripe'").await, 1);
    assert_eq!(w.scalar::<String>("SELECT status::text FROM subscriptions").await, "active");
    w.invariants().await;
}

#[tokio::test]
async fn rust_and_postgres_agree_on_every_period() {
    use panel::billing::period::period_start;
    let pool = crate::helpers::fresh_pool().await;
    let mut anchors = Vec::new();
    let mut d = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    while d < chrono::NaiveDate::from_ymd_opt(2029, 1, 1).unwrap() {
        anchors.push(d);
        d = d.succ_opt().unwrap();
    }
    for cycle in panel::plans::BillingCycle::ALL {
        let ks: Vec<i32> = (0..50).collect();
        let rows: Vec<(chrono::NaiveDate, i32, chrono::NaiveDate)> =
            sqlx::query_as("SELECT a, k, period_start(a, $3, k) FROM UNNEST($1::date[]) a, UNNEST($2::int[]) k")
                .bind(&anchors)
                .bind(&ks)
                .bind(cycle)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), anchors.len() * 50);
        for (a, k, pg) in rows {
            assert_eq!(period_start(a, cycle, k as u32), pg, "{a} {cycle:?} k={k}");
        }
    }
}

//! Issue 18: the set-based renewal run issues exactly what the per-invoice path did before it.
//!
//! One mixed population (three cycles, EUR and USD, five tax treatments, recurring, one-off,
//! fixed and 100 % coupons, suspended and cancelling subscriptions, customers holding account
//! credit, resellers with webhook endpoints) is built in two databases, with the same ids. One is renewed by
//! the set-based run, in small batches, with a batch rolled back mid-statement and a run stopped
//! between batches (a kill's leftovers) before it resumes; the other by the per-invoice path as
//! it was before issue 18 (kept below as the reference). Invoices, lines, numbers, ledger,
//! mails, reseller events and subscriptions must be identical, and a re-run must add nothing.

use crate::billing_world::check_invariants;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use panel::billing::renewal::{self, RenewalPolicy};
use panel::clock::{Clock, FixedClock};
use panel::db::Tx;
use sqlx::{PgPool, Row};
use std::path::Path;
use uuid::Uuid;

const POLICY: RenewalPolicy = RenewalPolicy { lead_days: 7, batch_size: 7 };

fn at(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(9, 30, 0).unwrap().and_utc()
}

/// The days the runs happen on: every 9 days over fourteen months (annual renewals included).
fn run_days() -> Vec<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(2026, 1, 3).unwrap();
    (0..48).map(|i| first + chrono::Duration::days(9 * i)).collect()
}

async fn population(pool: &PgPool) {
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(pool, &plans).await.unwrap();
    for sql in [
        "INSERT INTO os_templates (name, display_name, for_kvm) VALUES ('debian-12', 'Debian 12', true)",
        "UPDATE billing_settings SET seller_country = 'DE', seller_legal_name = 'Vessel GmbH', seller_address = 'Berlin',
                seller_vat_id = 'DE123456789', payment_terms_days = 14",
        "INSERT INTO coupons (code, percent_off, amount_off_minor, currency, recurring) VALUES
            ('TEN', 10, NULL, NULL, true), ('FREE', 100, NULL, NULL, true), ('HALF-ONCE', 50, NULL, NULL, false),
            ('EUR3', NULL, 300, 'EUR', true)",
        "CREATE TABLE pop AS SELECT g, md5('acc' || g)::uuid AS acc, md5('ord' || g)::uuid AS ord, md5('sub' || g)::uuid AS sub,
                (ARRAY['DE', 'FR', 'AT', 'US', NULL])[1 + g % 5] AS country,
                CASE WHEN g % 3 = 0 THEN 'USD' ELSE 'EUR' END AS cur,
                (ARRAY['monthly', 'quarterly', 'annual'])[1 + (g / 3) % 3]::billing_cycle AS cycle,
                (ARRAY['burst-s', 'burst-m', 'kvm-s2'])[1 + (g / 9) % 3] AS plan,
                date '2026-01-01' + (g * 7 % 59) AS anchor,
                (ARRAY['TEN', 'FREE', 'HALF-ONCE', 'EUR3', NULL, NULL, NULL])[1 + g % 7] AS coupon
           FROM generate_series(1, 140) g",
        "INSERT INTO accounts (id, role, email, email_verified_at, country, currency, display_name, vat_id, vat_id_checked_at)
         SELECT acc, CASE WHEN g % 17 = 1 THEN 'reseller' ELSE 'customer' END::account_role, 'c' || g || '@example.com', now(),
                country, cur, 'Customer ' || g,
                CASE WHEN country = 'AT' AND g % 2 = 0 THEN 'ATU12345678' END, CASE WHEN country = 'AT' AND g % 2 = 0 THEN now() END
           FROM pop",
        "INSERT INTO webhook_endpoints (account_id, url, secret) SELECT acc, 'https://example.com/hook', repeat('s', 32) FROM pop WHERE g % 17 = 1",
        "INSERT INTO orders (id, account_id, plan_id, cycle, os_template_id, hostname, status)
         SELECT ord, acc, p.id, cycle, (SELECT id FROM os_templates), 'host' || g, 'paid' FROM pop JOIN plans p ON p.code = pop.plan",
        "INSERT INTO subscriptions (id, account_id, order_id, plan_id, cycle, currency, price_minor, coupon_id, anchor_date,
                                    current_period_start, current_period_end, status, cancel_at_period_end)
         SELECT sub, acc, ord, p.id, pop.cycle, cur, pp.amount_minor, (SELECT id FROM coupons c WHERE c.code = pop.coupon AND
                (c.currency IS NULL OR c.currency = pop.cur)), anchor, anchor, period_start(anchor, pop.cycle, 1),
                CASE WHEN g % 11 = 0 THEN 'suspended' ELSE 'active' END::subscription_status, g % 13 = 0
           FROM pop JOIN plans p ON p.code = pop.plan
           JOIN plan_prices pp ON pp.plan_id = p.id AND pp.cycle = pop.cycle AND pp.currency = pop.cur",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Some customers hold account credit (renewals leave it alone: it pays nothing by itself).
    let admin: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'admin@example.com') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap();
    let clock = FixedClock::at(at(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()));
    let rich: Vec<(Uuid, String)> = sqlx::query_as("SELECT acc, cur FROM pop WHERE g % 4 = 1 ORDER BY g").fetch_all(pool).await.unwrap();
    for (i, (acc, cur)) in rich.into_iter().enumerate() {
        let money = panel::money::Money::new(5000, panel::money::Currency::parse(&cur).unwrap());
        panel::billing::payments::record_manual_payment(pool, &clock, admin, acc, money, &format!("TRF-{i}"), None, None)
            .await
            .unwrap()
            .expect("a new payment");
    }
    sqlx::query("DROP TABLE pop").execute(pool).await.unwrap();
}

/// Everything a renewal writes, with the (random) invoice ids replaced by the invoice numbers.
async fn snapshot(pool: &PgPool) -> Vec<(&'static str, String)> {
    let parts = [
        ("invoices", "SELECT jsonb_agg(to_jsonb(i) - 'id' - 'created_at' ORDER BY i.kind, i.number_year, i.number_seq) FROM invoices i"),
        (
            "lines",
            "SELECT jsonb_agg(to_jsonb(l) - 'id' - 'invoice_id' || jsonb_build_object('invoice', n.no) ORDER BY n.no, l.position)
               FROM invoice_lines l JOIN n ON n.id = l.invoice_id",
        ),
        (
            "ledger",
            "SELECT jsonb_agg(x ORDER BY x::text) FROM (
                SELECT jsonb_build_object('invoice', n.no, 'description', t.description, 'at', t.occurred_at,
                       'payment', t.payment_id IS NOT NULL,
                       'entries', (SELECT jsonb_agg(jsonb_build_array(la.code, la.account_id, la.currency, e.debit_minor, e.credit_minor)
                                                    ORDER BY la.code, e.debit_minor, e.credit_minor)
                                     FROM ledger_entries e JOIN ledger_accounts la ON la.id = e.ledger_account_id
                                    WHERE e.transaction_id = t.id)) AS x
                  FROM ledger_transactions t LEFT JOIN n ON n.id = t.invoice_id) y",
        ),
        (
            "ledger accounts",
            "SELECT jsonb_agg(jsonb_build_array(code, type, account_id, currency, balance_minor) ORDER BY code, currency, account_id)
               FROM ledger_accounts",
        ),
        (
            "outbox",
            "SELECT jsonb_agg(x ORDER BY x::text) FROM (
                SELECT jsonb_build_array(o.to_address, o.template,
                       o.data - 'invoice_id' - 'payment_id' || jsonb_build_object('invoice', n.no),
                       o.template || ':' || COALESCE(n.no, 'payment'), o.sent_at, o.attempts) AS x
                  FROM email_outbox o LEFT JOIN n ON n.id::text = o.data ->> 'invoice_id') y",
        ),
        (
            "reseller events",
            "SELECT jsonb_agg(x ORDER BY x::text) FROM (
                SELECT jsonb_build_array(e.account_id, e.type, e.data - 'id' || jsonb_build_object('invoice', n.no),
                       (SELECT count(*) FROM webhook_deliveries d WHERE d.event_id = e.id)) AS x
                  FROM api_events e LEFT JOIN n ON n.id::text = e.data ->> 'id') y",
        ),
        ("numbers", "SELECT jsonb_agg(to_jsonb(q) ORDER BY q.kind, q.year) FROM invoice_number_sequences q"),
        (
            "subscriptions",
            "SELECT jsonb_agg(jsonb_build_array(id, status, current_period_index, current_period_start, current_period_end) ORDER BY id)
               FROM subscriptions",
        ),
    ];
    let mut out = Vec::new();
    for (name, sql) in parts {
        let sql = format!(
            "WITH n AS (SELECT id, kind::text || '-' || number_year || '-' || lpad(number_seq::text, 6, '0') AS no FROM invoices)
             SELECT COALESCE(({sql}), '[]'::jsonb)::text"
        );
        out.push((name, sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{name}: {e}"))));
    }
    out
}

/// The per-invoice path as it was before issue 18 (the reference): one subscription per
/// transaction, its charge computed by `tax_rate_for`, a draft with its line, a number, the
/// draft marked issued, then the ledger and the mail, each its own statement.
mod before {
    use super::*;
    use panel::billing::invoices::{InvoiceKind, InvoiceStatus};
    use panel::db::invoices as sql;

    #[derive(sqlx::FromRow)]
    struct Charge {
        subscription_id: Uuid,
        account_id: Uuid,
        currency: String,
        plan_name: String,
        cycle: panel::plans::BillingCycle,
        period_start: NaiveDate,
        period_end: NaiveDate,
        price_minor: i64,
        discount_minor: i64,
        rate_bp: i32,
        subtotal_minor: i64,
        tax_minor: i64,
    }

    async fn issue_next(tx: &mut Tx<'_>, sub: Uuid, now: DateTime<Utc>) {
        let charge: Option<Charge> = sqlx::query_as(
            "WITH b AS (
                SELECT s.id AS subscription_id, s.account_id, s.currency, p.name AS plan_name, s.cycle,
                       s.current_period_index + 1 AS k, s.anchor_date, s.cycle AS c, s.price_minor,
                       cp.percent_off, cp.amount_off_minor, cp.recurring
                  FROM subscriptions s JOIN plans p ON p.id = s.plan_id LEFT JOIN coupons cp ON cp.id = s.coupon_id
                 WHERE s.id = $1
             ), d AS (
                SELECT b.*, period_start(anchor_date, c, k) AS period_start, period_start(anchor_date, c, k + 1) AS period_end,
                       CASE WHEN percent_off IS NULL AND amount_off_minor IS NULL THEN 0
                            WHEN k > 0 AND NOT recurring THEN 0
                            WHEN percent_off IS NOT NULL THEN (price_minor * percent_off + 50) / 100
                            ELSE LEAST(price_minor, amount_off_minor) END AS discount_minor
                  FROM b
             ), r AS (
                SELECT d.*, tax_rate_for(d.account_id, d.period_start) AS rate_bp FROM d
                 WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = d.subscription_id
                                      AND i.kind = 'invoice' AND i.period_start = d.period_start)
             )
             SELECT subscription_id, account_id, currency, plan_name, cycle, period_start, period_end, price_minor,
                    discount_minor, rate_bp, price_minor - discount_minor AS subtotal_minor,
                    tax_minor(price_minor - discount_minor, rate_bp) AS tax_minor
               FROM r",
        )
        .bind(sub)
        .fetch_optional(&mut **tx)
        .await
        .unwrap();
        let Some(r) = charge else { return };
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO invoices (id, account_id, subscription_id, period_start, period_end, currency, subtotal_minor, tax_minor, total_minor)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7 + $8)",
        )
        .bind(id)
        .bind(r.account_id)
        .bind(r.subscription_id)
        .bind(r.period_start)
        .bind(r.period_end)
        .bind(&r.currency)
        .bind(r.subtotal_minor)
        .bind(r.tax_minor)
        .execute(&mut **tx)
        .await
        .unwrap();
        let description =
            format!("{} ({}), {} to {}", r.plan_name, r.cycle, r.period_start, panel::billing::period::last_day(r.period_end));
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price_minor, discount_minor, amount_minor, tax_rate_bp, tax_minor)
             VALUES ($1, 1, $2, 1, $3, $4, $3 - $4, $5, $6)",
        )
        .bind(id)
        .bind(description)
        .bind(r.price_minor)
        .bind(r.discount_minor)
        .bind(r.rate_bp)
        .bind(r.tax_minor)
        .execute(&mut **tx)
        .await
        .unwrap();
        let seq = sql::reserve_numbers(tx, InvoiceKind::Invoice, now.year(), 1).await.unwrap();
        let due = r.period_start.and_time(NaiveTime::MIN).and_utc().max(now);
        sql::mark_issued(tx, &[id], now.year(), seq, now, &[due]).await.unwrap();
        panel::db::ledger::post_issued_invoices(tx, &[id], now).await.unwrap();
        panel::db::outbox::insert_for_invoices(tx, "invoice_issued", &[id]).await.unwrap();
        if r.subtotal_minor + r.tax_minor == 0 {
            sql::set_status(tx, id, InvoiceStatus::Paid, now).await.unwrap();
        }
    }

    /// The old run's rounds: every due subscription in id order, then the periods advance.
    pub async fn run(pool: &PgPool, now: DateTime<Utc>) {
        // Ending the subscriptions cancelled at a period's end is not part of the change:
        // the run's own first step, and nothing else.
        renewal::run_batches(pool, &FixedClock::at(now), POLICY, 0).await.unwrap();
        let today = now.date_naive();
        let until = today + chrono::Duration::days(POLICY.lead_days);
        loop {
            let mut issued = 0;
            let mut after = None;
            loop {
                let mut tx = pool.begin().await.unwrap();
                let ids = panel::db::subscriptions::lock_due_for_renewal(&mut tx, until, after, 1).await.unwrap();
                let Some(sub) = ids.first().copied() else { break };
                after = Some(sub);
                issue_next(&mut tx, sub, now).await;
                tx.commit().await.unwrap();
                issued += 1;
            }
            let mut tx = pool.begin().await.unwrap();
            let advanced = panel::db::subscriptions::advance_periods(&mut tx, today).await.unwrap();
            tx.commit().await.unwrap();
            if issued == 0 && advanced == 0 {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_set_based_run_issues_what_the_per_invoice_path_did() {
    // The same population (its ids derived from its row numbers) in two databases.
    let (new, old) = (crate::helpers::fresh_pool().await, crate::helpers::fresh_pool().await);
    population(&new).await;
    population(&old).await;

    // The variety the comparison rests on is really there.
    let variety: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT s.currency), count(DISTINCT s.cycle), count(DISTINCT s.coupon_id),
                count(DISTINCT tax_treatment(s.account_id)), count(*) FILTER (WHERE a.role = 'reseller')
           FROM subscriptions s JOIN accounts a ON a.id = s.account_id",
    )
    .fetch_one(&new)
    .await
    .unwrap();
    assert_eq!(variety, (2, 3, 4, 5, variety.4), "currencies, cycles, coupons, tax treatments");
    assert!(variety.4 >= 5, "resellers with webhook endpoints: {}", variety.4);

    let days = run_days();
    let mut kills_between_batches = 0;
    for (i, day) in days.iter().enumerate() {
        let clock = FixedClock::at(at(*day));
        if i == 3 {
            // A batch that dies after its statement, before its commit: nothing of it stays
            // (no invoice, no number used).
            let numbers = || sqlx::query_scalar::<_, Option<i32>>("SELECT max(next_seq) FROM invoice_number_sequences").fetch_one(&new);
            let (invoices_before, numbers_before): (i64, Option<i32>) =
                (sqlx::query_scalar("SELECT count(*) FROM invoices").fetch_one(&new).await.unwrap(), numbers().await.unwrap());
            let mut tx = new.begin().await.unwrap();
            let until = day.checked_add_days(chrono::Days::new(7)).unwrap();
            let ids = panel::db::subscriptions::lock_due_for_renewal(&mut tx, until, None, 7).await.unwrap();
            assert!(!ids.is_empty(), "something is due on {day}");
            let issued =
                panel::billing::invoices::issue_for_subscriptions(&mut tx, &ids, panel::billing::invoices::PeriodChoice::Next, clock.now())
                    .await
                    .unwrap();
            assert_eq!(issued.len(), ids.len());
            // The process dies: no commit. (Rolled back explicitly, as the server does for a
            // dead connection: a dropped sqlx transaction rolls back only when its connection is
            // next used, and until then its row locks made the next run skip these rows.)
            tx.rollback().await.unwrap();
            assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM invoices").fetch_one(&new).await.unwrap(), invoices_before);
            assert_eq!(numbers().await.unwrap(), numbers_before);
        }
        let mut stopped = false;
        if i % 2 == 1 {
            // A kill between two batches: two committed, the rest not started.
            let part = renewal::run_batches(&new, &clock, POLICY, 2).await.unwrap();
            assert!(part.batches <= 2, "on {day}: {part:?}");
            stopped = part.batches == 2;
            check_invariants(&new).await;
        }
        let report = renewal::run(&new, &clock, POLICY).await.unwrap();
        if stopped && report.invoices_issued > 0 {
            kills_between_batches += 1;
        }
        check_invariants(&new).await;
        // Run again on the same day: nothing more.
        let again = renewal::run(&new, &clock, POLICY).await.unwrap();
        assert_eq!((again.invoices_issued, again.periods_advanced), (0, 0), "a re-run on {day} after {report:?}");
        before::run(&old, clock.now()).await;
    }
    check_invariants(&old).await;
    assert!(kills_between_batches >= 5, "only {kills_between_batches} runs were stopped between batches with work left");

    let (a, b) = (snapshot(&new).await, snapshot(&old).await);
    for ((name, got), (_, want)) in a.iter().zip(&b) {
        assert!(got == want, "{name} differ:\n set-based:   {got}\n per-invoice: {want}");
    }
    // And the comparison is not of empty tables: every kind of renewal happened.
    let row = sqlx::query(
        "SELECT count(*) AS n, count(DISTINCT currency) AS currencies, count(*) FILTER (WHERE status = 'paid' AND total_minor = 0) AS free,
                count(DISTINCT tax_treatment) AS treatments, count(DISTINCT number_year) AS years,
                (SELECT count(*) FROM api_events) AS events, (SELECT count(*) FROM email_outbox WHERE template = 'invoice_issued') AS mails,
                (SELECT count(DISTINCT s.cycle) FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id) AS cycles
           FROM invoices WHERE kind = 'invoice'",
    )
    .fetch_one(&new)
    .await
    .unwrap();
    let n: i64 = row.get("n");
    assert!(n > 500, "{n} renewals");
    assert_eq!(row.get::<i64, _>("currencies"), 2);
    assert!(row.get::<i64, _>("free") > 0, "100 % coupons renew as paid");
    assert_eq!(row.get::<i64, _>("treatments"), 5);
    assert_eq!(row.get::<i64, _>("years"), 2);
    assert!(row.get::<i64, _>("events") > 0, "resellers' invoice events");
    assert_eq!(row.get::<i64, _>("mails"), n);
    assert_eq!(row.get::<i64, _>("cycles"), 3);
}

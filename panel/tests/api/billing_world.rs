//! A small billing world for scenario tests: a catalogue, a template, an admin, customers,
//! a clock that moves only when told, and the invariants checked after every scenario.

use chrono::{DateTime, Utc};
use panel::billing::{dunning, renewal};
use panel::clock::FixedClock;
use panel::money::{Currency, Money};
use panel::orders::{place_order, OrderRequest, PlacedOrder};
use panel::plans::BillingCycle;
use sqlx::PgPool;
use std::path::Path;
use uuid::Uuid;

pub struct World {
    pub pool: PgPool,
    pub clock: FixedClock,
    pub admin: Uuid,
    refs: std::sync::atomic::AtomicU32,
}

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

impl World {
    pub async fn new(now: &str) -> World {
        let pool = crate::helpers::fresh_pool().await;
        let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
        panel::plans::sync::sync(&pool, &plans).await.unwrap();
        sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
        let admin = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'admin@example.com') RETURNING id")
            .fetch_one(&pool)
            .await
            .unwrap();
        World { pool, clock: FixedClock::at(at(now)), admin, refs: Default::default() }
    }

    pub fn set(&self, now: &str) {
        self.clock.set(at(now));
    }

    /// A verified, active customer paying in EUR, in `country` (for tax) if given.
    pub async fn customer(&self, email: &str, country: Option<&str>) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO accounts (role, email, email_verified_at, country, currency) VALUES ('customer', $1, now(), $2, 'EUR') RETURNING id",
        )
        .bind(email)
        .bind(country)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    pub async fn order(&self, customer: Uuid, plan: &str, cycle: BillingCycle, coupon: Option<&str>) -> PlacedOrder {
        place_order(
            &self.pool,
            &self.clock,
            customer,
            OrderRequest {
                plan_code: plan.into(),
                cycle,
                os_template: "debian-12".into(),
                hostname: "web1.example.com".into(),
                coupon: coupon.map(str::to_string),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("order failed: {e}"))
    }

    /// An admin records a bank transfer of `minor` cents as credit.
    pub async fn credit(&self, customer: Uuid, minor: i64) {
        let n = self.refs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panel::billing::payments::record_manual_payment(
            &self.pool,
            &self.clock,
            self.admin,
            customer,
            eur(minor),
            &format!("bank-{n}"),
            None,
            None,
        )
        .await
        .unwrap()
        .expect("a new payment");
    }

    /// Pays an invoice with credit, unless the credit already paid it when it came in
    /// (recorded credit pays open invoices, oldest first).
    pub async fn pay(&self, customer: Uuid, invoice: Uuid) {
        match panel::billing::payments::pay_invoice_with_credit(&self.pool, &self.clock, customer, invoice).await {
            Ok(()) | Err(panel::billing::BillingError::AlreadyPaid(_)) => {}
            Err(e) => panic!("paying {invoice}: {e}"),
        }
    }

    pub async fn renew(&self) -> renewal::RenewalReport {
        renewal::run(&self.pool, &self.clock, renewal::RenewalPolicy::default()).await.unwrap()
    }

    pub async fn dunning(&self) -> dunning::DunningReport {
        dunning::run(&self.pool, &self.clock, dunning::DunningPolicy::default()).await.unwrap()
    }

    /// Period starts of a subscription's invoices, in order.
    pub async fn invoiced_periods(&self, sub: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT period_start::text FROM invoices WHERE subscription_id = $1 AND kind = 'invoice' AND period_start IS NOT NULL ORDER BY period_start",
        )
        .bind(sub)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn invariants(&self) {
        check_invariants(&self.pool).await
    }
}

/// What must hold after anything billing does.
pub async fn check_invariants(pool: &PgPool) {
    let q =
        |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}")) };
    // 1. Every ledger transaction balances in each currency.
    let unbalanced =
        q("SELECT count(*) FROM (SELECT e.transaction_id FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.ledger_account_id
                          GROUP BY e.transaction_id, a.currency HAVING sum(e.debit_minor) <> sum(e.credit_minor)) x")
        .await;
    assert_eq!(unbalanced, 0, "unbalanced ledger transactions");
    // 2. Each customer's balance (credit − receivable) = payments − invoices + credit notes.
    let mismatched = q("WITH l AS (
            SELECT a.account_id, a.currency,
                   sum(CASE a.code WHEN 'credit' THEN e.credit_minor - e.debit_minor ELSE 0 END)
                 - sum(CASE a.code WHEN 'receivable' THEN e.debit_minor - e.credit_minor ELSE 0 END) AS balance
              FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.ledger_account_id
             WHERE a.account_id IS NOT NULL GROUP BY 1, 2),
          d AS (
            SELECT account_id, currency, sum(m) AS expected FROM (
                SELECT account_id, currency, amount_minor AS m FROM payments WHERE method <> 'account_credit'
                UNION ALL SELECT account_id, currency, -total_minor FROM invoices WHERE kind = 'invoice' AND status <> 'draft'
                UNION ALL SELECT account_id, currency, total_minor FROM invoices WHERE kind = 'credit_note' AND status <> 'draft') x
             GROUP BY 1, 2)
        SELECT count(*) FROM d FULL JOIN l USING (account_id, currency)
         WHERE COALESCE(d.expected, 0) <> COALESCE(l.balance, 0)")
    .await;
    assert_eq!(mismatched, 0, "a customer's ledger balance differs from their invoices and payments");
    // 3. One invoice per subscription period.
    let doubled = q("SELECT count(*) FROM (SELECT 1 FROM invoices WHERE kind = 'invoice' AND period_start IS NOT NULL
                       GROUP BY subscription_id, period_start HAVING count(*) > 1) x")
    .await;
    assert_eq!(doubled, 0, "a period was invoiced twice");
    // 4. Numbers without gaps: per kind and year, 1..n.
    let gaps = q("SELECT count(*) FROM (SELECT kind, number_year FROM invoices WHERE number_seq IS NOT NULL GROUP BY 1, 2
                   HAVING min(number_seq) <> 1 OR max(number_seq) <> count(*) OR count(DISTINCT number_seq) <> count(*)) x")
    .await;
    assert_eq!(gaps, 0, "invoice numbers have gaps");
    // 5. A paid invoice was paid in full, exactly once.
    let badly_paid = q("SELECT count(*) FROM invoices i WHERE i.kind = 'invoice' AND i.total_minor > 0 AND
                         (i.status = 'paid') <> (COALESCE((SELECT sum(p.amount_minor) FROM payments p WHERE p.invoice_id = i.id AND p.method = 'account_credit'), 0) = i.total_minor)").await;
    assert_eq!(badly_paid, 0, "an invoice's paid state disagrees with its payments");
}

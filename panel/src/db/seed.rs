//! Bulk fake customers and subscriptions, for benchmarks and crash tests that need
//! thousands of rows quickly (going through `place_order` one by one would measure the
//! wrong thing). Never used by the panel itself.

use sqlx::PgPool;

/// Creates `n` verified customers, each with an active monthly subscription to `plan_code`
/// whose anchors spread over the 28 days from `first_anchor`. Needs an OS template.
pub async fn subscriptions(pool: &PgPool, n: i64, plan_code: &str, first_anchor: chrono::NaiveDate) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "CREATE TEMP TABLE seed ON COMMIT DROP AS
         SELECT gen_random_uuid() AS account_id, gen_random_uuid() AS order_id, g,
                ($3::date + (g % 28)::int) AS anchor
           FROM generate_series(1, $1) g",
    )
    .bind(n)
    .bind(plan_code)
    .bind(first_anchor)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO accounts (id, role, email, email_verified_at, currency)
         SELECT account_id, 'customer', 'seed-' || account_id || '@example.com', now(), 'EUR' FROM seed",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO orders (id, account_id, plan_id, cycle, os_template_id, hostname, status)
         SELECT s.order_id, s.account_id, p.id, 'monthly', (SELECT id FROM os_templates LIMIT 1), 'seed' || s.g, 'paid'
           FROM seed s, plans p WHERE p.code = $1 AND p.orderable",
    )
    .bind(plan_code)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO subscriptions (account_id, order_id, plan_id, cycle, currency, price_minor, anchor_date,
                                    current_period_start, current_period_end, status)
         SELECT s.account_id, s.order_id, p.id, 'monthly', 'EUR', pp.amount_minor, s.anchor, s.anchor,
                period_start(s.anchor, 'monthly', 1), 'active'
           FROM seed s JOIN plans p ON p.code = $1 AND p.orderable
           JOIN plan_prices pp ON pp.plan_id = p.id AND pp.cycle = 'monthly' AND pp.currency = 'EUR'",
    )
    .bind(plan_code)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

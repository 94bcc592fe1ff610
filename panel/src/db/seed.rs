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

/// Creates `n` joined, enabled, reachable hosts (64 threads, 256 GiB, 20 000 GiB) named
/// `scale-1`… whose API is `{api_base}/{i}` (one fake provisioner listener routing by path),
/// each with a secret of its own, and places one running instance per live subscription on
/// them, round robin. Bulk: the instances' load trigger is off during the insert and every
/// host's kept load (`guaranteed_memory_mib`, `host_plan_load`) is recounted set-based after,
/// in the same transaction, so the result is what the trigger would have kept.
pub async fn hosts_with_instances(pool: &PgPool, n: i64, api_base: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, api_secret, reachability, last_seen_at)
         SELECT 'scale-' || g, $2 || '/' || g, 64, 262144, 20000, decode(md5(random()::text) || md5(random()::text), 'hex'), 'reachable', now()
           FROM generate_series(1, $1) g",
    )
    .bind(n)
    .bind(api_base)
    .execute(&mut *tx)
    .await?;
    sqlx::query("ALTER TABLE instances DISABLE TRIGGER instances_host_guaranteed").execute(&mut *tx).await?;
    sqlx::query(
        "WITH s AS (SELECT id, account_id, plan_id, row_number() OVER (ORDER BY id) - 1 AS k FROM subscriptions WHERE status = 'active'),
              h AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM hosts WHERE name LIKE 'scale-%')
         INSERT INTO instances (id, account_id, subscription_id, plan_id, kind, os_template_id, hostname, host_id,
                                desired_state, observed_state, observed_at)
         SELECT gen_random_uuid(), s.account_id, s.id, s.plan_id, p.kind, (SELECT id FROM os_templates LIMIT 1), 'vps' || s.k, h.id,
                'running', 'running', now()
           FROM s JOIN plans p ON p.id = s.plan_id JOIN h ON h.k = s.k % $1",
    )
    .bind(n)
    .execute(&mut *tx)
    .await?;
    sqlx::query("ALTER TABLE instances ENABLE TRIGGER instances_host_guaranteed").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM host_plan_load").execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO host_plan_load (host_id, plan_id, instances)
         SELECT host_id, plan_id, count(*) FROM instances WHERE host_id IS NOT NULL AND desired_state <> 'terminated' GROUP BY 1, 2",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE hosts h SET guaranteed_memory_mib = COALESCE(l.g, 0)
           FROM (SELECT hh.id, sum(p.memory_guaranteed_mib * hpl.instances) AS g
                   FROM hosts hh LEFT JOIN host_plan_load hpl ON hpl.host_id = hh.id LEFT JOIN plans p ON p.id = hpl.plan_id
                  GROUP BY hh.id) l
          WHERE l.id = h.id",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

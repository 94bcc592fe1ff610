//! Billing throughput beside its yardsticks, on the same database in the same run:
//!
//! * order placement (orders/s with concurrent customers) vs pgbench's TPC-B-like TPS;
//! * the renewal run (invoices/s over 100 000 subscriptions) vs one set-based
//!   `INSERT … SELECT` of the same invoice rows.
//!
//! Run: `cargo bench -p panel --bench billing` (starts the dev cluster unless DATABASE_URL is
//! set). Sizes: `BENCH_SUBSCRIPTIONS` (100000), `BENCH_CUSTOMERS` (16), `BENCH_SECONDS` (10).

use panel::billing::renewal::{self, RenewalPolicy};
use panel::clock::FixedClock;
use panel::orders::{place_order, OrderRequest};
use panel::plans::BillingCycle;
use sqlx::PgPool;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn fresh(concurrency: u32) -> (PgPool, String) {
    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a bench database");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(concurrency + 4).connect(&url).await.unwrap();
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
    (pool, url)
}

#[tokio::main]
async fn main() {
    let customers = env_or("BENCH_CUSTOMERS", 16) as u32;
    let seconds = env_or("BENCH_SECONDS", 10);
    let subs = env_or("BENCH_SUBSCRIPTIONS", 100_000) as i64;

    // ---------------------------------------------------------------- order placement
    let (pool, url) = fresh(customers).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, email_verified_at, country, currency)
         SELECT 'customer', 'bench' || g || '@example.com', now(), 'DE', 'EUR' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(customers as i32)
    .fetch_all(&pool)
    .await
    .unwrap();
    let clock = Arc::new(FixedClock::at(chrono::Utc::now()));
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in ids {
        let (pool, clock, done) = (pool.clone(), clock.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let req = OrderRequest {
                    plan_code: "burst-s".into(),
                    cycle: BillingCycle::Monthly,
                    os_template: "debian-12".into(),
                    hostname: "bench.example.com".into(),
                    coupon: None,
                };
                place_order(&pool, clock.as_ref(), id, req).await.expect("order");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let orders_per_s = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();

    // The yardstick on the same database: pgbench's built-in TPC-B-like script.
    let bin = vessel_devdb::server_bin_dir().expect("PostgreSQL binaries").join("pgbench");
    let init = std::process::Command::new(&bin).args(["-i", "-q", "-s", "1"]).arg(&url).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let run = std::process::Command::new(&bin)
        .args(["-n", "-c", &customers.to_string(), "-j", "2", "-T", &seconds.to_string()])
        .arg(&url)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let tps: f64 = out
        .lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{out}"));

    println!("order placement, {customers} concurrent customers, {seconds} s:");
    println!("  vessel place_order      {orders_per_s:>10.1} orders/s");
    println!("  pgbench TPC-B-like      {tps:>10.1} tps");
    println!("  ratio                   {:>10.3} (orders per TPC-B transaction)", orders_per_s / tps);
    pool.close().await;

    // ---------------------------------------------------------------- renewal run
    let (pool, _) = fresh(4).await;
    let anchor = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    panel::db::seed::subscriptions(&pool, subs, "burst-s", anchor).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    // As of 31 January with 28 days of lead, every subscription's second period (starting
    // 1 to 28 February) is due, and no period has ended yet: exactly one invoice each.
    let clock = FixedClock::at("2026-01-31T12:00:00Z".parse().unwrap());
    let t = Instant::now();
    let report = renewal::run(&pool, &clock, RenewalPolicy { lead_days: 28, batch_size: 1000 }).await.unwrap();
    let ours = t.elapsed();
    assert_eq!(report.invoices_issued as i64, subs, "every subscription renewed once");

    // Yardstick: the same invoice rows in one INSERT … SELECT (no lines, ledger, numbers or
    // mail), in a transaction rolled back so nothing is left.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE invoices DISABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
    let t = Instant::now();
    let n = sqlx::query(
        "INSERT INTO invoices (account_id, subscription_id, period_start, period_end, currency, subtotal_minor, tax_minor, total_minor)
         SELECT s.account_id, s.id, period_start(s.anchor_date, s.cycle, 2), period_start(s.anchor_date, s.cycle, 3), s.currency,
                s.price_minor, 0, s.price_minor
           FROM subscriptions s WHERE s.status = 'active'",
    )
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    let yard = t.elapsed();
    tx.rollback().await.unwrap();
    assert_eq!(n as i64, subs);

    let rate = |d: Duration| subs as f64 / d.as_secs_f64();
    println!("renewal run, {subs} subscriptions:");
    println!(
        "  vessel renewal::run     {:>10.0} invoices/s ({:.2} s; with lines, numbers, ledger, outbox)",
        rate(ours),
        ours.as_secs_f64()
    );
    println!("  one INSERT … SELECT     {:>10.0} invoices/s ({:.2} s; invoice rows only)", rate(yard), yard.as_secs_f64());
    println!("  ratio                   {:>10.3} (vessel / yardstick)", ours.as_secs_f64().recip() / yard.as_secs_f64().recip());
}

//! The reseller API's cost over the work it fronts, on the same database in the same run:
//!
//! * server creation through `POST /api/v1/servers` (bearer key, rate limiter, Idempotency-Key,
//!   JSON, HTTP) vs the same service called in-process (`resellers::servers::create` in a
//!   transaction): servers/s with concurrent clients, and the ratio;
//! * a page of `GET /api/v1/servers?limit=25` over a reseller with many servers vs the same
//!   page's SQL alone: median and p99 latency, and the ratio.
//!
//! Run: `cargo bench -p panel --bench api` (starts the dev cluster unless DATABASE_URL is set).
//! Sizes: `BENCH_CLIENTS` (16), `BENCH_SECONDS` (10), `BENCH_PAGES` (500).

use panel::api_keys::{self, Principal, Scope, Tenant};
use panel::config::Settings;
use panel::resellers::servers::{self, NewServer, ServerFilter};
use panel::startup::Application;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let clients = env_or("BENCH_CLIENTS", 16);
    let seconds = env_or("BENCH_SECONDS", 10);
    let pages = env_or("BENCH_PAGES", 500) as usize;

    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a bench database");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(clients as u32 + 4).connect(&url).await.unwrap();
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
    let reseller: Uuid =
        sqlx::query_scalar("INSERT INTO accounts (role, email, status) VALUES ('reseller', 'bench@resell.example', 'active') RETURNING id")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("INSERT INTO reseller_terms (reseller_id, max_servers, max_vcpus, max_memory_mib, max_disk_gib) VALUES ($1, 10000000, 10000000, 1000000000, 1000000000)")
        .bind(reseller)
        .execute(&pool)
        .await
        .unwrap();
    let customers: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, status, reseller_id) SELECT 'customer', 'c' || g || '@example.com', 'active', $1 FROM generate_series(1, $2) g RETURNING id",
    )
    .bind(reseller)
    .bind(clients as i32)
    .fetch_all(&pool)
    .await
    .unwrap();
    let token = api_keys::create(&pool, reseller, "bench", &[Scope::Read, Scope::Write], None).await.unwrap().token;
    let key_id: Uuid = sqlx::query_scalar("SELECT id FROM api_keys").fetch_one(&pool).await.unwrap();

    let mut settings = Settings::load(None).unwrap();
    settings.http.port = 0;
    settings.database.url = url.clone().into();
    settings.database.max_connections = clients as u32 + 4;
    settings.orchestration.enabled = false;
    settings.smtp.worker = false;
    settings.webhooks.worker = false;
    settings.api.rate_limit_per_minute = 100_000_000;
    settings.api.rate_limit_burst = 100_000_000;
    settings.log.filter = "warn".into();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();

    // ---------------------------------------------------------------- creation
    let run = |via_api: bool| {
        let (pool, http, base, token, customers) = (pool.clone(), http.clone(), base.clone(), token.clone(), customers.clone());
        async move {
            let done = Arc::new(AtomicU64::new(0));
            let end = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for (n, customer) in customers.into_iter().enumerate() {
                let (pool, http, base, token, done) = (pool.clone(), http.clone(), base.clone(), token.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let who = Principal { key_id, account_id: reseller, tenant: Tenant::Reseller(reseller), scopes: vec![Scope::Read, Scope::Write] };
                    let mut i = 0u64;
                    while Instant::now() < end {
                        i += 1;
                        let hostname = format!("h{n}-{i}.example.com");
                        if via_api {
                            let r = http
                                .post(format!("{base}/api/v1/servers"))
                                .bearer_auth(&token)
                                .header("Idempotency-Key", format!("{}-{n}-{i}", via_api))
                                .json(&serde_json::json!({"customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": hostname}))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
                        } else {
                            let mut tx = pool.begin().await.unwrap();
                            let s = NewServer { customer_id: customer, plan: "burst-s".into(), os_template: "debian-12".into(), hostname, cycle: panel::plans::BillingCycle::Monthly, access: Default::default() };
                            servers::create(&mut tx, &who, chrono::Utc::now(), s).await.unwrap();
                            tx.commit().await.unwrap();
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            let t0 = Instant::now();
            for t in tasks {
                t.await.unwrap();
            }
            done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
        }
    };
    let direct = run(false).await;
    let api = run(true).await;
    println!("server creation, {clients} concurrent clients, {seconds} s each:");
    println!("  in-process service      {direct:8.1} servers/s");
    println!("  POST /api/v1/servers    {api:8.1} servers/s   (ratio {:.2} of in-process)", api / direct);

    // ---------------------------------------------------------------- list latency
    // Fresh statistics, as autovacuum would have them on a running installation: without them
    // the planner sorts every server instead of walking the (created_at, id) index.
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&pool).await.unwrap();
    let mut sql_times = Vec::with_capacity(pages);
    let mut api_times = Vec::with_capacity(pages);
    for _ in 0..pages {
        let t = Instant::now();
        let rows = panel::db::resellers::servers(&pool, Some(reseller), &ServerFilter::default(), None, 26).await.unwrap();
        sql_times.push(t.elapsed());
        assert_eq!(rows.len(), 26);
        let t = Instant::now();
        let r = http.get(format!("{base}/api/v1/servers?limit=25")).bearer_auth(&token).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        api_times.push(t.elapsed());
        assert_eq!(body["data"].as_array().unwrap().len(), 25);
    }
    sql_times.sort();
    api_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("a page of 25 of {total} servers, {pages} requests:");
    println!(
        "  the page's SQL          median {:6.2} ms   p99 {:6.2} ms",
        ms(percentile(&sql_times, 0.5)),
        ms(percentile(&sql_times, 0.99))
    );
    println!(
        "  GET /api/v1/servers     median {:6.2} ms   p99 {:6.2} ms   (ratio {:.2} of the SQL at the median)",
        ms(percentile(&api_times, 0.5)),
        ms(percentile(&api_times, 0.99)),
        ms(percentile(&api_times, 0.5)) / ms(percentile(&sql_times, 0.5))
    );
}

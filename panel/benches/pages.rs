//! Page load with many signed-in customers (issue 18, item 6): `oha` (a well-kept HTTP load
//! generator, installed by `scripts/ensure-oha`) drives the real panel with `BENCH_CUSTOMERS`
//! (200) concurrent customers, each signed in through the login form with a session of its
//! own, browsing their servers and invoices pages; in the same run, the same concurrency on
//! the static `GET /healthz` is the yardstick. Prints p50 and p99 of both and their ratios.
//!
//! Every customer has `BENCH_ORDERS` (3) servers ordered through `orders::place_order`, so
//! each page lists real rows (servers, invoices).
//!
//! Run: `cargo bench -p panel --bench pages` (starts the dev cluster unless DATABASE_URL is
//! set). Sizes: `BENCH_CUSTOMERS` (200), `BENCH_SECONDS` (15 per phase), `BENCH_ORDERS` (3).

use panel::config::Settings;
use panel::startup::Application;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ensure_oha() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-oha");
    let out = std::process::Command::new(&script).stderr(Stdio::inherit()).output().expect("scripts/ensure-oha runs");
    assert!(out.status.success(), "scripts/ensure-oha failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Signs in through the login form; returns the `Cookie` header the session is.
async fn sign_in(base: &str, email: &str, password: &str) -> String {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let c = reqwest::Client::builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let html = c.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
    let r =
        c.post(format!("{base}/login")).form(&[("email", email), ("password", password), ("csrf", &csrf_of(&html))]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "log-in of {email}: {}", r.text().await.unwrap());
    use reqwest::cookie::CookieStore;
    let cookie = jar.cookies(&base.parse().unwrap()).expect("a session cookie");
    let cookie = cookie.to_str().unwrap().to_string();
    // The session works: the servers page is the customer's.
    let page = c.get(format!("{base}/servers")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    cookie
}

/// Latencies of every answered request in oha's CSV outputs (one per process), with the
/// status codes seen.
fn collect(outputs: &[std::process::Output]) -> (Vec<Duration>, std::collections::BTreeMap<String, usize>) {
    let mut times = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for out in outputs {
        assert!(out.status.success(), "oha failed: {}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 7 {
                continue;
            }
            times.push(Duration::from_secs_f64(f[4].parse().unwrap()));
            *statuses.entry(f[6].to_string()).or_default() += 1;
        }
    }
    times.sort();
    (times, statuses)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One oha process per customer (each its own session), all at once: `-c 1` each, so the
/// concurrency is the number of customers. `cookies[i]` is customer i's session, or none.
async fn load(oha: &Path, target: &str, urls_file: bool, cookies: &[Option<String>], seconds: u64) -> (Vec<Duration>, f64) {
    let t = Instant::now();
    let mut children = Vec::new();
    for cookie in cookies {
        let mut cmd = tokio::process::Command::new(oha);
        cmd.args(["--no-tui", "--output-format", "csv", "--worker-threads", "1", "--redirect", "0", "-c", "1", "-z"])
            .arg(format!("{seconds}s"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(c) = cookie {
            cmd.arg("-H").arg(format!("Cookie: {c}"));
        }
        if urls_file {
            cmd.arg("--urls-from-file");
        }
        cmd.arg(target);
        children.push(cmd.spawn().expect("oha starts"));
    }
    let mut outputs = Vec::new();
    for c in children {
        outputs.push(c.wait_with_output().await.unwrap());
    }
    let wall = t.elapsed().as_secs_f64();
    let (times, statuses) = collect(&outputs);
    assert_eq!(statuses.keys().collect::<Vec<_>>(), vec!["200"], "every answer is a 200 (a lost session would be a 303): {statuses:?}");
    let rate = times.len() as f64 / wall.min(seconds as f64).max(1.0);
    (times, rate)
}

#[tokio::main]
async fn main() {
    let customers = env_or("BENCH_CUSTOMERS", 200) as usize;
    let seconds = env_or("BENCH_SECONDS", 15);
    let orders = env_or("BENCH_ORDERS", 3);
    let oha = ensure_oha();

    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a bench database");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.unwrap();
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
    let password = "bench password 123";
    let hash = panel::auth::hash_password_bounded(panel::accounts::Password::parse(password).unwrap()).await.unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, email_verified_at, status, country, currency, password_hash)
         SELECT 'customer', 'page' || g || '@example.com', now(), 'active', 'DE', 'EUR', $2 FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(customers as i32)
    .bind(&hash)
    .fetch_all(&pool)
    .await
    .unwrap();
    // Real orders: each customer's pages list its servers and their invoices.
    let clock = panel::clock::FixedClock::at(chrono::Utc::now());
    for (n, id) in ids.iter().enumerate() {
        for k in 0..orders {
            let req = panel::orders::OrderRequest {
                plan_code: "burst-s".into(),
                cycle: panel::plans::BillingCycle::Monthly,
                os_template: "debian-12".into(),
                hostname: format!("web{k}.c{n}.example.com"),
                coupon: None,
            };
            panel::orders::place_order(&pool, &clock, *id, req).await.expect("an order");
        }
    }
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    let mut settings = Settings::load(None).unwrap();
    settings.http.port = 0;
    settings.database.url = url.clone().into();
    settings.orchestration.enabled = false;
    settings.smtp.worker = false;
    settings.webhooks.worker = false;
    settings.log.filter = "warn".into();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let mut cookies = Vec::new();
    for n in 1..=customers {
        let cookie = sign_in(&base, &format!("page{n}@example.com"), password).await;
        cookies.push(Some(cookie));
    }
    let dir = std::env::temp_dir().join(format!("vessel-pages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let urls = dir.join("urls");
    std::fs::write(&urls, format!("{base}/servers\n{base}/invoices\n")).unwrap();

    let (health, health_rate) = load(&oha, &format!("{base}/healthz"), false, &vec![None; customers], seconds).await;
    let (pages, pages_rate) = load(&oha, urls.to_str().unwrap(), true, &cookies, seconds).await;
    let _ = std::fs::remove_dir_all(&dir);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (h50, h99, p50, p99) = (percentile(&health, 0.5), percentile(&health, 0.99), percentile(&pages, 0.5), percentile(&pages, 0.99));
    println!("page load, {customers} concurrent signed-in customers (one oha -c 1 each), {seconds} s per phase, {orders} servers each:");
    println!(
        "  GET /healthz (yardstick)       p50 {:8.2} ms   p99 {:8.2} ms   {:8.1} req/s ({} requests)",
        ms(h50),
        ms(h99),
        health_rate,
        health.len()
    );
    println!(
        "  GET /servers and /invoices     p50 {:8.2} ms   p99 {:8.2} ms   {:8.1} req/s ({} requests)",
        ms(p50),
        ms(p99),
        pages_rate,
        pages.len()
    );
    println!("  ratio (pages / healthz)        p50 {:8.2}      p99 {:8.2}", ms(p50) / ms(h50), ms(p99) / ms(h99));
}

//! A scale model of a large provider (issue 18, item 5): `SCALE_HOSTS` (10 000) fake hosts
//! speaking the real provisioner API (signed requests checked with core's `Verifier`,
//! answers in core's wire types) behind one listener that routes by path (`/{n}/v1/…`, the
//! host's `api_url` is `http://127.0.0.1:PORT/{n}`), and `SCALE_INSTANCES` (1 000 000)
//! running instances with their subscriptions, seeded in bulk (`db::seed`). The real panel is
//! driven and measured:
//!
//! * the reconciler: one full pass of `orchestrator::reconcile_once` over every host (its
//!   period) and the database work it costs (`pg_stat_database` deltas);
//! * the scheduler: `scheduler::place` decisions/s beside the bare lock-and-sum floor;
//! * the renewal run over every subscription (`billing::renewal::run`);
//! * page latency of the admin's cockpit (`/admin/capacity`, `/admin/servers`) and the API's
//!   list endpoints (`/api/v1/servers`, `/api/v1/customers`) for a reseller with them all.
//!
//! Run: `cargo bench -p panel --bench scale` (starts the dev cluster unless DATABASE_URL is
//! set). Sizes: `SCALE_HOSTS`, `SCALE_INSTANCES`; `SCALE_STEPS` (default all of
//! `reconcile,schedule,renew,pages`) picks the measurements.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use panel::billing::renewal::{self, RenewalPolicy};
use panel::clock::FixedClock;
use panel::config::Settings;
use panel::startup::Application;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vessel_core::signing::{HostSecret, Presented, Verifier, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use vessel_core::usage::Usage;
use vessel_core::wire::{InstanceStatus, Problem, ProblemType};
use vessel_core::{Hostname, InstanceId, InstanceKind, InstanceState};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------- the fake hosts

/// One fake host: its verifier (its own secret) and its instances' list, serialised once.
struct FakeHost {
    verifier: Verifier,
    instances: web::Bytes,
    by_id: HashMap<Uuid, web::Bytes>,
}

type Fleet = Arc<OnceLock<HashMap<u32, FakeHost>>>;

fn problem(kind: ProblemType, detail: &str) -> HttpResponse {
    let p = Problem::new(kind, detail);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(p.status).unwrap()).content_type("application/problem+json").json(p)
}

/// Every request of every fake host: `/{n}/v1/…`, signed for the path without the `/{n}`.
async fn fake(req: HttpRequest, body: web::Bytes, fleet: web::Data<Fleet>) -> HttpResponse {
    let full = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Some((n, rest)) = full[1..].split_once('/').and_then(|(n, rest)| Some((n.parse::<u32>().ok()?, format!("/{rest}")))) else {
        return problem(ProblemType::NotFound, "no such host");
    };
    let Some(host) = fleet.get().and_then(|f| f.get(&n)) else { return problem(ProblemType::NotFound, "no such host") };
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = Presented { timestamp: h(HEADER_TIMESTAMP), nonce: h(HEADER_NONCE), signature: h(HEADER_SIGNATURE) };
    if let Err(e) = host.verifier.verify(req.method().as_str(), &rest, presented, &body) {
        return problem(ProblemType::Unauthorized, &e.to_string());
    }
    let json = |b: &web::Bytes| HttpResponse::Ok().content_type("application/json").body(b.clone());
    match (req.method().as_str(), rest.as_str()) {
        ("GET", "/v1/instances") => json(&host.instances),
        ("GET", p) if p.starts_with("/v1/instances/") => {
            match p["/v1/instances/".len()..].parse::<Uuid>().ok().and_then(|id| host.by_id.get(&id)) {
                Some(b) => json(b),
                None => problem(ProblemType::NotFound, "no such instance"),
            }
        }
        // A fake host runs nothing new: the scale model measures the panel's side.
        _ => problem(ProblemType::Unavailable, "a fake host only reports"),
    }
}

/// Builds every fake host's state from the database: what the panel placed there runs.
async fn load_fleet(pool: &sqlx::PgPool) -> HashMap<u32, FakeHost> {
    let hosts: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT api_url, api_secret FROM hosts WHERE name LIKE 'scale-%'").fetch_all(pool).await.unwrap();
    let n_of = |url: &str| url.rsplit('/').next().unwrap().parse::<u32>().unwrap();
    let resources: HashMap<i64, vessel_core::PlanResources> = {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM plans").fetch_all(pool).await.unwrap();
        let mut m = HashMap::new();
        for id in ids {
            if let Some(r) = panel::db::plans::resources(pool, id).await.unwrap() {
                m.insert(id, r);
            }
        }
        m
    };
    let rows: Vec<(String, Uuid, String, i64)> = sqlx::query_as(
        "SELECT h.api_url, i.id, i.hostname, i.plan_id FROM instances i JOIN hosts h ON h.id = i.host_id WHERE h.name LIKE 'scale-%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut lists: HashMap<u32, Vec<InstanceStatus>> = HashMap::new();
    for (url, id, hostname, plan) in rows {
        let r = resources[&plan].clone();
        lists.entry(n_of(&url)).or_default().push(InstanceStatus {
            id: InstanceId(id),
            kind: InstanceKind::Container,
            state: InstanceState::Running,
            should_run: true,
            pending: None,
            usage: Usage {
                cpu_time_ns: 1_000_000,
                memory_bytes: 200 << 20,
                memory_peak_bytes: 300 << 20,
                disk_used_bytes: 2 << 30,
                ..Default::default()
            },
            addresses: Vec::new(),
            hostname: Hostname::parse(&hostname).unwrap(),
            template: "debian-12".into(),
            resources: r,
            rescue: false,
            firewall: Default::default(),
        });
    }
    hosts
        .into_iter()
        .map(|(url, secret)| {
            let n = n_of(&url);
            let list = lists.remove(&n).unwrap_or_default();
            let by_id = list.iter().map(|s| (s.id.0, web::Bytes::from(serde_json::to_vec(s).unwrap()))).collect();
            let host = FakeHost {
                verifier: Verifier::with_capacity(HostSecret::from_bytes(secret).unwrap(), 4096),
                instances: web::Bytes::from(serde_json::to_vec(&list).unwrap()),
                by_id,
            };
            (n, host)
        })
        .collect()
}

// ---------------------------------------------------------------- database load

/// The database's own counters (all backends): what a measured step cost it.
#[derive(Clone, Copy, Default, sqlx::FromRow)]
struct DbStats {
    xact_commit: i64,
    tup_returned: i64,
    tup_fetched: i64,
    tup_inserted: i64,
    tup_updated: i64,
    blks_read: i64,
    blks_hit: i64,
}

async fn db_stats(pool: &sqlx::PgPool) -> DbStats {
    // Counters are flushed by each backend at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sqlx::query("SELECT pg_stat_clear_snapshot()").execute(pool).await.unwrap();
    sqlx::query_as(
        "SELECT xact_commit, tup_returned, tup_fetched, tup_inserted, tup_updated, blks_read, blks_hit
           FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

fn delta(a: DbStats, b: DbStats) -> String {
    format!(
        "{} commits, {} rows read ({} by index), {} inserted, {} updated, {} blocks read from disk, {} from cache",
        b.xact_commit - a.xact_commit,
        b.tup_returned - a.tup_returned,
        b.tup_fetched - a.tup_fetched,
        b.tup_inserted - a.tup_inserted,
        b.tup_updated - a.tup_updated,
        b.blks_read - a.blks_read,
        b.blks_hit - a.blks_hit
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::main]
async fn main() {
    let hosts = env_or("SCALE_HOSTS", 10_000) as i64;
    let instances = env_or("SCALE_INSTANCES", 1_000_000) as i64;
    let steps = std::env::var("SCALE_STEPS").unwrap_or_else(|_| "reconcile,schedule,renew,pages".into());
    let step = |s: &str| steps.split(',').any(|x| x.trim() == s);
    println!("scale model: {hosts} hosts, {instances} instances (and as many subscriptions)");

    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a bench database");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.unwrap();
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();

    // The fake hosts' listener first: the hosts' addresses name its port.
    let fleet: Fleet = Arc::new(OnceLock::new());
    let data = web::Data::new(fleet.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(fake)))
        .workers(1)
        .backlog(4096)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());

    let t = Instant::now();
    let anchor = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    panel::db::seed::subscriptions(&pool, instances, "burst-s", anchor).await.unwrap();
    panel::db::seed::hosts_with_instances(&pool, hosts, &format!("http://127.0.0.1:{port}")).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    let seeded = t.elapsed();
    let t = Instant::now();
    let _ = fleet.set(load_fleet(&pool).await);
    println!(
        "  seeded in {:.1} s (COPY-free, set-based SQL); fake hosts loaded in {:.1} s",
        seeded.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    let settings = Settings::load(None).unwrap();
    let clock: Arc<dyn panel::clock::Clock> = Arc::new(FixedClock::at(chrono::Utc::now()));

    // ------------------------------------------------------------ the reconciler
    if step("reconcile") {
        let ctx = panel::orchestrator::Ctx::new(pool.clone(), clock.clone(), settings.orchestration.clone());
        for pass in 1..=2 {
            let before = db_stats(&pool).await;
            let t = Instant::now();
            panel::orchestrator::reconcile_once(&ctx).await.unwrap();
            let took = t.elapsed();
            let after = db_stats(&pool).await;
            println!(
                "  reconciler pass {pass}: {:.1} s over {hosts} hosts (interval {} s); database: {}",
                took.as_secs_f64(),
                settings.orchestration.reconcile_interval_secs,
                delta(before, after)
            );
        }
        let unreachable: i64 =
            sqlx::query_scalar("SELECT count(*) FROM hosts WHERE reachability <> 'reachable'").fetch_one(&pool).await.unwrap();
        let samples: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_samples").fetch_one(&pool).await.unwrap();
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&pool).await.unwrap();
        println!("    after it: {unreachable} hosts not reachable, {samples} usage samples, {jobs} jobs queued");
        assert_eq!(unreachable, 0, "every fake host answered");
        // Both passes ran at the same (fixed) time: one sample per instance, the second kept out.
        assert_eq!(samples, instances, "every instance reported, once per point in time");
    }

    // ------------------------------------------------------------ the scheduler
    if step("schedule") {
        let decisions = env_or("SCALE_DECISIONS", 200) as i64;
        let todo: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO instances (id, account_id, plan_id, kind, os_template_id, hostname)
             SELECT gen_random_uuid(), (SELECT id FROM accounts LIMIT 1), p.id, p.kind, (SELECT id FROM os_templates), 'new' || g
               FROM generate_series(1, $1) g, plans p WHERE p.code = 'burst-s' AND p.orderable RETURNING id",
        )
        .bind(decisions)
        .fetch_all(&pool)
        .await
        .unwrap();
        let before = db_stats(&pool).await;
        let t = Instant::now();
        for id in &todo {
            let p = panel::scheduler::place(&pool, clock.as_ref(), (*id).into()).await.unwrap();
            assert!(matches!(p, panel::scheduler::Placement::Placed { .. }), "{p:?}");
        }
        let ours = todo.len() as f64 / t.elapsed().as_secs_f64();
        let after = db_stats(&pool).await;
        let host_ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM hosts").fetch_all(&pool).await.unwrap();
        let t = Instant::now();
        for n in 0..todo.len() {
            let mut tx = pool.begin().await.unwrap();
            let _: (i64,) = sqlx::query_as(
                "SELECT (SELECT COALESCE(sum(p.memory_guaranteed_mib), 0)::bigint FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.host_id = h.id)
                   FROM hosts h WHERE h.id = $1 FOR UPDATE",
            )
            .bind(host_ids[(n * 7919) % host_ids.len()])
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let yard = todo.len() as f64 / t.elapsed().as_secs_f64();
        println!("  scheduler: {ours:.1} decisions/s; lock one host + sum its load {yard:.1}/s; ratio {:.3}", ours / yard);
        println!("    database for {decisions} decisions: {}", delta(before, after));
    }

    // ------------------------------------------------------------ the renewal run
    if step("renew") {
        // As of 31 January with 28 days of lead, every subscription's second period is due.
        let at = FixedClock::at("2026-01-31T12:00:00Z".parse().unwrap());
        let before = db_stats(&pool).await;
        let t = Instant::now();
        let report = renewal::run(&pool, &at, RenewalPolicy { lead_days: 28, batch_size: 1000 }).await.unwrap();
        let took = t.elapsed();
        let after = db_stats(&pool).await;
        assert_eq!(report.invoices_issued as i64, instances, "every subscription renewed once");
        println!(
            "  renewal run: {} invoices in {:.1} s ({:.0}/s); database: {}",
            report.invoices_issued,
            took.as_secs_f64(),
            report.invoices_issued as f64 / took.as_secs_f64(),
            delta(before, after)
        );
    }

    // ------------------------------------------------------------ the pages
    if step("pages") {
        // One reseller holds every customer: its API lists walk the whole fleet.
        let reseller: Uuid = sqlx::query_scalar(
            "INSERT INTO accounts (role, email, status) VALUES ('reseller', 'scale@resell.example', 'active') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE accounts SET reseller_id = $1 WHERE role = 'customer'").bind(reseller).execute(&pool).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        let token = panel::api_keys::create(&pool, reseller, "scale", &[panel::api_keys::Scope::Read], None).await.unwrap().token;
        let email = panel::accounts::Email::parse("admin@scale.example").unwrap();
        let password = panel::accounts::Password::parse("admin password 123").unwrap();
        panel::accounts::upsert_admin(&pool, &email, &password).await.unwrap();

        let mut s = settings.clone();
        s.http.port = 0;
        s.database.url = url.clone().into();
        s.orchestration.enabled = false;
        s.smtp.worker = false;
        s.webhooks.worker = false;
        s.api.rate_limit_per_minute = 100_000_000;
        s.api.rate_limit_burst = 100_000_000;
        s.log.filter = "warn".into();
        let app = Application::build(s).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let admin = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let html = admin.get(format!("{base}/login")).send().await.unwrap().text().await.unwrap();
        let r = admin
            .post(format!("{base}/login"))
            .form(&[("email", "admin@scale.example"), ("password", "admin password 123"), ("csrf", &csrf_of(&html))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303);
        let api = reqwest::Client::new();
        let requests = env_or("SCALE_PAGE_REQUESTS", 5) as usize;
        for (what, path, via_api) in [
            ("admin cockpit", "/admin/capacity", false),
            ("admin servers", "/admin/servers", false),
            ("admin hosts", "/admin/hosts", false),
            ("API servers", "/api/v1/servers?limit=25", true),
            ("API customers", "/api/v1/customers?limit=25", true),
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..requests {
                let t = Instant::now();
                let req = if via_api { api.get(format!("{base}{path}")).bearer_auth(&token) } else { admin.get(format!("{base}{path}")) };
                let r = req.timeout(Duration::from_secs(600)).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap();
                times.push(t.elapsed());
                assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]));
                bytes = body.len();
            }
            times.sort();
            println!(
                "  {what:<14} GET {path:<28} p50 {:8.1} ms  max {:8.1} ms  ({} KiB)",
                ms(percentile(&times, 0.5)),
                ms(*times.last().unwrap()),
                bytes / 1024
            );
        }
    }
}

//! Webhooks end to end: a change to a reseller customer's server, made in the database, reaches
//! a real HTTP receiver started by the test, signed so that an independent verifier written in
//! Python (`tests/verify_webhook.py`, standard library only) accepts it and rejects a tampered
//! body or a stale timestamp; a receiver that is down gets the event later; two workers deliver
//! each event once per endpoint.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use panel::config::{Settings, WebhookSettings};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

// ------------------------------------------------------------------ a receiver

#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    answer: u16,
    delay: Duration,
    got: Vec<Received>,
}

/// A small HTTP server on 127.0.0.1 that records every request and answers with the status
/// the test sets.
#[derive(Clone)]
struct Receiver {
    port: u16,
    state: Arc<Mutex<ReceiverState>>,
}

async fn record(req: HttpRequest, body: web::Bytes, st: web::Data<Arc<Mutex<ReceiverState>>>) -> HttpResponse {
    let (answer, delay) = {
        let s = st.lock().unwrap();
        (s.answer, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let headers = req.headers().iter().map(|(k, v)| (k.as_str().to_lowercase(), v.to_str().unwrap_or("").to_string())).collect();
    st.lock().unwrap().got.push(Received { path: req.path().to_string(), headers, body: body.to_vec(), answered: answer });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answer).unwrap()).body(if answer >= 300 { "receiver says no" } else { "" })
}

impl Receiver {
    /// Starts listening on `port` (0: a free one).
    fn start(port: u16, answer: u16) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState { answer, ..Default::default() }));
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(record)))
            .workers(2)
            .bind(("127.0.0.1", port))
            .expect("the receiver binds");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver { port, state }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn answer(&self, status: u16) {
        self.state.lock().unwrap().answer = status;
    }
    fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }
}

/// A port nothing listens on (bound once by the OS's choice, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ a reseller's world

struct World {
    pool: PgPool,
    db_url: String,
    reseller: Uuid,
    customer: Uuid,
}

impl World {
    async fn new() -> World {
        let db_url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a test database");
        let pool = PgPool::connect(&db_url).await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
        let defs = panel::plans::load_dir(&dir).expect("the shipped plans are valid");
        panel::plans::sync::sync(&pool, &defs).await.expect("plans sync");
        sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
        let reseller: Uuid = sqlx::query_scalar(
            "INSERT INTO accounts (role, email, display_name) VALUES ('reseller', 'shop@example.com', 'Shop') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let customer: Uuid =
            sqlx::query_scalar("INSERT INTO accounts (role, email, reseller_id) VALUES ('customer', 'end@example.com', $1) RETURNING id")
                .bind(reseller)
                .fetch_one(&pool)
                .await
                .unwrap();
        World { pool, db_url, reseller, customer }
    }

    /// A server of the reseller's customer (the trigger records `server.created`).
    async fn server(&self, hostname: &str) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO instances (id, account_id, plan_id, kind, os_template_id, hostname)
             SELECT gen_random_uuid(), $1, p.id, p.kind, (SELECT id FROM os_templates LIMIT 1), $2
               FROM plans p WHERE p.orderable ORDER BY p.id LIMIT 1 RETURNING id",
        )
        .bind(self.customer)
        .bind(hostname)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// What the reconciler does when a host reports a new state (`server.updated`).
    async fn observe(&self, server: Uuid, state: &str) {
        sqlx::query("UPDATE instances SET observed_state = $2::observed_state, observed_at = now() WHERE id = $1")
            .bind(server)
            .bind(state)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn endpoint(&self, url: &str) -> panel::webhooks::EndpointRow {
        panel::webhooks::create_endpoint(&self.pool, self.reseller, url, None).await.unwrap()
    }

    /// (status, attempts, last_status, last_error) of the delivery of `event_type` for `server`.
    async fn delivery(&self, endpoint: Uuid, event_type: &str) -> Option<(String, i32, Option<i32>, Option<String>)> {
        sqlx::query_as(
            "SELECT d.status, d.attempts, d.last_status, d.last_error FROM webhook_deliveries d JOIN api_events v ON v.id = d.event_id
             WHERE d.endpoint_id = $1 AND v.type = $2 ORDER BY d.id DESC LIMIT 1",
        )
        .bind(endpoint)
        .bind(event_type)
        .fetch_optional(&self.pool)
        .await
        .unwrap()
    }
}

fn fast(max_attempts: i32) -> WebhookSettings {
    // The receivers listen on 127.0.0.1, which production refuses (see the test below).
    WebhookSettings {
        worker: true,
        poll_ms: 50,
        timeout_secs: 3,
        max_attempts,
        backoff_base_ms: 300,
        backoff_max_secs: 2,
        allow_private_addresses: true,
    }
}

// ------------------------------------------------------------------ the reference verifier

/// Runs the Python verifier; python3 is installed by scripts/ensure-test-deps when missing.
fn python_verify(secret: &str, header: &str, body: &[u8], now: Option<i64>) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_webhook.py");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    let run = || {
        let mut c = std::process::Command::new("python3");
        c.arg(&script).arg(secret).arg(header).arg(&file);
        if let Some(n) = now {
            c.arg(n.to_string());
        }
        c.output()
    };
    let out = match run() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-test-deps");
            let st = std::process::Command::new(&deps).status().expect("run scripts/ensure-test-deps");
            assert!(st.success(), "python3 is missing and scripts/ensure-test-deps could not install it");
            run().expect("python3 runs after ensure-test-deps")
        }
        r => r.expect("python3 runs"),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "the verifier failed to run: {text}");
    (out.status.success(), text)
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_server_updated_is_signed_and_verified_by_a_python_reference() {
    let w = World::new().await;
    let rx = Receiver::start(0, 200);
    let ep = w.endpoint(&rx.url("/hooks/vessel")).await;
    assert!(ep.secret.starts_with("whsec_") && ep.secret.len() >= 32);
    let server = w.server("web1.example.com").await;
    w.observe(server, "running").await;

    // The real panel process delivers it: the worker is started by `Application::build`.
    let mut settings = Settings::load(None).unwrap();
    settings.http.port = 0;
    settings.database.url = w.db_url.clone().into();
    settings.smtp.worker = false;
    settings.orchestration.enabled = false;
    settings.webhooks = fast(12);
    let app = panel::startup::Application::build(settings).await.expect("the panel starts");
    tokio::spawn(app.run_until_stopped());

    let got = eventually("a server.updated delivery", 20, async || {
        rx.got().into_iter().find(|r| r.headers.get("vessel-event-type").map(String::as_str) == Some("server.updated"))
    })
    .await;
    assert_eq!(got.path, "/hooks/vessel");
    assert_eq!(got.headers.get("content-type").map(String::as_str), Some("application/json"));
    let body = got.json();
    assert_eq!(body["type"], "server.updated");
    assert_eq!(got.headers["vessel-event-id"], body["id"].as_str().unwrap());
    assert!(body["created_at"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{body}");
    assert_eq!(body["data"]["id"], server.to_string());
    assert_eq!(body["data"]["customer_id"], w.customer.to_string());
    assert_eq!(body["data"]["observed_state"], "running");
    assert_eq!(body["data"]["previous_observed_state"], "pending");
    let stored: Uuid = sqlx::query_scalar("SELECT id FROM api_events WHERE type = 'server.updated'").fetch_one(&w.pool).await.unwrap();
    assert_eq!(body["id"], stored.to_string());

    // The reference implementation accepts exactly what was sent, with the endpoint's secret…
    let sig = got.headers["vessel-signature"].clone();
    let (ok, out) = python_verify(&ep.secret, &sig, &got.body, None);
    assert!(ok, "the Python verifier refused a genuine delivery: {out} (header {sig})");
    // …and nothing else: a tampered body, another secret, a timestamp out of tolerance.
    let mut tampered = got.body.clone();
    let at = tampered.windows(7).position(|w| w == b"running").unwrap();
    tampered[at..at + 7].copy_from_slice(b"stopped");
    let (ok, out) = python_verify(&ep.secret, &sig, &tampered, None);
    assert!(!ok && out.contains("no v1 signature matches"), "{out}");
    let (ok, _) = python_verify(&panel::webhooks::new_secret(), &sig, &got.body, None);
    assert!(!ok, "another endpoint's secret must not verify");
    let t: i64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60, "t is the send time: {t}");
    let (ok, _) = python_verify(&ep.secret, &sig, &got.body, Some(t + 299));
    assert!(ok, "within the five-minute tolerance");
    let (ok, out) = python_verify(&ep.secret, &sig, &got.body, Some(t + 301));
    assert!(!ok && out.contains("timestamp"), "{out}");
    let (ok, _) = python_verify(&ep.secret, &sig.replace(",v1=", ",v0="), &got.body, None);
    assert!(!ok, "a header without v1 is refused");

    // Recorded as delivered, once.
    let d =
        eventually("the delivery to be recorded", 10, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.0 == "delivered"))
            .await;
    assert_eq!((d.1, d.2, d.3), (1, Some(200), None));
    let created = w.delivery(ep.id, "server.created").await.unwrap();
    assert_eq!(created.0, "delivered", "server.created went out too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_the_event_later() {
    let w = World::new().await;
    let server = w.server("web1.example.com").await;
    let port = closed_port();
    let ep = w.endpoint(&format!("http://127.0.0.1:{port}/hook")).await;
    w.observe(server, "running").await;
    panel::webhooks::spawn_worker(w.pool.clone(), fast(12));

    // Nothing listens: the attempt is recorded with the connection's error, and retried.
    let (status, attempts, last_status, error) =
        eventually("a failed first attempt", 15, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.1 >= 1)).await;
    assert_eq!(status, "pending", "retried, not given up");
    assert_eq!(last_status, None);
    let error = error.expect("the error is kept");
    assert!(error.to_lowercase().contains("connect"), "{error}");
    let (next, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT d.next_attempt_at, d.last_attempt_at FROM webhook_deliveries d JOIN api_events v ON v.id = d.event_id WHERE d.endpoint_id = $1 AND v.type = 'server.updated'")
            .bind(ep.id)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert!(next > last, "the next attempt is later: {last} → {next}");
    let _ = attempts;

    // It comes up answering 500: still not delivered, the status recorded.
    let rx = Receiver::start(port, 500);
    let (status, attempts, _, error) =
        eventually("an attempt answered 500", 15, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.2 == Some(500))).await;
    assert_eq!(status, "pending");
    assert!(attempts >= 2, "{attempts}");
    assert!(error.as_deref().is_some_and(|e| e.starts_with("HTTP 500") && e.contains("receiver says no")), "{error:?}");

    // Then it works: the event arrives, later.
    rx.answer(200);
    let (status, attempts, last_status, error) =
        eventually("the late delivery", 15, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.0 == "delivered")).await;
    assert!(attempts >= 3, "{attempts}");
    assert_eq!((status.as_str(), last_status, error), ("delivered", Some(200), None));
    let updated: Vec<Received> =
        rx.got().into_iter().filter(|r| r.headers.get("vessel-event-type").map(String::as_str) == Some("server.updated")).collect();
    assert!(updated.iter().any(|r| r.answered == 500) && updated.iter().filter(|r| r.answered == 200).count() == 1, "{updated:?}");
    let ids: std::collections::HashSet<&String> = updated.iter().map(|r| &r.headers["vessel-event-id"]).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same event id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_gives_up_after_max_attempts_and_can_be_sent_again() {
    let w = World::new().await;
    let rx = Receiver::start(0, 503);
    let server = w.server("web1.example.com").await;
    let ep = w.endpoint(&rx.url("/hook")).await;
    w.observe(server, "running").await;
    panel::webhooks::spawn_worker(w.pool.clone(), fast(3));
    let (_, attempts, last_status, error) =
        eventually("the delivery to fail", 20, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.0 == "failed")).await;
    assert_eq!((attempts, last_status), (3, Some(503)));
    assert!(error.unwrap().starts_with("HTTP 503"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tries = rx.got().iter().filter(|r| r.headers["vessel-event-type"] == "server.updated").count();
    assert_eq!(tries, 3, "no attempt after giving up");

    let id: i64 = sqlx::query_scalar("SELECT d.id FROM webhook_deliveries d JOIN api_events v ON v.id = d.event_id WHERE d.endpoint_id = $1 AND v.type = 'server.updated'")
        .bind(ep.id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    // Only the owner can send it again.
    let other: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('reseller', 'other@example.com') RETURNING id")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert!(matches!(panel::webhooks::send_again(&w.pool, other, ep.id, id, None).await, Err(panel::webhooks::WebhookError::NotFound)));
    rx.answer(204);
    panel::webhooks::send_again(&w.pool, w.reseller, ep.id, id, None).await.unwrap();
    let d = eventually("the re-sent delivery", 15, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.0 == "delivered")).await;
    assert_eq!((d.1, d.2), (1, Some(204)), "a fresh count of attempts");
    assert!(matches!(
        panel::webhooks::send_again(&w.pool, w.reseller, ep.id, id, None).await,
        Err(panel::webhooks::WebhookError::NotFailed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_deliver_each_event_once_per_endpoint() {
    let w = World::new().await;
    let rx = Receiver::start(0, 200);
    // Slow answers keep each worker's claims in flight while the other claims.
    rx.state.lock().unwrap().delay = Duration::from_millis(30);
    let a = w.endpoint(&rx.url("/a")).await;
    let b = w.endpoint(&rx.url("/b")).await;
    // A disabled endpoint gets nothing.
    let off = w.endpoint(&rx.url("/off")).await;
    panel::webhooks::set_enabled(&w.pool, w.reseller, off.id, false, None).await.unwrap();
    let mut servers = Vec::new();
    for i in 0..6 {
        servers.push(w.server(&format!("vps{i}.example.com")).await);
    }
    panel::webhooks::spawn_worker(w.pool.clone(), fast(12));
    panel::webhooks::spawn_worker(w.pool.clone(), fast(12));
    for (i, s) in servers.iter().enumerate() {
        for state in ["creating", "running", "stopped", "running"] {
            w.observe(*s, state).await;
        }
        if i % 2 == 0 {
            sqlx::query("UPDATE instances SET desired_state = 'stopped' WHERE id = $1").bind(s).execute(&w.pool).await.unwrap();
        }
    }
    let events: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM api_events WHERE account_id = $1").bind(w.reseller).fetch_all(&w.pool).await.unwrap();
    assert_eq!(events.len(), 6 + 6 * 4 + 3);
    eventually("every delivery", 30, async || {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered' AND endpoint_id <> $1")
            .bind(off.id)
            .fetch_one(&w.pool)
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.got();
    for (ep, path) in [(&a, "/a"), (&b, "/b")] {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for r in got.iter().filter(|r| r.path == path) {
            *seen.entry(r.headers["vessel-event-id"].clone()).or_default() += 1;
            let (ok, out) = python_verify(&ep.secret, &r.headers["vessel-signature"], &r.body, None);
            assert!(ok, "{out}");
        }
        assert_eq!(seen.len(), events.len(), "{path}: every event");
        assert!(seen.values().all(|n| *n == 1), "{path}: each event once: {seen:?}");
    }
    assert!(got.iter().all(|r| r.path != "/off"), "the disabled endpoint got nothing");
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM webhook_deliveries WHERE endpoint_id IN ($1, $2)")
        .bind(a.id)
        .bind(b.id)
        .fetch_all(&w.pool)
        .await
        .unwrap();
    assert_eq!(attempts, vec![1]);
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1").bind(off.id).fetch_one(&w.pool).await.unwrap();
    assert_eq!(queued, 0, "events while an endpoint is disabled are not queued for it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_nothing_is_sent_to_private_addresses() {
    let w = World::new().await;
    let rx = Receiver::start(0, 200);
    let server = w.server("web1.example.com").await;
    let literal = w.endpoint(&rx.url("/literal")).await;
    let named = w.endpoint(&format!("http://localhost:{}/named", rx.port)).await;
    w.observe(server, "running").await;
    panel::webhooks::spawn_worker(w.pool.clone(), WebhookSettings { allow_private_addresses: false, ..fast(12) });
    for ep in [&literal, &named] {
        let (status, _, last_status, error) =
            eventually("a refused attempt", 15, async || w.delivery(ep.id, "server.updated").await.filter(|d| d.1 >= 1)).await;
        let error = error.unwrap_or_default();
        assert_eq!((status.as_str(), last_status), ("pending", None));
        assert!(error.contains("is not a public address") && error.contains("127.0.0.1"), "{}: {error}", ep.url);
    }
    assert!(rx.got().is_empty(), "the receiver on 127.0.0.1 got nothing: {:?}", rx.got());
}

//! Kill -9 the panel's HTTP process (`panel serve` without orchestration), the job runner
//! (`panel worker`) or a provisioner at random points of create, suspend and destroy, 30
//! times. Part of the operations go through HTTP as the customer does them (order, pay, stop),
//! and killing the HTTP process lands in the middle of those requests. In the end every
//! instance matches its desired state, the host runs nothing the panel does not know, nothing
//! runs twice, no address is held twice, and every paid order has its one VPS.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vessel_tests::e2e::{wait_for, World};

use vessel_tests::netns::workspace_binary;

/// A `panel worker` process, killed when dropped (also when the test fails).
struct Worker(Child);

impl Worker {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn worker(w: &World) -> Worker {
    Worker(
        Command::new(workspace_binary("panel").unwrap())
            .arg("worker")
            .env("DATABASE_URL", &w.db_url)
            .env("VESSEL__ORCHESTRATION__RECONCILE_INTERVAL_SECS", "1")
            .env("VESSEL__ORCHESTRATION__UNREACHABLE_AFTER_SECS", "3")
            .env("VESSEL__ORCHESTRATION__HOST_TIMEOUT_SECS", "5")
            // A killed runner's jobs come back when their lease runs out.
            .env("VESSEL__ORCHESTRATION__JOB_LEASE_SECS", "3")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("panel worker runs"),
    )
}

/// The session secret of every `panel serve` this test starts: a customer's session cookie
/// (and its CSRF token) stays valid across the kills.
const SESSION_SECRET: &str = "orchestration-crash-test-session-secret-0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// The panel's HTTP half as its own process (no job runners: the worker does that), on a
/// fixed port so the customer's client finds it again after a restart. Killed when dropped.
struct Web {
    child: Option<Child>,
    port: u16,
    db_url: String,
}

impl Web {
    fn start(db_url: &str) -> Web {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut w = Web { child: None, port, db_url: db_url.to_string() };
        w.restart();
        w
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts `panel serve` (again) and waits until it accepts connections.
    fn restart(&mut self) {
        self.kill();
        self.child = Some(
            Command::new(workspace_binary("panel").unwrap())
                .arg("serve")
                .env("DATABASE_URL", &self.db_url)
                .env("VESSEL__HTTP__PORT", self.port.to_string())
                .env("VESSEL__ORCHESTRATION__ENABLED", "false")
                .env("VESSEL__SMTP__WORKER", "false")
                .env("VESSEL__SESSION__SECRET", SESSION_SECRET)
                .env("VESSEL__DATABASE__MIGRATE_ON_START", "false")
                // `panel serve` needs a seller for its invoices.
                .env("VESSEL__BILLING__SELLER__LEGAL_NAME", "Test Seller GmbH")
                .env("VESSEL__BILLING__SELLER__ADDRESS", "Teststrasse 1, Berlin")
                .env("VESSEL__BILLING__SELLER__COUNTRY", "DE")
                .env("VESSEL__BILLING__SELLER__VAT_ID", "DE811907980")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("panel serve runs"),
        );
        let end = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < end, "panel serve did not listen on {} in 30 s", self.port);
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("panel serve exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The customer's browser: a cookie jar, the session's CSRF token, and a count of requests
/// the HTTP process's death cut off.
#[derive(Clone)]
struct Customer {
    http: reqwest::Client,
    base: String,
    csrf: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Customer {
    /// Logs in through the login form.
    async fn login(web: &Web, email: &str) -> Customer {
        // No pooled connections: a request that fails after a kill failed in flight, not on a stale socket.
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = http.get(web.url("/login")).send().await.unwrap().text().await.unwrap();
        let csrf = csrf_of(&page);
        let r = http.post(web.url("/login")).form(&[("email", email), ("password", PASSWORD), ("csrf", &csrf)]).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "log-in refused: {}", r.text().await.unwrap());
        // The token belongs to the session: any form of the logged-in area carries it.
        let page = http.get(web.url("/account")).send().await.unwrap().text().await.unwrap();
        let base = web.url("");
        Customer { http, base, csrf: csrf_of(&page), cut: Default::default() }
    }

    /// Posts a form until the panel answers it (any status below 500): a request the killed
    /// process never answered is sent again once it is back, as a customer reloading would.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut f = form.to_vec();
        f.push(("csrf", &self.csrf));
        let end = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.http.post(format!("{}{path}", self.base)).form(&f).send().await {
                Ok(r) if r.status().as_u16() < 500 => {
                    let status = r.status().as_u16();
                    let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                    return (status, loc);
                }
                // Sent, and the connection died without an answer: the kill landed mid-request.
                Err(e) if !e.is_connect() => {
                    self.cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {} // refused: the process is down; try again
            }
            assert!(std::time::Instant::now() < end, "POST {path} got no answer in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Orders a VPS on the order page and pays every open invoice from credit.
    async fn order_and_pay(&self, pool: &sqlx::PgPool, account: uuid::Uuid, hostname: &str) {
        let (status, loc) = self
            .post(
                "/order/kvm-tiny-shared",
                &[
                    ("cycle", "monthly"),
                    ("os_template", "vessel-test-guest"),
                    ("hostname", hostname),
                    ("coupon", ""),
                    ("root_password", "a root password 1"),
                ],
            )
            .await;
        assert!(status == 303 && loc.starts_with("/orders/"), "order: {status} {loc}");
        // Open invoices, also of an order whose answer a kill cut off.
        let open: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM invoices WHERE account_id = $1 AND status = 'issued'")
            .bind(account)
            .fetch_all(pool)
            .await
            .unwrap();
        for inv in open {
            let (status, loc) = self.post(&format!("/invoices/{inv}/pay"), &[]).await;
            // 409: paid meanwhile (a cut-off request that had committed).
            assert!((status == 303 && loc.contains("done=paid")) || status == 409, "pay: {status} {loc}");
        }
    }

    /// The customer's stop button.
    async fn stop(&self, instance: uuid::Uuid) {
        let (status, loc) = self.post(&format!("/servers/{instance}/action"), &[("action", "stop")]).await;
        // 409: refused in its current state (e.g. suspended by billing), shown as such.
        assert!(status == 303 || status == 409, "stop: {status} {loc}");
    }
}

fn csrf_of(html: &str) -> String {
    let key = "name=\"csrf\" value=\"";
    let at = html.find(key).expect("a form with a CSRF token");
    let rest = &html[at + key.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn matches(desired: &str, observed: &str) -> bool {
    desired == observed || (desired == "terminated" && observed == "destroyed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_web_process_runners_and_hosts_mid_operation_converges_without_doubles() {
    let mut w = World::new(false).await;
    let mut host = w.add_host("h1", 2, 1024).await;
    w.serve(&mut host);
    let mut runner = worker(&w);
    let customer = w.customer("crash@example.com", 1_000_000).await;
    let hash = panel::accounts::hash_password(&panel::accounts::Password::parse(PASSWORD).unwrap());
    sqlx::query("UPDATE accounts SET password_hash = $2 WHERE id = $1").bind(customer).bind(hash).execute(&w.pool).await.unwrap();
    let mut web = Web::start(&w.db_url);
    let browser = Customer::login(&web, "crash@example.com").await;

    let mut seed: u64 = 0x00c0_ffee_1234;
    let mut rand = move |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    let live = async || -> Vec<uuid::Uuid> {
        sqlx::query_scalar("SELECT id FROM instances WHERE desired_state <> 'terminated' ORDER BY created_at")
            .fetch_all(&w.pool)
            .await
            .unwrap()
    };
    let (mut killed_runner, mut killed_host, mut killed_web) = (0, 0, 0);
    for i in 0..30 {
        // The victim of this round: the job runner, the host or the HTTP process.
        let victim = rand(3);
        let now_live = live().await;
        // The operation: create a new VPS, or suspend / destroy one that exists. When the HTTP
        // process is the victim, the customer's requests are in flight as it dies: the order
        // and its payment, or (beside a suspend or destroy) the stop button of another VPS.
        let op = if now_live.is_empty() { 0 } else { i % 3 };
        let mut browsing = None;
        match op {
            0 if victim == 2 => {
                let (b, pool, host) = (browser.clone(), w.pool.clone(), format!("vps{i}.example.com"));
                browsing = Some(tokio::spawn(async move { b.order_and_pay(&pool, customer, &host).await }));
            }
            0 => {
                w.order_paid(customer, "kvm-tiny-shared", &format!("vps{i}.example.com")).await;
            }
            1 => w.want(now_live[rand(now_live.len() as u64) as usize], "suspended").await,
            _ => w.want(now_live[rand(now_live.len() as u64) as usize], "terminated").await,
        }
        if victim == 2 && browsing.is_none() {
            let (b, other) = (browser.clone(), now_live[rand(now_live.len() as u64) as usize]);
            browsing = Some(tokio::spawn(async move { b.stop(other).await }));
        }
        // The HTTP process dies within its requests (a few ms each); the others at any point.
        let delay = if victim == 2 { rand(40) } else { 50 + rand(1200) };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        match victim {
            0 => {
                runner.kill(); // SIGKILL
                runner = worker(&w);
                killed_runner += 1;
            }
            1 => {
                host.ns.kill_all(); // SIGKILL to the daemon; its machines run on and are adopted
                w.serve(&mut host);
                killed_host += 1;
            }
            _ => {
                web.kill(); // SIGKILL
                web.restart();
                killed_web += 1;
            }
        }
        if let Some(b) = browsing {
            b.await.expect("the customer's requests are answered once the panel is back");
        }
    }
    let cut = browser.cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(killed_runner >= 5 && killed_host >= 5 && killed_web >= 5, "runner {killed_runner}, host {killed_host}, web {killed_web}");
    assert!(cut >= 1, "no kill of the HTTP process landed during a request");

    // Everything converges.
    let pool = w.pool.clone();
    let end = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT desired_state::text, observed_state::text, last_error FROM instances").fetch_all(&pool).await.unwrap();
        if rows.iter().all(|(d, o, _)| matches(d, o)) {
            break;
        }
        if std::time::Instant::now() > end {
            let jobs: Vec<JobRow> = sqlx::query_as(
                "SELECT kind, status::text, attempts, last_error, waiting_reason FROM jobs WHERE status IN ('queued', 'running', 'dead')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!("not converged after 180 s:\ninstances (desired, observed, error): {rows:#?}\nopen jobs: {jobs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hc = w.host_client(&host);
    let on_host = hc.list().await.unwrap();
    let known: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM instances WHERE desired_state <> 'terminated'").fetch_all(&w.pool).await.unwrap();
    let mut host_ids: Vec<uuid::Uuid> = on_host.iter().map(|s| s.id.0).collect();
    host_ids.sort();
    let mut want = known.clone();
    want.sort();
    assert_eq!(host_ids, want, "the host runs exactly the live instances the panel knows, each once");
    let doubled: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT address FROM ip_addresses GROUP BY address HAVING count(*) > 1) x")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(doubled, 0);
    let holders: i64 = sqlx::query_scalar("SELECT count(DISTINCT instance_id) FROM ip_addresses WHERE instance_id IS NOT NULL")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(holders, known.len() as i64, "each live instance holds its address, the destroyed ones none");
    let dead: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, last_error FROM jobs WHERE status = 'dead'").fetch_all(&w.pool).await.unwrap();
    assert!(dead.is_empty(), "dead-lettered jobs: {dead:?}");
    // Whatever the kills cut off: every paid order's subscription has exactly one VPS, and
    // no unpaid one has any.
    let wrong: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
        "SELECT s.id, i.status::text, (SELECT count(*) FROM instances x WHERE x.subscription_id = s.id)
           FROM subscriptions s JOIN invoices i ON i.subscription_id = s.id
          WHERE s.account_id = $1",
    )
    .bind(customer)
    .fetch_all(&w.pool)
    .await
    .unwrap()
    .into_iter()
    .filter(|(_, status, n): &(uuid::Uuid, String, i64)| *n != i64::from(status == "paid"))
    .collect();
    assert!(wrong.is_empty(), "subscriptions whose VPS count does not match payment: {wrong:?}");

    // Clean up: everything terminated and destroyed on the host.
    for id in known {
        w.want(id, "terminated").await;
    }
    wait_for("the host to be empty", 120, async || hc.list().await.unwrap().is_empty().then_some(())).await;
    runner.kill();
    web.kill();
    eprintln!(
        "orchestration crash test: killed the runner {killed_runner}, the host {killed_host} and the HTTP process {killed_web} times \
         ({cut} customer requests cut off)"
    );
}

/// A job as the failure report prints it: kind, status, attempts, last error, waiting reason.
type JobRow = (String, String, i32, Option<String>, Option<String>);

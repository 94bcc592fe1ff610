//! The panel in a real headless Chromium, driven over WebDriver (chromedriver): a customer
//! signs up, verifies the address from the mail the SMTP server caught, logs in, orders, pays
//! with credit an admin added, and sees the server pending; an admin creates a plan through
//! the form. Each main page is saved as a screenshot in `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/ensure-test-deps` installs them).

use crate::helpers::spawn_web_app;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vessel_devdb::procs::chromium_pids;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port, killed (by its own pid) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ends the session (Chromium quits), asks chromedriver to shut down, then makes sure.
async fn shut_down(c: Client, driver: Driver, profile: &std::path::Path) {
    c.close().await.ok();
    let _ = reqwest::get(format!("http://127.0.0.1:{}/shutdown", driver.port)).await;
    let mut driver = driver;
    for _ in 0..50 {
        if matches!(driver.child.try_wait(), Ok(Some(_))) && chromium_pids(profile).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in chromium_pids(profile) {
        // SAFETY: kill(2) on a pid of our own Chromium; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    drop(driver);
}

async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium and chromium-driver: run scripts/ensure-test-deps (as root)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let d = Driver { child, port };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("http://127.0.0.1:{port}/status")).send().await.is_ok_and(|r| r.status().is_success()) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not come up on port {port}");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    browser_sized(driver, profile, 1280, 1000).await
}

async fn browser_sized(driver: &Driver, profile: &std::path::Path, width: u32, height: u32) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--window-size={width},{height}"), "--disable-crash-reporter", "--disable-breakpad",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    if width < 500 {
        // Chromium's windows are at least 500 px wide: a phone's viewport is emulated.
        caps["goog:chromeOptions"]["mobileEmulation"] =
            serde_json::json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 3.0, "mobile": true } });
    }
    // chromedriver is on loopback: plain HTTP, no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn fill(c: &Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("field #{id}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn body(c: &Client) -> String {
    // A click may still be navigating: retry until the new page's body can be read.
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css("body")).await {
            if let Ok(t) = e.text().await {
                return t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no page body");
}

/// Waits (up to 10 s) for the page whose text contains `needle`; returns the text.
async fn page_with(c: &Client, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = body(c).await;
        if last.contains(needle) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no page containing {needle:?}; last: {last}");
}

/// Waits (up to 10 s) until the browser is at `want`.
async fn at(c: &Client, want: &str) {
    let mut p = String::new();
    for _ in 0..100 {
        p = c.current_url().await.unwrap().path().to_string();
        if p == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected to be at {want}, at {p}");
}

#[tokio::test]
async fn a_customer_orders_and_pays_and_an_admin_creates_a_plan_in_chromium() {
    let started = std::time::Instant::now();
    let app = spawn_web_app().await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(150), scenario(&app, &c)).await;
    shut_down(c, driver, profile.path()).await;
    assert!(chromium_pids(profile.path()).is_empty(), "Chromium is gone");
    result.expect("the browser scenario finishes within 150 s");
    eprintln!("browser scenario took {:?}; screenshots in {}", started.elapsed(), shots_dir().display());
}

async fn scenario(app: &crate::helpers::WebApp, c: &Client) {
    // The catalogue, grouped by kind with guarantee and burst said plainly.
    c.goto(&app.url("/")).await.unwrap();
    let home = body(c).await;
    assert!(home.contains("Burstable containers") && home.contains("Dedicated KVM machines"), "{home}");
    assert!(home.contains("guaranteed, bursts to"), "{home}");
    shot(c, "01-catalogue").await;

    // Sign up.
    click(c, "header a[href='/signup']").await;
    fill(c, "name", "Ana Lima").await;
    fill(c, "email", "ana@example.com").await;
    fill(c, "password", "correct horse battery").await;
    shot(c, "02-signup").await;
    click(c, "main form button[type=submit]").await;
    page_with(c, "Check your email").await;

    // Verify from the captured mail.
    let mail = app.smtp.wait_for("ana@example.com", "Confirm your email").await;
    c.goto(&mail.link("/verify/").expect("a verification link")).await.unwrap();
    shot(c, "03-verify").await;
    click(c, "#confirm").await;
    page_with(c, "Your email address is confirmed").await;
    at(c, "/login").await;

    // Log in.
    fill(c, "email", "ana@example.com").await;
    fill(c, "password", "correct horse battery").await;
    shot(c, "04-login").await;
    click(c, "main form button[type=submit]").await;
    at(c, "/servers").await;

    // An admin adds credit (the manual payment service the admin page uses).
    let ana: uuid::Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'ana@example.com'").fetch_one(&app.pool).await.unwrap();
    let admin = panel::accounts::upsert_admin(
        &app.pool,
        &panel::accounts::Email::parse("root@example.com").unwrap(),
        &panel::accounts::Password::parse("admin password 123").unwrap(),
    )
    .await
    .unwrap();
    let eur = panel::money::Currency::parse("EUR").unwrap();
    panel::billing::payments::record_manual_payment(
        &app.pool,
        &panel::clock::SystemClock,
        admin,
        ana,
        panel::money::Money::new(5000, eur),
        "bank-transfer-1",
        None,
        None,
    )
    .await
    .unwrap();

    // Order.
    c.goto(&app.url("/")).await.unwrap();
    click(c, "#plan-burst-s a.button").await;
    fill(c, "hostname", "web1.example.com").await;
    shot(c, "05-order-form").await;
    click(c, "#place-order").await;
    // No key and no password chosen: a generated root password is shown, this once.
    page_with(c, "shown only now").await;
    let shown = c.find(Locator::Id("root-password")).await.unwrap().text().await.unwrap();
    assert_eq!(shown.len(), 20, "{shown}");
    shot(c, "05b-root-password").await;
    click(c, "#continue").await;
    // The order's state in plain words, not the schema's `pending_payment`.
    page_with(c, "Awaiting payment").await;
    assert!(!body(c).await.contains("pending_payment"), "no raw state on the customer's page");
    assert!(!c.source().await.unwrap().contains(&shown), "the password is not shown again");
    shot(c, "06-order-state").await;

    // Pay with credit.
    click(c, "#order-invoice").await;
    page_with(c, "Pay with credit").await;
    shot(c, "07-invoice").await;
    click(c, "#pay-with-credit").await;
    page_with(c, "Paid. Thank you!").await;
    assert_eq!(c.find(Locator::Id("invoice-status")).await.unwrap().text().await.unwrap(), "paid");
    shot(c, "08-invoice-paid").await;

    // The server is there, pending.
    c.goto(&app.url("/servers")).await.unwrap();
    let servers = body(c).await;
    assert!(servers.contains("web1.example.com") && servers.contains("Being set up"), "{servers}");
    shot(c, "09-servers").await;
    click(c, "main table a").await;
    page_with(c, "Reinstall erases").await;
    assert_eq!(c.find(Locator::Id("server-state")).await.unwrap().text().await.unwrap(), "Being set up");
    shot(c, "10-server").await;
    c.goto(&app.url("/account")).await.unwrap();
    shot(c, "11-account").await;

    // Log out; the admin logs in and creates a plan.
    click(c, "header form button").await;
    page_with(c, "You are logged out").await;
    fill(c, "email", "root@example.com").await;
    fill(c, "password", "admin password 123").await;
    click(c, "main form button[type=submit]").await;
    at(c, "/admin").await;
    page_with(c, "Plans on sale").await;
    shot(c, "12-admin").await;
    c.goto(&app.url("/admin/plans/new")).await.unwrap();
    for (id, v) in [
        ("code", "burst-xl"),
        ("name", "Burst XL"),
        ("vcpus", "6"),
        ("memory_guaranteed_mib", "4096"),
        ("memory_burst_mib", "8192"),
        ("swap_mib", "2048"),
        ("disk_gib", "160"),
        ("cpu_ratio", "3"),
        ("memory_ratio", "1.5"),
        ("disk_ratio", "2"),
        ("bandwidth_gib", "8000"),
        ("eur_monthly", "2400"),
        ("eur_annual", "25920"),
    ] {
        fill(c, id, v).await;
    }
    shot(c, "13-admin-plan-form").await;
    click(c, "main form.stack button[type=submit]").await;
    at(c, "/admin/plans").await;
    page_with(c, "Burst XL").await;
    shot(c, "14-admin-plans").await;
    c.goto(&app.url("/admin/audit")).await.unwrap();
    page_with(c, "plan.create").await;
    shot(c, "15-admin-audit").await;
    c.goto(&app.url("/")).await.unwrap();
    page_with(c, "Burst XL").await;
}

/// On a 390 px wide phone, no customer page scrolls sideways: wide tables and the usage
/// charts scroll inside their own box (document.documentElement.scrollWidth <= 390).
#[tokio::test]
async fn customer_pages_fit_a_390_px_phone() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let ana = app.customer("phone@example.com").await;
    crate::web_customer::add_credit(&app, &admin, "phone@example.com", "100", "bank-phone").await;
    let b = crate::web_customer::order_and_pay(&app, &ana, "a-rather-long-hostname-for-a-phone.example.com").await;
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser_sized(&driver, profile.path(), 390, 844).await;
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        c.goto(&app.url("/login")).await.unwrap();
        fill(&c, "email", "phone@example.com").await;
        fill(&c, "password", "correct horse battery").await;
        click(&c, "main form button[type=submit]").await;
        at(&c, "/servers").await;
        let width = c.execute("return window.innerWidth", vec![]).await.unwrap();
        assert_eq!(width.as_i64(), Some(390), "the viewport is a phone's");
        let pages = [
            "/".to_string(),
            "/servers".to_string(),
            format!("/servers/{}", b.server),
            format!("/servers/{}/plan", b.server),
            format!("/servers/{}/cancel", b.server),
            "/orders".to_string(),
            format!("/orders/{}", b.order),
            "/invoices".to_string(),
            format!("/invoices/{}", b.invoice),
            "/account".to_string(),
            "/account/ssh-keys".to_string(),
        ];
        for (i, path) in pages.iter().enumerate() {
            c.goto(&app.url(path)).await.unwrap();
            body(&c).await;
            let w = c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
            shot(&c, &format!("phone-{i:02}")).await;
            assert!(w.as_i64().is_some_and(|w| w <= 390), "{path} is {w} px wide on a 390 px phone");
        }
    })
    .await;
    shut_down(c, driver, profile.path()).await;
    assert!(chromium_pids(profile.path()).is_empty(), "Chromium is gone");
    result.expect("the phone pages load within 120 s");
}

/// In Chromium, the admin suspends a customer with a reason: the customer is mailed the reason,
/// both servers end suspended (one was running, one stopped), the customer's own page says so;
/// reactivation returns each server to the state it had.
#[tokio::test]
async fn an_admin_suspends_a_customer_with_a_reason_and_reactivates_them_in_chromium() {
    let app = spawn_web_app().await;
    let (ana, running) = crate::web_lifecycle::customer_with_server(&app, "held@example.com", "run.example.com").await;
    let stopped = crate::web_customer::order_and_pay(&app, &ana, "stop.example.com").await.server;
    sqlx::query("UPDATE instances SET desired_state = 'stopped' WHERE id = $1").bind(stopped).execute(&app.pool).await.unwrap();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'held@example.com'").fetch_one(&app.pool).await.unwrap();
    let states = || async {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT desired_state::text FROM instances WHERE id = ANY($1) ORDER BY hostname")
            .bind(vec![running, stopped])
            .fetch_all(&app.pool)
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>()
    };
    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(120), async {
        c.goto(&app.url("/login")).await.unwrap();
        fill(&c, "email", "root@example.com").await;
        fill(&c, "password", "admin password 123").await;
        click(&c, "main form button[type=submit]").await;
        at(&c, "/admin").await;
        c.goto(&app.url(&format!("/admin/customers/{id}"))).await.unwrap();
        page_with(&c, "held@example.com").await;
        // The reason is required: the browser itself refuses an empty one.
        click(&c, "#suspend-customer").await;
        assert_eq!(c.current_url().await.unwrap().path(), format!("/admin/customers/{id}"));
        assert_eq!(states().await, vec!["running", "stopped"], "nothing happened without a reason");
        fill(&c, "reason", "Outgoing spam from run.example.com").await;
        shot(&c, "admin-suspend-customer").await;
        click(&c, "#suspend-customer").await;
        page_with(&c, "Lift suspension").await;
        assert_eq!(c.find(Locator::Id("status")).await.unwrap().text().await.unwrap(), "suspended");
        let page = body(&c).await;
        assert_eq!(page.matches("(suspended)").count(), 2, "both servers shown suspended: {page}");
        assert_eq!(states().await, vec!["suspended", "suspended"]);
        let mail = app.smtp.wait_for("held@example.com", "account is suspended").await;
        assert!(mail.text().contains("Outgoing spam from run.example.com"), "the reason is mailed: {}", mail.text());
        shot(&c, "admin-customer-suspended").await;

        click(&c, "#reactivate-customer").await;
        page_with(&c, "Suspend account").await;
        assert_eq!(c.find(Locator::Id("status")).await.unwrap().text().await.unwrap(), "active");
        let page = body(&c).await;
        assert!(page.contains("(running)") && page.contains("(stopped)") && !page.contains("(suspended)"), "{page}");
        assert_eq!(states().await, vec!["running", "stopped"], "each back to the state it had");
        app.smtp.wait_for("held@example.com", "active again").await;
        shot(&c, "admin-customer-reactivated").await;
    })
    .await;
    shut_down(c, driver, profile.path()).await;
    assert!(chromium_pids(profile.path()).is_empty(), "Chromium is gone");
    result.expect("the suspension scenario finishes within 120 s");
}

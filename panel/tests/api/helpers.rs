use crate::smtp::SmtpSink;
use panel::config::Settings;
use panel::startup::Application;
use sqlx::PgPool;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// A fresh, migrated database of this test's own.
pub async fn fresh_pool() -> PgPool {
    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a test database");
    PgPool::connect(&url).await.expect("connect to the test database")
}

/// The panel, served on a free port over a fresh database.
pub async fn spawn_app() -> TestApp {
    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a test database");
    let mut settings = Settings::load(None).expect("settings");
    settings.http.port = 0;
    settings.database.url = url.clone().into();
    settings.smtp.worker = false;
    settings.billing.pdf_archive_interval_secs = 0;
    let app = Application::build(settings).await.expect("the panel starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new() }
}

/// The panel with its mail going to a real SMTP server started for this test, the plan
/// catalogue of `plans/` loaded and one OS template, and a browser-like client (cookies, no
/// automatic redirects so each step's answer can be checked).
pub struct WebApp {
    pub address: String,
    pub pool: PgPool,
    pub smtp: SmtpSink,
}

pub async fn spawn_web_app() -> WebApp {
    spawn_web_app_with(|_| {}).await
}

/// As [`spawn_web_app`], with settings adjusted first.
pub async fn spawn_web_app_with(adjust: impl FnOnce(&mut Settings)) -> WebApp {
    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.expect("a test database");
    let pool = PgPool::connect(&url).await.expect("connect");
    let smtp = SmtpSink::start().await;
    let mut settings = Settings::load(None).expect("settings");
    settings.http.port = 0;
    settings.database.url = url.clone().into();
    settings.http.base_url = String::new();
    settings.smtp.port = smtp.port;
    settings.smtp.poll_ms = 100;
    settings.session.secret = "test-secret-test-secret-test-secret".to_string().into();
    // The pages are under test here, not the orchestration: with it off, what a page shows
    // (a server pending, the rows a form wrote) is the page's doing alone.
    settings.orchestration.enabled = false;
    // Chromium renders PDFs only where a test asks for them.
    settings.billing.pdf_archive_interval_secs = 0;
    adjust(&mut settings);
    let app = Application::build(settings.clone()).await.expect("the panel starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
    let defs = panel::plans::load_dir(&dir).expect("the shipped plans are valid");
    panel::plans::sync::sync(&pool, &defs).await.expect("plans sync");
    sqlx::query("INSERT INTO os_templates (name, display_name, version) VALUES ('debian-12', 'Debian 12', '12')")
        .execute(&pool)
        .await
        .unwrap();
    WebApp { address, pool, smtp }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The CSRF token of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl WebApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, c: &reqwest::Client, path: &str) -> (u16, String) {
        let r = c.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form; returns (status, Location header, body).
    pub async fn post(&self, c: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let r = c.post(self.url(path)).form(form).send().await.unwrap();
        let loc = r.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (r.status().as_u16(), loc, r.text().await.unwrap())
    }

    /// Loads `page` for its CSRF token, then posts `form` (plus the token) to `action`.
    pub async fn submit(&self, c: &reqwest::Client, page: &str, action: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let (status, html) = self.get(c, page).await;
        assert_eq!(status, 200, "{page}: {html}");
        let csrf = csrf_of(&html);
        let mut f: Vec<(&str, &str)> = form.to_vec();
        f.push(("csrf", &csrf));
        self.post(c, action, &f).await
    }

    /// Signs up, verifies through the mailed link, and logs in: a ready customer client.
    pub async fn customer(&self, email: &str) -> reqwest::Client {
        let c = client();
        let (s, _, body) =
            self.submit(&c, "/signup", "/signup", &[("email", email), ("password", "correct horse battery"), ("name", "Ana")]).await;
        assert_eq!(s, 200, "{body}");
        let mail = self.smtp.wait_for(email, "Confirm your email").await;
        let link = mail.link("/verify/").expect("a verification link");
        let path = link.strip_prefix(&self.address).expect("the link points at the panel").to_string();
        let (s, loc, body) = self.submit(&c, &path, &path, &[]).await;
        assert_eq!((s, loc.as_str()), (303, "/login?done=verified"), "{body}");
        let (s, loc, body) = self.submit(&c, "/login", "/login", &[("email", email), ("password", "correct horse battery")]).await;
        assert_eq!((s, loc.as_str()), (303, "/servers"), "{body}");
        c
    }

    /// An admin account, logged in.
    pub async fn admin(&self, email: &str) -> reqwest::Client {
        let e = panel::accounts::Email::parse(email).unwrap();
        let p = panel::accounts::Password::parse("admin password 123").unwrap();
        panel::accounts::upsert_admin(&self.pool, &e, &p).await.unwrap();
        let c = client();
        let (s, loc, body) = self.submit(&c, "/login", "/login", &[("email", email), ("password", "admin password 123")]).await;
        assert_eq!((s, loc.as_str()), (303, "/admin"), "{body}");
        c
    }
}

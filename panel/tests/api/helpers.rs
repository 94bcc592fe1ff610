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
    let app = Application::build(settings).await.expect("the panel starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new() }
}

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_is_ok_when_the_database_answers() {
    let app = spawn_app().await;
    let r = app.client.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn healthz_is_503_when_the_database_is_gone() {
    // A panel pointed at a port where no database listens still starts (lazy pool) and says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = panel::config::Settings::load(None).unwrap();
    settings.http.port = 0;
    settings.database.migrate_on_start = false;
    settings.database.url = format!("postgres://postgres@127.0.0.1:{port}/nothing").into();
    let app = panel::startup::Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let r = reqwest::get(format!("{address}/healthz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
}

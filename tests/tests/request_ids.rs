//! One request followed from the panel's edge to the host's log: a reseller's API call gets a
//! request id made by the panel (the caller's own `X-Request-Id` is not trusted by default),
//! answered in `X-Request-Id`; the job it queued keeps that id; the job's calls carry it to
//! the host, whose JSON log lines show it on the requests it handled.

use serde_json::{json, Value};
use vessel_tests::e2e::{wait_for, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_id_follows_an_api_call_through_its_job_to_the_hosts_log() {
    let mut w = World::new(true).await;
    let mut host = w.add_host("rid", 2, 1024).await;
    // JSON log lines on this host (a top-level key, so before any table).
    let config = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(&host.config, format!("log_format = \"json\"\n{config}")).unwrap();
    w.serve(&mut host);

    let reseller: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status) VALUES ('reseller', 'rid@resell.example', 'Rid', 'active') RETURNING id",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let token = panel::api_keys::create(&w.pool, reseller, "rid", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/v1{p}", w.panel_url);
    let customer: Value = http
        .post(api("/customers"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "rid-cust")
        .json(&json!({"email": "rid@customer.example", "name": "Rid"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .post(api("/servers"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "rid-srv")
        .header("X-Request-Id", "planted-by-the-caller")
        .json(
            &json!({"customer_id": customer["id"], "plan": "kvm-tiny", "os_template": "vessel-test-guest", "hostname": "rid.example.com"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let rid = resp.headers().get("x-request-id").expect("the answer names its request id").to_str().unwrap().to_string();
    assert_ne!(rid, "planted-by-the-caller", "a caller's id is not trusted unless [log] trust_request_id says so");
    assert!(vessel_core::wire::valid_request_id(&rid), "{rid}");
    let server: Value = resp.json().await.unwrap();
    let id: uuid::Uuid = server["id"].as_str().unwrap().parse().unwrap();

    // The job the call queued carries the id.
    let stored: Option<String> = sqlx::query_scalar("SELECT request_id FROM jobs WHERE instance_id = $1 AND kind = 'instance.create'")
        .bind(id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(rid.as_str()));

    // The host logged the job's calls under it, as JSON lines.
    let log = host.dir.join("daemon.log");
    let line = wait_for("the host to log the request id", 90, async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["span"]["request_id"] == rid.as_str() && v["fields"]["path"].as_str().is_some_and(|p| p.contains(&id.to_string())))
    })
    .await;
    assert_eq!(line["fields"]["message"], "handled", "{line}");
    let running = async || {
        let r: Value = http.get(api(&format!("/servers/{id}"))).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (r["observed_state"] == "running").then_some(())
    };
    wait_for("the server to run", 90, running).await;

    let resp = http.post(api(&format!("/servers/{id}/terminate"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let hc = w.host_client(&host);
    wait_for("the host to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
}

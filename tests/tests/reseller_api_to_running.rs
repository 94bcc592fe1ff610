//! A reseller drives a VPS through its whole life with the REST API alone, on a real host in a
//! network namespace: create (with an Idempotency-Key, retried), watch it run, stop, start,
//! reinstall, terminate; the address is released and the host runs nothing afterwards.

use serde_json::{json, Value};
use vessel_tests::e2e::{wait_for, World};

async fn call(http: &reqwest::Client, url: String, token: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value) {
    let mut r = if body.is_some() { http.post(&url) } else { http.get(&url) };
    if let Some(b) = body {
        r = r.json(&b);
    }
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    let resp = r.bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reseller_runs_a_vps_from_create_to_terminate_through_the_api() {
    let mut w = World::new(true).await;
    let mut host = w.add_host("r1", 2, 1024).await;
    w.serve(&mut host);
    let reseller: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status) VALUES ('reseller', 'api@resell.example', 'Resell', 'active') RETURNING id",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let token = panel::api_keys::create(&w.pool, reseller, "e2e", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/api/v1{p}", w.panel_url);

    let (s, customer) =
        call(&http, api("/customers"), &token, Some(json!({"email": "end@customer.example", "name": "End Customer"})), Some("cust-1"))
            .await;
    assert_eq!(s, 201, "{customer}");
    let order =
        json!({"customer_id": customer["id"], "plan": "kvm-tiny", "os_template": "vessel-test-guest", "hostname": "api.example.com"});
    let (s, server) = call(&http, api("/servers"), &token, Some(order.clone()), Some("srv-1")).await;
    assert_eq!(s, 201, "{server}");
    // The reseller's retry (say its first request timed out) is the same server.
    let (s, again) = call(&http, api("/servers"), &token, Some(order), Some("srv-1")).await;
    assert_eq!((s, &again["id"]), (201, &server["id"]));
    let id = server["id"].as_str().unwrap().to_string();
    let get = async |want: &str| {
        let url = api(&format!("/servers/{id}"));
        wait_for(&format!("the server to be {want}"), 90, async || {
            let r: Value = http.get(&url).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
            (r["observed_state"] == want).then_some(r)
        })
        .await
    };
    let running = get("running").await;
    let address = running["addresses"][0].as_str().expect("an address from the pool").to_string();
    let on_host = w.host_client(&host).list().await.unwrap();
    assert_eq!(on_host.len(), 1, "the host runs it");
    assert_eq!(on_host[0].id.0.to_string(), id);

    for (action, body, want) in
        [("stop", None, "stopped"), ("start", None, "running"), ("reinstall", Some(json!({"os_template": "vessel-test-guest"})), "running")]
    {
        let r = http.post(api(&format!("/servers/{id}/{action}"))).bearer_auth(&token);
        let r = match body {
            Some(b) => r.json(&b),
            None => r,
        };
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{action}: {}", resp.text().await.unwrap());
        get(want).await;
    }

    let resp = http.post(api(&format!("/servers/{id}/terminate"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    get("destroyed").await;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM ip_addresses WHERE host(address) = $1 AND instance_id IS NOT NULL")
        .bind(&address)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(held, 0, "the address is free again");
    assert!(w.host_client(&host).list().await.unwrap().is_empty(), "the host runs nothing");
    // It was billed to the reseller, never to its customer.
    let payers: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT account_id FROM invoices").fetch_all(&w.pool).await.unwrap();
    assert_eq!(payers, vec![reseller]);
}

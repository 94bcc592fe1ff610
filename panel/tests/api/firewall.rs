//! Issue 20, item 1: a server's inbound firewall, kept by its customer (pages, with CSRF) and
//! its reseller (API, problem+json), scoped to the tenant: another customer or reseller gets
//! 404 and changes nothing; bad input says what to fix and changes nothing; a change queues the
//! job that carries it to the host.

use crate::helpers::{csrf_of, spawn_web_app, WebApp};
use panel::api_keys::{self, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn reseller_token(app: &WebApp, email: &str) -> String {
    let account: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', $1, 'R', 'active', now()) RETURNING id",
    )
    .bind(email)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    api_keys::create(&app.pool, account, "test", &[Scope::Read, Scope::Write], None).await.unwrap().token
}

async fn call(app: &WebApp, method: reqwest::Method, token: &str, path: &str, body: Option<Value>) -> (StatusCode, String, Value) {
    let mut r = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, resp.json().await.unwrap_or(Value::Null))
}

async fn stored(app: &WebApp, id: &str) -> Option<Value> {
    sqlx::query_scalar("SELECT firewall FROM instance_firewalls WHERE instance_id = $1::uuid")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

async fn firewall_jobs(app: &WebApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'instance.firewall' AND instance_id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reseller_sets_its_servers_firewall_bad_rules_are_refused_and_another_reseller_gets_404() {
    let app = spawn_web_app().await;
    let a = reseller_token(&app, "a@resell.example").await;
    let b = reseller_token(&app, "b@resell.example").await;
    let post = reqwest::Method::POST;
    let (s, _, c) = call(&app, post.clone(), &a, "/api/v1/customers", Some(json!({"email": "c@example.com", "name": "C"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, _, v) = call(
        &app,
        post,
        &a,
        "/api/v1/servers",
        Some(json!({"customer_id": c["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": "fw.example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/servers/{id}/firewall");

    // Never set: the open default.
    let (s, _, v) = call(&app, reqwest::Method::GET, &a, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["default_policy"].clone(), v["rules"].clone()), (json!("accept"), json!([])));

    // Bad input: a backwards range, a prefix with host bits, ports on ICMP, an unknown field:
    // problem+json naming what is wrong, nothing stored, nothing queued.
    for (bad, says) in [
        (json!({"default_policy": "drop", "rules": [{"action": "accept", "protocol": "tcp", "ports": "90-80"}]}), "starts after it ends"),
        (json!({"default_policy": "drop", "rules": [{"action": "accept", "protocol": "tcp", "source": "10.0.0.1/8"}]}), "10.0.0.0/8"),
        (json!({"default_policy": "drop", "rules": [{"action": "accept", "protocol": "icmp", "ports": "1"}]}), "ICMP has no ports"),
        (json!({"default_policy": "drop", "rules": [{"action": "accept", "protocol": "sctp"}]}), "sctp"),
        (json!({"default_policy": "maybe"}), "maybe"),
    ] {
        let (s, ct, v) = call(&app, reqwest::Method::PUT, &a, &path, Some(bad.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(v["type"], "https://vessel.dev/problems/validation-failed", "{v}");
        assert!(v["detail"].as_str().unwrap().contains(says), "{bad}: {v}");
    }
    assert_eq!(stored(&app, &id).await, None);
    assert_eq!(firewall_jobs(&app, &id).await, 0);

    // A good one: stored in order, returned with what the host adds, and the job queued.
    let good = json!({"default_policy": "drop", "rules": [
        {"action": "accept", "protocol": "tcp", "ports": 22, "source": "203.0.113.0/24"},
        {"action": "accept", "protocol": "tcp", "ports": "8000-8100"},
        {"action": "accept", "protocol": "icmp", "source": "2001:db8::/32"}
    ]});
    let (s, _, v) = call(&app, reqwest::Method::PUT, &a, &path, Some(good)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rules"][0], json!({"action": "accept", "protocol": "tcp", "ports": "22", "source": "203.0.113.0/24"}));
    assert!(!v["implicit_rules"].as_array().unwrap().is_empty());
    let kept = stored(&app, &id).await.expect("stored");
    assert_eq!(kept["rules"][1]["ports"], "8000-8100");
    assert_eq!(firewall_jobs(&app, &id).await, 1);
    let (_, _, v) = call(&app, reqwest::Method::GET, &a, &path, None).await;
    assert_eq!(v["default_policy"], "drop");
    assert_eq!(v["rules"].as_array().unwrap().len(), 3);

    // Another reseller: 404 for reading and for changing, and nothing changes.
    let (s, ct, v) = call(&app, reqwest::Method::GET, &b, &path, None).await;
    assert_eq!((s, ct.as_str()), (StatusCode::NOT_FOUND, "application/problem+json"), "{v}");
    let (s, _, v) = call(&app, reqwest::Method::PUT, &b, &path, Some(json!({"default_policy": "accept", "rules": []}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(stored(&app, &id).await, Some(kept));
    assert_eq!(firewall_jobs(&app, &id).await, 1);
}

/// A customer with a paid server (its instance made by the payment).
async fn customer_with_server(app: &WebApp, email: &str, hostname: &str) -> (reqwest::Client, Uuid) {
    let client = app.customer(email).await;
    let account: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1").bind(email).fetch_one(&app.pool).await.unwrap();
    let clock = panel::clock::SystemClock;
    let req = panel::orders::OrderRequest {
        plan_code: "burst-s".into(),
        cycle: panel::plans::BillingCycle::Monthly,
        os_template: "debian-12".into(),
        hostname: hostname.into(),
        coupon: None,
    };
    let placed = panel::orders::place_order(&app.pool, &clock, account, req).await.unwrap();
    let admin: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'root-' || $1) RETURNING id")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let total: i64 =
        sqlx::query_scalar("SELECT total_minor FROM invoices WHERE id = $1").bind(placed.invoice_id).fetch_one(&app.pool).await.unwrap();
    panel::billing::payments::record_manual_payment(
        &app.pool,
        &clock,
        admin,
        account,
        panel::money::Money::new(total, panel::money::Currency::parse("EUR").unwrap()),
        &format!("ref {email}"),
        Some(placed.invoice_id),
        None,
    )
    .await
    .unwrap();
    let id = sqlx::query_scalar("SELECT id FROM instances WHERE account_id = $1").bind(account).fetch_one(&app.pool).await.unwrap();
    (client, id)
}

#[tokio::test]
async fn a_customer_keeps_the_firewall_on_its_page_and_another_customer_gets_404() {
    let app = spawn_web_app().await;
    let (ana, id) = customer_with_server(&app, "ana@example.com", "ana.example.com").await;
    let (bob, _) = customer_with_server(&app, "bob@example.com", "bob.example.com").await;
    let page = format!("/servers/{id}/firewall");

    let (s, html) = app.get(&ana, &format!("/servers/{id}")).await;
    assert_eq!(s, 200);
    assert!(html.contains(&page), "the server page links its firewall");
    // A mistake: the page again (422) naming the line, the text kept, nothing stored.
    let (s, _, body) = app.submit(&ana, &page, &page, &[("rules", "accept tcp 22\naccept tcp 9000-80"), ("default_policy", "drop")]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("line 2: the port range 9000-80 starts after it ends"), "{body}");
    assert!(body.contains("accept tcp 9000-80"), "the text is kept to correct: {body}");
    assert_eq!(stored(&app, &id.to_string()).await, None);
    // Without the CSRF token: refused.
    let (s, _, _) = app.post(&ana, &page, &[("rules", "drop tcp"), ("default_policy", "drop")]).await;
    assert_ne!(s, 303);
    assert_eq!(stored(&app, &id.to_string()).await, None);

    let (s, loc, body) = app
        .submit(
            &ana,
            &page,
            &page,
            &[("rules", "# web\naccept tcp 80-443\naccept tcp 22 from 198.51.100.0/24\n"), ("default_policy", "drop")],
        )
        .await;
    assert_eq!((s, loc.as_str()), (303, format!("{page}?saved=1").as_str()), "{body}");
    let (_, html) = app.get(&ana, &loc).await;
    assert!(html.contains("accept tcp 80-443\naccept tcp 22 from 198.51.100.0/24"), "{html}");
    assert!(html.contains("firewall-saved"));
    let kept = stored(&app, &id.to_string()).await.expect("stored");
    assert_eq!(firewall_jobs(&app, &id.to_string()).await, 1);

    // Bob: 404 to look, 404 to change (with a valid token of his own session), nothing changes.
    let (s, _) = app.get(&bob, &page).await;
    assert_eq!(s, 404);
    let (_, own) = app.get(&bob, "/account/ssh-keys").await;
    let csrf = csrf_of(&own);
    let (s, _, _) = app.post(&bob, &page, &[("csrf", &csrf), ("rules", ""), ("default_policy", "accept")]).await;
    assert_eq!(s, 404);
    assert_eq!(stored(&app, &id.to_string()).await, Some(kept));
    assert_eq!(firewall_jobs(&app, &id.to_string()).await, 1);
}

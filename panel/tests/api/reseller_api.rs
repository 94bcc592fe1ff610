//! The reseller API's contract, walked endpoint by endpoint against a live panel and a real
//! PostgreSQL: authentication and scopes, tenant isolation (404, never 403), pagination,
//! quotas, idempotent retries (100 concurrent POSTs with one key make one server), validation
//! errors naming the field, actions, wholesale billing, rate limits, and the OpenAPI document.

use crate::helpers::{spawn_web_app, spawn_web_app_with, WebApp};
use panel::api_keys::{self, Scope};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

struct Api {
    app: WebApp,
    http: Client,
}

struct Who {
    account: Uuid,
    token: String,
}

async fn reseller(pool: &PgPool, email: &str, scopes: &[Scope]) -> Who {
    let account: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', $1, 'R', 'active', now()) RETURNING id",
    )
    .bind(email)
    .fetch_one(pool)
    .await
    .unwrap();
    let token = api_keys::create(pool, account, "test", scopes, None).await.unwrap().token;
    Who { account, token }
}

async fn key(pool: &PgPool, account: Uuid, scopes: &[Scope]) -> String {
    api_keys::create(pool, account, "another", scopes, None).await.unwrap().token
}

async fn admin(pool: &PgPool) -> Who {
    let e = panel::accounts::Email::parse("root@example.com").unwrap();
    let p = panel::accounts::Password::parse("admin password 123").unwrap();
    panel::accounts::upsert_admin(pool, &e, &p).await.unwrap();
    let account: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'root@example.com'").fetch_one(pool).await.unwrap();
    Who { account, token: key(pool, account, &[Scope::Read, Scope::Write]).await }
}

const RW: &[Scope] = &[Scope::Read, Scope::Write];

impl Api {
    async fn new() -> Api {
        Api { app: spawn_web_app().await, http: Client::new() }
    }

    async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        idem: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut r = self.http.request(method, self.app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(k) = idem {
            r = r.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/problem+json"),
                "{path}: every error is problem+json: {v}"
            );
            assert_eq!(v["status"], status.as_u16(), "{v}");
        }
        (status, headers, v)
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Some(token), Method::GET, path, None, None).await;
        (s, v)
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Some(token), Method::POST, path, Some(body), None).await;
        (s, v)
    }

    async fn customer(&self, token: &str, email: &str) -> Uuid {
        let (s, v) = self.post(token, "/api/v1/customers", json!({ "email": email, "name": "Cus Tomer", "country": "de" })).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["country"], "DE");
        v["id"].as_str().unwrap().parse().unwrap()
    }

    async fn server(&self, token: &str, customer: Uuid, host: &str) -> Value {
        let (s, v) = self
            .post(
                token,
                "/api/v1/servers",
                json!({ "customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": host }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.app.pool).await.unwrap()
    }
}

fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default()
}

/// Every operation of the API: (method, path, body).
fn every_endpoint(server: Uuid, customer: Uuid, hook: Uuid, invoice: Uuid) -> Vec<(Method, String, Option<Value>, Scope)> {
    let s = |p: &str| format!("/api/v1/servers/{server}{p}");
    vec![
        (Method::GET, "/api/v1/plans".into(), None, Scope::Read),
        (Method::GET, "/api/v1/plans/burst-s".into(), None, Scope::Read),
        (Method::GET, "/api/v1/os-templates".into(), None, Scope::Read),
        (Method::GET, "/api/v1/customers".into(), None, Scope::Read),
        (Method::POST, "/api/v1/customers".into(), Some(json!({"email": "x@example.com", "name": "X"})), Scope::Write),
        (Method::GET, format!("/api/v1/customers/{customer}"), None, Scope::Read),
        (Method::PATCH, format!("/api/v1/customers/{customer}"), Some(json!({"name": "Y"})), Scope::Write),
        (Method::DELETE, format!("/api/v1/customers/{customer}"), None, Scope::Write),
        (Method::GET, "/api/v1/servers".into(), None, Scope::Read),
        (
            Method::POST,
            "/api/v1/servers".into(),
            Some(json!({"customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": "a.example.com"})),
            Scope::Write,
        ),
        (Method::GET, s(""), None, Scope::Read),
        (Method::GET, s("/usage"), None, Scope::Read),
        (Method::POST, s("/start"), None, Scope::Write),
        (Method::POST, s("/stop"), None, Scope::Write),
        (Method::POST, s("/restart"), None, Scope::Write),
        (Method::POST, s("/suspend"), None, Scope::Write),
        (Method::POST, s("/unsuspend"), None, Scope::Write),
        (Method::POST, s("/terminate"), None, Scope::Write),
        (Method::POST, s("/reinstall"), Some(json!({})), Scope::Write),
        (Method::POST, s("/reset-password"), Some(json!({})), Scope::Write),
        (Method::POST, s("/console"), None, Scope::Write),
        (Method::POST, s("/rescue"), None, Scope::Write),
        (Method::POST, s("/leave-rescue"), None, Scope::Write),
        (Method::POST, s("/resize"), Some(json!({"plan": "burst-m"})), Scope::Write),
        (Method::GET, s("/firewall"), None, Scope::Read),
        (
            Method::PUT,
            s("/firewall"),
            Some(json!({"default_policy": "drop", "rules": [{"action": "accept", "protocol": "tcp", "ports": "22"}]})),
            Scope::Write,
        ),
        (Method::GET, "/api/v1/quota".into(), None, Scope::Read),
        (Method::GET, format!("/api/v1/invoices/{invoice}/pdf"), None, Scope::Read),
        (Method::GET, "/api/v1/webhooks".into(), None, Scope::Read),
        (Method::POST, "/api/v1/webhooks".into(), Some(json!({"url": "https://hooks.example.com/b"})), Scope::Write),
        (Method::GET, format!("/api/v1/webhooks/{hook}"), None, Scope::Read),
        (Method::DELETE, format!("/api/v1/webhooks/{hook}"), None, Scope::Write),
        (Method::GET, format!("/api/v1/webhooks/{hook}/deliveries"), None, Scope::Read),
    ]
}

#[tokio::test]
async fn every_endpoint_refuses_bad_keys_and_missing_scopes_and_hides_other_tenants() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let b = reseller(pool, "b@resell.example", RW).await;
    let customer = api.customer(&a.token, "c1@example.com").await;
    let server: Uuid = api.server(&a.token, customer, "web1.example.com").await["id"].as_str().unwrap().parse().unwrap();
    let read_only = key(pool, a.account, &[Scope::Read]).await;
    let write_only = key(pool, a.account, &[Scope::Write]).await;
    let revoked = key(pool, a.account, RW).await;
    let revoked_id: Uuid =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE prefix = $1").bind(&revoked[..12]).fetch_one(pool).await.unwrap();
    api_keys::revoke(pool, a.account, revoked_id, None).await.unwrap();
    let forged = format!("{}_{}", &a.token[..12], "x".repeat(32));
    let (s, hook) = api.post(&a.token, "/api/v1/webhooks", json!({"url": "https://hooks.example.com/vessel"})).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    let hook: Uuid = hook["id"].as_str().unwrap().parse().unwrap();
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices").fetch_one(pool).await.unwrap();
    let endpoints = every_endpoint(server, customer, hook, invoice);
    assert_eq!(endpoints.len(), api.app_paths_count().await, "the walk covers every documented operation");
    for (method, path, body, scope) in &endpoints {
        for (token, why) in
            [(None, "no key"), (Some("garbage"), "garbage"), (Some(forged.as_str()), "forged secret"), (Some(revoked.as_str()), "revoked")]
        {
            let (s, h, v) = api.call(token, method.clone(), path, body.clone(), None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} with {why}: {v}");
            assert_eq!(kind(&v), "unauthorized");
            assert!(h.contains_key("www-authenticate"));
        }
        let wrong = if *scope == Scope::Read { &write_only } else { &read_only };
        let (s, _, v) = api.call(Some(wrong), method.clone(), path, body.clone(), None).await;
        assert_eq!((s, kind(&v)), (StatusCode::FORBIDDEN, "insufficient-scope"), "{method} {path}: {v}");
        // Another reseller: whatever names A's customer or server is not found. (Its own
        // collections answer normally.)
        if [server, customer, hook, invoice].iter().any(|id| path.contains(&id.to_string())) {
            let (s, _, v) = api.call(Some(&b.token), method.clone(), path, body.clone(), None).await;
            assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"), "{method} {path} as another reseller: {v}");
        }
    }
    // B cannot order for A's customer, and sees none of A's things in its lists.
    let (s, v) = api
        .post(
            &b.token,
            "/api/v1/servers",
            json!({"customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": "x.example.com"}),
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("customer_id")), "{v}");
    assert_eq!(api.get(&b.token, "/api/v1/servers").await.1["data"], json!([]));
    assert_eq!(api.get(&b.token, "/api/v1/customers").await.1["data"], json!([]));
    // Nothing B tried changed A's server.
    let (_, v) = api.get(&a.token, &format!("/api/v1/servers/{server}")).await;
    assert_eq!((v["desired_state"].as_str(), v["plan"].as_str()), (Some("running"), Some("burst-s")), "{v}");
    // An admin key sees both resellers' things.
    let root = admin(pool).await;
    let (s, v) = api.get(&root.token, &format!("/api/v1/servers/{server}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Last use is recorded.
    let used: i64 = api.count("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL").await;
    assert!(used >= 2, "keys that were used show it");
}

impl Api {
    /// Operations in the served OpenAPI document.
    async fn app_paths_count(&self) -> usize {
        let doc: Value = self.http.get(self.app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
        doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum()
    }
}

#[tokio::test]
async fn lists_page_with_cursors_and_filters() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(api.customer(&a.token, &format!("c{i}@example.com")).await);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/customers?limit=3".to_string();
    let mut pages = 0;
    loop {
        let (s, v) = api.get(&a.token, &path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        pages += 1;
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().parse::<Uuid>().unwrap()));
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/customers?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    made.reverse();
    assert_eq!(seen, made, "newest first, each exactly once");
    let (_, v) = api.get(&a.token, "/api/v1/customers?email=C3@EXAMPLE.COM").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    for (bad, field) in [
        ("/api/v1/customers?cursor=zzz", "cursor"),
        ("/api/v1/customers?limit=0", "limit"),
        ("/api/v1/customers?limit=101", "limit"),
        ("/api/v1/servers?state=flying", "state"),
    ] {
        let (s, v) = api.get(&a.token, bad).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{bad}: {v}");
    }
    let (s, v) = api.get(&a.token, "/api/v1/customers?limit=many").await;
    assert_eq!((s, kind(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed"), "{v}");

    // Servers: filters by customer and state.
    let (c1, c2) = (made[0], made[1]);
    let s1 = api.server(&a.token, c1, "one.example.com").await;
    api.server(&a.token, c2, "two.example.com").await;
    let id = s1["id"].as_str().unwrap();
    let (s, _) = api.post(&a.token, &format!("/api/v1/servers/{id}/stop"), json!(null)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, v) = api.get(&a.token, &format!("/api/v1/servers?customer_id={c1}")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = api.get(&a.token, "/api/v1/servers?state=stopped").await;
    assert_eq!(v["data"][0]["id"].as_str(), Some(id), "{v}");
    let (_, v) = api.get(&a.token, "/api/v1/servers?hostname=two.example.com&limit=1").await;
    assert_eq!((v["data"].as_array().unwrap().len(), v["next_cursor"].is_null()), (1, true), "{v}");
}

#[tokio::test]
async fn quotas_refuse_with_the_quota_named_and_change_nothing() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    sqlx::query(
        "INSERT INTO reseller_terms (reseller_id, max_servers, max_vcpus, max_memory_mib, max_disk_gib) VALUES ($1, 2, 3, 100000, 1000)",
    )
    .bind(a.account)
    .execute(pool)
    .await
    .unwrap();
    let c = api.customer(&a.token, "c@example.com").await;
    api.server(&a.token, c, "one.example.com").await;
    // burst-m has 2 vCPUs: 1 + 2 = 3 fits; then the server count is the limit.
    let (s, v) = api
        .post(
            &a.token,
            "/api/v1/servers",
            json!({"customer_id": c, "plan": "burst-m", "os_template": "debian-12", "hostname": "two.example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, q) = api.get(&a.token, "/api/v1/quota").await;
    assert_eq!(
        (q["servers"]["used"].as_i64(), q["vcpus"]["used"].as_i64(), q["servers"]["limit"].as_i64()),
        (Some(2), Some(3), Some(2)),
        "{q}"
    );
    let before = api.count("SELECT count(*) FROM instances").await;
    let (s, v) = api
        .post(
            &a.token,
            "/api/v1/servers",
            json!({"customer_id": c, "plan": "burst-s", "os_template": "debian-12", "hostname": "three.example.com"}),
        )
        .await;
    assert_eq!((s, kind(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "quota-exceeded"), "{v}");
    assert_eq!(
        (v["quota"].as_str(), v["limit"].as_i64(), v["used"].as_i64(), v["requested"].as_i64()),
        (Some("servers"), Some(2), Some(2), Some(1)),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("servers"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM instances").await, before, "a refused request makes nothing");
    assert_eq!(api.count("SELECT count(*) FROM orders").await, before, "nor an order");
    // Resizing past the vCPU quota is refused the same way; terminating frees room.
    let first = api.get(&a.token, "/api/v1/servers?plan=burst-s").await.1["data"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{first}/resize"), json!({"plan": "burst-m"})).await;
    assert_eq!(
        (s, v["quota"].as_str(), v["limit"].as_i64(), v["used"].as_i64(), v["requested"].as_i64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("vcpus"), Some(3), Some(3), Some(1)),
        "{v}"
    );
    let (s, _) = api.post(&a.token, &format!("/api/v1/servers/{first}/terminate"), json!(null)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = api
        .post(
            &a.token,
            "/api/v1/servers",
            json!({"customer_id": c, "plan": "burst-s", "os_template": "debian-12", "hostname": "three.example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_other_bodies_and_make_one_server_under_a_race() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let body = json!({"customer_id": c, "plan": "burst-s", "os_template": "debian-12", "hostname": "web.example.com"});
    let (s1, h1, v1) = api.call(Some(&a.token), Method::POST, "/api/v1/servers", Some(body.clone()), Some("order-1")).await;
    let (s2, h2, v2) = api.call(Some(&a.token), Method::POST, "/api/v1/servers", Some(body.clone()), Some("order-1")).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    // The first answer alone carries the generated root password (issue 13); the rest is the same.
    let mut v1 = v1;
    assert!(v1.as_object_mut().unwrap().remove("root_password").is_some(), "{v1}");
    assert!(v2.get("root_password").is_none(), "a replay never shows the password: {v2}");
    assert_eq!(v1, v2, "the retry returns the first response");
    assert!(!h1.contains_key("idempotent-replayed") && h2.get("idempotent-replayed").is_some());
    assert_eq!(api.count("SELECT count(*) FROM instances").await, 1);
    let mut other = body.clone();
    other["hostname"] = json!("other.example.com");
    let (s, _, v) = api.call(Some(&a.token), Method::POST, "/api/v1/servers", Some(other), Some("order-1")).await;
    assert_eq!((s, kind(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"), "{v}");
    let (s, _, v) = api.call(Some(&a.token), Method::POST, "/api/v1/servers", Some(body.clone()), Some("")).await;
    assert_eq!((s, kind(&v)), (StatusCode::BAD_REQUEST, "bad-idempotency-key"), "{v}");
    // Actions replay too: the second stop with the same key is not a second job.
    let id = v1["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, _, _) = api.call(Some(&a.token), Method::POST, &format!("/api/v1/servers/{id}/stop"), None, Some("stop-1")).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    assert_eq!(api.count("SELECT count(*) FROM jobs WHERE kind = 'instance.action'").await, 1);

    // 100 concurrent requests with one new key: one server, one invoice, 100 identical answers.
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    let mut racing = body.clone();
    racing["hostname"] = json!("race.example.com");
    for _ in 0..100 {
        let (api, token, racing) = (api.clone(), a.token.clone(), racing.clone());
        tasks.push(tokio::spawn(async move {
            let (s, _, v) = api.call(Some(&token), Method::POST, "/api/v1/servers", Some(racing), Some("race-key")).await;
            (s, v["id"].as_str().map(str::to_string))
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, id) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED);
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 1, "every racer got the same server");
    assert_eq!(api.count("SELECT count(*) FROM instances WHERE hostname = 'race.example.com'").await, 1);
    assert_eq!(api.count("SELECT count(*) FROM orders WHERE hostname = 'race.example.com'").await, 1);
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let ok = json!({"customer_id": c, "plan": "burst-s", "os_template": "debian-12", "hostname": "web.example.com"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let mut missing = ok.clone();
    missing.as_object_mut().unwrap().remove("os_template");
    let cases = vec![
        (with("hostname", json!("-bad-")), "hostname"),
        (with("plan", json!("no-such-plan")), "plan"),
        (with("os_template", json!("plan9")), "os_template"),
        (with("customer_id", json!(Uuid::new_v4())), "customer_id"),
        (with("customer_id", json!("not-a-uuid")), "customer_id"),
        (with("cycle", json!("weekly")), "cycle"),
        (with("surprise", json!(1)), "surprise"),
        (missing, "os_template"),
    ];
    for (body, field) in cases {
        let (s, v) = api.post(&a.token, "/api/v1/servers", body.clone()).await;
        assert_eq!((s, kind(&v), v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", Some(field)), "{body}: {v}");
    }
    let r = api.http.post(api.app.url("/api/v1/servers")).bearer_auth(&a.token).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(kind(&v), "malformed-request");
    for (body, field) in [
        (json!({"email": "nope", "name": "X"}), "email"),
        (json!({"email": "x@example.com", "name": " "}), "name"),
        (json!({"email": "x@example.com", "name": "X", "country": "Germany"}), "country"),
    ] {
        let (s, v) = api.post(&a.token, "/api/v1/customers", body).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{v}");
    }
    let (s, v) = api.post(&a.token, "/api/v1/customers", json!({"email": "C@example.com", "name": "Again"})).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("email")), "a taken email: {v}");
    assert_eq!(api.count("SELECT count(*) FROM instances").await, 0);
    assert_eq!(api.count("SELECT count(*) FROM accounts WHERE role = 'customer'").await, 1);
    let (s, v) = api.get(&a.token, "/api/v1/servers/not-a-uuid").await;
    assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"));
    let (s, v) = api.get(&a.token, "/api/v1/nothing-here").await;
    assert_eq!((s, kind(&v)), (StatusCode::NOT_FOUND, "not-found"));
}

#[tokio::test]
async fn actions_follow_the_lifecycle_and_refuse_what_the_state_forbids() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let id = api.server(&a.token, c, "web.example.com").await["id"].as_str().unwrap().to_string();
    let act = |what: &'static str, body: Value| {
        let (api, token, id) = (&api, a.token.clone(), id.clone());
        async move { api.post(&token, &format!("/api/v1/servers/{id}/{what}"), body).await }
    };
    let (s, v) = act("stop", json!(null)).await;
    assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some("stopped")), "{v}");
    let (s, v) = act("restart", json!(null)).await;
    assert_eq!((s, kind(&v)), (StatusCode::CONFLICT, "conflict"), "restarting a stopped server: {v}");
    let (s, v) = act("start", json!(null)).await;
    assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some("running")));
    let (s, v) = act("suspend", json!(null)).await;
    assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some("suspended")), "{v}");
    let (s, _) = act("start", json!(null)).await;
    assert_eq!(s, StatusCode::CONFLICT, "a suspended server does not start");
    let (s, v) = act("unsuspend", json!(null)).await;
    assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some("running")), "{v}");
    let (s, v) = act("reinstall", json!({"os_template": "plan9"})).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("os_template")), "{v}");
    let (s, _) = act("reinstall", json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, v) = act("resize", json!({"plan": "kvm-s2"})).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plan")), "a container cannot become a KVM machine: {v}");
    let (s, v) = act("resize", json!({"plan": "burst-m"})).await;
    assert_eq!((s, v["plan"].as_str(), v["vcpus"].as_i64()), (StatusCode::ACCEPTED, Some("burst-m"), Some(2)), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM jobs WHERE kind = 'instance.resize'").await, 1);
    // A customer with a live server is not deleted.
    let (s, _, v) = api.call(Some(&a.token), Method::DELETE, &format!("/api/v1/customers/{c}"), None, None).await;
    assert_eq!((s, kind(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    let (s, v) = act("terminate", json!(null)).await;
    assert_eq!(
        (s, v["desired_state"].as_str(), v["billing_status"].as_str()),
        (StatusCode::ACCEPTED, Some("terminated"), Some("terminated")),
        "{v}"
    );
    let (s, _) = act("start", json!(null)).await;
    assert_eq!(s, StatusCode::CONFLICT, "a terminated server stays terminated");
    let (s, _, _) = api.call(Some(&a.token), Method::DELETE, &format!("/api/v1/customers/{c}"), None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get(&a.token, &format!("/api/v1/customers/{c}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a deleted customer is gone");
    // Its email can be used again by the same reseller.
    api.customer(&a.token, "c@example.com").await;
    // PATCH changes only what it names.
    let (s, _, v) = api.call(Some(&a.token), Method::PATCH, &format!("/api/v1/customers/{c}"), Some(json!({"name": "X"})), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn servers_are_billed_to_the_reseller_at_wholesale_prices_each_period() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    sqlx::query("INSERT INTO reseller_terms (reseller_id, discount_bp) VALUES ($1, 2500)").bind(a.account).execute(pool).await.unwrap();
    let (_, plan) = api.get(&a.token, "/api/v1/plans/burst-s").await;
    let eur = plan["prices"].as_array().unwrap().iter().find(|p| p["currency"] == "EUR" && p["cycle"] == "monthly").unwrap().clone();
    let (retail, wholesale) = (eur["retail_minor"].as_i64().unwrap(), eur["wholesale_minor"].as_i64().unwrap());
    assert_eq!(wholesale, retail * 7500 / 10_000, "{eur}");
    let c = api.customer(&a.token, "c@example.com").await;
    let server = api.server(&a.token, c, "web.example.com").await;
    assert_eq!((server["billing_status"].as_str(), server["customer_id"].as_str()), (Some("active"), Some(c.to_string().as_str())));
    let invoices: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT account_id, subtotal_minor FROM invoices WHERE kind = 'invoice'").fetch_all(pool).await.unwrap();
    assert_eq!(invoices, vec![(a.account, wholesale)], "the first period is invoiced to the reseller at its price");
    // The renewal run invoices the next period the same way.
    let clock = panel::clock::FixedClock::at(chrono::Utc::now() + chrono::Duration::days(40));
    panel::billing::renewal::run(pool, &clock, panel::billing::renewal::RenewalPolicy::default()).await.unwrap();
    let invoices: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT account_id, subtotal_minor FROM invoices WHERE kind = 'invoice' ORDER BY created_at")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(invoices.len() >= 2, "{invoices:?}");
    assert!(invoices.iter().all(|&(acc, amount)| acc == a.account && amount == wholesale), "{invoices:?}");
    // The customer never gets an invoice.
    assert_eq!(api.count(&format!("SELECT count(*) FROM invoices WHERE account_id = '{c}'")).await, 0);
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let app = spawn_web_app_with(|s| {
        s.api.rate_limit_per_minute = 1;
        s.api.rate_limit_burst = 5;
    })
    .await;
    let api = Api { app, http: Client::new() };
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let b = reseller(&api.app.pool, "b@resell.example", RW).await;
    for _ in 0..5 {
        assert_eq!(api.get(&a.token, "/api/v1/plans").await.0, StatusCode::OK);
    }
    let (s, h, v) = api.call(Some(&a.token), Method::GET, "/api/v1/plans", None, None).await;
    assert_eq!((s, kind(&v)), (StatusCode::TOO_MANY_REQUESTS, "rate-limited"), "{v}");
    let wait: u64 = h.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(api.get(&b.token, "/api/v1/plans").await.0, StatusCode::OK, "limits are per key");
}

#[tokio::test]
async fn the_openapi_document_and_reference_page_are_served_locally() {
    let api = Api::new().await;
    let doc: Value = api.http.get(api.app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/v1/servers", "/api/v1/servers/{id}/resize", "/api/v1/customers/{id}", "/api/v1/quota", "/api/v1/plans"] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
    let post = &doc["paths"]["/api/v1/servers"]["post"];
    assert!(post["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "Idempotency-Key"));
    assert!(post["responses"]["429"]["headers"]["Retry-After"].is_object());
    let page = api.http.get(api.app.url("/api/v1/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/api/v1/servers/{id}/resize") && html.contains("quota-exceeded") && !html.contains("https://cdn"),
        "the page documents the API itself"
    );
    assert!(!html.contains("<script src=\"http"), "no remote scripts");
    // Each operation shows its curl line and examples (api/examples.rs).
    assert_eq!(html.matches("<pre class=\"curl\">").count(), paths.values().map(|p| p.as_object().unwrap().len()).sum::<usize>(), "{html}");
    assert!(
        html.contains("curl -sS -X POST &quot;$VESSEL_URL/api/v1/servers&quot;")
            || html.contains("curl -sS -X POST &#34;$VESSEL_URL/api/v1/servers&#34;"),
        "{html}"
    );
    assert!(
        html.contains("<pre class=\"request\">") && html.contains("<pre class=\"response\">") && html.contains("web1.customer.example")
    );
}

#[tokio::test]
async fn admin_keys_act_for_any_reseller_and_keys_are_per_account() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let b = reseller(pool, "b@resell.example", RW).await;
    let root = admin(pool).await;
    // An admin makes a customer for reseller A and a server for it: A pays, at its price.
    let (s, c) = api.post(&root.token, "/api/v1/customers", json!({"email": "c@example.com", "name": "C", "reseller_id": a.account})).await;
    assert_eq!((s, c["reseller_id"].as_str()), (StatusCode::CREATED, Some(a.account.to_string().as_str())), "{c}");
    let c_id: Uuid = c["id"].as_str().unwrap().parse().unwrap();
    let server = api.server(&root.token, c_id, "by-admin.example.com").await;
    let (s, _) = api.get(&a.token, &format!("/api/v1/servers/{}", server["id"].as_str().unwrap())).await;
    assert_eq!(s, StatusCode::OK, "the reseller sees what the admin made for its customer");
    let payer: Uuid = sqlx::query_scalar("SELECT account_id FROM invoices").fetch_one(pool).await.unwrap();
    assert_eq!(payer, a.account);
    // A reseller key cannot make customers for another reseller.
    let (s, v) = api.post(&b.token, "/api/v1/customers", json!({"email": "d@example.com", "name": "D", "reseller_id": a.account})).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("reseller_id")), "{v}");
    // The admin reads any reseller's quota, and must say whose.
    let (s, q) = api.get(&root.token, &format!("/api/v1/quota?reseller_id={}", a.account)).await;
    assert_eq!((s, q["servers"]["used"].as_i64()), (StatusCode::OK, Some(1)), "{q}");
    let (s, _) = api.get(&root.token, "/api/v1/quota").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // One Idempotency-Key in two accounts is two requests.
    let (s1, _, v1) = api
        .call(Some(&a.token), Method::POST, "/api/v1/customers", Some(json!({"email": "k@example.com", "name": "K"})), Some("same"))
        .await;
    let (s2, _, v2) = api
        .call(Some(&b.token), Method::POST, "/api/v1/customers", Some(json!({"email": "k@example.com", "name": "K"})), Some("same"))
        .await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_ne!(v1["id"], v2["id"], "the same email is fine under two resellers, and the key did not replay across accounts");
}

#[tokio::test]
async fn a_panel_session_is_not_an_api_credential() {
    let api = Api::new().await;
    let admin_session = api.app.admin("boss@example.com").await;
    let r = admin_session.get(api.app.url("/api/v1/servers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "cookies do not authenticate the API (so no CSRF can ride on them)");
}

#[tokio::test]
async fn paying_an_overdue_invoice_does_not_resume_what_the_reseller_suspended() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let id = api.server(&a.token, c, "web.example.com").await["id"].as_str().unwrap().to_string();
    let (s, _) = api.post(&a.token, &format!("/api/v1/servers/{id}/suspend"), json!(null)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (sub, invoice): (Uuid, Uuid) =
        sqlx::query_as("SELECT subscription_id, id FROM invoices WHERE kind = 'invoice'").fetch_one(pool).await.unwrap();
    let now = chrono::Utc::now();
    // Billing suspends the (already suspended) server for the overdue invoice, then the payment lifts it.
    let mut tx = pool.begin().await.unwrap();
    panel::subscriptions::suspend(&mut tx, sub.into(), a.account.into(), invoice.into(), now).await.unwrap();
    panel::subscriptions::unsuspend(&mut tx, sub.into(), a.account.into(), now).await.unwrap();
    tx.commit().await.unwrap();
    let (_, v) = api.get(&a.token, &format!("/api/v1/servers/{id}")).await;
    assert_eq!(
        (v["desired_state"].as_str(), v["billing_status"].as_str()),
        (Some("suspended"), Some("active")),
        "the reseller's suspension holds: {v}"
    );
    let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{id}/unsuspend"), json!(null)).await;
    assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some("running")), "{v}");
}

#[tokio::test]
async fn webhook_endpoints_through_the_api_log_the_server_events() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let (s, v) = api.post(&a.token, "/api/v1/webhooks", json!({"url": "ftp://nope"})).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")), "{v}");
    let (s, hook) = api.post(&a.token, "/api/v1/webhooks", json!({"url": "https://hooks.example.com/vessel"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let hook = hook["id"].as_str().unwrap().to_string();
    let c = api.customer(&a.token, "c@example.com").await;
    let server = api.server(&a.token, c, "web.example.com").await;
    let id = server["id"].as_str().unwrap();
    api.post(&a.token, &format!("/api/v1/servers/{id}/stop"), json!(null)).await;
    let (s, log) = api.get(&a.token, &format!("/api/v1/webhooks/{hook}/deliveries")).await;
    assert_eq!(s, StatusCode::OK);
    let types: Vec<&str> = log["data"].as_array().unwrap().iter().map(|d| d["event_type"].as_str().unwrap()).collect();
    for t in ["server.created", "server.updated", "invoice.issued"] {
        assert!(types.contains(&t), "{t} is queued for the endpoint: {types:?}");
    }
    let (s, list) = api.get(&a.token, "/api/v1/webhooks").await;
    assert_eq!((s, list["data"].as_array().unwrap().len()), (StatusCode::OK, 1));
    assert!(list["data"][0].get("secret").is_none(), "the secret is only in the creation answer");
    let (s, _, _) = api.call(Some(&a.token), Method::DELETE, &format!("/api/v1/webhooks/{hook}"), None, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&a.token, &format!("/api/v1/webhooks/{hook}")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_input_is_a_clear_4xx_never_a_500() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let id = api.server(&a.token, c, "web.example.com").await["id"].as_str().unwrap().to_string();
    // NUL characters: PostgreSQL cannot store them; the field is named.
    let cases = vec![
        (Method::POST, "/api/v1/customers".to_string(), json!({"email": "n@example.com", "name": "a\u{0}b"}), "name"),
        (Method::PATCH, format!("/api/v1/customers/{c}"), json!({"name": "x\u{0}"}), "name"),
        (
            Method::POST,
            "/api/v1/servers".to_string(),
            json!({"customer_id": c, "plan": "burst\u{0}", "os_template": "debian-12", "hostname": "h.example.com"}),
            "plan",
        ),
        (Method::POST, format!("/api/v1/servers/{id}/reinstall"), json!({"os_template": "\u{0}"}), "os_template"),
        (Method::POST, format!("/api/v1/servers/{id}/resize"), json!({"plan": "\u{0}"}), "plan"),
    ];
    for (method, path, body, field) in cases {
        let (s, _, v) = api.call(Some(&a.token), method.clone(), &path, Some(body), None).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{method} {path}: {v}");
    }
    for path in ["/api/v1/servers?hostname=%00", "/api/v1/servers?plan=a%00", "/api/v1/customers?email=%00"] {
        let (s, v) = api.get(&a.token, path).await;
        assert_eq!((s, kind(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed"), "{path}: {v}");
    }
    // A cursor from before PostgreSQL's calendar.
    use base64::Engine;
    let ancient = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("-3200000000000000000:{}", Uuid::nil()));
    for list in ["servers", "customers"] {
        let (s, v) = api.get(&a.token, &format!("/api/v1/{list}?cursor={ancient}")).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor")), "{v}");
    }
    // A body over the limit is a problem document too.
    let big = json!({"email": "big@example.com", "name": "x".repeat(70 * 1024)});
    let (s, _, v) = api.call(Some(&a.token), Method::POST, "/api/v1/customers", Some(big), None).await;
    assert_eq!((s, kind(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM accounts WHERE role = 'customer'").await, 1, "nothing was made");
}

#[tokio::test]
async fn suspensions_return_servers_and_customers_to_where_they_were() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let id = api.server(&a.token, c, "web.example.com").await["id"].as_str().unwrap().to_string();
    for (action, want) in [("stop", "stopped"), ("suspend", "suspended"), ("unsuspend", "stopped")] {
        let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{id}/{action}"), json!(null)).await;
        assert_eq!((s, v["desired_state"].as_str()), (StatusCode::ACCEPTED, Some(want)), "{action}: {v}");
    }
    // The provider suspends the customer: the reseller cannot lift that, only its own.
    sqlx::query("UPDATE accounts SET status = 'suspended' WHERE id = $1").bind(c).execute(pool).await.unwrap();
    let (s, _, v) =
        api.call(Some(&a.token), Method::PATCH, &format!("/api/v1/customers/{c}"), Some(json!({"status": "active"})), None).await;
    assert_eq!((s, kind(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    sqlx::query("UPDATE accounts SET status = 'active' WHERE id = $1").bind(c).execute(pool).await.unwrap();
    for to in ["suspended", "active"] {
        let (s, _, v) = api.call(Some(&a.token), Method::PATCH, &format!("/api/v1/customers/{c}"), Some(json!({"status": to})), None).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some(to)), "{v}");
    }
}

#[tokio::test]
async fn a_replayed_webhook_creation_never_hands_out_a_secret_again() {
    let api = Api::new().await;
    let a = reseller(&api.app.pool, "a@resell.example", RW).await;
    let body = json!({"url": "https://hooks.example.com/vessel"});
    let (s, _, first) = api.call(Some(&a.token), Method::POST, "/api/v1/webhooks", Some(body.clone()), Some("hook-1")).await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = first["secret"].as_str().unwrap().to_string();
    let (s, h, again) = api.call(Some(&a.token), Method::POST, "/api/v1/webhooks", Some(body), Some("hook-1")).await;
    assert_eq!((s, &again["id"]), (StatusCode::CREATED, &first["id"]));
    assert!(h.contains_key("idempotent-replayed") && again.get("secret").is_none(), "{again}");
    let (_, one) = api.get(&a.token, &format!("/api/v1/webhooks/{}", first["id"].as_str().unwrap())).await;
    assert_eq!(one["secret"].as_str(), Some(secret.as_str()), "its owner reads the secret from the endpoint");
    let stored: i64 = api.count(&format!("SELECT count(*) FROM idempotency_keys WHERE response_body::text LIKE '%{secret}%'")).await;
    assert_eq!(stored, 0, "no secret is kept in the replay store");
}

#[tokio::test]
async fn suspending_a_customer_suspends_its_servers_and_reactivating_restores_each() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let running = api.server(&a.token, c, "one.example.com").await["id"].as_str().unwrap().to_string();
    let stopped = api.server(&a.token, c, "two.example.com").await["id"].as_str().unwrap().to_string();
    let held = api.server(&a.token, c, "three.example.com").await["id"].as_str().unwrap().to_string();
    api.post(&a.token, &format!("/api/v1/servers/{stopped}/stop"), json!(null)).await;
    api.post(&a.token, &format!("/api/v1/servers/{held}/suspend"), json!(null)).await;
    let patch = |to: &'static str| {
        let (api, token) = (&api, a.token.clone());
        async move { api.call(Some(&token), Method::PATCH, &format!("/api/v1/customers/{c}"), Some(json!({"status": to})), None).await }
    };
    let state = |id: String| {
        let (api, token) = (&api, a.token.clone());
        async move { api.get(&token, &format!("/api/v1/servers/{id}")).await.1["desired_state"].as_str().unwrap().to_string() }
    };
    let (s, _, v) = patch("suspended").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for id in [&running, &stopped, &held] {
        assert_eq!(state(id.clone()).await, "suspended");
    }
    // A server suspended with its customer is not lifted alone.
    let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{running}/unsuspend"), json!(null)).await;
    assert_eq!((s, kind(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    let jobs = api.count("SELECT count(*) FROM jobs WHERE kind = 'instance.converge'").await;
    let (s, _, v) = patch("active").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(state(running.clone()).await, "running");
    assert_eq!(state(stopped.clone()).await, "stopped", "a stopped server stays stopped");
    assert_eq!(state(held.clone()).await, "suspended", "what the reseller suspended itself stays suspended");
    assert_eq!(api.count("SELECT count(*) FROM jobs WHERE kind = 'instance.converge'").await, jobs + 2, "one converge per restored server");
}

/// A reseller that owes past due gets no new server and no upgrade (402, `payment-overdue`,
/// naming the invoices) until it pays; then it gets them again.
#[tokio::test]
async fn a_reseller_with_overdue_invoices_cannot_create_or_grow_servers() {
    let app = spawn_web_app_with(|s| s.billing.payment_terms_days = 0).await;
    let api = Api { app, http: Client::new() };
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let first = api.server(&a.token, c, "one.example.com").await["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await; // past the due date (net 0)
    let body = json!({ "customer_id": c, "plan": "burst-s", "os_template": "debian-12", "hostname": "two.example.com" });
    let (s, h, v) = api.call(Some(&a.token), Method::POST, "/api/v1/servers", Some(body.clone()), None).await;
    assert_eq!(s, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(v["type"], "https://vessel.dev/problems/payment-overdue", "{v}");
    let number: String = sqlx::query_scalar("SELECT 'INV-' || number_year || '-' || lpad(number_seq::text, 6, '0') FROM invoices")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(v["invoices"], json!([number]), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("overdue"), "{v}");
    let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{first}/resize"), json!({ "plan": "burst-m" })).await;
    assert_eq!((s, v["type"].as_str()), (StatusCode::PAYMENT_REQUIRED, Some("https://vessel.dev/problems/payment-overdue")), "{v}");
    assert_eq!(api.count("SELECT count(*) FROM instances").await, 1, "nothing was made");
    assert_eq!(api.count("SELECT count(*) FROM invoices").await, 1, "nothing was invoiced");

    let boss = admin(pool).await;
    let invoice: Uuid = sqlx::query_scalar("SELECT id FROM invoices").fetch_one(pool).await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT total_minor FROM invoices").fetch_one(pool).await.unwrap();
    let eur = panel::money::Money::new(total, panel::money::Currency::parse("EUR").unwrap());
    panel::billing::payments::record_manual_payment(
        pool,
        &panel::clock::SystemClock,
        boss.account,
        a.account,
        eur,
        "bank-1",
        Some(invoice),
        None,
    )
    .await
    .unwrap();
    let (s, v) = api.post(&a.token, "/api/v1/servers", body).await;
    assert_eq!(s, StatusCode::CREATED, "paid: servers again: {v}");
}

/// A server terminated on its first day: its unused period is given back by a credit note
/// (here, off the unpaid first invoice), so the reseller owes nothing for days it never used.
#[tokio::test]
async fn terminating_a_server_before_its_period_is_used_credits_the_unused_part() {
    let api = Api::new().await;
    let pool = &api.app.pool;
    let a = reseller(pool, "a@resell.example", RW).await;
    let c = api.customer(&a.token, "c@example.com").await;
    let id = api.server(&a.token, c, "short.example.com").await["id"].as_str().unwrap().to_string();
    let (s, v) = api.post(&a.token, &format!("/api/v1/servers/{id}/terminate"), json!(null)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(api.count("SELECT count(*) FROM invoices WHERE kind = 'credit_note'").await, 1, "a credit note for the unused period");
    let owed: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(total_minor), 0)::bigint FROM invoices WHERE kind = 'invoice' AND status = 'issued'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(owed, 0, "nothing is owed for a period not used");
    crate::billing_world::check_invariants(pool).await;
}

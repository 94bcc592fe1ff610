//! Issue 13: the customer's way in. SSH keys and a root password chosen at order time, through
//! the web pages and the reseller API; a generated password shown once and never again; a
//! password reset on a running server; the "server ready" mail; and the clear password found
//! nowhere afterwards: not in the database (a full `pg_dump`), not in a mail, not in an audit
//! row, not in an idempotent replay.

use crate::helpers::{csrf_of, spawn_web_app, WebApp};
use panel::api_keys::{self, Scope};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ alice@laptop";
const KEY_FP: &str = "SHA256:j8B0kXG9gtQ6mWr/tQXpz0ekc7wHFvxNNKHcdOsmqz0";

async fn reseller_token(app: &WebApp) -> String {
    let account: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'r@resell.example', 'R', 'active', now()) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    api_keys::create(&app.pool, account, "test", &[Scope::Read, Scope::Write], None).await.unwrap().token
}

async fn api(app: &WebApp, token: &str, path: &str, body: Value, idem: Option<&str>) -> (StatusCode, bool, Value) {
    let mut r = reqwest::Client::new().post(app.url(path)).bearer_auth(token).json(&body);
    if let Some(k) = idem {
        r = r.header("Idempotency-Key", k);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    (status, replayed, resp.json().await.unwrap_or(Value::Null))
}

/// Everything the database holds, as text.
fn pg_dump(app: &WebApp) -> String {
    let o = app.pool.connect_options();
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump")
        .args(["-h", o.get_host(), "-p", &o.get_port().to_string(), "-U", o.get_username(), "--data-only", o.get_database().unwrap()])
        .output()
        .expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything this test process logs, at every level: the panel under test runs in-process, so
/// its log is what a global subscriber writing here sees.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Installs the capture as the process's subscriber (each test is its own process).
    fn install() -> CapturedLog {
        let log = CapturedLog::default();
        let w = log.clone();
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(move || w.clone()).init();
        log
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn access_of(v: &Value) -> Value {
    v.clone()
}

/// A well-formed RSA public key line of this many bits.
fn rsa_line(bits: usize) -> String {
    use base64::Engine;
    let mut blob = Vec::new();
    for part in [b"ssh-rsa".to_vec(), vec![1, 0, 1], {
        let mut n = vec![0u8; bits / 8 + 1];
        n[1] = 0xc1;
        n
    }] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(&part);
    }
    format!("ssh-rsa {} short", base64::engine::general_purpose::STANDARD.encode(blob))
}

async fn instance_access(app: &WebApp, id: &str) -> Value {
    let id: Uuid = id.parse().unwrap();
    access_of(&sqlx::query_scalar::<_, Value>("SELECT access FROM instances WHERE id = $1").bind(id).fetch_one(&app.pool).await.unwrap())
}

fn verifies(hash: &Value, password: &str) -> bool {
    sha_crypt::sha512_check(password, hash.as_str().unwrap_or_default()).is_ok()
}

#[tokio::test]
async fn the_api_takes_keys_and_passwords_and_a_generated_password_is_shown_once_and_stored_nowhere() {
    let log = CapturedLog::install();
    let app = spawn_web_app().await;
    let token = reseller_token(&app).await;
    let (s, _, c) = api(&app, &token, "/api/v1/customers", json!({"email": "c@example.com", "name": "C"}), None).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let customer = c["id"].as_str().unwrap().to_string();
    let new = |host: &str, extra: Value| {
        let mut b = json!({"customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": host});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };

    // A key and no password: the key goes to the host, root's password stays locked.
    let (s, _, v) = api(&app, &token, "/api/v1/servers", new("k.example.com", json!({"ssh_keys": [KEY]})), None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v.get("root_password").is_none(), "nothing generated when a key is given: {v}");
    let a = instance_access(&app, v["id"].as_str().unwrap()).await;
    assert_eq!(a, json!({"ssh_keys": [KEY]}));

    // A password of the caller's: only its SHA-512 crypt hash is kept.
    let mine = "my own root password 42";
    let (s, _, v) = api(&app, &token, "/api/v1/servers", new("p.example.com", json!({"root_password": mine})), None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let a = instance_access(&app, v["id"].as_str().unwrap()).await;
    assert!(a["root_password_hash"].as_str().unwrap().starts_with("$6$"), "{a}");
    assert!(verifies(&a["root_password_hash"], mine));

    // Neither: one is generated, returned once; the idempotent replay does not carry it.
    let (s, replayed, v) = api(&app, &token, "/api/v1/servers", new("g.example.com", json!({})), Some("create-g")).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, false), "{v}");
    let generated = v["root_password"].as_str().expect("a generated password in the answer").to_string();
    assert_eq!(generated.len(), 20);
    let server = v["id"].as_str().unwrap().to_string();
    assert!(verifies(&instance_access(&app, &server).await["root_password_hash"], &generated));
    let (s, replayed, again) = api(&app, &token, "/api/v1/servers", new("g.example.com", json!({})), Some("create-g")).await;
    assert_eq!((s, replayed, again["id"].as_str()), (StatusCode::CREATED, true, Some(server.as_str())), "{again}");
    assert!(again.get("root_password").is_none(), "a replay never shows the password again: {again}");

    // Bad input: a clear error naming the field, and nothing made.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.pool).await.unwrap();
    for (extra, field) in [
        (json!({"ssh_keys": ["ssh-rsa AAAA"]}), "ssh_keys"),
        (json!({"ssh_keys": [format!("{KEY}\nssh-ed25519 AAAA")]}), "ssh_keys"),
        (json!({"ssh_keys": [rsa_line(1024)]}), "ssh_keys"),
        (json!({"root_password": "short"}), "root_password"),
    ] {
        let (s, _, v) = api(&app, &token, "/api/v1/servers", new("bad.example.com", extra.clone()), None).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{extra}: {v}");
    }
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.pool).await.unwrap();
    assert_eq!(before, after);

    // Reset on the running server: a new generated password, hash replaced, a host job queued.
    let (s, _, v) = api(&app, &token, &format!("/api/v1/servers/{server}/reset-password"), json!({}), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let reset = v["root_password"].as_str().unwrap().to_string();
    assert_ne!(reset, generated);
    let a = instance_access(&app, &server).await;
    assert!(verifies(&a["root_password_hash"], &reset) && !verifies(&a["root_password_hash"], &generated));
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'instance.reset_password' AND instance_id = $1")
        .bind(server.parse::<Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    // Stopped: refused with a reason; another reseller's server: 404.
    let (s, _, v) = api(&app, &token, &format!("/api/v1/servers/{server}/stop"), json!(null), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, _, v) =
        api(&app, &token, &format!("/api/v1/servers/{server}/reset-password"), json!({"root_password": "another long password"}), None)
            .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, _, _) = api(&app, &token, &format!("/api/v1/servers/{}/reset-password", Uuid::new_v4()), json!({}), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // The clear passwords are nowhere: not in the database, not in any mail, not in the
    // panel's log (every level, the API's requests included).
    let logged = log.text();
    assert!(logged.contains("reset-password"), "the log is captured: {} bytes", logged.len());
    for p in [mine, generated.as_str(), reset.as_str()] {
        assert!(!logged.contains(p), "a clear password is in the panel's log");
    }
    let dump = pg_dump(&app);
    assert!(dump.contains(KEY_FP.trim_start_matches("SHA256:")) || dump.contains("alice@laptop"), "the dump is real");
    for p in [mine, generated.as_str(), reset.as_str()] {
        assert!(!dump.contains(p), "a clear password is in the database dump");
        assert!(app.smtp.mails().iter().all(|m| !m.text().contains(p)), "a clear password was mailed");
    }
}

#[tokio::test]
async fn a_customer_keeps_keys_orders_with_one_and_gets_a_ready_mail_with_its_fingerprint() {
    let app = spawn_web_app().await;
    let c = app.customer("ana@example.com").await;
    // Keys: a bad one is refused with the reason, a good one listed with its fingerprint, a
    // duplicate refused.
    let (s, _, body) = app.submit(&c, "/account/ssh-keys", "/account/ssh-keys", &[("name", "bad"), ("public_key", "ssh-rsa AAAA")]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("damaged") || body.contains("does not match"), "{body}");
    let (s, loc, body) = app.submit(&c, "/account/ssh-keys", "/account/ssh-keys", &[("name", "laptop"), ("public_key", KEY)]).await;
    assert_eq!((s, loc.as_str()), (303, "/account/ssh-keys"), "{body}");
    let (_, page) = app.get(&c, "/account/ssh-keys").await;
    assert!(page.contains(KEY_FP), "{page}");
    let (s, _, body) = app.submit(&c, "/account/ssh-keys", "/account/ssh-keys", &[("name", "again"), ("public_key", KEY)]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("already have this key"), "{body}");

    // The order form offers the key, ticked; ordering with it and no password generates none.
    let (s, form) = app.get(&c, "/order/burst-s").await;
    assert_eq!(s, 200);
    let key_id: Uuid = sqlx::query_scalar("SELECT id FROM ssh_keys").fetch_one(&app.pool).await.unwrap();
    let field = format!("key_{key_id}");
    assert!(form.contains(&format!("name=\"{field}\" checked")), "{form}");
    let csrf = csrf_of(&form);
    let (s, loc, body) = app
        .post(
            &c,
            "/order/burst-s",
            &[
                ("csrf", &csrf),
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", "web1.example.com"),
                (&field, "on"),
                ("root_password", ""),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    assert!(loc.starts_with("/orders/"), "{loc}");
    let order_access: Value = sqlx::query_scalar("SELECT access FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(order_access, json!({"ssh_keys": [KEY]}));

    // Another customer cannot use Ana's key id (not found: the order is refused, nothing made).
    let bob = app.customer("bob@example.com").await;
    let (_, form) = app.get(&bob, "/order/burst-s").await;
    let csrf = csrf_of(&form);
    let (s, _, body) = app
        .post(
            &bob,
            "/order/burst-s",
            &[("csrf", &csrf), ("cycle", "monthly"), ("os_template", "debian-12"), ("hostname", "web2.example.com"), (&field, "on")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("no such SSH key"), "{body}");
    // Bob with nothing: a generated password, on a page that is not cached.
    let (s, _, body) = app
        .post(
            &bob,
            "/order/burst-s",
            &[("csrf", &csrf), ("cycle", "monthly"), ("os_template", "debian-12"), ("hostname", "web3.example.com")],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let at = body.find("id=\"root-password\">").expect("the password is shown once") + "id=\"root-password\">".len();
    let shown = body[at..at + 20].to_string();
    let dump = pg_dump(&app);
    assert!(!dump.contains(&shown), "the shown password is not stored");

    // Paid and running: the instance got the order's key, and a ready mail names its fingerprint.
    let invoice: Uuid =
        sqlx::query_scalar("SELECT i.id FROM invoices i JOIN accounts a ON a.id = i.account_id WHERE a.email = 'ana@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let ana: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'ana@example.com'").fetch_one(&app.pool).await.unwrap();
    let admin: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('admin', 'root@example.com') RETURNING id")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("SELECT total_minor FROM invoices WHERE id = $1").bind(invoice).fetch_one(&app.pool).await.unwrap();
    let eur = panel::money::Currency::parse("EUR").unwrap();
    panel::billing::payments::record_manual_payment(
        &app.pool,
        &panel::clock::SystemClock,
        admin,
        ana,
        panel::money::Money::new(total, eur),
        "bank ref 1",
        Some(invoice),
        None,
    )
    .await
    .unwrap();
    let id: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE account_id = $1").bind(ana).fetch_one(&app.pool).await.unwrap();
    assert_eq!(instance_access(&app, &id.to_string()).await, json!({"ssh_keys": [KEY]}));
    // Its address comes from a pool whose admin named its resolvers (issue 13, item 5).
    let by = panel::admin::By { admin, addr: None };
    let form = panel::admin::PoolForm {
        name: "dns-pool".into(),
        network: "198.51.100.0/26".into(),
        gateway: "198.51.100.1".into(),
        dns: "198.51.100.53, 198.51.100.54".into(),
        ..Default::default()
    };
    let bad = panel::admin::PoolForm { name: "bad".into(), dns: "2001:db8::53".into(), ..form.clone() };
    assert!(panel::admin::create_pool(&app.pool, by, &bad).await.unwrap_err().to_string().contains("not an IPv4"));
    let pool_id = panel::admin::create_pool(&app.pool, by, &form).await.unwrap();
    panel::admin::generate_addresses(&app.pool, by, pool_id, 4).await.unwrap();
    sqlx::query("UPDATE ip_addresses SET instance_id = $1, assigned_at = now() WHERE address = '198.51.100.2'")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    for _ in 0..2 {
        panel::db::instances::set_observed(&app.pool, id.into(), panel::vps::ObservedState::Running, None, chrono::Utc::now())
            .await
            .unwrap();
    }
    let mail = app.smtp.wait_for("ana@example.com", "is ready").await;
    assert!(mail.text().contains(KEY_FP), "{}", mail.text());
    assert!(mail.text().contains("ssh root@"), "{}", mail.text());
    assert!(mail.text().contains(&format!("/servers/{id}/console")), "the mail links the browser console: {}", mail.text());
    for line in [
        "Address:   198.51.100.2",
        "Gateway:   198.51.100.1",
        "Netmask:   255.255.255.192",
        "DNS:       198.51.100.53, 198.51.100.54",
        "User:      root",
    ] {
        assert!(mail.text().contains(line), "the ready mail says {line:?}: {}", mail.text());
    }
    let ready: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE template = 'server_ready'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(ready, 1, "the ready mail goes once");

    // The server page says how to log in, and resets the password (generated, shown once).
    let (s, page) = app.get(&c, &format!("/servers/{id}")).await;
    assert_eq!(s, 200);
    assert!(page.contains(KEY_FP) && page.contains("not set: key log-in only"), "{page}");
    for (field, want) in [
        ("net-address-1", "198.51.100.2/26"),
        ("net-gateway-1", "198.51.100.1"),
        ("net-netmask-1", "255.255.255.192"),
        ("net-dns-1", "198.51.100.53, 198.51.100.54"),
    ] {
        assert!(page.contains(&format!("id=\"{field}\">{want}<")), "the page shows {field} = {want}: {page}");
    }
    let (s, _, body) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/password"), &[("root_password", "")]).await;
    assert_eq!(s, 200, "{body}");
    let at = body.find("id=\"root-password\">").expect("the new password is shown once") + "id=\"root-password\">".len();
    let shown = &body[at..at + 20];
    assert!(verifies(&instance_access(&app, &id.to_string()).await["root_password_hash"], shown));
    // Bob cannot touch Ana's server.
    let (s, _, _) =
        app.submit(&bob, "/account/ssh-keys", &format!("/servers/{id}/password"), &[("root_password", "bob's long password")]).await;
    assert_eq!(s, 404);
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'server.reset_password'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(audit, 1, "the reset is audited");
    assert!(!pg_dump(&app).contains(shown), "the new password is not stored");

    // Rescue from the server page (item 4): the button sets it and queues the action; the page
    // says so and offers the way back; a reinstall is refused meanwhile; Bob cannot.
    let rescue_of = || async {
        sqlx::query_scalar::<_, bool>("SELECT rescue FROM instances WHERE id = $1").bind(id).fetch_one(&app.pool).await.unwrap()
    };
    let (s, page) = app.get(&c, &format!("/servers/{id}")).await;
    assert_eq!(s, 200);
    assert!(page.contains("id=\"action-rescue\"") && !page.contains("id=\"action-leave-rescue\""), "{page}");
    let (s, _, _) = app.submit(&bob, "/account/ssh-keys", &format!("/servers/{id}/action"), &[("action", "rescue")]).await;
    assert_eq!(s, 404, "another customer's server");
    assert!(!rescue_of().await);
    let (s, loc, body) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "rescue")]).await;
    assert_eq!((s, loc.as_str()), (303, format!("/servers/{id}?done=requested").as_str()), "{body}");
    assert!(rescue_of().await);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE instance_id = $1 AND kind = 'instance.action' AND payload->>'action' = 'rescue'",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(queued, 1, "the rescue is a durable job");
    let (_, page) = app.get(&c, &format!("/servers/{id}")).await;
    assert!(page.contains("id=\"rescue-state\"") && page.contains("id=\"action-leave-rescue\""), "{page}");
    let (s, _, body) =
        app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "reinstall"), ("confirm", "yes")]).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("leave rescue first"), "{body}");
    let (s, _, _) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "leave-rescue")]).await;
    assert_eq!(s, 303);
    assert!(!rescue_of().await);
    let (s, _, body) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "leave-rescue")]).await;
    assert_eq!(s, 409, "not in rescue: {body}");
}

/// `POST /api/v1/servers/{id}/console`: a one-time token for a running server of the caller's,
/// shown once (an idempotent replay leaves it out), stored only as a hash; the WebSocket it
/// opens needs no session, is audited as the API key's, works once and not after it expires.
/// Here the server has no host: the socket opens and ends at once, saying why.
#[tokio::test]
async fn an_api_console_token_is_shown_once_works_once_and_is_scoped_to_the_reseller() {
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};
    let app = spawn_web_app().await;
    let token = reseller_token(&app).await;
    let (_, _, c) = api(&app, &token, "/api/v1/customers", json!({"email": "c@example.com", "name": "C"}), None).await;
    let (s, _, v) = api(
        &app,
        &token,
        "/api/v1/servers",
        json!({"customer_id": c["id"], "plan": "burst-s", "os_template": "debian-12", "hostname": "con.example.com", "ssh_keys": [KEY]}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let server: Uuid = v["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/servers/{server}/console");

    // Not running yet: refused with the reason.
    let (s, _, v) = api(&app, &token, &path, json!(null), None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    sqlx::query("UPDATE instances SET observed_state = 'running' WHERE id = $1").bind(server).execute(&app.pool).await.unwrap();
    // Another reseller, an unknown id: 404.
    let other: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'o@resell.example', 'O', 'active', now()) RETURNING id")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let other_token = api_keys::create(&app.pool, other, "o", &[Scope::Read, Scope::Write], None).await.unwrap().token;
    assert_eq!(api(&app, &other_token, &path, json!(null), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api(&app, &token, &format!("/api/v1/servers/{}/console", Uuid::new_v4()), json!(null), None).await.0, StatusCode::NOT_FOUND);

    let (s, replayed, v) = api(&app, &token, &path, json!(null), Some("console-1")).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, false), "{v}");
    let t = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["websocket_path"], format!("/console/ws?token={t}"));
    assert_eq!(v["page_path"], format!("/console?token={t}"));
    let (s, replayed, again) = api(&app, &token, &path, json!(null), Some("console-1")).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, true));
    assert!(again.get("token").is_none() && again.get("websocket_path").is_none(), "a replay never shows the token: {again}");
    assert!(!pg_dump(&app).contains(&t), "only the token's hash is stored");
    // The page for the token (a reseller's customer has no login here) names the socket.
    let page = reqwest::get(app.url(v["page_path"].as_str().unwrap())).await.unwrap();
    assert_eq!(page.headers().get("cache-control").unwrap(), "no-store");
    assert!(page.text().await.unwrap().contains("/console/ws?token="));

    let ws_url = |p: &str| app.url(p).replace("http://", "ws://");
    // Used once, without any session: it opens and ends at once, cleanly, saying why.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(v["websocket_path"].as_str().unwrap())).await.expect("the token opens the socket");
    let reason = loop {
        match futures_util::StreamExt::next(&mut ws).await {
            Some(Ok(Message::Close(f))) => break f.map(|f| f.reason.to_string()).unwrap_or_default(),
            Some(Ok(_)) => continue,
            other => panic!("no clean close: {other:?}"),
        }
    };
    assert_eq!(reason, "the server is not placed on a host yet");
    // Twice: refused before upgrading.
    match tokio_tungstenite::connect_async(ws_url(v["websocket_path"].as_str().unwrap())).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a used token must be refused: {:?}", other.map(|_| ())),
    }
    // Expired: refused too.
    let (_, _, v2) = api(&app, &token, &path, json!(null), None).await;
    sqlx::query("UPDATE console_tokens SET created_at = now() - interval '10 minutes', expires_at = now() - interval '1 second' WHERE used_at IS NULL").execute(&app.pool).await.unwrap();
    match tokio_tungstenite::connect_async(ws_url(v2["websocket_path"].as_str().unwrap())).await {
        Err(WsError::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("an expired token must be refused: {:?}", other.map(|_| ())),
    }
    // A plain GET (not a WebSocket) does not use a token up.
    let (_, _, v3) = api(&app, &token, &path, json!(null), None).await;
    let plain = reqwest::get(app.url(v3["websocket_path"].as_str().unwrap())).await.unwrap();
    assert_eq!(plain.status(), 400);
    let unused: bool = sqlx::query_scalar("SELECT used_at IS NULL FROM console_tokens ORDER BY created_at DESC LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(unused);

    // Audited as the API key's account, with the key, from where, and why it ended.
    let rows: Vec<(String, String, Option<String>, Value)> = sqlx::query_as(
        "SELECT action, actor_kind, host(remote_addr), details FROM audit_log WHERE action LIKE 'console.%' AND target_id = $1 ORDER BY id",
    )
    .bind(server.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["console.open", "console.close"]);
    assert!(
        rows.iter()
            .all(|r| r.1 == "api_key" && r.2.as_deref() == Some("127.0.0.1") && r.3["via"] == "api" && r.3["api_key_id"].is_string()),
        "{rows:?}"
    );
    assert_eq!(rows[1].3["reason"], "the server is not placed on a host yet");
}

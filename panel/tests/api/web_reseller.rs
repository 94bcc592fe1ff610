//! The reseller's pages through a browser-like client: its home, API keys (the token shown
//! once), webhook endpoints and their delivery log, each scoped to the logged-in reseller
//! (another reseller's ids are 404); and the admin's page for a reseller's terms.

use crate::helpers::{client, spawn_web_app, WebApp};
use uuid::Uuid;

const PASSWORD: &str = "reseller password 123";

/// A reseller account (as an admin would make it, password already chosen), logged in.
pub async fn reseller(app: &WebApp, email: &str) -> (reqwest::Client, Uuid) {
    let hash = panel::accounts::hash_password(&panel::accounts::Password::parse(PASSWORD).unwrap());
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, password_hash, status, email_verified_at, display_name) \
         VALUES ('reseller', $1, $2, 'active', now(), 'Shop ' || $1) RETURNING id",
    )
    .bind(email)
    .bind(hash)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let c = client();
    let (s, loc, body) = app.submit(&c, "/login", "/login", &[("email", email), ("password", PASSWORD)]).await;
    assert_eq!((s, loc.as_str()), (303, "/reseller"), "a reseller lands on its home: {body}");
    (c, id)
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = html.find(start)? + start.len();
    Some(&html[at..at + html[at..].find(end)?])
}

async fn count(app: &WebApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_reseller_sees_its_home_and_makes_a_key_shown_once_then_revokes_it() {
    let app = spawn_web_app().await;
    let (shop, id) = reseller(&app, "shop@example.com").await;
    let (s, home) = app.get(&shop, "/reseller").await;
    assert_eq!(s, 200, "{home}");
    assert!(home.contains("Shop shop@example.com") && home.contains("20.00 %"), "the standard terms: {home}");
    assert!(home.contains("href=\"/reseller/keys\"") && home.contains("href=\"/reseller/webhooks\""), "{home}");

    // Bad input: the page again with the field's error, nothing made.
    let (s, _, body) = app.submit(&shop, "/reseller/keys", "/reseller/keys", &[("name", "  "), ("scope_read", "on")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("id=\"error-name\""), "{body}");
    let (s, _, body) = app.submit(&shop, "/reseller/keys", "/reseller/keys", &[("name", "billing")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("id=\"error-scopes\"") && body.contains("value=\"billing\""), "the typed name is kept: {body}");
    assert_eq!(count(&app, "SELECT count(*) FROM api_keys").await, 0);

    // Made: the token is on this one page, marked not to be cached.
    let page = app.get(&shop, "/reseller/keys").await.1;
    let csrf = crate::helpers::csrf_of(&page);
    let r = shop
        .post(app.url("/reseller/keys"))
        .form(&[("name", "billing"), ("scope_read", "on"), ("scope_write", "on"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let body = r.text().await.unwrap();
    assert!(body.contains("shown only this once"), "{body}");
    let token = between(&body, "<code id=\"token\">", "</code>").expect("the token").to_string();
    assert!(token.starts_with("vsl_"), "{token}");
    let who = panel::api_keys::authenticate(&app.pool, &token).await.expect("the shown token works");
    assert_eq!(who.tenant, panel::api_keys::Tenant::Reseller(id));
    assert!(who.has(panel::api_keys::Scope::Read) && who.has(panel::api_keys::Scope::Write));

    // A second view lists the key by its prefix, never the token.
    let (s, list) = app.get(&shop, "/reseller/keys").await;
    assert_eq!(s, 200);
    let prefix = &token[..12];
    assert!(list.contains(prefix) && list.contains("billing") && list.contains("read, write"), "{list}");
    assert!(!list.contains(&token) && !list.contains(&token[13..]), "the secret is not shown again");
    let (_, again) = app.get(&shop, "/reseller/keys?done=revoked").await;
    assert!(!again.contains(&token[13..]));

    // Revoking takes a CSRF token; with it, the key stops working.
    let key: Uuid = sqlx::query_scalar("SELECT id FROM api_keys").fetch_one(&app.pool).await.unwrap();
    let (s, _, _) = app.post(&shop, &format!("/reseller/keys/{key}/revoke"), &[]).await;
    assert_eq!(s, 403, "no CSRF token: refused");
    assert!(panel::api_keys::authenticate(&app.pool, &token).await.is_ok(), "a refused form changes nothing");
    let (s, loc, _) = app.submit(&shop, "/reseller/keys", &format!("/reseller/keys/{key}/revoke"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/reseller/keys?done=revoked"));
    assert!(matches!(panel::api_keys::authenticate(&app.pool, &token).await, Err(panel::api_keys::ApiKeyError::Revoked)));
    let (_, list) = app.get(&shop, "/reseller/keys").await;
    assert!(list.contains("revoked"), "{list}");
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE actor_id = $1 ORDER BY id").bind(id).fetch_all(&app.pool).await.unwrap();
    assert_eq!(audit, ["api_key.create", "api_key.revoke"]);

    // CSRF missing on the create form: refused, nothing made.
    let (s, _, _) = app.post(&shop, "/reseller/keys", &[("name", "x"), ("scope_read", "on")]).await;
    assert_eq!(s, 403);
    assert_eq!(count(&app, "SELECT count(*) FROM api_keys").await, 1);

    // The reseller's invoices are the invoice pages; the customer-only pages are not its.
    let (s, body) = app.get(&shop, "/invoices").await;
    assert_eq!(s, 200, "{body}");
    for path in ["/servers", "/orders", "/admin"] {
        assert_eq!(app.get(&shop, path).await.0, 404, "{path}");
    }
    // The reseller area is the reseller's alone.
    let customer = app.customer("cust@example.com").await;
    for path in ["/reseller", "/reseller/keys", "/reseller/webhooks"] {
        assert_eq!(app.get(&customer, path).await.0, 404, "{path} as a customer");
        assert_eq!(app.get(&client(), path).await.0, 303, "{path} anonymously");
    }
}

/// A failed delivery of a `server.updated` event to `endpoint`, as the worker leaves it.
pub async fn failed_delivery(app: &WebApp, reseller: Uuid, endpoint: Uuid) -> i64 {
    sqlx::query_scalar(
        "WITH e AS (INSERT INTO api_events (account_id, type, data) VALUES ($1, 'server.updated', '{}') RETURNING id)
         INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, last_status, last_error, last_attempt_at)
         SELECT e.id, $2, 'failed', 12, 502, 'HTTP 502 Bad Gateway', now() FROM e RETURNING id",
    )
    .bind(reseller)
    .bind(endpoint)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn webhook_endpoints_are_kept_per_reseller_and_another_resellers_are_404() {
    let app = spawn_web_app().await;
    let (a, a_id) = reseller(&app, "a@example.com").await;
    let (b, _) = reseller(&app, "b@example.com").await;

    for bad in ["ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/x", "not a url", ""] {
        let (s, _, body) = app.submit(&a, "/reseller/webhooks", "/reseller/webhooks", &[("url", bad)]).await;
        assert_eq!(s, 422, "{bad}: {body}");
        assert!(body.contains("id=\"error-url\""), "{body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_endpoints").await, 0);
    let (s, loc, _) = app.submit(&a, "/reseller/webhooks", "/reseller/webhooks", &[("url", "https://hooks.example.com/vessel")]).await;
    assert_eq!(s, 303);
    let ep: Uuid = loc.strip_prefix("/reseller/webhooks/").and_then(|r| r.split('?').next()).and_then(|r| r.parse().ok()).expect(&loc);
    let page = format!("/reseller/webhooks/{ep}");
    let (s, body) = app.get(&a, &page).await;
    assert_eq!(s, 200);
    let secret = between(&body, "<code id=\"secret\">", "</code>").expect("the owner sees the secret").to_string();
    assert!(secret.starts_with("whsec_") && secret.len() >= 32);
    assert!(body.contains("Nothing sent yet"));
    let (_, list) = app.get(&a, "/reseller/webhooks").await;
    assert!(list.contains("https://hooks.example.com/vessel"));

    // Another reseller: every page and action on it is a 404, and nothing changes.
    let delivery = failed_delivery(&app, a_id, ep).await;
    let (_, b_list) = app.get(&b, "/reseller/webhooks").await;
    assert!(!b_list.contains("hooks.example.com"), "{b_list}");
    assert_eq!(app.get(&b, &page).await.0, 404);
    let (_, b_page) = app.get(&b, "/reseller/webhooks").await;
    let csrf = crate::helpers::csrf_of(&b_page);
    let audit_before = count(&app, "SELECT count(*) FROM audit_log").await;
    for (path, form) in [
        (format!("{page}/state"), vec![("to", "disable")]),
        (format!("{page}/rotate"), vec![]),
        (format!("{page}/delete"), vec![]),
        (format!("{page}/deliveries/{delivery}/resend"), vec![]),
    ] {
        let mut f = form.clone();
        f.push(("csrf", &csrf));
        let (s, _, _) = app.post(&b, &path, &f).await;
        assert_eq!(s, 404, "{path} by another reseller");
    }
    let key = panel::api_keys::create(&app.pool, a_id, "a's key", &[panel::api_keys::Scope::Read], None).await.unwrap();
    let (s, _, _) = app.post(&b, &format!("/reseller/keys/{}/revoke", key.row.id), &[("csrf", &csrf)]).await;
    assert_eq!(s, 404, "another reseller's key");
    assert!(panel::api_keys::authenticate(&app.pool, &key.token).await.is_ok());
    let (enabled, now_secret): (bool, String) =
        sqlx::query_as("SELECT enabled, secret FROM webhook_endpoints WHERE id = $1").bind(ep).fetch_one(&app.pool).await.unwrap();
    assert!(enabled && now_secret == secret);
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM audit_log").await, audit_before + 1, "only a's own key was made");
    // A malformed id is a 404 too, not an error page.
    assert_eq!(app.get(&a, "/reseller/webhooks/not-a-uuid").await.0, 404);

    // The owner: the delivery log, send again, disable, rotate, delete.
    let (_, body) = app.get(&a, &page).await;
    assert!(body.contains("server.updated") && body.contains("HTTP 502 Bad Gateway") && body.contains("Send again"), "{body}");
    let (s, loc, _) = app.submit(&a, &page, &format!("{page}/deliveries/{delivery}/resend"), &[]).await;
    assert_eq!((s, loc), (303, format!("{page}?done=requeued")));
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM webhook_deliveries WHERE id = $1").bind(delivery).fetch_one(&app.pool).await.unwrap();
    // The panel's worker may already have tried it once (example.com does not answer here).
    assert!(status == "pending" && attempts <= 1, "queued again with a fresh count: {status} {attempts}");
    let (s, _, _) = app.submit(&a, &page, &format!("{page}/state"), &[("to", "disable")]).await;
    assert_eq!(s, 303);
    let (_, body) = app.get(&a, &page).await;
    assert!(body.contains("disabled") && body.contains("value=\"enable\""), "{body}");
    let (s, _, _) = app.submit(&a, &page, &format!("{page}/rotate"), &[]).await;
    assert_eq!(s, 303);
    let (_, body) = app.get(&a, &page).await;
    let rotated = between(&body, "<code id=\"secret\">", "</code>").unwrap();
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    let (s, loc, _) = app.submit(&a, &page, &format!("{page}/delete"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/reseller/webhooks?done=deleted"));
    assert_eq!(app.get(&a, &page).await.0, 404);
    assert_eq!(count(&app, "SELECT count(*) FROM webhook_deliveries").await, 0, "its deliveries went with it");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE actor_id = $1 AND action LIKE 'webhook%' ORDER BY id")
            .bind(a_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            "webhook_endpoint.create",
            "webhook_delivery.send_again",
            "webhook_endpoint.disable",
            "webhook_endpoint.rotate_secret",
            "webhook_endpoint.delete"
        ]
    );
}

#[tokio::test]
async fn an_admin_saves_a_resellers_terms_audited_and_the_reseller_sees_them() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let (shop, id) = reseller(&app, "shop@example.com").await;
    let (_, list) = app.get(&admin, "/admin/resellers").await;
    let page = format!("/admin/resellers/{id}");
    assert!(list.contains(&format!("href=\"{page}\"")), "linked from the list: {list}");
    let (s, body) = app.get(&admin, &page).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("value=\"20.00\"") && body.contains("standard terms"), "{body}");

    let good = [("discount", "12.5"), ("max_servers", "10"), ("max_vcpus", "40"), ("max_memory_mib", "65536"), ("max_disk_gib", "800")];
    for (field, bad) in [("discount", "100.01"), ("discount", "12.345"), ("max_servers", "-1"), ("max_vcpus", "many"), ("max_disk_gib", "")]
    {
        let mut f = good.to_vec();
        f.iter_mut().find(|(k, _)| *k == field).unwrap().1 = bad;
        let (s, _, body) = app.submit(&admin, &page, &page, &f).await;
        assert_eq!(s, 422, "{field}={bad}: {body}");
        assert!(body.contains(&format!("id=\"error-{field}\"")), "{field}={bad}: {body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM reseller_terms").await, 0, "nothing saved from a bad form");
    let (s, _, _) = app.post(&admin, &page, &good).await;
    assert_eq!(s, 403, "no CSRF token");
    assert_eq!(count(&app, "SELECT count(*) FROM reseller_terms").await, 0);

    // The first save makes the row, the next changes it; both audited with before and after.
    let (s, loc, body) = app.submit(&admin, &page, &page, &good).await;
    assert_eq!((s, loc.clone()), (303, format!("{page}?done=saved")), "{body}");
    let t: (i32, i32, i32, i64, i64) = sqlx::query_as(
        "SELECT discount_bp, max_servers, max_vcpus, max_memory_mib, max_disk_gib FROM reseller_terms WHERE reseller_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(t, (1250, 10, 40, 65536, 800));
    let mut second = good.to_vec();
    second[0].1 = "7.05";
    let (s, _, _) = app.submit(&admin, &page, &page, &second).await;
    assert_eq!(s, 303);
    let bp: i32 =
        sqlx::query_scalar("SELECT discount_bp FROM reseller_terms WHERE reseller_id = $1").bind(id).fetch_one(&app.pool).await.unwrap();
    assert_eq!(bp, 705);
    let audit: Vec<(String, serde_json::Value, Option<String>)> =
        sqlx::query_as("SELECT action, details, host(remote_addr) FROM audit_log WHERE action = 'reseller.terms' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit[0].1["before"].is_null() && audit[0].1["after"]["discount_bp"] == 1250, "{:?}", audit[0]);
    assert!(audit[1].1["before"]["discount_bp"] == 1250 && audit[1].1["after"]["discount_bp"] == 705, "{:?}", audit[1]);
    assert_eq!(audit[1].2.as_deref(), Some("127.0.0.1"));
    let (_, body) = app.get(&admin, &page).await;
    assert!(body.contains("value=\"7.05\""), "{body}");
    let (_, home) = app.get(&shop, "/reseller").await;
    assert!(home.contains("7.05 %") && home.contains("65536 MiB"), "{home}");

    // Not a reseller's id, or not an admin: 404.
    let cust: Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('customer', 'c@example.com') RETURNING id")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.get(&admin, &format!("/admin/resellers/{cust}")).await.0, 404);
    let (s, _, _) = app.submit(&admin, &page, &format!("/admin/resellers/{cust}"), &good).await;
    assert_eq!(s, 404);
    assert_eq!(app.get(&shop, &page).await.0, 404);
}

/// Through the reseller API, as the reseller's own systems would: a customer with one server.
async fn api_customer_with_server(app: &WebApp, reseller: Uuid, email: &str, host: &str) -> (Uuid, Uuid) {
    let token = panel::api_keys::create(&app.pool, reseller, "pages", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| http.post(app.url(path)).bearer_auth(&token).json(&body).send();
    let r = post("/api/v1/customers", serde_json::json!({ "email": email, "name": "End Customer", "country": "DE" })).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let customer: Uuid = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let r = post(
        "/api/v1/servers",
        serde_json::json!({ "customer_id": customer, "plan": "burst-s", "os_template": "debian-12", "hostname": host }),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let server: Uuid = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    (customer, server)
}

/// A reseller's pages list its customers and their servers with their states and the reseller's
/// own invoice for each; another reseller's customer and server are 404s and appear nowhere.
#[tokio::test]
async fn a_reseller_lists_its_customers_and_servers_with_states_and_invoices_and_not_anothers() {
    let app = spawn_web_app().await;
    let (shop, shop_id) = reseller(&app, "shop@example.com").await;
    let (_other, other_id) = reseller(&app, "other@example.com").await;
    let (mine, my_server) = api_customer_with_server(&app, shop_id, "end@shop.example", "web1.shop.example").await;
    let (theirs, their_server) = api_customer_with_server(&app, other_id, "end@other.example", "web1.other.example").await;
    // The shop's server is suspended; the page must say so.
    sqlx::query("UPDATE instances SET desired_state = 'suspended' WHERE id = $1").bind(my_server).execute(&app.pool).await.unwrap();

    let (s, list) = app.get(&shop, "/reseller/customers").await;
    assert_eq!(s, 200, "{list}");
    assert!(list.contains("end@shop.example") && list.contains(&format!("/reseller/customers/{mine}")), "{list}");
    assert!(!list.contains("end@other.example") && !list.contains(&theirs.to_string()), "another reseller's customer: {list}");

    let (s, page) = app.get(&shop, &format!("/reseller/customers/{mine}")).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("web1.shop.example") && page.contains("Suspended") && page.contains("asked suspended"), "{page}");

    // The reseller's (wholesale) invoice for the server, linked and openable by the reseller.
    let (invoice, number): (Uuid, String) = sqlx::query_as(
        "SELECT v.id, 'INV-' || v.number_year || '-' || lpad(v.number_seq::text, 6, '0') FROM invoices v
           JOIN instances i ON i.subscription_id = v.subscription_id WHERE i.id = $1 AND v.account_id = $2",
    )
    .bind(my_server)
    .bind(shop_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (s, servers) = app.get(&shop, "/reseller/servers").await;
    assert_eq!(s, 200, "{servers}");
    assert!(servers.contains(&format!("/reseller/servers/{my_server}")) && servers.contains(&format!("/invoices/{invoice}")), "{servers}");
    assert!(servers.contains(&number), "the invoice's number {number}: {servers}");
    assert!(!servers.contains("web1.other.example") && !servers.contains(&their_server.to_string()), "{servers}");
    let (s, one) = app.get(&shop, &format!("/reseller/servers/{my_server}")).await;
    assert_eq!(s, 200, "{one}");
    assert!(one.contains("end@shop.example") && one.contains(&number) && one.contains("issued"), "{one}");
    assert_eq!(app.get(&shop, &format!("/invoices/{invoice}")).await.0, 200, "the reseller opens its invoice");

    // Filtered by state: the suspended server is under "suspended", not under "running".
    let (_, suspended) = app.get(&shop, "/reseller/servers?state=suspended").await;
    assert!(suspended.contains("web1.shop.example"), "{suspended}");
    let (_, running) = app.get(&shop, "/reseller/servers?state=running").await;
    assert!(!running.contains("web1.shop.example"), "{running}");
    assert_eq!(app.get(&shop, "/reseller/servers?state=exploded").await.0, 400);
    assert_eq!(app.get(&shop, "/reseller/servers?cursor=nonsense").await.0, 400);

    // Another reseller's customer and server: 404, as if they did not exist.
    assert_eq!(app.get(&shop, &format!("/reseller/customers/{theirs}")).await.0, 404);
    assert_eq!(app.get(&shop, &format!("/reseller/servers/{their_server}")).await.0, 404);
    // A customer cannot open the reseller pages at all.
    let end_user = app.customer("direct@example.com").await;
    assert_ne!(app.get(&end_user, "/reseller/servers").await.0, 200);
}

/// A new reseller gets its own invitation (not the password-reset mail) with a link valid for
/// the configured number of days, that works once and sets the password it chose.
#[tokio::test]
async fn a_new_reseller_is_invited_by_its_own_mail_with_a_link_valid_for_days_once() {
    let app = crate::helpers::spawn_web_app_with(|s| s.resellers.invitation_ttl_days = 3).await;
    let admin = app.admin("root@example.com").await;
    let (s, _, body) =
        app.submit(&admin, "/admin/resellers", "/admin/resellers", &[("email", "newshop@example.com"), ("name", "New Shop Ltd")]).await;
    assert_eq!(s, 303, "{body}");
    let mail = app.smtp.wait_for("newshop@example.com", "You are invited to resell").await;
    let text = mail.text();
    assert!(text.contains("valid for 3 days") && text.contains("works once"), "{text}");
    assert!(!text.contains("asked to set a new password"), "not the reset mail: {text}");
    let link = mail.link("/invitation/").expect("an invitation link");
    let path = link.strip_prefix(&app.address).expect("the link points at the panel").to_string();
    // No reset mail was sent besides it.
    let resets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE template = 'password_reset'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(resets, 0);
    // Valid for three days (configured), not an hour.
    let hours: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 / 3600 FROM account_tokens WHERE purpose = 'reseller_invite'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((hours - 72.0).abs() < 0.1, "{hours} hours");

    // The admin's mail page does not show the link.
    let (_, emails) = app.get(&admin, "/admin/emails").await;
    assert!(emails.contains("reseller_invitation") && !emails.contains("/invitation/"), "{emails}");

    // Opening the link shows a form and uses nothing; a short password is refused on the form.
    let c = crate::helpers::client();
    let (s, page) = app.get(&c, &path).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("choose your password"), "{page}");
    let (s, _, body) = app.submit(&c, &path, &path, &[("password", "short")]).await;
    assert_eq!(s, 422, "{body}");
    let (s, loc, body) = app.submit(&c, &path, &path, &[("password", "reseller password 456")]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=invited"), "{body}");
    // Once: the link is spent.
    let (s, page) = app.get(&c, &path).await;
    assert_eq!(s, 422, "{page}");
    assert!(page.contains("Invitation expired"), "{page}");
    // The chosen password logs the reseller in to its pages.
    let (s, loc, body) =
        app.submit(&c, "/login", "/login", &[("email", "newshop@example.com"), ("password", "reseller password 456")]).await;
    assert_eq!((s, loc.as_str()), (303, "/reseller"), "{body}");

    // An expired invitation is refused.
    let (s, _, _) =
        app.submit(&admin, "/admin/resellers", "/admin/resellers", &[("email", "late@example.com"), ("name", "Late Ltd")]).await;
    assert_eq!(s, 303);
    let late = app.smtp.wait_for("late@example.com", "You are invited to resell").await;
    let late_path = late.link("/invitation/").unwrap().strip_prefix(&app.address).unwrap().to_string();
    sqlx::query("UPDATE account_tokens SET created_at = now() - interval '4 days', expires_at = now() - interval '1 second' WHERE purpose = 'reseller_invite' AND used_at IS NULL")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.get(&c, &late_path).await.0, 422);
}

//! The customer's journey through the pages (order, pay with credit, see the VPS pending),
//! tenant isolation (another customer's everything is a 404, pages and actions alike), and
//! CSRF on every form of the panel.

use crate::helpers::{client, csrf_of, WebApp};
use sqlx::PgPool;
use uuid::Uuid;

/// Ids of one customer's order, invoice and server after order + pay.
pub(crate) struct Bought {
    pub(crate) order: Uuid,
    pub(crate) invoice: Uuid,
    pub(crate) server: Uuid,
}

pub(crate) async fn add_credit(app: &WebApp, admin: &reqwest::Client, email: &str, amount: &str, reference: &str) {
    let id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1").bind(email).fetch_one(&app.pool).await.unwrap();
    let page = format!("/admin/customers/{id}");
    let (s, _, body) = app.submit(admin, &page, &format!("{page}/credit"), &[("amount", amount), ("reference", reference)]).await;
    assert_eq!(s, 303, "{body}");
}

pub(crate) async fn order_and_pay(app: &WebApp, c: &reqwest::Client, hostname: &str) -> Bought {
    order_plan_and_pay(app, c, "burst-s", hostname).await
}

/// As [`order_and_pay`], for any plan.
pub(crate) async fn order_plan_and_pay(app: &WebApp, c: &reqwest::Client, plan: &str, hostname: &str) -> Bought {
    let page = format!("/order/{plan}");
    let (s, loc, body) = app
        .submit(
            c,
            &page,
            &page,
            &[
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", hostname),
                ("coupon", ""),
                ("root_password", "a root password 1"),
            ],
        )
        .await;
    assert_eq!(s, 303, "{body}");
    let order: Uuid = loc.trim_start_matches("/orders/").split('?').next().unwrap().parse().unwrap();
    let (s, page) = app.get(c, &loc).await;
    assert_eq!(s, 200);
    assert!(page.contains("id=\"order-status\">Awaiting payment<") && !page.contains("pending_payment"), "in plain words: {page}");
    let invoice: Uuid = page.split("/invoices/").nth(1).unwrap()[..36].parse().unwrap();
    let inv_path = format!("/invoices/{invoice}");
    let (s, loc, body) = app.submit(c, &inv_path, &format!("{inv_path}/pay"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, format!("{inv_path}?done=paid").as_str()), "{body}");
    let (_, page) = app.get(c, &inv_path).await;
    assert!(page.contains("id=\"invoice-status\">paid"), "{page}");
    let server: Uuid =
        sqlx::query_scalar("SELECT id FROM instances WHERE hostname = $1").bind(hostname).fetch_one(&app.pool).await.unwrap();
    Bought { order, invoice, server }
}

#[tokio::test]
async fn order_pay_with_credit_and_see_the_server_pending() {
    let app = crate::helpers::spawn_web_app().await;
    let c = app.customer("buyer@example.com").await;
    let admin = app.admin("root@example.com").await;

    // Bad input is explained on the form.
    let (s, _, body) = app
        .submit(
            &c,
            "/order/burst-s",
            "/order/burst-s",
            &[("cycle", "monthly"), ("os_template", "debian-12"), ("hostname", "-bad-"), ("coupon", "")],
        )
        .await;
    assert_eq!(s, 422);
    assert!(body.contains("id=\"error-hostname\""), "{body}");
    let (s, _, body) = app
        .submit(
            &c,
            "/order/burst-s",
            "/order/burst-s",
            &[("cycle", "monthly"), ("os_template", "debian-12"), ("hostname", "a.example.com"), ("coupon", "NOPE")],
        )
        .await;
    assert_eq!(s, 422);
    assert!(body.contains("id=\"error-coupon\""), "{body}");
    let (s, _) = app.get(&c, "/order/no-such-plan").await;
    assert_eq!(s, 404);

    // Without credit, paying is refused with the amounts, and nothing changes.
    let (_, loc, _) = app
        .submit(
            &c,
            "/order/burst-s",
            "/order/burst-s",
            &[
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", "web1.example.com"),
                ("coupon", ""),
                ("root_password", "a root password 1"),
            ],
        )
        .await;
    let (_, page) = app.get(&c, &loc).await;
    let invoice: Uuid = page.split("/invoices/").nth(1).unwrap()[..36].parse().unwrap();
    let (s, _, body) = app.submit(&c, &format!("/invoices/{invoice}"), &format!("/invoices/{invoice}/pay"), &[]).await;
    assert_eq!(s, 409);
    assert!(body.contains("not enough account credit"), "{body}");

    // Recorded credit pays the open invoice at once (issue 14: oldest first, in the payment's
    // transaction); the account shows what is left.
    add_credit(&app, &admin, "buyer@example.com", "50.00", "bank-1").await;
    let total: i64 = sqlx::query_scalar("SELECT total_minor FROM invoices WHERE id = $1").bind(invoice).fetch_one(&app.pool).await.unwrap();
    let (_, acct) = app.get(&c, "/account").await;
    let left = 5000 - total;
    assert!(acct.contains(&format!("{}.{:02} EUR", left / 100, left % 100)), "{acct}");
    let (_, inv_page) = app.get(&c, &format!("/invoices/{invoice}")).await;
    assert!(inv_page.contains("id=\"invoice-status\">paid"), "{inv_page}");
    let (_, servers) = app.get(&c, "/servers").await;
    // In the customer's words, not the internal state name.
    assert!(servers.contains("web1.example.com") && servers.contains("Being set up"), "{servers}");
    let id: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE hostname = 'web1.example.com'").fetch_one(&app.pool).await.unwrap();
    let (s, detail) = app.get(&c, &format!("/servers/{id}")).await;
    assert_eq!(s, 200);
    assert!(detail.contains("Burst S") && detail.contains("debian-12"), "{detail}");
    assert_eq!(detail.matches("<svg").count(), 4, "four usage charts, drawn on the server");
    // Pending (not yet what was asked): the page refreshes itself; once settled, it stops.
    assert!(detail.contains(r#"<meta http-equiv="refresh" content="5">"#), "{detail}");
    sqlx::query("UPDATE instances SET observed_state = 'running' WHERE id = $1").bind(id).execute(&app.pool).await.unwrap();
    let (_, settled) = app.get(&c, &format!("/servers/{id}")).await;
    assert!(!settled.contains("http-equiv=\"refresh\""), "{settled}");
    // An action is queued as a durable job for the orchestration.
    let (s, loc, body) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "stop")]).await;
    assert_eq!((s, loc.as_str()), (303, format!("/servers/{id}?done=requested").as_str()), "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE instance_id = $1 AND kind = 'instance.action'")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    let (s, _, _) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "explode")]).await;
    assert_eq!(s, 400);
    // Reinstall asks first; only the explicit second step queues it.
    let (s, _, body) = app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "reinstall")]).await;
    assert_eq!(s, 200);
    assert!(body.contains("erases everything"), "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE instance_id = $1 AND kind = 'instance.action'")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "nothing queued by the question");
    let (s, _, _) =
        app.submit(&c, &format!("/servers/{id}"), &format!("/servers/{id}/action"), &[("action", "reinstall"), ("confirm", "yes")]).await;
    assert_eq!(s, 303);

    // The printable invoice and the lists.
    let (s, print) = app.get(&c, &format!("/invoices/{invoice}/print")).await;
    assert_eq!(s, 200);
    assert!(print.contains("INV-") && print.contains("Billed to"), "{print}");
    let (_, list) = app.get(&c, "/invoices").await;
    assert!(list.contains("INV-"));
    let (_, orders) = app.get(&c, "/orders").await;
    assert!(orders.contains("web1.example.com"));
    // The admin sees the payment in the audit log, with the address it came from.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'payment.record' AND remote_addr = '127.0.0.1'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The invoice and payment mails went out through the outbox and SMTP.
    app.smtp.wait_for("buyer@example.com", "Invoice INV-").await;
    app.smtp.wait_for("buyer@example.com", "Payment received: 50.00 EUR").await;
}

/// Rows whose count any accepted form would change.
async fn fingerprint(pool: &PgPool) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "accounts",
        "sessions",
        "orders",
        "invoices",
        "payments",
        "jobs",
        "audit_log",
        "email_outbox",
        "plans",
        "hosts",
        "ip_pools",
        "ip_addresses",
        "os_templates",
        "account_tokens",
        "login_failures",
    ] {
        out.push(sqlx::query_scalar(&format!("SELECT count(*) FROM {t}")).fetch_one(pool).await.unwrap());
    }
    let states: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM instances WHERE desired_state = 'running') * 1000 + (SELECT count(*) FROM invoices WHERE status = 'paid') * 100 \
         + (SELECT count(*) FROM accounts WHERE status = 'suspended') * 10 + (SELECT count(*) FROM accounts WHERE totp_secret IS NOT NULL)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    out.push(states);
    out
}

#[tokio::test]
async fn another_customer_gets_404_for_every_page_and_action() {
    let app = crate::helpers::spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let ana = app.customer("ana@example.com").await;
    add_credit(&app, &admin, "ana@example.com", "100", "bank-ana").await;
    let b = order_and_pay(&app, &ana, "ana.example.com").await;
    let bob = app.customer("bob@example.com").await;
    add_credit(&app, &admin, "bob@example.com", "100", "bank-bob").await;

    let pages = [
        format!("/orders/{}", b.order),
        format!("/invoices/{}", b.invoice),
        format!("/invoices/{}/print", b.invoice),
        format!("/servers/{}", b.server),
    ];
    for p in &pages {
        let (s, _) = app.get(&ana, p).await;
        assert_eq!(s, 200, "the owner sees {p}");
        let (s, body) = app.get(&bob, p).await;
        assert_eq!(s, 404, "another customer gets 404 for {p}");
        assert!(!body.contains("ana.example.com") && !body.contains("ana@example.com"), "no leak on {p}");
    }
    // Lists show only one's own.
    for p in ["/orders", "/invoices", "/servers"] {
        let (_, body) = app.get(&bob, p).await;
        assert!(!body.contains("ana.example.com") && !body.contains(&b.invoice.to_string()), "{p} leaks");
    }
    // Actions on another's ids, with Bob's valid CSRF token: 404 and nothing changes.
    let (_, html) = app.get(&bob, "/servers").await;
    let csrf = csrf_of(&html);
    let before = fingerprint(&app.pool).await;
    for (path, form) in [
        (format!("/invoices/{}/pay", b.invoice), vec![]),
        (format!("/invoices/{}/card", b.invoice), vec![]),
        (format!("/servers/{}/action", b.server), vec![("action", "stop")]),
        (format!("/servers/{}/action", b.server), vec![("action", "reinstall")]),
        (format!("/servers/{}/action", b.server), vec![("action", "reinstall"), ("confirm", "yes")]),
    ] {
        let mut f = form.clone();
        f.push(("csrf", &csrf));
        let (s, _, _) = app.post(&bob, &path, &f).await;
        assert_eq!(s, 404, "{path}");
    }
    // An unknown or malformed id is the same 404 as another's.
    for p in [format!("/invoices/{}", Uuid::new_v4()), "/servers/not-a-uuid".into(), "/invoices/123/print".into(), "/orders/x".into()] {
        let (s, body) = app.get(&bob, &p).await;
        assert_eq!(s, 404, "{p}");
        assert!(body.contains("There is nothing here"), "{p}: {body}");
    }
    assert_eq!(fingerprint(&app.pool).await, before, "refused actions changed nothing");
}

#[tokio::test]
async fn every_form_refuses_a_missing_or_wrong_csrf_token() {
    let app = crate::helpers::spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let ana = app.customer("ana@example.com").await;
    add_credit(&app, &admin, "ana@example.com", "100", "bank-ana").await;
    let b = order_and_pay(&app, &ana, "ana.example.com").await;
    let ana_id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'ana@example.com'").fetch_one(&app.pool).await.unwrap();
    let host: Uuid = sqlx::query_scalar(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib) VALUES ('h1', 'http://h1:1', 4, 4096, 100) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let pool_id: Uuid =
        sqlx::query_scalar("INSERT INTO ip_pools (name, network, gateway) VALUES ('p', '10.0.0.0/29', '10.0.0.1') RETURNING id")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let tpl: Uuid = sqlx::query_scalar("SELECT id FROM os_templates LIMIT 1").fetch_one(&app.pool).await.unwrap();
    let (shop, shop_id) = crate::web_reseller::reseller(&app, "shop@example.com").await;
    let key = panel::api_keys::create(&app.pool, shop_id, "k", &[panel::api_keys::Scope::Read], None).await.unwrap().row.id;
    let ep = panel::webhooks::create_endpoint(&app.pool, shop_id, "https://hooks.example.com/x", None).await.unwrap().id;
    let delivery = crate::web_reseller::failed_delivery(&app, shop_id, ep).await;
    let dead_job: Uuid = sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, instance_id, status, attempts) VALUES ('instance.converge', jsonb_build_object('instance_id', $1::text), $1, 'dead', 10) RETURNING id",
    )
    .bind(b.server)
    .fetch_one(&app.pool)
    .await
    .unwrap();

    // (route as written in the source, path, who posts, a form that would be accepted with a token)
    let anon = client();
    type Case<'a> = (&'a str, String, &'a reqwest::Client, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        ("/signup", "/signup".into(), &anon, vec![("email", "x@example.com".into()), ("password", "correct horse battery".into())]),
        ("/login", "/login".into(), &anon, vec![("email", "ana@example.com".into()), ("password", "correct horse battery".into())]),
        ("/login/totp", "/login/totp".into(), &anon, vec![("code", "123456".into())]),
        ("/logout", "/logout".into(), &ana, vec![]),
        ("/reset", "/reset".into(), &anon, vec![("email", "ana@example.com".into())]),
        ("/reset/{token}", "/reset/sometoken".into(), &anon, vec![("password", "a brand new password".into())]),
        ("/verify/{token}", "/verify/sometoken".into(), &anon, vec![]),
        ("/invitation/{token}", "/invitation/sometoken".into(), &anon, vec![("password", "a brand new password".into())]),
        ("/admin/servers/{id}/action", format!("/admin/servers/{}/action", b.server), &admin, vec![("action", "stop".into())]),
        ("/admin/jobs/{id}/retry", format!("/admin/jobs/{dead_job}/retry"), &admin, vec![]),
        ("/verify/resend", "/verify/resend".into(), &anon, vec![("email", "ana@example.com".into())]),
        (
            "/account/details",
            "/account/details".into(),
            &ana,
            vec![("name", "Eve".into()), ("country", "DE".into()), ("time_zone", "UTC".into())],
        ),
        ("/account/totp/begin", "/account/totp/begin".into(), &ana, vec![]),
        ("/account/totp/confirm", "/account/totp/confirm".into(), &ana, vec![("code", "123456".into())]),
        ("/account/totp/disable", "/account/totp/disable".into(), &ana, vec![("code", "123456".into())]),
        ("/account/totp/recovery-codes", "/account/totp/recovery-codes".into(), &ana, vec![("code", "123456".into())]),
        ("/account/funds/card", "/account/funds/card".into(), &ana, vec![("amount", "10".into())]),
        (
            "/account/password",
            "/account/password".into(),
            &ana,
            vec![("current_password", "correct horse battery".into()), ("new_password", "a brand new password".into())],
        ),
        (
            "/account/email",
            "/account/email".into(),
            &ana,
            vec![("current_password", "correct horse battery".into()), ("new_email", "ana2@example.com".into())],
        ),
        ("/account/email/{token}", "/account/email/sometoken".into(), &anon, vec![]),
        (
            "/order/{code}",
            "/order/burst-s".into(),
            &ana,
            vec![
                ("cycle", "monthly".into()),
                ("os_template", "debian-12".into()),
                ("hostname", "z.example.com".into()),
                ("root_password", "a root password 1".into()),
            ],
        ),
        ("/invoices/{id}/pay", format!("/invoices/{}/pay", b.invoice), &ana, vec![]),
        ("/invoices/{id}/card", format!("/invoices/{}/card", b.invoice), &ana, vec![]),
        ("/servers/{id}/action", format!("/servers/{}/action", b.server), &ana, vec![("action", "stop".into())]),
        ("/servers/{id}/password", format!("/servers/{}/password", b.server), &ana, vec![("root_password", "a new root password".into())]),
        ("/servers/{id}/plan", format!("/servers/{}/plan", b.server), &ana, vec![("plan", "burst-m".into()), ("shown_total", "0".into())]),
        ("/servers/{id}/cancel", format!("/servers/{}/cancel", b.server), &ana, vec![("when", "now".into())]),
        (
            "/servers/{id}/firewall",
            format!("/servers/{}/firewall", b.server),
            &ana,
            vec![("rules", "accept tcp 22".into()), ("default_policy", "drop".into())],
        ),
        (
            "/account/ssh-keys",
            "/account/ssh-keys".into(),
            &ana,
            vec![
                ("name", "k".into()),
                ("public_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ x".into()),
            ],
        ),
        ("/account/ssh-keys/{id}/delete", format!("/account/ssh-keys/{}/delete", uuid::Uuid::new_v4()), &ana, vec![]),
        ("/admin/plans", "/admin/plans".into(), &admin, vec![("code", "x".into())]),
        ("/admin/plans/{code}", "/admin/plans/burst-s".into(), &admin, vec![("name", "x".into())]),
        ("/admin/hosts", "/admin/hosts".into(), &admin, vec![("name", "h2".into())]),
        ("/admin/hosts/{id}", format!("/admin/hosts/{host}"), &admin, vec![("name", "h3".into())]),
        (
            "/admin/hosts/register",
            "/admin/hosts/register".into(),
            &admin,
            vec![("name", "h4".into()), ("api_url", "https://h4.example.net".into())],
        ),
        (
            "/admin/ip-pools",
            "/admin/ip-pools".into(),
            &admin,
            vec![("name", "q".into()), ("network", "10.1.0.0/29".into()), ("gateway", "10.1.0.1".into())],
        ),
        ("/admin/ip-pools/{id}/generate", format!("/admin/ip-pools/{pool_id}/generate"), &admin, vec![("count", "5".into())]),
        (
            "/admin/os-templates",
            "/admin/os-templates".into(),
            &admin,
            vec![("name", "alpine".into()), ("display_name", "Alpine".into()), ("for_containers", "on".into())],
        ),
        ("/admin/os-templates/{id}/toggle", format!("/admin/os-templates/{tpl}/toggle"), &admin, vec![("to", "disable".into())]),
        ("/admin/customers/{id}/status", format!("/admin/customers/{ana_id}/status"), &admin, vec![("to", "suspend".into())]),
        ("/admin/customers/{id}/mark-verified", format!("/admin/customers/{ana_id}/mark-verified"), &admin, vec![]),
        ("/admin/customers/{id}/resend-verification", format!("/admin/customers/{ana_id}/resend-verification"), &admin, vec![]),
        ("/admin/security", "/admin/security".into(), &admin, vec![("require_staff_two_factor", "on".into())]),
        (
            "/admin/customers/{id}/credit",
            format!("/admin/customers/{ana_id}/credit"),
            &admin,
            vec![("amount", "5".into()), ("reference", "r".into())],
        ),
        (
            "/admin/customers/{id}/invoice",
            format!("/admin/customers/{ana_id}/invoice"),
            &admin,
            vec![("description", "x".into()), ("amount", "5".into())],
        ),
        ("/admin/invoices/{id}/void", format!("/admin/invoices/{}/void", b.invoice), &admin, vec![]),
        (
            "/admin/invoices/{id}/payment",
            format!("/admin/invoices/{}/payment", b.invoice),
            &admin,
            vec![("amount", "5".into()), ("reference", "r2".into())],
        ),
        ("/admin/resellers", "/admin/resellers".into(), &admin, vec![("email", "r@example.com".into()), ("name", "R".into())]),
        (
            "/admin/resellers/{id}",
            format!("/admin/resellers/{shop_id}"),
            &admin,
            vec![
                ("discount", "10".into()),
                ("max_servers", "1".into()),
                ("max_vcpus", "1".into()),
                ("max_memory_mib", "1".into()),
                ("max_disk_gib", "1".into()),
            ],
        ),
        ("/reseller/keys", "/reseller/keys".into(), &shop, vec![("name", "k2".into()), ("scope_read", "on".into())]),
        ("/reseller/keys/{id}/revoke", format!("/reseller/keys/{key}/revoke"), &shop, vec![]),
        ("/reseller/webhooks", "/reseller/webhooks".into(), &shop, vec![("url", "https://hooks.example.com/y".into())]),
        ("/reseller/webhooks/{id}/state", format!("/reseller/webhooks/{ep}/state"), &shop, vec![("to", "disable".into())]),
        ("/reseller/webhooks/{id}/rotate", format!("/reseller/webhooks/{ep}/rotate"), &shop, vec![]),
        ("/reseller/webhooks/{id}/delete", format!("/reseller/webhooks/{ep}/delete"), &shop, vec![]),
        (
            "/reseller/webhooks/{id}/deliveries/{delivery}/resend",
            format!("/reseller/webhooks/{ep}/deliveries/{delivery}/resend"),
            &shop,
            vec![],
        ),
    ];

    // Every POST route in the panel's source is covered. Machine APIs are exempt: the Stripe
    // webhook is signed by Stripe, a host's join carries its one-time join token, and the
    // reseller API (src/api/) takes only a bearer key; none uses a session cookie, so there is
    // nothing for a forged form to ride on.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut routes = Vec::new();
    let mut stack = vec![src];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("api") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                for l in std::fs::read_to_string(&p).unwrap().lines() {
                    if let Some(r) = l.trim().strip_prefix("#[post(\"").and_then(|r| r.strip_suffix("\")]")) {
                        routes.push(r.to_string());
                    }
                }
            }
        }
    }
    for r in &routes {
        let machine_api = ["/webhooks/stripe", "/hosts/join"].contains(&r.as_str());
        assert!(machine_api || cases.iter().any(|c| c.0 == r), "POST {r} is not covered by this test");
    }

    let (_, other) = app.get(&client(), "/login").await;
    let foreign = csrf_of(&other);
    let before = fingerprint(&app.pool).await;
    for (route, path, who, form) in &cases {
        for token in [None, Some("0".repeat(64)), Some(foreign.clone())] {
            let mut f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(t) = &token {
                f.push(("csrf", t));
            }
            let (s, _, body) = app.post(who, path, &f).await;
            assert_eq!(s, 403, "{route} with token {token:?}: {body}");
        }
    }
    assert_eq!(fingerprint(&app.pool).await, before, "no refused form changed anything");
    // And the sessions still work: the refusals did not log anyone out.
    let (s, _) = app.get(&ana, "/account").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn country_sets_the_tax_and_the_time_zone_only_the_display() {
    let app = crate::helpers::spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let c = app.customer("de@example.com").await;
    let (s, _, body) =
        app.submit(&c, "/account", "/account/details", &[("name", "Dora"), ("country", "Germany"), ("time_zone", "UTC")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("choose your country from the list"), "{body}");
    let (s, _, body) =
        app.submit(&c, "/account", "/account/details", &[("name", "Dora"), ("country", "de"), ("time_zone", "Mars/Olympus")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("is not a time zone"), "{body}");
    let (s, _, _) =
        app.submit(&c, "/account", "/account/details", &[("name", "Dora"), ("country", "de"), ("time_zone", "Asia/Tokyo")]).await;
    assert_eq!(s, 303);
    add_credit(&app, &admin, "de@example.com", "20", "bank-de").await;
    let b = order_and_pay(&app, &c, "tokyo.example.com").await;
    let (_, inv) = app.get(&c, &format!("/invoices/{}", b.invoice)).await;
    assert!(inv.contains("19.00 %") && inv.contains("3.57 EUR"), "German VAT on 3.00 EUR: {inv}");
    let (_, server) = app.get(&c, &format!("/servers/{}", b.server)).await;
    assert!(server.contains(" JST"), "times shown in the customer's zone: {server}");
}

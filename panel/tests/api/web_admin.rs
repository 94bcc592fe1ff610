//! The admin area through its pages: only admins see it, every form validates like the
//! matching service, and every change lands in the audit log with the admin's address.

use crate::helpers::{client, spawn_web_app};

const PLAN: &[(&str, &str)] = &[
    ("code", "web-xs"),
    ("name", "Web XS"),
    ("description", "Tiny"),
    ("kind", "container"),
    ("vcpus", "1"),
    ("memory_guaranteed_mib", "256"),
    ("memory_burst_mib", "512"),
    ("swap_mib", "0"),
    ("disk_gib", "5"),
    ("cpu_ratio", "4"),
    ("memory_ratio", "1.5"),
    ("disk_ratio", "2"),
    ("pids_max", ""),
    ("net_rate_mbit", ""),
    ("io_weight", ""),
    ("bandwidth_gib", "500"),
    ("eur_monthly", "199"),
    ("eur_quarterly", ""),
    ("eur_annual", ""),
    ("usd_monthly", ""),
    ("usd_quarterly", ""),
    ("usd_annual", ""),
];

#[tokio::test]
async fn only_admins_see_the_admin_area() {
    let app = spawn_web_app().await;
    let customer = app.customer("cust@example.com").await;
    for path in [
        "/admin",
        "/admin/plans",
        "/admin/hosts",
        "/admin/ip-pools",
        "/admin/os-templates",
        "/admin/customers",
        "/admin/resellers",
        "/admin/audit",
    ] {
        let (s, _) = app.get(&customer, path).await;
        assert_eq!(s, 404, "{path} as a customer");
        let (s, _) = app.get(&client(), path).await;
        assert_eq!(s, 303, "{path} anonymously: log in first");
    }
    let admin = app.admin("root@example.com").await;
    for path in [
        "/admin",
        "/admin/plans",
        "/admin/plans/new",
        "/admin/hosts",
        "/admin/hosts/new",
        "/admin/ip-pools",
        "/admin/os-templates",
        "/admin/customers",
        "/admin/resellers",
        "/admin/audit",
        "/admin/emails",
        "/admin/invoices",
    ] {
        let (s, body) = app.get(&admin, path).await;
        assert_eq!(s, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn an_admin_creates_and_versions_a_plan_with_the_plan_file_rules() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    // Burst below guarantee: refused with the field named, nothing written.
    let mut bad: Vec<(&str, &str)> = PLAN.to_vec();
    bad.iter_mut().find(|(k, _)| *k == "memory_burst_mib").unwrap().1 = "128";
    let (s, _, body) = app.submit(&admin, "/admin/plans/new", "/admin/plans", &bad).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("id=\"error-memory_burst_mib\""), "{body}");
    let (s, loc, body) = app.submit(&admin, "/admin/plans/new", "/admin/plans", PLAN).await;
    assert_eq!(s, 303, "{body}");
    assert!(loc.starts_with("/admin/plans?done=saved"));
    let (_, home) = app.get(&client(), "/").await;
    assert!(home.contains("Web XS") && home.contains("1.99 EUR"), "the new plan is on sale");
    // The same code twice is refused.
    let (s, _, _) = app.submit(&admin, "/admin/plans/new", "/admin/plans", PLAN).await;
    assert_eq!(s, 422);

    // Once ordered, an edit makes version 2 and keeps version 1 for its subscriber.
    sqlx::query(
        "WITH a AS (INSERT INTO accounts (role, email) VALUES ('customer', 'o@example.com') RETURNING id)
         INSERT INTO orders (account_id, plan_id, cycle, os_template_id, hostname)
         SELECT a.id, (SELECT id FROM plans WHERE code = 'web-xs'), 'monthly', (SELECT id FROM os_templates LIMIT 1), 'a.example.com' FROM a",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut edit: Vec<(&str, &str)> = PLAN.to_vec();
    edit.iter_mut().find(|(k, _)| *k == "eur_monthly").unwrap().1 = "249";
    let (s, _, body) = app.submit(&admin, "/admin/plans/web-xs/edit", "/admin/plans/web-xs", &edit).await;
    assert_eq!(s, 303, "{body}");
    let versions: Vec<(i32, bool)> =
        sqlx::query_as("SELECT version, orderable FROM plans WHERE code = 'web-xs' ORDER BY version").fetch_all(&app.pool).await.unwrap();
    assert_eq!(versions, vec![(1, false), (2, true)]);
    let audit: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT action, host(remote_addr) FROM audit_log WHERE target_type = 'plan' ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit, vec![("plan.create".into(), Some("127.0.0.1".into())), ("plan.update".into(), Some("127.0.0.1".into()))]);
}

#[tokio::test]
async fn hosts_pools_templates_and_resellers_are_kept_and_audited() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let host = [
        ("name", "host-fra-1"),
        ("api_url", "https://fra1.example.net:7443"),
        ("supports_containers", "on"),
        ("supports_kvm", "on"),
        ("cpus", "32"),
        ("memory_mib", "131072"),
        ("disk_gib", "4000"),
        ("reserved_cpus", "32"),
        ("reserved_memory_mib", "4096"),
        ("reserved_disk_gib", "100"),
        ("enabled", "on"),
    ];
    let (s, _, body) = app.submit(&admin, "/admin/hosts/new", "/admin/hosts", &host).await;
    assert_eq!(s, 422);
    assert!(body.contains("id=\"error-reserved_cpus\""), "{body}");
    let mut host = host.to_vec();
    host[7].1 = "2";
    let (s, _, body) = app.submit(&admin, "/admin/hosts/new", "/admin/hosts", &host).await;
    assert_eq!(s, 303, "{body}");
    // Registering a host shows its join token once; only its hash is kept.
    let (s, _, page) = app
        .submit(&admin, "/admin/hosts", "/admin/hosts/register", &[("name", "host-ams-1"), ("api_url", "https://ams1.example.net:7443")])
        .await;
    assert_eq!(s, 200, "{page}");
    let token = page.split("works once): ").nth(1).unwrap().split('<').next().unwrap().trim().to_string();
    assert!(token.starts_with("vjt_"), "{token}");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT join_token_sha256 FROM hosts WHERE name = 'host-ams-1'").fetch_one(&app.pool).await.unwrap();
    assert!(stored.is_some_and(|h| !h.contains(&token)));
    let (_, list) = app.get(&admin, "/admin/hosts").await;
    assert!(list.contains("host-fra-1") && list.contains("32 CPU, 128 GiB, 4000 GiB"), "{list}");

    // A pool: host bits set is explained; then created and filled idempotently.
    let (s, _, body) = app
        .submit(
            &admin,
            "/admin/ip-pools",
            "/admin/ip-pools",
            &[("name", "fra-v4"), ("network", "203.0.113.9/28"), ("gateway", "203.0.113.1"), ("host_id", "")],
        )
        .await;
    assert_eq!(s, 422);
    assert!(body.contains("203.0.113.0/28"), "{body}");
    let (s, _, _) = app
        .submit(
            &admin,
            "/admin/ip-pools",
            "/admin/ip-pools",
            &[("name", "fra-v4"), ("network", "203.0.113.0/28"), ("gateway", "203.0.113.1"), ("host_id", "")],
        )
        .await;
    assert_eq!(s, 303);
    let pool_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM ip_pools WHERE name = 'fra-v4'").fetch_one(&app.pool).await.unwrap();
    for _ in 0..2 {
        let (s, _, _) = app.submit(&admin, "/admin/ip-pools", &format!("/admin/ip-pools/{pool_id}/generate"), &[("count", "1024")]).await;
        assert_eq!(s, 303);
    }
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ip_addresses WHERE pool_id = $1").bind(pool_id).fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 13, "16 addresses minus network, broadcast and gateway, added once");
    // A private pool: its hosts masquerade it (IPv4 only).
    let (s, _, body) = app
        .submit(
            &admin,
            "/admin/ip-pools",
            "/admin/ip-pools",
            &[("name", "priv-v6"), ("network", "fd00:9::/64"), ("gateway", "fd00:9::1"), ("host_id", ""), ("nat", "on")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, _, _) = app
        .submit(
            &admin,
            "/admin/ip-pools",
            "/admin/ip-pools",
            &[("name", "priv-v4"), ("network", "10.9.0.0/24"), ("gateway", "10.9.0.1"), ("host_id", ""), ("nat", "on")],
        )
        .await;
    assert_eq!(s, 303);
    let nat: Vec<(String, bool)> =
        sqlx::query_as("SELECT name, nat FROM ip_pools WHERE name IN ('fra-v4', 'priv-v4', 'priv-v6') ORDER BY name")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(nat, vec![("fra-v4".to_string(), false), ("priv-v4".to_string(), true)]);

    let (s, _, body) = app
        .submit(
            &admin,
            "/admin/os-templates",
            "/admin/os-templates",
            &[("name", "Alpine 3.20!"), ("display_name", "Alpine"), ("for_containers", "on")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    // Only a template the hosts know (vessel_core::templates) can be sold.
    let (s, _, body) = app
        .submit(
            &admin,
            "/admin/os-templates",
            "/admin/os-templates",
            &[("name", "alpine-3.20"), ("display_name", "Alpine 3.20"), ("version", "3.20"), ("for_containers", "on")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("no host builds a template of that name") && body.contains("debian-12"), "{body}");
    let (s, _, body) = app
        .submit(
            &admin,
            "/admin/os-templates",
            "/admin/os-templates",
            &[("name", "busybox"), ("display_name", "Busybox"), ("for_kvm", "on")],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    let (s, _, _) = app
        .submit(
            &admin,
            "/admin/os-templates",
            "/admin/os-templates",
            &[("name", "busybox"), ("display_name", "Busybox"), ("version", "1.35"), ("for_containers", "on")],
        )
        .await;
    assert_eq!(s, 303);

    let (s, _, body) =
        app.submit(&admin, "/admin/resellers", "/admin/resellers", &[("email", "shop@example.com"), ("name", "Shop Ltd")]).await;
    assert_eq!(s, 303, "{body}");
    app.smtp.wait_for("shop@example.com", "You are invited to resell").await;
    let (_, mail) = app.get(&admin, "/admin/emails").await;
    assert!(mail.contains("shop@example.com") && mail.contains("reseller_invitation"), "{mail}");

    let (_, audit) = app.get(&admin, "/admin/audit").await;
    for action in ["host.create", "host.register", "ip_pool.create", "ip_pool.generate", "os_template.create", "reseller.create"] {
        assert!(audit.contains(action), "{action} in the audit page");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor_kind = 'admin' AND remote_addr = '127.0.0.1'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 7, "one row per change (two generate clicks), each with the admin's address");
    // (host.register is the billing half's service, which records no address.)
}

#[tokio::test]
async fn suspending_a_customer_signs_them_out() {
    let app = spawn_web_app().await;
    let cust = app.customer("sus@example.com").await;
    let admin = app.admin("root@example.com").await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'sus@example.com'").fetch_one(&app.pool).await.unwrap();
    let page = format!("/admin/customers/{id}");
    let (s, _, body) = app.submit(&admin, &page, &format!("{page}/status"), &[("to", "suspend")]).await;
    assert_eq!(s, 422, "a suspension needs a reason: {body}");
    let (s, _) = app.get(&cust, "/account").await;
    assert_eq!(s, 200, "nothing changed");
    let (s, _, _) = app.submit(&admin, &page, &format!("{page}/status"), &[("to", "suspend"), ("reason", "Abuse report #42")]).await;
    assert_eq!(s, 303);
    let (s, _) = app.get(&cust, "/account").await;
    assert_eq!(s, 303, "signed out");
    let (s, _, body) =
        app.submit(&client(), "/login", "/login", &[("email", "sus@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("suspended"));
    let (s, _, _) = app.submit(&admin, &page, &format!("{page}/status"), &[("to", "unsuspend")]).await;
    assert_eq!(s, 303);
    let (s, _, _) = app.submit(&client(), "/login", "/login", &[("email", "sus@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 303);
}

/// A sign-up whose mail went astray: the admin reads the mail's text on the mail page (the
/// link in it), sends a fresh link (the old one stops working) or vouches for the address;
/// only a pending sign-up gets either, and both are audited.
#[tokio::test]
async fn an_admin_reads_mail_and_unsticks_a_pending_sign_up() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let c = client();
    let (s, _, body) = app
        .submit(&c, "/signup", "/signup", &[("email", "stuck@example.com"), ("password", "correct horse battery"), ("name", "Stu")])
        .await;
    assert_eq!(s, 200, "{body}");
    let sent = app.smtp.wait_for("stuck@example.com", "Confirm your email").await;
    let first_link = sent.link("/verify/").unwrap();
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'stuck@example.com'").fetch_one(&app.pool).await.unwrap();

    // The mail list links each message; its page shows the text, the link included.
    let (s, list) = app.get(&admin, "/admin/emails").await;
    assert_eq!(s, 200);
    let mail_id: i64 =
        sqlx::query_scalar("SELECT id FROM email_outbox WHERE to_address = 'stuck@example.com'").fetch_one(&app.pool).await.unwrap();
    assert!(list.contains(&format!("/admin/emails/{mail_id}")), "{list}");
    let (s, page) = app.get(&admin, &format!("/admin/emails/{mail_id}")).await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("Confirm your email"), "the subject: {page}");
    let token = first_link.rsplit('/').next().unwrap();
    assert!(!page.contains(token), "a verification link is a secret, even from admins: {page}");
    assert!(page.contains("a single-use link was sent"), "the page says one was sent: {page}");
    let (s, _) = app.get(&admin, "/admin/emails/999999").await;
    assert_eq!(s, 404);
    let (s, _) = app.get(&c, &format!("/admin/emails/{mail_id}")).await;
    assert_eq!(s, 303, "not for anyone but an admin");

    // Resend: a new mail, the first link dead.
    let page = format!("/admin/customers/{id}");
    let (_, html) = app.get(&admin, &page).await;
    assert!(html.contains("id=\"mark-verified\"") && html.contains("id=\"resend-verification\""), "{html}");
    let (s, loc, body) = app.submit(&admin, &page, &format!("{page}/resend-verification"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, format!("{page}?done=resent").as_str()), "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.smtp.mails().iter().filter(|m| m.to.iter().any(|t| t == "stuck@example.com")).count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second verification mail");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, _) = app.get(&c, first_link.strip_prefix(&app.address).unwrap()).await;
    assert_eq!(s, 422, "the first link no longer works");

    // Mark verified: the customer logs in; a second mark or resend is refused, changing nothing.
    let (s, loc, body) = app.submit(&admin, &page, &format!("{page}/mark-verified"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, format!("{page}?done=saved").as_str()), "{body}");
    let (s, loc, body) = app.submit(&c, "/login", "/login", &[("email", "stuck@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"), "{body}");
    let (s, _, body) = app.submit(&admin, &page, &format!("{page}/mark-verified"), &[]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("awaiting verification"), "{body}");
    let mails: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE to_address = 'stuck@example.com'").fetch_one(&app.pool).await.unwrap();
    let (s, _, _) = app.submit(&admin, &page, &format!("{page}/resend-verification"), &[]).await;
    assert_eq!(s, 422);
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE to_address = 'stuck@example.com'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(after, mails, "no mail for a verified account");
    let audit: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id")
        .bind(id.to_string())
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(audit, vec!["customer.resend_verification", "customer.mark_verified"]);
    // Another customer's id that is not a customer: 404.
    let (s, _, _) = app.submit(&admin, &page, &format!("/admin/customers/{}/mark-verified", uuid::Uuid::new_v4()), &[]).await;
    assert_eq!(s, 404);
}

/// A host's join token stops working after its lifetime (`[orchestration]
/// join_token_ttl_hours` for the admin's page); a fresh one works; an expired one changes nothing.
#[tokio::test]
async fn host_join_tokens_expire() {
    let app = crate::helpers::spawn_web_app_with(|s| s.orchestration.join_token_ttl_hours = 2).await;
    let admin = app.admin("root@example.com").await;
    let (s, _, page) = app
        .submit(&admin, "/admin/hosts", "/admin/hosts/register", &[("name", "host-ttl-1"), ("api_url", "https://ttl1.example.net:7443")])
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("expires in 2 hours"), "{page}");
    let left: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM join_token_expires_at - now())::float8 FROM hosts WHERE name = 'host-ttl-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!((7000.0..=7200.0).contains(&left), "the configured two hours: {left} s");

    let join = |token: String, name: &str| vessel_core::wire::JoinRequest {
        token,
        name: name.into(),
        api_url: "https://10.9.9.9:7443".into(),
        capacity: vessel_core::admission::HostCapacity { cpus: 8, memory_mib: 16384, disk_gib: 200 },
        supports_containers: true,
        supports_kvm: false,
        tls_cert_sha256: None,
    };
    let (_, short) =
        panel::hosts::register_for(&app.pool, None, "host-ttl-2", "https://ttl2.example.net:7443", chrono::Duration::seconds(1))
            .await
            .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let e = panel::hosts::join(&app.pool, &join(short, "host-ttl-2")).await.expect_err("an expired token is refused");
    assert!(matches!(e, panel::hosts::JoinError::BadToken), "{e}");
    let (secret, enabled): (Option<Vec<u8>>, bool) =
        sqlx::query_as("SELECT api_secret, enabled FROM hosts WHERE name = 'host-ttl-2'").fetch_one(&app.pool).await.unwrap();
    assert!(secret.is_none() && !enabled, "nothing changed");
    let (_, fresh) = panel::hosts::register_for(&app.pool, None, "host-ttl-3", "https://ttl3.example.net:7443", chrono::Duration::hours(1))
        .await
        .unwrap();
    let joined = panel::hosts::join(&app.pool, &join(fresh, "host-ttl-3")).await.expect("a live token joins");
    assert!(!joined.secret.is_empty());
    assert!(panel::hosts::register_for(&app.pool, None, "host-ttl-4", "https://ttl4.example.net:7443", chrono::Duration::zero())
        .await
        .is_err());
}

/// A password-reset link read on the admin's mail page would let any admin take over the
/// account (an admin's too): the page says a link was sent, never the link, and is not cached.
#[tokio::test]
async fn the_admin_mail_page_never_shows_a_reset_link() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    app.customer("victim@example.com").await;
    let c = client();
    let (s, _, _) = app.submit(&c, "/reset", "/reset", &[("email", "victim@example.com")]).await;
    assert_eq!(s, 200);
    let mail = app.smtp.wait_for("victim@example.com", "Choose a new password").await;
    let link = mail.link("/reset/").unwrap();
    let token = link.rsplit('/').next().unwrap().to_string();
    assert!(token.len() >= 16, "{link}");
    let mail_id: i64 =
        sqlx::query_scalar("SELECT id FROM email_outbox WHERE to_address = 'victim@example.com' AND template = 'password_reset'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let res = admin.get(app.url(&format!("/admin/emails/{mail_id}"))).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let page = res.text().await.unwrap();
    assert!(page.contains("Choose a new password"), "{page}");
    assert!(!page.contains(&token), "the reset token must not be shown: {page}");
    assert!(!page.contains("/reset/"), "nor any reset link: {page}");
    assert!(page.contains("a single-use link was sent"), "{page}");
    // The mail that went out still carries the link, and it still works.
    let path = link.strip_prefix(&app.address).unwrap().to_string();
    let (s, loc, _) = app.submit(&c, &path, &path, &[("password", "a brand new password")]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=reset"));
}

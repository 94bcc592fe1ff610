//! Selling only what can be delivered (issue 14): a plan no active host could ever run is
//! marked unavailable and refused (pages, API, orders), by core's admission rule; an order
//! that waits too long for capacity is refunded once, and the payer and the admins are told;
//! a server ended before it is delivered gets all of its period back, one used for a while
//! the unused days.

use crate::billing_world::World;
use crate::helpers::spawn_web_app;
use panel::clock::Clock;
use panel::orders::OrderError;
use panel::plans::BillingCycle::Monthly;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

/// A joined, enabled, reachable host of both kinds with this capacity.
async fn host(pool: &PgPool, name: &str, cpus: i32, memory_mib: i64) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, api_secret, reachability)
         VALUES ($1, 'http://127.0.0.1:1', $2, $3, 2000, '\\x00112233445566778899aabbccddeeff', 'reachable') RETURNING id",
    )
    .bind(name)
    .bind(cpus)
    .bind(memory_mib)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The case: KVM Dedicated 4 needs 4 pinned cores and every host has 2. The
/// catalogue page and the API mark it unavailable; the web order, the API's create and a
/// direct `place_order` are refused with the reason and change nothing; plans that fit are
/// still sold; a host with 4 cores makes it available again.
#[tokio::test]
async fn kvm_dedicated_4_on_two_core_hosts_is_not_sold_through_the_web_or_the_api() {
    let app = spawn_web_app().await;
    let pool = &app.pool;
    host(pool, "small-1", 2, 16384).await;
    host(pool, "small-2", 2, 16384).await;
    // A disabled big host does not count: it takes nothing.
    let big = host(pool, "big-off", 16, 65536).await;
    sqlx::query("UPDATE hosts SET enabled = false WHERE id = $1").bind(big).execute(pool).await.unwrap();

    // The catalogue page: no order link for kvm-d4, a reason instead; burst-s still orderable.
    let anon = crate::helpers::client();
    let (s, html) = app.get(&anon, "/").await;
    assert_eq!(s, 200);
    let card = &html[html.find("id=\"plan-kvm-d4\"").expect("the kvm-d4 card")..];
    let card = &card[..card.find("class=\"card plan\"").unwrap_or(card.len())];
    assert!(card.contains("Unavailable"), "{card}");
    assert!(card.contains("needs 4 cores of cpu"), "{card}");
    assert!(!card.contains("/order/kvm-d4"), "an unavailable plan has no order link: {card}");
    assert!(!card.contains("small-1"), "host names are not shown to customers: {card}");
    assert!(html.contains("href=\"/order/burst-s\""), "plans that fit are sold");
    assert!(html.contains("href=\"/order/kvm-d2\""), "kvm-d2 (2 cores) fits a 2-core host");

    // The order form says so, and posting it anyway is refused on the form, with nothing made.
    let ana = app.customer("ana@example.com").await;
    let (s, form) = app.get(&ana, "/order/kvm-d4").await;
    assert_eq!(s, 200);
    assert!(form.contains("id=\"plan-unavailable\""), "{form}");
    let (s, _, body) = app
        .submit(
            &ana,
            "/order/kvm-d4",
            "/order/kvm-d4",
            &[
                ("cycle", "monthly"),
                ("os_template", "debian-12"),
                ("hostname", "db.example.com"),
                ("root_password", "a long root password 1"),
            ],
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("this plan is unavailable"), "{body}");
    assert_eq!(count(pool, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(count(pool, "SELECT count(*) FROM invoices").await, 0, "nobody is invoiced for it");

    // The API: marked in GET /plans, refused on POST /servers naming the field.
    let reseller: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at) VALUES ('reseller', 'r@resell.example', 'R', 'active', now()) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let token = panel::api_keys::create(pool, reseller, "t", &[panel::api_keys::Scope::Read, panel::api_keys::Scope::Write], None)
        .await
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(app.url(path)).bearer_auth(&token).send();
    let v: Value = get("/api/v1/plans/kvm-d4").await.unwrap().json().await.unwrap();
    assert_eq!(v["available"], false, "{v}");
    assert!(v["unavailable_reason"].as_str().unwrap().contains("cpu"), "{v}");
    let v: Value = get("/api/v1/plans/burst-s").await.unwrap().json().await.unwrap();
    assert_eq!((v["available"].clone(), v.get("unavailable_reason")), (json!(true), None), "{v}");
    let r = http
        .post(app.url("/api/v1/customers"))
        .bearer_auth(&token)
        .json(&json!({"email": "c@example.com", "name": "C", "country": "DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let customer: Value = r.json().await.unwrap();
    let body = json!({"customer_id": customer["id"], "plan": "kvm-d4", "os_template": "debian-12", "hostname": "db.example.com"});
    let r = http.post(app.url("/api/v1/servers")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert!(v.to_string().contains("plan") && v.to_string().contains("unavailable"), "{v}");
    assert_eq!(count(pool, "SELECT count(*) FROM instances").await, 0, "no server was made");
    assert_eq!(count(pool, "SELECT count(*) FROM invoices").await, 0, "the reseller is not invoiced for it");

    // A 4-core host joins: it is sold again, everywhere.
    host(pool, "big-1", 4, 16384).await;
    let v: Value = get("/api/v1/plans/kvm-d4").await.unwrap().json().await.unwrap();
    assert_eq!(v["available"], true, "{v}");
    let (_, html) = app.get(&anon, "/").await;
    assert!(html.contains("href=\"/order/kvm-d4\""));
    let r = http.post(app.url("/api/v1/servers")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
}

/// The domain's order path refuses it too (the page and the API are not the only way in), and
/// a resize to a plan no host can run is refused.
#[tokio::test]
async fn orders_and_resizes_to_a_plan_no_host_can_run_are_refused() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    host(&w.pool, "tiny", 2, 3072).await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    let req = |plan: &str| panel::orders::OrderRequest {
        plan_code: plan.into(),
        cycle: Monthly,
        os_template: "debian-12".into(),
        hostname: "db.example.com".into(),
        coupon: None,
    };
    match panel::orders::place_order(&w.pool, &w.clock, ana, req("kvm-d4")).await {
        Err(OrderError::Unavailable(why)) => assert!(why.contains("cpu"), "{why}"),
        other => panic!("kvm-d4 on a 2-core host: {other:?}"),
    }
    // burst-l commits 4096/1.5 MiB of memory and guarantees 2048: a 3 GiB host could hold it;
    // kvm-d2 needs 4 GiB of dedicated memory: no.
    match panel::orders::place_order(&w.pool, &w.clock, ana, req("kvm-d2")).await {
        Err(OrderError::Unavailable(why)) => assert!(why.contains("memory"), "{why}"),
        other => panic!("kvm-d2 on a 3 GiB host: {other:?}"),
    }
    let placed = w.order(ana, "burst-s", Monthly, None).await;
    w.credit(ana, 10_000).await;
    w.pay(ana, placed.invoice_id).await;
    let e = panel::billing::proration::change_plan(&w.pool, &w.clock, ana, placed.subscription_id, "burst-l").await;
    assert!(e.is_ok(), "burst-l fits: {e:?}");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders").await, 1, "only the order that can be delivered");
    w.invariants().await;
}

fn settings(refund_after_secs: i64) -> panel::config::OrchestrationSettings {
    panel::config::OrchestrationSettings {
        enabled: false,
        workers: 1,
        job_lease_secs: 30,
        job_notify: true,
        job_poll_ms: 300,
        reconcile_interval_secs: 1,
        host_timeout_secs: 1,
        unreachable_after_secs: 10,
        host_ca_file: None,
        join_token_ttl_hours: 24,
        capacity_refund_after_secs: refund_after_secs,
    }
}

async fn credit_of(pool: &PgPool, who: Uuid) -> i64 {
    panel::billing::payments::credit_balance(pool, who, panel::money::Currency::parse("EUR").unwrap()).await.unwrap().minor
}

/// A paid order waits for capacity (no host has room). Before the configured time nothing
/// happens; after it, the create job refunds it: a credit note for the whole period, tax
/// included, back as credit; the order and subscription cancelled, the VPS terminated; the
/// customer and the admins mailed. Run again, and by four parallel sweeps, nothing is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_waiting_too_long_for_capacity_is_refunded_once_and_both_sides_are_told() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    // Room for one burst-l (4 vCPU at 3.0 = 1.33 cores; 4096/1.5 MiB committed) and no more.
    host(&w.pool, "h1", 2, 3000).await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    let bo = w.customer("bo@example.com", Some("DE")).await;
    w.credit(ana, 1428).await; // burst-l with 19 % VAT
    w.credit(bo, 1428).await;
    let first = w.order(ana, "burst-l", Monthly, None).await;
    w.pay(ana, first.invoice_id).await;
    let second = w.order(bo, "burst-l", Monthly, None).await;
    w.pay(bo, second.invoice_id).await;
    assert_eq!(credit_of(&w.pool, bo).await, 0);
    let inst = |sub: Uuid| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM instances WHERE subscription_id = $1").bind(sub).fetch_one(&pool).await.unwrap()
        }
    };
    let (a, b) = (inst(first.subscription_id).await, inst(second.subscription_id).await);
    assert!(matches!(panel::scheduler::place(&w.pool, &w.clock, a.into()).await.unwrap(), panel::scheduler::Placement::Placed { .. }));

    let ctx = panel::orchestrator::Ctx::new(w.pool.clone(), Arc::new(w.clock.clone()), settings(48 * 3600));
    let create = |id: Uuid| panel::jobs::JobRow {
        id: Uuid::new_v4(),
        kind: "instance.create".into(),
        payload: json!({ "instance_id": id }),
        instance_id: Some(id.into()),
        attempts: 1,
        max_attempts: 5,
        request_id: None,
    };
    let outcome = panel::orchestrator::handle(&ctx, create(b)).await;
    assert!(matches!(outcome, panel::jobs::Outcome::Wait { .. }), "no room: it waits ({outcome:?})");
    w.set("2026-05-06T09:59:00Z"); // 47 h 59 min later
    let outcome = panel::orchestrator::handle(&ctx, create(b)).await;
    assert!(matches!(outcome, panel::jobs::Outcome::Wait { .. }), "not yet: {outcome:?}");
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices WHERE kind = 'credit_note'").await, 0);

    w.set("2026-05-06T10:01:00Z");
    let outcome = panel::orchestrator::handle(&ctx, create(b)).await;
    assert!(matches!(outcome, panel::jobs::Outcome::Done), "refunded, the job ends: {outcome:?}");
    let (total, subtotal): (i64, i64) =
        sqlx::query_as("SELECT total_minor, subtotal_minor FROM invoices WHERE kind = 'credit_note'").fetch_one(&w.pool).await.unwrap();
    assert_eq!((subtotal, total), (1200, 1428), "the whole period, its tax too");
    assert_eq!(credit_of(&w.pool, bo).await, 1428, "all of it is back as credit");
    let (sub, order): (String, String) =
        sqlx::query_as("SELECT s.status::text, o.status::text FROM subscriptions s JOIN orders o ON o.id = s.order_id WHERE s.id = $1")
            .bind(second.subscription_id)
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!((sub.as_str(), order.as_str()), ("cancelled", "cancelled"));
    assert_eq!(w.scalar::<String>(&format!("SELECT desired_state::text FROM instances WHERE id = '{b}'")).await, "terminated");
    assert_eq!(
        w.scalar::<i64>("SELECT count(*) FROM email_outbox WHERE template = 'order_refunded' AND to_address = 'bo@example.com'").await,
        1
    );
    assert_eq!(
        w.scalar::<i64>("SELECT count(*) FROM email_outbox WHERE template = 'capacity_refunded' AND to_address = 'admin@example.com'")
            .await,
        1
    );
    let mail = panel::email::enrich(
        &w.pool,
        "https://panel.example",
        &w.scalar::<Value>("SELECT data FROM email_outbox WHERE template = 'order_refunded'").await,
    )
    .await
    .unwrap();
    let text = panel::email::render("order_refunded", &mail).unwrap();
    assert!(
        text.body.contains("What you had paid, 12.00 EUR") && text.body.contains("is back on your account as credit"),
        "the mail names the credit: {}",
        text.body
    );
    assert!(!text.body.contains("unpaid invoice"), "nothing was owed: {}", text.body);

    // Again, and by four sweeps at once: nothing more.
    let outcome = panel::orchestrator::handle(&ctx, create(b)).await;
    assert!(matches!(outcome, panel::jobs::Outcome::Done), "{outcome:?}");
    let now = w.clock.now();
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let pool = w.pool.clone();
            tokio::spawn(async move { panel::capacity::refund_overdue(&pool, now, chrono::Duration::hours(48)).await.unwrap().len() })
        })
        .collect();
    for s in sweeps {
        assert_eq!(s.await.unwrap(), 0);
    }
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices WHERE kind = 'credit_note'").await, 1);
    assert_eq!(credit_of(&w.pool, bo).await, 1428);
    // The delivered one is untouched.
    assert_eq!(credit_of(&w.pool, ana).await, 0);
    assert_eq!(w.scalar::<String>(&format!("SELECT desired_state::text FROM instances WHERE id = '{a}'")).await, "running");
    w.invariants().await;
}

/// A customer ends a server the day after paying for it, before any host took it: all of the
/// period comes back; another ends one that ran for ten days: the twenty unused days come back
/// (the same rule as the reseller API's terminate, README "Money").
#[tokio::test]
async fn a_customer_ending_a_server_gets_a_credit_note_for_the_unused_part() {
    let w = World::new("2026-05-01T10:00:00Z").await;
    let ana = w.customer("ana@example.com", Some("DE")).await;
    w.credit(ana, 2 * 357).await;
    let never = w.order(ana, "burst-s", Monthly, None).await;
    w.pay(ana, never.invoice_id).await;
    let used = w.order(ana, "burst-s", Monthly, None).await;
    w.pay(ana, used.invoice_id).await;
    assert_eq!(credit_of(&w.pool, ana).await, 0);
    let id_of = |sub: Uuid| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM instances WHERE subscription_id = $1").bind(sub).fetch_one(&pool).await.unwrap()
        }
    };
    let (never_id, used_id) = (id_of(never.subscription_id).await, id_of(used.subscription_id).await);
    let h = host(&w.pool, "h1", 8, 16384).await;
    sqlx::query("UPDATE instances SET host_id = $1 WHERE id = $2").bind(h).bind(used_id).execute(&w.pool).await.unwrap();

    // Another customer cannot end it (and learns nothing).
    let eve = w.customer("eve@example.com", Some("DE")).await;
    let e = panel::instances::terminate_now(&w.pool, &w.clock, eve.into(), never_id.into()).await.unwrap_err();
    assert!(matches!(e, panel::instances::InstanceError::NotFound), "{e}");

    w.set("2026-05-02T10:00:00Z");
    let back = panel::instances::terminate_now(&w.pool, &w.clock, ana.into(), never_id.into()).await.unwrap();
    assert_eq!(back, 300, "never delivered: the whole period");
    assert_eq!(credit_of(&w.pool, ana).await, 357, "tax included");
    let e = panel::instances::terminate_now(&w.pool, &w.clock, ana.into(), never_id.into()).await.unwrap_err();
    assert!(matches!(e, panel::instances::InstanceError::Terminated), "{e}");

    // May has 31 days; ended on the 11th, 21 are unused: 300 · 21 / 31 = 203 (rounded down).
    w.set("2026-05-11T10:00:00Z");
    let back = panel::instances::terminate_now(&w.pool, &w.clock, ana.into(), used_id.into()).await.unwrap();
    assert_eq!(back, 300 * 21 / 31);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM invoices WHERE kind = 'credit_note'").await, 2);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM subscriptions WHERE status = 'terminated'").await, 2);
    w.invariants().await;
}

/// A reseller's API server waits for capacity with its first invoice unpaid: the refund cancels
/// that invoice and credits nothing, and the mails say so (not "back on your account as
/// credit"; 2.40 is burst-s at the reseller's default discount). A customer who paid for burst-s and then owes an upgrade to burst-l is told both:
/// the upgrade invoice cancelled, the 3.00 paid back as credit.
#[tokio::test]
async fn the_refund_mail_tells_cancelled_debt_from_credit() {
    let w = World::new("2026-05-04T10:00:00Z").await;
    // Room for one burst-l, which bo takes: the rest wait.
    host(&w.pool, "h1", 2, 3000).await;
    let bo = w.customer("bo@example.com", Some("DE")).await;
    w.credit(bo, 1428).await;
    let filler = w.order(bo, "burst-l", Monthly, None).await;
    w.pay(bo, filler.invoice_id).await;
    let filler: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1")
        .bind(filler.subscription_id)
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert!(matches!(panel::scheduler::place(&w.pool, &w.clock, filler.into()).await.unwrap(), panel::scheduler::Placement::Placed { .. }));
    let reseller: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at, country, currency) VALUES ('reseller', 'r@resell.example', 'R', 'active', now(), 'DE', 'EUR') RETURNING id",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let rc: Uuid = sqlx::query_scalar(
        "INSERT INTO accounts (role, email, display_name, status, email_verified_at, country, currency, reseller_id) VALUES ('customer', 'rc@example.com', 'RC', 'active', now(), 'DE', 'EUR', $1) RETURNING id",
    )
    .bind(reseller)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    let who = panel::api_keys::Principal {
        key_id: Uuid::new_v4(),
        account_id: reseller,
        tenant: panel::api_keys::Tenant::Reseller(reseller),
        scopes: vec![panel::api_keys::Scope::Read, panel::api_keys::Scope::Write],
    };
    let mut tx = w.pool.begin().await.unwrap();
    let server = panel::resellers::servers::create(
        &mut tx,
        &who,
        w.clock.now(),
        panel::resellers::servers::NewServer {
            customer_id: rc,
            plan: "burst-s".into(),
            os_template: "debian-12".into(),
            hostname: "r.example.com".into(),
            cycle: Monthly,
            access: Default::default(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A direct customer: burst-s paid, then an upgrade to burst-l owed, never delivered.
    let ana = w.customer("ana@example.com", Some("DE")).await;
    w.credit(ana, 357).await;
    let o = w.order(ana, "burst-s", Monthly, None).await;
    w.pay(ana, o.invoice_id).await;
    let ana_server: Uuid =
        sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1").bind(o.subscription_id).fetch_one(&w.pool).await.unwrap();
    panel::billing::proration::change_plan(&w.pool, &w.clock, ana, o.subscription_id, "burst-l").await.unwrap();
    for id in [server, ana_server] {
        let p = panel::scheduler::place(&w.pool, &w.clock, id.into()).await.unwrap();
        assert!(matches!(p, panel::scheduler::Placement::WaitingForCapacity { .. }), "{p:?}");
    }
    let owed_before = w
        .scalar::<i64>(&format!(
            "SELECT count(*) FROM invoices WHERE account_id = '{reseller}' AND kind <> 'credit_note' AND status = 'issued'"
        ))
        .await;
    assert_eq!(owed_before, 1, "the reseller owes the first invoice");

    w.set("2026-05-07T10:00:00Z");
    let done = panel::capacity::refund_overdue(&w.pool, w.clock.now(), chrono::Duration::hours(48)).await.unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(credit_of(&w.pool, reseller).await, 0, "nothing was paid, nothing is credited");
    assert_eq!(
        w.scalar::<i64>(&format!(
            "SELECT count(*) FROM invoices WHERE account_id = '{reseller}' AND kind <> 'credit_note' AND status = 'issued'"
        ))
        .await,
        0,
        "and nothing is owed"
    );
    assert_eq!(credit_of(&w.pool, ana).await, 357, "ana's payment is back, tax included");

    let mail_to = |to: &'static str| {
        let pool = w.pool.clone();
        async move {
            let data: Value = sqlx::query_scalar("SELECT data FROM email_outbox WHERE template = 'order_refunded' AND to_address = $1")
                .bind(to)
                .fetch_one(&pool)
                .await
                .unwrap();
            let data = panel::email::enrich(&pool, "https://panel.example", &data).await.unwrap();
            panel::email::render("order_refunded", &data).unwrap().body
        }
    };
    let r = mail_to("r@resell.example").await;
    assert!(!r.contains("as credit"), "no credit was given: {r}");
    assert!(r.contains("unpaid invoice is cancelled") && r.contains("no longer owe its\n2.40 EUR"), "{r}");
    let a = mail_to("ana@example.com").await;
    assert!(
        a.contains("unpaid invoice is cancelled")
            && a.contains("What you had paid, 3.00 EUR")
            && a.contains("back on your account as credit"),
        "{a}"
    );
    let admin: Value =
        sqlx::query_scalar("SELECT data FROM email_outbox WHERE template = 'capacity_refunded' AND data->>'instance_id' = $1")
            .bind(server.to_string())
            .fetch_one(&w.pool)
            .await
            .unwrap();
    let admin = panel::email::render("capacity_refunded", &panel::email::enrich(&w.pool, "https://panel.example", &admin).await.unwrap())
        .unwrap()
        .body;
    assert!(admin.contains("still owed on it was cancelled") && !admin.contains("payer's credit"), "{admin}");
    w.invariants().await;
}

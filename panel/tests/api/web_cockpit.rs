//! The admin's cockpit through a browser-like client, against a known set-up: a host with known
//! capacity and reserve, servers placed on it by the real scheduler, so the committed, free and
//! overcommit figures on the page are exact and known; the server list's filters and the
//! per-server actions (state machine refusals, reasons, confirmation, CSRF, audit); servers
//! waiting for capacity and failed jobs (with retry) on the dashboard.

use crate::helpers::{spawn_web_app, WebApp};
use crate::web_customer::{add_credit, order_plan_and_pay};
use panel::clock::SystemClock;
use panel::scheduler::{place, Placement};
use uuid::Uuid;

/// 10 CPUs less 2 reserved, 17 408 MiB less 1 024, 210 GiB less 10: usable 8 cores, 16 GiB, 200 GiB.
async fn host(app: &WebApp, name: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, reserved_cpus, reserved_memory_mib, reserved_disk_gib, api_secret, reachability)
         VALUES ($1, 'http://127.0.0.1:1', 10, 17408, 210, 2, 1024, 10, '\\x00112233445566778899aabbccddeeff', 'reachable') RETURNING id",
    )
    .bind(name)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn scalar<T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin>(app: &WebApp, sql: &str) -> T {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// The row of the capacity table for `name`: its cells' texts, in order.
fn row(html: &str, name: &str) -> Vec<String> {
    let at = html.find(&format!("<th>{name} ")).unwrap_or_else(|| panic!("no row {name}: {html}"));
    let end = at + html[at..].find("</tr>").unwrap();
    html[at..end].split("<td class=\"num\">").skip(1).map(|c| c.split('<').next().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_cockpit_shows_exact_commitment_and_acts_on_servers_through_the_state_machine() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let h1 = host(&app, "h1").await;
    let ana = app.customer("ana@example.com").await;
    add_credit(&app, &admin, "ana@example.com", "500", "bank-ana").await;
    // One dedicated KVM machine (2 pinned cores, 4 GiB, 80 GiB) and three burst-s containers
    // (1 vCPU at 4:1, 512 MiB guaranteed / 1 GiB burst at 1.5:1, 20 GiB at 2:1), placed by the
    // scheduler itself.
    let mut servers = vec![order_plan_and_pay(&app, &ana, "kvm-d2", "kvm1.example.com").await.server];
    for i in 1..=3 {
        servers.push(order_plan_and_pay(&app, &ana, "burst-s", &format!("ct{i}.example.com")).await.server);
    }
    for s in &servers {
        assert_eq!(place(&app.pool, &SystemClock, (*s).into()).await.unwrap(), Placement::Placed { host: h1.into() });
    }
    // A fifth paid server finds no host (h1 disabled for a moment): it waits for capacity.
    sqlx::query("UPDATE hosts SET enabled = false").execute(&app.pool).await.unwrap();
    let waiting = order_plan_and_pay(&app, &ana, "burst-s", "waits.example.com").await.server;
    assert!(matches!(place(&app.pool, &SystemClock, waiting.into()).await.unwrap(), Placement::WaitingForCapacity { .. }));
    sqlx::query("UPDATE hosts SET enabled = true").execute(&app.pool).await.unwrap();

    // The numbers, exactly.
    let (s, page) = app.get(&admin, "/admin/capacity").await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("4 server(s)"), "{page}");
    let cells = |name: &str| row(&page, name);
    // capacity, committed, free, used, sold, effective
    assert_eq!(cells("vCPU, pinned"), ["8", "2", "5", "25.0 %", "—", "—"], "8 − 2 − ceil(0.75) whole cores free");
    assert_eq!(cells("vCPU, shared pool"), ["6", "0.75", "5.25", "12.5 %", "3", "0.5 : 1"]);
    assert_eq!(cells("Memory, guaranteed"), ["16384", "5632", "10752", "34.4 %", "—", "—"]);
    assert_eq!(cells("Memory, burst"), ["16384", "6144", "10240", "37.5 %", "7168", "0.438 : 1"]);
    assert_eq!(cells("Disk"), ["200", "110", "90", "55.0 %", "140", "0.7 : 1"]);
    assert!(page.contains("burst-s v1") && page.contains("kvm-d2 v1"), "the plans on the host: {page}");
    assert!(page.contains("0.5 : 1 (plan allows 4.0 : 1)") && page.contains("pinned (plan 1.0 : 1)"), "{page}");
    assert!(page.contains("<svg") && page.contains("Committed / capacity"), "the chart: {page}");

    // The dashboard: the waiting server, with placement's reason.
    let (s, dash) = app.get(&admin, "/admin").await;
    assert_eq!(s, 200);
    assert!(dash.contains("Waiting for capacity (1)") && dash.contains("waits.example.com"), "{dash}");
    assert!(dash.contains("no enabled, reachable host runs container"), "{dash}");

    // The server list and its filters.
    let (_, all) = app.get(&admin, "/admin/servers").await;
    assert!(["kvm1", "ct1", "ct2", "ct3", "waits"].iter().all(|h| all.contains(&format!("{h}.example.com"))), "{all}");
    let (_, kvm) = app.get(&admin, "/admin/servers?kind=kvm").await;
    assert!(kvm.contains("kvm1.example.com") && !kvm.contains("ct1.example.com"), "{kvm}");
    let (_, on_h1) = app.get(&admin, &format!("/admin/servers?host={h1}")).await;
    assert!(on_h1.contains("ct3.example.com") && !on_h1.contains("waits.example.com"), "{on_h1}");
    let (_, by_customer) = app.get(&admin, "/admin/servers?customer=ANA%40example.com").await;
    assert!(by_customer.contains("ct2.example.com"), "{by_customer}");
    let (_, nobody) = app.get(&admin, "/admin/servers?customer=nobody%40example.com").await;
    assert!(nobody.contains("No servers match"), "{nobody}");
    let (s, bad) = app.get(&admin, "/admin/servers?state=exploded").await;
    assert_eq!(s, 422, "{bad}");
    assert_eq!(app.get(&admin, "/admin/servers?cursor=garbage").await.0, 422);

    // Actions, each through the state machine, audited with the admin and its address.
    let ct1 = servers[1];
    let page = format!("/admin/servers/{ct1}");
    let act = |form: Vec<(&'static str, &'static str)>| {
        let (admin, page, app) = (&admin, page.clone(), &app);
        async move { app.submit(admin, &page, &format!("{page}/action"), &form).await }
    };
    let state_sql = format!("SELECT desired_state::text FROM instances WHERE id = '{ct1}'");
    let state = || scalar::<String>(&app, &state_sql);
    // No reason: refused on the page, nothing changes.
    let (s, _, body) = act(vec![("action", "suspend"), ("reason", "  ")]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("say why"), "{body}");
    assert_eq!(state().await, "running");
    // No CSRF token: 403, nothing changes.
    let r = admin.post(app.url(&format!("{page}/action"))).form(&[("action", "stop")]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(state().await, "running");
    let jobs_before: i64 = scalar(&app, &format!("SELECT count(*) FROM jobs WHERE instance_id = '{ct1}'")).await;
    let (s, loc, body) = act(vec![("action", "suspend"), ("reason", "Abuse report #4711")]).await;
    assert_eq!((s, loc.as_str()), (303, format!("{page}?done=server_suspend").as_str()), "{body}");
    assert_eq!(state().await, "suspended");
    let jobs_after: i64 = scalar(&app, &format!("SELECT count(*) FROM jobs WHERE instance_id = '{ct1}'")).await;
    assert_eq!(jobs_after, jobs_before + 1, "a typed job for the host");
    let (actor, reason, addr): (String, String, String) = sqlx::query_as(
        "SELECT actor_kind, details->>'reason', host(remote_addr) FROM audit_log WHERE action = 'server.suspend' AND target_id = $1",
    )
    .bind(ct1.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((actor.as_str(), reason.as_str(), addr.as_str()), ("admin", "Abuse report #4711", "127.0.0.1"));
    // The state machine refuses a start of a suspended server, in its own words.
    let (s, _, body) = act(vec![("action", "start")]).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("suspended: unsuspend it first"), "{body}");
    let (s, _, _) = act(vec![("action", "unsuspend")]).await;
    assert_eq!(s, 303);
    assert_eq!(state().await, "running");
    let (s, _, _) = act(vec![("action", "stop")]).await;
    assert_eq!(s, 303);
    assert_eq!(state().await, "stopped");
    let (s, _, _) = act(vec![("action", "start")]).await;
    assert_eq!(s, 303);
    assert_eq!(state().await, "running");
    let (s, _, _) = act(vec![("action", "reinstall"), ("confirm", "yes")]).await;
    assert_eq!(s, 303);
    let reinstall: i64 = scalar(
        &app,
        &format!("SELECT count(*) FROM jobs WHERE instance_id = '{ct1}' AND kind = 'instance.action' AND payload->>'action' = 'reinstall'"),
    )
    .await;
    assert_eq!(reinstall, 1);
    // Terminate needs the box ticked.
    let (s, _, body) = act(vec![("action", "terminate")]).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(state().await, "running");
    let (s, _, _) = act(vec![("action", "terminate"), ("confirm", "yes")]).await;
    assert_eq!(s, 303);
    assert_eq!(state().await, "terminated");
    let audited: i64 = scalar(
        &app,
        &format!("SELECT count(*) FROM audit_log WHERE target_id = '{ct1}' AND actor_kind = 'admin' AND action LIKE 'server.%'"),
    )
    .await;
    assert_eq!(audited, 6, "suspend, unsuspend, stop, start, reinstall, terminate");
    // A terminated server no longer counts: the shared pool holds two containers now.
    let (_, page_after) = app.get(&admin, "/admin/capacity").await;
    assert_eq!(row(&page_after, "vCPU, shared pool"), ["6", "0.5", "5.5", "8.3 %", "2", "0.333 : 1"]);
    assert_eq!(app.get(&admin, &format!("/admin/servers/{}", Uuid::new_v4())).await.0, 404);

    // Failed jobs: listed, retried once (fresh attempts), audited; a superseded one is refused.
    let ct2 = servers[2];
    let dead: Uuid = sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, instance_id, status, attempts, max_attempts, last_error, created_at)
         VALUES ('instance.converge', jsonb_build_object('instance_id', $1::text), $1, 'dead', 10, 10, 'host said 500', now() + interval '1 hour')
         RETURNING id",
    )
    .bind(ct2)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (_, dash) = app.get(&admin, "/admin").await;
    assert!(
        dash.contains("Failed jobs (1)") && dash.contains("host said 500") && dash.contains(&format!("/admin/jobs/{dead}/retry")),
        "{dash}"
    );
    let (s, loc, _) = app.submit(&admin, "/admin", &format!("/admin/jobs/{dead}/retry"), &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/admin?done=job_retried"));
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status::text, attempts FROM jobs WHERE id = $1").bind(dead).fetch_one(&app.pool).await.unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let (s, _, _) = app.submit(&admin, "/admin", &format!("/admin/jobs/{dead}/retry"), &[]).await;
    assert_eq!(s, 404, "a second click finds nothing dead: queued once");
    assert_eq!(scalar::<i64>(&app, "SELECT count(*) FROM audit_log WHERE action = 'job.retry'").await, 1);
    let old: Uuid = sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, instance_id, status, attempts, max_attempts, last_error, created_at)
         VALUES ('instance.action', jsonb_build_object('instance_id', $1::text, 'action', 'reinstall'), $1, 'dead', 10, 10, 'old', now() - interval '1 hour')
         RETURNING id",
    )
    .bind(ct2)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let (s, _, body) = app.submit(&admin, "/admin", &format!("/admin/jobs/{old}/retry"), &[]).await;
    assert_eq!(s, 409, "a newer job superseded it: {body}");
    assert_eq!(scalar::<String>(&app, &format!("SELECT status::text FROM jobs WHERE id = '{old}'")).await, "dead");

    // Not an admin: none of it exists.
    for path in ["/admin/capacity", "/admin/servers", &format!("/admin/servers/{ct1}")] {
        assert_eq!(app.get(&ana, path).await.0, 404, "{path}");
    }
}

/// The server list pages by 50, newest first, keeping its filters: 55 seeded servers give a full
/// first page and a second page of 5, with none twice and none lost.
#[tokio::test]
async fn the_admin_server_list_pages_through_every_server_once() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    panel::db::seed::subscriptions(&app.pool, 55, "burst-s", chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()).await.unwrap();
    sqlx::query(
        "INSERT INTO instances (id, account_id, subscription_id, plan_id, kind, os_template_id, hostname, desired_state, created_at)
         SELECT gen_random_uuid(), s.account_id, s.id, s.plan_id, 'container', o.os_template_id, o.hostname, 'running',
                now() - make_interval(secs => row_number() OVER (ORDER BY o.hostname))
           FROM subscriptions s JOIN orders o ON o.id = s.order_id",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let names = |html: &str| -> Vec<String> {
        // The hostnames (seed1 …), not the customers' addresses (seed-…@example.com).
        html.split("\">seed")
            .skip(1)
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            .map(|r| format!("seed{}", r.split('<').next().unwrap()))
            .collect()
    };
    let (s, first) = app.get(&admin, "/admin/servers?kind=container").await;
    assert_eq!(s, 200);
    let mut seen = names(&first);
    assert_eq!(seen.len(), 50, "{first}");
    let next = first
        .split("id=\"next\" href=\"")
        .nth(1)
        .expect("a next page link")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(next.contains("kind=container"), "the filter is kept: {next}");
    let (s, second) = app.get(&admin, &next).await;
    assert_eq!(s, 200);
    let rest = names(&second);
    assert_eq!(rest.len(), 5, "{second}");
    assert!(!second.contains("id=\"next\""), "the last page");
    seen.extend(rest);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 55, "every server once");
}

/// Issue 18: a provider has thousands of hosts, each with a chart on the cockpit; the page
/// shows 50 at a time by name, and following "Next hosts" shows every host exactly once, each
/// with its own load (read in one query per page, not one per host).
#[tokio::test]
async fn the_capacity_cockpit_pages_through_every_host_once() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let mut names = Vec::new();
    for i in 0..120 {
        let name = format!("host-{i:03}");
        host(&app, &name).await;
        names.push(name);
    }
    let (mut seen, mut path, mut pages) = (Vec::new(), "/admin/capacity".to_string(), 0);
    loop {
        let (s, html) = app.get(&admin, &path).await;
        assert_eq!(s, 200);
        pages += 1;
        let on_page: Vec<String> =
            html.split("<div class=\"card\" id=\"host-").skip(1).map(|c| c[..c.find('"').unwrap()].to_string()).collect();
        assert!(on_page.len() <= 50, "{} hosts on one page", on_page.len());
        seen.extend(on_page);
        match html.find("id=\"next-page\" href=\"") {
            Some(at) => {
                let rest = &html[at + "id=\"next-page\" href=\"".len()..];
                path = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names, "every host once, by name");
}

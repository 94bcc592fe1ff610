//! Placement and the job queue, on a real database (no hosts are called here; the end-to-end
//! tests in tests/ drive real provisioners).

use crate::billing_world::World;
use panel::clock::FixedClock;
use panel::scheduler::{place, Placement};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

/// An address pool made the way an admin makes one (validated, audited), with `count` addresses.
pub async fn address_pool(pool: &PgPool, admin: Uuid, name: &str, network: &str, gateway: &str, host: Option<Uuid>, count: usize) -> u64 {
    let by = panel::admin::By { admin, addr: None };
    let form = panel::admin::PoolForm {
        name: name.into(),
        network: network.into(),
        gateway: gateway.into(),
        host_id: host.map(|h| h.to_string()).unwrap_or_default(),
        nat: None,
        dns: String::new(),
    };
    let id = panel::admin::create_pool(pool, by, &form).await.unwrap();
    panel::admin::generate_addresses(pool, panel::admin::By { admin, addr: None }, id, count).await.unwrap()
}

/// A joined host (secret set) with this capacity; returns its id.
async fn host(pool: &PgPool, name: &str, cpus: i32, memory: i64, disk: i64) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, api_secret, reachability)
         VALUES ($1, 'http://127.0.0.1:1', $2, $3, $4, '\\x00112233445566778899aabbccddeeff', 'reachable') RETURNING id",
    )
    .bind(name)
    .bind(cpus)
    .bind(memory)
    .bind(disk)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `n` unplaced instances of `plan`, spread over `customers` customers.
async fn instances(pool: &PgPool, plan: &str, n: i64, customers: i64) -> Vec<Uuid> {
    sqlx::query_scalar(
        "WITH c AS (INSERT INTO accounts (role, email) SELECT 'customer', 'c' || g || '-' || gen_random_uuid() || '@example.com'
                     FROM generate_series(1, $3) g RETURNING id),
              cs AS (SELECT id, row_number() OVER () - 1 AS k FROM c)
         INSERT INTO instances (id, account_id, plan_id, kind, os_template_id, hostname)
         SELECT gen_random_uuid(), cs.id, p.id, p.kind, (SELECT id FROM os_templates LIMIT 1), 'vps' || g
           FROM generate_series(0, $2 - 1) g JOIN cs ON cs.k = g % $3, plans p WHERE p.code = $1 AND p.orderable
         RETURNING id",
    )
    .bind(plan)
    .bind(n)
    .bind(customers)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_fill_a_host_exactly() {
    let w = World::new("2026-03-01T00:00:00Z").await;
    // burst-s commits 1024/1.5 MiB each: 6900 MiB hold exactly 10 (guarantee would allow 13).
    let h = host(&w.pool, "h1", 64, 6900, 10_000).await;
    let n = address_pool(&w.pool, w.admin, "v4", "192.0.2.0/24", "192.0.2.1", None, 1000).await;
    assert_eq!(n, 253, "a /24 gives 254 host addresses less the gateway");
    // 200 customers order and pay at once: each payment requests a VPS, and every one of
    // them races for the host.
    let mut customers = Vec::new();
    for i in 0..200 {
        customers.push(w.customer(&format!("racer{i}@example.com"), None).await);
        w.credit(customers[i], 1000).await;
    }
    let clock = Arc::new(FixedClock::at("2026-03-01T00:00:00Z".parse().unwrap()));
    let mut tasks = Vec::new();
    for c in customers {
        let (pool, clock) = (w.pool.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let req = panel::orders::OrderRequest {
                plan_code: "burst-s".into(),
                cycle: panel::plans::BillingCycle::Monthly,
                os_template: "debian-12".into(),
                hostname: "race.example.com".into(),
                coupon: None,
            };
            let placed = panel::orders::place_order(&pool, clock.as_ref(), c, req).await.unwrap();
            panel::billing::payments::pay_invoice_with_credit(&pool, clock.as_ref(), c, placed.invoice_id).await.unwrap();
            let id: Uuid = sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1")
                .bind(placed.subscription_id)
                .fetch_one(&pool)
                .await
                .unwrap();
            place(&pool, clock.as_ref(), id.into()).await
        }));
    }
    let (mut placed, mut waiting) = (0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Placement::Placed { host } => {
                assert_eq!(host.0, h);
                placed += 1
            }
            Placement::WaitingForCapacity { reasons } => {
                assert!(reasons[0].contains("not enough committed memory"), "{reasons:?}");
                waiting += 1
            }
            Placement::AlreadyPlaced { .. } => panic!("nothing was placed before"),
        }
    }
    assert_eq!((placed, waiting), (10, 190));
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances WHERE host_id IS NOT NULL").await, 10);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM instances WHERE observed_state = 'waiting_for_capacity'").await, 190);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM ip_addresses WHERE instance_id IS NOT NULL").await, 10);
    assert_eq!(w.scalar::<i64>("SELECT count(DISTINCT instance_id) FROM ip_addresses WHERE instance_id IS NOT NULL").await, 10);
    // The admins heard about it, once per instance.
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM email_outbox WHERE template = 'capacity_needed'").await, 190);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders WHERE status = 'waiting_for_capacity'").await, 190);
    assert_eq!(w.scalar::<i64>("SELECT count(*) FROM orders WHERE status = 'provisioning'").await, 10);
    crate::billing_world::check_invariants(&w.pool).await;
}

#[tokio::test]
async fn placement_spreads_a_customer_and_needs_an_address() {
    let w = World::new("2026-03-01T00:00:00Z").await;
    let clock = FixedClock::at("2026-03-01T00:00:00Z".parse().unwrap());
    let a = host(&w.pool, "a", 16, 65536, 2000).await;
    let b = host(&w.pool, "b", 16, 65536, 2000).await;
    // One customer, two VPS: one on each host.
    let ids = instances(&w.pool, "burst-m", 2, 1).await;
    let mut hosts = Vec::new();
    for id in &ids {
        let Placement::Placed { host } = place(&w.pool, &clock, (*id).into()).await.unwrap() else { panic!() };
        hosts.push(host.0);
    }
    hosts.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(hosts, want, "a customer's VPS are spread");
    // Placing again is a no-op.
    assert!(matches!(place(&w.pool, &clock, ids[0].into()).await.unwrap(), Placement::AlreadyPlaced { .. }));

    // A host whose only pool is full cannot take more; with none free anywhere, it waits.
    address_pool(&w.pool, w.admin, "tiny", "198.51.100.0/30", "198.51.100.1", Some(a), 10).await;
    address_pool(&w.pool, w.admin, "tiny-b", "198.51.100.4/30", "198.51.100.5", Some(b), 10).await;
    let more = instances(&w.pool, "burst-m", 3, 3).await;
    let mut results = Vec::new();
    for id in &more {
        results.push(place(&w.pool, &clock, (*id).into()).await.unwrap());
    }
    assert!(matches!(results[0], Placement::Placed { .. }), "{results:?}");
    assert!(matches!(results[1], Placement::Placed { .. }));
    let Placement::WaitingForCapacity { reasons } = &results[2] else { panic!("{results:?}") };
    assert!(reasons.iter().all(|r| r.contains("no free IPv4 address")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_run_once_across_runners_retry_and_dead_letter() {
    use panel::jobs::{run, Outcome};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = crate::helpers::fresh_pool().await;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..60 {
        let kind = match i {
            0 => "fail",
            1 => "wait",
            _ => "ok",
        };
        panel::db::jobs::enqueue(&mut tx, kind, serde_json::json!({ "n": i }), None, Some(&format!("job-{i}")), None).await.unwrap();
    }
    // Enqueueing again with the same key adds nothing.
    assert!(!panel::db::jobs::enqueue(&mut tx, "ok", serde_json::json!({}), None, Some("job-5"), None).await.unwrap());
    sqlx::query("UPDATE jobs SET max_attempts = 2 WHERE kind = 'fail'").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    let runs = Arc::new(AtomicUsize::new(0));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut runners = Vec::new();
    for r in 0..3 {
        let (pool, runs, rx) = (pool.clone(), runs.clone(), rx.clone());
        let poll = std::time::Duration::from_millis(100);
        runners.push(tokio::spawn(run(pool, format!("runner-{r}"), 60, panel::jobs::Wakeup::default(), poll, rx, move |job| {
            let runs = runs.clone();
            async move {
                match job.kind.as_str() {
                    "fail" => Outcome::Retry("the host said no".into()),
                    "wait" => Outcome::Wait { secs: 0, reason: "waiting for capacity".into() },
                    _ => {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Outcome::Done
                    }
                }
            }
        })));
    }
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    for _ in 0..100 {
        if count("SELECT count(*) FROM jobs WHERE status = 'succeeded'").await == 58 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The failing job's backoff is 5 s; bring its second attempt forward.
    sqlx::query("UPDATE jobs SET run_after = now() WHERE kind = 'fail' AND status = 'queued'").execute(&pool).await.unwrap();
    for _ in 0..50 {
        if count("SELECT count(*) FROM jobs WHERE status = 'dead'").await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    for r in runners {
        r.await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 58, "every ok job ran exactly once across three runners");
    assert_eq!(count("SELECT count(*) FROM jobs WHERE status = 'succeeded'").await, 58);
    let (status, attempts, error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT status::text, attempts, last_error FROM jobs WHERE kind = 'fail'").fetch_one(&pool).await.unwrap();
    assert_eq!((status.as_str(), attempts, error.as_deref()), ("dead", 2, Some("the host said no")));
    // Waiting did not use up attempts, however often it ran.
    let (status, attempts, reason): (String, i32, Option<String>) =
        sqlx::query_as("SELECT status::text, attempts, waiting_reason FROM jobs WHERE kind = 'wait'").fetch_one(&pool).await.unwrap();
    assert_eq!((status.as_str(), attempts, reason.as_deref()), ("queued", 0, Some("waiting for capacity")));

    // A runner that died holding a job (lease ran out) gives it to the next one.
    let mut tx = pool.begin().await.unwrap();
    panel::db::jobs::enqueue(&mut tx, "ok", serde_json::json!({}), None, Some("orphaned"), None).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE jobs SET status = 'queued' WHERE kind = 'wait'").execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM jobs WHERE kind = 'wait'").execute(&pool).await.unwrap();
    let claimed = panel::db::jobs::claim(&pool, "dead-runner", 60).await.unwrap().unwrap();
    assert!(panel::db::jobs::claim(&pool, "other", 60).await.unwrap().is_none(), "a leased job is not taken");
    sqlx::query("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = $1").bind(claimed.id).execute(&pool).await.unwrap();
    let taken = panel::db::jobs::claim(&pool, "other", 60).await.unwrap().unwrap();
    assert_eq!(taken.id, claimed.id);
    assert!(!panel::db::jobs::succeed(&pool, claimed.id, "dead-runner").await.unwrap(), "the old runner cannot finish it");
    assert!(panel::db::jobs::succeed(&pool, claimed.id, "other").await.unwrap());
}

/// An idle runner wakes the moment a job commits (`LISTEN vessel_jobs`), not at its next poll:
/// with the poll a minute away, a job committed in a transaction runs within a second, and a
/// rolled-back one never. The same runner without the listener leaves it waiting, so the
/// notification is what ran it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_job_wakes_an_idle_runner_at_once() {
    use panel::jobs::{run, Outcome, Wakeup};
    use std::time::{Duration, Instant};
    let pool = crate::helpers::fresh_pool().await;
    let state = |pool: PgPool, key: &'static str| async move {
        sqlx::query_scalar::<_, String>("SELECT status::text FROM jobs WHERE dedupe_key = $1").bind(key).fetch_one(&pool).await.unwrap()
    };
    let enqueue = |pool: PgPool, key: &'static str, commit: bool| async move {
        let mut tx = pool.begin().await.unwrap();
        panel::db::jobs::enqueue(&mut tx, "ok", serde_json::json!({}), None, Some(key), None).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    };
    for listening in [true, false] {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let wake = if listening { Wakeup::listen(&pool, rx.clone()) } else { Wakeup::default() };
        let runner = tokio::spawn(run(pool.clone(), "idle".into(), 60, wake, Duration::from_secs(60), rx, |_| async { Outcome::Done }));
        // Let the runner find the queue empty and go to sleep (and the listener connect).
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (key, ghost) = if listening { ("woken", "ghost-1") } else { ("polled", "ghost-2") };
        enqueue(pool.clone(), ghost, false).await;
        let t0 = Instant::now();
        enqueue(pool.clone(), key, true).await;
        let mut ran = false;
        while t0.elapsed() < Duration::from_secs(2) {
            if state(pool.clone(), key).await == "succeeded" {
                ran = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ran, listening, "listening = {listening}: ran after {:?}", t0.elapsed());
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE dedupe_key = $1").bind(ghost).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 0, "a rolled-back job does not exist");
        let _ = stop.send(true);
        runner.await.unwrap();
    }
}

#[tokio::test]
async fn the_hosts_guaranteed_memory_follows_its_instances() {
    let w = World::new("2026-03-01T00:00:00Z").await;
    let clock = FixedClock::at("2026-03-01T00:00:00Z".parse().unwrap());
    let h = host(&w.pool, "a", 16, 65536, 2000).await;
    let ids = instances(&w.pool, "burst-m", 3, 3).await;
    for id in &ids {
        place(&w.pool, &clock, (*id).into()).await.unwrap();
    }
    let g = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT guaranteed_memory_mib FROM hosts").fetch_one(&pool).await.unwrap()
    };
    assert_eq!(g(w.pool.clone()).await, 3 * 1024);
    sqlx::query("UPDATE instances SET desired_state = 'terminated', terminated_at = now() WHERE id = $1")
        .bind(ids[0])
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(g(w.pool.clone()).await, 2 * 1024);
    sqlx::query("UPDATE instances SET plan_id = (SELECT id FROM plans WHERE code = 'burst-l') WHERE id = $1")
        .bind(ids[1])
        .execute(&w.pool)
        .await
        .unwrap();
    assert_eq!(g(w.pool.clone()).await, 1024 + 2048);
    let exact: i64 = w.scalar(&format!(
        "SELECT sum(p.memory_guaranteed_mib)::bigint FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.host_id = '{h}' AND i.desired_state <> 'terminated'"
    )).await;
    assert_eq!(g(w.pool.clone()).await, exact);
}

/// An instance terminated before any host took it (e.g. its order was cancelled while it
/// waited for capacity, or a crash cut the create short) ends `destroyed`, not `pending`
/// forever: the converge job finishes its bookkeeping instead of only dropping the job. (Seen
/// in the crash loop of tests/orchestration_crash.rs: desired terminated, observed pending, no
/// job left.)
#[tokio::test]
async fn an_instance_terminated_before_placement_ends_destroyed() {
    let w = World::new("2026-03-01T00:00:00Z").await;
    let id = instances(&w.pool, "burst-s", 1, 1).await[0];
    sqlx::query("UPDATE instances SET desired_state = 'terminated' WHERE id = $1").bind(id).execute(&w.pool).await.unwrap();
    let settings = panel::config::OrchestrationSettings {
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
        capacity_refund_after_secs: 3600,
    };
    let ctx = panel::orchestrator::Ctx::new(w.pool.clone(), Arc::new(w.clock.clone()), settings);
    let job = panel::jobs::JobRow {
        id: Uuid::new_v4(),
        kind: "instance.converge".into(),
        payload: serde_json::json!({ "instance_id": id }),
        instance_id: Some(id.into()),
        attempts: 1,
        max_attempts: 5,
        request_id: None,
    };
    let outcome = panel::orchestrator::handle(&ctx, job).await;
    assert!(matches!(outcome, panel::jobs::Outcome::Done), "{outcome:?}");
    let (observed, host): (String, Option<Uuid>) =
        sqlx::query_as("SELECT observed_state::text, host_id FROM instances WHERE id = $1").bind(id).fetch_one(&w.pool).await.unwrap();
    assert_eq!((observed.as_str(), host), ("destroyed", None));
}

/// Issue 18: a host's load is kept per plan (`host_plan_load`, by the instances trigger) so a
/// placement reads a few rows, not every instance on the host. Under a mixed concurrent
/// workload — placements racing for three small hosts while their instances are terminated,
/// and resizes down and up on a fourth — no host is overcommitted, and the kept counts, the
/// kept guaranteed memory and the scheduler's commitment all equal a recount of the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kept_host_loads_equal_a_recount_after_a_concurrent_mixed_workload() {
    use panel::db::instances as inst_sql;
    use panel::vps::DesiredState;
    let w = World::new("2026-03-01T00:00:00Z").await;
    let clock = Arc::new(FixedClock::at("2026-03-01T00:00:00Z".parse().unwrap()));
    address_pool(&w.pool, w.admin, "v4", "192.0.2.0/24", "192.0.2.1", None, 1000).await;
    let plan = |code: &'static str| {
        let pool = w.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM plans WHERE code = $1 AND orderable").bind(code).fetch_one(&pool).await.unwrap()
        }
    };
    let (small, medium) = (plan("burst-s").await, plan("burst-m").await);

    // 20 burst-m on a big host, which is then disabled: the resizes happen there.
    let big = host(&w.pool, "big", 64, 262_144, 20_000).await;
    let resized = instances(&w.pool, "burst-m", 20, 20).await;
    for id in &resized {
        assert_eq!(place(&w.pool, clock.as_ref(), (*id).into()).await.unwrap(), Placement::Placed { host: big.into() });
    }
    sqlx::query("UPDATE hosts SET enabled = false WHERE id = $1").bind(big).execute(&w.pool).await.unwrap();
    // Three small hosts that hold 10 burst-s each (committed memory 1024/1.5 MiB, 6900 MiB).
    let mut smalls = Vec::new();
    for name in ["s1", "s2", "s3"] {
        smalls.push(host(&w.pool, name, 64, 6900, 10_000).await);
    }
    let old = instances(&w.pool, "burst-s", 12, 12).await;
    for id in &old {
        assert!(matches!(place(&w.pool, clock.as_ref(), (*id).into()).await.unwrap(), Placement::Placed { .. }));
    }

    // At once: 40 placements, 6 terminations of placed burst-s, 10 resizes down, 10 down and up again.
    let new = instances(&w.pool, "burst-s", 40, 40).await;
    let mut placements = Vec::new();
    for id in new {
        let (pool, clock) = (w.pool.clone(), clock.clone());
        placements.push(tokio::spawn(async move { place(&pool, clock.as_ref(), id.into()).await.unwrap() }));
    }
    let mut others = Vec::new();
    for id in old.iter().take(6).copied() {
        let pool = w.pool.clone();
        others.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            inst_sql::set_desired(&mut tx, id.into(), DesiredState::Terminated, chrono::Utc::now()).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for (n, id) in resized.iter().copied().enumerate() {
        let pool = w.pool.clone();
        others.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            inst_sql::set_plan(&mut tx, id.into(), small).await.unwrap();
            tx.commit().await.unwrap();
            if n % 2 == 1 {
                let mut tx = pool.begin().await.unwrap();
                inst_sql::set_plan(&mut tx, id.into(), medium).await.unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    let mut placed = 0;
    for t in placements {
        match t.await.unwrap() {
            Placement::Placed { host } => {
                assert!(smalls.contains(&host.0), "the disabled host takes nothing");
                placed += 1;
            }
            Placement::WaitingForCapacity { .. } => {}
            Placement::AlreadyPlaced { .. } => panic!("nothing was placed before"),
        }
    }
    for t in others {
        t.await.unwrap();
    }
    // 18 places were free, and up to 6 more as the terminations commit.
    assert!((18..=24).contains(&placed), "placed {placed}");

    // The kept counts are the recount, row for row (hosts, plans, numbers).
    let recount: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT host_id, plan_id, count(*) FROM instances WHERE host_id IS NOT NULL AND desired_state <> 'terminated'
          GROUP BY host_id, plan_id ORDER BY host_id, plan_id",
    )
    .fetch_all(&w.pool)
    .await
    .unwrap();
    let kept: Vec<(Uuid, i64, i64)> =
        sqlx::query_as("SELECT host_id, plan_id, instances::bigint FROM host_plan_load WHERE instances > 0 ORDER BY host_id, plan_id")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert_eq!(kept, recount);
    assert!(recount.contains(&(big, small, 10)) && recount.contains(&(big, medium, 10)), "{recount:?}");
    let drift: i64 = w
        .scalar(
            "SELECT count(*) FROM hosts h WHERE h.guaranteed_memory_mib <> COALESCE((SELECT sum(p.memory_guaranteed_mib)
               FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.host_id = h.id AND i.desired_state <> 'terminated'), 0)",
        )
        .await;
    assert_eq!(drift, 0, "hosts.guaranteed_memory_mib equals its recount");

    // No host is overcommitted, by core's rule over the recount, and the scheduler's commitment
    // (what the cockpit shows) is that recount's load.
    for h in smalls.iter().chain([&big]) {
        let row = panel::db::hosts::get(&w.pool, (*h).into()).await.unwrap().unwrap();
        let cap = panel::scheduler::capacity_of(&row);
        let mut allocations = Vec::new();
        for (host, plan_id, n) in &recount {
            if host == h {
                let r = panel::db::plans::resources(&w.pool, *plan_id).await.unwrap().unwrap();
                allocations.extend(std::iter::repeat_n(vessel_core::admission::Allocation::from(&r), *n as usize));
            }
        }
        let load = vessel_core::admission::HostLoad::of(allocations.iter());
        assert!(load.fits(&cap), "host {} is overcommitted: {load:?}", row.name);
        let c = panel::scheduler::commitment(&w.pool, (*h).into(), cap).await.unwrap();
        assert_eq!(c.load, load, "host {}", row.name);
    }
}

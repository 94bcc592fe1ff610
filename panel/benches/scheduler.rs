//! Scheduler decisions per second with 1 000 hosts and 100 000 instances in the database.
//!
//! Each decision is a real `scheduler::place` (candidate order by policy, row lock, exact
//! admission over the host's instances, an address). Yardstick, same database, same run: a
//! plain `SELECT … FOR UPDATE` of one host row plus the sum of its instances' guarantees,
//! the least any correct placement must do.
//!
//! Run: `cargo bench -p panel --bench scheduler` (`BENCH_HOSTS`, `BENCH_INSTANCES`,
//! `BENCH_DECISIONS` to change sizes).

use panel::clock::FixedClock;
use panel::scheduler::{place, Placement};
use std::path::Path;
use std::time::Instant;

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (hosts, instances, decisions) = (env_or("BENCH_HOSTS", 1000), env_or("BENCH_INSTANCES", 100_000), env_or("BENCH_DECISIONS", 500));
    let url = vessel_devdb::fresh_database(&panel::db::MIGRATOR).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.unwrap();
    let plans = panel::plans::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans")).unwrap();
    panel::plans::sync::sync(&pool, &plans).await.unwrap();
    sqlx::query("INSERT INTO os_templates (name, display_name) VALUES ('debian-12', 'Debian 12')").execute(&pool).await.unwrap();
    // Hosts of 64 threads and 256 GiB; instances of burst-m spread evenly over them.
    sqlx::query(
        "INSERT INTO hosts (name, api_url, cpus, memory_mib, disk_gib, api_secret, reachability)
         SELECT 'h' || g, 'http://127.0.0.1:1', 64, 262144, 20000, '\\x00112233445566778899aabbccddeeff', 'reachable'
           FROM generate_series(1, $1) g",
    )
    .bind(hosts)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH c AS (INSERT INTO accounts (role, email) SELECT 'customer', 'b' || g || '@example.com' FROM generate_series(1, 5000) g RETURNING id),
              cs AS (SELECT id, row_number() OVER () - 1 AS k FROM c),
              hs AS (SELECT id, row_number() OVER () - 1 AS k FROM hosts)
         INSERT INTO instances (id, account_id, plan_id, kind, os_template_id, hostname, host_id, observed_state)
         SELECT gen_random_uuid(), cs.id, p.id, p.kind, (SELECT id FROM os_templates), 'v' || g, hs.id, 'running'
           FROM generate_series(0, $1 - 1) g JOIN cs ON cs.k = g % 5000 JOIN hs ON hs.k = g % $2, plans p
          WHERE p.code = 'burst-m' AND p.orderable",
    )
    .bind(instances)
    .bind(hosts)
    .execute(&pool)
    .await
    .unwrap();
    let todo: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO instances (id, account_id, plan_id, kind, os_template_id, hostname)
         SELECT gen_random_uuid(), (SELECT id FROM accounts LIMIT 1), p.id, p.kind, (SELECT id FROM os_templates), 'new' || g
           FROM generate_series(1, $1) g, plans p WHERE p.code = 'burst-s' AND p.orderable RETURNING id",
    )
    .bind(decisions)
    .fetch_all(&pool)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    let clock = FixedClock::at(chrono::Utc::now());
    let t = Instant::now();
    for id in &todo {
        let p = place(&pool, &clock, (*id).into()).await.unwrap();
        assert!(matches!(p, Placement::Placed { .. }), "{p:?}");
    }
    let ours = todo.len() as f64 / t.elapsed().as_secs_f64();

    let host_ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM hosts").fetch_all(&pool).await.unwrap();
    let t = Instant::now();
    for (n, _) in todo.iter().enumerate() {
        let mut tx = pool.begin().await.unwrap();
        let _: (i64,) = sqlx::query_as(
            "SELECT (SELECT COALESCE(sum(p.memory_guaranteed_mib), 0)::bigint FROM instances i JOIN plans p ON p.id = i.plan_id WHERE i.host_id = h.id)
               FROM hosts h WHERE h.id = $1 FOR UPDATE",
        )
        .bind(host_ids[n % host_ids.len()])
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let yard = todo.len() as f64 / t.elapsed().as_secs_f64();
    println!("scheduler, {hosts} hosts, {instances} instances, {decisions} decisions:");
    println!("  vessel scheduler::place     {ours:>9.1} decisions/s");
    println!("  lock one host + sum load    {yard:>9.1} /s (the floor of any correct placement)");
    println!("  ratio                       {:>9.3}", ours / yard);
}

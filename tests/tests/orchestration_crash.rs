//! Kill -9 the job runner (`panel worker`) or a provisioner at random points of create,
//! suspend and destroy, 30 times. In the end every instance matches its desired state, the
//! host runs nothing the panel does not know, nothing runs twice, and no address is held twice.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vessel_tests::e2e::{wait_for, World};

use vessel_tests::netns::workspace_binary;

/// A `panel worker` process, killed when dropped (also when the test fails).
struct Worker(Child);

impl Worker {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn worker(w: &World) -> Worker {
    Worker(Command::new(workspace_binary("panel").unwrap())
        .arg("worker")
        .env("DATABASE_URL", &w.db_url)
        .env("VESSEL__ORCHESTRATION__RECONCILE_INTERVAL_SECS", "1")
        .env("VESSEL__ORCHESTRATION__UNREACHABLE_AFTER_SECS", "3")
        .env("VESSEL__ORCHESTRATION__HOST_TIMEOUT_SECS", "5")
        // A killed runner's jobs come back when their lease runs out.
        .env("VESSEL__ORCHESTRATION__JOB_LEASE_SECS", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("panel worker runs"))
}

fn matches(desired: &str, observed: &str) -> bool {
    desired == observed || (desired == "terminated" && observed == "destroyed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_runners_and_hosts_mid_operation_converges_without_doubles() {
    let mut w = World::new(false).await;
    let mut host = w.add_host("h1", 2, 1024).await;
    w.serve(&mut host);
    let mut runner = worker(&w);
    let customer = w.customer("crash@example.com", 1_000_000).await;

    let mut seed: u64 = 0xc0ffee_1234;
    let mut rand = move |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    let mut live: Vec<uuid::Uuid> = Vec::new();
    let (mut killed_runner, mut killed_host) = (0, 0);
    for i in 0..30 {
        // The operation: create a new VPS, or suspend / destroy one that exists.
        let op = if live.is_empty() { 0 } else { i % 3 };
        match op {
            0 => live.push(w.order_paid(customer, "kvm-tiny-shared", &format!("vps{i}.example.com")).await),
            1 => w.want(live[rand(live.len() as u64) as usize], "suspended").await,
            _ => {
                let victim = live.swap_remove(rand(live.len() as u64) as usize);
                w.want(victim, "terminated").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50 + rand(1200))).await;
        if rand(2) == 0 {
            runner.kill(); // SIGKILL
            runner = worker(&w);
            killed_runner += 1;
        } else {
            host.ns.kill_all(); // SIGKILL to the daemon; its machines run on and are adopted
            w.serve(&mut host);
            killed_host += 1;
        }
    }
    assert!(killed_runner >= 5 && killed_host >= 5, "runner {killed_runner}, host {killed_host}");

    // Everything converges.
    let pool = w.pool.clone();
    let end = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT desired_state::text, observed_state::text, last_error FROM instances").fetch_all(&pool).await.unwrap();
        if rows.iter().all(|(d, o, _)| matches(d, o)) {
            break;
        }
        if std::time::Instant::now() > end {
            let jobs: Vec<(String, String, i32, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT kind, status::text, attempts, last_error, waiting_reason FROM jobs WHERE status IN ('queued', 'running', 'dead')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!("not converged after 180 s:\ninstances (desired, observed, error): {rows:#?}\nopen jobs: {jobs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hc = w.host_client(&host);
    let on_host = hc.list().await.unwrap();
    let known: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM instances WHERE desired_state <> 'terminated'").fetch_all(&w.pool).await.unwrap();
    let mut host_ids: Vec<uuid::Uuid> = on_host.iter().map(|s| s.id.0).collect();
    host_ids.sort();
    let mut want = known.clone();
    want.sort();
    assert_eq!(host_ids, want, "the host runs exactly the live instances the panel knows, each once");
    let doubled: i64 = sqlx::query_scalar("SELECT count(*) FROM (SELECT address FROM ip_addresses GROUP BY address HAVING count(*) > 1) x").fetch_one(&w.pool).await.unwrap();
    assert_eq!(doubled, 0);
    let holders: i64 = sqlx::query_scalar("SELECT count(DISTINCT instance_id) FROM ip_addresses WHERE instance_id IS NOT NULL").fetch_one(&w.pool).await.unwrap();
    assert_eq!(holders, known.len() as i64, "each live instance holds its address, the destroyed ones none");
    let dead: Vec<(String, Option<String>)> = sqlx::query_as("SELECT kind, last_error FROM jobs WHERE status = 'dead'").fetch_all(&w.pool).await.unwrap();
    assert!(dead.is_empty(), "dead-lettered jobs: {dead:?}");

    // Clean up: everything terminated and destroyed on the host.
    for id in known {
        w.want(id, "terminated").await;
    }
    wait_for("the host to be empty", 120, async || hc.list().await.unwrap().is_empty().then_some(())).await;
    runner.kill();
    eprintln!("orchestration crash test: killed the runner {killed_runner} and the host {killed_host} times");
}

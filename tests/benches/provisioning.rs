//! Time from payment to a running VPS, median and p99 over `BENCH_ORDERS` orders (default 30)
//! per row, with the share spent in the panel (placing the order and paying), the queue (from
//! the payment's commit until the job has placed the instance on a host) and the host (from
//! placement until the host reports it running). A real panel, its job runners, and a real
//! provisioner in its own network namespace. Timestamps are polled every 5 ms.
//!
//! Each kind (a busybox container on `burst-s`, the KVM test guest on `kvm-tiny-shared`) is
//! measured twice in the same run: with runners that only poll every 300 ms (the yardstick:
//! how the queue worked before) and with runners woken by `LISTEN vessel_jobs` at commit.
//!
//! Run as root: `cargo bench -p vessel-tests --bench provisioning`.

use std::time::{Duration, Instant};
use vessel_tests::e2e::World;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Medians of total, panel, queue and host, and the total's p99, in ms.
struct Row {
    total: f64,
    p99: f64,
    panel: f64,
    queue: f64,
    host: f64,
}

async fn measure(notify: bool, plan: &str, orders: usize) -> Row {
    let mut w = World::new_with(true, |s| {
        s.orchestration.job_notify = notify;
        s.orchestration.job_poll_ms = if notify { 1000 } else { 300 };
    })
    .await;
    let mut host = w.add_host("bench", 2, 4096).await;
    w.serve(&mut host);
    let customer = w.customer("bench@example.com", 10_000_000).await;
    let (mut total, mut panel, mut queue, mut hostside) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..orders {
        let t0 = Instant::now();
        let inst = w.order_paid(customer, plan, &format!("b{i}.example.com")).await;
        let t_paid = Instant::now();
        let mut t_placed = None;
        loop {
            let (host_id, observed): (Option<uuid::Uuid>, String) =
                sqlx::query_as("SELECT host_id, observed_state::text FROM instances WHERE id = $1")
                    .bind(inst)
                    .fetch_one(&w.pool)
                    .await
                    .unwrap();
            if host_id.is_some() && t_placed.is_none() {
                t_placed = Some(Instant::now());
            }
            if observed == "running" {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "order {i} did not run");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t_run = Instant::now();
        let t_placed = t_placed.unwrap_or(t_run);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        total.push(ms(t_run - t0));
        panel.push(ms(t_paid - t0));
        queue.push(ms(t_placed - t_paid));
        hostside.push(ms(t_run - t_placed));
        // Make room for the next one.
        w.want(inst, "terminated").await;
    }
    // Leave the host empty: the last machines' VMMs are processes of their own.
    let hc = w.host_client(&host);
    for _ in 0..240 {
        if hc.list().await.map(|l| l.is_empty()).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let p99 = pct(&mut total.clone(), 0.99);
    Row { total: pct(&mut total, 0.5), p99, panel: pct(&mut panel, 0.5), queue: pct(&mut queue, 0.5), host: pct(&mut hostside, 0.5) }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let orders: usize = std::env::var("BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    println!("payment to running, {orders} orders per row (ms; medians unless p99):");
    println!("{:<34} {:>8} {:>8} {:>8} {:>8} {:>8}", "", "p50", "p99", "panel", "queue", "host");
    for (what, plan) in [("container (busybox, burst-s)", "burst-s"), ("KVM test guest (kvm-tiny-shared)", "kvm-tiny-shared")] {
        let before = measure(false, plan, orders).await;
        let after = measure(true, plan, orders).await;
        for (how, r) in [("poll 300 ms", &before), ("LISTEN/NOTIFY", &after)] {
            println!("{:<34} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}", format!("{what}, {how}"), r.total, r.p99, r.panel, r.queue, r.host);
        }
        println!(
            "{:<34} {:>8.2} {:>8.2}   (poll / notify: how many times faster)",
            format!("{what}, ratio"),
            before.total / after.total,
            before.p99 / after.p99
        );
    }
}

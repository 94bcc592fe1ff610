//! Time from payment to a running VPS (the KVM test guest), median and p99 over 50 orders,
//! with the share spent in the panel (placing the order and paying), the queue (from the
//! payment's commit until the job has placed the instance on a host) and the host (from
//! placement until the host reports it running). A real panel, its job runners, and a real
//! provisioner in its own network namespace. Timestamps are polled every 5 ms.
//!
//! Run as root: `cargo bench -p vessel-tests --bench provisioning` (`BENCH_ORDERS`).

use std::time::{Duration, Instant};
use vessel_tests::e2e::World;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let orders: usize = std::env::var("BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let mut w = World::new(true).await;
    let mut host = w.add_host("bench", 2, 1024).await;
    w.serve(&mut host);
    let customer = w.customer("bench@example.com", 10_000_000).await;
    let (mut total, mut panel, mut queue, mut hostside) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..orders {
        let t0 = Instant::now();
        let inst = w.order_paid(customer, "kvm-tiny-shared", &format!("b{i}.example.com")).await;
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
    let med = |v: &mut Vec<f64>| pct(v, 0.5);
    let (m_total, p99) = (med(&mut total), pct(&mut total.clone(), 0.99));
    let (mp, mq, mh) = (med(&mut panel), med(&mut queue), med(&mut hostside));
    println!("payment to running, {orders} orders (KVM test guest, 1 vCPU, 64 MiB):");
    println!("  total   median {m_total:8.1} ms   p99 {p99:8.1} ms");
    println!("  panel   median {mp:8.1} ms   ({:.0} % of the median total)", 100.0 * mp / m_total);
    println!("  queue   median {mq:8.1} ms   ({:.0} %)", 100.0 * mq / m_total);
    println!("  host    median {mh:8.1} ms   ({:.0} %)", 100.0 * mh / m_total);
}

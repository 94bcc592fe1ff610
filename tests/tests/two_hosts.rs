//! Placement across a network of two hosts by the rule: a customer's dedicated machines
//! (pinned cores) spread one per host; when neither host has a free core, the next order
//! waits for capacity (order and VPS say so) and is placed as soon as a machine is destroyed.

use vessel_tests::e2e::{wait_for, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinned_machines_spread_wait_and_take_freed_room() {
    let mut w = World::new(true).await;
    // One usable core each: one pinned 1-vCPU machine per host.
    let mut a = w.add_host("a", 1, 1024).await;
    let mut b = w.add_host("b", 1, 1024).await;
    w.serve(&mut a);
    w.serve(&mut b);
    let customer = w.customer("two@example.com", 10_000).await;
    let first = w.order_paid(customer, "kvm-tiny", "one.example.com").await;
    let second = w.order_paid(customer, "kvm-tiny", "two.example.com").await;
    for id in [first, second] {
        wait_for("a machine to run", 90, async || (w.observed(id).await == "running").then_some(())).await;
    }
    let hosts: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT host_id FROM instances WHERE id = ANY($1) ORDER BY host_id")
        .bind(vec![first, second])
        .fetch_all(&w.pool)
        .await
        .unwrap();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(hosts, want, "one per host");
    for h in [&a, &b] {
        assert_eq!(w.host_client(h).list().await.unwrap().len(), 1, "each host runs one machine");
    }

    // No core left anywhere: the third order waits, and says so.
    let third = w.order_paid(customer, "kvm-tiny", "three.example.com").await;
    wait_for("the third to wait for capacity", 30, async || (w.observed(third).await == "waiting_for_capacity").then_some(())).await;
    let order_status: String = sqlx::query_scalar(
        "SELECT o.status::text FROM orders o JOIN subscriptions s ON s.order_id = o.id JOIN instances i ON i.subscription_id = s.id WHERE i.id = $1",
    )
    .bind(third)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(order_status, "waiting_for_capacity");
    let why: String = sqlx::query_scalar("SELECT last_error FROM instances WHERE id = $1").bind(third).fetch_one(&w.pool).await.unwrap();
    assert!(why.contains("not enough cpu"), "{why}");

    // A machine is destroyed: the waiting one takes its place on that host.
    let freed: uuid::Uuid = sqlx::query_scalar("SELECT host_id FROM instances WHERE id = $1").bind(first).fetch_one(&w.pool).await.unwrap();
    w.want(first, "terminated").await;
    wait_for("the third to run", 90, async || (w.observed(third).await == "running").then_some(())).await;
    let on: uuid::Uuid = sqlx::query_scalar("SELECT host_id FROM instances WHERE id = $1").bind(third).fetch_one(&w.pool).await.unwrap();
    assert_eq!(on, freed);

    for id in [second, third] {
        w.want(id, "terminated").await;
    }
    for h in [&a, &b] {
        let hc = w.host_client(h);
        wait_for("the hosts to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
    }
}

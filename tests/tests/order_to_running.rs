//! From paid order to running VPS, across a network: a real panel (job runners and
//! reconciler on) and a real provisioner that joined it with an admin's token, in a network
//! namespace of its own. Order → pay → the KVM test guest runs on the host the rule picked,
//! with its address; a stop acts on the host; the host's link is cut (its instance becomes
//! unknown, nothing is re-created elsewhere) and restored (everything converges, nothing is
//! doubled); termination destroys it and frees its address.

use std::time::Duration;
use vessel_tests::e2e::{wait_for, World};
use vessel_tests::netns::provisioner_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_order_runs_on_a_host_across_the_network() {
    let mut w = World::new(true).await;
    let mut host = w.add_host("h1", 2, 1024).await;
    // A used token cannot join a second host.
    let again = host
        .ns
        .command(provisioner_binary().unwrap())
        .args(["join", "--force", "--config"])
        .arg(&host.config)
        .args(["--panel-url", &w.panel_url, "--token", "vjt_used", "--name", "h2", "--api-url", &host.api_url])
        .output()
        .unwrap();
    assert!(!again.status.success(), "an unknown or used token is refused");
    w.serve(&mut host);

    let customer = w.customer("e2e@example.com", 1000).await;
    let inst = w.order_paid(customer, "kvm-tiny", "guest1.example.com").await;
    wait_for("the VPS to run", 90, async || (w.observed(inst).await == "running").then_some(())).await;
    let (on_host, address): (uuid::Uuid, String) =
        sqlx::query_as("SELECT i.host_id, host(a.address) FROM instances i JOIN ip_addresses a ON a.instance_id = i.id")
            .fetch_one(&w.pool)
            .await
            .unwrap();
    assert_eq!(on_host, host.id);
    assert_eq!(sqlx::query_scalar::<_, String>("SELECT status::text FROM orders").fetch_one(&w.pool).await.unwrap(), "active");

    // Checked on the host itself, through its own API with its secret.
    let hc = w.host_client(&host);
    let listed = hc.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.0, inst);
    assert_eq!(listed[0].state, vessel_core::InstanceState::Running);
    assert_eq!(listed[0].addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec![address]);
    // A wrong secret is refused by the host.
    let wrong = panel::hosts::HostClient::new(
        &host.api_url,
        vessel_core::signing::HostSecret::from_bytes(vec![7; 32]).unwrap(),
        panel::hosts::pinned_http_client(Duration::from_secs(5), &host.tls.as_ref().expect("TLS by default").1).unwrap(),
    );
    assert!(matches!(wrong.list().await, Err(panel::hosts::HostError::Refused(p)) if p.status == 401));

    // The customer stops it: the host follows.
    panel::instances::request_action(&w.pool, &panel::clock::SystemClock, customer.into(), inst.into(), vessel_core::Action::Stop)
        .await
        .unwrap();
    wait_for("the VPS to stop", 60, async || (w.observed(inst).await == "stopped").then_some(())).await;

    // The host is cut off: unreachable, its instance unknown; a start waits.
    host.ns.cut().unwrap();
    wait_for("the host to be marked unreachable", 30, async || (w.observed(inst).await == "unknown").then_some(())).await;
    assert_eq!(sqlx::query_scalar::<_, String>("SELECT reachability::text FROM hosts").fetch_one(&w.pool).await.unwrap(), "unreachable");
    panel::instances::request_action(&w.pool, &panel::clock::SystemClock, customer.into(), inst.into(), vessel_core::Action::Start)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(w.observed(inst).await, "unknown", "nothing happens while the host is away");
    // The link returns: everything converges, nothing is doubled.
    host.ns.restore().unwrap();
    sqlx::query("UPDATE jobs SET run_after = now() WHERE status = 'queued'").execute(&w.pool).await.unwrap();
    wait_for("the VPS to run again", 90, async || (w.observed(inst).await == "running").then_some(())).await;
    assert_eq!(hc.list().await.unwrap().len(), 1, "one instance on the host");
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM instances").fetch_one(&w.pool).await.unwrap(), 1);

    // A burstable container on the same host, placed by the same rule, with its address.
    let ct = w.order_paid(customer, "burst-s", "ct1.example.com").await;
    wait_for("the container to run", 90, async || (w.observed(ct).await == "running").then_some(())).await;
    let listed = hc.list().await.unwrap();
    let status = listed.iter().find(|s| s.id.0 == ct).expect("the host runs the container");
    assert_eq!(status.kind, vessel_core::InstanceKind::Container);
    let ct_addr: String =
        sqlx::query_scalar("SELECT host(address) FROM ip_addresses WHERE instance_id = $1").bind(ct).fetch_one(&w.pool).await.unwrap();
    assert_eq!(status.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(), vec![ct_addr]);
    w.want(ct, "terminated").await;
    wait_for("the container to be destroyed", 60, async || (w.observed(ct).await == "destroyed").then_some(())).await;

    // Terminated: destroyed on the host, its address free again.
    w.want(inst, "terminated").await;
    wait_for("the VPS to be destroyed", 60, async || (w.observed(inst).await == "destroyed").then_some(())).await;
    assert!(hc.list().await.unwrap().is_empty());
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ip_addresses WHERE instance_id IS NOT NULL").fetch_one(&w.pool).await.unwrap(),
        0
    );
    assert!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM usage_samples").fetch_one(&w.pool).await.unwrap() > 0, "usage flowed back");
}

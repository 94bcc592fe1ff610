//! Per-host TLS pinning: a host whose API serves a self-signed certificate sends its SHA-256
//! at join; the panel, with no CA configured, provisions on it through that pin only. A
//! different certificate at the host's address (an impostor, or a host re-keyed without
//! joining again) is refused: the host goes unreachable; the right certificate back, it
//! converges again.

use std::time::Duration;
use vessel_tests::e2e::{self_signed, wait_for, World};

async fn reachability(w: &World, host: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT reachability::text FROM hosts WHERE id = $1").bind(host).fetch_one(&w.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_is_reached_only_through_the_certificate_it_joined_with() {
    let mut w = World::new(true).await;
    let mut h = w.add_host_with("pinned", 2, 1024, true).await;
    w.serve(&mut h);
    let (cert, pin) = h.tls.clone().expect("a TLS host");
    assert!(h.api_url.starts_with("https://"), "{}", h.api_url);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT tls_cert_sha256 FROM hosts WHERE id = $1").bind(h.id).fetch_one(&w.pool).await.unwrap();
    assert_eq!(stored.as_deref(), Some(pin.as_str()), "the panel keeps the fingerprint the host joined with");

    // The panel trusts no CA for it, and still provisions on it: through the pin.
    let customer = w.customer("pin@example.com", 10_000).await;
    let vm = w.order_paid(customer, "kvm-tiny-shared", "pinned.example.com").await;
    wait_for("the VPS to run on the pinned host", 90, async || (w.observed(vm).await == "running").then_some(())).await;

    // Without the pin (system roots only), the self-signed certificate is refused.
    let secret = std::fs::read_to_string(h.dir.join("state/host.secret")).unwrap();
    let secret = vessel_core::signing::HostSecret::from_base64(secret.trim()).unwrap();
    let unpinned = panel::hosts::HostClient::new(&h.api_url, secret, panel::hosts::http_client(Duration::from_secs(5), None));
    assert!(unpinned.list().await.is_err(), "a client without the pin or a CA does not trust the host");

    // Another certificate at the same address: refused, the host goes unreachable.
    let original = (std::fs::read(&cert).unwrap(), std::fs::read(h.dir.join("tls/key.pem")).unwrap());
    self_signed(&h.dir.join("tls"), h.ns.addr);
    h.ns.kill_all();
    w.serve(&mut h);
    let err = w.host_client(&h).list().await.expect_err("the pinned client refuses another certificate");
    assert!(err.to_string().contains("not the one it joined with"), "{err}");
    wait_for("the host to be unreachable", 30, async || (reachability(&w, h.id).await == "unreachable").then_some(())).await;
    assert_eq!(w.observed(vm).await, "unknown", "its VPS are unknown, not re-created elsewhere");

    // The certificate it joined with back: reachable again, the VPS running as before.
    std::fs::write(&cert, &original.0).unwrap();
    std::fs::write(h.dir.join("tls/key.pem"), &original.1).unwrap();
    h.ns.kill_all();
    w.serve(&mut h);
    wait_for("the host to be reachable again", 30, async || (reachability(&w, h.id).await == "reachable").then_some(())).await;
    wait_for("the VPS to be seen running again", 30, async || (w.observed(vm).await == "running").then_some(())).await;

    w.want(vm, "terminated").await;
    let hc = w.host_client(&h);
    wait_for("the host to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
}

//! TLS by default with per-host pinning: `provisioner join` makes the host's self-signed
//! certificate (none is configured) and sends its SHA-256; the panel, with no CA configured,
//! provisions on it through that pin only. Another host's certificate at host A's address
//! (an impostor, or a host re-keyed without joining again) is refused: host A goes
//! unreachable; its own certificate back, it converges again.

use std::time::Duration;
use vessel_tests::e2e::{wait_for, World};

async fn reachability(w: &World, host: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT reachability::text FROM hosts WHERE id = $1").bind(host).fetch_one(&w.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_is_reached_only_through_the_certificate_it_joined_with() {
    let mut w = World::new(true).await;
    // Host A, with no TLS settings at all: TLS is the default.
    let mut h = w.add_host("pinned", 2, 1024).await;
    let config = std::fs::read_to_string(&h.config).unwrap();
    assert!(!config.contains("tls_cert") && !config.contains("plain_http"), "{config}");
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

    // Host B's certificate (made the way B's join makes it) served at A's address: refused,
    // A goes unreachable.
    let key = h.dir.join("state/tls/key.pem");
    let original = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let b = w.scratch.path().join("host-b-tls");
    let (b_cert, b_key) = (b.join("cert.pem"), b.join("key.pem"));
    assert!(provisioner::tls::ensure_self_signed(&b_cert, &b_key, &[h.ns.addr.to_string()]).unwrap());
    assert_ne!(provisioner::join::cert_sha256(&b_cert).unwrap(), pin);
    std::fs::copy(&b_cert, &cert).unwrap();
    std::fs::copy(&b_key, &key).unwrap();
    h.ns.kill_all();
    w.serve(&mut h);
    let err = w.host_client(&h).list().await.expect_err("the pinned client refuses another certificate");
    assert!(err.to_string().contains("not the one it joined with"), "{err}");
    wait_for("the host to be unreachable", 30, async || (reachability(&w, h.id).await == "unreachable").then_some(())).await;
    assert_eq!(w.observed(vm).await, "unknown", "its VPS are unknown, not re-created elsewhere");

    // The certificate it joined with back: reachable again, the VPS running as before.
    std::fs::write(&cert, &original.0).unwrap();
    std::fs::write(&key, &original.1).unwrap();
    h.ns.kill_all();
    w.serve(&mut h);
    wait_for("the host to be reachable again", 30, async || (reachability(&w, h.id).await == "reachable").then_some(())).await;
    wait_for("the VPS to be seen running again", 30, async || (w.observed(vm).await == "running").then_some(())).await;

    w.want(vm, "terminated").await;
    let hc = w.host_client(&h);
    wait_for("the host to be empty", 60, async || hc.list().await.unwrap().is_empty().then_some(())).await;
}

//! The API refuses what is not signed with the host's secret, and the create/destroy
//! contract: idempotent by id, conflicts and admission refusals with their numbers.

mod api_support;

use api_support::*;
use serde_json::json;
use vessel_core::signing::{sign, unix_now, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use vessel_core::InstanceId;

fn headers(h: &vessel_core::signing::SignatureHeaders) -> Vec<(&'static str, String)> {
    h.pairs().iter().map(|(k, v)| (*k, v.to_string())).collect()
}

async fn send(d: &Daemon, method: &str, path: &str, body: &[u8], h: &[(&'static str, String)]) -> (u16, serde_json::Value) {
    let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    d.raw(method, path, body, &hs).await
}

async fn exists(d: &Daemon, id: InstanceId) -> bool {
    let (status, _) = d.call("GET", &format!("/v1/instances/{id}"), None).await;
    assert!(status == 200 || status == 404, "{status}");
    status == 200
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_wrong_stale_and_replayed_requests_are_refused_and_change_nothing() {
    require_kvm();
    // The environment overrides the file (PROVISIONER__*, nested with __).
    let env = vec![("PROVISIONER__CAPACITY__MEMORY_MIB".to_string(), "1536".to_string())];
    let d = Daemon::start(Options { env, ..Options::default() });

    // Signed: works.
    let (status, host) = d.call("GET", "/v1/host", None).await;
    assert_eq!(status, 200, "{host}");
    assert_eq!(host["capacity"]["memory_mib"], 1536);
    assert_eq!(host["capacity"]["cpus"], 2);
    assert_eq!(host["kinds"], json!(["container", "kvm"]));
    assert_eq!(host["load"]["instances"], 0);

    let a = spec(kvm_plan(1, 128, 1.0));
    let path_a = format!("/v1/instances/{}", a.id);
    let body_a = serde_json::to_vec(&a).unwrap();

    // No headers at all.
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &[]).await;
    assert_eq!((status, p["type"].as_str()), (401, Some("unauthorized")), "{p}");
    // One header missing.
    let full = headers(&sign(&d.secret, "PUT", &path_a, &body_a, unix_now(), "n-missing"));
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &full[..2]).await;
    assert_eq!(status, 401, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(HEADER_SIGNATURE), "{p}");
    // Signed with another secret.
    let wrong = headers(&sign(&random_secret(), "PUT", &path_a, &body_a, unix_now(), "n-wrong"));
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &wrong).await;
    assert_eq!(status, 401, "{p}");
    assert_eq!(p["detail"], "bad signature");
    // Signed for another body (a tampered request).
    let other_body = serde_json::to_vec(&spec(kvm_plan(1, 256, 1.0))).unwrap();
    let (status, _) = send(&d, "PUT", &path_a, &other_body, &full).await;
    assert_eq!(status, 401);
    // Stale: two minutes old.
    let stale = headers(&sign(&d.secret, "PUT", &path_a, &body_a, unix_now() - 120, "n-stale"));
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &stale).await;
    assert_eq!(status, 401, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("timestamp"), "{p}");
    // Malformed timestamp.
    let mut bad_ts = full.clone();
    bad_ts[0].1 = "yesterday".into();
    assert_eq!(send(&d, "PUT", &path_a, &body_a, &bad_ts).await.0, 401);
    assert!(!exists(&d, a.id).await, "no refused request created anything");
    assert!(d.store().list().unwrap().is_empty());

    // A genuine request once, then the very same bytes replayed after a delete.
    let genuine = headers(&sign(&d.secret, "PUT", &path_a, &body_a, unix_now(), "n-genuine"));
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &genuine).await;
    assert_eq!(status, 201, "{p}");
    let (status, _) = d.call("DELETE", &path_a, None).await;
    assert_eq!(status, 204);
    let (status, p) = send(&d, "PUT", &path_a, &body_a, &genuine).await;
    assert_eq!(status, 401, "{p}");
    assert_eq!(p["detail"], "nonce already used");
    assert!(!exists(&d, a.id).await, "the replay did not re-create it");
    // A replayed GET is refused as well (every endpoint checks).
    let g = headers(&sign(&d.secret, "GET", "/v1/instances", b"", unix_now(), "n-list"));
    assert_eq!(send(&d, "GET", "/v1/instances", b"", &g).await.0, 200);
    assert_eq!(send(&d, "GET", "/v1/instances", b"", &g).await.0, 401);
    // Unknown routes are refused unsigned too.
    assert_eq!(send(&d, "GET", "/v1/nothing", b"", &[]).await.0, 401);
    // `/healthz` is the one route that answers unsigned (systemd, monitoring), and it says no
    // more than that the API serves.
    let http = provisioner::client::http_client(d.ca_pem.as_deref(), std::time::Duration::from_secs(10)).unwrap();
    let health = http.get(format!("{}/healthz", d.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let _ = (HEADER_NONCE, HEADER_TIMESTAMP);
    // The refusals are logged, the secret never.
    let log = d.log();
    assert!(log.contains("refused an unauthenticated request"), "{log}");
    assert!(!log.contains(&d.secret.to_base64()), "the secret is not in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_is_idempotent_conflicts_are_409_and_admission_refusals_422() {
    require_kvm();
    let d = Daemon::start(Options::default());
    let a = spec(kvm_plan(1, 256, 1.0));
    let path = format!("/v1/instances/{}", a.id);
    let body = serde_json::to_value(&a).unwrap();

    let (status, s) = d.call("PUT", &path, Some(body.clone())).await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["state"], "stopped");
    assert_eq!(s["kind"], "kvm");
    let (status, s) = d.call("PUT", &path, Some(body.clone())).await;
    assert_eq!(status, 200, "the same spec again is not an error: {s}");
    let (_, list) = d.call("GET", "/v1/instances", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(d.store().list().unwrap().len(), 1);

    // A different spec under the same id.
    let mut other = a.clone();
    other.hostname = vessel_core::Hostname::parse("other.example.com").unwrap();
    let (status, p) = d.call("PUT", &path, Some(serde_json::to_value(&other).unwrap())).await;
    assert_eq!((status, p["type"].as_str()), (409, Some("spec-conflict")), "{p}");
    // The path's id must be the spec's.
    let b = spec(kvm_plan(1, 128, 1.0));
    let (status, p) = d.call("PUT", &path, Some(serde_json::to_value(&b).unwrap())).await;
    assert_eq!((status, p["type"].as_str()), (400, Some("invalid-request")), "{p}");
    // Not JSON of a spec.
    let (status, _) = d.call("PUT", &format!("/v1/instances/{}", b.id), Some(json!({"id": b.id}))).await;
    assert_eq!(status, 400);

    // 256 + 1024 MiB > 1024: refused with the numbers, and nothing recorded.
    let big = spec(kvm_plan(1, 1024, 1.0));
    let (status, p) = d.call("PUT", &format!("/v1/instances/{}", big.id), Some(serde_json::to_value(&big).unwrap())).await;
    assert_eq!((status, p["type"].as_str()), (422, Some("admission-refused")), "{p}");
    assert_eq!(p["resource"], "committed_memory");
    assert_eq!(p["needed"], 1024.0);
    assert_eq!(p["free"], 768.0);
    assert_eq!(p["unit"], "MiB");
    assert_eq!(d.store().list().unwrap().len(), 1);
    // Two cores pinned on a 2-CPU host, with one already pinned: cpu.
    let cpu = spec(kvm_plan(2, 128, 1.0));
    let (status, p) = d.call("PUT", &format!("/v1/instances/{}", cpu.id), Some(serde_json::to_value(&cpu).unwrap())).await;
    assert_eq!((status, p["resource"].as_str()), (422, Some("cpu")), "{p}");
    assert_eq!(p["needed"], 2.0);
    assert_eq!(p["free"], 1.0);

    // A container under the same rules (its own template).
    let mut container = spec(
        vessel_core::PlanResources::try_from(vessel_core::resources::ResourceSpec {
            kind: vessel_core::InstanceKind::Container,
            vcpus: 1,
            memory_guaranteed_mib: Some(64),
            memory_burst_mib: 128,
            swap_mib: 0,
            disk_gib: 1,
            cpu_ratio: 4.0,
            memory_ratio: 1.5,
            disk_ratio: 1.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap(),
    );
    container.template = "busybox".into();
    let (status, p) = d.call("PUT", &format!("/v1/instances/{}", container.id), Some(serde_json::to_value(&container).unwrap())).await;
    if d.kinds().contains(&"container".to_string()) {
        assert_eq!(status, 201, "{p}");
        assert_eq!(d.call("DELETE", &format!("/v1/instances/{}", container.id), None).await.0, 204);
    } else {
        assert_eq!((status, p["type"].as_str()), (422, Some("kind-unsupported")), "{p}");
    }

    // An action the state does not allow: 409 with what to do.
    let (status, p) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "suspend"}))).await;
    assert_eq!((status, p["type"].as_str()), (409, Some("action-not-allowed")), "{p}");
    assert_eq!(p["detail"], "cannot suspend a stopped instance: start it first");
    assert_eq!(p["state"], "stopped");
    // Resize without resources is a bad request.
    let (status, _) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "resize"}))).await;
    assert_eq!(status, 400);
    // Unknown instance.
    let (status, p) = d.call("GET", &format!("/v1/instances/{}/usage", InstanceId::new_random()), None).await;
    assert_eq!((status, p["type"].as_str()), (404, Some("not-found")), "{p}");

    // The host reports the load.
    let (_, host) = d.call("GET", "/v1/host", None).await;
    assert_eq!(host["load"]["instances"], 1);
    assert_eq!(host["load"]["pinned_cores"], 1);

    // Destroy is idempotent.
    assert_eq!(d.call("DELETE", &path, None).await.0, 204);
    assert_eq!(d.call("DELETE", &path, None).await.0, 204);
    assert_eq!(d.call("GET", &path, None).await.0, 404);
    assert!(!d.kvm().dir(&a.id).exists(), "its directory is gone");
}

/// Creates of different ids racing for the last room: exactly as many as fit are admitted.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_never_overfill_the_host() {
    require_kvm();
    let d = Daemon::start(Options::default());
    // 1024 MiB of memory, 256 MiB each (memory is the binding rule; CPU allows 4 too).
    let specs: Vec<_> = (0..10).map(|_| spec(kvm_plan(1, 256, 2.0))).collect();
    let handles: Vec<_> = specs
        .iter()
        .map(|s| {
            let c = d.client.clone();
            let path = format!("/v1/instances/{}", s.id);
            let body = serde_json::to_value(s).unwrap();
            tokio::spawn(async move { c.json(reqwest::Method::PUT, &path, Some(&body)).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for h in handles {
        match h.await.unwrap() {
            (201, _) => created += 1,
            (422, p) if p["type"] == "admission-refused" => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((created, refused), (4, 6));
    assert_eq!(d.store().list().unwrap().len(), 4);
    let (_, host) = d.call("GET", "/v1/host", None).await;
    assert_eq!(host["load"]["committed_memory_mib"], 1024.0);
}

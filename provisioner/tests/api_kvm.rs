//! A KVM machine driven only through the API, checked on the host itself: create, start,
//! suspend, resume, stop, destroy; concurrent requests for one id make one machine; a
//! kill -9 of the daemon leaves the machine running and the restarted daemon adopts it.

mod api_support;

use api_support::*;
use provisioner::runtime::Runtime;
use provisioner::vm::cgroup;
use provisioner::vm::runtime::vmm_alive;
use serde_json::json;
use std::time::Duration;
use vessel_core::InstanceState;

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_through_its_whole_lifecycle() {
    require_kvm();
    let d = Daemon::start(Options::default());
    let a = spec(kvm_plan(1, 128, 2.0));
    let path = format!("/v1/instances/{}", a.id);
    let act = |action: &'static str| {
        let path = format!("{path}/actions");
        let d = &d;
        async move { d.call("POST", &path, Some(json!({"action": action}))).await }
    };

    assert_eq!(d.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await.0, 201);
    let (status, s) = act("start").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["state"], "running");
    assert_eq!(s["should_run"], true);
    let pid = d.pid_of(&a.id).expect("a pid recorded");
    assert!(alive(pid));
    assert!(cgroup::procs(&d.cgroup_parent, &a.id.to_string()).contains(&(pid as u64)), "the VMM is in its cgroup");
    d.wait_ticking(&a.id);
    // Start again: idempotent, the same machine.
    assert_eq!(act("start").await.0, 200);
    assert_eq!(d.pid_of(&a.id), Some(pid));

    let (status, s) = act("suspend").await;
    assert_eq!((status, s["state"].as_str()), (200, Some("suspended")), "{s}");
    let frozen = d.ticks(&a.id);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(d.ticks(&a.id), frozen, "no heartbeat while suspended");
    assert_eq!(d.kvm().observe(&d.store().get(&a.id).unwrap().unwrap()).unwrap(), InstanceState::Suspended);
    // Reinstall is refused while suspended.
    let (status, p) = act("reinstall").await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["detail"], "cannot reinstall a suspended instance: resume it first");

    let (status, s) = act("resume").await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.ticks(&a.id) <= frozen {
        assert!(std::time::Instant::now() < deadline, "heartbeat did not continue after resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, u) = d.call("GET", &format!("{path}/usage"), None).await;
    assert_eq!(status, 200);
    assert!(u["memory_bytes"].as_u64().unwrap() >= 128 << 20, "{u}");
    assert!(u["cpu_time_ns"].as_u64().unwrap() > 0, "{u}");

    let (status, s) = act("stop").await;
    assert_eq!((status, s["state"].as_str()), (200, Some("stopped")), "{s}");
    assert_eq!(s["should_run"], false);
    assert!(!alive(pid), "the VMM is gone after stop");
    assert!(cgroup::procs(&d.cgroup_parent, &a.id.to_string()).is_empty());

    assert_eq!(d.call("DELETE", &path, None).await.0, 204);
    assert!(!d.kvm().dir(&a.id).exists());
    assert!(d.store().get(&a.id).unwrap().is_none());
    assert_eq!(d.call("GET", &path, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_for_one_id_make_one_machine() {
    require_kvm();
    let d = Daemon::start(Options::default());
    let a = spec(kvm_plan(1, 64, 2.0));
    let path = format!("/v1/instances/{}", a.id);
    let body = serde_json::to_value(&a).unwrap();
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let c = d.client.clone();
        async move { c.json(method, &path, Some(&body)).await.expect("the daemon answers") }
    };
    let puts = (0..4).map(|_| call(reqwest::Method::PUT, path.clone(), body.clone()));
    let statuses: Vec<u16> = futures_join(puts).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
    let starts = (0..4).map(|_| call(reqwest::Method::POST, format!("{path}/actions"), json!({"action": "start"})));
    for (status, s) in futures_join(starts).await {
        assert_eq!(status, 200, "{s}");
    }
    assert_eq!(d.store().list().unwrap().len(), 1);
    let procs = cgroup::procs(&d.cgroup_parent, &a.id.to_string());
    assert_eq!(procs.len(), 1, "exactly one VMM: {procs:?}");
    let (_, list) = d.call("GET", "/v1/instances", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "running");
}

/// Runs the futures concurrently on the test's runtime.
async fn futures_join<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_daemon_restarts_and_adopts_the_running_machine() {
    require_kvm();
    let mut d = Daemon::start(Options::default());
    let a = spec(kvm_plan(1, 64, 2.0));
    let path = format!("/v1/instances/{}", a.id);
    assert_eq!(d.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await.0, 201);
    assert_eq!(d.call("POST", &format!("{path}/actions"), Some(json!({"action": "start"}))).await.0, 200);
    let pid = d.pid_of(&a.id).unwrap();
    d.wait_ticking(&a.id);

    // A request captured before the restart...
    let captured = vessel_core::signing::sign_now(&d.secret, "GET", &path, b"");
    let captured: Vec<(&str, String)> = captured.pairs().iter().map(|(k, v)| (*k, v.to_string())).collect();
    let hs: Vec<(&str, &str)> = captured.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(d.raw("GET", &path, b"", &hs).await.0, 200);
    d.kill9();
    assert!(alive(pid), "the machine outlives its provisioner");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = d.ticks(&a.id);
    d.spawn();
    let (status, s) = d.call("GET", &path, None).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(d.pid_of(&a.id), Some(pid), "the same VMM, not a second one");
    assert!(d.log().contains("adopted"), "{}", d.log());
    // ...cannot be replayed against the restarted daemon, whose replay cache is new.
    let (status, p) = d.raw("GET", &path, b"", &hs).await;
    assert_eq!(status, 401, "{p}");
    // Still controllable through the new daemon.
    let (status, s) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "suspend"}))).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("suspended")), "{s}");
    assert!(d.ticks(&a.id) >= before);
    // Stop is refused while suspended (the lifecycle rule), and works after resume.
    let (status, p) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "stop"}))).await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(d.call("POST", &format!("{path}/actions"), Some(json!({"action": "resume"}))).await.0, 200);
    let (status, s) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "stop"}))).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("stopped")), "{s}");
    let facts = serde_json::from_value(d.store().get(&a.id).unwrap().unwrap().runtime).unwrap();
    assert!(!vmm_alive(&facts));
    assert!(!alive(pid));
}

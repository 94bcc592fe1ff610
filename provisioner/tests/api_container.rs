//! A container driven only through the API, checked on the host itself: create, start,
//! suspend (cgroup frozen), resume, resize (new memory limit at once), reinstall, stop,
//! destroy (nothing left).

mod api_support;

use api_support::*;
use serde_json::json;
use vessel_core::resources::ResourceSpec;
use vessel_core::{InstanceKind, PlanResources};

fn ct_plan(burst_mib: u64) -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Container,
        vcpus: 1,
        memory_guaranteed_mib: Some(64),
        memory_burst_mib: burst_mib,
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
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_through_its_whole_lifecycle() {
    let d = Daemon::start(Options::default());
    let mut a = spec(ct_plan(128));
    a.template = "busybox".into();
    let path = format!("/v1/instances/{}", a.id);
    let act = |body: serde_json::Value| {
        let path = format!("{path}/actions");
        let d = &d;
        async move { d.call("POST", &path, Some(body)).await }
    };
    let ct = d.containers();
    let cg = ct.rt.cgroup(&a.id);

    let (status, s) = d.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await;
    assert_eq!(status, 201, "{s}");
    assert_eq!((s["kind"].as_str(), s["state"].as_str()), (Some("container"), Some("stopped")), "{s}");
    assert_eq!(d.call("PUT", &path, Some(serde_json::to_value(&a).unwrap())).await.0, 200);
    // An unknown template is refused before anything is made.
    let mut b = spec(ct_plan(128));
    b.template = "no-such-template".into();
    let (status, p) = d.call("PUT", &format!("/v1/instances/{}", b.id), Some(serde_json::to_value(&b).unwrap())).await;
    assert_eq!((status, p["type"].as_str()), (400, Some("invalid-request")), "{p}");
    assert!(d.store().get(&b.id).unwrap().is_none());

    let (status, s) = act(json!({"action": "start"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");
    let record = d.store().get(&a.id).unwrap().unwrap();
    let pid = ct.rt.live_pid(&record).expect("a live init");
    assert!(cg.procs().contains(&pid), "init is in the container's cgroup");

    let (status, s) = act(json!({"action": "suspend"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("suspended")), "{s}");
    assert!(cg.frozen());
    let (status, s) = act(json!({"action": "resume"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");
    assert!(!cg.frozen());

    // Resize: the new ceiling applies at once, the same init keeps running.
    let (status, s) = act(json!({"action": "resize", "resources": serde_json::to_value(ct_plan(256)).unwrap()})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");
    assert_eq!(s["resources"]["memory_burst_mib"], 256);
    let limit: u64 = std::fs::read_to_string(cg.controller_dir("memory").join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.controller_dir("memory").join("memory.max")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(limit, 256 << 20);

    // Reinstall: a new root filesystem, running again afterwards.
    let marker = ct.rt.root(&a.id).join("root/marker");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, b"old").unwrap();
    let (status, s) = act(json!({"action": "reinstall"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");
    assert!(!marker.exists(), "the old root filesystem is gone");
    let (status, p) = act(json!({"action": "reinstall", "template": "no-such-template"})).await;
    assert_eq!(status, 400, "{p}");
    // A start carrying resources is not a request: refused before anything happens.
    let (status, p) = act(json!({"action": "start", "resources": serde_json::to_value(ct_plan(256)).unwrap()})).await;
    assert_eq!((status, p["type"].as_str()), (400, Some("invalid-request")), "{p}");
    // The password reset reaches the container runtime through the Runtime trait.
    let (status, s) =
        act(json!({"action": "reset_password", "root_password_hash": "$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEF"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("running")), "{s}");

    let (status, u) = d.call("GET", &format!("{path}/usage"), None).await;
    assert_eq!(status, 200, "{u}");
    assert!(u["memory_bytes"].as_u64().unwrap() > 0, "{u}");

    let (status, s) = act(json!({"action": "stop"})).await;
    assert_eq!((status, s["state"].as_str()), (200, Some("stopped")), "{s}");
    assert!(cg.procs().is_empty());

    assert_eq!(d.call("DELETE", &path, None).await.0, 204);
    assert!(!ct.rt.dir(&a.id).exists(), "its directory is gone");
    assert!(!cg.exists(), "its cgroup is gone");
    assert_eq!(d.call("GET", &path, None).await.0, 404);
}

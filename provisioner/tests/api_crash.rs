//! The daemon killed in the middle of a container's create and destroy (at every step, by
//! the runtime's fault injection `VESSEL_CRASH_AT`, which aborts like a kill -9): a restarted
//! daemon finishes the operation, the same request again is idempotent, and nothing is
//! doubled or left behind.

mod api_support;

use api_support::*;
use provisioner::container::{CREATE_STEPS, DESTROY_STEPS};
use serde_json::json;
use vessel_core::resources::ResourceSpec;
use vessel_core::{InstanceKind, PlanResources};

fn ct_plan() -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Container,
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
    .unwrap()
}

fn restart(d: &mut Daemon, crash_at: Option<String>) {
    d.kill9();
    d.env = crash_at.map(|c| vec![("VESSEL_CRASH_AT".to_string(), c)]).unwrap_or_default();
    d.spawn();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_at_any_step_of_create_or_destroy_converges() {
    let mut d = Daemon::start(Options::default());
    let ct = d.containers();
    // The steps inside the runtime (the record write and the start are the service's own).
    let creates: Vec<&str> = CREATE_STEPS.iter().copied().filter(|s| !matches!(*s, "record" | "start")).collect();
    let destroys: Vec<&str> = DESTROY_STEPS.iter().copied().filter(|s| !matches!(*s, "record" | "forget")).collect();
    for (i, create_step) in creates.iter().enumerate() {
        let destroy_step = destroys[i % destroys.len()];
        let mut a = spec(ct_plan());
        a.template = "busybox".into();
        let path = format!("/v1/instances/{}", a.id);
        let body = serde_json::to_value(&a).unwrap();

        // Create dies at `create_step`.
        restart(&mut d, Some(format!("create:{create_step}")));
        let r = d.client.json(reqwest::Method::PUT, &path, Some(&body)).await;
        assert!(r.is_err(), "the daemon died mid-create at {create_step}: {r:?}");
        // Restarted: the create was finished at start-up; the same PUT is answered as done.
        restart(&mut d, None);
        let (status, s) = d.call("GET", &path, None).await;
        assert_eq!((status, s["state"].as_str(), s["pending"].as_str()), (200, Some("stopped"), None), "after {create_step}: {s}");
        let (status, s) = d.call("PUT", &path, Some(body.clone())).await;
        assert_eq!(status, 200, "{s}");
        let (status, s) = d.call("POST", &format!("{path}/actions"), Some(json!({"action": "start"}))).await;
        assert_eq!((status, s["state"].as_str()), (200, Some("running")), "after {create_step}: {s}");
        // One container: exactly one process in its cgroup whose parent is outside it. The
        // short-lived launcher that forks the init may still be exiting right after the start,
        // so let it settle; a second init would stay and fail this.
        let ppid = |pid: u32| -> u32 {
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            st.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
        };
        let mut procs = Vec::new();
        let mut roots = 0;
        for _ in 0..40 {
            procs = ct.rt.cgroup(&a.id).procs();
            roots = procs.iter().filter(|p| !procs.contains(&ppid(**p))).count();
            if roots == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(roots, 1, "one init, not two: {procs:?}");

        // Destroy dies at `destroy_step`.
        restart(&mut d, Some(format!("destroy:{destroy_step}")));
        let r = d.client.json::<()>(reqwest::Method::DELETE, &path, None).await;
        assert!(r.is_err(), "the daemon died mid-destroy at {destroy_step}: {r:?}");
        restart(&mut d, None);
        assert_eq!(d.call("GET", &path, None).await.0, 404, "the destroy was finished after {destroy_step}");
        assert_eq!(d.call("DELETE", &path, None).await.0, 204);
        assert!(!ct.rt.dir(&a.id).exists(), "no directory left after {destroy_step}");
        assert!(!ct.rt.cgroup(&a.id).exists(), "no cgroup left after {destroy_step}");
        let loops = String::from_utf8_lossy(&std::process::Command::new("losetup").args(["-l", "-n"]).output().unwrap().stdout).to_string();
        assert!(!loops.contains(&a.id.to_string()), "no loop device left: {loops}");
    }
    assert!(d.store().list().unwrap().is_empty());
}

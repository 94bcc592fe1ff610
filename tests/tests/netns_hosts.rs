//! Several provisioners on one machine, each in its own network namespace: both answer
//! signed requests from the root namespace; cutting one's link makes requests to it time
//! out while the other still answers; restoring it brings it back; nothing is left after.

use provisioner::client::{http_client, HostClient};
use std::process::Command;
use std::time::{Duration, Instant};
use vessel_core::signing::HostSecret;
use vessel_tests::netns::{provisioner_binary, HostNs, Network};

/// Destroys whatever machines a namespaced daemon left (they outlive it, as on a real host)
/// and removes its cgroup parent, also when the test fails half-way.
struct Machines {
    state: std::path::PathBuf,
    parent: String,
    bin: std::path::PathBuf,
}

impl Drop for Machines {
    fn drop(&mut self) {
        use provisioner::runtime::Runtime;
        let store = provisioner::store::InstanceStore::open(&self.state).unwrap();
        let cap = vessel_core::admission::HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 10 };
        let cfg = provisioner::vm::runtime::KvmRuntimeConfig::new(
            self.state.clone(),
            self.parent.clone(),
            self.bin.clone(),
            "/nonexistent".into(),
            cap,
        );
        let kvm = provisioner::vm::runtime::KvmRuntime::new(cfg, store.clone());
        for mut r in store.list().unwrap_or_default() {
            let _ = kvm.destroy(&mut r);
        }
        let _ = provisioner::vm::cgroup::remove_parent(&self.parent);
    }
}

fn secret() -> HostSecret {
    let mut b = Vec::new();
    for _ in 0..2 {
        b.extend(std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().replace('-', "").into_bytes());
    }
    HostSecret::from_bytes(b).unwrap()
}

/// Starts `provisioner serve` in `host` on port 7443 with the test guest as its one image.
fn serve(host: &mut HostNs, bin: &std::path::Path, dir: &std::path::Path, secret: &HostSecret) -> String {
    let guest = provisioner::vm::guest::build(&dir.join("guest")).expect("building the test guest (as/ld)");
    let image = dir.join("images").join("vessel-test-guest");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join("image.json"), serde_json::json!({"kernel": guest.elf, "cmdline": "heartbeat"}).to_string()).unwrap();
    // This test is about namespaces and routing, not transport: plain HTTP, said explicitly.
    let extra =
        "plain_http = true\n[capacity]\ncpus = 2\nmemory_mib = 1024\ndisk_gib = 10\n[reserved]\ncpus = 0\nmemory_mib = 0\ndisk_gib = 0";
    host.start_provisioner(bin, dir, 7443, &secret.to_base64(), &dir.join("images"), extra).unwrap()
}

async fn host_report(c: &HostClient) -> Result<u16, String> {
    c.json::<()>(reqwest::Method::GET, "/v1/host", None).await.map(|(s, _)| s).map_err(|e| e.to_string())
}

fn listed(what: &[&str], needle: &str) -> bool {
    let out = Command::new("ip").args(what).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_in_namespaces_and_one_cut_off() {
    let bin = provisioner_binary().expect("the provisioner binary");
    let scratch = tempfile::tempdir().unwrap();
    let mut net = Network::new().expect("making the test network (needs root and iproute2)");
    let mut a = net.add_host().unwrap();
    let mut b = net.add_host().unwrap();
    let (sa, sb) = (secret(), secret());
    let (da, db) = (scratch.path().join("a"), scratch.path().join("b"));
    let _machines_a = Machines { state: da.join("state"), parent: a.cgroup_parent(), bin: bin.clone() };
    let url_a = serve(&mut a, &bin, &da, &sa);
    let url_b = serve(&mut b, &bin, &db, &sb);
    assert_eq!(url_a, format!("http://{}:7443", a.addr));
    assert_eq!(url_b, format!("http://{}:7443", b.addr));

    let http = http_client(None, Duration::from_secs(2)).unwrap();
    let ca = HostClient::new(&url_a, sa.clone(), http.clone());
    let cb = HostClient::new(&url_b, sb.clone(), http.clone());
    // Both answer from the root namespace, each only to its own secret.
    assert_eq!(host_report(&ca).await, Ok(200));
    assert_eq!(host_report(&cb).await, Ok(200));
    let crossed = HostClient::new(&url_a, sb.clone(), http.clone());
    assert_eq!(host_report(&crossed).await, Ok(401));

    // A namespaced daemon runs machines (nsenter keeps the host's /sys and cgroups).
    let plan = vessel_core::PlanResources::try_from(vessel_core::resources::ResourceSpec {
        kind: vessel_core::InstanceKind::Kvm,
        vcpus: 1,
        memory_guaranteed_mib: None,
        memory_burst_mib: 64,
        swap_mib: 0,
        disk_gib: 1,
        cpu_ratio: 2.0,
        memory_ratio: 1.0,
        disk_ratio: 1.0,
        pids_max: None,
        net_rate_mbit: None,
        io_weight: None,
        io_limits: Default::default(),
    })
    .unwrap();
    let vm = vessel_core::InstanceSpec {
        id: vessel_core::InstanceId::new_random(),
        hostname: vessel_core::Hostname::parse("ns.example.com").unwrap(),
        template: "vessel-test-guest".into(),
        resources: plan,
        access: Default::default(),
        network: Default::default(),
        firewall: Default::default(),
    };
    let vm_path = format!("/v1/instances/{}", vm.id);
    let slow = HostClient::new(&url_a, sa.clone(), http_client(None, Duration::from_secs(60)).unwrap());
    let (status, st) = slow.json(reqwest::Method::PUT, &vm_path, Some(&vm)).await.unwrap();
    assert_eq!(status, 201, "{st}");
    let (status, st) =
        slow.json(reqwest::Method::POST, &format!("{vm_path}/actions"), Some(&serde_json::json!({"action": "start"}))).await.unwrap();
    assert_eq!((status, st["state"].as_str()), (200, Some("running")), "{st}");
    assert_eq!(provisioner::vm::cgroup::procs(&a.cgroup_parent(), &vm.id.to_string()).len(), 1);

    // Cut A: requests to it time out, B still answers.
    a.cut().unwrap();
    let t = Instant::now();
    let r = host_report(&ca).await;
    assert!(r.is_err(), "a cut-off host must not answer: {r:?}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "it timed out rather than being refused: {:?}", t.elapsed());
    assert_eq!(host_report(&cb).await, Ok(200));

    // Restore A: it answers again (the daemon never noticed).
    a.restore().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match host_report(&ca).await {
            Ok(200) => break,
            other => assert!(Instant::now() < deadline, "A did not come back: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The machine kept running through the cut.
    let (status, st) = ca.json::<()>(reqwest::Method::GET, &vm_path, None).await.unwrap();
    assert_eq!((status, st["state"].as_str()), (200, Some("running")), "{st}");
    assert_eq!(slow.json::<()>(reqwest::Method::DELETE, &vm_path, None).await.unwrap().0, 204);

    // Teardown leaves nothing: processes, namespaces, links, the bridge.
    let names = (a.name.clone(), b.name.clone());
    drop(a);
    drop(b);
    drop(net);
    assert!(!listed(&["netns", "list"], &names.0) && !listed(&["netns", "list"], &names.1));
    let short = names.0.trim_start_matches("vessel-").split('-').next().unwrap().to_string();
    assert!(!listed(&["-o", "link", "show"], &short), "no link of this test is left");
    let ps = Command::new("pgrep").args(["-f", &da.join("provisioner.toml").to_string_lossy()]).output().unwrap();
    assert!(ps.stdout.is_empty(), "no daemon is left: {}", String::from_utf8_lossy(&ps.stdout));
}

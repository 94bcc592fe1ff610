//! Container lifecycle on the real kernel: create → start/stop/restart/suspend/resume →
//! reinstall → resize → destroy, idempotence, admission, adoption after a restart.

mod ct_support;

use ct_support::TestHost;
use provisioner::container::manager::ContainerHost;
use provisioner::runtime::Runtime;
use std::fs;
use vessel_core::resources::ResourceSpec;
use vessel_core::{HostCapacity, InstanceState, PlanResources};

fn cg_file(t: &TestHost, id: &vessel_core::InstanceId, ctrl: &str, file: &str) -> String {
    fs::read_to_string(t.host.rt.cgroup(id).controller_dir(ctrl).join(file)).unwrap().trim().to_string()
}

/// The host-side shapers of the container's port (to the guest) and its IFB (from it), as text.
fn host_port_limits(t: &TestHost, id: &vessel_core::InstanceId) -> String {
    let port = t.host.rt.veth_host(id);
    let ifb = provisioner::hostnet::ifb_name(&port);
    let mut out = String::new();
    for dev in [port, ifb] {
        let tc = std::process::Command::new("tc").args(["qdisc", "show", "dev", &dev, "root"]).output().unwrap();
        out += &String::from_utf8_lossy(&tc.stdout);
    }
    out
}

#[test]
fn full_lifecycle_leaves_nothing_behind() {
    let t = TestHost::new(160, 1, TestHost::big());
    let spec = t.spec(|r| {
        r.vcpus = 2;
        r.memory_guaranteed_mib = Some(64);
        r.memory_burst_mib = 128;
        r.swap_mib = 32;
        r.pids_max = Some(100);
        r.io_weight = Some(300);
    });
    let id = spec.id;
    let r = t.host.create(spec.clone(), true).unwrap();
    assert_eq!(r.state, InstanceState::Running);
    // Idempotent: the same create again changes nothing; a different spec is a conflict.
    let again = t.host.create(spec.clone(), true).unwrap();
    assert_eq!(again.runtime, r.runtime, "same init, not a second one");
    let mut other = spec.clone();
    other.template = "other".into();
    assert!(t.host.create(other, true).is_err());

    // The kernel got the plan (resource-model.md, "Enforcement on the host"; v1 here).
    const MIB: u64 = 1 << 20;
    assert_eq!(cg_file(&t, &id, "memory", "memory.limit_in_bytes"), (128 * MIB).to_string());
    assert_eq!(cg_file(&t, &id, "memory", "memory.memsw.limit_in_bytes"), (160 * MIB).to_string());
    assert_eq!(cg_file(&t, &id, "memory", "memory.soft_limit_in_bytes"), (64 * MIB).to_string());
    assert_eq!(cg_file(&t, &id, "cpu", "cpu.cfs_quota_us"), "200000");
    assert_eq!(cg_file(&t, &id, "cpu", "cpu.shares"), (2 * 1024 / 4).to_string());
    assert_eq!(cg_file(&t, &id, "pids", "pids.max"), "100");
    assert_eq!(cg_file(&t, &id, "cpu", "cpu.cfs_burst_us"), "200000");
    assert_eq!(cg_file(&t, &id, "blkio", "blkio.bfq.weight"), "300");
    assert!(cg_file(&t, &id, "devices", "devices.list").contains("c 1:3 rwm"));
    assert!(!cg_file(&t, &id, "devices", "devices.list").contains("a *:* rwm"));

    // Data survives stop/start; suspend freezes; usage is sampled.
    t.sh_ok(&id, "echo kept > /root/data");
    let t0 = std::time::Instant::now();
    assert_eq!(t.host.stop(&id).unwrap().state, InstanceState::Stopped);
    // Graceful: the init acted on SIGTERM well before the 3 s SIGKILL deadline.
    assert!(t0.elapsed() < std::time::Duration::from_millis(2500), "stop took {:?}", t0.elapsed());
    assert!(t.host.rt.live_pid(&t.host.store.get(&id).unwrap().unwrap()).is_none());
    assert_eq!(t.host.stop(&id).unwrap().state, InstanceState::Stopped, "stop is idempotent");
    assert_eq!(t.host.start(&id).unwrap().state, InstanceState::Running);
    assert_eq!(t.sh_ok(&id, "cat /root/data").trim(), "kept");
    let before = t.host.store.get(&id).unwrap().unwrap().runtime;
    let restarted = t.host.restart(&id).unwrap();
    assert_ne!(restarted.runtime, before, "restart gives a new init");
    assert_eq!(t.host.suspend(&id).unwrap().state, InstanceState::Suspended);
    assert_eq!(t.host.suspend(&id).unwrap().state, InstanceState::Suspended);
    assert!(t.host.exec_command(&id, &["true".into()]).is_err(), "exec into a frozen container");
    assert!(t.host.reinstall(&id, None).is_err(), "reinstall of a suspended one is refused");
    assert_eq!(t.host.resume(&id).unwrap().state, InstanceState::Running);
    let u = t.host.usage(&id).unwrap();
    assert!(u.cpu_time_ns > 0 && u.memory_bytes > 0 && u.disk_used_bytes > 0, "{u:?}");

    // Reinstall: fresh root filesystem, same hostname and address.
    let r = t.host.reinstall(&id, None).unwrap();
    assert_eq!(r.state, InstanceState::Running);
    assert!(!t.sh(&id, "test -e /root/data").status.success(), "old data gone");
    assert_eq!(t.sh_ok(&id, "hostname").trim(), spec.hostname.as_str());
    assert!(t.sh_ok(&id, "ip -4 addr show eth0").contains(&spec.network.ipv4.as_ref().unwrap().address.to_string()));

    // Resize: new limits at once, the disk grows online with the data kept.
    t.sh_ok(&id, "echo kept > /root/data2");
    let mut bigger = ResourceSpec::from(spec.resources.clone());
    bigger.memory_burst_mib = 256;
    bigger.disk_gib = 2;
    bigger.net_rate_mbit = Some(40);
    let r = t.host.resize(&id, PlanResources::try_from(bigger.clone()).unwrap()).unwrap();
    assert_eq!(r.state, InstanceState::Running);
    assert_eq!(cg_file(&t, &id, "memory", "memory.limit_in_bytes"), (256 * MIB).to_string());
    let df = t.sh_ok(&id, "df -k / | tail -1");
    let total_kib: u64 = df.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(total_kib > 1_500_000, "disk grew: {df}");
    assert_eq!(t.sh_ok(&id, "cat /root/data2").trim(), "kept");
    let pid = t.host.rt.live_pid(&t.host.store.get(&id).unwrap().unwrap()).unwrap();
    // Both directions are limited on the host side of the port (see hostnet).
    let q = host_port_limits(&t, &id);
    assert!(q.matches("rate 40Mbit").count() == 2, "new rate not applied: {q}");
    // A rate-only resize changes the running container's qdisc in place (same init).
    let mut slower = bigger.clone();
    slower.net_rate_mbit = Some(20);
    let r = t.host.resize(&id, PlanResources::try_from(slower).unwrap()).unwrap();
    assert_eq!(t.host.rt.live_pid(&r), Some(pid), "no restart for a rate change");
    // Both directions are limited on the host side of the port (see hostnet).
    let q = host_port_limits(&t, &id);
    assert!(q.matches("rate 20Mbit").count() == 2, "{q}");
    bigger.disk_gib = 1;
    assert!(t.host.resize(&id, PlanResources::try_from(bigger).unwrap()).is_err(), "no shrinking");

    t.host.destroy(&id).unwrap();
    assert_eq!(t.leftovers(&id), Vec::<String>::new());
    assert!(t.host.store.get(&id).unwrap().is_none());
    t.host.destroy(&id).unwrap();
}

#[test]
fn host_admission_refuses_with_the_numbers_and_touches_nothing() {
    let cap = HostCapacity { cpus: 4, memory_mib: 300, disk_gib: 100 };
    let t = TestHost::new(160, 2, cap);
    let a = t.spec(|r| {
        r.memory_guaranteed_mib = Some(200);
        r.memory_burst_mib = 200;
        r.memory_ratio = 1.0;
    });
    t.host.create(a.clone(), false).unwrap();
    let b = t.spec(|r| {
        r.memory_guaranteed_mib = Some(150);
        r.memory_burst_mib = 150;
        r.memory_ratio = 1.0;
    });
    let err = t.host.create(b.clone(), false).unwrap_err().to_string();
    assert!(err.contains("memory") && err.contains("refused"), "{err}");
    assert_eq!(t.leftovers(&b.id), Vec::<String>::new());
    assert!(t.host.store.get(&b.id).unwrap().is_none());
    assert!(!t.state.path().join("locks").join(b.id.to_string()).exists());
    // Resize of `a` beyond the host is refused too; within it, fine.
    let mut r = ResourceSpec::from(a.resources.clone());
    r.memory_guaranteed_mib = Some(400);
    r.memory_burst_mib = 400;
    assert!(t.host.resize(&a.id, PlanResources::try_from(r.clone()).unwrap()).unwrap_err().to_string().contains("memory"));
    r.memory_guaranteed_mib = Some(250);
    r.memory_burst_mib = 250;
    t.host.resize(&a.id, PlanResources::try_from(r).unwrap()).unwrap();
}

#[test]
fn a_restarted_provisioner_adopts_and_revives() {
    let t = TestHost::new(160, 3, TestHost::big());
    let spec = t.spec(|_| {});
    let id = spec.id;
    let path = t.state.path().join("spec.json");
    fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    // Created by a CLI process that has exited: nothing of ours stays behind but the init.
    let out = t.cli().arg("create").arg("--spec").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rec = t.host.store.get(&id).unwrap().unwrap();
    let pid = t.host.rt.live_pid(&rec).expect("init alive after the CLI exited");
    // Only this container's helper counts: other tests start containers at the same time.
    let helpers: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c.contains("ct-init") && c.contains(&id.to_string()))
        .collect();
    assert!(helpers.is_empty(), "a per-container helper process stayed: {helpers:?}");

    // A fresh ContainerHost (a restarted provisioner) adopts the running one as it is.
    let cfg = t.host.rt.cfg.clone();
    let again = ContainerHost::new(provisioner::container::ContainerRuntime::new(cfg), TestHost::big()).unwrap();
    let rep = again.reconcile().unwrap();
    assert_eq!(rep.adopted, vec![id]);
    assert_eq!(t.host.rt.live_pid(&t.host.store.get(&id).unwrap().unwrap()), Some(pid));

    // Its init killed behind our back: observed as crashed, and revived by reconcile.
    // SAFETY: kill(2) on the container init's pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while t.host.rt.live_pid(&rec).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(again.rt.observe(&t.host.store.get(&id).unwrap().unwrap()).unwrap(), InstanceState::Crashed);
    let rep = again.reconcile().unwrap();
    assert_eq!(rep.restarted, vec![id]);
    assert_eq!(t.host.list().unwrap()[0].1, InstanceState::Running);

    // A stop that crashed after recording the owner's wish: reconcile finishes it.
    let mut rec = t.host.store.get(&id).unwrap().unwrap();
    rec.should_run = false;
    t.host.store.put(&rec).unwrap();
    again.reconcile().unwrap();
    assert_eq!(t.host.list().unwrap()[0].1, InstanceState::Stopped);
}

//! Shared by the `vm_*` integration tests: the test guest, a scratch host (state dir, images,
//! cgroup parent) and small helpers. Everything talks to the real /dev/kvm and cgroups.
#![allow(dead_code)]

use provisioner::runtime::Runtime;
use provisioner::store::{InstanceRecord, InstanceStore};
use provisioner::vm::guest::{self, TestGuest};
use provisioner::vm::runtime::{KvmRuntime, KvmRuntimeConfig, VmFacts};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use vessel_core::admission::HostCapacity;
use vessel_core::resources::ResourceSpec;
use vessel_core::{Hostname, InstanceId, InstanceKind, InstanceSpec, InstanceState, PlanResources};

pub const VMM: &str = env!("CARGO_BIN_EXE_provisioner");

/// Fails loudly when the machine cannot run KVM tests, instead of passing silently.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("these tests need /dev/kvm (read-write) and it is not usable here: {e}");
    }
}

/// The test guest, built once per test binary (into its own directory, so parallel test
/// binaries never race on the same files).
pub fn test_guest() -> &'static TestGuest {
    static GUEST: OnceLock<TestGuest> = OnceLock::new();
    GUEST.get_or_init(|| {
        require_kvm();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vessel-guest-{}", std::process::id()));
        guest::build(&dir).expect("building the test guest with as/ld")
    })
}

pub fn kvm_plan(vcpus: u32, memory_mib: u64, cpu_ratio: f64) -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Kvm,
        vcpus,
        memory_guaranteed_mib: None,
        memory_burst_mib: memory_mib,
        swap_mib: 0,
        disk_gib: 1,
        cpu_ratio,
        memory_ratio: 1.0,
        disk_ratio: 1.0,
        pids_max: None,
        net_rate_mbit: None,
        io_weight: None,
        io_limits: Default::default(),
    })
    .expect("a valid KVM plan")
}

pub fn record(resources: PlanResources) -> InstanceRecord {
    InstanceRecord {
        spec: InstanceSpec {
            id: InstanceId::new_random(),
            hostname: Hostname::parse("vm.example.com").unwrap(),
            template: "vessel-test-guest".into(),
            resources,
            access: Default::default(),
            network: Default::default(),
            firewall: Default::default(),
        },
        state: InstanceState::Creating,
        should_run: true,
        pending: None,
        runtime: Default::default(),
        rescue: None,
    }
}

/// A scratch host: its own state dir, image dir (the test guest in heartbeat mode) and
/// cgroup parent. Dropping it destroys every machine and removes the cgroup parent.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub store: InstanceStore,
    pub runtime: KvmRuntime,
    pub config: KvmRuntimeConfig,
}

impl Host {
    pub fn new(capacity: HostCapacity) -> Host {
        let guest = test_guest();
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let image = images.join("vessel-test-guest");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::write(image.join("image.json"), serde_json::json!({"kernel": guest.elf, "cmdline": "heartbeat"}).to_string()).unwrap();
        let parent = format!("vessel-test-{}", uuid::Uuid::new_v4().simple());
        let mut config = KvmRuntimeConfig::new(dir.path().join("state"), parent, VMM.into(), images, capacity);
        config.stop_timeout = Duration::from_secs(5);
        let store = InstanceStore::open(&config.state_dir).unwrap();
        let runtime = KvmRuntime::new(config.clone(), store.clone());
        Host { dir, store, runtime, config }
    }

    /// A second runtime over the same store and cgroups: a restarted provisioner.
    pub fn restarted(&self) -> KvmRuntime {
        KvmRuntime::new(self.config.clone(), self.store.clone())
    }

    /// create + start, persisting the record like the provisioner does.
    pub fn launch(&self, resources: PlanResources) -> InstanceRecord {
        let mut r = record(resources);
        self.store.put(&r).unwrap();
        self.runtime.create(&mut r).unwrap();
        self.store.put(&r).unwrap();
        self.runtime.start(&mut r).unwrap();
        self.store.put(&r).unwrap();
        r
    }

    pub fn serial(&self, r: &InstanceRecord) -> String {
        std::fs::read_to_string(self.runtime.serial_log(&r.spec.id)).unwrap_or_default()
    }

    /// Heartbeat lines the guest has printed so far.
    pub fn ticks(&self, r: &InstanceRecord) -> usize {
        self.serial(r).lines().filter(|l| l.starts_with("VESSEL-TICK")).count()
    }

    /// Waits until the guest has printed its report and started its heartbeat.
    pub fn wait_ticking(&self, r: &InstanceRecord) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ticks(r) < 1 {
            assert!(Instant::now() < deadline, "guest never started its heartbeat; serial: {}", self.serial(r));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for mut r in self.store.list().unwrap_or_default() {
            let _ = self.runtime.destroy(&mut r);
        }
        let _ = provisioner::vm::cgroup::remove_parent(&self.config.cgroup_parent);
    }
}

pub fn pid_of(r: &InstanceRecord) -> i32 {
    let facts: VmFacts = serde_json::from_value(r.runtime.clone()).unwrap();
    facts.pid.expect("a started machine has a pid")
}

/// Resident set of a process in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// A scratch directory, removed when dropped (also when the test panics).
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("vessel-{name}-")).tempdir().unwrap()
}

//! A real Linux kernel in our VMM, through the KVM runtime as a customer's machine gets it:
//! the project's test kernel (`scripts/build-test-kernel`: Debian's linux-source, tinyconfig +
//! PVH + virtio-mmio + ext4 + IP autoconfiguration, and the changes the nested PVM test hosts
//! need, see ../shared/design/kvm-on-pvm.md) as the `linux-test-kernel` template, with a
//! virtio-blk disk of the plan's size, a virtio-net card on a TAP on the host bridge under
//! hostnet's guards (anti-spoofing, both rate limits), and virtio-rng. It boots from its PVH
//! entry, finds its disk, mounts the partitioned ext4 root read-write, configures its address
//! from `ip=`, and answers the host's ping through the bridge; the disk's ext4 superblock
//! shows the mount afterwards.
//!
//! Everything network runs in a network namespace of the test's own (the runtime's commands
//! and the VMM are started from a thread that joined it). Kernel mode is emulated on these
//! hosts, so the boot takes minutes on a loaded machine; the test is bounded at 15. No user
//! space runs (none can here).

mod vm_support;

use provisioner::runtime::Runtime;
use provisioner::vm::disk;
use provisioner::vm::runtime::KvmRuntime;
use provisioner::vm::test_kernel;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vessel_core::admission::HostCapacity;
use vessel_core::lifecycle::Ipv4Assignment;
use vessel_core::resources::ResourceSpec;
use vessel_core::{InstanceKind, PlanResources};
use vm_support::*;

/// A named network namespace (`ip netns add`), deleted with everything in it when dropped.
struct NetNs(String);

impl NetNs {
    fn new(prefix: &str) -> NetNs {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(std::process::Stdio::null()).status();
        assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success(), "ip netns add {name}");
        let ns = NetNs(name);
        ns.cmd(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread inside the namespace (processes it starts are born there).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Runs a command in the namespace; returns (success, stdout).
    fn cmd(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip").args(["netns", "exec", &self.0]).args(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn plan(disk_gib: u64) -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Kvm,
        vcpus: 1,
        memory_guaranteed_mib: None,
        memory_burst_mib: 128,
        swap_mib: 0,
        disk_gib,
        // Floating (not pinned): a machine that runs for minutes must not shield a core.
        cpu_ratio: 2.0,
        memory_ratio: 1.0,
        disk_ratio: 1.0,
        pids_max: None,
        net_rate_mbit: Some(100),
        io_weight: None,
        io_limits: Default::default(),
    })
    .expect("a valid KVM plan")
}

#[test]
fn the_test_kernel_mounts_its_disk_and_answers_ping_through_the_bridge() {
    require_kvm();
    let kernel = test_kernel::build(Path::new(test_kernel::SCRIPT)).expect("scripts/build-test-kernel");
    let ns = NetNs::new("vsl-lnx");
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 4096, disk_gib: 100 });
    test_kernel::install(&host.config.images_dir, &kernel).unwrap();
    let mut cfg = host.config.clone();
    cfg.bridge = Some("vzbr-lnx".into());
    cfg.stop_timeout = Duration::from_secs(2);
    let runtime = KvmRuntime::new(cfg, host.store.clone());

    const DISK_GIB: u64 = 2;
    let guest_ip = Ipv4Addr::new(10, 77, 0, 2);
    let mut r = record(plan(DISK_GIB));
    r.spec.template = test_kernel::TEMPLATE.into();
    r.spec.network.ipv4 = Some(Ipv4Assignment { address: guest_ip, prefix_len: 24, gateway: Ipv4Addr::new(10, 77, 0, 1), nat: false });
    let id = r.spec.id;
    host.store.put(&r).unwrap();
    runtime.create(&mut r).unwrap();
    let image = runtime.disk(&id);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), DISK_GIB << 30, "the disk is the plan's size");
    let before = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();
    let started = Instant::now();
    ns.run(|| runtime.start(&mut r)).unwrap();
    host.store.put(&r).unwrap();

    // The host-side guards sit on the machine's TAP, a port of the bridge.
    let tap = KvmRuntime::tap_name(&id);
    let (ok, _) = ns.cmd(&["nft", "list", "table", "bridge", &provisioner::hostnet::table_name(&tap)]);
    assert!(ok, "the TAP's anti-spoofing table exists");
    let (_, qdisc) = ns.cmd(&["tc", "qdisc", "show", "dev", &tap]);
    assert!(qdisc.contains("tbf"), "the host->guest rate limit is on the TAP: {qdisc}");
    let (_, master) = ns.cmd(&["ip", "-o", "link", "show", "dev", &tap]);
    assert!(master.contains("master vzbr-lnx"), "{master}");

    let serial = || std::fs::read_to_string(runtime.serial_log(&id)).unwrap_or_default();
    let vmm_log = || std::fs::read_to_string(runtime.dir(&id).join("vmm.log")).unwrap_or_default();
    let deadline = started + Duration::from_secs(900);
    let wait = |what: &str| {
        while !serial().contains(what) {
            if !provisioner::vm::runtime::vmm_alive(&serde_json::from_value(r.runtime.clone()).unwrap()) {
                panic!("the VMM ended before {what:?}:\n{}\n{}", serial(), vmm_log());
            }
            assert!(Instant::now() < deadline, "no {what:?} within 900 s:\n{}", serial());
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{:>6.1} s  {what}", started.elapsed().as_secs_f64());
    };
    for w in [
        "Linux version",
        &format!("[vda] {} 512-byte logical blocks", (DISK_GIB << 30) / 512),
        " vda: vda1",
        "IP-Config: Complete",
        &format!("ipaddr={guest_ip}, mask=255.255.255.0, gw=10.77.0.1"),
        "EXT4-fs (vda1): mounted filesystem",
        "VFS: Mounted root (ext4 filesystem)",
    ] {
        wait(w);
    }
    // The host pings the machine through the bridge (the kernel answers by itself).
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        answered = ns.cmd(&["ping", "-c", "1", "-W", "5", &guest_ip.to_string()]).0;
    }
    assert!(answered, "{guest_ip} never answered ping:\n{}", serial());
    eprintln!("{:>6.1} s  ping answered", started.elapsed().as_secs_f64());
    // The guest's virtio-rng driver took entropy from the device.
    assert!(vmm_log().contains("virtio-rng: the guest's first entropy request served"), "{}", vmm_log());
    // With nothing to run, the kernel stays up (the VMM completes the `fwait` the host's
    // emulator cannot) and keeps answering.
    wait("vessel: no working init found");
    assert!(ns.cmd(&["ping", "-c", "3", "-W", "5", &guest_ip.to_string()]).0, "the idle kernel answers ping:\n{}", serial());

    ns.run(|| runtime.stop(&mut r)).unwrap();
    host.store.put(&r).unwrap();
    let after = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();
    assert_eq!(after.count, before.count + 1, "{before:?} -> {after:?}");
    assert!(after.last_mount > before.last_mount, "{before:?} -> {after:?}");
    ns.run(|| runtime.destroy(&mut r)).unwrap();
    host.store.put(&r).unwrap();
}

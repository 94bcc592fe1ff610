//! A real Linux kernel in our VMM: the project's test kernel (`scripts/build-test-kernel`:
//! Debian's linux-source, tinyconfig + PVH + virtio-mmio + ext4 + IP autoconfiguration, and
//! the two changes the nested PVM test hosts need, see ../shared/design/kvm-on-pvm.md) boots
//! from its PVH entry, finds its disk on virtio-blk, mounts the partitioned ext4 root, brings
//! up virtio-net with a static address and answers the host's ping through a bridge; the
//! disk's ext4 superblock shows the mount afterwards.
//!
//! Kernel mode is emulated on these hosts, so the boot takes about a minute; the test is
//! bounded at a few minutes. No user space runs (none can here): the kernel stays up idle.

mod vm_support;

use provisioner::hostnet::{self, MacAddr, Port};
use provisioner::vm::config::{DiskConfig, NetConfig, VmConfig};
use provisioner::vm::disk;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vm_support::*;

/// The test kernel's flags for the PVM hosts (what their emulation of kernel mode lacks).
pub const PVM_CMDLINE: &str = "clearcpuid=xsave,smap,fsgsbase,popcnt,avx,avx2,bmi1,bmi2,movbe,clflushopt,clwb,erms,fsrm,rdpid,cx16";

/// Builds (or finds cached) the test kernel; fails loudly when it cannot.
pub fn test_kernel() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-test-kernel");
    let out = Command::new(script).stderr(Stdio::inherit()).output().expect("running scripts/build-test-kernel");
    assert!(out.status.success(), "scripts/build-test-kernel failed: {out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim().lines().last().unwrap())
}

fn sh(args: &[&str]) {
    let s = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(s.success(), "{args:?}: {s:?}");
}

/// A bridge with an address on the host and a TAP on it, removed on drop.
struct HostLink {
    bridge: String,
    tap: String,
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = hostnet::unprotect(&self.tap);
        let _ = Command::new("ip").args(["link", "del", &self.tap]).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

struct Vmm(Child);

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_test_kernel_mounts_its_ext4_root_from_virtio_blk_and_answers_ping() {
    require_kvm();
    let kernel = test_kernel();
    let tmp = scratch("linux");
    let dir = tmp.path();

    // The plan's disk: 1 GiB, partitioned, ext4.
    const DISK: u64 = 1 << 30;
    let image = dir.join("disk.raw");
    disk::make_ext4(&image, DISK, "vessel-root").unwrap();
    let before = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();

    // Host side: bridge 10.212.n.1/24, the machine's TAP on it, guarded like a container's.
    let n = 20 + std::process::id() % 200;
    let tag = format!("{:04x}", std::process::id() % 0xffff);
    let link = HostLink { bridge: format!("v12b{tag}"), tap: format!("v12t{tag}") };
    sh(&["ip", "link", "add", &link.bridge, "type", "bridge"]);
    sh(&["ip", "addr", "add", &format!("10.212.{n}.1/24"), "dev", &link.bridge]);
    sh(&["ip", "link", "set", &link.bridge, "up"]);
    sh(&["ip", "tuntap", "add", "dev", &link.tap, "mode", "tap"]);
    sh(&["ip", "link", "set", &link.tap, "master", &link.bridge]);
    sh(&["ip", "link", "set", &link.tap, "up"]);
    let mac = MacAddr([0x02, 0x12, 0x00, 0x00, (n >> 8) as u8, n as u8]);
    let guest_ip: std::net::Ipv4Addr = format!("10.212.{n}.2").parse().unwrap();
    hostnet::protect(&Port { ifname: link.tap.clone(), mac, ipv4: Some(guest_ip), ipv6: None, from_guest_mbit: Some(500), to_guest_mbit: Some(500) }).unwrap();

    let cmdline = format!("console=ttyS0 {PVM_CMDLINE} root=/dev/vda1 rootfstype=ext4 rw ip={guest_ip}::10.212.{n}.1:255.255.255.0::eth0:off panic=0");
    let cfg = VmConfig {
        name: "linux-test".into(),
        vcpus: 1,
        memory_mib: 128,
        kernel,
        cmdline,
        initrd: None,
        huge_pages: false,
        smp_boot: Default::default(),
        pin_cpus: vec![],
        serial_log: dir.join("serial.log"),
        serial_log_max_bytes: provisioner::vm::config::DEFAULT_SERIAL_LOG_MAX_BYTES,
        serial_stdout: false,
        control_socket: Some(dir.join("control.sock")),
        exit_file: Some(dir.join("exit")),
        cgroup: None,
        disk: Some(DiskConfig { path: image.clone(), io: Default::default() }),
        net: Some(NetConfig { tap: link.tap.clone(), mac: mac.0 }),
        rng: true,
        seccomp: true,
    };
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let started = Instant::now();
    let mut vmm = Vmm(Command::new(VMM)
        .args(["vm", "run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vmm.log")).unwrap())
        .spawn()
        .unwrap());

    let serial = || std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    let deadline = started + Duration::from_secs(300);
    let want = [
        "Linux version",
        &format!("[vda] {} 512-byte logical blocks", DISK / 512),
        "EXT4-fs (vda1): mounted filesystem",
        &format!("IP-Config: Complete"),
        "no working init found",
    ];
    for w in want {
        while !serial().contains(w) {
            if let Some(s) = vmm.0.try_wait().unwrap() {
                panic!("the VMM ended ({s:?}) before {w:?}:\n{}\n{}", serial(), std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "no {w:?} within 300 s:\n{}", serial());
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{:>6.1} s  {w}", started.elapsed().as_secs_f64());
    }
    assert!(serial().contains(&format!("addr={guest_ip}")), "{}", serial());

    // The kernel answers ARP and ICMP itself.
    let mut replied = false;
    while Instant::now() < deadline && !replied {
        replied = Command::new("ping").args(["-c", "1", "-W", "2", &guest_ip.to_string()]).stdout(Stdio::null()).status().unwrap().success();
    }
    assert!(replied, "no ping reply from {guest_ip}:\n{}", serial());
    eprintln!("{:>6.1} s  ping reply", started.elapsed().as_secs_f64());

    drop(vmm);
    let after = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();
    assert_eq!(after.count, before.count + 1, "{before:?} -> {after:?}");
    assert!(after.last_mount > before.last_mount, "{before:?} -> {after:?}");
}

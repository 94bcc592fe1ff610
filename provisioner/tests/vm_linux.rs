//! A real Linux kernel in our VMM: the project's test kernel (`scripts/build-test-kernel`:
//! Debian's linux-source, tinyconfig + PVH + virtio-mmio + ext4 + IP autoconfiguration, and
//! the two changes the nested PVM test hosts need, see ../shared/design/kvm-on-pvm.md) boots
//! from its PVH entry, finds its disk on virtio-blk (the plan's size), mounts the partitioned
//! ext4 root read-write; the disk's ext4 superblock shows the mount afterwards.
//!
//! Not here yet: virtio-net (ip=, the host's ping) and virtio-rng. With a second virtio-mmio
//! device configured, the kernel stalls in that device's probe on these hosts (cause not
//! found; see the README), so this test boots with the disk alone.
//!
//! Kernel mode is emulated on these hosts, so the boot takes minutes on a loaded machine;
//! the test is bounded at 10. No user space runs (none can here).

mod vm_support;

use provisioner::vm::config::{DiskConfig, VmConfig};
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

struct Vmm(Child);

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_test_kernel_mounts_its_ext4_root_from_virtio_blk() {
    require_kvm();
    let kernel = test_kernel();
    let tmp = scratch("linux");
    let dir = tmp.path();

    // The plan's disk: 1 GiB, partitioned, ext4.
    const DISK: u64 = 1 << 30;
    let image = dir.join("disk.raw");
    disk::make_ext4(&image, DISK, "vessel-root").unwrap();
    let before = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();

    let cmdline = format!("console=ttyS0 {PVM_CMDLINE} root=/dev/vda1 rootfstype=ext4 rw panic=0");
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
        net: None,
        rng: false,
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
    let deadline = started + Duration::from_secs(600);
    let want = [
        "Linux version",
        &format!("[vda] {} 512-byte logical blocks", DISK / 512),
        " vda: vda1",
        "EXT4-fs (vda1): mounted filesystem",
        "VFS: Mounted root (ext4 filesystem)",
    ];
    for w in want {
        while !serial().contains(w) {
            if let Some(s) = vmm.0.try_wait().unwrap() {
                panic!("the VMM ended ({s:?}) before {w:?}:\n{}\n{}", serial(), std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "no {w:?} within 600 s:\n{}", serial());
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{:>6.1} s  {w}", started.elapsed().as_secs_f64());
    }
    drop(vmm);
    let after = disk::ext4_mounts(&image, disk::PARTITION_OFFSET).unwrap();
    assert_eq!(after.count, before.count + 1, "{before:?} -> {after:?}");
    assert!(after.last_mount > before.last_mount, "{before:?} -> {after:?}");
}

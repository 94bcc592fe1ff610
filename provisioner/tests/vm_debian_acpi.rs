//! Debian's own cloud kernel (the `debian-12-kvm` image's, 6.1) booted in **our VMM** on the
//! nested PVM hosts the tests run on, to prove what it can of the ACPI path there: the kernel
//! has no `VIRTIO_MMIO_CMDLINE_DEVICES`, so it learns of the machine's devices only from our
//! DSDT. It is booted as the ELF `vmlinux` inside the image's `vmlinuz` (a compressed bzImage
//! would decompress itself under the host's emulation of guest kernel mode: hopeless; see
//! ../shared/design/kvm-on-pvm.md) through its PVH entry, with the note's `clearcpuid=` list,
//! no initramfs (its user space could not make a system call here) and the machine's disk,
//! rng and no command-line devices. `preempt=full` and `nosoftlockup`: at boot an ftrace
//! worker validates ~37 000 call sites through kallsyms, which under emulation takes many
//! minutes; with Debian's default voluntary preemption it held the only vCPU (soft-lockup
//! traces every 28 s) while the initcalls this test waits for stood still.
//!
//! What this can and cannot show: the kernel reads our tables, loads the DSDT's AML and
//! finds the DSDT's COM1 and i8042 by ACPI PnP (the serial port named `00:0N`, a PnP device,
//! not the legacy probe's `serial8250`). Its virtio-mmio driver and virtio-blk are **modules**
//! (`CONFIG_VIRTIO_MMIO=m`, `CONFIG_VIRTIO_BLK=m`), loaded by the initramfs' user space, so
//! `vda` cannot appear on these hosts; on a host with hardware virtualization the same boot
//! (with its initramfs) is the image's normal one.
//!
//! Tens of minutes of emulated kernel mode: not in the test command. Run it with
//! `provisioner/scripts/prove-debian-kernel-acpi.sh`, which extracts the `vmlinux` first.

mod vm_support;

use provisioner::vm::config::{DiskConfig, VmConfig};
use provisioner::vm::{disk, test_kernel};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vm_support::*;

struct Vmm(Child);

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the kernel's log must show, in order of appearance, and why.
const MILESTONES: &[(&str, &str)] = &[
    ("ACPI: DSDT 0x", "our tables found from the RSDP"),
    ("ACPI AML tables successfully acquired and loaded", "the DSDT's AML parsed by ACPICA"),
    ("ACPI: PM: (supports S0 S5)", "the DSDT's \\_S5_: power-off through ACPI"),
    ("pnp: PnP ACPI: found 2 devices", "the DSDT's COM1 and i8042 enumerated"),
    ("00:00: ttyS0 at I/O 0x3f8 (irq = 4", "COM1 taken from its DSDT entry (PnP device 00:00)"),
];

#[test]
#[ignore = "tens of minutes of emulated kernel mode: run by provisioner/scripts/prove-debian-kernel-acpi.sh"]
fn debians_kernel_finds_the_dsdts_devices_in_our_vmm() {
    require_kvm();
    let vmlinux = std::env::var_os("VESSEL_DEBIAN_VMLINUX")
        .expect("VESSEL_DEBIAN_VMLINUX: the Debian image's vmlinux (provisioner/scripts/prove-debian-kernel-acpi.sh extracts it)");
    let limit = Duration::from_secs(std::env::var("VESSEL_DEBIAN_LIMIT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3600));
    let dir = scratch("debian-acpi");
    let disk_path = dir.path().join("disk.raw");
    disk::make_ext4(&disk_path, 1 << 30, "root").expect("a disk for the machine");
    let cfg = VmConfig {
        name: "debian-acpi".into(),
        vcpus: 1,
        memory_mib: 512,
        kernel: vmlinux.into(),
        cmdline: format!(
            "earlyprintk=serial,ttyS0,115200 console=ttyS0 noxsave {} root=/dev/vda1 rw panic=-1 ignore_loglevel preempt=full nosoftlockup",
            test_kernel::PVM_FLAGS
        ),
        initrd: None,
        huge_pages: false,
        smp_boot: Default::default(),
        pin_cpus: vec![],
        serial_log: dir.path().join("serial.log"),
        serial_log_max_bytes: 16 << 20,
        serial_stdout: false,
        control_socket: Some(dir.path().join("control.sock")),
        exit_file: Some(dir.path().join("exit")),
        cgroup: None,
        disk: Some(DiskConfig { path: disk_path, io: Default::default() }),
        more_disks: Vec::new(),
        seed: None,
        net: None,
        rng: true,
        virtio_cmdline: false,
        seccomp: true,
    };
    let config = dir.path().join("config.json");
    std::fs::write(&config, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let start = Instant::now();
    let mut vmm = Vmm(Command::new(VMM)
        .args(["vm", "run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("vmm.log")).unwrap())
        .spawn()
        .unwrap());
    let mut reached = 0;
    while reached < MILESTONES.len() {
        let log = std::fs::read_to_string(dir.path().join("serial.log")).unwrap_or_default();
        while reached < MILESTONES.len() && log.contains(MILESTONES[reached].0) {
            eprintln!("{:>7.1} s  {}  ({})", start.elapsed().as_secs_f64(), MILESTONES[reached].0, MILESTONES[reached].1);
            reached += 1;
        }
        if reached == MILESTONES.len() {
            break;
        }
        let ended = vmm.0.try_wait().unwrap();
        if ended.is_some() || start.elapsed() > limit {
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            let vmm_log = std::fs::read_to_string(dir.path().join("vmm.log")).unwrap_or_default();
            panic!(
                "{} before {:?} ({}), after {:.0} s:\n{tail}\n--- vmm.log\n{vmm_log}",
                if ended.is_some() { "the VMM ended" } else { "time ran out" },
                MILESTONES[reached].0,
                MILESTONES[reached].1,
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let log = std::fs::read_to_string(dir.path().join("serial.log")).unwrap();
    assert!(!log.contains("virtio_mmio.device"), "no device was put on the command line");
    if let Some(l) = log.lines().find(|l| l.contains("i8042: PNP: PS/2 Controller")) {
        eprintln!("also: {l}");
    }
}

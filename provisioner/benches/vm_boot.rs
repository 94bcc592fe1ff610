//! Boot benchmark: our VMM against `qemu-system-x86_64 -M microvm -enable-kvm`, both booting
//! the project's test guest (same ELF, same PVH entry, same RAM and vCPUs), in the same run.
//!
//! Per boot: time from process start to the guest's first serial byte, to its report line,
//! and to the process's exit (guest power-off), and the VMM's memory overhead = peak
//! resident set (from wait4's rusage) minus guest RAM. Medians over the runs, then ratios.
//!
//! Then the same for the project's Linux test kernel (`scripts/build-test-kernel`, cached):
//! both boot its ELF `vmlinux` through PVH with 128 MiB, the same command line (the test
//! kernel template's, plus `ip=`), a fresh 1 GiB partitioned ext4 disk on virtio-blk, a
//! virtio-net card on a TAP of the bench's own network namespace and virtio-rng (QEMU
//! microvm's virtio-mmio devices, described on the command line like ours). Per boot: time to
//! the kernel's `EXT4-fs (vda1): mounted` line, time to the first reply to a ping the host
//! sends every 100 ms, and the overhead (peak RSS − guest RAM; QEMU runs with
//! `-overcommit mem-lock=on -mem-prealloc` so its guest RAM is resident like ours).
//! Kernel mode is emulated on the nested PVM development hosts: each boot takes a minute or
//! more there, so it runs `VM_BOOT_KERNEL_RUNS` (default 2) boots each.
//!
//! Run: `cargo bench -p provisioner --bench vm_boot` (as root, with /dev/kvm). Installs QEMU
//! with apt-get when it is missing.

use provisioner::vm::config::{DiskConfig, NetConfig, SmpBoot, VmConfig};
use provisioner::vm::{disk, guest, test_kernel};
use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 7;
const MEMORY_MIB: u64 = 128;
const VCPUS: u8 = 1;

#[derive(Clone, Copy, Debug)]
struct Boot {
    first_byte: Duration,
    report: Duration,
    exit: Duration,
    overhead_kib: i64,
}

/// Runs `cmd` (guest serial on its stdout) to its end and times it.
// The child is reaped by wait4 (for its rusage), not by std's wait.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Boot {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut first, mut report) = (None, None);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = out.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            text.extend_from_slice(&buf[..n]);
            if report.is_none() && String::from_utf8_lossy(&text).lines().any(|l| l.contains("checksum=")) {
                report = Some(Instant::now());
            }
        }
        (first, report, String::from_utf8_lossy(&text).into_owned())
    });
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 on our own child fills it and reaps the child
    // (std's Child is not waited on afterwards).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let exit = start.elapsed();
    let (first, report, text) = reader.join().unwrap();
    let (Some(first), Some(report)) = (first, report) else {
        panic!("the guest printed no report: {text:?}");
    };
    Boot { first_byte: first - start, report: report - start, exit, overhead_kib: usage.ru_maxrss - (MEMORY_MIB as i64 * 1024) }
}

fn ours(vmm: &str, dir: &Path, elf: &Path) -> Command {
    let cfg = VmConfig {
        name: "bench".into(),
        vcpus: VCPUS,
        memory_mib: MEMORY_MIB,
        kernel: elf.into(),
        cmdline: String::new(),
        initrd: None,
        huge_pages: false,
        smp_boot: SmpBoot::Entry,
        pin_cpus: vec![],
        serial_log: dir.join("serial.log"),
        serial_log_max_bytes: provisioner::vm::config::DEFAULT_SERIAL_LOG_MAX_BYTES,
        serial_stdout: true,
        control_socket: Some(dir.join("control.sock")),
        exit_file: Some(dir.join("exit")),
        cgroup: None,
        disk: None,
        more_disks: Vec::new(),
        seed: None,
        net: None,
        rng: false,
        virtio_cmdline: true,
        seccomp: true,
    };
    command_for(vmm, dir, &cfg)
}

fn command_for(vmm: &str, dir: &Path, cfg: &VmConfig) -> Command {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec(cfg).unwrap()).unwrap();
    let mut c = Command::new(vmm);
    c.args(["vm", "run", "--config"]).arg(path).env("RUST_LOG", "warn");
    c
}

fn qemu(elf: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-M", "microvm,isa-serial=on", "-enable-kvm", "-m", &MEMORY_MIB.to_string(), "-smp", &VCPUS.to_string()])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(elf);
    c
}

fn ensure_qemu() {
    if Command::new("qemu-system-x86_64").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("qemu-system-x86_64 missing: installing qemu-system-x86 with apt-get");
    let ok = Command::new("apt-get").args(["install", "-y", "qemu-system-x86"]).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "cannot install qemu-system-x86");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("the boot benchmark needs /dev/kvm: {e}");
    }
    ensure_qemu();
    let tmp = tempfile::tempdir().unwrap();
    let g = guest::build(&tmp.path().join("guest")).expect("building the test guest");
    // The VMM-only binary, what the daemon runs when installed (daemon::vmm_binary).
    let vmm = env!("CARGO_BIN_EXE_vessel-vmm");

    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        // Alternate, so both see the same machine conditions.
        let dir = tmp.path().join(format!("run{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        a.push(measure(ours(vmm, &dir, &g.elf)));
        b.push(measure(qemu(&g.elf)));
    }
    let ms = |v: &[Boot], f: fn(&Boot) -> Duration| median(v.iter().map(|x| f(x).as_secs_f64() * 1000.0).collect());
    let mib = |v: &[Boot]| median(v.iter().map(|x| x.overhead_kib as f64 / 1024.0).collect());
    println!("vm_boot: test guest, {VCPUS} vCPU, {MEMORY_MIB} MiB, median of {RUNS} runs each");
    println!("{:<28} {:>12} {:>12} {:>14}", "", "vessel vmm", "qemu microvm", "qemu / vessel");
    for (name, f) in [
        ("first serial byte (ms)", (|x: &Boot| x.first_byte) as fn(&Boot) -> Duration),
        ("report line (ms)", |x: &Boot| x.report),
        ("power-off, process gone (ms)", |x: &Boot| x.exit),
    ] {
        let (o, q) = (ms(&a, f), ms(&b, f));
        println!("{name:<28} {o:>12.1} {q:>12.1} {:>14.2}", q / o);
    }
    let (o, q) = (mib(&a), mib(&b));
    println!("{:<28} {o:>12.1} {q:>12.1} {:>14.2}", "VMM overhead (MiB)", q / o);

    linux_test_kernel(vmm, tmp.path());
}

/// The bench's network: a namespace of its own (entered by this process, so the VMMs, QEMU
/// and ping all live in it), a TAP per VMM kind with the host's end at .1.
const NETNS: &str = "vessel-bench-vm";
const HOST_IP: &str = "10.213.77.1";
const GUEST_IP: &str = "10.213.77.2";
const TAP: &str = "vbench0";
const MAC: [u8; 6] = [0x02, 0x76, 0x65, 0x73, 0x00, 0x01];

fn sh(args: &[&str]) {
    let ok = Command::new(args[0]).args(&args[1..]).status().is_ok_and(|s| s.success());
    assert!(ok, "{}", args.join(" "));
}

/// Enters a fresh network namespace with the TAP the guests' cards use.
fn enter_netns() {
    let _ = Command::new("ip").args(["netns", "del", NETNS]).stderr(Stdio::null()).status();
    sh(&["ip", "netns", "add", NETNS]);
    let ns = std::fs::File::open(format!("/run/netns/{NETNS}")).unwrap();
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("entering the bench's network namespace");
    sh(&["ip", "link", "set", "lo", "up"]);
    sh(&["ip", "tuntap", "add", "dev", TAP, "mode", "tap"]);
    sh(&["ip", "addr", "add", &format!("{HOST_IP}/24"), "dev", TAP]);
    sh(&["ip", "link", "set", TAP, "up"]);
}

#[derive(Clone, Copy, Debug)]
struct KernelBoot {
    mounted: Duration,
    ping: Duration,
    overhead_kib: i64,
}

/// Starts `cmd` (the kernel's serial on its stdout), pings the guest every 100 ms, and
/// returns when it has both mounted its root and answered; then kills it and reads its peak RSS.
#[allow(clippy::zombie_processes)]
fn measure_kernel(mut cmd: Command, limit: Duration, control: Option<&Path>) -> KernelBoot {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let serial_tx = tx.clone();
    let serial = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("EXT4-fs (vda1): mounted") {
                let _ = serial_tx.send("mounted");
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let mut ping = Command::new("ping")
        .args(["-n", "-i", "0.1", "-W", "1", GUEST_IP])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping (iputils-ping)");
    let ping_out = ping.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(ping_out).lines().map_while(Result::ok) {
            if line.contains("bytes from") {
                let _ = tx.send("ping");
                break;
            }
        }
    });
    let (mut mounted, mut pong) = (None, None);
    while mounted.is_none() || pong.is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = ping.kill();
            panic!("the VMM ended ({status}) before its root was mounted and it answered ping:\n{}", serial.join().unwrap_or_default());
        }
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok("mounted") => mounted = mounted.or(Some(start.elapsed())),
            Ok(_) => pong = pong.or(Some(start.elapsed())),
            Err(_) if start.elapsed() < limit => {}
            Err(_) => {
                let _ = child.kill();
                let _ = ping.kill();
                let _ = child.wait();
                panic!("no mount and ping reply within {limit:?}:\n{}", serial.join().unwrap_or_default());
            }
        }
    }
    let _ = ping.kill();
    let _ = ping.wait();
    if let Some(socket) = control {
        // Where our VMM's boot went: its VM exits by device (the control socket's `exits`).
        let exits = std::os::unix::net::UnixStream::connect(socket).and_then(|mut s| {
            use std::io::{Read, Write};
            s.write_all(b"exits\n")?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        });
        eprintln!("  vessel VM exits at mount + ping: {}", exits.map(|a| a.trim().to_string()).unwrap_or_else(|e| e.to_string()));
    }
    let pid = child.id() as i32;
    // SAFETY: kill and wait4 on our own child, which std does not wait on afterwards.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let _ = serial.join();
    KernelBoot { mounted: mounted.unwrap(), ping: pong.unwrap(), overhead_kib: usage.ru_maxrss - (MEMORY_MIB as i64 * 1024) }
}

fn kernel_cmdline() -> String {
    format!("{} ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off", test_kernel::cmdline())
}

fn ours_kernel(vmm: &str, dir: &Path, vmlinux: &Path, disk_path: &Path) -> Command {
    let cfg = VmConfig {
        name: "bench-linux".into(),
        vcpus: 1,
        memory_mib: MEMORY_MIB,
        kernel: vmlinux.into(),
        cmdline: kernel_cmdline(),
        initrd: None,
        huge_pages: false,
        smp_boot: SmpBoot::default(),
        pin_cpus: vec![],
        serial_log: dir.join("serial.log"),
        serial_log_max_bytes: provisioner::vm::config::DEFAULT_SERIAL_LOG_MAX_BYTES,
        serial_stdout: true,
        control_socket: Some(dir.join("control.sock")),
        exit_file: Some(dir.join("exit")),
        cgroup: None,
        disk: Some(DiskConfig { path: disk_path.into(), io: Default::default() }),
        more_disks: Vec::new(),
        seed: None,
        net: Some(NetConfig { tap: TAP.into(), mac: MAC }),
        rng: true,
        virtio_cmdline: true,
        seccomp: true,
    };
    command_for(vmm, dir, &cfg)
}

fn qemu_kernel(vmlinux: &Path, disk_path: &Path) -> Command {
    let mac = MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut c = Command::new("qemu-system-x86_64");
    // (No `-cpu host`: QEMU cannot set IA32_ARCH_CAPABILITIES on the PVM hosts and aborts.
    // `acpi=off`: only then does microvm put its virtio-mmio devices on the command line,
    // which is where the test kernel, built without ACPI, looks for them.)
    c.args(["-M", "microvm,isa-serial=on,rtc=on,acpi=off", "-enable-kvm", "-m", &MEMORY_MIB.to_string(), "-smp", "1"])
        .args(["-overcommit", "mem-lock=on", "-mem-prealloc"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-serial", "stdio"])
        .arg("-drive")
        .arg(format!("id=d0,file={},format=raw,if=none", disk_path.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .args(["-netdev", &format!("tap,id=n0,ifname={TAP},script=no,downscript=no")])
        .args(["-device", &format!("virtio-net-device,netdev=n0,mac={mac}")])
        .args(["-device", "virtio-rng-device"])
        .args(["-append", &kernel_cmdline(), "-kernel"])
        .arg(vmlinux);
    c
}

fn linux_test_kernel(vmm: &str, tmp: &Path) {
    let runs: usize = std::env::var("VM_BOOT_KERNEL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    if runs == 0 {
        return;
    }
    let vmlinux = test_kernel::build(Path::new(test_kernel::SCRIPT)).expect("scripts/build-test-kernel");
    enter_netns();
    let limit = Duration::from_secs(900);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for which in 0..2 {
            let dir = tmp.join(format!("linux{i}-{which}"));
            std::fs::create_dir_all(&dir).unwrap();
            let disk_path = dir.join("disk.raw");
            disk::make_ext4(&disk_path, 1 << 30, "vessel-root").unwrap();
            let cmd = if which == 0 { ours_kernel(vmm, &dir, &vmlinux, &disk_path) } else { qemu_kernel(&vmlinux, &disk_path) };
            let control = dir.join("control.sock");
            let boot = measure_kernel(cmd, limit, (which == 0).then_some(control.as_path()));
            eprintln!("  run {i} {}: {boot:?}", ["vessel", "qemu"][which]);
            [&mut a, &mut b][which].push(boot);
        }
    }
    let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    let s = |v: &[KernelBoot], f: fn(&KernelBoot) -> Duration| median(v.iter().map(|x| f(x).as_secs_f64()).collect());
    let mib = |v: &[KernelBoot]| median(v.iter().map(|x| x.overhead_kib as f64 / 1024.0).collect());
    println!();
    println!("vm_boot: Linux test kernel (PVH vmlinux), 1 vCPU, {MEMORY_MIB} MiB, virtio-blk/net/rng, median of {runs} runs each");
    println!("{:<28} {:>12} {:>12} {:>14}", "", "vessel vmm", "qemu microvm", "qemu / vessel");
    for (name, f) in [
        ("ext4 root mounted (s)", (|x: &KernelBoot| x.mounted) as fn(&KernelBoot) -> Duration),
        ("first ping reply (s)", |x: &KernelBoot| x.ping),
    ] {
        let (o, q) = (s(&a, f), s(&b, f));
        println!("{name:<28} {o:>12.2} {q:>12.2} {:>14.2}", q / o);
    }
    let (o, q) = (mib(&a), mib(&b));
    println!("{:<28} {o:>12.1} {q:>12.1} {:>14.2}", "VMM overhead (MiB)", q / o);
}

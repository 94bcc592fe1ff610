//! Boot benchmark: our VMM against `qemu-system-x86_64 -M microvm -enable-kvm`, both booting
//! the project's test guest (same ELF, same PVH entry, same RAM and vCPUs), in the same run.
//!
//! Per boot: time from process start to the guest's first serial byte, to its report line,
//! and to the process's exit (guest power-off), and the VMM's memory overhead = peak
//! resident set (from wait4's rusage) minus guest RAM. Medians over the runs, then ratios.
//!
//! Run: `cargo bench -p provisioner --bench vm_boot` (as root, with /dev/kvm). Installs QEMU
//! with apt-get when it is missing.

use provisioner::vm::config::{SmpBoot, VmConfig};
use provisioner::vm::guest;
use std::io::Read;
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
        net: None,
        rng: false,
        seccomp: true,
    };
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
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
    let vmm = env!("CARGO_BIN_EXE_provisioner");

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
}

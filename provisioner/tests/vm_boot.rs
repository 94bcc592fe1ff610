//! The VMM boots the project's test guest on the real /dev/kvm, and the guest reports exactly
//! the machine it was given: memory map, every page written and read back (checksum), vCPUs.

mod vm_support;

use provisioner::vm::config::{SmpBoot, VmConfig};
use provisioner::vm::guest::Report;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vm_support::*;

fn config(dir: &std::path::Path, vcpus: u8, memory_mib: u64, cmdline: &str, seccomp: bool) -> VmConfig {
    config_smp(dir, vcpus, memory_mib, cmdline, seccomp, SmpBoot::Sipi)
}

fn config_smp(dir: &std::path::Path, vcpus: u8, memory_mib: u64, cmdline: &str, seccomp: bool, smp_boot: SmpBoot) -> VmConfig {
    VmConfig {
        name: "vm-boot-test".into(),
        vcpus,
        memory_mib,
        kernel: test_guest().elf.clone(),
        cmdline: cmdline.into(),
        initrd: None,
        huge_pages: false,
        smp_boot,
        pin_cpus: vec![],
        serial_log: dir.join("serial.log"),
        serial_log_max_bytes: provisioner::vm::config::DEFAULT_SERIAL_LOG_MAX_BYTES,
        serial_stdout: false,
        control_socket: Some(dir.join("control.sock")),
        exit_file: Some(dir.join("exit")),
        cgroup: None,
        disk: None,
        more_disks: Vec::new(),
        seed: None,
        net: None,
        rng: false,
        virtio_cmdline: true,
        seccomp,
    }
}

/// The VMM child, killed if a failing assertion unwinds past it.
struct Vmm(Child);

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &std::path::Path, cfg: &VmConfig) -> Vmm {
    spawn_with_env(dir, cfg, &[])
}

fn spawn_with_env(dir: &std::path::Path, cfg: &VmConfig, env: &[(&str, &str)]) -> Vmm {
    spawn_program(VMM, dir, cfg, env)
}

fn spawn_program(program: &str, dir: &std::path::Path, cfg: &VmConfig, env: &[(&str, &str)]) -> Vmm {
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec(cfg).unwrap()).unwrap();
    Command::new(program)
        .envs(env.iter().copied())
        .args(["vm", "run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vmm.log")).unwrap())
        .spawn()
        .map(Vmm)
        .unwrap()
}

fn wait(vmm: &mut Vmm, limit: Duration) -> std::process::ExitStatus {
    let child = &mut vmm.0;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("VMM still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Boots the guest and checks its report. With `SmpBoot::Sipi` (the default, Linux's way)
/// the guest wakes its other vCPUs by INIT-SIPI-SIPI through the in-kernel LAPIC; with
/// `SmpBoot::Entry` the VMM starts them all at the entry.
fn boot_and_check(vcpus: u8, memory_mib: u64, smp_boot: SmpBoot) {
    boot_and_check_with(VMM, vcpus, memory_mib, smp_boot)
}

fn boot_and_check_with(program: &str, vcpus: u8, memory_mib: u64, smp_boot: SmpBoot) {
    require_kvm();
    let tmp = scratch("boot");
    let dir = tmp.path();
    let cfg = config_smp(dir, vcpus, memory_mib, "", true, smp_boot);
    let mut child = spawn_program(program, dir, &cfg, &[]);
    let status = wait(&mut child, Duration::from_secs(90));
    let serial = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    let log = std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default();
    assert!(status.success(), "VMM failed: {status:?}\nserial: {serial}\nlog: {log}");
    assert_eq!(std::fs::read_to_string(dir.join("exit")).unwrap().trim(), "poweroff");
    let report = Report::parse(&serial).unwrap_or_else(|| panic!("no report in serial output: {serial}"));
    let expected = Report::expected(test_guest(), vcpus as u64, memory_mib);
    assert_eq!(report, expected, "serial: {serial}");
    assert_eq!(report.top_mib, memory_mib);
}

#[test]
fn one_vcpu_64_mib() {
    boot_and_check(1, 64, SmpBoot::Sipi);
}

/// `vessel-vmm`, the VMM without the daemon (what the daemon runs when it is installed beside
/// it), boots the same machine to the same report.
#[test]
fn the_vmm_only_binary_boots_two_vcpus_128_mib() {
    boot_and_check_with(env!("CARGO_BIN_EXE_vessel-vmm"), 2, 128, SmpBoot::Sipi);
}

#[test]
fn two_vcpus_256_mib() {
    boot_and_check(2, 256, SmpBoot::Sipi);
}

#[test]
fn four_vcpus_512_mib() {
    boot_and_check(4, 512, SmpBoot::Sipi);
}

#[test]
fn four_vcpus_128_mib_all_started_at_the_entry() {
    boot_and_check(4, 128, SmpBoot::Entry);
}

/// After setup the VMM runs under a seccomp filter: a system call outside it (here: opening a
/// file, asked for through a debug command) kills the VMM with SIGSYS, and only the VMM.
/// The same command without the filter succeeds, so the test can tell the difference.
#[test]
fn a_forbidden_system_call_kills_the_vmm_only() {
    require_kvm();
    for seccomp in [false, true] {
        let tmp = scratch("seccomp");
        let dir = tmp.path();
        let cfg = config(dir, 1, 32, "heartbeat", seccomp);
        let mut child = spawn(dir, &cfg);
        let sock = dir.join("control.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while provisioner::vm::control::request(&sock, "status", Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "control socket never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
        let reply = provisioner::vm::control::request(&sock, "debug-forbidden-syscall", Duration::from_secs(5));
        if seccomp {
            assert!(reply.map(|r| r.is_empty()).unwrap_or(true), "the VMM answered after a forbidden call");
            let status = wait(&mut child, Duration::from_secs(10));
            assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
            let exit = std::fs::read_to_string(dir.join("exit")).unwrap_or_default();
            assert_eq!(exit, "", "a killed VMM writes no exit reason");
        } else {
            assert_eq!(reply.unwrap(), "err the forbidden system call was allowed");
            assert_eq!(provisioner::vm::control::request(&sock, "shutdown", Duration::from_secs(5)).unwrap(), "ok running");
            let status = wait(&mut child, Duration::from_secs(30));
            assert!(status.success(), "{status:?}");
        }
    }
}

/// Issue 21: the control socket answers nobody before the seccomp filter is on. A test hook
/// (the `test-hooks` build) holds the VMM 600 ms between set-up and the filter, while four
/// clients hammer the socket from the instant it exists. Every answer must come from a thread
/// the kernel itself says is in filter mode (`PR_GET_SECCOMP`); requests made during the
/// window wait and are answered after it. (Before the fix, they were answered `ok off`.)
#[test]
fn the_control_socket_serves_nobody_before_the_filter_is_on() {
    require_kvm();
    const DELAY_MS: u64 = 600;
    let tmp = scratch("lockdown");
    let dir = tmp.path();
    let cfg = config(dir, 1, 32, "heartbeat", true);
    let sock = dir.join("control.sock");
    let delay = DELAY_MS.to_string();
    let mut vmm = spawn_with_env(dir, &cfg, &[("VESSEL_TEST_DELAY_LOCKDOWN_MS", delay.as_str())]);
    let t0 = Instant::now();
    let answers = std::sync::Mutex::new(Vec::<(Duration, Duration, String)>::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut first_answer: Option<Instant> = None;
                while Instant::now() < deadline && first_answer.is_none_or(|f| f.elapsed() < Duration::from_millis(300)) {
                    let asked = t0.elapsed();
                    match provisioner::vm::control::request(&sock, "seccomp", Duration::from_secs(5)) {
                        Ok(reply) => {
                            first_answer.get_or_insert_with(Instant::now);
                            answers.lock().unwrap().push((asked, t0.elapsed(), reply));
                        }
                        Err(_) => std::thread::sleep(Duration::from_micros(200)),
                    }
                }
            });
        }
    });
    let _ = provisioner::vm::control::request(&sock, "shutdown", Duration::from_secs(5));
    let _ = wait(&mut vmm, Duration::from_secs(30));
    let answers = answers.into_inner().unwrap();
    assert!(answers.len() >= 8, "too few answers to judge: {answers:?}");
    for (asked, answered, reply) in &answers {
        assert_eq!(reply, "ok filter", "asked at {asked:?}, answered at {answered:?} outside the filter");
    }
    // The clients really were there during the window: the earliest request was made well
    // before the earliest answer (else the hook did not run: is this a test-hooks build?).
    let first_asked = answers.iter().map(|a| a.0).min().unwrap();
    let first_answered = answers.iter().map(|a| a.1).min().unwrap();
    assert!(
        first_answered >= first_asked + Duration::from_millis(DELAY_MS / 2),
        "no request was pending during the lockdown window (asked {first_asked:?}, answered {first_answered:?}): \
         the provisioner must be built with --features test-hooks"
    );
}

/// A guest reset (0xFE to the i8042) reboots the machine in place, vCPUs and all, under the
/// seccomp filter: the guest reports twice (boot=1, then boot=2, same memory and vCPUs: the
/// second vCPU went back to wait-for-SIPI and was woken again) and then powers off.
#[test]
fn a_guest_reset_reboots_in_place() {
    require_kvm();
    let tmp = scratch("reset");
    let dir = tmp.path();
    let cfg = config(dir, 2, 64, "reset", true);
    let mut vmm = spawn(dir, &cfg);
    let status = wait(&mut vmm, Duration::from_secs(60));
    let serial = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    assert!(status.success(), "{status:?} serial: {serial}");
    assert!(serial.contains("VESSEL-GUEST reset"), "{serial}");
    let reports = Report::parse_all(&serial);
    let first = Report::expected(test_guest(), 2, 64);
    assert_eq!(reports, vec![first.clone(), Report { boot: 2, ..first }], "{serial}");
}

/// ACPI: the guest finds the RSDP the PVH start info points at, checks every table's
/// checksum and counts two enabled processors in the MADT (in its report, against
/// `Report::expected`), then powers off the way ACPI says (`\_S5_` from the DSDT to the
/// FADT's sleep control register), which the VMM takes as a clean power-off.
#[test]
fn two_vcpus_found_in_acpi_and_powered_off_through_it() {
    require_kvm();
    let tmp = scratch("acpi");
    let dir = tmp.path();
    let cfg = config(dir, 2, 64, "acpi-poweroff", true);
    let mut vmm = spawn(dir, &cfg);
    let status = wait(&mut vmm, Duration::from_secs(60));
    let serial = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    assert!(status.success(), "{status:?} serial: {serial}");
    let report = Report::parse(&serial).unwrap_or_else(|| panic!("no report: {serial}"));
    assert_eq!(report, Report::expected(test_guest(), 2, 64), "{serial}");
    assert_eq!(report.acpi_cpus, 2);
    assert!(serial.contains("VESSEL-GUEST acpi poweroff\n"), "{serial}");
    assert!(!serial.contains("acpi poweroff failed"), "the sleep control register did nothing: {serial}");
    assert_eq!(std::fs::read_to_string(dir.join("exit")).unwrap().trim(), "poweroff");
}

/// The bzImage path: a synthetic bzImage (real setup header, tiny protected-mode payload) is
/// loaded through linux-loader and entered by Linux's 32-bit boot protocol; the payload
/// reports what it found in the zero page.
#[test]
fn a_bzimage_boots_through_the_32_bit_protocol() {
    require_kvm();
    let tmp = scratch("bzimage");
    let dir = tmp.path();
    let image = provisioner::vm::guest::build_bzimage_stub(&dir.join("img")).unwrap();
    let mut cfg = config(dir, 1, 64, "console=ttyS0 hello", true);
    cfg.kernel = image;
    let mut vmm = spawn(dir, &cfg);
    let status = wait(&mut vmm, Duration::from_secs(30));
    let serial = std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default();
    assert!(status.success(), "{status:?} serial: {serial}");
    let ram_kib = provisioner::vm::boot::ram_kib(64);
    assert_eq!(serial, format!("VESSEL-BZIMAGE cs=16 e820=2 ram_kib={ram_kib} cmdline=console=ttyS0 hello\n"));
}

/// A guest flooding its console (ticks back to back) fills its serial log up to the cap, which
/// then rotates to `serial.log.1`: neither file ever passes the cap while the guest keeps
/// writing, under the seccomp filter (rotation needs no new file).
#[test]
fn a_flooding_guest_stops_growing_its_serial_log_at_the_cap() {
    require_kvm();
    let tmp = scratch("flood");
    let dir = tmp.path();
    const CAP: u64 = 16 * 1024;
    let mut cfg = config(dir, 1, 32, "heartbeat flood", true);
    cfg.serial_log_max_bytes = CAP;
    let mut vmm = spawn(dir, &cfg);
    let (log, old) = (dir.join("serial.log"), dir.join("serial.log.1"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let last_tick = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        s.lines().rev().find_map(|l| l.strip_prefix("VESSEL-TICK ").and_then(|n| n.parse::<u64>().ok()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while size(&old) == 0 {
        assert!(Instant::now() < deadline, "no rotation within 60 s (log {} bytes)", size(&log));
        assert!(vmm.0.try_wait().unwrap().is_none(), "the VMM ended: {}", std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Keep sampling until the guest has written three caps' worth (each tick line is at
    // least 14 bytes), at most 30 s: the files must stay bounded all along.
    let mut samples = 0;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (size(&log), size(&old));
        assert!(a <= CAP && b <= CAP, "serial.log {a} / serial.log.1 {b} bytes: over the {CAP}-byte cap");
        samples += 1;
        if last_tick().is_some_and(|t| t * 14 > 3 * CAP) {
            break;
        }
        assert!(Instant::now() < until, "the guest wrote less than three caps in 30 s (tick {:?})", last_tick());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(samples > 10, "{samples}");
    assert!(vmm.0.try_wait().unwrap().is_none(), "the VMM died while rotating its log");
    assert_eq!(provisioner::vm::control::request(&dir.join("control.sock"), "shutdown", Duration::from_secs(5)).unwrap(), "ok running");
    let status = wait(&mut vmm, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// Console input: bytes written through the control socket reach the guest's UART receive
/// path (with its interrupt), and the test guest echoes them back into the serial log.
#[test]
fn console_input_reaches_the_guests_serial_port() {
    require_kvm();
    let tmp = scratch("input");
    let dir = tmp.path();
    let cfg = config(dir, 1, 32, "heartbeat", true);
    let mut vmm = spawn(dir, &cfg);
    let sock = dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default().contains("VESSEL-TICK") {
        assert!(Instant::now() < deadline, "no heartbeat");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = b"typed-on-the-console\n";
    let reply = provisioner::vm::control::request(&sock, &format!("input {}", hex::encode(text)), Duration::from_secs(5)).unwrap();
    assert_eq!(reply, "ok running");
    let reply = provisioner::vm::control::request(&sock, "input zz", Duration::from_secs(5)).unwrap();
    assert!(reply.starts_with("err input is not hex"), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default().contains("typed-on-the-console") {
        assert!(
            Instant::now() < deadline,
            "the guest never echoed the input: {}",
            std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    provisioner::vm::control::request(&sock, "shutdown", Duration::from_secs(5)).unwrap();
    assert!(wait(&mut vmm, Duration::from_secs(30)).success());
}

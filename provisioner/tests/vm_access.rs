//! The customer's way into a KVM machine (issue 13): its serial console (what the browser
//! console relays) and an offline root password reset written into its disk.

mod vm_support;

use provisioner::runtime::{Console, Runtime};
use provisioner::vm::disk;
use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vessel_core::InstanceState;
use vm_support::*;

fn debugfs(image: &std::path::Path, req: &str) -> String {
    let out = std::process::Command::new("debugfs")
        .args(["-R", req])
        .arg(format!("{}?offset={}", image.display(), disk::PARTITION_OFFSET))
        .output()
        .expect("debugfs (e2fsprogs) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output without the heartbeat's lines (which the guest prints between echoed bytes).
fn strip_ticks(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("VESSEL-TICK ") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        rest = match after.find('\n') {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// The console of a running machine is its serial port: what it prints comes out (from the
/// last few KiB of its log), what is typed goes into the UART (the heartbeat guest echoes
/// every byte), and the console ends by itself when the machine stops.
#[test]
fn the_console_of_a_machine_is_its_serial_port_both_ways() {
    require_kvm();
    let host = Host::new(vessel_core::admission::HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    let mut a = host.launch(kvm_plan(1, 64, 2.0));
    host.wait_ticking(&a);
    let Console { mut output, mut input } = host.runtime.console(&a).unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |seen: &mut String, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !strip_ticks(seen).contains(needle) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {needle:?} on the serial console; saw {seen:?}"),
            }
        }
    };
    wait_for(&mut seen, "VESSEL-GUEST");
    // More than the UART's 64-byte FIFO at once: taken in pieces, echoed whole.
    let typed = format!("typed-into-the-serial-port-{}", "x".repeat(100));
    input.write(typed.as_bytes()).unwrap();
    wait_for(&mut seen, &typed);
    // The machine stops: the console ends without anyone closing it.
    host.runtime.stop(&mut a).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the console outlived its machine");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(input);
    // A stopped machine has no console.
    assert!(host.runtime.console(&a).is_err());
}

/// A reset on a running KVM machine stops it, writes root's new hash into `/etc/shadow` of its
/// disk from the host without mounting it, and starts it again. A tenant's symlink at
/// `/etc/shadow` (here to `/etc/passwd`) is replaced, not followed; the other lines of a real
/// shadow file are kept.
#[test]
fn a_kvm_password_reset_writes_the_disk_offline_and_restarts_the_machine() {
    require_kvm();
    let host = Host::new(vessel_core::admission::HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    // The test guest with a blank ext4 disk (it ignores the disk; the reset does not).
    let image_dir = host.config.images_dir.join("vessel-test-guest");
    std::fs::write(
        image_dir.join("image.json"),
        serde_json::json!({"kernel": test_guest().elf, "cmdline": "heartbeat", "disk": "blank-ext4"}).to_string(),
    )
    .unwrap();
    let mut a = host.launch(kvm_plan(1, 64, 2.0));
    host.wait_ticking(&a);
    let image = host.runtime.disk(&a.spec.id);
    assert!(image.exists());
    let log = host.runtime.serial_log(&a.spec.id);
    let boots = || std::fs::read_to_string(&log).unwrap_or_default().matches("VESSEL-GUEST").count();
    let before = boots();

    // No shadow file yet (a blank disk): one with root's line is made.
    let first = vessel_core::PasswordHash::parse(
        "$6$vesselconsole$kmqWUYLt/EfnV4pR//rsp0nh7cJPv6J63/oA.LyOVm40x8vVPTQWLxD1FAyWAomabJG/sWTHrHsQyddaX9aYb/",
    )
    .unwrap();
    host.runtime.reset_password(&mut a, &first).unwrap();
    host.store.put(&a).unwrap();
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Running, "running again after the reset");
    let deadline = Instant::now() + Duration::from_secs(60);
    while boots() < before + 1 {
        assert!(Instant::now() < deadline, "the machine did not boot again: {}", host.serial(&a));
        std::thread::sleep(Duration::from_millis(100));
    }
    let shadow = debugfs(&image, "cat /etc/shadow");
    assert!(shadow.starts_with(&format!("root:{}:", first.as_str())), "{shadow}");
    let stat = debugfs(&image, "stat /etc/shadow");
    assert!(stat.contains("Type: regular") && stat.contains("Mode:  0640") && stat.contains("User:     0"), "{stat}");

    // The tenant turns it into a symlink to /etc/passwd (and keeps a passwd file there).
    host.runtime.stop(&mut a).unwrap();
    let tmp = host.dir.path().join("passwd");
    std::fs::write(&tmp, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let cmds = host.dir.path().join("cmds");
    std::fs::write(&cmds, format!("write {} /etc/passwd\nrm /etc/shadow\nsymlink /etc/shadow /etc/passwd\n", tmp.display())).unwrap();
    let out = std::process::Command::new("debugfs")
        .args(["-w", "-f"])
        .arg(&cmds)
        .arg(format!("{}?offset={}", image.display(), disk::PARTITION_OFFSET))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(debugfs(&image, "stat /etc/shadow").contains("Type: symlink"));
    host.runtime.start(&mut a).unwrap();
    let second = vessel_core::PasswordHash::parse("$6$saltsalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEF").unwrap();
    host.runtime.reset_password(&mut a, &second).unwrap();
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Running);
    assert!(debugfs(&image, "stat /etc/shadow").contains("Type: regular"), "the symlink was replaced");
    assert!(debugfs(&image, "cat /etc/shadow").starts_with(&format!("root:{}:", second.as_str())));
    assert_eq!(debugfs(&image, "cat /etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", "the symlink's target is untouched");

    // A machine without a disk: a typed refusal, and it keeps running.
    let mut b = host.launch(kvm_plan(1, 64, 2.0));
    std::fs::write(image_dir.join("image.json"), serde_json::json!({"kernel": test_guest().elf, "cmdline": "heartbeat"}).to_string())
        .unwrap();
    let _ = std::fs::remove_file(host.runtime.disk(&b.spec.id));
    let e = host.runtime.reset_password(&mut b, &second).unwrap_err();
    assert!(e.to_string().contains("no disk"), "{e}");
    assert_eq!(host.runtime.observe(&b).unwrap(), InstanceState::Running);
}

//! The `debian-12-kvm` image and the NoCloud seed the provisioner writes, proven together: a
//! customer's machine is made by the KVM runtime (its disk a sparse copy of the image grown
//! to the plan's 4 GiB, its seed from its spec: hostname, a fresh SSH key, a root password
//! hash, a static address), then booted under **QEMU's software emulation** (TCG, no
//! /dev/kvm): a stock kernel cannot run its user space in a VMM on the nested PVM hosts the
//! tests run on (../shared/design/kvm-on-pvm.md). QEMU boots the image's kernel and initramfs
//! with the image's command line, the disk as the first virtio disk and the seed as a second,
//! read-only one, and user-mode networking on the seed's address with the SSH port forwarded
//! to the host. The test logs in over SSH with the key from the seed and checks what
//! cloud-init did: hostname, address, root's password hash, and the root partition and
//! filesystem grown into the plan's disk.
//!
//! Minutes of emulation on a 2-core machine: not in the test command. Run it with
//! `provisioner/scripts/prove-debian-image.sh` (it builds the image first if needed).

mod vm_support;

use provisioner::hostnet::MacAddr;
use provisioner::runtime::Runtime;
use provisioner::vm::debian_image;
use provisioner::vm::runtime::{ImageSpec, KvmRuntime};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vessel_core::access::{Access, PasswordHash, SshPublicKey};
use vessel_core::admission::HostCapacity;
use vessel_core::lifecycle::Ipv4Assignment;
use vessel_core::resources::ResourceSpec;
use vessel_core::{InstanceKind, PlanResources};
use vm_support::*;

/// How long the whole boot to a working SSH login may take under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(900);
const DISK_GIB: u64 = 4;
const HASH: &str = "$6$vesselsa$bE5mvuW8Yw5Cz9oQm0JQ1Qq7iB6rJ0bU9mM6cJ6Jd8h5i1mK2eYtY3mX1xO1pW3pY0oKfYqZ6T9m8bW6r1o9b/";

struct Qemu(Child);
impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn plan() -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Kvm,
        vcpus: 2,
        memory_guaranteed_mib: None,
        memory_burst_mib: 1024,
        swap_mib: 0,
        disk_gib: DISK_GIB,
        cpu_ratio: 2.0,
        memory_ratio: 1.0,
        disk_ratio: 1.0,
        pids_max: None,
        net_rate_mbit: None,
        io_weight: None,
        io_limits: Default::default(),
    })
    .expect("a valid KVM plan")
}

/// A free TCP port on the loopback (bound, then released for QEMU's forward).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
#[ignore = "minutes of QEMU TCG: run by provisioner/scripts/prove-debian-image.sh"]
fn the_debian_image_boots_with_its_seed_under_qemu_and_takes_an_ssh_login() {
    assert!(Command::new("qemu-system-x86_64").arg("--version").output().is_ok_and(|o| o.status.success()), "qemu-system-x86_64 is needed");
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 4096, disk_gib: 100 });
    let built = debian_image::build(Path::new(debian_image::SCRIPT), Some(&host.config.images_dir)).expect("building the image");
    eprintln!("image: {}", built.display());
    let runtime = KvmRuntime::new(host.config.clone(), host.store.clone());

    // The customer's key pair, made for this run.
    let keys = scratch("debian-qemu-key");
    let key = keys.path().join("id_ed25519");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "customer@test", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();

    let mut r = record(plan());
    r.spec.template = debian_image::TEMPLATE.into();
    r.spec.hostname = vessel_core::Hostname::parse("deb1.example.com").unwrap();
    r.spec.access = Access::new(vec![SshPublicKey::parse(public.trim()).unwrap()], Some(PasswordHash::parse(HASH).unwrap())).unwrap();
    // QEMU's user-mode network: 10.0.2.0/24, its gateway at .2.
    r.spec.network.ipv4 =
        Some(Ipv4Assignment { address: "10.0.2.15".parse().unwrap(), prefix_len: 24, gateway: "10.0.2.2".parse().unwrap(), nat: false });
    let id = r.spec.id;
    host.store.put(&r).unwrap();
    runtime.create(&mut r).unwrap();
    let disk = runtime.disk(&id);
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), DISK_GIB << 30);
    let seed = runtime.write_seed(&r).unwrap();

    // The image as the runtime reads it (the kernel, initramfs and command line it boots).
    let spec: ImageSpec = serde_json::from_slice(&std::fs::read(built.join("image.json")).unwrap()).unwrap();
    let port = free_port();
    let serial = runtime.dir(&id).join("qemu-serial.log");
    let mac = MacAddr::for_instance(&id).to_string();
    let started = Instant::now();
    let qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-M", "q35", "-cpu", "max", "-smp", "2", "-m", "1024", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(built.join(&spec.kernel))
            .arg("-initrd")
            .arg(built.join(spec.initrd.as_ref().unwrap()))
            .args(["-append", &spec.cmdline])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio,cache=unsafe", disk.display()))
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio,readonly=on", seed.display()))
            .args(["-netdev", &format!("user,id=n0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:22")])
            .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-x86_64"),
    );
    let log = || std::fs::read_to_string(&serial).unwrap_or_default();
    let ssh = |cmd: &str| {
        Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .args(["-o", "LogLevel=ERROR", "-i"])
            .arg(&key)
            .args(["-p", &port.to_string(), "root@127.0.0.1", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut marks = vec!["Linux version", "EXT4-fs (vda1): mounted", "cloud-init", "login:"];
    loop {
        let text = log();
        while let Some(m) = marks.first().copied().filter(|m| text.contains(m)) {
            eprintln!("{:>6.1} s  {m}", started.elapsed().as_secs_f64());
            marks.remove(0);
        }
        if ssh("true").status.success() {
            eprintln!("{:>6.1} s  SSH login as root with the seed's key", started.elapsed().as_secs_f64());
            break;
        }
        assert!(started.elapsed() < BOOT_LIMIT, "no SSH login within {BOOT_LIMIT:?}; serial:\n{}", log());
        std::thread::sleep(Duration::from_secs(5));
    }
    let run = |cmd: &str| {
        let out = ssh(cmd);
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // (--wait prints a dot a second while it waits: the status is asked again after.)
    let status = run("cloud-init status --wait >/dev/null; cloud-init status --long");
    eprintln!("{:>6.1} s  cloud-init finished", started.elapsed().as_secs_f64());
    assert!(status.starts_with("status: done"), "cloud-init finished without errors: {status}");
    assert_eq!(run("hostname; hostname -f"), "deb1\ndeb1.example.com", "the seed's hostname");
    assert!(run("cat /run/cloud-init/result.json").contains("\"errors\": []"), "cloud-init reported no errors");
    // The seed's static address on the card with the MAC the host gave it.
    let addr = run("ip -4 -o addr show dev eth0");
    assert!(addr.contains("10.0.2.15/24"), "{addr}");
    assert!(run("cat /sys/class/net/eth0/address").eq_ignore_ascii_case(&mac));
    assert!(run("ip route show default").contains("via 10.0.2.2"), "the seed's gateway");
    let resolv = run("cat /etc/resolv.conf");
    assert!(resolv.contains("nameserver 1.1.1.1") && !resolv.contains("10.255."), "the seed's name servers only: {resolv}");
    // The image's first boot made the machine its own host keys (none were in the image).
    assert_eq!(run("ls /etc/ssh/ssh_host_ed25519_key.pub"), "/etc/ssh/ssh_host_ed25519_key.pub");
    // Root's password hash from the seed (and only the hash ever reached the machine).
    assert_eq!(run("getent shadow root | cut -d: -f2"), HASH);
    // The root partition and filesystem grew from the image's 2 GiB into the plan's 4 GiB.
    assert_eq!(run("blockdev --getsize64 /dev/vda").parse::<u64>().unwrap(), DISK_GIB << 30);
    let part: u64 = run("blockdev --getsize64 /dev/vda1").parse().unwrap();
    assert!(part > (DISK_GIB << 30) - (2 << 20), "the partition fills the disk: {part}");
    let fs: u64 = run("df -B1 --output=size / | tail -1").parse().unwrap();
    assert!(fs > (DISK_GIB << 30) * 9 / 10, "the root filesystem grew: {fs} bytes");
    // The seed is a read-only disk to the guest.
    assert_eq!(run("cat /sys/block/vdb/ro"), "1");
    eprintln!("{:>6.1} s  all checks passed", started.elapsed().as_secs_f64());
    drop(qemu);
}

//! The KVM runtime on the real kernel: dedicated memory, admission, pause/resume, crash
//! isolation, graceful stop and adoption by a restarted provisioner.

mod vm_support;

use provisioner::runtime::Runtime;
use provisioner::vm::cgroup;
use provisioner::vm::guest::Report;
use provisioner::vm::runtime::VmError;
use std::time::{Duration, Instant};
use vessel_core::admission::HostCapacity;
use vessel_core::InstanceState;
use vm_support::*;

/// Guest RAM is the VMM's own from the start (resident, locked), its cgroup is limited to
/// RAM + overhead, and a second machine that would break the memory rule is refused.
#[test]
fn memory_is_dedicated_and_admission_refuses_overcommit() {
    require_kvm();
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 768, disk_gib: 100 });
    let a = host.launch(kvm_plan(1, 512, 1.0));
    let pid = pid_of(&a);
    // Right after start, before the guest has touched anything.
    let rss = rss_kib(pid);
    assert!(rss >= 512 * 1024, "VMM resident set {rss} KiB is below the guest's 512 MiB");
    let limit = cgroup::memory_limit(&host.config.cgroup_parent, &a.spec.id.to_string()).unwrap();
    assert_eq!(limit, (512 + host.config.memory_overhead_mib) << 20);
    assert!(cgroup::procs(&host.config.cgroup_parent, &a.spec.id.to_string()).contains(&(pid as u64)));
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Running);
    // The VMM's files (serial log, control socket, config) are the provisioner's only.
    use std::os::unix::fs::PermissionsExt;
    let vm_dir = host.runtime.dir(&a.spec.id);
    for d in [vm_dir.parent().unwrap(), vm_dir.as_path()] {
        assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
    }
    // Locked down: no capability left in any thread, no new privileges, seccomp on.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
        assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
        assert_eq!(field("CapPrm:"), "0000000000000000", "{status}");
        assert_eq!(field("NoNewPrivs:"), "1");
        assert_eq!(field("Seccomp:"), "2");
    }

    // 512 + 512 > 768: refused, naming memory, and nothing is made for it.
    let mut b = record(kvm_plan(1, 512, 2.0));
    host.store.put(&b).unwrap();
    match host.runtime.create(&mut b) {
        Err(VmError::Refused(r)) => assert!(r.to_string().contains("memory"), "{r}"),
        other => panic!("expected a memory refusal, got {other:?}"),
    }
    assert!(!host.runtime.dir(&b.spec.id).exists());
    host.store.remove(&b.spec.id).unwrap();

    // The guest's report (it carries on into its heartbeat) matches the plan exactly.
    host.wait_ticking(&a);
    let report = Report::parse(&host.serial(&a)).unwrap();
    assert_eq!(report, Report::expected(test_guest(), 1, 512));
    let usage = host.runtime.usage(&a).unwrap();
    assert!(usage.memory_bytes >= 512 << 20, "{usage:?}");
}

/// Suspend stops the guest's heartbeat (its vCPUs are parked), resume continues it.
#[test]
fn pause_stops_progress_and_resume_continues() {
    require_kvm();
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    let mut a = host.launch(kvm_plan(2, 64, 2.0));
    host.wait_ticking(&a);

    host.runtime.suspend(&mut a).unwrap();
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Suspended);
    host.runtime.suspend(&mut a).unwrap(); // idempotent
    let frozen = host.ticks(&a);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host.ticks(&a), frozen, "the guest made progress while suspended");

    host.runtime.resume(&mut a).unwrap();
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Running);
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.ticks(&a) <= frozen + 1 {
        assert!(Instant::now() < deadline, "no progress after resume");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A suspended machine still stops cleanly (it is resumed first to hear the request).
    host.runtime.suspend(&mut a).unwrap();
    host.runtime.stop(&mut a).unwrap();
    assert_eq!(host.runtime.observe(&a).unwrap(), InstanceState::Stopped);
    assert!(host.serial(&a).contains("VESSEL-GUEST shutdown requested"), "not a clean power-off");
}

/// kill -9 of one VMM: that machine is Crashed, its neighbour runs on; a restarted
/// provisioner adopts the live one and cleans up the dead one; stop powers off cleanly.
#[test]
fn kill_9_crashes_one_machine_only_and_adoption_sorts_them_out() {
    require_kvm();
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    let mut a = host.launch(kvm_plan(1, 64, 1.0));
    let mut b = host.launch(kvm_plan(1, 64, 2.0));
    host.wait_ticking(&a);
    host.wait_ticking(&b);
    // a's core is its own: b floats on the others.
    let parent = &host.config.cgroup_parent;
    let a_core = serde_json::from_value::<provisioner::vm::runtime::VmFacts>(a.runtime.clone()).unwrap().pinned_cpus;
    assert_eq!(a_core.len(), 1);
    assert_eq!(cgroup::cpus(parent, &a.spec.id.to_string()).unwrap(), a_core[0].to_string());
    let others: Vec<String> = host.config.pinnable_cpus.iter().filter(|c| **c != a_core[0]).map(|c| c.to_string()).collect();
    assert!(!others.is_empty(), "this test needs a host with at least 2 CPUs");
    let b_cores = cgroup::cpus(parent, &b.spec.id.to_string()).unwrap();
    let on = |list: &str, core: usize| {
        list.split(',').any(|r| match r.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap()).contains(&core),
            None => r.parse::<usize>().unwrap() == core,
        })
    };
    assert!(!on(&b_cores, a_core[0]), "floating b on pinned core {}: {b_cores}", a_core[0]);
    host.runtime.start(&mut b).unwrap(); // idempotent: same VMM
    assert_eq!(pid_of(&b), pid_of(&host.store.get(&b.spec.id).unwrap().unwrap()));

    // SAFETY: sending SIGKILL to the VMM child this test started.
    unsafe { libc::kill(pid_of(&a), libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.runtime.observe(&a).unwrap() != InstanceState::Crashed {
        assert!(Instant::now() < deadline, "killed machine never observed as crashed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = host.ticks(&b);
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.ticks(&b) <= before + 1 {
        assert!(Instant::now() < deadline, "the neighbour stopped making progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(host.runtime.observe(&b).unwrap(), InstanceState::Running);

    // A provisioner that died between spawning b's VMM and recording its pid: the record
    // has no pid, but the VMM is in b's cgroup.
    let b_pid = pid_of(&b);
    let mut unrecorded = host.store.get(&b.spec.id).unwrap().unwrap();
    unrecorded.runtime = serde_json::Value::Null;
    host.store.put(&unrecorded).unwrap();

    // A restarted provisioner: the dead machine is cleaned up and stays Crashed, the live
    // one is found running.
    let restarted = host.restarted();
    let mut states = restarted.adopt().unwrap();
    states.sort_by_key(|s| s.0);
    let mut expected = vec![(a.spec.id, InstanceState::Crashed), (b.spec.id, InstanceState::Running)];
    expected.sort_by_key(|s| s.0);
    assert_eq!(states, expected);
    assert!(cgroup::procs(&host.config.cgroup_parent, &a.spec.id.to_string()).is_empty());
    a = host.store.get(&a.spec.id).unwrap().unwrap();
    assert_eq!(restarted.observe(&a).unwrap(), InstanceState::Crashed);
    assert_eq!(pid_of(&host.store.get(&b.spec.id).unwrap().unwrap()), b_pid, "b's VMM found through its cgroup");

    // Start the crashed one again, then stop both cleanly.
    restarted.start(&mut a).unwrap();
    assert_eq!(restarted.observe(&a).unwrap(), InstanceState::Running);
    b = host.store.get(&b.spec.id).unwrap().unwrap();
    let t = Instant::now();
    restarted.stop(&mut b).unwrap();
    assert!(t.elapsed() < host.config.stop_timeout, "stop had to kill: the guest ignored the request");
    assert_eq!(std::fs::read_to_string(host.runtime.dir(&b.spec.id).join("exit")).unwrap().trim(), "poweroff");
    restarted.stop(&mut b).unwrap(); // idempotent
    assert_eq!(restarted.observe(&b).unwrap(), InstanceState::Stopped);

    restarted.destroy(&mut a).unwrap();
    restarted.destroy(&mut a).unwrap(); // idempotent
    assert!(!host.runtime.dir(&a.spec.id).exists());
    assert!(cgroup::procs(&host.config.cgroup_parent, &a.spec.id.to_string()).is_empty());
}

/// Tasks on the host allowed to run on `core`, other than kernel threads and `except`'s.
fn tasks_on(core: usize, except: i32) -> Vec<String> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == except.to_string() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let flags: u64 = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(6).unwrap().parse().unwrap();
        if flags & 0x0020_0000 != 0 {
            continue; // a kernel thread (per-CPU ones must stay)
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
            let Some(list) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else { continue };
            if provisioner::vm::shield::parse_list(list).contains(&core) {
                let name = status.lines().next().unwrap_or_default().to_string();
                out.push(format!("{pid}/{} {name} [{}]", t.file_name().to_string_lossy(), list.trim()));
            }
        }
    }
    out
}

/// Dedicated means dedicated: while a pinned machine runs, no other task on the whole host
/// (this test, the floating machine, every other process: checked from /proc/*/status) may
/// run on its core; once it stops, the core is everybody's again.
#[test]
fn a_pinned_machines_core_carries_no_other_task() {
    require_kvm();
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    let mut b = host.launch(kvm_plan(1, 64, 2.0));
    let mut a = host.launch(kvm_plan(1, 64, 1.0));
    host.wait_ticking(&a);
    let facts = serde_json::from_value::<provisioner::vm::runtime::VmFacts>(a.runtime.clone()).unwrap();
    let core = facts.pinned_cpus[0];
    let others = tasks_on(core, pid_of(&a));
    assert!(
        others.is_empty(),
        "tasks other than the pinned VMM ({}; floating: {}) allowed on core {core}: {others:#?}",
        pid_of(&a),
        pid_of(&b)
    );
    // The pinned VMM itself is there, and still running its guest.
    let ticks = host.ticks(&a);
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.ticks(&a) <= ticks {
        assert!(Instant::now() < deadline, "the pinned guest made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    host.runtime.stop(&mut a).unwrap();
    let me = std::fs::read_to_string("/proc/self/status").unwrap();
    let mine = me.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap();
    assert!(provisioner::vm::shield::parse_list(mine).contains(&core), "core {core} not given back: {mine}");
    host.runtime.stop(&mut b).unwrap();
}

/// A reinstall gives the machine a fresh disk from its template (what was on the old one is
/// gone, the filesystem new), the same identity, running again; a resize grows the disk, its
/// partition and its filesystem to the new plan's size, and a smaller disk is refused before
/// anything changes.
#[test]
fn reinstall_rebuilds_the_disk_and_resize_grows_it_never_shrinking() {
    require_kvm();
    use provisioner::store::PendingOp;
    use provisioner::vm::disk;
    use std::os::unix::fs::FileExt;
    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    // The test guest with a blank ext4 disk of the plan's size (it ignores the disk).
    let image = host.config.images_dir.join("guest-with-disk");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(
        image.join("image.json"),
        serde_json::json!({"kernel": test_guest().elf, "cmdline": "heartbeat", "disk": "blank-ext4"}).to_string(),
    )
    .unwrap();
    let mut r = record(kvm_plan(1, 64, 2.0));
    r.spec.template = "guest-with-disk".into();
    host.store.put(&r).unwrap();
    host.runtime.create(&mut r).unwrap();
    host.runtime.start(&mut r).unwrap();
    host.store.put(&r).unwrap();
    host.wait_ticking(&r);
    let path = host.runtime.disk(&r.spec.id);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 30);

    // Something the customer wrote (here: by the host, into the filesystem's area).
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(b"CUSTOMER-DATA", 512 << 20).unwrap();
    r.pending = Some(PendingOp::Reinstall { template: r.spec.template.clone() });
    host.runtime.reinstall(&mut r, "guest-with-disk").unwrap();
    host.store.put(&r).unwrap();
    let mut buf = [0u8; 13];
    std::fs::File::open(&path).unwrap().read_exact_at(&mut buf, 512 << 20).unwrap();
    assert_ne!(&buf, b"CUSTOMER-DATA", "the old disk's content is gone");
    assert_eq!(
        disk::ext4_size(&path, disk::PARTITION_OFFSET).unwrap(),
        (1 << 30) - disk::PARTITION_OFFSET,
        "a fresh filesystem of the plan's size"
    );
    assert_eq!(host.runtime.observe(&r).unwrap(), InstanceState::Running);

    // Resize to a 3 GiB disk: the file, the partition and the filesystem grow.
    let mut bigger = vessel_core::resources::ResourceSpec::from(r.spec.resources.clone());
    bigger.disk_gib = 3;
    let bigger = vessel_core::PlanResources::try_from(bigger).unwrap();
    host.runtime.check_resize(&r.spec.resources, &bigger).unwrap();
    let previous = std::mem::replace(&mut r.spec.resources, bigger.clone());
    host.runtime.resize(&mut r, &previous).unwrap();
    host.store.put(&r).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 30);
    assert_eq!(disk::ext4_size(&path, disk::PARTITION_OFFSET).unwrap(), (3 << 30) - disk::PARTITION_OFFSET);
    assert_eq!(host.runtime.observe(&r).unwrap(), InstanceState::Running);
    // Back to 1 GiB: refused, nothing changed.
    assert!(host.runtime.check_resize(&bigger, &previous).is_err(), "a disk is never shrunk");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 30);
}

/// The file descriptor flags (`O_ACCMODE` bits) with which process `pid` holds `path` open.
fn open_mode(pid: i32, path: &std::path::Path) -> Option<i32> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() == Some(path) {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy())).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
            return i32::from_str_radix(flags, 8).ok().map(|f| f & libc::O_ACCMODE);
        }
    }
    None
}

/// A machine of a cloud-init image (here the test guest standing in for the Debian image's
/// kernel, which cannot run on these hosts): its disk is a sparse copy of the image's disk
/// grown to the plan's size; its NoCloud seed is written from its spec and held read-only by
/// the VMM as its second disk; a reinstall copies the image again and rewrites the seed with
/// the new access, a password reset rewrites the seed with the new hash, and a resize grows
/// the disk file (the guest grows its partition), never shrinking it.
#[test]
fn a_cloud_image_machine_gets_a_grown_copy_of_the_image_and_its_own_read_only_seed() {
    require_kvm();
    use provisioner::hostnet::MacAddr;
    use provisioner::store::PendingOp;
    use provisioner::vm::{disk, seed::Seed};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use vessel_core::access::{Access, PasswordHash, SshPublicKey};
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
    const HASH: &str = "$6$saltsalt$3kZ1Xb0jYtqnB3yqQ1o8yFQ8yCw5xqGkz8zO0xkq6bqE2q0V2H1k3bLq2S0Qv8m9j1yQq1y0q9Zq3z1x0y1z2.";
    const HASH2: &str = "$6$pepperpe$4kZ1Xb0jYtqnB3yqQ1o8yFQ8yCw5xqGkz8zO0xkq6bqE2q0V2H1k3bLq2S0Qv8m9j1yQq1y0q9Zq3z1x0y1z2.";

    let host = Host::new(HostCapacity { cpus: 2, memory_mib: 1024, disk_gib: 100 });
    let image = host.config.images_dir.join("cloud-guest");
    std::fs::create_dir_all(&image).unwrap();
    disk::make_ext4(&image.join("disk.raw"), 256 << 20, "root").unwrap();
    std::fs::OpenOptions::new().write(true).open(image.join("disk.raw")).unwrap().write_all_at(b"FROM-THE-IMAGE", 100 << 20).unwrap();
    std::fs::write(
        image.join("image.json"),
        serde_json::json!({"kernel": test_guest().elf, "cmdline": "heartbeat", "disk": {"image": "disk.raw"}, "cloud_init": true})
            .to_string(),
    )
    .unwrap();
    let mut r = record(kvm_plan(1, 64, 2.0));
    r.spec.template = "cloud-guest".into();
    r.spec.access = Access::new(vec![SshPublicKey::parse(KEY).unwrap()], Some(PasswordHash::parse(HASH).unwrap())).unwrap();
    r.spec.network.ipv4 = Some(vessel_core::lifecycle::Ipv4Assignment {
        address: "203.0.113.9".parse().unwrap(),
        prefix_len: 24,
        gateway: "203.0.113.1".parse().unwrap(),
        nat: false,
    });
    let id = r.spec.id;
    host.store.put(&r).unwrap();
    host.runtime.create(&mut r).unwrap();
    let path = host.runtime.disk(&id);
    let at = |offset: u64| {
        let mut buf = [0u8; 14];
        std::fs::File::open(&path).unwrap().read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 1 << 30, "the plan's size");
    assert!(meta.blocks() * 512 < 64 << 20, "a sparse copy: {} bytes used", meta.blocks() * 512);
    assert_eq!(&at(100 << 20), b"FROM-THE-IMAGE", "the image's content");
    assert_eq!(
        disk::ext4_size(&path, disk::PARTITION_OFFSET).unwrap(),
        (256 << 20) - disk::PARTITION_OFFSET,
        "the image's filesystem as built"
    );

    host.runtime.start(&mut r).unwrap();
    host.store.put(&r).unwrap();
    host.wait_ticking(&r);
    let seed_path = host.runtime.seed(&id);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(host.runtime.dir(&id).join("config.json")).unwrap()).unwrap();
    assert_eq!(config["seed"].as_str().map(std::path::Path::new), Some(seed_path.as_path()));
    let pid = pid_of(&r);
    assert_eq!(open_mode(pid, &seed_path), Some(libc::O_RDONLY), "the VMM holds the seed read-only");
    assert_eq!(open_mode(pid, &path), Some(libc::O_RDWR), "and the disk read-write");
    let seed_of = |r: &provisioner::store::InstanceRecord| Seed::for_instance(&r.spec, MacAddr::for_instance(&r.spec.id));
    let (label, back) = Seed::read_image(&seed_path).unwrap();
    assert_eq!((label.as_str(), &back), ("cidata", &seed_of(&r)));
    assert!(back.user_data.contains(HASH) && back.user_data.contains("alice@laptop") && back.network_config.contains("203.0.113.9/24"));

    // Reinstall with other access: a fresh copy of the image and a seed saying so.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(b"CUSTOMER-DATA!", 100 << 20).unwrap();
    r.spec.access = Access::new(vec![], Some(PasswordHash::parse(HASH2).unwrap())).unwrap();
    r.pending = Some(PendingOp::Reinstall { template: r.spec.template.clone() });
    host.runtime.reinstall(&mut r, "cloud-guest").unwrap();
    host.store.put(&r).unwrap();
    assert_eq!(&at(100 << 20), b"FROM-THE-IMAGE", "the customer's data is gone, the image is back");
    let (_, back) = Seed::read_image(&seed_path).unwrap();
    assert_eq!(back, seed_of(&r));
    assert!(back.user_data.contains(HASH2) && !back.user_data.contains("alice@laptop"), "{}", back.user_data);
    assert_eq!(host.runtime.observe(&r).unwrap(), InstanceState::Running);

    // A password reset: the seed carries the new hash too.
    host.runtime.reset_password(&mut r, &PasswordHash::parse(HASH).unwrap()).unwrap();
    host.store.put(&r).unwrap();
    let (_, back) = Seed::read_image(&seed_path).unwrap();
    assert!(back.user_data.contains(HASH) && !back.user_data.contains(HASH2), "{}", back.user_data);

    // Resize to 3 GiB: the file grows (its partition is the guest's to grow); never shrinks.
    let mut bigger = vessel_core::resources::ResourceSpec::from(r.spec.resources.clone());
    bigger.disk_gib = 3;
    let bigger = vessel_core::PlanResources::try_from(bigger).unwrap();
    let previous = std::mem::replace(&mut r.spec.resources, bigger.clone());
    host.runtime.resize(&mut r, &previous).unwrap();
    host.store.put(&r).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 30);
    assert_eq!(&at(100 << 20), b"FROM-THE-IMAGE", "a resize keeps the disk's content");
    assert!(host.runtime.check_resize(&bigger, &previous).is_err(), "a disk is never shrunk");
    assert_eq!(host.runtime.observe(&r).unwrap(), InstanceState::Running);
}

//! Container root is not host root, and the host trusts nothing a container made: each test
//! is an attack shown on a live host (issue 11), run from inside a container.

mod ct_support;

use ct_support::TestHost;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

/// A setuid-root file made inside a container, run by an unprivileged host user, runs as that
/// user: the disk is mounted nosuid,nodev on the host, the instance directories are the
/// provisioner's only (0700), and the file's owner is the container's mapped root anyway.
#[test]
fn a_setuid_file_made_inside_runs_as_the_host_user() {
    let t = TestHost::new(165, 1, TestHost::big());
    let a = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    let root = t.host.rt.root(&a.id);
    // The host's `id` (it runs on the host), copied in; the container's root makes its own
    // copy setuid-root.
    std::fs::copy("/usr/bin/id", root.join("hostid")).unwrap();
    t.sh_ok(&a.id, "cp /hostid /idsuid && chown 0:0 /idsuid && chmod 4755 /idsuid && ls -ln /idsuid");

    let mut broken = Vec::new();
    for dir in [t.host.rt.instances_dir(), t.host.rt.dir(&a.id)] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        if mode != 0o700 {
            broken.push(format!("{} is {mode:o}, not 700", dir.display()));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some(root.to_str().unwrap())).expect("root mounted");
    let opts = line.split(' ').nth(5).unwrap();
    if !opts.split(',').any(|o| o == "nosuid") || !opts.split(',').any(|o| o == "nodev") {
        broken.push(format!("disk mounted with {opts}"));
    }
    // Past the directories (an fd the test opened as root), exec as nobody.
    let f = std::fs::File::open(root.join("idsuid")).unwrap();
    // SAFETY: dup(2) of a descriptor we own; the copy is inherited by the child (no CLOEXEC).
    let fd = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    let out = std::process::Command::new(format!("/proc/self/fd/{fd}")).arg("-u").uid(65534).gid(65534).output().unwrap();
    // SAFETY: closing the duplicate made above.
    unsafe { libc::close(fd) };
    let euid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if euid != "65534" {
        broken.push(format!("the container's setuid file ran with euid {euid:?} for nobody"));
    }
    // Inside, setuid programs still work (sudo, su, passwd): no no_new_privs on its processes.
    let nnp = t.sh_ok(&a.id, "grep NoNewPrivs /proc/1/status /proc/self/status");
    if nnp.lines().any(|l| !l.trim_end().ends_with('0')) {
        broken.push(format!("no_new_privs set inside: {nnp}"));
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Every container gets its own 65 536 host ids, none shared with another container or host
/// root, recorded with the instance (the same after a restart), freed on destroy.
#[test]
fn two_containers_never_share_a_host_uid() {
    let t = TestHost::new(165, 2, TestHost::big());
    let a = t.spec(|_| {});
    let b = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    t.host.create(b.clone(), true).unwrap();
    let map = |pid: u32| -> (u64, u64, u64) {
        let m = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        let v: Vec<u64> = m.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 3, "one mapping line: {m}");
        (v[0], v[1], v[2])
    };
    let (ia, ha, na) = map(t.pid(&a.id));
    let (ib, hb, nb) = map(t.pid(&b.id));
    assert_eq!((ia, na), (0, 65536), "A's map");
    assert_eq!((ib, nb), (0, 65536), "B's map");
    assert!(ha > 0 && hb > 0, "root inside is host root: {ha} {hb}");
    assert!(ha + na <= hb || hb + nb <= ha, "A [{ha}, +{na}) and B [{hb}, +{nb}) overlap");
    // Root inside is the mapped id outside.
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid(&a.id))).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().skip(1).all(|u| u == ha.to_string())), "{status}");
    // The same range after a restart (it is the instance's, and its files are shifted to it).
    t.host.restart(&a.id).unwrap();
    assert_eq!(map(t.pid(&a.id)).1, ha, "range changed across a restart");
    t.sh_ok(&a.id, "echo ok > /root/after-restart");
    // Freed on destroy: a new container may get A's range, never B's.
    t.host.destroy(&a.id).unwrap();
    let c = t.spec(|_| {});
    t.host.create(c.clone(), true).unwrap();
    let (_, hc, _) = map(t.pid(&c.id));
    assert!(hc + 65536 <= hb || hb + 65536 <= hc, "C got B's range");
}

/// Root inside cannot take the usual roads to host root: a user namespace of its own with
/// nf_tables in it, the host root's keyring, the host's cgroup root.
#[test]
fn container_root_cannot_reach_host_root_powers() {
    let t = TestHost::new(165, 3, TestHost::big());
    let a = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    // A key in the host root's user keyring, as a host service would hold one.
    let desc = format!("vessel-probe-{}", ct_support::rand_suffix());
    let cdesc = std::ffi::CString::new(desc.clone()).unwrap();
    // SAFETY: add_key(2) with valid NUL-terminated strings and a payload buffer we own.
    let key = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            cdesc.as_ptr(),
            b"host-secret".as_ptr(),
            11usize,
            -4i32, /* KEY_SPEC_USER_KEYRING */
        )
    };
    assert!(key > 0, "add_key: {}", std::io::Error::last_os_error());

    let mut broken = Vec::new();
    for args in ["userns-nft".to_string(), format!("keyring {desc}"), format!("cgroup-root vessel-probe-{}", ct_support::rand_suffix())] {
        let out = t.probe(&a.id, &args);
        if !out.starts_with("denied") {
            broken.push(format!("{args}: {out}"));
        }
    }
    // Its own cgroup is the root of its view (a cgroup namespace).
    let cg = t.sh_ok(&a.id, "cat /proc/self/cgroup");
    if cg.lines().any(|l| !l.ends_with(":/")) {
        broken.push(format!("host cgroup paths visible:\n{cg}"));
    }
    // SAFETY: keyctl(KEYCTL_INVALIDATE) on the key made above.
    unsafe { libc::syscall(libc::SYS_keyctl, 21, key) };
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The seccomp filter (container/seccomp.rs) answers EPERM to the calls it lists, for every
/// process of the container (the probe runs through `ct-exec`, like a login would).
#[test]
fn seccomp_refuses_the_listed_calls_inside() {
    let t = TestHost::new(165, 4, TestHost::big());
    let a = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    let mut broken = Vec::new();
    for (nr, name) in [
        (libc::SYS_keyctl, "keyctl"),
        (libc::SYS_add_key, "add_key"),
        (libc::SYS_request_key, "request_key"),
        (libc::SYS_bpf, "bpf"),
        (libc::SYS_perf_event_open, "perf_event_open"),
        (libc::SYS_userfaultfd, "userfaultfd"),
        (libc::SYS_kexec_load, "kexec_load"),
        (libc::SYS_init_module, "init_module"),
        (libc::SYS_finit_module, "finit_module"),
        (libc::SYS_open_by_handle_at, "open_by_handle_at"),
        (libc::SYS_io_uring_setup, "io_uring_setup"),
    ] {
        let out = t.probe(&a.id, &format!("syscall {nr}"));
        if out != "denied syscall EPERM" {
            broken.push(format!("{name}: {out}"));
        }
    }
    // A new user namespace: refused (unshare with CLONE_NEWUSER).
    let out = t.probe(&a.id, "userns-nft");
    if out != "denied unshare EPERM" {
        broken.push(format!("unshare(CLONE_NEWUSER): {out}"));
    }
    // Ordinary calls still work (the filter is a deny list).
    t.sh_ok(&a.id, "ls / >/dev/null && echo x > /tmp/x && cat /tmp/x");
    assert!(broken.is_empty(), "{broken:#?}");
}

/// A tenant flooding its console (its init's stdout, or `/proc/1/fd/1`) cannot grow the
/// host's console log past its cap: 100 MB written, at most `LOG_BYTES` kept (this boot's
/// log and the previous boot's together).
#[test]
fn a_console_flood_stays_within_its_cap() {
    let t = TestHost::new(165, 5, TestHost::big());
    let a = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    // Through the container's own init: rc.local runs with the console as stdout.
    t.sh_ok(&a.id, "printf '#!/bin/sh\\ndd if=/dev/zero bs=64k count=1600 2>/dev/null\\necho flood-done >&2\\n' > /etc/rc.local && chmod 755 /etc/rc.local");
    t.host.restart(&a.id).unwrap();
    // And straight at init's stdout, as root inside.
    let _ = t.sh(&a.id, "dd if=/dev/zero of=/proc/1/fd/1 bs=64k count=1600");
    let log = t.host.rt.console_log(&a.id);
    let dir = log.parent().unwrap().to_path_buf();
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let total = || size(&log) + size(&dir.join("console.log.1"));
    // Until the flood has ended (its dd exits on ENOSPC or after 100 MB), at most 20 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while t.sh_ok(&a.id, "ps -o args | grep -c '[d]d if=/dev/zero' || true").trim() != "0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let cap = provisioner::container::LOG_BYTES;
    assert!(total() <= cap, "console logs hold {} bytes, cap {cap}", total());
    assert!(total() > cap / 2, "the flood did not reach the log at all ({} bytes): the test proves nothing", total());
    // The container is unharmed and the next boot starts a fresh log.
    t.sh_ok(&a.id, "rm /etc/rc.local");
    t.host.restart(&a.id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(std::fs::read_to_string(&log).unwrap().contains("up"), "fresh log after a restart");
    t.host.destroy(&a.id).unwrap();
    assert_eq!(t.leftovers(&a.id), Vec::<String>::new());
}

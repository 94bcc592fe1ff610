//! What a container sees and may do: its own hostname, processes and address; no mounts,
//! modules, /dev/kvm or neighbours; its egress rate limit and traffic counters.

mod ct_support;

use ct_support::TestHost;

#[test]
fn a_container_sees_only_itself_and_cannot_escalate() {
    let t = TestHost::new(161, 1, TestHost::big());
    let a = t.spec(|_| {});
    let b = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    t.host.create(b.clone(), true).unwrap();
    t.sh_ok(&b.id, "echo secret > /root/b-only; sleep 300 >/dev/null 2>&1 &");

    // Own hostname and address.
    assert_eq!(t.sh_ok(&a.id, "hostname").trim(), a.hostname.as_str());
    let addr = t.sh_ok(&a.id, "ip -4 -o addr show eth0");
    assert!(addr.contains(&format!("{}/24", a.network.ipv4.as_ref().unwrap().address)), "{addr}");
    assert!(!addr.contains(&b.network.ipv4.as_ref().unwrap().address.to_string()));
    // Only its own processes: pid 1 is its init, B's sleep is invisible, and so is the host.
    let ps = t.sh_ok(&a.id, "ps -o pid,args");
    let first = ps.lines().nth(1).unwrap();
    assert!(first.trim_start().starts_with("1 ") && first.contains("vessel-init"), "{ps}");
    assert!(!ps.contains("sleep 300"), "B's process visible in A:\n{ps}");
    assert!(ps.lines().count() < 8, "host processes visible:\n{ps}");
    // Not B's files either.
    assert!(t.sh_ok(&a.id, "find / -xdev -name b-only 2>/dev/null").trim().is_empty());

    // Cannot mount, load modules, make device nodes or open /dev/kvm.
    let m = t.sh(&a.id, "mkdir -p /mnt/x && mount -t tmpfs none /mnt/x");
    assert!(!m.status.success(), "mount succeeded inside a container");
    let caps = t.sh_ok(&a.id, "grep CapEff /proc/self/status");
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap(), 16).unwrap();
    for (bit, name) in [(21, "SYS_ADMIN"), (16, "SYS_MODULE"), (17, "SYS_RAWIO"), (25, "SYS_TIME"), (27, "MKNOD"), (12, "NET_ADMIN")] {
        assert_eq!(eff & (1 << bit), 0, "CAP_{name} kept");
    }
    assert!(!t.sh(&a.id, "insmod /nonexistent.ko || modprobe dummy").status.success());
    assert!(!t.sh(&a.id, "cat /dev/kvm").status.success());
    assert!(!t.sh(&a.id, "mknod /dev/kvm c 10 232").status.success(), "mknod allowed");
    // The host's kernel knobs are read-only from inside.
    assert!(!t.sh(&a.id, "echo 1 > /proc/sys/vm/drop_caches").status.success());
    assert!(!t.sh(&a.id, "echo x > /sys/kernel/profiling").status.success());
    // A block device cannot be opened even by number (devices cgroup + no nodes).
    assert!(!t.sh(&a.id, "ls /dev | grep -E 'loop|vd|sd'").status.success());

    let addr6 = t.sh_ok(&a.id, "ip -6 -o addr show eth0 scope global");
    assert!(addr6.contains(&format!("{}/64", a.network.ipv6.as_ref().unwrap().address)), "{addr6}");
    t.sh_ok(&a.id, &format!("ping -6 -c 1 -W 2 {}", t.gateway6()));

    // The bridge reaches the gateway; the egress rate limit is in place and the counters move.
    t.sh_ok(&a.id, &format!("ping -c 3 -i 0.2 -W 2 {}", t.gateway()));
    // The rate limit sits on the host side of the port, where root inside cannot remove it.
    let port = t.host.rt.veth_host(&a.id);
    let q = std::process::Command::new("tc").args(["qdisc", "show", "dev", &port]).output().unwrap();
    let q = String::from_utf8_lossy(&q.stdout);
    assert!(q.contains("tbf") && q.contains("100Mbit"), "rate limit missing: {q}");
    let u = t.host.usage(&a.id).unwrap();
    assert!(u.net_tx_bytes >= 3 * 84 && u.net_rx_bytes >= 3 * 84, "{u:?}");

    for id in [a.id, b.id] {
        t.host.destroy(&id).unwrap();
        assert_eq!(t.leftovers(&id), Vec::<String>::new());
    }
}

/// The plan's egress rate is what a container actually gets: 2.5 MB at 8 Mbit/s takes
/// about 2.6 s (unlimited, it takes milliseconds on a bridge), and the bytes are metered.
#[test]
fn egress_is_rate_limited_and_metered() {
    let t = TestHost::new(161, 2, TestHost::big());
    let a = t.spec(|r| r.net_rate_mbit = Some(8));
    let b = t.spec(|r| r.net_rate_mbit = None);
    t.host.create(a.clone(), true).unwrap();
    t.host.create(b.clone(), true).unwrap();
    // The listener's stdin stays open (busybox nc quits on stdin EOF); it counts what arrives.
    let mut listener = t
        .host
        .exec_command(&b.id, &["/bin/sh".into(), "-c".into(), "sleep 30 | nc -l -p 5000 | wc -c > /tmp/got".into()])
        .unwrap()
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = t.host.usage(&a.id).unwrap();
    let t0 = std::time::Instant::now();
    let b_addr = b.network.ipv4.as_ref().unwrap().address;
    let send = t.sh(&a.id, &format!("dd if=/dev/zero bs=64k count=40 2>/dev/null | nc {b_addr} 5000"));
    let took = t0.elapsed();
    assert!(send.status.success(), "{}", String::from_utf8_lossy(&send.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let got = loop {
        let got = t.sh_ok(&b.id, "cat /tmp/got 2>/dev/null || true");
        if !got.trim().is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(got.trim(), "2621440", "receiver got {got:?}");
    assert!(took.as_secs_f64() > 1.8 && took.as_secs_f64() < 15.0, "2.5 MB at 8 Mbit/s took {took:?}");
    let after = t.host.usage(&a.id).unwrap();
    assert!(after.net_tx_bytes - before.net_tx_bytes >= 2_621_440, "{before:?} → {after:?}");
}

/// With a user namespace, root inside is an unprivileged id outside, still owns its files,
/// and still cannot do what the capability set forbids.
#[test]
fn in_a_user_namespace_root_inside_is_nobody_outside() {
    let t = TestHost::new(161, 3, TestHost::big());
    let a = t.spec(|_| {});
    t.host.create(a.clone(), true).unwrap();
    let base = t.host.rt.ids(&a.id).expect("a range of its own").base;
    let pid = t.host.rt.live_pid(&t.host.store.get(&a.id).unwrap().unwrap()).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == base.to_string()), "{uid_line}");
    // Inside: uid 0, owns / and can write its files; hostname and address as usual.
    assert_eq!(t.sh_ok(&a.id, "id -u; id -g").split_whitespace().collect::<Vec<_>>(), ["0", "0"]);
    t.sh_ok(&a.id, "echo ok > /root/file && ls -ln /root/file");
    assert_eq!(t.sh_ok(&a.id, "hostname").trim(), a.hostname.as_str());
    // Its network namespace belongs to the host's user namespace: configured by the host;
    // ping and ports below 1024 are granted to root inside by the namespace's sysctls.
    assert!(t.sh_ok(&a.id, "ip -4 -o addr show eth0").contains(&a.network.ipv4.as_ref().unwrap().address.to_string()));
    // On the host the file belongs to the mapped id, not to root.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(t.host.rt.root(&a.id).join("root/file")).unwrap();
    assert_eq!(meta.uid(), base);
    // Still no mount, no hostname change, no module loading.
    assert!(!t.sh(&a.id, "mount -t tmpfs none /mnt").status.success());
    assert!(!t.sh(&a.id, "hostname other").status.success());
    assert!(!t.sh(&a.id, "echo 1 > /proc/sys/kernel/sysrq").status.success());
    t.host.destroy(&a.id).unwrap();
    assert_eq!(t.leftovers(&a.id), Vec::<String>::new());
}

/// The panel's console: `login` inside on a fresh pty of the container's own devpts, driven
/// through the runtime's [`Console`]: root's password (its hash written at create) lets the
/// customer in, the pty follows the viewer's size, and a viewer who leaves leaves nothing
/// running inside.
#[test]
fn a_console_session_is_a_login_inside_on_its_own_pty() {
    use provisioner::runtime::Console;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let t = TestHost::new(161, 4, TestHost::big());
    // The SHA-512 crypt of "console-pass-1" (openssl passwd -6 -salt vesselconsole).
    let hash = vessel_core::PasswordHash::parse(
        "$6$vesselconsole$kmqWUYLt/EfnV4pR//rsp0nh7cJPv6J63/oA.LyOVm40x8vVPTQWLxD1FAyWAomabJG/sWTHrHsQyddaX9aYb/",
    )
    .unwrap();
    let mut a = t.spec(|_| {});
    a.access = vessel_core::Access::new(vec![], Some(hash)).unwrap();
    t.host.create(a.clone(), true).unwrap();
    let rec = t.host.store.get(&a.id).unwrap().unwrap();

    // Output is read on a thread of its own (reads block), as the host API does.
    let attach = || {
        let Console { mut output, input } = t.host.rt.console_session(&rec).unwrap();
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        (input, rx, reader)
    };
    let wait_for = |rx: &mpsc::Receiver<Vec<u8>>, seen: &mut String, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {needle:?} on the console; saw {seen:?}"),
            }
        }
    };
    use std::io::Read;

    let (mut input, rx, reader) = attach();
    let mut seen = String::new();
    wait_for(&rx, &mut seen, "login:");
    input.resize(120, 40).unwrap();
    input.write(b"root\n").unwrap();
    wait_for(&rx, &mut seen, "Password:");
    // `login` turns the echo off just after its prompt; a person types later than that.
    std::thread::sleep(Duration::from_millis(500));
    input.write(b"console-pass-1\n").unwrap();
    wait_for(&rx, &mut seen, "#");
    input.write(b"tty; echo host=$(hostname); stty size; exit\n").unwrap();
    wait_for(&rx, &mut seen, "40 120");
    // The shell's exit ends the console: the output side sees the end by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the console did not end when the login shell exited");
        while let Ok(b) = rx.try_recv() {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while let Ok(b) = rx.try_recv() {
        seen.push_str(&String::from_utf8_lossy(&b));
    }
    drop(input);
    assert!(seen.contains(&format!("host={}", a.hostname.as_str())), "{seen}");
    assert!(!seen.contains("not a tty") && seen.contains("/dev/pts/"), "not the container's own pty: {seen}");
    assert!(!seen.contains("console-pass-1"), "the password is not echoed: {seen}");

    // A viewer who leaves at the prompt: the login inside ends with the hang-up.
    let (input, rx, reader) = attach();
    let mut seen = String::new();
    wait_for(&rx, &mut seen, "login:");
    assert!(t.sh_ok(&a.id, "ps").contains("login"), "a login waits on the console");
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() || t.sh_ok(&a.id, "ps").contains("login") {
        assert!(Instant::now() < deadline, "a login outlived its viewer: {}", t.sh_ok(&a.id, "ps"));
        std::thread::sleep(Duration::from_millis(100));
    }
    t.host.destroy(&a.id).unwrap();
    assert_eq!(t.leftovers(&a.id), Vec::<String>::new());
}

/// The customer's way in: keys and root password hash written before the first boot, owned
/// by root inside with the modes sshd insists on; a password reset on the running container
/// changes the hash and nothing else.
#[test]
fn access_is_written_before_first_boot_and_reset_while_running() {
    let t = TestHost::new(161, 5, TestHost::big());
    let key =
        vessel_core::SshPublicKey::parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOEuJDWj+k9qzUVzDM/aPy8cOscb4XVsl36ZU6j3ryV+ alice@laptop")
            .unwrap();
    let first = vessel_core::PasswordHash::parse(&format!("$6$vesseltest${}", "a".repeat(86))).unwrap();
    let mut a = t.spec(|_| {});
    a.access = vessel_core::Access::new(vec![key.clone()], Some(first.clone())).unwrap();
    t.host.create(a.clone(), true).unwrap();
    let keys = t.sh_ok(&a.id, "cat /root/.ssh/authorized_keys");
    assert_eq!(keys.trim(), key.to_line());
    let ls = t.sh_ok(&a.id, "ls -lnd /root/.ssh /root/.ssh/authorized_keys");
    let modes: Vec<(&str, &str)> = ls
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[2])
        })
        .collect();
    assert_eq!(modes, [("drwx------", "0"), ("-rw-------", "0")], "{ls}");
    let shadow = t.sh_ok(&a.id, "grep '^root:' /etc/shadow");
    assert!(shadow.starts_with(&format!("root:{}:", first.as_str())), "{shadow}");
    // The resolver is the host's (its non-loopback nameservers).
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let want = provisioner::container::access::resolv_conf_for_container(&host).expect("this host has a usable nameserver");
    assert_eq!(t.sh_ok(&a.id, "cat /etc/resolv.conf"), want);

    let second = vessel_core::PasswordHash::parse(&format!("$y$j9T$vessel${}", "b".repeat(43))).unwrap();
    let pid = t.pid(&a.id);
    t.host.reset_password(&a.id, second.clone()).unwrap();
    let shadow = t.sh_ok(&a.id, "cat /etc/shadow");
    assert!(shadow.starts_with(&format!("root:{}:", second.as_str())), "{shadow}");
    assert_eq!(shadow.lines().filter(|l| l.starts_with("root:")).count(), 1, "{shadow}");
    assert_eq!(t.pid(&a.id), pid, "reset without a restart");
    // A stopped container is refused (nothing is written into it from the host).
    t.host.stop(&a.id).unwrap();
    assert!(t.host.reset_password(&a.id, first).is_err());
}

/// With the host's LXCFS, a container's /proc/meminfo (`free`) and uptime are its plan's and
/// its own: 128 MiB (the burst ceiling), an uptime of seconds on a host up for longer.
#[test]
fn free_cpuinfo_and_uptime_show_the_plan() {
    ct_support::ensure_lxcfs();
    let t = TestHost::new(161, 6, TestHost::big());
    let a = t.spec(|r| {
        r.vcpus = 1;
        r.memory_burst_mib = 128;
    });
    t.host.create(a.clone(), true).unwrap();
    // (procps' free, Debian's, reads /proc/meminfo; busybox's asks sysinfo(2), which no
    // LXCFS can change, so the file is checked here.)
    let mem = t.sh_ok(&a.id, "grep ^MemTotal: /proc/meminfo");
    assert_eq!(mem.split_whitespace().nth(1), Some("131072"), "{mem}");
    // The plan's one vCPU: /proc/cpuinfo (LXCFS, from the container's cpuset) and nproc (its
    // CPU affinity).
    let cpus = t.sh_ok(&a.id, "grep -c ^processor /proc/cpuinfo; nproc");
    assert_eq!(cpus, "1\n1\n", "cpuinfo processors, nproc of a 1-vCPU plan");
    let up: f64 = t.sh_ok(&a.id, "cut -d' ' -f1 /proc/uptime").trim().parse().unwrap();
    let host_up: f64 = std::fs::read_to_string("/proc/uptime").unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(up < 60.0 && host_up > up + 60.0, "container uptime {up}s, host {host_up}s");
}

/// `nproc` and /proc/cpuinfo say the plan's vCPUs, and containers are spread over the host's
/// CPUs rather than piled on the first: two 1-vCPU containers get different CPUs (on a host
/// with two or more), a plan with as many vCPUs as the host has sees them all.
#[test]
fn vcpus_are_what_nproc_and_cpuinfo_show_spread_over_the_host() {
    ct_support::ensure_lxcfs();
    let host_cpus = provisioner::vm::shield::online_cpus();
    assert!(host_cpus >= 2, "this test needs a host with two CPUs or more");
    let t = TestHost::new(161, 7, TestHost::big());
    let one = |_: ()| t.spec(|r| r.vcpus = 1);
    let (a, b) = (one(()), one(()));
    let c = t.spec(|r| r.vcpus = 2);
    for s in [&a, &b, &c] {
        t.host.create(s.clone(), true).unwrap();
    }
    let view = |id: &vessel_core::InstanceId| {
        t.sh_ok(id, "grep -c ^processor /proc/cpuinfo; nproc; grep Cpus_allowed_list /proc/self/status | cut -f2")
    };
    let (va, vb, vc) = (view(&a.id), view(&b.id), view(&c.id));
    let lines = |v: &str| v.lines().map(str::to_string).collect::<Vec<_>>();
    let (la, lb, lc) = (lines(&va), lines(&vb), lines(&vc));
    assert_eq!(&la[..2], ["1", "1"], "1 vCPU: {va}");
    assert_eq!(&lb[..2], ["1", "1"], "1 vCPU: {vb}");
    assert_ne!(la[2], lb[2], "two 1-vCPU containers on the same CPU: {va} / {vb}");
    assert_eq!(&lc[..2], ["2", "2"], "2 vCPUs: {vc}");
}

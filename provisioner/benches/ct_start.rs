//! create→running latency and host memory outside the containers, for N busybox containers:
//! Vessel vs crun vs LXC on the same root filesystem, in the same run.
//!
//! `cargo bench -p provisioner --bench ct_start` (as root; installs crun and lxc with apt-get
//! if missing). `CT_BENCH_N` sets N (default 20); `CT_BENCH_DEBIAN_N` the debian-12 rows'
//! count (default 3); `CT_BENCH_ONLY=debian` runs only those.
//!
//! Rows:
//! * vessel create→running: sparse ext4 image + mkfs + rootfs copy + cgroup + namespaces +
//!   pivot_root + init, i.e. everything from nothing;
//! * vessel start: an already created container (cgroup, namespaces, init);
//! * crun run -d: a prepared bundle over the unpacked rootfs, with the same cgroup limits;
//! * lxc-start -d + lxc-wait RUNNING: the same rootfs, the same limits;
//! * debian-12: create → `systemctl is-system-running` (running/degraded) → sshd's banner on
//!   port 22, Vessel vs LXC booting the same template tree with systemd (see `debian_rows`).
//!
//! "Outside" memory: the proportional set size of the processes each runtime leaves on the
//! host, outside the containers' pid namespaces (per-container monitors and the like).

use provisioner::cgroup::CgroupLayout;
use provisioner::container::manager::ContainerHost;
use provisioner::container::{ContainerConfig, ContainerRuntime};
use provisioner::template::TemplateStore;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vessel_core::resources::ResourceSpec;
use vessel_core::{HostCapacity, Hostname, InstanceId, InstanceKind, InstanceSpec, PlanResources};

const EXE: &str = env!("CARGO_BIN_EXE_provisioner");

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).stdin(Stdio::null()).output().expect("sh")
}

/// Runs `cmd` with every output in `log`: a detached container must not inherit a pipe we
/// wait on.
fn run_logged(cmd: &str, log: &Path) -> bool {
    let f = fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_tool(bin: &str, pkg: &str) {
    if !sh(&format!("command -v {bin}")).status.success() {
        eprintln!("installing {pkg} (yardstick)…");
        let o = sh(&format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {pkg} >/dev/null 2>&1 || (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y {pkg} >/dev/null)"));
        assert!(o.status.success(), "could not install {pkg}");
    }
}

fn stats(name: &str, v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let med = ms(v[v.len() / 2]);
    let p99 = ms(v[((v.len() as f64 * 0.99).ceil() as usize).min(v.len()) - 1]);
    println!("{name:<34} median {med:>8.2} ms   p99 {p99:>8.2} ms   (n={})", v.len());
    (med, p99)
}

fn host_pidns() -> String {
    fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned()
}

fn pids() -> HashSet<u32> {
    fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// What a runtime left on the host since `before`, outside the containers' pid namespaces:
/// (PSS KiB of the runtimes' user-space processes, each with its command line, number of new
/// kernel threads).
/// Only processes of the runtimes under test count (this machine is shared with other jobs).
fn outside(before: &HashSet<u32>) -> (u64, Vec<(u64, String)>, usize) {
    let me = std::process::id();
    let ns = host_pidns();
    let (mut total, mut names, mut kthreads) = (0, Vec::new(), 0);
    for p in pids().difference(before) {
        if *p == me {
            continue;
        }
        let Ok(link) = fs::read_link(format!("/proc/{p}/ns/pid")) else {
            continue;
        };
        if link.to_string_lossy() != ns {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        if stat.rsplit(')').next().map(|s| s.trim_start().starts_with('Z')).unwrap_or(true) {
            continue;
        }
        let Ok(exe) = fs::read_link(format!("/proc/{p}/exe")) else {
            kthreads += 1;
            continue;
        };
        let cmd = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default().replace('\0', " ");
        let exe = exe.to_string_lossy().into_owned();
        let ours = exe == EXE || exe.contains("crun") || exe.contains("lxc") || cmd.contains("lxc") || cmd.contains("crun");
        if !ours {
            continue;
        }
        let pss: u64 = fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        total += pss;
        names.push((pss, cmd));
    }
    (total, names, kthreads)
}

fn plan() -> PlanResources {
    PlanResources::try_from(ResourceSpec {
        kind: InstanceKind::Container,
        vcpus: 1,
        memory_guaranteed_mib: Some(64),
        memory_burst_mib: 128,
        swap_mib: 0,
        disk_gib: 1,
        cpu_ratio: 4.0,
        memory_ratio: 1.5,
        disk_ratio: 2.0,
        pids_max: Some(256),
        net_rate_mbit: None,
        io_weight: None,
        io_limits: Default::default(),
    })
    .unwrap()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "the container bench needs root");
    let n: usize = std::env::var("CT_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    ensure_tool("crun", "crun");
    ensure_tool("lxc-start", "lxc");
    let debian_n: usize = std::env::var("CT_BENCH_DEBIAN_N").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    if std::env::var("CT_BENCH_ONLY").as_deref() == Ok("debian") {
        debian_rows(debian_n);
        return;
    }
    let sfx = InstanceId::new_random().short()[..6].to_string();
    let scratch = PathBuf::from(format!("/var/tmp/vessel-bench-{sfx}"));
    fs::create_dir_all(&scratch).unwrap();
    let tpl = scratch.join("templates");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-template-busybox.sh");
    assert!(Command::new("sh").arg(script).arg(&tpl).status().unwrap().success());
    println!("ct_start bench: {n} busybox containers per runtime\n");

    // ---- Vessel ----
    let cap = HostCapacity { cpus: 256, memory_mib: 1 << 20, disk_gib: 100_000 };
    let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup"), format!("vessel-bench-{sfx}"));
    let cfg = ContainerConfig {
        state_dir: scratch.join("vessel"),
        cgroups: layout.clone(),
        templates: TemplateStore::new(&tpl, scratch.join("vessel/template-cache")),
        bridge: format!("vzb{sfx}"),
        veth_prefix: "vz".into(),
        helper_exe: EXE.into(),
        stop_timeout: Duration::from_secs(2),
        host_memory_mib: cap.memory_mib,
        userns: Some(provisioner::container::IdPool::DEFAULT),
        route: false,
    };
    let host = ContainerHost::new(ContainerRuntime::new(cfg), cap).unwrap();
    // Warm the template cache (a create never re-extracts; the first one would).
    let rootfs = host.rt.cfg.templates.load("busybox").unwrap().rootfs;
    // crun refuses "hybrid" hosts (cgroup2 mounted beside v1 with a controller); it runs in a
    // private mount namespace without the cgroup2 mount, i.e. in v1 mode like us.
    let wrapper = "unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"'";
    let log = scratch.join("yardsticks.log");
    let base = scratch.join("crun-spec");
    fs::create_dir_all(&base).unwrap();
    assert!(Command::new("crun").arg("spec").current_dir(&base).status().unwrap().success());
    let mut crun_spec: serde_json::Value = serde_json::from_slice(&fs::read(base.join("config.json")).unwrap()).unwrap();
    crun_spec["process"]["terminal"] = false.into();
    crun_spec["process"]["args"] = serde_json::json!(["/sbin/vessel-init"]);
    crun_spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    crun_spec["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 128u64 << 20, "reservation": 64u64 << 20},
        "cpu": {"shares": 256, "quota": 100000, "period": 100000},
        "pids": {"limit": 256}
    });
    let lxcpath = scratch.join("lxc");
    fs::create_dir_all(&lxcpath).unwrap();

    let before = pids();
    // 1. Vessel from nothing: disk image, filesystem, rootfs copy, cgroup, namespaces, init.
    let mut ids = Vec::new();
    let mut create_lat = Vec::new();
    for i in 0..n {
        let spec = InstanceSpec {
            id: InstanceId::new_random(),
            hostname: Hostname::parse(&format!("v{i}.bench.example")).unwrap(),
            template: "busybox".into(),
            resources: plan(),
            access: Default::default(),
            network: Default::default(),
            firewall: Default::default(),
        };
        let t0 = Instant::now();
        host.create(spec.clone(), true).unwrap();
        create_lat.push(t0.elapsed());
        ids.push(spec.id);
    }
    for id in &ids {
        host.stop(id).unwrap();
    }
    // Network namespaces are torn down asynchronously; let that finish before timing.
    std::thread::sleep(Duration::from_secs(2));

    // 2. Start, interleaved: Vessel (created above), crun, LXC, so the load of this shared
    //    machine weighs on all three alike.
    let (mut start_lat, mut crun_lat, mut lxc_lat) = (Vec::new(), Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let t0 = Instant::now();
        host.start(id).unwrap();
        start_lat.push(t0.elapsed());

        let b = scratch.join(format!("crun-{i}"));
        fs::create_dir_all(&b).unwrap();
        crun_spec["hostname"] = format!("c{i}").into();
        crun_spec["linux"]["cgroupsPath"] = format!("/vessel-bench-crun-{sfx}/c{i}").into();
        fs::write(b.join("config.json"), serde_json::to_vec(&crun_spec).unwrap()).unwrap();
        let name = format!("vb{sfx}c{i}");
        let t0 = Instant::now();
        let ok = run_logged(&format!("{wrapper} crun run -d --bundle {} {name}", b.display()), &log);
        crun_lat.push(t0.elapsed());
        assert!(ok, "crun failed: {}", fs::read_to_string(&log).unwrap_or_default());

        let conf = scratch.join(format!("lxc-{i}.conf"));
        fs::write(
            &conf,
            format!(
                "lxc.uts.name = l{i}\nlxc.rootfs.path = dir:{}\nlxc.rootfs.options = ro\nlxc.init.cmd = /sbin/vessel-init\n\
                 lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\nlxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\n\
                 lxc.cgroup.memory.limit_in_bytes = {}\nlxc.cgroup.memory.soft_limit_in_bytes = {}\nlxc.cgroup.cpu.shares = 256\n\
                 lxc.cgroup.cpu.cfs_quota_us = 100000\nlxc.cgroup.pids.max = 256\n",
                rootfs.display(),
                128u64 << 20,
                64u64 << 20
            ),
        )
        .unwrap();
        let name = format!("vb{sfx}l{i}");
        let p = lxcpath.display();
        let t0 = Instant::now();
        let ok =
            run_logged(&format!("lxc-start -P {p} -n {name} -f {} -d && lxc-wait -P {p} -n {name} -s RUNNING -t 10", conf.display()), &log);
        lxc_lat.push(t0.elapsed());
        assert!(ok, "lxc-start failed: {}", fs::read_to_string(&log).unwrap_or_default());
    }
    // All 3N running: what each runtime left on the host besides its containers.
    let (all_pss, all_procs, kthreads) = outside(&before);
    let _ = all_pss;
    let pss_of = |pred: &dyn Fn(&str) -> bool| -> (u64, usize, Option<String>) {
        let hits: Vec<&(u64, String)> = all_procs.iter().filter(|(_, c)| pred(c)).collect();
        (hits.iter().map(|(k, _)| *k).sum(), hits.len(), hits.first().map(|(_, c)| c.clone()))
    };
    let vessel_out = pss_of(&|c: &str| c.contains("provisioner"));
    let crun_out = pss_of(&|c: &str| c.contains("crun"));
    let lxc_out = pss_of(&|c: &str| c.contains("lxc"));
    let t0 = Instant::now();
    assert!(run_logged(&format!("{wrapper} true"), &log));
    let wrapper_cost = t0.elapsed();
    for i in 0..n {
        run_logged(&format!("crun kill vb{sfx}c{i} KILL; sleep 0.05; crun delete -f vb{sfx}c{i}"), &log);
        run_logged(&format!("lxc-stop -P {} -n vb{sfx}l{i} -k", lxcpath.display()), &log);
    }
    run_logged(&format!("for c in /sys/fs/cgroup/*/vessel-bench-crun-{sfx}; do rmdir $c/* $c; done"), &log);
    for id in &ids {
        host.destroy(id).unwrap();
    }

    // 3. Vessel with networking: bridge port, veth into the namespace, address, route, tbf.
    std::thread::sleep(Duration::from_secs(2));
    let mut net_lat = Vec::new();
    for i in 0..n {
        let spec = InstanceSpec {
            id: InstanceId::new_random(),
            hostname: Hostname::parse(&format!("n{i}.bench.example")).unwrap(),
            template: "busybox".into(),
            resources: PlanResources::try_from({
                let mut r = ResourceSpec::from(plan());
                r.net_rate_mbit = Some(100);
                r
            })
            .unwrap(),
            access: Default::default(),
            network: vessel_core::NetworkSpec {
                ipv4: Some(vessel_core::lifecycle::Ipv4Assignment {
                    address: std::net::Ipv4Addr::new(10, 199, 0, 2 + i as u8),
                    prefix_len: 24,
                    gateway: std::net::Ipv4Addr::new(10, 199, 0, 1),
                    nat: false,
                }),
                ipv6: None,
                dns: Vec::new(),
            },
            firewall: Default::default(),
        };
        let t0 = Instant::now();
        host.create(spec.clone(), true).unwrap();
        net_lat.push(t0.elapsed());
        host.destroy(&spec.id).unwrap();
    }
    layout.remove_parent();
    let _ = sh(&format!("ip link del vzb{sfx}"));

    // ---- Report ----
    println!();
    let (vc, vcp) = stats("vessel create→running", &mut create_lat);
    let (vs, vsp) = stats("vessel start (already created)", &mut start_lat);
    stats("vessel create→running, veth+IPv4+tbf", &mut net_lat);
    let (cm, cp) = stats("crun run -d", &mut crun_lat);
    let (lm, lp) = stats("lxc-start -d + lxc-wait RUNNING", &mut lxc_lat);
    println!("  (crun's rows include the unshare wrapper, measured alone at {:.2} ms)", wrapper_cost.as_secs_f64() * 1000.0);
    println!();
    let per = |kib: u64| kib as f64 / n as f64;
    println!("host memory outside the containers (PSS of the runtime's processes left on the host):");
    for (name, (kib, count, example)) in [("vessel", vessel_out), ("crun", crun_out), ("lxc", lxc_out)] {
        println!("  {name:<7}{:>8.1} KiB/container  {count} processes  {example:?}", per(kib));
    }
    println!("new kernel threads with all {} running: {kthreads} (Vessel's loop device + ext4 journal per disk image)", 3 * n);
    println!();
    println!("ratios (>1 = vessel faster):");
    println!("  crun median / vessel start median   {:>6.2}   p99 {:>6.2}", cm / vs, cp / vsp);
    println!("  lxc  median / vessel start median   {:>6.2}   p99 {:>6.2}", lm / vs, lp / vsp);
    println!("  crun median / vessel create median  {:>6.2}   p99 {:>6.2}", cm / vc, cp / vcp);
    println!("  lxc  median / vessel create median  {:>6.2}   p99 {:>6.2}", lm / vc, lp / vcp);
    run_logged("for c in /sys/fs/cgroup/*/lxc.pivot; do rmdir $c; done", &log);
    let _ = fs::remove_dir_all(&scratch);
    println!();
    debian_rows(debian_n);
}

/// Polls `probe` every 50 ms until it says yes (or 120 s pass: then the run fails loudly).
fn until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe() {
        assert!(Instant::now() < deadline, "{what}: not within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Is an SSH server answering on `addr`:22 (its version banner)?
fn ssh_banner(addr: std::net::Ipv4Addr) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&(addr, 22).into(), Duration::from_millis(300)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 8];
    s.read_exact(&mut b).is_ok() && &b == b"SSH-2.0-"
}

fn system_is_up(out: std::process::Output) -> bool {
    let s = String::from_utf8_lossy(&out.stdout);
    matches!(s.trim(), "running" | "degraded")
}

/// The `debian-12` rows: create → `systemctl is-system-running` says running (or degraded) →
/// sshd answers on port 22, for Vessel and for LXC booting the same root filesystem (the
/// template's unpacked tree, under an overlay so every LXC container writes its own upper
/// layer) with systemd and the same limits, alternating, `n` each.
fn debian_rows(n: usize) {
    let sfx = InstanceId::new_random().short()[..6].to_string();
    let scratch = PathBuf::from(format!("/var/tmp/vessel-bench-deb-{sfx}"));
    fs::create_dir_all(&scratch).unwrap();
    let tpl = scratch.join("templates");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-template-debian-12.sh");
    let t0 = Instant::now();
    assert!(Command::new("bash").arg(script).arg(&tpl).status().unwrap().success());
    println!("debian-12 template ready in {:.1} s (cached after the first build)", t0.elapsed().as_secs_f64());
    let cap = HostCapacity { cpus: 256, memory_mib: 1 << 20, disk_gib: 100_000 };
    let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup"), format!("vessel-bench-{sfx}"));
    let bridge = format!("vzd{sfx}");
    let cfg = ContainerConfig {
        state_dir: scratch.join("vessel"),
        cgroups: layout.clone(),
        templates: TemplateStore::new(&tpl, scratch.join("vessel/template-cache")),
        bridge: bridge.clone(),
        veth_prefix: "vz".into(),
        helper_exe: EXE.into(),
        stop_timeout: Duration::from_secs(20),
        host_memory_mib: cap.memory_mib,
        userns: Some(provisioner::container::IdPool::DEFAULT),
        route: false,
    };
    let host = ContainerHost::new(ContainerRuntime::new(cfg), cap).unwrap();
    let rootfs = host.rt.cfg.templates.load("debian-12").unwrap().rootfs;
    let resources = || {
        PlanResources::try_from({
            let mut r = ResourceSpec::from(plan());
            r.memory_burst_mib = 512;
            r.memory_guaranteed_mib = Some(256);
            r.pids_max = Some(512);
            r.disk_gib = 2;
            r
        })
        .unwrap()
    };
    let spec_for = |i: usize| InstanceSpec {
        id: InstanceId::new_random(),
        hostname: Hostname::parse(&format!("d{i}.bench.example")).unwrap(),
        template: "debian-12".into(),
        resources: resources(),
        access: Default::default(),
        network: vessel_core::NetworkSpec {
            ipv4: Some(vessel_core::lifecycle::Ipv4Assignment {
                address: std::net::Ipv4Addr::new(10, 198, 0, 2 + i as u8),
                prefix_len: 24,
                gateway: std::net::Ipv4Addr::new(10, 198, 0, 1),
                nat: false,
            }),
            ipv6: None,
            dns: Vec::new(),
        },
        firewall: Default::default(),
    };
    // One create first, untimed: the golden disk image of this size is made once per host.
    let warm = spec_for(99);
    host.create(warm.clone(), true).unwrap();
    host.destroy(&warm.id).unwrap();

    let log = scratch.join("lxc.log");
    let lxcpath = scratch.join("lxc");
    fs::create_dir_all(&lxcpath).unwrap();
    let (mut v_sys, mut v_ssh, mut l_sys, mut l_ssh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut vb_sys, mut vb_ssh) = (Vec::new(), Vec::new());
    let mut lxc_helpers = 0;
    for i in 0..n {
        // Vessel.
        let spec = spec_for(i);
        let addr = spec.network.ipv4.as_ref().unwrap().address;
        let t0 = Instant::now();
        host.create(spec.clone(), true).unwrap();
        until("vessel: is-system-running", || {
            system_is_up(host.exec_command(&spec.id, &["systemctl".into(), "is-system-running".into()]).unwrap().output().unwrap())
        });
        v_sys.push(t0.elapsed());
        until("vessel: ssh", || ssh_banner(addr));
        v_ssh.push(t0.elapsed());
        // The boot alone: stop (a systemd halt), start again.
        host.stop(&spec.id).unwrap();
        let t0 = Instant::now();
        host.start(&spec.id).unwrap();
        until("vessel: is-system-running after start", || {
            system_is_up(host.exec_command(&spec.id, &["systemctl".into(), "is-system-running".into()]).unwrap().output().unwrap())
        });
        vb_sys.push(t0.elapsed());
        until("vessel: ssh after start", || ssh_banner(addr));
        vb_ssh.push(t0.elapsed());
        host.destroy(&spec.id).unwrap();

        // LXC, the same tree, systemd as init, the same limits, a veth on the same bridge.
        let name = format!("vd{sfx}l{i}");
        let upper = scratch.join(format!("lxc-upper-{i}"));
        fs::create_dir_all(&upper).unwrap();
        let laddr = std::net::Ipv4Addr::new(10, 198, 0, 100 + i as u8);
        let conf = scratch.join(format!("lxc-{i}.conf"));
        fs::write(
            &conf,
            format!(
                "lxc.uts.name = d{i}\nlxc.rootfs.path = overlay:{}:{}\nlxc.init.cmd = /lib/systemd/systemd\n\
                 lxc.net.0.type = veth\nlxc.net.0.link = {bridge}\nlxc.net.0.flags = up\nlxc.net.0.ipv4.address = {laddr}/24\nlxc.net.0.ipv4.gateway = 10.198.0.1\n\
                 lxc.apparmor.profile = unconfined\nlxc.mount.auto = proc:mixed sys:mixed cgroup:mixed\nlxc.autodev = 1\n\
                 lxc.cgroup.memory.limit_in_bytes = {}\nlxc.cgroup.memory.soft_limit_in_bytes = {}\nlxc.cgroup.cpu.cfs_quota_us = 100000\nlxc.cgroup.pids.max = 512\n",
                rootfs.display(),
                upper.display(),
                512u64 << 20,
                256u64 << 20
            ),
        )
        .unwrap();
        let p = lxcpath.display();
        let t0 = Instant::now();
        assert!(
            run_logged(&format!("lxc-start -P {p} -n {name} -f {} -d", conf.display()), &log),
            "lxc-start failed: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        until("lxc: is-system-running", || system_is_up(sh(&format!("lxc-attach -P {p} -n {name} -- systemctl is-system-running"))));
        l_sys.push(t0.elapsed());
        until("lxc: ssh", || ssh_banner(laddr));
        l_ssh.push(t0.elapsed());
        lxc_helpers = String::from_utf8_lossy(&sh(&format!("pgrep -f 'lxc monitor.*{name}' | wc -l")).stdout).trim().parse().unwrap_or(0);
        run_logged(&format!("lxc-stop -P {p} -n {name} -k"), &log);
    }
    let _ = sh(&format!("ip link del {bridge}"));
    layout.remove_parent();
    run_logged("for c in /sys/fs/cgroup/*/lxc.pivot; do rmdir $c; done", &log);
    let _ = fs::remove_dir_all(&scratch);

    println!("debian-12 (systemd as pid 1, sshd), {n} each, alternating:");
    let (vs, _) = stats("vessel create→is-system-running", &mut v_sys);
    let (vh, _) = stats("vessel create→SSH answering", &mut v_ssh);
    let (bs, _) = stats("vessel start (created)→is-system-running", &mut vb_sys);
    let (bh, _) = stats("vessel start (created)→SSH answering", &mut vb_ssh);
    let (ls, _) = stats("lxc-start→is-system-running", &mut l_sys);
    let (lh, _) = stats("lxc-start→SSH answering", &mut l_ssh);
    println!("ratios (>1 = vessel faster): lxc/vessel create→is-system-running {:.2}, →SSH {:.2}", ls / vs, lh / vh);
    println!("                             lxc/vessel start→is-system-running {:.2}, →SSH {:.2}", ls / bs, lh / bh);
    println!("(vessel's create makes the disk from the golden image, shifts the root filesystem's ids into the");
    println!(" container's range and writes its access before booting; lxc here is privileged over an overlay)");
    println!("per-container helper processes left on the host: vessel 0, lxc {lxc_helpers} (its monitor)");
}

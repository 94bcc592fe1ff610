//! Shared by the container suites: a scratch "host" per test (state dir, cgroup parent,
//! bridge, all uniquely named) over the real kernel, cleaned on drop.
#![allow(dead_code)]

use provisioner::cgroup::CgroupLayout;
use provisioner::container::manager::ContainerHost;
use provisioner::container::{ContainerConfig, ContainerRuntime, IdPool};
use provisioner::template::TemplateStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use vessel_core::lifecycle::{Ipv4Assignment, Ipv6Assignment};
use vessel_core::resources::ResourceSpec;
use vessel_core::{HostCapacity, Hostname, InstanceId, InstanceKind, InstanceSpec, NetworkSpec, PlanResources};

pub const EXE: &str = env!("CARGO_BIN_EXE_provisioner");

/// Fails (never skips silently) when the suite cannot run here.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "container tests need root (real namespaces, cgroups, loop devices)");
}

/// The busybox template, built once per target dir by the project's own script.
pub fn templates() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ct-templates");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-template-busybox.sh");
    let out = Command::new("sh").arg(script).arg(&dir).output().expect("run template script");
    assert!(out.status.success(), "template build failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// The `debian-12` template (systemd, OpenSSH), built by the project's own script into its
/// cache outside the repository (keyed by the script's hash: a few minutes the first time on
/// a machine, nothing after) and linked into the same directory as the busybox template.
pub fn debian_template() -> PathBuf {
    let dir = templates();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-template-debian-12.sh");
    let out = Command::new("bash").arg(script).arg(&dir).output().expect("run the debian-12 template script");
    assert!(out.status.success(), "debian-12 template build failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

pub fn rand_suffix() -> String {
    InstanceId::new_random().short()[..6].to_string()
}

pub struct TestHost {
    pub host: ContainerHost,
    pub state: tempfile::TempDir,
    pub layout: CgroupLayout,
    pub bridge: String,
    /// This host's /24: `10.<net_a>.<net_b>.0/24`.
    net: (u8, u8),
    next_ip: AtomicU8,
}

impl TestHost {
    /// A scratch host. `net_a` separates the suites' subnets (suites run one after another,
    /// tests inside one in parallel), `net_b` the tests inside a suite.
    pub fn new(net_a: u8, net_b: u8, capacity: HostCapacity) -> Self {
        Self::with_stop_timeout(net_a, net_b, capacity, Duration::from_secs(3))
    }

    /// A scratch host whose graceful stops wait `stop_timeout` before killing.
    pub fn with_stop_timeout(net_a: u8, net_b: u8, capacity: HostCapacity, stop_timeout: Duration) -> Self {
        Self::with_options(net_a, net_b, capacity, stop_timeout, false)
    }

    /// `route`: the host routes (forwarding on in the calling thread's network namespace:
    /// only for a test that moved its thread into a namespace of its own).
    pub fn with_options(net_a: u8, net_b: u8, capacity: HostCapacity, stop_timeout: Duration, route: bool) -> Self {
        require_root();
        let templates = templates();
        let state = tempfile::Builder::new().prefix("vessel-ct-").tempdir_in("/var/tmp").expect("tempdir");
        let sfx = rand_suffix();
        let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup"), format!("vessel-test-{sfx}"));
        let bridge = format!("vzt{sfx}");
        let cfg = ContainerConfig {
            state_dir: state.path().to_path_buf(),
            cgroups: layout.clone(),
            templates: TemplateStore::new(&templates, state.path().join("template-cache")),
            bridge: bridge.clone(),
            veth_prefix: "vz".into(),
            helper_exe: EXE.into(),
            stop_timeout,
            host_memory_mib: capacity.memory_mib,
            // A pool of its own per scratch host (hosts of parallel tests share the machine).
            userns: Some(IdPool { first: (1 << 30) + (u32::from_str_radix(&sfx[..4], 16).unwrap() % 256) * 64 * 65536, slots: 64 }),
            route,
        };
        let host = ContainerHost::new(ContainerRuntime::new(cfg), capacity).expect("host");
        TestHost { host, state, layout, bridge, net: (net_a, net_b), next_ip: AtomicU8::new(2) }
    }

    pub fn big() -> HostCapacity {
        HostCapacity { cpus: 64, memory_mib: 64 * 1024, disk_gib: 1000 }
    }

    /// The CLI against this host's state, for tests that must kill the provisioner.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(EXE);
        c.arg("ct")
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--templates")
            .arg(templates())
            .arg("--cgroup-parent")
            .arg(&self.layout.parent)
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--stop-timeout")
            .arg("3")
            .arg("--no-route")
            .args(["--cpus", "64", "--memory-mib", "65536", "--disk-gib", "1000"]);
        c
    }

    pub fn gateway(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, self.net.0, self.net.1, 1)
    }

    pub fn spec(&self, f: impl FnOnce(&mut ResourceSpec)) -> InstanceSpec {
        let mut r = ResourceSpec {
            kind: InstanceKind::Container,
            vcpus: 1,
            memory_guaranteed_mib: Some(64),
            memory_burst_mib: 128,
            swap_mib: 0,
            disk_gib: 1,
            cpu_ratio: 4.0,
            memory_ratio: 1.5,
            disk_ratio: 2.0,
            pids_max: Some(64),
            net_rate_mbit: Some(100),
            io_weight: None,
            io_limits: Default::default(),
        };
        f(&mut r);
        let id = InstanceId::new_random();
        let host_part = self.next_ip.fetch_add(1, Ordering::SeqCst);
        InstanceSpec {
            id,
            hostname: Hostname::parse(&format!("ct-{}.example.com", &id.short()[..6])).unwrap(),
            template: "busybox".into(),
            resources: PlanResources::try_from(r).expect("valid plan"),
            access: Default::default(),
            network: NetworkSpec {
                ipv4: Some(Ipv4Assignment {
                    address: std::net::Ipv4Addr::new(10, self.net.0, self.net.1, host_part),
                    prefix_len: 24,
                    gateway: self.gateway(),
                    nat: false,
                }),
                ipv6: Some(Ipv6Assignment {
                    address: self.gateway6().to_string().replace("::1", &format!("::{host_part:x}")).parse().unwrap(),
                    prefix_len: 64,
                    gateway: self.gateway6(),
                }),
                dns: Vec::new(),
            },
            firewall: Default::default(),
        }
    }

    pub fn gateway6(&self) -> std::net::Ipv6Addr {
        format!("fd00:{:x}:{:x}::1", self.net.0, self.net.1).parse().unwrap()
    }

    /// `sh -c script` inside container `id`.
    pub fn sh(&self, id: &InstanceId, script: &str) -> Output {
        self.host.exec_command(id, &["/bin/sh".into(), "-c".into(), script.into()]).expect("exec command").output().expect("run exec")
    }

    pub fn sh_ok(&self, id: &InstanceId, script: &str) -> String {
        let o = self.sh(id, script);
        assert!(
            o.status.success(),
            "{script}: {:?}\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Everything of ours the kernel still holds (cgroups, mounts, loops, links), as text
    /// lines; empty means clean.
    pub fn leftovers(&self, id: &InstanceId) -> Vec<String> {
        let mut left = Vec::new();
        let rt = &self.host.rt;
        for d in rt.cgroup(id).dirs().into_iter().chain(rt.cgroup(id).tree_dir()) {
            if d.exists() {
                left.push(format!("cgroup {}", d.display()));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = rt.dir(id);
        for l in mountinfo.lines() {
            if l.contains(dir.to_str().unwrap()) {
                left.push(format!("mount {l}"));
            }
        }
        let loops = Command::new("losetup").args(["-l", "-n", "-O", "NAME,BACK-FILE"]).output().unwrap();
        for l in String::from_utf8_lossy(&loops.stdout).lines() {
            if l.contains(dir.to_str().unwrap()) {
                left.push(format!("loop {l}"));
            }
        }
        if Path::new("/sys/class/net").join(rt.veth_host(id)).exists() {
            left.push(format!("link {}", rt.veth_host(id)));
        }
        if dir.exists() {
            left.push(format!("dir {}", dir.display()));
        }
        let nft = Command::new("nft").args(["list", "tables", "bridge"]).output().unwrap();
        if String::from_utf8_lossy(&nft.stdout).contains(&format!("vessel_{}", rt.veth_host(id))) {
            left.push(format!("nft table of {}", rt.veth_host(id)));
        }
        let ifb = provisioner::hostnet::ifb_name(&rt.veth_host(id));
        if Path::new("/sys/class/net").join(&ifb).exists() {
            left.push(format!("link {ifb}"));
        }
        left
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Ok(list) = self.host.store.list() {
            for r in list {
                let _ = self.host.destroy(&r.spec.id);
            }
        }
        let _ = self.host.reconcile();
        self.layout.remove_parent();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

/// The attack probe (`ct_support/probe.c`), built static once per target dir with the host's
/// cc (gcc and libc6-dev come from scripts/ensure-test-deps).
pub fn probe() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ct_support/probe.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ct-probe");
    let fresh = |o: &Path| {
        let (Ok(a), Ok(b)) = (std::fs::metadata(o), std::fs::metadata(&src)) else {
            return false;
        };
        a.modified().unwrap() >= b.modified().unwrap()
    };
    if !fresh(&out) {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let o = Command::new("cc")
            .args(["-static", "-O1", "-o"])
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run cc (gcc and libc6-dev are test dependencies)");
        assert!(o.status.success(), "cc probe.c: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

impl TestHost {
    /// Copies the probe into container `id` as `/probe` and runs `/probe args` as its root.
    pub fn probe(&self, id: &InstanceId, args: &str) -> String {
        let dst = self.host.rt.root(id).join("probe");
        if !dst.exists() {
            std::fs::copy(probe(), &dst).unwrap();
        }
        let o = self.sh(id, &format!("/probe {args}"));
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(out.starts_with("ok") || out.starts_with("denied"), "probe {args}: {out} {}", String::from_utf8_lossy(&o.stderr));
        out
    }

    /// Host pid of the init of container `id`.
    pub fn pid(&self, id: &InstanceId) -> u32 {
        self.host.rt.live_pid(&self.host.store.get(id).unwrap().unwrap()).expect("running")
    }
}

/// Debian's LXCFS on its usual mount point, as a host running containers has it (its
/// package's service); started here if it is not running (it stays, like that service).
pub fn ensure_lxcfs() {
    let meminfo = Path::new(provisioner::container::init::LXCFS).join("proc/meminfo");
    if meminfo.exists() {
        return;
    }
    // A daemon that died (killed with the session that started it) leaves a dead FUSE mount
    // ("Transport endpoint is not connected"): detach it before mounting afresh.
    if std::fs::metadata(provisioner::container::init::LXCFS).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN)) {
        let _ = Command::new("umount").args(["-l", provisioner::container::init::LXCFS]).status();
    }
    std::fs::create_dir_all(provisioner::container::init::LXCFS).unwrap();
    let st = Command::new("lxcfs")
        .args(["--enable-cfs", "-p", "/run/vessel-test-lxcfs.pid", provisioner::container::init::LXCFS])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run lxcfs (a test dependency: scripts/ensure-test-deps)");
    drop(st);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !meminfo.exists() {
        assert!(std::time::Instant::now() < deadline, "lxcfs did not come up on {}", provisioner::container::init::LXCFS);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An "Internet" beside the host: a network namespace with one veth to the host, routed
/// through it. The test's host is a network namespace of its own (this test thread's), so its
/// forwarding, bridge and guards touch nothing of the machine's: build the `TestHost` after,
/// on the same thread, with `route` on.
pub struct Internet {
    pub ns: String,
}

impl Internet {
    /// Moves this thread into a fresh network namespace (the host), then makes the Internet
    /// namespace and its link: host `10.170.250.1/24`, Internet `10.170.250.2/24`, whose
    /// default route is the host.
    pub fn beside_a_private_host(sfx: &str) -> Internet {
        // SAFETY: unshare(2) for the calling thread only; the commands and helpers the test
        // spawns from this thread inherit its network namespace.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare net: {}", std::io::Error::last_os_error());
        let ns = format!("vinet-{sfx}");
        let (up, down) = (format!("vu{sfx}"), format!("vd{sfx}"));
        for cmd in [
            "ip link set lo up".to_string(),
            format!("ip netns add {ns}"),
            format!("ip link add {up} type veth peer name {down} netns {ns}"),
            format!("ip addr add 10.170.250.1/24 dev {up}"),
            format!("ip link set {up} up"),
            format!("ip -n {ns} link set lo up"),
            format!("ip -n {ns} addr add 10.170.250.2/24 dev {down}"),
            format!("ip -n {ns} link set {down} up"),
            format!("ip -n {ns} route add default via 10.170.250.1"),
        ] {
            let o = std::process::Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
            assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Internet { ns }
    }

    /// `ssh` from the Internet namespace as the project's own usage has it, bounded in time.
    pub fn ssh(&self, args: &[&str], addr: &str, cmd: &str, stdin: Option<&std::path::Path>, env: &[(&str, &str)]) -> std::process::Output {
        let mut c = std::process::Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.ns,
            "timeout",
            "90",
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        ])
        .args(args)
        .arg(format!("root@{addr}"))
        .arg(cmd);
        c.stdin(match stdin {
            Some(p) => std::process::Stdio::from(std::fs::File::open(p).unwrap()),
            None => std::process::Stdio::null(),
        });
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

impl Internet {
    /// Runs `cmd` (a shell command) in the Internet namespace and returns its output.
    pub fn sh(&self, cmd: &str) -> Output {
        Command::new("ip").args(["netns", "exec", &self.ns, "sh", "-c", cmd]).output().unwrap()
    }

    /// Accepts one TCP connection on 10.170.250.2:`port` (bounded: 30 s) and returns the
    /// peer's address as the Internet sees it; `connect` makes the connection meanwhile.
    pub fn peer_of(&self, port: u16, connect: impl FnOnce()) -> String {
        let script = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.170.250.2',{port}))\ns.listen(1)\nprint('ready',flush=True)\ns.settimeout(30)\nc,a=s.accept()\nprint(a[0],flush=True)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        connect();
        line.clear();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let _ = child.wait();
        line.trim().to_string()
    }
}

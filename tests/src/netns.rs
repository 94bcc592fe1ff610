//! Several hosts on one machine: a network namespace per host, joined to a bridge in the
//! root namespace by a veth pair, with addresses from a /24 of our own (`10.251.X.0/24`,
//! X chosen free and held by a lock file for the network's life). A host's link can be cut
//! and restored to simulate losing it; everything is torn down on drop (processes started
//! through [`HostNs::spawn`], namespaces, links, the bridge).
//!
//! Needs root, `ip` (iproute2, installed by `scripts/ensure-test-deps`) and `nsenter`
//! (util-linux, essential on Debian).

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Runs `ip` with `args`, failing with its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

fn random_hex8() -> io::Result<String> {
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
    Ok(u.trim().replace('-', "")[..8].to_string())
}

/// FNV-1a: a stable short hash for names derived from a key (no crypto needed).
fn fnv1a(key: &str) -> u32 {
    key.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// Is this process root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The bridge and the /24 the hosts live on.
pub struct Network {
    short: String,
    bridge: String,
    /// X of 10.251.X.0/24.
    subnet: u8,
    next_host: u8,
    /// Names are derived from a key (not random): leftovers of an earlier run with the same
    /// key are removed before anything is made.
    stable: bool,
    _lock: std::fs::File,
}

impl Network {
    /// Makes the bridge `vsb<hex>` with `10.251.X.1/24` in the root namespace.
    pub fn new() -> io::Result<Network> {
        let start = std::process::id() as usize % 250;
        Self::make(random_hex8()?, start, false)
    }

    /// Like [`Network::new`], but its names and (when free) its subnet follow from `key`, so
    /// a long-lived setup such as the demo's hosts keeps its addresses from run to run. What
    /// a killed earlier run with the same key left (bridge, namespaces, links, cgroups) is
    /// removed first.
    pub fn with_key(key: &str) -> io::Result<Network> {
        let h = fnv1a(key);
        Self::make(format!("{h:08x}"), h as usize % 250, true)
    }

    fn make(short: String, subnet_start: usize, stable: bool) -> io::Result<Network> {
        if !is_root() {
            return Err(io::Error::other("network namespaces need root"));
        }
        let bridge = format!("vsb{short}");
        if stable {
            let _ = ip(&["link", "del", &bridge]);
        }
        let (subnet, lock) = Self::claim_subnet(subnet_start)?;
        let net = Network { short, bridge, subnet, next_host: 0, stable, _lock: lock };
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", net.gateway()), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// A 10.251.X.0/24 no other network (of this or another test process) holds: a lock
    /// file per X, held with flock (released by the kernel if the process dies), and no
    /// address of it already on the machine.
    fn claim_subnet(start: usize) -> io::Result<(u8, std::fs::File)> {
        let used = String::from_utf8_lossy(&Command::new("ip").args(["-4", "-o", "addr", "show"]).output()?.stdout).to_string();
        for i in 0..250 {
            let x = ((start + i) % 250) as u8 + 1;
            let path = format!("/tmp/vessel-netns-10.251.{x}.lock");
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            if used.contains(&format!(" 10.251.{x}.")) {
                continue;
            }
            return Ok((x, f));
        }
        Err(io::Error::other("no free 10.251.X.0/24"))
    }

    /// The root namespace's address on the bridge (the hosts' default route).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.subnet, 1)
    }

    /// Makes the next host: namespace `vessel-<hex>-<n>`, its `eth0` at `10.251.X.(10+n)/24`.
    pub fn add_host(&mut self) -> io::Result<HostNs> {
        let n = self.next_host;
        if n >= 200 {
            return Err(io::Error::other("at most 200 hosts per network"));
        }
        self.next_host += 1;
        let name = format!("vessel-{}-{n}", self.short);
        let veth = format!("vsv{}{n}", self.short);
        let peer = format!("vsp{}{n}", self.short);
        let addr = Ipv4Addr::new(10, 251, self.subnet, 10 + n);
        // From here on, Drop removes whatever was made.
        let host = HostNs { name: name.clone(), veth: veth.clone(), addr, children: Vec::new() };
        if self.stable {
            let _ = ip(&["link", "del", &veth]);
            let _ = ip(&["netns", "del", &name]);
            host.remove_cgroups();
        }
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &name, "ip"];
            a.extend_from_slice(args);
            ip(&a)
        };
        inside(&["link", "set", &peer, "name", "eth0"])?;
        inside(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &self.gateway().to_string()])?;
        Ok(host)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// One host's namespace. Drop kills the processes it spawned (their whole process groups),
/// then removes the namespace and its veth pair.
pub struct HostNs {
    pub name: String,
    veth: String,
    pub addr: Ipv4Addr,
    children: Vec<Child>,
}

impl HostNs {
    /// A command that runs `program` inside this namespace, in a process group of its own.
    /// Start it with [`HostNs::spawn`] so it is killed on drop.
    ///
    /// It enters only the network namespace (`nsenter --net=/run/netns/<name>`), not the
    /// private mount namespace `ip netns exec` makes: that one remounts `/sys`, which hides
    /// the cgroup hierarchies a provisioner needs for its instances.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg("--").arg(program).process_group(0);
        c
    }

    /// Starts `cmd` (from [`HostNs::command`]) and keeps it, to be killed on drop.
    pub fn spawn(&mut self, mut cmd: Command) -> io::Result<&mut Child> {
        let child = cmd.spawn()?;
        self.children.push(child);
        Ok(self.children.last_mut().expect("just pushed"))
    }

    /// Lays out a joined-style host's directory: the KVM test guest's image (`images/`) and,
    /// given its `vmlinux`, the Linux test kernel's (`linux-test-kernel`), the
    /// busybox container template built by the project's script (`templates/`), and
    /// `provisioner.toml` listening on `<addr>:<port>` with its state in `dir/state`, this
    /// namespace's cgroup parent, and `extra_toml` appended (TLS, `[capacity]`). Returns the
    /// config's path. The end-to-end world and the demo both lay hosts out here.
    pub fn lay_out_host(
        &self,
        dir: &std::path::Path,
        port: u16,
        guest_elf: &std::path::Path,
        test_kernel: Option<&std::path::Path>,
        extra_toml: &str,
    ) -> io::Result<std::path::PathBuf> {
        let image = dir.join("images").join("vessel-test-guest");
        std::fs::create_dir_all(&image)?;
        std::fs::write(image.join("image.json"), serde_json::json!({ "kernel": guest_elf, "cmdline": "heartbeat" }).to_string())?;
        if let Some(vmlinux) = test_kernel {
            provisioner::vm::test_kernel::install(&dir.join("images"), vmlinux)?;
        }
        let templates = dir.join("templates");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../provisioner/scripts/build-template-busybox.sh");
        let built = Command::new("sh").arg(&script).arg(&templates).output()?;
        if !built.status.success() {
            return Err(io::Error::other(format!("busybox template: {}", String::from_utf8_lossy(&built.stderr))));
        }
        let config = dir.join("provisioner.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{}:{port}\"\nstate_dir = {:?}\nimages_dir = {:?}\ntemplates_dir = {:?}\ncgroup_parent = \"{}\"\ncpu_shield_dir = {:?}\ncpu_shield_host_wide = false\n{extra_toml}",
                self.addr,
                dir.join("state"),
                dir.join("images"),
                templates,
                self.cgroup_parent(),
                dir.join("cpu-shield"),
            ),
        )?;
        Ok(config)
    }

    /// Starts `provisioner serve` in this namespace on `<addr>:<port>`, with its state under
    /// `dir` (`dir/state`, the secret `secret_base64` in `dir/state/host.secret` 0600, its log
    /// in `dir/daemon.log`), `images_dir`, cgroup parent `vessel-netns-<namespace>`, and
    /// `extra_toml` appended to the config (e.g. `[capacity]` and `[reserved]` tables).
    /// Returns the URL it printed once listening (waits up to 60 s).
    pub fn start_provisioner(
        &mut self,
        bin: &std::path::Path,
        dir: &std::path::Path,
        port: u16,
        secret_base64: &str,
        images_dir: &std::path::Path,
        extra_toml: &str,
    ) -> io::Result<String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let state = dir.join("state");
        std::fs::create_dir_all(&state)?;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(state.join("host.secret"))?;
        f.write_all(secret_base64.as_bytes())?;
        let cfg = dir.join("provisioner.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"{}:{port}\"\nstate_dir = {:?}\nimages_dir = {:?}\ncgroup_parent = {:?}\ncpu_shield_dir = {:?}\ncpu_shield_host_wide = false\n{extra_toml}\n",
                self.addr,
                state,
                images_dir,
                self.cgroup_parent(),
                dir.join("cpu-shield")
            ),
        )?;
        self.serve(bin, &cfg, &dir.join("daemon.log"))
    }

    /// Starts `provisioner serve --config <config>` in this namespace, appending its stderr
    /// to `log`, and returns the URL it printed once listening (waits up to 60 s). Run it
    /// again after [`HostNs::kill_all`] to restart the daemon.
    pub fn serve(&mut self, bin: &std::path::Path, config: &std::path::Path, log: &std::path::Path) -> io::Result<String> {
        use std::io::{BufRead, BufReader};
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut cmd = self.command(bin);
        cmd.args(["serve", "--config"]).arg(config).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file);
        let child = self.spawn(cmd)?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx.recv_timeout(std::time::Duration::from_secs(60)).map_err(|_| {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                io::Error::other(format!("provisioner in {} did not start: {log}", self.name))
            })?;
            if let Some(url) = line.strip_prefix("listening on ") {
                return Ok(url.trim().to_string());
            }
        }
    }

    /// The cgroup parent a provisioner in this namespace puts its instances under (set by
    /// [`HostNs::start_provisioner`]; other configs should use it too, so drop removes it).
    pub fn cgroup_parent(&self) -> String {
        format!("vessel-netns-{}", self.name)
    }

    /// kill -9 of every process group started here.
    pub fn kill_all(&mut self) {
        for mut c in self.children.drain(..) {
            // SAFETY: kill(2) of the process group we created for this child (pgid = its pid).
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// Cuts the host off: its link on the bridge goes down (packets to it are dropped).
    pub fn cut(&self) -> io::Result<()> {
        ip(&["link", "set", &self.veth, "down"])
    }

    /// Brings the link back.
    pub fn restore(&self) -> io::Result<()> {
        ip(&["link", "set", &self.veth, "up"])
    }
}

impl HostNs {
    /// Kills every process of the host's instances and removes their cgroups: its cgroup
    /// parent in every controller (instances outlive their daemon, in process groups of
    /// their own). Waits until each cgroup is empty and gone.
    pub fn remove_cgroups(&self) {
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                remove_cgroup(&c.path().join(self.cgroup_parent()));
            }
        }
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        self.kill_all();
        // Deleting the root end deletes the pair; deleting the namespace removes its end too.
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
        self.remove_cgroups();
    }
}

/// Unmounts everything mounted under `dir` and detaches every loop device whose backing
/// file lies under it: what a host's containers hold once their processes are gone (a
/// long-lived host keeps them; a host torn down must not leave them behind).
pub fn release_storage(dir: &std::path::Path) {
    let _ = provisioner::container::disk::unmount(dir);
    let Ok(loops) = std::fs::read_dir("/sys/block") else { return };
    for l in loops.flatten() {
        let Ok(back) = std::fs::read_to_string(l.path().join("loop/backing_file")) else { continue };
        if std::path::Path::new(back.trim()).starts_with(dir) {
            let dev = format!("/dev/{}", l.file_name().to_string_lossy());
            let _ = Command::new("losetup").arg("-d").arg(&dev).stdin(Stdio::null()).output();
        }
    }
}

/// Removes a cgroup and its children, innermost first, killing any process still inside.
fn remove_cgroup(dir: &std::path::Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.path().is_dir() {
                remove_cgroup(&child.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) of a process inside this test host's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The `provisioner` binary of this workspace, built if needed. `VESSEL_PROVISIONER_BIN`
/// overrides it.
pub fn provisioner_binary() -> io::Result<PathBuf> {
    workspace_binary("provisioner")
}

/// A binary of this workspace (package and binary of the same name). `VESSEL_<NAME>_BIN`
/// names it (`./vessel test` sets it to what its workspace build made: building `-p <name>`
/// alone unifies features differently and would rebuild half the tree); otherwise it is
/// built with the same cargo and target dir as the tests.
pub fn workspace_binary(name: &str) -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os(format!("VESSEL_{}_BIN", name.to_uppercase())) {
        return Ok(p.into());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(cargo);
    // The variables cargo sets for a running test (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...) would
    // change build scripts' fingerprints and rebuild half the tree: pass on only the user's.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if (k.starts_with("CARGO_") && !matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR")) || k == "OUT_DIR" {
            cmd.env_remove(&k);
        }
    }
    let out =
        cmd.current_dir(&root).args(["build", "-p", name, "--bin", name, "--message-format=json"]).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("cargo build -p {name} failed")));
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == name {
            if let Some(exe) = v["executable"].as_str() {
                return Ok(exe.into());
            }
        }
    }
    Err(io::Error::other(format!("cargo did not report the {name} binary")))
}

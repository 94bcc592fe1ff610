//! The provisioner's side of KVM machines: the [`Runtime`] lifecycle over VMM processes.
//!
//! Each machine is a `provisioner vm run` child process in its own process group and its own
//! cgroup (named by the instance id under `cgroup_parent`), with its files in
//! `<state_dir>/vm/<id>/` (mode 0700): `config.json`, `serial.log` (and `serial.log.1`: capped, rotated), `vmm.log` (the VMM's own log),
//! `control.sock`, and `exit` (written by the VMM when it ends on purpose).
//!
//! `record.runtime` keeps the VMM's pid and its start time (from `/proc/<pid>/stat`, so a
//! reused pid is never mistaken for our VMM) and the host CPUs it was pinned to. The cgroup is
//! the second handle: a provisioner that died between spawning a VMM and recording its pid
//! finds it there on adoption.

use super::cgroup::{self, Limits};
use super::config::{CgroupPlacement, DiskConfig, NetConfig, SmpBoot, VmConfig};
use super::control;
use super::disk;
use super::shield::{Shield, ShieldError};
use crate::host;
use crate::hostnet::{self, MacAddr, Port};
use crate::runtime::{Runtime, Usage};
use crate::store::{InstanceRecord, InstanceStore, StoreError};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;
use vessel_core::admission::{HostCapacity, Refusal};
use vessel_core::{InstanceId, InstanceKind, InstanceState};

#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("refused by host admission: {0}")]
    Refused(Box<Refusal>),
    #[error("instance {0} is not a KVM machine")]
    WrongKind(InstanceId),
    #[error("OS image {template:?} for KVM: {reason}")]
    Image { template: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Shield(#[from] ShieldError),
    #[error("disk: {0}")]
    Disk(String),
    #[error("the VMM of {id} did not start: {reason}")]
    Start { id: InstanceId, reason: String },
    #[error("the VMM of {id} is not running")]
    NotRunning { id: InstanceId },
    #[error("the VMM of {id} refused {command:?}: {reply}")]
    Control { id: InstanceId, command: &'static str, reply: String },
    #[error("the VMM of {id} (pid {pid}) would not die")]
    Unkillable { id: InstanceId, pid: i32 },
    #[error(transparent)]
    NotSupported(#[from] crate::runtime::NotSupported),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VmError + '_ {
    move |source| VmError::Io { path: path.to_path_buf(), source }
}

/// The size of a rescue system's own disk (its root; the machine's disk comes second).
pub const RESCUE_DISK_BYTES: u64 = 64 << 20;

/// How an OS template boots as a KVM machine: `<images_dir>/<template>/image.json`, paths
/// relative to that directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub kernel: PathBuf,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub smp_boot: SmpBoot,
    /// The disk a new machine of this template gets (the plan's size).
    #[serde(default)]
    pub disk: DiskSource,
    /// The kernel configures the network itself from an `ip=` word the runtime appends
    /// (static address, gateway, netmask; the test kernel, which has no user space).
    #[serde(default)]
    pub kernel_ip: bool,
    /// The image configures itself on first boot with cloud-init: the runtime writes each
    /// machine a NoCloud seed (`seed.img`: hostname, SSH keys, root password hash, static
    /// address; see [`super::seed`]) before every start and attaches it read-only after the disk.
    #[serde(default)]
    pub cloud_init: bool,
    /// The kernel finds its virtio devices on the command line (`virtio_mmio.device=`: the test
    /// kernel, built without ACPI), not only in the ACPI tables (Debian's cloud kernel, which
    /// has no command-line devices).
    #[serde(default)]
    pub virtio_cmdline: bool,
}

/// Where a machine's disk comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskSource {
    /// No disk (the test guest).
    #[default]
    None,
    /// A blank disk: one partition, ext4 (`root=/dev/vda1`).
    BlankExt4,
    /// A copy (sparse) of this disk image, grown to the plan's size: the file only; the
    /// system in it grows its partition and filesystem at boot (cloud-init's growpart). In
    /// `image.json`, `{"image": "disk.raw"}` (relative to the image's directory).
    Image(PathBuf),
}

/// Host-side settings of the KVM runtime (paths are parameters so tests use scratch ones).
#[derive(Clone, Debug)]
pub struct KvmRuntimeConfig {
    pub state_dir: PathBuf,
    /// cgroup path (in each v1 hierarchy) under which every VMM gets its own group.
    pub cgroup_parent: String,
    /// The program to run as `<vmm_binary> vm run --config ...` (the provisioner itself).
    pub vmm_binary: PathBuf,
    pub images_dir: PathBuf,
    pub capacity: HostCapacity,
    /// Host CPUs that may be given exclusively to pinned machines (the daemon leaves out the
    /// cores reserved for the host).
    pub pinnable_cpus: Vec<usize>,
    /// The host-wide registry of pinned cores and the cpuset hierarchy it shields them in.
    pub shield: Shield,
    /// How long a pinned start waits for cores another machine is giving back.
    pub core_wait: Duration,
    /// How long a guest gets to power off cleanly before it is killed.
    pub stop_timeout: Duration,
    /// Memory the VMM itself may use on top of guest RAM (its cgroup limit is the sum).
    pub memory_overhead_mib: u64,
    /// Cap of each machine's serial log (rotated once: at most twice this on disk).
    pub serial_log_max_bytes: u64,
    /// The host bridge machines' TAP devices join (when the instance has an address).
    pub bridge: Option<String>,
}

impl KvmRuntimeConfig {
    /// Usual defaults for a host: every online CPU pinnable, 10 s to shut down, 64 MiB of
    /// VMM overhead allowed (it uses about 6; the rest covers page tables of large guests).
    pub fn new(state_dir: PathBuf, cgroup_parent: String, vmm_binary: PathBuf, images_dir: PathBuf, capacity: HostCapacity) -> Self {
        let cpus = super::shield::online_cpus();
        KvmRuntimeConfig {
            state_dir,
            cgroup_parent,
            vmm_binary,
            images_dir,
            capacity,
            pinnable_cpus: (0..cpus).collect(),
            shield: Shield::host_default(),
            core_wait: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(10),
            memory_overhead_mib: 64,
            serial_log_max_bytes: super::config::DEFAULT_SERIAL_LOG_MAX_BYTES,
            bridge: None,
        }
    }
}

/// What the runtime records of a machine in `record.runtime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmFacts {
    #[serde(default)]
    pub pid: Option<i32>,
    /// Clock ticks after boot at which `pid` started (field 22 of `/proc/<pid>/stat`).
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub pinned_cpus: Vec<usize>,
}

impl VmFacts {
    fn of(record: &InstanceRecord) -> Self {
        serde_json::from_value(record.runtime.clone()).unwrap_or_default()
    }
    fn store_in(&self, record: &mut InstanceRecord) {
        record.runtime = serde_json::to_value(self).expect("facts always serialise");
    }
}

/// Start time and state letter of a live process, from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Reaps `pid` if it is a child of ours that has exited (no-op otherwise).
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a specific pid only reaps that child, if it is ours.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Is the VMM recorded in `facts` still running (and really ours)?
pub fn vmm_alive(facts: &VmFacts) -> bool {
    let (Some(pid), Some(start)) = (facts.pid, facts.start_time) else { return false };
    reap(pid);
    matches!(proc_stat(pid), Some((s, state)) if s == start && state != 'Z' && state != 'X')
}

/// Dedicated KVM machines.
pub struct KvmRuntime {
    cfg: KvmRuntimeConfig,
    store: InstanceStore,
}

impl KvmRuntime {
    pub fn new(cfg: KvmRuntimeConfig, store: InstanceStore) -> Self {
        KvmRuntime { cfg, store }
    }

    pub fn dir(&self, id: &InstanceId) -> PathBuf {
        self.cfg.state_dir.join("vm").join(id.to_string())
    }

    /// Makes the machine's directory (and `<state_dir>/vm`) readable by the provisioner only
    /// (0700): serial logs, the control socket and later disk images are nobody else's.
    fn make_dir(&self, id: &InstanceId) -> Result<PathBuf, VmError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = self.dir(id);
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
        for d in [self.cfg.state_dir.join("vm"), dir.clone()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(io(&d))?;
        }
        Ok(dir)
    }
    pub fn serial_log(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("serial.log")
    }
    /// The machine's disk image (virtio-blk).
    pub fn disk(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("disk.raw")
    }
    /// The rescue system's own small disk (blank ext4, made afresh on every rescue boot): the
    /// rescue kernel's root, so the machine's disk comes second (`vdb`) and untouched.
    pub fn rescue_disk(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("rescue.raw")
    }
    /// The machine's TAP device: `vt` + 12 hex digits of its id (15 characters at most).
    pub fn tap_name(id: &InstanceId) -> String {
        format!("vt{}", &id.0.simple().to_string()[..12])
    }

    /// Makes the machine's TAP on the bridge and puts the host-side guards on it (issue 11's
    /// `hostnet`: anti-spoofing for its MAC and addresses, both rate limits of the plan).
    fn make_tap(&self, record: &InstanceRecord, bridge: &str) -> Result<NetConfig, VmError> {
        let id = record.spec.id;
        let tap = Self::tap_name(&id);
        // The same bridge and gateway addresses as containers (one host network).
        let fail = |e: crate::container::ContainerError| VmError::Start { id, reason: e.to_string() };
        crate::container::net::ensure_bridge(bridge).map_err(fail)?;
        crate::container::net::ensure_gateways(bridge, &record.spec.network).map_err(fail)?;
        let ip = |args: &[&str]| -> Result<(), VmError> {
            let out = Command::new("ip").args(args).output().map_err(io(Path::new("ip")))?;
            if !out.status.success() {
                return Err(VmError::Start {
                    id,
                    reason: format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
                });
            }
            Ok(())
        };
        // Looked up in this thread's network namespace (not /sys/class/net, which shows the one
        // /sys was mounted in: a daemon in a namespace found no TAP, re-added it and failed).
        if !crate::container::net::link_exists(&tap) {
            ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        }
        ip(&["link", "set", &tap, "master", bridge])?;
        ip(&["link", "set", &tap, "up"])?;
        let mac = MacAddr::for_instance(&id);
        let rate = record.spec.resources.net_rate_mbit();
        let port = Port {
            ifname: tap.clone(),
            mac,
            ipv4: record.spec.network.ipv4.as_ref().map(|a| a.address),
            ipv6: record.spec.network.ipv6.as_ref().map(|a| a.address),
            from_guest_mbit: rate,
            to_guest_mbit: rate,
            masquerade_outside: record.spec.network.ipv4.as_ref().and_then(|a| a.masquerade_outside()),
            firewall: record.spec.firewall.clone(),
        };
        hostnet::protect(&port).map_err(|e| VmError::Start { id, reason: e.to_string() })?;
        Ok(NetConfig { tap, mac: mac.0 })
    }

    /// Makes the machine's disk from its image (replacing any there): made under a temporary
    /// name and renamed into place, so a crash midway leaves the old disk or the new one,
    /// never half of either.
    fn make_disk(&self, record: &InstanceRecord, image: &ImageSpec) -> Result<(), VmError> {
        let disk = self.disk(&record.spec.id);
        match &image.disk {
            DiskSource::None => {
                let _ = fs::remove_file(&disk);
            }
            DiskSource::BlankExt4 => {
                let tmp = disk.with_extension("raw.new");
                disk::make_ext4(&tmp, record.spec.resources.disk_gib() << 30, "vessel-root").map_err(|e| VmError::Disk(e.to_string()))?;
                fs::rename(&tmp, &disk).map_err(io(&disk))?;
            }
            DiskSource::Image(source) => {
                let want = record.spec.resources.disk_gib() << 30;
                let have = fs::metadata(source).map_err(io(source))?.len();
                if have > want {
                    return Err(VmError::Disk(format!("the image's disk ({have} bytes) is larger than the plan's ({want} bytes)")));
                }
                let tmp = disk.with_extension("raw.new");
                crate::container::disk::copy_sparse(source, &tmp).map_err(|e| VmError::Disk(e.to_string()))?;
                disk::grow(&tmp, want).map_err(|e| VmError::Disk(e.to_string()))?;
                fs::rename(&tmp, &disk).map_err(io(&disk))?;
            }
        }
        Ok(())
    }

    /// Removes the machine's TAP and its guards (absent is fine).
    fn remove_tap(&self, id: &InstanceId) {
        let tap = Self::tap_name(id);
        let _ = hostnet::unprotect(&tap);
        if crate::container::net::link_exists(&tap) {
            let _ = Command::new("ip").args(["link", "del", &tap]).status();
        }
    }

    /// The machine's NoCloud seed (read-only second disk of a cloud-init image).
    pub fn seed(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("seed.img")
    }

    /// (Re)writes the machine's seed from its spec as it is now (hostname, access, address;
    /// the card's MAC is the one [`Self::make_tap`] gives it). Returns its path.
    pub fn write_seed(&self, record: &InstanceRecord) -> Result<PathBuf, VmError> {
        let path = self.seed(&record.spec.id);
        super::seed::Seed::for_instance(&record.spec, MacAddr::for_instance(&record.spec.id))
            .write_image(&path)
            .map_err(|e| VmError::Disk(format!("seed: {e}")))?;
        Ok(path)
    }

    fn socket(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("control.sock")
    }
    fn exit_file(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("exit")
    }

    fn image(&self, template: &str) -> Result<ImageSpec, VmError> {
        let bad = |reason: String| VmError::Image { template: template.into(), reason };
        if template.is_empty() || template.contains('/') || template.starts_with('.') {
            return Err(bad("not a template name".into()));
        }
        let dir = self.cfg.images_dir.join(template);
        let path = dir.join("image.json");
        let bytes = fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut spec: ImageSpec = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        spec.kernel = dir.join(&spec.kernel);
        spec.initrd = spec.initrd.map(|i| dir.join(i));
        if let DiskSource::Image(p) = &mut spec.disk {
            *p = dir.join(&*p);
            if !p.is_file() {
                return Err(bad(format!("disk image {} is missing", p.display())));
            }
        }
        if !spec.kernel.is_file() {
            return Err(bad(format!("kernel {} is missing", spec.kernel.display())));
        }
        Ok(spec)
    }

    fn check_kind(record: &InstanceRecord) -> Result<(), VmError> {
        if record.spec.kind() != InstanceKind::Kvm {
            return Err(VmError::WrongKind(record.spec.id));
        }
        Ok(())
    }

    /// The cgroup path of a machine (how the shield's registry names its holder).
    fn holder(&self, id: &InstanceId) -> String {
        cgroup::path_of(&self.cfg.cgroup_parent, &id.to_string())
    }

    /// `needed` cores of its own for a pinned machine, claimed host-wide.
    fn free_cores(&self, me: &InstanceId, needed: usize) -> Result<Vec<usize>, VmError> {
        Ok(self.cfg.shield.claim(&self.holder(me), &self.cfg.pinnable_cpus, needed, self.cfg.core_wait)?)
    }

    /// Where floating machines may run: every online core no pinned machine on the host
    /// holds (all of them in the corner case where pinned machines hold every core, which
    /// admission and the host's reserved cores prevent).
    fn floating_cores(&self) -> Result<Vec<usize>, VmError> {
        let pinned = self.cfg.shield.pinned()?;
        let cpus = super::shield::online_cpus();
        let free: Vec<usize> = (0..cpus).filter(|c| !pinned.contains(c)).collect();
        Ok(if free.is_empty() { (0..cpus).collect() } else { free })
    }

    /// After a pinned machine starts or stops: its cores are taken from (or given back to)
    /// every other task and cgroup on the host, this runtime's floating machines included.
    fn rebalance_floating(&self) -> Result<(), VmError> {
        self.cfg.shield.apply()?;
        let cores = self.floating_cores()?;
        for r in self.store.list()? {
            let f = VmFacts::of(&r);
            if r.spec.kind() == InstanceKind::Kvm && !r.spec.resources.is_pinned() && vmm_alive(&f) {
                self.cfg.shield.widen_parent(&self.cfg.cgroup_parent, &cores);
                cgroup::set_cpus(&self.cfg.cgroup_parent, &r.spec.id.to_string(), &cores)?;
            }
        }
        Ok(())
    }

    fn control(&self, record: &InstanceRecord, command: &'static str) -> Result<String, VmError> {
        let id = record.spec.id;
        if !vmm_alive(&VmFacts::of(record)) {
            return Err(VmError::NotRunning { id });
        }
        let reply = control::request(&self.socket(&id), command, Duration::from_secs(10)).map_err(|e| VmError::Control {
            id,
            command,
            reply: e.to_string(),
        })?;
        if !reply.starts_with("ok") {
            return Err(VmError::Control { id, command, reply });
        }
        Ok(reply)
    }

    /// Waits until the VMM is gone, at most `timeout`.
    fn wait_gone(facts: &VmFacts, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while vmm_alive(facts) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn kill(&self, record: &InstanceRecord) -> Result<(), VmError> {
        let facts = VmFacts::of(record);
        if let Some(pid) = facts.pid.filter(|_| vmm_alive(&facts)) {
            // SAFETY: kill(2) on a pid whose start time we just checked is our VMM.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if !Self::wait_gone(&facts, Duration::from_secs(10)) {
                return Err(VmError::Unkillable { id: record.spec.id, pid });
            }
        }
        Ok(())
    }

    /// Removes what a dead VMM leaves behind (its cgroup, its socket). The kernel may take a
    /// moment to let go of an emptied cgroup, hence the few retries.
    fn clean_dead(&self, id: &InstanceId) -> Result<(), VmError> {
        let _ = fs::remove_file(self.socket(id));
        self.remove_tap(id);
        self.cfg.shield.release(&self.holder(id))?;
        let mut tries = 0;
        loop {
            match cgroup::remove(&self.cfg.cgroup_parent, &id.to_string()) {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 50 => return Err(e.into()),
                Err(_) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// After a provisioner restart: finds each machine's VMM (by its recorded pid, or by its
    /// cgroup if the pid was never recorded), cleans up after dead ones, and records what
    /// each instance is now. Returns the states found.
    pub fn adopt(&self) -> Result<Vec<(InstanceId, InstanceState)>, VmError> {
        let mut out = Vec::new();
        for mut r in self.store.list()? {
            if r.spec.kind() != InstanceKind::Kvm {
                continue;
            }
            let mut facts = VmFacts::of(&r);
            if !vmm_alive(&facts) {
                // A VMM spawned but never recorded is still in its cgroup.
                let procs = cgroup::procs(&self.cfg.cgroup_parent, &r.spec.id.to_string());
                if let Some(pid) = procs.first().map(|p| *p as i32) {
                    facts.pid = Some(pid);
                    facts.start_time = proc_stat(pid).map(|(s, _)| s);
                    facts.store_in(&mut r);
                }
            }
            let state = self.observe(&r)?;
            if !vmm_alive(&facts) {
                self.clean_dead(&r.spec.id)?;
                facts.pid = None;
                facts.start_time = None;
                facts.pinned_cpus.clear();
                facts.store_in(&mut r);
            }
            if matches!(r.state, InstanceState::Creating | InstanceState::Destroying) {
                // Unfinished create/destroy: the caller finishes or rolls back from `pending`.
            } else {
                r.state = state;
            }
            self.store.put(&r)?;
            out.push((r.spec.id, r.state));
        }
        // Cores of machines that died while nobody watched go back; live ones stay shielded.
        self.rebalance_floating()?;
        Ok(out)
    }
}

impl Runtime for KvmRuntime {
    type Error = VmError;

    /// Checks host admission (counting every other instance on the host) and the OS image,
    /// and makes the machine's directory. Nothing runs yet; guest RAM is taken at start.
    fn create(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let records = self.store.list()?;
        host::check(&self.cfg.capacity, &records, &record.spec.resources, Some(record.spec.id))
            .map_err(|r| VmError::Refused(Box::new(r)))?;
        let image = self.image(&record.spec.template)?;
        self.make_dir(&record.spec.id)?;
        if !self.disk(&record.spec.id).exists() {
            self.make_disk(record, &image)?;
        }
        if !matches!(record.state, InstanceState::Running | InstanceState::Suspended) {
            record.state = InstanceState::Stopped;
        }
        Ok(())
    }

    fn check_template(&self, template: &str) -> Result<(), VmError> {
        self.image(template).map(|_| ())
    }

    fn check_resize(&self, current: &vessel_core::PlanResources, new: &vessel_core::PlanResources) -> Result<(), VmError> {
        let (from, to) = (current.disk_gib(), new.disk_gib());
        if to < from {
            return Err(VmError::Disk(format!("a disk is never shrunk ({from} GiB to {to} GiB)")));
        }
        Ok(())
    }

    /// A fresh disk from the (new) template, replacing the old one in one rename; the same
    /// identity, address and TAP. If the new disk cannot be made, the machine is back on its
    /// previous template and disk (running again if it should run); a failure after that
    /// leaves `pending` set for the next request or a restart to finish (making the disk again
    /// is harmless).
    fn reinstall(&self, record: &mut InstanceRecord, previous_template: &str) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let image = self.image(&record.spec.template)?;
        self.stop(record)?;
        if let Err(e) = self.make_disk(record, &image) {
            tracing::warn!(id = %record.spec.id, error = %e, "reinstall failed: keeping the previous template and disk");
            record.spec.template = previous_template.to_string();
            record.pending = None;
            if record.should_run {
                self.start(record)?;
            }
            return Err(e);
        }
        self.create(record)?;
        if image.cloud_init {
            self.write_seed(record)?;
        }
        if record.should_run {
            self.start(record)?;
        }
        Ok(())
    }

    /// Stopped, re-admitted with the new resources, the disk grown to the plan's size (its
    /// partition and filesystem too when the template's disk is our blank ext4; an image
    /// whose system grows its own root at boot gets the larger disk only), started again if
    /// it should run. Never shrinks: [`Runtime::check_resize`] refused that before.
    fn resize(&self, record: &mut InstanceRecord, _previous: &vessel_core::PlanResources) -> Result<(), VmError> {
        Self::check_kind(record)?;
        self.stop(record)?;
        self.create(record)?;
        let disk_path = self.disk(&record.spec.id);
        let want = record.spec.resources.disk_gib() << 30;
        let have = fs::metadata(&disk_path).map(|m| m.len()).unwrap_or(0);
        if disk_path.exists() && have < want {
            let grown = match self.image(&record.spec.template)?.disk {
                DiskSource::BlankExt4 => disk::grow_ext4(&disk_path, want),
                DiskSource::None | DiskSource::Image(_) => disk::grow(&disk_path, want),
            };
            grown.map_err(|e| VmError::Disk(e.to_string()))?;
        }
        if record.should_run {
            self.start(record)?;
        }
        Ok(())
    }

    fn start(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let id = record.spec.id;
        let mut facts = VmFacts::of(record);
        if vmm_alive(&facts) {
            return Ok(());
        }
        let res = &record.spec.resources;
        // In rescue: the rescue image (see `vessel_core::templates::RESCUE_KVM`) on a fresh
        // disk of its own, the machine's disk behind it.
        let image = match record.rescue {
            Some(_) => self.image(vessel_core::templates::RESCUE_KVM)?,
            None => self.image(&record.spec.template)?,
        };
        let dir = self.make_dir(&id)?;
        self.clean_dead(&id)?;

        let vcpus = res.vcpus() as usize;
        let pin = if res.is_pinned() { Some(self.free_cores(&id, vcpus)?) } else { None };
        let limits = Limits {
            memory_bytes: (res.memory_burst_mib() + self.cfg.memory_overhead_mib) << 20,
            cpus: match &pin {
                Some(p) => p.clone(),
                None => self.floating_cores()?,
            },
            // Floating: weight proportional to the guaranteed share v / ρc (1024 per core).
            cpu_shares: pin.is_none().then(|| (res.vcpus() as u64 * 1024 * 1000) / res.cpu_ratio().milli() as u64),
        };
        self.cfg.shield.widen_parent(&self.cfg.cgroup_parent, &limits.cpus);
        cgroup::create(&self.cfg.cgroup_parent, &id.to_string(), &limits)?;

        let disk_path = self.disk(&id);
        let own_disk = disk_path.exists().then(|| DiskConfig { path: disk_path, io: res.io_limits().into() });
        let (disk, more_disks) = match record.rescue {
            Some(_) => {
                let rescue = self.rescue_disk(&id);
                disk::make_ext4(&rescue, RESCUE_DISK_BYTES, "vessel-rescue").map_err(|e| VmError::Disk(e.to_string()))?;
                (Some(DiskConfig { path: rescue, io: res.io_limits().into() }), own_disk.into_iter().collect())
            }
            None => {
                let _ = fs::remove_file(self.rescue_disk(&id));
                (own_disk, Vec::new())
            }
        };
        let net = match (&self.cfg.bridge, &record.spec.network.ipv4) {
            (Some(bridge), Some(_)) => Some(self.make_tap(record, bridge)?),
            _ => None,
        };
        let seed = if image.cloud_init { Some(self.write_seed(record)?) } else { None };
        let mut cmdline = image.cmdline;
        if let (true, Some(a)) = (image.kernel_ip, &record.spec.network.ipv4) {
            let mask = std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - a.prefix_len as u32).unwrap_or(0));
            cmdline.push_str(&format!(" ip={}::{}:{mask}::eth0:off", a.address, a.gateway));
        }
        let config = VmConfig {
            name: id.to_string(),
            vcpus: u8::try_from(vcpus).unwrap_or(u8::MAX),
            memory_mib: res.memory_burst_mib(),
            kernel: image.kernel,
            cmdline,
            initrd: image.initrd,
            huge_pages: false,
            smp_boot: image.smp_boot,
            pin_cpus: pin.clone().unwrap_or_default(),
            serial_log: self.serial_log(&id),
            serial_log_max_bytes: self.cfg.serial_log_max_bytes,
            serial_stdout: false,
            control_socket: Some(self.socket(&id)),
            exit_file: Some(self.exit_file(&id)),
            cgroup: Some(CgroupPlacement { parent: self.cfg.cgroup_parent.clone(), name: id.to_string() }),
            disk,
            more_disks,
            seed,
            net,
            rng: true,
            virtio_cmdline: image.virtio_cmdline,
            seccomp: true,
        };
        config.validate().map_err(|e| VmError::Start { id, reason: e.to_string() })?;
        let config_path = dir.join("config.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("configs serialise")).map_err(io(&config_path))?;
        let _ = fs::remove_file(self.exit_file(&id));
        let log_path = dir.join("vmm.log");
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;

        let child = Command::new(&self.cfg.vmm_binary)
            .args(["vm", "run", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a signal to the provisioner's group does not reach it.
            .process_group(0)
            .spawn()
            .map_err(io(&self.cfg.vmm_binary))?;
        let pid = child.id() as i32;
        facts.pid = Some(pid);
        facts.start_time = proc_stat(pid).map(|(s, _)| s);
        facts.pinned_cpus = pin.unwrap_or_default();
        facts.store_in(record);
        record.state = InstanceState::Running;
        self.store.put(record)?;

        if !facts.pinned_cpus.is_empty() {
            self.rebalance_floating()?;
        }
        // Ready when the control socket answers (guest RAM is allocated and locked by then).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if control::request(&self.socket(&id), "status", Duration::from_secs(2)).is_ok_and(|r| r.starts_with("ok")) {
                return Ok(());
            }
            if !vmm_alive(&facts) {
                let exit = fs::read_to_string(self.exit_file(&id)).unwrap_or_default();
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(VmError::Start { id, reason: format!("{} {}", exit.trim(), tail) });
            }
            if Instant::now() > deadline {
                return Err(VmError::Start { id, reason: "no answer on the control socket within 30 s".into() });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asks the guest to power off (Ctrl-Alt-Del on the i8042), kills the VMM after the
    /// timeout, and cleans up its cgroup.
    fn stop(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let id = record.spec.id;
        let mut facts = VmFacts::of(record);
        if vmm_alive(&facts) {
            // A paused guest cannot react to the request.
            let _ = self.control(record, "resume");
            let asked = self.control(record, "shutdown").is_ok();
            if !asked || !Self::wait_gone(&facts, self.cfg.stop_timeout) {
                tracing::warn!(%id, "guest did not power off in time: killing its VMM");
                self.kill(record)?;
            }
        }
        self.clean_dead(&id)?;
        let was_pinned = !facts.pinned_cpus.is_empty();
        facts = VmFacts::default();
        facts.store_in(record);
        record.state = InstanceState::Stopped;
        if was_pinned {
            // Its cores go back to the floating machines.
            self.rebalance_floating()?;
        }
        Ok(())
    }

    fn suspend(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        self.control(record, "pause")?;
        record.state = InstanceState::Suspended;
        Ok(())
    }

    fn resume(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        self.control(record, "resume")?;
        record.state = InstanceState::Running;
        Ok(())
    }

    fn destroy(&self, record: &mut InstanceRecord) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let id = record.spec.id;
        let was_pinned = !VmFacts::of(record).pinned_cpus.is_empty();
        self.kill(record)?;
        self.clean_dead(&id)?;
        if was_pinned {
            self.rebalance_floating()?;
        }
        let dir = self.dir(&id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VmError::Io { path: dir, source: e }),
        }
        VmFacts::default().store_in(record);
        record.state = InstanceState::Stopped;
        Ok(())
    }

    /// Running or Suspended while the VMM lives (it says which); once it is gone, Stopped if
    /// it ended on purpose (guest power-off or reset, or our stop) and Crashed otherwise.
    fn observe(&self, record: &InstanceRecord) -> Result<InstanceState, VmError> {
        Self::check_kind(record)?;
        let id = record.spec.id;
        let facts = VmFacts::of(record);
        if vmm_alive(&facts) {
            let reply = control::request(&self.socket(&id), "status", Duration::from_secs(2)).unwrap_or_default();
            return Ok(if reply == "ok paused" { InstanceState::Suspended } else { InstanceState::Running });
        }
        if facts.pid.is_none() {
            // Never started, or stopped by us; a crash found earlier stays a crash.
            return Ok(match record.state {
                InstanceState::Crashed => InstanceState::Crashed,
                InstanceState::Creating | InstanceState::Destroying => record.state,
                _ => InstanceState::Stopped,
            });
        }
        let exit = fs::read_to_string(self.exit_file(&id)).unwrap_or_default();
        Ok(match exit.trim() {
            "poweroff" | "reset" => InstanceState::Stopped,
            _ => InstanceState::Crashed,
        })
    }

    /// Root's password on a KVM machine is set **offline**: the machine is stopped (graceful,
    /// then forced), the hash written into `/etc/shadow` of its disk's first partition from
    /// the host with debugfs (see [`disk::set_root_password`]: never mounted on the host),
    /// and the machine started again. So a KVM reset restarts the machine. A machine without
    /// a disk has nothing to write to.
    fn reset_password(&self, record: &mut InstanceRecord, hash: &vessel_core::PasswordHash) -> Result<(), VmError> {
        Self::check_kind(record)?;
        let id = record.spec.id;
        let image = self.disk(&id);
        if !image.exists() {
            return Err(crate::runtime::NotSupported {
                op: "reset_password (the machine has no disk)",
                kind: vessel_core::InstanceKind::Kvm,
            }
            .into());
        }
        let was_running = vmm_alive(&VmFacts::of(record));
        if was_running {
            self.stop(record)?;
        }
        let written = disk::set_root_password(&image, disk::PARTITION_OFFSET, hash.as_str(), crate::container::access::shadow_with)
            .map_err(|e| VmError::Disk(e.to_string()));
        // A cloud-init image's seed carries the new hash too (a reinstall's first boot reads it).
        if written.is_ok() && self.image(&record.spec.template).is_ok_and(|i| i.cloud_init) {
            record.spec.access.root_password_hash = Some(hash.clone());
            self.write_seed(record)?;
        }
        // Running again whatever the write did: a failed reset must not leave it down.
        if was_running || record.should_run {
            self.start(record)?;
        }
        written
    }

    fn port_name(&self, record: &InstanceRecord) -> String {
        Self::tap_name(&record.spec.id)
    }

    /// Any machine can, where the host has the rescue image.
    fn check_rescue(&self, _record: &InstanceRecord) -> Result<(), VmError> {
        self.image(vessel_core::templates::RESCUE_KVM).map(|_| ())
    }

    /// The serial console: the log followed from its last few KiB, input through the
    /// control socket. Only a running (or paused) VMM has one.
    fn console(&self, record: &InstanceRecord) -> Result<crate::runtime::Console, VmError> {
        let id = record.spec.id;
        let facts = VmFacts::of(record);
        if !vmm_alive(&facts) {
            return Err(VmError::NotRunning { id });
        }
        let log = self.serial_log(&id);
        let (output, input) = super::console::SerialFollower::open(log.clone(), facts, self.socket(&id)).map_err(io(&log))?;
        Ok(crate::runtime::Console { output: Box::new(output), input: Box::new(input) })
    }

    fn usage(&self, record: &InstanceRecord) -> Result<Usage, VmError> {
        Self::check_kind(record)?;
        let (cpu_time_ns, memory_bytes, memory_peak_bytes) =
            cgroup::usage(&self.cfg.cgroup_parent, &record.spec.id.to_string()).unwrap_or_default();
        Ok(Usage { cpu_time_ns, memory_bytes, memory_peak_bytes, ..Default::default() })
    }
}

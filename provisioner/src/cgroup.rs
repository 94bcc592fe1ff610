//! One instance's control group, on cgroup v1 or v2, chosen once at start-up.
//!
//! The controllers come from cgroups-rs, built directly on explicit directories (never from
//! `/proc/self/mountinfo`), so the mount root and the parent group are parameters: tests use a
//! scratch parent, and the KVM helper can reuse the same code for its VMM processes.
//!
//! Layout: v1 → `<mount_root>/<controller>/<parent>/<name>` for each controller we use;
//! v2 → `<mount_root>/<parent>/<name>`.

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::devices::{DevicePermissions, DeviceType, DevicesController};
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};
use cgroups_rs::FreezerState;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup {what}: {source}")]
    Kernel { what: String, source: cgroups_rs::fs::error::Error },
    #[error("cgroup file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cgroup {path} still has processes after {secs}s")]
    Busy { path: PathBuf, secs: u64 },
    #[error("registry of pinned cores: {0}")]
    Shield(#[from] crate::vm::shield::ShieldError),
    #[error("every CPU this group may use ({allowed:?}) is held by a dedicated machine: no shared core for the container")]
    AllPinned { allowed: Vec<usize> },
}

fn kernel(what: impl Into<String>) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError {
    let what = what.into();
    move |source| CgroupError::Kernel { what, source }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The v1 controllers an instance group spans (cpuacct for CPU time; cpuset for the CPUs its
/// vCPUs are spread over, which is what `nproc` and LXCFS's /proc/cpuinfo show inside).
const V1_CONTROLLERS: [&str; 8] = ["memory", "cpu", "cpuacct", "pids", "blkio", "freezer", "devices", "cpuset"];

/// Where instance groups live: the cgroup mount root, the version, and our parent group.
#[derive(Clone, Debug)]
pub struct CgroupLayout {
    pub version: CgroupVersion,
    /// `/sys/fs/cgroup` on a normal host.
    pub mount_root: PathBuf,
    /// Relative parent of every instance group, e.g. `vessel`.
    pub parent: PathBuf,
    /// On a v1 host, the host's cgroup2 hierarchy (`<mount_root>/unified`, systemd's hybrid
    /// layout) if it has one: each instance also gets a group there, with no controllers (the
    /// limits stay v1's), which is the tree a container's own systemd manages (see
    /// [`InstanceCgroup::tree_dir`]). `None` on v2, where the instance group is that tree.
    pub unified: Option<PathBuf>,
}

impl CgroupLayout {
    /// v2 when `mount_root` is a unified hierarchy (it has `cgroup.controllers` with a memory
    /// controller), v1 otherwise. Decided once, at start-up.
    pub fn detect(mount_root: &Path, parent: impl Into<PathBuf>) -> Self {
        let v2 =
            fs::read_to_string(mount_root.join("cgroup.controllers")).map(|s| s.split_whitespace().any(|c| c == "memory")).unwrap_or(false);
        let version = if v2 { CgroupVersion::V2 } else { CgroupVersion::V1 };
        let unified = (version == CgroupVersion::V1).then(|| mount_root.join("unified")).filter(|u| u.join("cgroup.procs").exists());
        Self { version, mount_root: mount_root.to_path_buf(), parent: parent.into(), unified }
    }

    pub fn group(&self, name: &str) -> InstanceCgroup {
        InstanceCgroup { layout: self.clone(), rel: self.parent.join(name) }
    }

    /// Directory of `controller` for the relative group `rel` (v2 ignores the controller).
    fn dir(&self, controller: &str, rel: &Path) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => self.mount_root.join(controller).join(rel),
            CgroupVersion::V2 => self.mount_root.join(rel),
        }
    }

    /// Names of the groups under our parent, across all controllers (for the orphan sweep).
    pub fn children(&self) -> Vec<String> {
        let controllers: &[&str] = match self.version {
            CgroupVersion::V1 => &V1_CONTROLLERS,
            CgroupVersion::V2 => &[""],
        };
        let mut names: Vec<String> = Vec::new();
        let unified = self.unified.as_ref().map(|u| u.join(&self.parent));
        let dirs = controllers.iter().map(|c| self.dir(c, &self.parent)).chain(unified);
        for d in dirs {
            if let Ok(rd) = fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        names.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Removes our (empty) parent group; used by tests and by an admin retiring a layout.
    pub fn remove_parent(&self) {
        let controllers: &[&str] = match self.version {
            CgroupVersion::V1 => &V1_CONTROLLERS,
            CgroupVersion::V2 => &[""],
        };
        for c in controllers {
            let _ = fs::remove_dir(self.dir(c, &self.parent));
        }
        if let Some(u) = &self.unified {
            let _ = fs::remove_dir(u.join(&self.parent));
        }
    }

    /// On v2 the parent must delegate the controllers to its children.
    fn prepare_parent(&self) -> Result<(), CgroupError> {
        let mut rel = PathBuf::new();
        let mut chain = vec![self.mount_root.clone()];
        for comp in self.parent.components() {
            rel.push(comp);
            chain.push(self.mount_root.join(&rel));
        }
        match self.version {
            CgroupVersion::V1 => {
                for c in V1_CONTROLLERS {
                    let d = self.dir(c, &self.parent);
                    fs::create_dir_all(&d).map_err(|source| CgroupError::Io { path: d, source })?;
                }
            }
            CgroupVersion::V2 => {
                for dir in chain {
                    fs::create_dir_all(&dir).map_err(|source| CgroupError::Io { path: dir.clone(), source })?;
                    let f = dir.join("cgroup.subtree_control");
                    // Best effort per controller: a host may lack one (reported on apply).
                    for c in ["+memory", "+cpu", "+pids", "+io", "+cpuset"] {
                        let _ = fs::write(&f, c);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What one instance's group is told (see resource-model.md, "Enforcement on the host").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Burst ceiling `b`: the hard limit.
    pub memory_max: u64,
    /// Swap `s` on top of the ceiling.
    pub swap: u64,
    /// Guarantee `g`: soft limit (v1) / memory.low (v2).
    pub memory_low: u64,
    /// cpu.shares (v1 scale, 2..=262144), proportional to `v / ρc`.
    pub cpu_shares: u64,
    /// CPU ceiling as quota per period, in µs.
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    /// Short bursts over the ceiling, where the kernel supports it.
    pub cpu_burst_us: u64,
    pub pids_max: u64,
    /// 10..=1000.
    pub io_weight: u64,
    /// The plan's vCPUs: how many host CPUs the group's cpuset spans (all when the host has
    /// no more), chosen where the fewest sibling groups are. The quota above is the limit;
    /// this makes `nproc` (the affinity) and /proc/cpuinfo (LXCFS reads the cpuset) say it.
    pub vcpus: u32,
    /// Restrict devices to the usual harmless character devices (v1 devices controller).
    pub restrict_devices: bool,
}

impl Limits {
    /// The kernel's view of a container plan.
    pub fn for_plan(r: &vessel_core::PlanResources) -> Self {
        const MIB: u64 = 1024 * 1024;
        let period = 100_000u64;
        // shares = 1024 × v / ρc (ρc in thousandths), so a 2-vCPU plan at 4.0 weighs 512.
        let shares = (1024 * u64::from(r.vcpus()) * 1000 / u64::from(r.cpu_ratio().milli())).clamp(2, 262_144);
        let quota = period * u64::from(r.vcpus());
        Limits {
            memory_max: r.memory_burst_mib() * MIB,
            swap: r.swap_mib() * MIB,
            memory_low: r.memory_guaranteed_mib() * MIB,
            cpu_shares: shares,
            cpu_quota_us: quota,
            cpu_period_us: period,
            cpu_burst_us: quota,
            pids_max: u64::from(r.pids_max()),
            io_weight: u64::from(r.io_weight()).clamp(10, 1000),
            restrict_devices: true,
            vcpus: r.vcpus(),
        }
    }
}

/// What `apply` could not enforce on this kernel (printed loudly by the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsupported(pub Vec<String>);

/// One instance's group across controllers.
#[derive(Clone, Debug)]
pub struct InstanceCgroup {
    layout: CgroupLayout,
    rel: PathBuf,
}

/// Character devices a container may use: null, zero, full, random, urandom, tty, console,
/// ptmx, and its own pseudo-terminals.
const ALLOWED_DEVICES: [(i64, i64); 8] = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)];
const PTS_MAJOR: i64 = 136;

impl InstanceCgroup {
    fn v2(&self) -> bool {
        self.layout.version == CgroupVersion::V2
    }
    fn dir(&self, c: &str) -> PathBuf {
        self.layout.dir(c, &self.rel)
    }
    fn mem(&self) -> MemController {
        MemController::new(self.dir("memory"), PathBuf::new(), self.v2())
    }
    fn cpu(&self) -> CpuController {
        CpuController::new(self.dir("cpu"), PathBuf::new(), self.v2())
    }
    fn pids(&self) -> PidController {
        PidController::new(self.dir("pids"), PathBuf::new(), self.v2())
    }
    fn freezer(&self) -> FreezerController {
        FreezerController::new(self.dir("freezer"), PathBuf::new(), self.v2())
    }
    fn devices(&self) -> DevicesController {
        DevicesController::new(self.dir("devices"), PathBuf::new())
    }

    /// Every directory this group occupies (one on v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.layout.version {
            CgroupVersion::V1 => V1_CONTROLLERS.iter().map(|c| self.dir(c)).collect(),
            CgroupVersion::V2 => vec![self.dir("")],
        }
    }

    pub fn exists(&self) -> bool {
        self.dirs().iter().chain(self.unified_dir().as_ref()).any(|d| d.exists())
    }

    /// The instance's group in the host's cgroup2 hierarchy on a v1 host (see
    /// [`CgroupLayout::unified`]).
    fn unified_dir(&self) -> Option<PathBuf> {
        self.layout.unified.as_ref().map(|u| u.join(&self.rel))
    }

    /// The cgroup2 group a container's systemd manages as its whole tree (mounted at its
    /// /sys/fs/cgroup, rooted there by its cgroup namespace): the instance group on v2; on a
    /// v1 host its group in the host's cgroup2 hierarchy, if there is one.
    pub fn tree_dir(&self) -> Option<PathBuf> {
        match self.layout.version {
            CgroupVersion::V2 => Some(self.dir("")),
            CgroupVersion::V1 => self.unified_dir(),
        }
    }

    /// Creates the group (idempotent).
    pub fn create(&self) -> Result<(), CgroupError> {
        self.layout.prepare_parent()?;
        for d in self.dirs().into_iter().chain(self.unified_dir()) {
            fs::create_dir_all(&d).map_err(|source| CgroupError::Io { path: d.clone(), source })?;
        }
        if !self.v2() {
            // A new v1 cpuset group starts with no CPUs and no memory nodes, and nothing can
            // join it until it has both: take the parent's, down the chain from the root.
            let root = self.layout.mount_root.join("cpuset");
            let mut d = root.clone();
            for comp in self.rel.components() {
                let parent = d.clone();
                d.push(comp);
                for f in ["cpuset.mems", "cpuset.cpus"] {
                    if read_trim(&d.join(f)).is_empty() {
                        write(&d.join(f), &read_trim(&parent.join(f)))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Spreads the group over `vcpus` of the CPUs its parent allows and no dedicated machine
    /// holds (all of those when there are fewer): those the fewest sibling groups use, lowest
    /// first on ties. Written at every start and resize, so a container's CPUs follow the
    /// host's as they change.
    fn set_cpus(&self, vcpus: u32, missing: &mut Vec<String>) -> Result<(), CgroupError> {
        self.set_cpus_shielded(&crate::vm::shield::Shield::host_default(), vcpus, missing)
    }

    /// [`set_cpus`](Self::set_cpus) against the registry of pinned cores `shield`. Never a core
    /// a dedicated machine holds: the shield takes those from every cgroup when it pins, but a
    /// group made later copies its CPUs from parents the shield may never have narrowed. The
    /// choice and the write happen under the registry's lock (no claim slips in between); an
    /// unreadable registry or a parent whose CPUs are all pinned is an error, never a
    /// fallback onto pinned cores.
    fn set_cpus_shielded(&self, shield: &crate::vm::shield::Shield, vcpus: u32, missing: &mut Vec<String>) -> Result<(), CgroupError> {
        let dir = self.dir("cpuset");
        let Some(parent) = dir.parent().map(Path::to_path_buf) else { return Ok(()) };
        let file = dir.join("cpuset.cpus");
        let allowed_file = parent.join(if self.v2() { "cpuset.cpus.effective" } else { "cpuset.cpus" });
        if !file.exists() || !allowed_file.exists() {
            missing.push("cpuset (nproc and /proc/cpuinfo show the host's CPUs)".into());
            return Ok(());
        }
        shield.with_pinned(|pinned| {
            let parent_cpus = crate::vm::shield::parse_list(&read_trim(&allowed_file));
            let allowed: Vec<usize> = parent_cpus.difference(pinned).copied().collect();
            if allowed.is_empty() {
                return Err(CgroupError::AllPinned { allowed: parent_cpus.into_iter().collect() });
            }
            let mut uses = std::collections::BTreeMap::<usize, usize>::new();
            for e in fs::read_dir(&parent).into_iter().flatten().flatten() {
                if e.path() != dir && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    for c in crate::vm::shield::parse_list(&read_trim(&e.path().join("cpuset.cpus"))) {
                        *uses.entry(c).or_default() += 1;
                    }
                }
            }
            let mut chosen = allowed;
            chosen.sort_by_key(|c| (uses.get(c).copied().unwrap_or(0), *c));
            chosen.truncate((vcpus as usize).max(1));
            chosen.sort();
            let list = chosen.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
            write(&file, &list)
        })?
    }

    /// Hands the [`tree_dir`](Self::tree_dir) to the container's root (host ids `uid`/`gid`),
    /// as cgroup v2 delegation asks: the directory (so it can make groups below) and the files
    /// that move processes and enable controllers for its children. Its own limits' files stay
    /// the host's, so nothing it does there loosens them.
    pub fn delegate(&self, uid: u32, gid: u32) -> Result<(), CgroupError> {
        let Some(dir) = self.tree_dir() else { return Ok(()) };
        let (u, g) = (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
        for p in [dir.clone(), dir.join("cgroup.procs"), dir.join("cgroup.threads"), dir.join("cgroup.subtree_control")] {
            nix::unistd::chown(&p, u, g).map_err(|e| CgroupError::Io { path: p.clone(), source: e.into() })?;
        }
        Ok(())
    }

    /// Writes the limits (idempotent; also used by resize). Returns what this kernel lacks.
    pub fn apply(&self, l: &Limits) -> Result<Unsupported, CgroupError> {
        let mut missing = Vec::new();
        let mem = self.mem();
        let max = l.memory_max as i64;
        if self.v2() {
            mem.set_limit(max).map_err(kernel("memory.max"))?;
            if self.dir("memory").join("memory.swap.max").exists() {
                mem.set_memswap_limit(l.swap as i64).map_err(kernel("memory.swap.max"))?;
            } else {
                missing.push("memory.swap.max (no swap accounting: swap is not limited)".into());
            }
        } else {
            // memsw must stay ≥ the memory limit at every moment: order the writes so that
            // both growing and shrinking succeed.
            let memsw = self.dir("memory").join("memory.memsw.limit_in_bytes");
            let cur = fs::read_to_string(self.dir("memory").join("memory.limit_in_bytes"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(i64::MAX);
            let total = (l.memory_max + l.swap) as i64;
            if memsw.exists() {
                if max > cur {
                    mem.set_memswap_limit(total).map_err(kernel("memory.memsw.limit_in_bytes"))?;
                    mem.set_limit(max).map_err(kernel("memory.limit_in_bytes"))?;
                } else {
                    mem.set_limit(max).map_err(kernel("memory.limit_in_bytes"))?;
                    mem.set_memswap_limit(total).map_err(kernel("memory.memsw.limit_in_bytes"))?;
                }
            } else {
                mem.set_limit(max).map_err(kernel("memory.limit_in_bytes"))?;
                missing.push(
                    "memory.memsw.limit_in_bytes (kernel lacks swap accounting: swap is NOT limited; boot with swapaccount=1)".into(),
                );
            }
        }
        mem.set_soft_limit(l.memory_low as i64).map_err(kernel("memory guarantee"))?;

        let cpu = self.cpu();
        if self.v2() {
            // v1 shares → v2 weight, the usual linear map of 2..262144 onto 1..10000.
            let weight = 1 + ((l.cpu_shares.max(2) - 2) * 9999) / 262_142;
            cpu.set_shares(weight).map_err(kernel("cpu.weight"))?;
            cpu.set_cfs_quota_and_period(Some(l.cpu_quota_us as i64), Some(l.cpu_period_us)).map_err(kernel("cpu.max"))?;
        } else {
            cpu.set_shares(l.cpu_shares).map_err(kernel("cpu.shares"))?;
            cpu.set_cfs_period(l.cpu_period_us).map_err(kernel("cpu.cfs_period_us"))?;
            cpu.set_cfs_quota(l.cpu_quota_us as i64).map_err(kernel("cpu.cfs_quota_us"))?;
        }
        let burst = self.dir("cpu").join(if self.v2() { "cpu.max.burst" } else { "cpu.cfs_burst_us" });
        if burst.exists() {
            write(&burst, &l.cpu_burst_us.to_string())?;
        } else {
            missing.push(format!("{} (no CPU burst on this kernel)", burst.display()));
        }

        self.pids().set_pid_max(MaxValue::Value(l.pids_max as i64)).map_err(kernel("pids.max"))?;

        let io_dir = self.dir("blkio");
        let io_file =
            ["io.weight", "io.bfq.weight", "blkio.bfq.weight", "blkio.weight"].iter().map(|f| io_dir.join(f)).find(|p| p.exists());
        match io_file {
            Some(p) => write(&p, &l.io_weight.to_string())?,
            None => missing.push("block I/O weight (no io.weight / blkio.bfq.weight: needs BFQ)".into()),
        }

        self.set_cpus(l.vcpus, &mut missing)?;

        if l.restrict_devices {
            if self.v2() {
                missing.push("devices (v2 needs an eBPF program; /dev holds only safe nodes and CAP_MKNOD is dropped)".into());
            } else {
                self.restrict_devices()?;
            }
        }
        Ok(Unsupported(missing))
    }

    fn restrict_devices(&self) -> Result<(), CgroupError> {
        let dev = self.devices();
        let rwm = DevicePermissions::all();
        dev.deny_device(DeviceType::All, -1, -1, &rwm).map_err(kernel("devices.deny"))?;
        for (maj, min) in ALLOWED_DEVICES {
            dev.allow_device(DeviceType::Char, maj, min, &rwm).map_err(kernel("devices.allow"))?;
        }
        dev.allow_device(DeviceType::Char, PTS_MAJOR, -1, &rwm).map_err(kernel("devices.allow"))?;
        Ok(())
    }

    /// Moves process `pid` (and its future children) into every controller of the group.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The files a single-threaded process writes "0" to in order to move itself into the
    /// group (see [`join_self`]). On v1 these are the `tasks` files: moving only the calling
    /// thread skips the kernel's global threadgroup lock, whose RCU synchronisation costs ~1 ms
    /// per controller; on v2 `cgroup.procs`.
    pub fn join_files(&self) -> Vec<PathBuf> {
        let f = if self.v2() { "cgroup.procs" } else { "tasks" };
        let mut files: Vec<PathBuf> = self.dirs().into_iter().map(|d| d.join(f)).collect();
        files.extend(self.unified_dir().map(|d| d.join("cgroup.procs")));
        files
    }

    /// Processes in the group (from the memory controller on v1; every process of a
    /// container is there).
    pub fn procs(&self) -> Vec<u32> {
        let mut out = Vec::new();
        collect_procs(&self.dir("memory"), self.v2(), &mut out);
        out
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        let f = self.freezer();
        f.freeze().map_err(kernel("freeze"))?;
        // v1 goes through FREEZING; wait until every task is stopped.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.freezer().thaw().map_err(kernel("thaw"))
    }

    pub fn frozen(&self) -> bool {
        if !self.dir("freezer").exists() {
            return false;
        }
        if self.v2() {
            // cgroup.freeze is what was asked; cgroup.events says whether it happened.
            return fs::read_to_string(self.dir("freezer").join("cgroup.events"))
                .map(|s| s.lines().any(|l| l.trim() == "frozen 1"))
                .unwrap_or(false);
        }
        matches!(self.freezer().state(), Ok(FreezerState::Frozen))
    }

    /// SIGKILLs everything in the group (thawing first: a frozen task cannot die) and waits
    /// until it is empty.
    pub fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError> {
        if !self.exists() {
            return Ok(());
        }
        let _ = self.thaw();
        let deadline = Instant::now() + timeout;
        loop {
            let procs = self.procs();
            if procs.is_empty() {
                return Ok(());
            }
            for p in procs {
                // SAFETY: kill(2) with a pid read from the group; a stale pid is harmless
                // (ESRCH) because the group only ever holds our container's processes.
                unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy { path: self.dir("memory"), secs: timeout.as_secs() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the group (idempotent). Kills what is left inside first.
    pub fn delete(&self) -> Result<(), CgroupError> {
        self.kill_all(Duration::from_secs(10))?;
        // Groups a container's systemd made below its tree go first (empty now: every
        // process of the container was in the group killed above).
        if let Some(t) = self.tree_dir() {
            remove_children(&t)?;
        }
        if let Some(u) = self.unified_dir() {
            if u.exists() {
                fs::remove_dir(&u).map_err(|source| CgroupError::Io { path: u.clone(), source })?;
            }
        }
        for d in self.dirs() {
            let c = MemController::new(d.clone(), PathBuf::new(), self.v2());
            if d.exists() {
                c.delete().map_err(kernel(format!("rmdir {}", d.display())))?;
            }
        }
        Ok(())
    }

    /// CPU time used, in nanoseconds.
    pub fn cpu_time_ns(&self) -> u64 {
        if self.v2() {
            read_keyed(&self.dir("cpu").join("cpu.stat"), "usage_usec").map(|us| us * 1000).unwrap_or(0)
        } else {
            read_u64(&self.dir("cpuacct").join("cpuacct.usage")).unwrap_or(0)
        }
    }

    /// (current, peak) memory in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let d = self.dir("memory");
        if self.v2() {
            (read_u64(&d.join("memory.current")).unwrap_or(0), read_u64(&d.join("memory.peak")).unwrap_or(0))
        } else {
            (read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0), read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0))
        }
    }

    /// How many times the group hit its memory ceiling and the OOM killer ran inside it.
    pub fn oom_kills(&self) -> u64 {
        let d = self.dir("memory");
        if self.v2() {
            read_keyed(&d.join("memory.events"), "oom_kill").unwrap_or(0)
        } else {
            read_keyed(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0)
        }
    }

    /// The plan's disk I/O ceilings on block device `major:minor` (the instance's loop
    /// device): blkio throttle on v1, `io.max` on v2. Absent limits are lifted ("max" / 0), so
    /// applying again after a plan change or on a new loop device is always right.
    pub fn set_io_limits(&self, (major, minor): (u64, u64), l: &vessel_core::resources::IoLimits) -> Result<(), CgroupError> {
        if self.v2() {
            let v = |x: Option<u64>| x.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
            let line = format!(
                "{major}:{minor} rbps={} wbps={} riops={} wiops={}",
                v(l.read_bytes_per_sec),
                v(l.write_bytes_per_sec),
                v(l.read_iops),
                v(l.write_iops)
            );
            return write(&self.dir("io").join("io.max"), &line);
        }
        let d = self.dir("blkio");
        for (file, v) in [
            ("blkio.throttle.read_bps_device", l.read_bytes_per_sec),
            ("blkio.throttle.write_bps_device", l.write_bytes_per_sec),
            ("blkio.throttle.read_iops_device", l.read_iops),
            ("blkio.throttle.write_iops_device", l.write_iops),
        ] {
            write(&d.join(file), &format!("{major}:{minor} {}", v.unwrap_or(0)))?;
        }
        Ok(())
    }

    /// Path of a controller's directory, for callers reading a file cgroups-rs has no call for.
    pub fn controller_dir(&self, controller: &str) -> PathBuf {
        self.dir(controller)
    }
}

/// Moves the calling process into a group by its [`InstanceCgroup::join_files`]. Only for
/// single-threaded processes (the helpers right after exec): on v1 it moves one thread.
pub fn join_self(files: &[PathBuf]) -> Result<(), CgroupError> {
    for f in files {
        write(f, "0")?;
    }
    Ok(())
}

/// The processes of the group at `dir`; on v2 also of the groups below it (a container's
/// systemd moves its processes into groups of its own; v1's memory controller never has any).
fn collect_procs(dir: &Path, recursive: bool, out: &mut Vec<u32>) {
    out.extend(fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    if recursive {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), true, out);
            }
        }
    }
}

/// Removes every group below `dir`, deepest first (a cgroup directory holds only its interface
/// files besides its child groups, and rmdir takes those with it).
fn remove_children(dir: &Path) -> Result<(), CgroupError> {
    let Ok(rd) = fs::read_dir(dir) else { return Ok(()) };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path();
            remove_children(&p)?;
            match fs::remove_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Io { path: p, source }),
            }
        }
    }
    Ok(())
}

fn read_trim(path: &Path) -> String {
    fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io { path: path.to_path_buf(), source })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let s = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(_) => return None,
    };
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v2 cannot be exercised on this project's v1 machines, so the same code path is run
    /// against a scratch tree shaped like a unified hierarchy (paths are parameters).
    #[test]
    fn v2_writes_the_unified_files_on_a_scratch_tree() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let layout = CgroupLayout::detect(d.path(), "vessel");
        assert_eq!(layout.version, CgroupVersion::V2);
        let g = layout.group("ct-x");
        g.create().unwrap();
        let dir = d.path().join("vessel/ct-x");
        assert_eq!(g.dirs(), vec![dir.clone()]);
        for f in ["memory.swap.max", "cpu.max.burst", "io.weight", "cpu.max"] {
            fs::write(dir.join(f), "max 100000").unwrap();
        }
        let l = Limits {
            memory_max: 256 << 20,
            swap: 64 << 20,
            memory_low: 128 << 20,
            cpu_shares: 512,
            cpu_quota_us: 200_000,
            cpu_period_us: 100_000,
            cpu_burst_us: 200_000,
            pids_max: 100,
            io_weight: 300,
            restrict_devices: true,
            vcpus: 2,
        };
        let missing = g.apply(&l).unwrap();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap().trim().to_string();
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), (64u64 << 20).to_string(), "v2 swap is s, not b+s");
        assert_eq!(read("memory.low"), (128u64 << 20).to_string());
        assert_eq!(read("cpu.weight"), (1 + (510 * 9999) / 262_142).to_string());
        assert_eq!(read("cpu.max"), "200000 100000");
        assert_eq!(read("cpu.max.burst"), "200000");
        assert_eq!(read("pids.max"), "100");
        assert_eq!(read("io.weight"), "300");
        assert!(missing.0.iter().any(|m| m.starts_with("devices")), "{missing:?}");
        assert_eq!(layout.children(), vec!["ct-x".to_string()]);
    }

    /// A container's cpuset never falls back onto cores a dedicated machine holds (it used
    /// to take all of its parent's CPUs, pinned ones included, when every one was pinned),
    /// and an unreadable registry of pinned cores is an error, not "nothing pinned".
    #[test]
    fn ct_cpuset_never_falls_back_onto_pinned_cores() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        let layout = CgroupLayout::detect(d.path(), "vessel");
        let g = layout.group("ct-p");
        g.create().unwrap();
        fs::write(d.path().join("vessel/cpuset.cpus.effective"), "0-1\n").unwrap();
        let cpus = d.path().join("vessel/ct-p/cpuset.cpus");
        fs::write(&cpus, "").unwrap();
        let reg = tempfile::tempdir().unwrap();
        let shield = crate::vm::shield::Shield { dir: reg.path().join("shield"), cpuset_root: d.path().into(), host_wide: false };
        let mut missing = Vec::new();

        // One of two cores pinned: the container gets the other, even asking for two.
        fs::create_dir_all(&shield.dir).unwrap();
        fs::write(shield.dir.join("core-1"), "machines/vm-a").unwrap();
        g.set_cpus_shielded(&shield, 2, &mut missing).unwrap();
        assert_eq!(fs::read_to_string(&cpus).unwrap(), "0");

        // Both pinned: a clear error, and the cpuset keeps no pinned core.
        fs::write(shield.dir.join("core-0"), "machines/vm-b").unwrap();
        let e = g.set_cpus_shielded(&shield, 1, &mut missing).unwrap_err();
        assert!(matches!(e, CgroupError::AllPinned { .. }), "{e}");
        assert_eq!(fs::read_to_string(&cpus).unwrap(), "0", "unchanged, not widened to 0-1");

        // A registry that cannot be read is an error too.
        let broken = crate::vm::shield::Shield { dir: reg.path().join("not-a-dir"), ..shield.clone() };
        fs::write(&broken.dir, "").unwrap();
        let e = g.set_cpus_shielded(&broken, 1, &mut missing).unwrap_err();
        assert!(matches!(e, CgroupError::Shield(_)), "{e}");
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn plan_maps_to_limits() {
        use vessel_core::resources::{InstanceKind, ResourceSpec};
        let r = vessel_core::PlanResources::try_from(ResourceSpec {
            kind: InstanceKind::Container,
            vcpus: 2,
            memory_guaranteed_mib: Some(1024),
            memory_burst_mib: 2048,
            swap_mib: 512,
            disk_gib: 40,
            cpu_ratio: 4.0,
            memory_ratio: 2.0,
            disk_ratio: 2.0,
            pids_max: None,
            net_rate_mbit: None,
            io_weight: None,
            io_limits: Default::default(),
        })
        .unwrap();
        let l = Limits::for_plan(&r);
        assert_eq!((l.memory_max, l.swap, l.memory_low), (2048 << 20, 512 << 20, 1024 << 20));
        assert_eq!(l.cpu_shares, 512, "1024 × v / ρc = 1024 × 2 / 4");
        assert_eq!((l.cpu_quota_us, l.cpu_period_us), (200_000, 100_000));
        assert_eq!(l.pids_max, 4096);
    }
}

//! The VMM process's own cgroup (v1 here): a memory hard limit of guest RAM plus a small fixed
//! overhead, the cpuset of its exclusive cores when pinned, or a CPU weight when floating.
//!
//! `parent` is a path inside each controller's hierarchy (`vessel/vm` on a host, a scratch
//! `vessel-test-<id>` in tests). The containers' cgroup code is separate for now; the two are
//! meant to be unified later.

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::{hierarchies, Cgroup};
use cgroups_rs::CgroupPid;
use thiserror::Error;

use super::config::CgroupPlacement;

const CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "cpuset"];

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {what}: {source}")]
    Op { path: String, what: &'static str, source: cgroups_rs::fs::error::Error },
    #[error("cgroup {path} has no {0} controller", path = .1)]
    Missing(&'static str, String),
}

/// What the kernel is told about one VMM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// cpuset.cpus: its exclusive cores when pinned; when floating, every core no pinned
    /// machine holds.
    pub cpus: Vec<usize>,
    /// cpu.shares when floating (1024 = one vCPU's fair share); `None` when pinned.
    pub cpu_shares: Option<u64>,
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// The group's path inside each hierarchy (`parent/name`).
pub fn path_of(parent: &str, name: &str) -> String {
    format!("{}/{}", parent.trim_matches('/'), name)
}

fn load(path: &str) -> Cgroup {
    Cgroup::load_with_specified_controllers(hierarchies::auto(), path, CONTROLLERS.iter().map(|s| s.to_string()).collect())
}

fn op<'a>(path: &'a str, what: &'static str) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError + 'a {
    move |source| CgroupError::Op { path: path.to_string(), what, source }
}

/// Creates (or updates) the cgroup of one VMM. Idempotent.
pub fn create(parent: &str, name: &str, limits: &Limits) -> Result<(), CgroupError> {
    let path = path_of(parent, name);
    let cg = load(&path);
    cg.create().map_err(op(&path, "create"))?;
    let mem: &MemController = cg.controller_of().ok_or_else(|| CgroupError::Missing("memory", path.clone()))?;
    mem.set_limit(limits.memory_bytes as i64).map_err(op(&path, "memory.limit_in_bytes"))?;
    let cpuset: &CpuSetController = cg.controller_of().ok_or_else(|| CgroupError::Missing("cpuset", path.clone()))?;
    let cpu: &CpuController = cg.controller_of().ok_or_else(|| CgroupError::Missing("cpu", path.clone()))?;
    if !limits.cpus.is_empty() {
        cpuset.set_cpus(&cpu_list(&limits.cpus)).map_err(op(&path, "cpuset.cpus"))?;
    }
    if let Some(shares) = limits.cpu_shares {
        cpu.set_shares(shares.max(2)).map_err(op(&path, "cpu.shares"))?;
    }
    Ok(())
}

/// Moves a running VMM to other host cores (a floating machine making room for, or getting
/// back, the cores of a pinned one).
pub fn set_cpus(parent: &str, name: &str, cpus: &[usize]) -> Result<(), CgroupError> {
    let path = path_of(parent, name);
    let cg = load(&path);
    let cpuset: &CpuSetController = cg.controller_of().ok_or_else(|| CgroupError::Missing("cpuset", path.clone()))?;
    cpuset.set_cpus(&cpu_list(cpus)).map_err(op(&path, "cpuset.cpus"))
}

/// The cpuset.cpus of a VMM's cgroup, as the kernel lists it (e.g. `1` or `0-1`).
pub fn cpus(parent: &str, name: &str) -> Option<String> {
    let path = path_of(parent, name);
    let cg = load(&path);
    let cpuset: &CpuSetController = cg.controller_of()?;
    let set = cpuset.cpuset();
    Some(set.cpus.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(","))
}

/// Moves process `pid` (the VMM itself, before it allocates guest memory) into its cgroup.
pub fn join(p: &CgroupPlacement, pid: u32) -> Result<(), CgroupError> {
    let path = path_of(&p.parent, &p.name);
    let cg = load(&path);
    cg.add_task_by_tgid(CgroupPid::from(pid as u64)).map_err(op(&path, "join"))
}

/// Removes the VMM's cgroup (its processes must be gone). Absent is fine.
pub fn remove(parent: &str, name: &str) -> Result<(), CgroupError> {
    let path = path_of(parent, name);
    let cg = load(&path);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete().map_err(op(&path, "delete"))
}

/// Removes the parent when no VMM is left under it (tests' scratch parents).
pub fn remove_parent(parent: &str) -> Result<(), CgroupError> {
    let path = parent.trim_matches('/').to_string();
    let cg = load(&path);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete().map_err(op(&path, "delete"))
}

/// Processes in the VMM's cgroup (how adoption finds a VMM whose pid was never recorded).
pub fn procs(parent: &str, name: &str) -> Vec<u64> {
    let cg = load(&path_of(parent, name));
    if !cg.exists() {
        return Vec::new();
    }
    cg.procs().into_iter().map(|p| p.pid).collect()
}

/// CPU time (ns), memory in use and its peak (bytes) of the VMM's cgroup.
pub fn usage(parent: &str, name: &str) -> Option<(u64, u64, u64)> {
    let cg = load(&path_of(parent, name));
    if !cg.exists() {
        return None;
    }
    let cpu = cg.controller_of::<CpuAcctController>().map(|c| c.cpuacct().usage).unwrap_or(0);
    let mem = cg.controller_of::<MemController>().map(|m| m.memory_stat()).map(|m| (m.usage_in_bytes, m.max_usage_in_bytes));
    let (used, peak) = mem.unwrap_or((0, 0));
    Some((cpu, used, peak))
}

/// The memory limit in bytes actually set (tests check what the kernel was told).
pub fn memory_limit(parent: &str, name: &str) -> Option<u64> {
    let cg = load(&path_of(parent, name));
    cg.controller_of::<MemController>().map(|m| m.memory_stat().limit_in_bytes as u64)
}

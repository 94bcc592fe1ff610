//! Dedicated means dedicated: the host cores pinned machines hold are taken away from every
//! other task on the host, not only from the other machines of this provisioner.
//!
//! * A host-wide registry (`<dir>/core-<n>`, one file per pinned core naming the cpuset
//!   cgroup of the machine holding it; `dir` is `/run/vessel/cpu-shield` on a host) is the
//!   one truth of which cores are pinned, shared by every runtime on the host (several test
//!   processes at once, or a restarted provisioner). An entry whose cgroup is gone is stale.
//! * [`apply`] then makes every other cgroup of the cpuset hierarchy (containers, floating
//!   machines, the host's own services, anybody's) leave those cores (children before their
//!   parents), and narrows the CPU affinity of every user-space task still allowed on them
//!   (those in the root cpuset, which no cgroup setting reaches). Kernel threads are left
//!   alone (per-CPU ones must stay). When cores are given back, whoever had "every core but
//!   the pinned ones" gets them back; narrower settings someone chose are kept as they are.
//!
//! All of it runs under one `flock` on `<dir>/.lock`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShieldError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no {needed} free host cores to pin to (free: {free:?})")]
    NoFreeCores { needed: usize, free: Vec<usize> },
    #[error("no cpuset cgroup hierarchy mounted under {0}")]
    NoCpuset(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShieldError + '_ {
    move |source| ShieldError::Io { path: path.to_path_buf(), source }
}

/// Where the registry lives and which cgroup hierarchy it acts on.
#[derive(Clone, Debug)]
pub struct Shield {
    pub dir: PathBuf,
    /// The cpuset hierarchy's mount point (`/sys/fs/cgroup/cpuset` on v1 hosts).
    pub cpuset_root: PathBuf,
    /// Take pinned cores away from every other task and cgroup on the machine ([`Shield::apply`]).
    /// Off only where several simulated hosts share one machine (the tests' and the demo's
    /// hosts in network namespaces): each has its own registry and the real cores are shared.
    pub host_wide: bool,
}

/// The registry lock, held while it is read and changed.
struct Locked {
    _file: fs::File,
}

impl Shield {
    pub fn host_default() -> Self {
        Shield { dir: "/run/vessel/cpu-shield".into(), cpuset_root: "/sys/fs/cgroup/cpuset".into(), host_wide: true }
    }

    fn lock(&self) -> Result<Locked, ShieldError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join(".lock");
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        // SAFETY: flock on a file descriptor we own; it blocks until the lock is ours.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ShieldError::Io { path, source: io::Error::last_os_error() });
        }
        Ok(Locked { _file: f })
    }

    /// Live entries: core -> cpuset cgroup (relative to the hierarchy root) holding it.
    /// An unreadable registry is an error, never "nothing pinned".
    fn entries(&self, _l: &Locked) -> Result<Vec<(usize, String)>, ShieldError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        for e in rd {
            let e = e.map_err(io_err(&self.dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            let Some(core) = name.strip_prefix("core-").and_then(|c| c.parse().ok()) else { continue };
            let holder = fs::read_to_string(e.path()).unwrap_or_default().trim().to_string();
            // A fresh claim may precede its cgroup by a moment (claimed, then created).
            let fresh = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() < 60);
            if !holder.is_empty() && (fresh || self.cpuset_root.join(&holder).is_dir()) {
                out.push((core, holder));
            } else {
                let _ = fs::remove_file(e.path());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Cores pinned anywhere on the host right now.
    pub fn pinned(&self) -> Result<BTreeSet<usize>, ShieldError> {
        self.with_pinned(|p| p.clone())
    }

    /// Runs `f` with the cores pinned host-wide while holding the registry lock, so no machine
    /// claims a core between reading the set and acting on it (a container's cpuset is
    /// chosen and written inside `f`). `f` must not call back into the shield.
    pub fn with_pinned<T>(&self, f: impl FnOnce(&BTreeSet<usize>) -> T) -> Result<T, ShieldError> {
        let l = self.lock()?;
        let pinned: BTreeSet<usize> = self.entries(&l)?.into_iter().map(|(c, _)| c).collect();
        Ok(f(&pinned))
    }

    /// Takes `needed` of `candidates` no one on the host holds for the cgroup `holder`
    /// (relative to the cpuset root; it keeps any core already registered for it), always
    /// leaving at least one online core unpinned for the host. When the cores are taken,
    /// waits up to `wait` for another machine to give some back (a stop in progress).
    pub fn claim(&self, holder: &str, candidates: &[usize], needed: usize, wait: std::time::Duration) -> Result<Vec<usize>, ShieldError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self.try_claim(holder, candidates, needed) {
                Err(ShieldError::NoFreeCores { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn try_claim(&self, holder: &str, candidates: &[usize], needed: usize) -> Result<Vec<usize>, ShieldError> {
        let online = fs::read_to_string(self.cpuset_root.join("cpuset.cpus")).map(|s| parse_list(&s).len()).unwrap_or(usize::MAX);
        let l = self.lock()?;
        let entries = self.entries(&l)?;
        let mine: Vec<usize> = entries.iter().filter(|(_, h)| h == holder).map(|(c, _)| *c).collect();
        let taken: BTreeSet<usize> = entries.iter().filter(|(_, h)| h != holder).map(|(c, _)| *c).collect();
        let mut free: Vec<usize> = candidates.iter().copied().filter(|c| !taken.contains(c)).collect();
        if taken.len() + needed >= online {
            free.clear(); // the host keeps a core
        }
        let mut chosen: Vec<usize> = mine.iter().copied().filter(|c| free.contains(c)).take(needed).collect();
        for c in &free {
            if chosen.len() >= needed {
                break;
            }
            if !chosen.contains(c) {
                chosen.push(*c);
            }
        }
        if chosen.len() < needed {
            return Err(ShieldError::NoFreeCores { needed, free });
        }
        chosen.sort();
        for c in &mine {
            if !chosen.contains(c) {
                let _ = fs::remove_file(self.dir.join(format!("core-{c}")));
            }
        }
        for c in &chosen {
            let p = self.dir.join(format!("core-{c}"));
            fs::write(&p, holder).map_err(io_err(&p))?;
        }
        Ok(chosen)
    }

    /// Gives back every core `holder` held.
    pub fn release(&self, holder: &str) -> Result<(), ShieldError> {
        let l = self.lock()?;
        for (c, h) in self.entries(&l)? {
            if h == holder {
                let _ = fs::remove_file(self.dir.join(format!("core-{c}")));
            }
        }
        Ok(())
    }

    /// Makes the host match the registry: pinned cores are nobody else's, freed ones are
    /// everybody's again.
    pub fn apply(&self) -> Result<(), ShieldError> {
        if !self.host_wide {
            return Ok(());
        }
        let l = self.lock()?;
        let entries = self.entries(&l)?;
        if !self.cpuset_root.join("cpuset.cpus").is_file() {
            return Err(ShieldError::NoCpuset(self.cpuset_root.clone()));
        }
        let online = parse_list(&fs::read_to_string(self.cpuset_root.join("cpuset.cpus")).map_err(io_err(&self.cpuset_root))?);
        let pinned: BTreeSet<usize> = entries.iter().map(|(c, _)| *c).collect();
        let state = self.dir.join("applied");
        let before = fs::read_to_string(&state).map(|s| parse_list(&s)).unwrap_or_default();
        let allowed: BTreeSet<usize> = online.difference(&pinned).copied().collect();
        let allowed_before: BTreeSet<usize> = online.difference(&before).copied().collect();
        if allowed.is_empty() {
            // Never leave the host without a core; admission and reservation prevent this.
            tracing::error!(?pinned, "every host core is pinned: not shielding");
            return Ok(());
        }
        let holders: Vec<PathBuf> = entries.iter().map(|(_, h)| self.cpuset_root.join(h)).collect();
        // Holders and their ancestors keep their cores.
        let exempt = |d: &Path| holders.iter().any(|h| h.starts_with(d));
        let held_by_holder = |d: &Path| holders.iter().any(|h| d.starts_with(h));

        let mut dirs = Vec::new();
        walk(&self.cpuset_root, &mut dirs);
        // Growing first, parents before children.
        for d in &dirs {
            if exempt(d) || held_by_holder(d) {
                continue;
            }
            let cur = read_cpus(d);
            if cur.is_superset(&allowed_before) && !cur.is_superset(&allowed) {
                let grown: BTreeSet<usize> = cur.union(&allowed).copied().filter(|c| !pinned.contains(c)).collect();
                write_cpus(d, &grown);
            }
        }
        // Then shrinking, children before parents.
        for d in dirs.iter().rev() {
            if exempt(d) || held_by_holder(d) {
                continue;
            }
            let cur = read_cpus(d);
            if cur.iter().any(|c| pinned.contains(c)) {
                let mut left: BTreeSet<usize> = cur.difference(&pinned).copied().collect();
                if left.is_empty() {
                    left = allowed.clone();
                }
                write_cpus(d, &left);
            }
        }
        // Tasks: twice, to catch what was forked while the first pass ran.
        let holder_paths: Vec<String> = entries.iter().map(|(_, h)| format!("/{}", h.trim_matches('/'))).collect();
        for _ in 0..2 {
            shield_tasks(&online, &pinned, &allowed, &allowed_before, &holder_paths);
        }
        let list = pinned.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        fs::write(&state, list).map_err(io_err(&state))?;
        Ok(())
    }
}

/// Online host CPUs (not this process's affinity, which the shield itself narrows).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf takes an integer and returns one.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

impl Shield {
    /// Makes the cpuset group `parent` (and its ancestors) allow `cpus`, so a machine's group
    /// under it may be given them: another runtime's shield may have narrowed it while one of
    /// its own machines held a core.
    pub fn widen_parent(&self, parent: &str, cpus: &[usize]) {
        let mut chain = Vec::new();
        let mut p = self.cpuset_root.join(parent.trim_matches('/'));
        while p.starts_with(&self.cpuset_root) && p != self.cpuset_root {
            chain.push(p.clone());
            if !p.pop() {
                break;
            }
        }
        for d in chain.iter().rev() {
            if !d.is_dir() {
                return;
            }
            let cur = read_cpus(d);
            if !cpus.iter().all(|c| cur.contains(c)) {
                write_cpus(d, &cur.iter().chain(cpus).copied().collect());
            }
        }
    }
}

/// Every cgroup directory under `root` (root excluded), parents before children.
fn walk(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
            walk(&e.path(), out);
        }
    }
}

fn read_cpus(d: &Path) -> BTreeSet<usize> {
    parse_list(&fs::read_to_string(d.join("cpuset.cpus")).unwrap_or_default())
}

fn write_cpus(d: &Path, cpus: &BTreeSet<usize>) {
    let list = cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    if let Err(e) = fs::write(d.join("cpuset.cpus"), &list) {
        tracing::warn!(cgroup = %d.display(), cpus = %list, error = %e, "cannot set cpuset.cpus");
    }
}

/// A kernel CPU list (`0-3,5`) as a set.
pub fn parse_list(s: &str) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(c) = part.trim().parse() {
                    out.insert(c);
                }
            }
        }
    }
    out
}

const PF_KTHREAD: u64 = 0x0020_0000;

/// Is `pid` a kernel thread (flags field of /proc/<pid>/stat)?
fn is_kernel_thread(pid: &str) -> bool {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else { return true };
    rest.split_whitespace().nth(6).and_then(|f| f.parse::<u64>().ok()).is_none_or(|f| f & PF_KTHREAD != 0)
}

fn shield_tasks(
    online: &BTreeSet<usize>,
    pinned: &BTreeSet<usize>,
    allowed: &BTreeSet<usize>,
    allowed_before: &BTreeSet<usize>,
    holders: &[String],
) {
    let Ok(procs) = fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || is_kernel_thread(&pid) {
            continue;
        }
        let cpuset = fs::read_to_string(format!("/proc/{pid}/cpuset")).unwrap_or_default();
        let cpuset = cpuset.trim();
        if holders.iter().any(|h| cpuset == h || cpuset.starts_with(&format!("{h}/"))) {
            continue;
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<libc::pid_t>() else { continue };
            let Some(cur) = get_affinity(tid) else { continue };
            let want: BTreeSet<usize> = if cur.is_superset(allowed_before) && !cur.is_superset(allowed) {
                cur.union(allowed).copied().filter(|c| !pinned.contains(c) && online.contains(c)).collect()
            } else {
                cur.difference(pinned).copied().collect()
            };
            if !want.is_empty() && want != cur {
                set_affinity(tid, &want);
            }
        }
    }
}

fn get_affinity(tid: libc::pid_t) -> Option<BTreeSet<usize>> {
    // SAFETY: cpu_set_t is plain data filled in by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some((0..libc::CPU_SETSIZE as usize).filter(|c| libc::CPU_ISSET(*c, &set)).collect())
    }
}

fn set_affinity(tid: libc::pid_t, cpus: &BTreeSet<usize>) {
    // SAFETY: as above; the kernel refuses (and we ignore) tasks that may not move.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus {
            libc::CPU_SET(*c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_list("0-2,5\n"), [0, 1, 2, 5].into_iter().collect());
        assert_eq!(parse_list(""), BTreeSet::new());
    }

    /// The registry: cores are claimed once host-wide, re-claiming is idempotent, and a core
    /// whose holder's cgroup is gone is free again.
    #[test]
    fn claims_are_exclusive_and_stale_ones_lapse() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cpuset");
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(root.join("b")).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        let s = Shield { dir: tmp.path().join("reg"), cpuset_root: root.clone(), host_wide: true };
        fs::write(root.join("cpuset.cpus"), "0-4\n").unwrap();
        let now = std::time::Duration::ZERO;
        assert_eq!(s.claim("a", &[1, 2, 3], 2, now).unwrap(), vec![1, 2]);
        assert_eq!(s.claim("a", &[1, 2, 3], 2, now).unwrap(), vec![1, 2]);
        assert!(matches!(s.claim("b", &[1, 2, 3], 2, now), Err(ShieldError::NoFreeCores { needed: 2, .. })));
        assert_eq!(s.claim("b", &[1, 2, 3], 1, now).unwrap(), vec![3]);
        // Four of five cores pinned: the host keeps the last one.
        assert_eq!(s.claim("c", &[0, 4], 1, now).unwrap(), vec![0]);
        assert!(matches!(s.claim("d", &[4], 1, now), Err(ShieldError::NoFreeCores { .. })));
        s.release("c").unwrap();
        fs::remove_dir(root.join("a")).unwrap();
        for c in [1, 2] {
            fs::File::options().write(true).open(tmp.path().join(format!("reg/core-{c}"))).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(s.pinned().unwrap(), [3].into_iter().collect());
        s.release("b").unwrap();
        assert!(s.pinned().unwrap().is_empty());
    }
}

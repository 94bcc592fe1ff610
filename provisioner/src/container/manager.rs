//! The container runtime over the durable store: what the CLI (and later the HTTP API) calls.
//!
//! Every multi-step operation writes `pending` before its first side effect and clears it
//! after its last, so [`ContainerHost::reconcile`] after a crash knows what to do:
//! * `Create` → finish it (every step is idempotent), then start it if it should run;
//! * `Destroy` → finish it;
//! * `Reinstall` / `Resize` → run them again to completion;
//! * no pending op → adopt: a live init (pid + start time match) stays as it is (or is
//!   stopped, if the owner had asked for that); a dead one is restarted if the owner wanted it
//!   running;
//! * then orphans (instance dirs, mounts, loop devices, cgroups, bridge ports of ours with no
//!   record) are removed.

use super::{crash_point, disk, net, ContainerError, ContainerRuntime};
use crate::runtime::{Runtime, Usage};
use crate::store::{InstanceRecord, InstanceStore, PendingOp};
use std::collections::HashSet;
use vessel_core::{Action, HostCapacity, InstanceId, InstanceKind, InstanceSpec, InstanceState, PlanResources};

pub struct ContainerHost {
    pub rt: ContainerRuntime,
    pub store: InstanceStore,
    pub capacity: HostCapacity,
}

/// What a reconcile did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub finished: Vec<InstanceId>,
    pub adopted: Vec<InstanceId>,
    pub restarted: Vec<InstanceId>,
    pub orphans_removed: Vec<String>,
}

impl ContainerHost {
    pub fn new(rt: ContainerRuntime, capacity: HostCapacity) -> Result<Self, ContainerError> {
        let store = InstanceStore::open(&rt.cfg.state_dir)?;
        Ok(Self { rt, store, capacity })
    }

    /// Serialises operations on one instance across threads and processes (an exclusive
    /// `flock` on `<state>/locks/<id>`, released when the guard drops, or by the kernel if we
    /// crash), so two concurrent calls for the same id cannot interleave their steps.
    fn lock(&self, id: &InstanceId) -> Result<std::fs::File, ContainerError> {
        use std::os::fd::AsRawFd;
        let dir = self.rt.cfg.state_dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(|source| ContainerError::Io { what: format!("mkdir {}", dir.display()), source })?;
        let path = dir.join(id.to_string());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| ContainerError::Io { what: format!("open {}", path.display()), source })?;
        // SAFETY: flock(2) on a descriptor we own for the duration of the call.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ContainerError::Io { what: format!("lock {}", path.display()), source: std::io::Error::last_os_error() });
        }
        Ok(f)
    }

    fn get(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let r = self.store.get(id)?.ok_or(ContainerError::NotFound(*id))?;
        if r.spec.kind() != InstanceKind::Container {
            return Err(ContainerError::WrongKind(*id));
        }
        Ok(r)
    }

    fn check(&self, r: &InstanceRecord, action: Action, name: &'static str) -> Result<InstanceState, ContainerError> {
        let state = self.rt.observe(r)?;
        if !action.allowed_in(state) {
            return Err(ContainerError::NotAllowed { action: name, state });
        }
        Ok(state)
    }

    fn save(&self, r: &mut InstanceRecord) -> Result<(), ContainerError> {
        r.state = self.rt.observe(r)?;
        self.store.put(r)?;
        Ok(())
    }

    /// Creates (and by default starts) a container. Idempotent: the same spec again finishes
    /// or returns the existing one; a different spec under the same id is a conflict.
    pub fn create(&self, spec: InstanceSpec, start: bool) -> Result<InstanceRecord, ContainerError> {
        if spec.kind() != InstanceKind::Container {
            return Err(ContainerError::WrongKind(spec.id));
        }
        let _lock = self.lock(&spec.id)?;
        let mut r = match self.store.get(&spec.id)? {
            Some(r) if r.spec == spec => r,
            Some(_) => return Err(ContainerError::Conflict(spec.id)),
            None => {
                // Refuse before any side effect: admission and a usable template (and leave
                // no lock file behind for an id that never existed here).
                let refused = crate::host::check(&self.capacity, &self.store.list()?, &spec.resources, None)
                    .map_err(ContainerError::from)
                    .and_then(|_| self.rt.cfg.templates.load(&spec.template).map_err(ContainerError::from));
                if let Err(e) = refused {
                    let _ = std::fs::remove_file(self.rt.cfg.state_dir.join("locks").join(spec.id.to_string()));
                    return Err(e);
                }
                let r = InstanceRecord {
                    spec,
                    state: InstanceState::Creating,
                    should_run: start,
                    pending: Some(PendingOp::Create),
                    runtime: serde_json::Value::Null,
                    rescue: None,
                };
                self.store.put(&r)?;
                r
            }
        };
        crash_point("create", "record");
        if r.pending == Some(PendingOp::Create) {
            self.rt.create(&mut r)?;
            r.pending = None;
            // When a start follows, its record write is the one that clears `pending` (one
            // durable write less per create: a crash in between re-runs the idempotent create,
            // then starts or adopts).
            if !r.should_run {
                self.save(&mut r)?;
            }
        }
        if r.should_run {
            crash_point("create", "start");
            let started = self.rt.start(&mut r);
            self.save(&mut r)?;
            started?;
        }
        Ok(r)
    }

    pub fn start(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Start, "start")?;
        r.should_run = true;
        self.store.put(&r)?;
        self.rt.start(&mut r)?;
        self.save(&mut r)?;
        Ok(r)
    }

    pub fn stop(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Stop, "stop")?;
        r.should_run = false;
        self.store.put(&r)?;
        self.rt.stop(&mut r)?;
        self.save(&mut r)?;
        Ok(r)
    }

    pub fn restart(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Restart, "restart")?;
        r.should_run = true;
        self.store.put(&r)?;
        self.rt.stop(&mut r)?;
        self.rt.start(&mut r)?;
        self.save(&mut r)?;
        Ok(r)
    }

    pub fn suspend(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Suspend, "suspend")?;
        self.rt.suspend(&mut r)?;
        self.save(&mut r)?;
        Ok(r)
    }

    pub fn resume(&self, id: &InstanceId) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Resume, "resume")?;
        self.rt.resume(&mut r)?;
        self.save(&mut r)?;
        Ok(r)
    }

    /// New root filesystem (from `template`, or the current one), same identity and addresses.
    pub fn reinstall(&self, id: &InstanceId, template: Option<String>) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Reinstall, "reinstall")?;
        let template = template.unwrap_or_else(|| r.spec.template.clone());
        self.rt.cfg.templates.load(&template)?;
        r.spec.template = template.clone();
        r.pending = Some(PendingOp::Reinstall { template });
        self.store.put(&r)?;
        self.rt.reinstall(&mut r)?;
        r.pending = None;
        self.save(&mut r)?;
        Ok(r)
    }

    /// A new root password hash on a running container (recorded in its spec, so a reinstall
    /// writes the new one).
    pub fn reset_password(&self, id: &InstanceId, hash: vessel_core::PasswordHash) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.rt.reset_password(&r, &hash)?;
        r.spec.access.root_password_hash = Some(hash);
        self.save(&mut r)?;
        Ok(r)
    }

    /// New limits, same data; refused by admission like a create (the old size excluded).
    pub fn resize(&self, id: &InstanceId, resources: PlanResources) -> Result<InstanceRecord, ContainerError> {
        let _lock = self.lock(id)?;
        let mut r = self.get(id)?;
        self.check(&r, Action::Resize, "resize")?;
        if resources.kind() != InstanceKind::Container {
            return Err(ContainerError::WrongKind(*id));
        }
        if resources.disk_gib() < r.spec.resources.disk_gib() {
            return Err(ContainerError::DiskShrink { from: r.spec.resources.disk_gib(), to: resources.disk_gib() });
        }
        crate::host::check(&self.capacity, &self.store.list()?, &resources, Some(*id))?;
        let previous = std::mem::replace(&mut r.spec.resources, resources);
        r.pending = Some(PendingOp::Resize { previous: previous.clone() });
        self.store.put(&r)?;
        self.rt.resize(&mut r, &previous)?;
        r.pending = None;
        self.save(&mut r)?;
        Ok(r)
    }

    /// Removes the container and every trace of it. Idempotent: an unknown id is swept too.
    pub fn destroy(&self, id: &InstanceId) -> Result<(), ContainerError> {
        let _lock = self.lock(id)?;
        match self.store.get(id)? {
            Some(mut r) => {
                if r.spec.kind() != InstanceKind::Container {
                    return Err(ContainerError::WrongKind(*id));
                }
                r.pending = Some(PendingOp::Destroy);
                r.should_run = false;
                r.state = InstanceState::Destroying;
                self.store.put(&r)?;
                crash_point("destroy", "record");
                self.rt.destroy(&mut r)?;
                crash_point("destroy", "forget");
                self.store.remove(id)?;
            }
            None => self.rt.destroy_parts(id, None)?,
        };
        let _ = std::fs::remove_file(self.rt.cfg.state_dir.join("locks").join(id.to_string()));
        Ok(())
    }

    /// Every container record with its observed state.
    pub fn list(&self) -> Result<Vec<(InstanceRecord, InstanceState)>, ContainerError> {
        let mut out = Vec::new();
        for r in self.store.list()? {
            if r.spec.kind() == InstanceKind::Container {
                let s = self.rt.observe(&r)?;
                out.push((r, s));
            }
        }
        Ok(out)
    }

    pub fn usage(&self, id: &InstanceId) -> Result<Usage, ContainerError> {
        self.rt.usage(&self.get(id)?)
    }

    pub fn exec_command(&self, id: &InstanceId, argv: &[String]) -> Result<std::process::Command, ContainerError> {
        self.rt.exec_command(&self.get(id)?, argv)
    }

    /// After a restart of the provisioner (or a crash): see the module docs.
    pub fn reconcile(&self) -> Result<ReconcileReport, ContainerError> {
        let mut rep = ReconcileReport::default();
        let mut known = HashSet::new();
        for mut r in self.store.list()? {
            if r.spec.kind() != InstanceKind::Container {
                continue;
            }
            let id = r.spec.id;
            known.insert(id);
            let _lock = self.lock(&id)?;
            match r.pending.clone() {
                Some(PendingOp::Destroy) => {
                    self.rt.destroy(&mut r)?;
                    self.store.remove(&id)?;
                    known.remove(&id);
                    rep.finished.push(id);
                    continue;
                }
                Some(PendingOp::Create) => {
                    self.rt.create(&mut r)?;
                    r.pending = None;
                    self.save(&mut r)?;
                    rep.finished.push(id);
                }
                Some(PendingOp::Reinstall { .. }) => {
                    self.rt.reinstall(&mut r)?;
                    r.pending = None;
                    self.save(&mut r)?;
                    rep.finished.push(id);
                }
                Some(PendingOp::Resize { previous }) => {
                    self.rt.resize(&mut r, &previous)?;
                    r.pending = None;
                    self.save(&mut r)?;
                    rep.finished.push(id);
                }
                None => {}
            }
            let live = self.rt.live_pid(&r).is_some();
            if live && !r.should_run {
                // A stop that crashed half-way: finish it.
                self.rt.stop(&mut r)?;
                rep.finished.push(id);
            } else if live {
                rep.adopted.push(id);
            } else if r.should_run {
                self.rt.start(&mut r)?;
                rep.restarted.push(id);
            }
            self.save(&mut r)?;
        }
        rep.orphans_removed = self.sweep_orphans(&known)?;
        Ok(rep)
    }

    /// Removes parts carrying our names that no record owns.
    fn sweep_orphans(&self, known: &HashSet<InstanceId>) -> Result<Vec<String>, ContainerError> {
        let mut removed = Vec::new();
        let known_short: HashSet<String> = known.iter().map(|id| id.short()).collect();
        if let Ok(rd) = std::fs::read_dir(self.rt.instances_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Ok(id) = name.parse::<InstanceId>() {
                    if !known.contains(&id) {
                        self.rt.destroy_parts(&id, None)?;
                        removed.push(format!("instance dir {name}"));
                    }
                }
            }
        }
        // Mounts under our instances dir whose instance is gone (dir removed by hand).
        for m in disk::mounts_under(&self.rt.instances_dir()) {
            if !m.exists() || !m.parent().map(|p| p.exists()).unwrap_or(false) {
                let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
                removed.push(format!("mount {}", m.display()));
            }
        }
        // Loop devices whose image lies under our instances dir and has no record.
        let dir = self.rt.instances_dir();
        if let Ok(out) = super::run(std::process::Command::new("losetup").args(["-l", "-n", "-O", "NAME,BACK-FILE"])) {
            for line in out.lines() {
                let Some((dev, back)) = line.trim().split_once(' ') else {
                    continue;
                };
                let back = std::path::PathBuf::from(back.trim().trim_end_matches(" (deleted)"));
                let Ok(rel) = back.strip_prefix(&dir) else {
                    continue;
                };
                let id = rel.components().next().and_then(|c| c.as_os_str().to_str()?.parse::<InstanceId>().ok());
                if id.map(|id| !known.contains(&id)).unwrap_or(true) {
                    let _ = super::run(std::process::Command::new("losetup").arg("-d").arg(dev));
                    removed.push(format!("loop {dev}"));
                }
            }
        }
        for name in self.rt.cfg.cgroups.children() {
            if let Some(short) = name.strip_prefix("ct-") {
                if !known_short.contains(short) {
                    let cg = self.rt.cfg.cgroups.group(&name);
                    cg.delete()?;
                    removed.push(format!("cgroup {name}"));
                }
            }
        }
        let prefix = &self.rt.cfg.veth_prefix;
        for port in net::ports_of(&self.rt.cfg.bridge, prefix) {
            let short = &port[prefix.len()..];
            if !known_short.contains(short) {
                net::delete_link(&port);
                removed.push(format!("veth {port}"));
            }
        }
        // Port guards whose interface is gone (only those: a table of a live port may belong
        // to another host's bridge sharing the prefix).
        for port in crate::hostnet::protected(prefix) {
            if !net::link_exists(&port) {
                let _ = crate::hostnet::unprotect(&port);
                removed.push(format!("port guard {port}"));
            }
        }
        Ok(removed)
    }
}

//! The host as a service: every API operation, free of HTTP, dispatched by kind to the
//! runtimes, serialized per instance and made durable through the store.
//!
//! The HTTP layer ([`crate::api`]) only authenticates, parses and turns [`ServiceError`]s into
//! problems; everything that decides lives here so it is testable without a socket.
//!
//! Ordering rules: a multi-step operation writes its `pending` marker before its first side
//! effect and clears it after its last ([`crate::store`]); any request for the instance, and
//! [`Service::adopt`] at start-up, finishes what a crash left unfinished. Admission is
//! decided under one host-wide lock together with writing the record, so two creates of
//! different ids cannot both take the last room.

use crate::container::manager::ContainerHost;
use crate::host;
use crate::runtime::{Runtime, Usage};
use crate::store::{InstanceRecord, InstanceStore, PendingOp, StoreError};
use crate::vm::runtime::KvmRuntime;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;
use vessel_core::admission::{HostCapacity, Refusal};
use vessel_core::wire::{HostReport, InstanceStatus, LoadSummary, Problem, ProblemType};
use vessel_core::{Action, Firewall, HostAction, InstanceId, InstanceKind, InstanceSpec, InstanceState, PasswordHash, PlanResources};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("no instance {0} on this host")]
    NotFound(InstanceId),
    #[error("instance {0} exists with a different spec")]
    SpecConflict(InstanceId),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {action:?} an instance that is {state:?}")]
    NotAllowed { action: Action, state: InstanceState },
    #[error("refused by host admission: {0}")]
    Refused(Box<Refusal>),
    #[error("this host does not run {0:?} instances")]
    KindUnsupported(InstanceKind),
    /// A console needs a running instance.
    #[error("instance {id} is {state:?}: a console needs it running")]
    NoConsole { id: InstanceId, state: InstanceState },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{op} of {id} failed: {source}")]
    Runtime { id: InstanceId, op: &'static str, source: BoxError },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The problem+json an API client sees. Runtime errors carry the runtime's message (it
    /// names paths and kernel errors, never secrets).
    pub fn problem(&self) -> Problem {
        match self {
            ServiceError::NotFound(_) => Problem::new(ProblemType::NotFound, self.to_string()),
            ServiceError::SpecConflict(_) => Problem::new(ProblemType::SpecConflict, self.to_string()),
            ServiceError::Invalid(_) => Problem::new(ProblemType::InvalidRequest, self.to_string()),
            ServiceError::NotAllowed { action, state } => Problem::action_not_allowed(*action, *state),
            ServiceError::Refused(r) => Problem::admission(r),
            ServiceError::KindUnsupported(_) => Problem::new(ProblemType::KindUnsupported, self.to_string()),
            ServiceError::NoConsole { .. } => Problem::new(ProblemType::ActionNotAllowed, self.to_string()),
            ServiceError::Store(_) | ServiceError::Runtime { .. } | ServiceError::Internal(_) => {
                Problem::new(ProblemType::RuntimeFailed, self.to_string())
            }
        }
    }
}

/// Whether a create made the instance or found it already made (same spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// A kind's runtime behind one object-safe face, so the service dispatches by kind.
trait AnyRuntime: Send + Sync {
    fn create(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn start(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn stop(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn suspend(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn resume(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn reboot(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn check_template(&self, template: &str) -> Result<(), BoxError>;
    fn check_resize(&self, current: &PlanResources, new: &PlanResources) -> Result<(), BoxError>;
    fn reinstall(&self, r: &mut InstanceRecord, previous_template: &str) -> Result<(), BoxError>;
    fn resize(&self, r: &mut InstanceRecord, previous: &PlanResources) -> Result<(), BoxError>;
    fn reset_password(&self, r: &mut InstanceRecord, hash: &PasswordHash) -> Result<(), BoxError>;
    fn destroy(&self, r: &mut InstanceRecord) -> Result<(), BoxError>;
    fn observe(&self, r: &InstanceRecord) -> Result<InstanceState, BoxError>;
    fn usage(&self, r: &InstanceRecord) -> Result<Usage, BoxError>;
    fn console(&self, r: &InstanceRecord) -> Result<crate::runtime::Console, BoxError>;
    fn check_rescue(&self, r: &InstanceRecord) -> Result<(), BoxError>;
    fn port_name(&self, r: &InstanceRecord) -> String;
}

impl<T: Runtime + Send + Sync> AnyRuntime for T {
    fn create(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::create(self, r).map_err(Into::into)
    }
    fn start(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::start(self, r).map_err(Into::into)
    }
    fn stop(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::stop(self, r).map_err(Into::into)
    }
    fn suspend(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::suspend(self, r).map_err(Into::into)
    }
    fn resume(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::resume(self, r).map_err(Into::into)
    }
    fn reboot(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::reboot(self, r).map_err(Into::into)
    }
    fn check_template(&self, template: &str) -> Result<(), BoxError> {
        Runtime::check_template(self, template).map_err(Into::into)
    }
    fn check_resize(&self, current: &PlanResources, new: &PlanResources) -> Result<(), BoxError> {
        Runtime::check_resize(self, current, new).map_err(Into::into)
    }
    fn reinstall(&self, r: &mut InstanceRecord, previous_template: &str) -> Result<(), BoxError> {
        Runtime::reinstall(self, r, previous_template).map_err(Into::into)
    }
    fn resize(&self, r: &mut InstanceRecord, previous: &PlanResources) -> Result<(), BoxError> {
        Runtime::resize(self, r, previous).map_err(Into::into)
    }
    fn reset_password(&self, r: &mut InstanceRecord, hash: &PasswordHash) -> Result<(), BoxError> {
        Runtime::reset_password(self, r, hash).map_err(Into::into)
    }
    fn destroy(&self, r: &mut InstanceRecord) -> Result<(), BoxError> {
        Runtime::destroy(self, r).map_err(Into::into)
    }
    fn observe(&self, r: &InstanceRecord) -> Result<InstanceState, BoxError> {
        Runtime::observe(self, r).map_err(Into::into)
    }
    fn usage(&self, r: &InstanceRecord) -> Result<Usage, BoxError> {
        Runtime::usage(self, r).map_err(Into::into)
    }
    fn console(&self, r: &InstanceRecord) -> Result<crate::runtime::Console, BoxError> {
        Runtime::console(self, r).map_err(Into::into)
    }
    fn check_rescue(&self, r: &InstanceRecord) -> Result<(), BoxError> {
        Runtime::check_rescue(self, r).map_err(Into::into)
    }
    fn port_name(&self, r: &InstanceRecord) -> String {
        Runtime::port_name(self, r)
    }
}

/// The host: its store, capacity and runtimes.
pub struct Service {
    store: InstanceStore,
    capacity: HostCapacity,
    kvm: Option<KvmRuntime>,
    /// Containers: the runtime, and its start-up reconcile (adopt, finish, sweep orphans).
    containers: Option<ContainerHost>,
    /// One async mutex per instance id: two requests for one instance never interleave.
    locks: Mutex<HashMap<InstanceId, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while deciding admission and writing the admitted record.
    admission: Mutex<()>,
}

fn rt_err(id: InstanceId, op: &'static str) -> impl FnOnce(BoxError) -> ServiceError {
    move |source| ServiceError::Runtime { id, op, source }
}

impl Service {
    /// `kvm` is `None` on a host without a usable `/dev/kvm`; `containers` on a host that
    /// does not run containers. Both work on `store`'s state dir.
    pub fn new(store: InstanceStore, capacity: HostCapacity, kvm: Option<KvmRuntime>, containers: Option<ContainerHost>) -> Arc<Self> {
        Arc::new(Service { store, capacity, kvm, containers, locks: Mutex::new(HashMap::new()), admission: Mutex::new(()) })
    }

    pub fn kinds(&self) -> Vec<InstanceKind> {
        let mut k = Vec::new();
        if self.containers.is_some() {
            k.push(InstanceKind::Container);
        }
        if self.kvm.is_some() {
            k.push(InstanceKind::Kvm);
        }
        k
    }

    fn runtime(&self, kind: InstanceKind) -> Result<&dyn AnyRuntime, ServiceError> {
        match kind {
            InstanceKind::Kvm => self.kvm.as_ref().map(|r| r as &dyn AnyRuntime),
            InstanceKind::Container => self.containers.as_ref().map(|h| &h.rt as &dyn AnyRuntime),
        }
        .ok_or(ServiceError::KindUnsupported(kind))
    }

    async fn lock(&self, id: InstanceId) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(id).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Runs `f` for instance `id` on the blocking pool, with that instance's lock held.
    async fn serialized<T: Send + 'static>(
        self: &Arc<Self>,
        id: InstanceId,
        f: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let _guard = self.lock(id).await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| ServiceError::Internal(format!("operation on {id} panicked or was cancelled: {e}")))?
    }

    // ---- the API's operations ------------------------------------------------------------

    pub async fn create(self: &Arc<Self>, spec: InstanceSpec) -> Result<(Created, InstanceStatus), ServiceError> {
        self.serialized(spec.id, move |s| s.create_blocking(spec)).await
    }

    pub async fn act(self: &Arc<Self>, id: InstanceId, req: HostAction) -> Result<Option<InstanceStatus>, ServiceError> {
        self.serialized(id, move |s| s.act_blocking(id, req)).await
    }

    /// Replaces the instance's firewall: recorded first (so a restart applies it), then put on
    /// its port if the port exists (else the port gets it when it is made). Any state but a
    /// destroy in progress.
    pub async fn set_firewall(self: &Arc<Self>, id: InstanceId, firewall: Firewall) -> Result<InstanceStatus, ServiceError> {
        self.serialized(id, move |s| {
            let mut r = s.store.get(&id)?.ok_or(ServiceError::NotFound(id))?;
            if matches!(r.pending, Some(PendingOp::Destroy)) {
                return Err(ServiceError::NotAllowed { action: Action::Destroy, state: InstanceState::Destroying });
            }
            r.spec.firewall = firewall;
            s.store.put(&r)?;
            s.apply_firewall(&r)?;
            Ok(s.status_of(&r))
        })
        .await
    }

    /// Destroys; `Ok(false)` when there was nothing to destroy.
    pub async fn destroy(self: &Arc<Self>, id: InstanceId) -> Result<bool, ServiceError> {
        self.serialized(id, move |s| s.destroy_blocking(id)).await
    }

    pub async fn status(self: &Arc<Self>, id: InstanceId) -> Result<InstanceStatus, ServiceError> {
        self.serialized(id, move |s| {
            let r = s.store.get(&id)?.ok_or(ServiceError::NotFound(id))?;
            Ok(s.status_of(&r))
        })
        .await
    }

    pub async fn usage(self: &Arc<Self>, id: InstanceId) -> Result<Usage, ServiceError> {
        self.serialized(id, move |s| {
            let r = s.store.get(&id)?.ok_or(ServiceError::NotFound(id))?;
            s.runtime(r.spec.kind())?.usage(&r).map_err(rt_err(id, "usage"))
        })
        .await
    }

    /// Attaches a console to a running instance (see [`Runtime::console`]).
    pub async fn console(self: &Arc<Self>, id: InstanceId) -> Result<crate::runtime::Console, ServiceError> {
        self.serialized(id, move |s| {
            let r = s.store.get(&id)?.ok_or(ServiceError::NotFound(id))?;
            let rt = s.runtime(r.spec.kind())?;
            let state = rt.observe(&r).map_err(rt_err(id, "observe"))?;
            if state != InstanceState::Running {
                return Err(ServiceError::NoConsole { id, state });
            }
            rt.console(&r).map_err(rt_err(id, "console"))
        })
        .await
    }

    /// Whether the instance runs now (a console's relay asks each second).
    pub async fn is_running(self: &Arc<Self>, id: InstanceId) -> bool {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(Some(r)) = this.store.get(&id) else { return false };
            this.runtime(r.spec.kind()).ok().and_then(|rt| rt.observe(&r).ok()) == Some(InstanceState::Running)
        })
        .await
        .unwrap_or(false)
    }

    /// Every instance, observed now. Not serialized with per-instance operations: a
    /// listing shows each instance as it is at that moment.
    pub async fn list(self: &Arc<Self>) -> Result<Vec<InstanceStatus>, ServiceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || Ok(this.store.list()?.iter().map(|r| this.status_of(r)).collect()))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    pub async fn report(self: &Arc<Self>) -> Result<HostReport, ServiceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let records = this.store.list()?;
            Ok(HostReport {
                capacity: this.capacity,
                load: LoadSummary::from(&host::load_of(&records, None)),
                version: env!("CARGO_PKG_VERSION").to_string(),
                kinds: this.kinds(),
            })
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    /// Start-up: the runtimes adopt what runs on the host, then every operation a crash left
    /// unfinished is finished (or a failed create rolled back). Run before serving.
    pub fn adopt(&self) -> Result<Vec<(InstanceId, InstanceState)>, ServiceError> {
        if let Some(kvm) = &self.kvm {
            kvm.adopt().map_err(|e| ServiceError::Internal(format!("adopting KVM machines: {e}")))?;
        }
        if let Some(ct) = &self.containers {
            // Its own reconcile: finishes container ops, adopts live inits, restarts those
            // that should run, sweeps orphaned parts. One bad container must not keep the
            // host from serving the others, so a failure is logged, not fatal.
            match ct.reconcile() {
                Ok(rep) => tracing::info!(?rep, "containers reconciled"),
                Err(e) => tracing::error!(error = %e, "reconciling containers"),
            }
        }
        let mut out = Vec::new();
        for r in self.store.list()? {
            let id = r.spec.id;
            if r.pending.is_some() {
                if let Err(e) = self.finish_pending(r) {
                    tracing::error!(%id, error = %e, "could not finish an interrupted operation");
                }
            }
            if let Some(r) = self.store.get(&id)? {
                // The firewall as recorded, whatever the kernel holds now (a host restart
                // lost it; someone may have changed it by hand).
                if let Err(e) = self.apply_firewall(&r) {
                    tracing::error!(%id, error = %e, "could not re-apply the firewall");
                }
                tracing::info!(%id, state = ?r.state, "adopted");
                out.push((id, r.state));
            }
        }
        Ok(out)
    }

    // ---- blocking bodies (called with the instance's lock held) -----------------------------

    /// Puts the record's firewall on the instance's port when the port exists (a stopped
    /// container has none: its start applies it with the port's other guards).
    fn apply_firewall(&self, r: &InstanceRecord) -> Result<(), ServiceError> {
        let port = self.runtime(r.spec.kind())?.port_name(r);
        if crate::container::net::link_exists(&port) {
            crate::hostnet::firewall::apply(&port, &r.spec.firewall).map_err(|e| ServiceError::Runtime {
                id: r.spec.id,
                op: "firewall",
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    fn status_of(&self, r: &InstanceRecord) -> InstanceStatus {
        let (state, usage) = match self.runtime(r.spec.kind()) {
            Ok(rt) if r.pending.is_none() => (rt.observe(r).unwrap_or(r.state), rt.usage(r).unwrap_or_default()),
            Ok(rt) => (r.state, rt.usage(r).unwrap_or_default()),
            Err(_) => (r.state, Usage::default()),
        };
        InstanceStatus {
            id: r.spec.id,
            kind: r.spec.kind(),
            state,
            should_run: r.should_run,
            pending: r.pending.as_ref().map(pending_name),
            usage,
            addresses: InstanceStatus::addresses_of(&r.spec.network),
            hostname: r.spec.hostname.clone(),
            template: r.spec.template.clone(),
            resources: r.spec.resources.clone(),
            rescue: r.rescue.is_some(),
            firewall: r.spec.firewall.clone(),
        }
    }

    fn create_blocking(&self, spec: InstanceSpec) -> Result<(Created, InstanceStatus), ServiceError> {
        let id = spec.id;
        if let Some(mut existing) = self.store.get(&id)? {
            // The firewall may change after a create (a retried create carries the newest).
            let same = InstanceSpec { firewall: existing.spec.firewall.clone(), ..spec.clone() } == existing.spec;
            if !same || matches!(existing.pending, Some(PendingOp::Destroy)) {
                return Err(ServiceError::SpecConflict(id));
            }
            if existing.spec.firewall != spec.firewall {
                existing.spec.firewall = spec.firewall;
                self.store.put(&existing)?;
                self.apply_firewall(&existing)?;
            }
            // The same create again: finish it if a crash interrupted it, else nothing to do.
            let r = if existing.pending.is_some() { self.finish_pending(existing)? } else { existing };
            return Ok((Created::Existing, self.status_of(&r)));
        }
        let rt = self.runtime(spec.kind())?;
        // An unknown template is the caller's mistake, found before anything is made.
        rt.check_template(&spec.template).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let mut record = {
            let _admission = self.admission.lock().unwrap_or_else(|p| p.into_inner());
            let records = self.store.list()?;
            host::check(&self.capacity, &records, &spec.resources, Some(id)).map_err(|r| ServiceError::Refused(Box::new(r)))?;
            let record = InstanceRecord {
                spec,
                state: InstanceState::Creating,
                should_run: false,
                pending: Some(PendingOp::Create),
                runtime: Default::default(),
                rescue: None,
            };
            self.store.put(&record)?;
            record
        };
        if let Err(e) = rt.create(&mut record) {
            // Roll back: a create that failed leaves nothing behind, and the id can be retried.
            tracing::warn!(%id, error = %e, "create failed: rolling back");
            let _ = rt.destroy(&mut record);
            self.store.remove(&id)?;
            return Err(rt_err(id, "create")(e));
        }
        record.pending = None;
        record.state = rt.observe(&record).unwrap_or(InstanceState::Stopped);
        self.store.put(&record)?;
        tracing::info!(%id, kind = ?record.spec.kind(), "created");
        Ok((Created::New, self.status_of(&record)))
    }

    fn act_blocking(&self, id: InstanceId, req: HostAction) -> Result<Option<InstanceStatus>, ServiceError> {
        if req == HostAction::Destroy {
            self.destroy_blocking(id)?;
            return Ok(None);
        }
        let (rt, mut r) = self.observed(id)?;
        let (action, state) = (req.action(), r.state);
        if !req.allowed_in(state) {
            return Err(ServiceError::NotAllowed { action, state });
        }
        self.perform(rt, &mut r, state, req)?;
        self.finish_action(rt, r, action)
    }

    /// An instance's record, with any interrupted operation finished and its state observed
    /// now: what an action is checked against.
    fn observed(&self, id: InstanceId) -> Result<(&dyn AnyRuntime, InstanceRecord), ServiceError> {
        let mut r = self.store.get(&id)?.ok_or(ServiceError::NotFound(id))?;
        if r.pending.is_some() {
            r = self.finish_pending(r)?;
        }
        let rt = self.runtime(r.spec.kind())?;
        r.state = rt.observe(&r).map_err(rt_err(id, "observe"))?;
        Ok((rt, r))
    }

    /// Does an allowed action (not a destroy) on the kind's runtime; what must survive a crash
    /// (`should_run`, a rescue) is recorded before the runtime acts.
    fn perform(&self, rt: &dyn AnyRuntime, r: &mut InstanceRecord, state: InstanceState, req: HostAction) -> Result<(), ServiceError> {
        let id = r.spec.id;
        match req {
            HostAction::Start => {
                r.should_run = true;
                self.store.put(r)?;
                rt.start(r).map_err(rt_err(id, "start"))?;
            }
            HostAction::Stop => {
                r.should_run = false;
                self.store.put(r)?;
                rt.stop(r).map_err(rt_err(id, "stop"))?;
            }
            HostAction::Restart => {
                r.should_run = true;
                self.store.put(r)?;
                rt.reboot(r).map_err(rt_err(id, "restart"))?;
            }
            HostAction::Suspend => {
                if state != InstanceState::Suspended {
                    rt.suspend(r).map_err(rt_err(id, "suspend"))?;
                }
            }
            HostAction::Resume => {
                if state != InstanceState::Running {
                    rt.resume(r).map_err(rt_err(id, "resume"))?;
                }
            }
            HostAction::Reinstall { template, access } => self.reinstall(rt, r, template, access)?,
            HostAction::Resize { resources } => self.resize(rt, r, resources)?,
            HostAction::ResetPassword { root_password_hash } => {
                rt.reset_password(r, &root_password_hash).map_err(rt_err(id, "reset_password"))?;
                r.spec.access.root_password_hash = Some(root_password_hash);
            }
            HostAction::Rescue { access } => {
                rt.check_rescue(r).map_err(|e| ServiceError::Invalid(e.to_string()))?;
                // Recorded first: a crash in between boots the rescue system on adoption.
                r.rescue = Some(access);
                r.should_run = true;
                self.store.put(r)?;
                rt.reboot(r).map_err(rt_err(id, "rescue"))?;
            }
            HostAction::LeaveRescue => {
                r.rescue = None;
                r.should_run = true;
                self.store.put(r)?;
                rt.reboot(r).map_err(rt_err(id, "leave_rescue"))?;
            }
            HostAction::Destroy => unreachable!("act_blocking destroys before it observes"),
        }
        Ok(())
    }

    /// Checked before any side effect; then the new template and access recorded with the
    /// operation pending, and the kind's own steps (see [`Runtime::reinstall`]).
    fn reinstall(
        &self,
        rt: &dyn AnyRuntime,
        r: &mut InstanceRecord,
        template: Option<String>,
        access: vessel_core::Access,
    ) -> Result<(), ServiceError> {
        let id = r.spec.id;
        let template = template.unwrap_or_else(|| r.spec.template.clone());
        if template.is_empty() {
            return Err(ServiceError::Invalid("reinstall needs a template name".into()));
        }
        rt.check_template(&template).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let previous = std::mem::replace(&mut r.spec.template, template.clone());
        r.spec.access = access;
        r.pending = Some(PendingOp::Reinstall { template });
        self.store.put(r)?;
        if let Err(e) = rt.reinstall(r, &previous) {
            if r.pending.is_none() {
                // The kind rolled back to the previous template: record that.
                self.store.put(r)?;
            }
            return Err(rt_err(id, "reinstall")(e));
        }
        Ok(())
    }

    /// Checked by the kind and by admission (both sizes count until it is done, see
    /// [`host::load_of`]), then the kind's own steps (see [`Runtime::resize`]).
    fn resize(&self, rt: &dyn AnyRuntime, r: &mut InstanceRecord, new: PlanResources) -> Result<(), ServiceError> {
        let id = r.spec.id;
        if new.kind() != r.spec.kind() {
            return Err(ServiceError::Invalid("resize cannot change the instance's kind".into()));
        }
        rt.check_resize(&r.spec.resources, &new).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let previous = {
            let _admission = self.admission.lock().unwrap_or_else(|p| p.into_inner());
            let records = self.store.list()?;
            host::check(&self.capacity, &records, &new, Some(id)).map_err(|r| ServiceError::Refused(Box::new(r)))?;
            let previous = std::mem::replace(&mut r.spec.resources, new);
            r.pending = Some(PendingOp::Resize { previous: previous.clone() });
            self.store.put(r)?;
            previous
        };
        rt.resize(r, &previous).map_err(rt_err(id, "resize"))
    }

    /// The last step of every action: the operation is done, the observed state recorded.
    fn finish_action(&self, rt: &dyn AnyRuntime, mut r: InstanceRecord, action: Action) -> Result<Option<InstanceStatus>, ServiceError> {
        let id = r.spec.id;
        r.pending = None;
        r.state = rt.observe(&r).unwrap_or(r.state);
        self.store.put(&r)?;
        tracing::info!(%id, ?action, state = ?r.state, "action done");
        Ok(Some(self.status_of(&r)))
    }

    fn destroy_blocking(&self, id: InstanceId) -> Result<bool, ServiceError> {
        let Some(mut r) = self.store.get(&id)? else { return Ok(false) };
        r.pending = Some(PendingOp::Destroy);
        r.state = InstanceState::Destroying;
        r.should_run = false;
        self.store.put(&r)?;
        self.runtime(r.spec.kind())?.destroy(&mut r).map_err(rt_err(id, "destroy"))?;
        self.store.remove(&id)?;
        tracing::info!(%id, "destroyed");
        Ok(true)
    }

    /// Finishes the operation a crash interrupted; returns the record as it is afterwards
    /// (for a finished destroy, the error `NotFound`).
    fn finish_pending(&self, mut r: InstanceRecord) -> Result<InstanceRecord, ServiceError> {
        let id = r.spec.id;
        let rt = self.runtime(r.spec.kind())?;
        tracing::info!(%id, op = ?r.pending, "finishing an interrupted operation");
        match r.pending.clone() {
            None => return Ok(r),
            Some(PendingOp::Create) => {
                if let Err(e) = rt.create(&mut r) {
                    let _ = rt.destroy(&mut r);
                    self.store.remove(&id)?;
                    return Err(rt_err(id, "create")(e));
                }
            }
            Some(PendingOp::Destroy) => {
                self.destroy_blocking(id)?;
                return Err(ServiceError::NotFound(id));
            }
            Some(PendingOp::Reinstall { template }) => {
                r.spec.template = template.clone();
                // No older template is known here: a kind that rolls back retries this one.
                rt.reinstall(&mut r, &template).map_err(rt_err(id, "reinstall"))?;
            }
            // The new resources are already in the spec: apply them.
            Some(PendingOp::Resize { previous }) => rt.resize(&mut r, &previous).map_err(rt_err(id, "resize"))?,
        }
        r.pending = None;
        r.state = rt.observe(&r).unwrap_or(InstanceState::Stopped);
        self.store.put(&r)?;
        Ok(r)
    }
}

fn pending_name(p: &PendingOp) -> String {
    match p {
        PendingOp::Create => "create",
        PendingOp::Destroy => "destroy",
        PendingOp::Reinstall { .. } => "reinstall",
        PendingOp::Resize { .. } => "resize",
    }
    .to_string()
}

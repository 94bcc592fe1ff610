//! One home for a VPS's life in the panel: what its desired state is, who holds it suspended,
//! and what each party may ask of it. The customer's pages, the reseller API, billing
//! (payments, dunning) and an account's suspension all come here:
//!
//! 1. [`lock`] — the one function that locks a VPS, always **subscription first, then
//!    instance** (the order billing has always used), so a customer's action racing a payment
//!    waits instead of deadlocking. Money comes before both: a caller that also moves the
//!    payer's credit (a plan change) locks that balance row first ([`subscription_of`] finds
//!    it without a lock);
//! 2. [`transition`] — pure: from the locked [`VpsState`] and a [`Request`] to an [`Effect`]
//!    or a [`Refusal`], table-tested over every pair;
//! 3. [`apply`] — writes the effect and its durable job in the caller's transaction.
//!
//! The orchestration then makes the host follow the desired state ([`crate::orchestrator`]).

use crate::db::{instances as sql, Tx};
use crate::ids::{AccountId, InstanceId, SubscriptionId};
use crate::jobs::Job;
use crate::subscriptions::SubscriptionStatus;
use chrono::{DateTime, Utc};
use vessel_core::{Action, HostAction, InstanceState};

pg_enum! {
    /// What the panel wants a VPS to be (`desired_state` in the schema).
    pub enum DesiredState in "desired_state" {
        Running = "running",
        Stopped = "stopped",
        Suspended = "suspended",
        Terminated = "terminated",
    }
}

impl DesiredState {
    /// Has a host that reports `observed` caught up with this? (A terminated VPS has caught
    /// up when it is gone, which hosts do not report: see [`settled`].)
    pub fn converged(self, observed: InstanceState) -> bool {
        matches!(
            (self, observed),
            (DesiredState::Running, InstanceState::Running)
                | (DesiredState::Stopped, InstanceState::Stopped)
                | (DesiredState::Suspended, InstanceState::Suspended)
        )
    }

    /// The one host action that moves an instance the host reports as `observed` towards this
    /// state, or `None` when there is nothing to ask (converged, or terminated: that is a
    /// destroy, not a step). The reconciler's converge job repeats it until converged.
    pub fn next_host_action(self, observed: InstanceState) -> Option<HostAction> {
        use DesiredState as D;
        use InstanceState as S;
        if self.converged(observed) {
            return None;
        }
        Some(match (self, observed) {
            (D::Running | D::Stopped, S::Suspended) => HostAction::Resume,
            (D::Running, _) | (D::Suspended, S::Stopped | S::Crashed) => HostAction::Start,
            (D::Stopped, _) => HostAction::Stop,
            (D::Suspended, _) => HostAction::Suspend,
            (D::Terminated, _) => return None,
        })
    }
}

pg_enum! {
    /// The panel's record of what the host has (`observed_state` in the schema): what a host
    /// reports ([`InstanceState`]), and what only the panel knows (not placed yet, gone, a host
    /// gone silent, a create that failed).
    pub enum ObservedState in "observed_state" {
        /// Not placed on a host yet.
        Pending = "pending",
        /// No host has room; the scheduler retries.
        WaitingForCapacity = "waiting_for_capacity",
        Creating = "creating",
        Stopped = "stopped",
        Running = "running",
        Suspended = "suspended",
        Crashed = "crashed",
        Destroying = "destroying",
        /// Its host no longer has it.
        Destroyed = "destroyed",
        /// Its host stopped answering.
        Unknown = "unknown",
        Error = "error",
    }
}

impl From<InstanceState> for ObservedState {
    fn from(s: InstanceState) -> Self {
        match s {
            InstanceState::Creating => ObservedState::Creating,
            InstanceState::Stopped => ObservedState::Stopped,
            InstanceState::Running => ObservedState::Running,
            InstanceState::Suspended => ObservedState::Suspended,
            InstanceState::Crashed => ObservedState::Crashed,
            InstanceState::Destroying => ObservedState::Destroying,
        }
    }
}

/// Has the panel's record of what the host has caught up with `desired`? The server pages
/// reload themselves until it has.
pub fn settled(desired: DesiredState, observed: ObservedState) -> bool {
    desired.as_str() == observed.as_str() || (desired == DesiredState::Terminated && observed == ObservedState::Destroyed)
}

/// A server's state as its customer reads it: plain words, never the internal names (no
/// `waiting_for_capacity`, no host). The badge class beside it: ok, warn or bad.
pub fn customer_state(desired: DesiredState, observed: ObservedState) -> (&'static str, &'static str) {
    use ObservedState as O;
    match (desired, observed) {
        (DesiredState::Terminated, _) => ("Cancelled", "bad"),
        (_, O::Suspended) | (DesiredState::Suspended, _) => ("Suspended", "bad"),
        (_, O::Pending) | (_, O::Creating) => ("Being set up", "warn"),
        (_, O::WaitingForCapacity) => ("Waiting for a free slot", "warn"),
        (DesiredState::Running, O::Running) => ("Running", "ok"),
        (DesiredState::Stopped, O::Running) => ("Stopping", "warn"),
        (DesiredState::Running, O::Stopped) => ("Starting", "warn"),
        (_, O::Stopped) => ("Stopped", ""),
        (_, O::Crashed) => ("Stopped unexpectedly", "bad"),
        (_, O::Destroying) | (_, O::Destroyed) => ("Being removed", ""),
        (_, O::Unknown) => ("Not reachable right now", "warn"),
        (_, O::Error) => ("Needs our attention", "bad"),
    }
}

/// What the customer is told beside a state that needs explaining: never the raw error,
/// which can name internal hosts and resources.
pub fn customer_note(observed: ObservedState) -> Option<&'static str> {
    use ObservedState as O;
    Some(match observed {
        O::WaitingForCapacity => "Your server is paid for and waits for room on one of our hosts; it is set up as soon as there is, with nothing to do on your side. If it waits too long, the payment comes back as credit.",
        O::Pending | O::Creating => "Your server is being set up; this page updates by itself.",
        O::Unknown => "We cannot reach the machine your server runs on at the moment; it keeps running if it was, and this page updates when we can.",
        O::Crashed | O::Error => "Something went wrong with your server on our side, and our team has been told. You can try starting it again; if it stays like this, contact support.",
        _ => return None,
    })
}

/// Everything a transition decides on, as locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpsState {
    pub desired: DesiredState,
    /// The owner's (reseller's or provider's) suspension, and the state it interrupted.
    pub owner_suspended_from: Option<DesiredState>,
    /// Held suspended because its customer account is.
    pub with_account: bool,
    /// Its subscription's status (`None`: no subscription).
    pub billing: Option<SubscriptionStatus>,
    /// It boots its rescue system (with its own disk attached), not its own.
    pub rescue: bool,
}

impl VpsState {
    fn billing_suspended(&self) -> bool {
        self.billing == Some(SubscriptionStatus::Suspended)
    }
}

/// What someone asks of a VPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    // The customer (web) or its owner (API).
    Start,
    Stop,
    Restart,
    Reinstall,
    /// May it change plans now? (Proration does the change; see `resellers::servers`.)
    Resize,
    /// Boot the rescue system with its disk attached (a system that no longer boots).
    Rescue,
    /// Boot its own system again.
    LeaveRescue,
    // The owner (reseller API, or the provider's admin key).
    Suspend,
    Unsuspend,
    Terminate,
    // Billing.
    /// An invoice is overdue past the grace (dunning).
    BillingSuspend,
    /// The overdue invoices are paid.
    BillingUnsuspend,
    /// Overdue past termination (dunning).
    BillingTerminate,
    // The customer's account.
    AccountSuspend,
    AccountResume,
}

impl Request {
    pub const ALL: [Request; 15] = [
        Request::Start,
        Request::Stop,
        Request::Restart,
        Request::Reinstall,
        Request::Resize,
        Request::Rescue,
        Request::LeaveRescue,
        Request::Suspend,
        Request::Unsuspend,
        Request::Terminate,
        Request::BillingSuspend,
        Request::BillingUnsuspend,
        Request::BillingTerminate,
        Request::AccountSuspend,
        Request::AccountResume,
    ];
}

/// Why a request is refused in the VPS's state; each caller words it for its audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this VPS is terminated")]
    Terminated,
    /// Its desired state is suspended (by its owner, its account or billing).
    #[error("this VPS is suspended")]
    Suspended,
    #[error("this VPS is suspended for an overdue invoice")]
    BillingSuspended,
    #[error("this VPS is not running")]
    NotRunning,
    #[error("this VPS is already suspended")]
    AlreadySuspended,
    #[error("this VPS is not suspended")]
    NotSuspended,
    #[error("this VPS's customer account is suspended")]
    AccountSuspended,
    #[error("this VPS has no subscription to bill")]
    NoSubscription,
    #[error("a {0} VPS cannot change plans")]
    NotActive(SubscriptionStatus),
    #[error("this VPS is in rescue: leave rescue first")]
    InRescue,
    #[error("this VPS is not in rescue")]
    NotInRescue,
}

/// What a transition does: each field `None` leaves that part as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    pub desired: Option<DesiredState>,
    /// `Some(x)`: set the owner's suspension to `x` (`Some(Some(from))` sets, `Some(None)` lifts).
    pub owner_suspended_from: Option<Option<DesiredState>>,
    pub with_account: Option<bool>,
    /// `Some(on)`: enter (`true`) or leave rescue.
    pub rescue: Option<bool>,
    pub job: Option<JobKind>,
}

/// The durable job an effect queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// An action the host carries out (start, stop, restart, reinstall, rescue and back).
    Action(Action),
    /// Converge on the (new) desired state, saying why.
    Converge { reason: &'static str },
}

impl Effect {
    pub fn is_none(&self) -> bool {
        *self == Effect::default()
    }
}

/// The rules, in one place.
pub fn transition(s: &VpsState, r: Request) -> Result<Effect, Refusal> {
    use DesiredState as D;
    use Request as R;
    let none = Effect::default();
    let converge = |to: DesiredState, reason| Effect { desired: Some(to), job: Some(JobKind::Converge { reason }), ..none };
    // Billing and the account never act on a terminated VPS (their locks do not even find it).
    if s.desired == D::Terminated {
        return match r {
            R::BillingSuspend | R::BillingUnsuspend | R::BillingTerminate | R::AccountSuspend | R::AccountResume => Ok(none),
            _ => Err(Refusal::Terminated),
        };
    }
    // What start, stop, restart, reinstall and resize need: neither suspension.
    let usable = || match (s.desired, s.billing_suspended()) {
        (D::Suspended, _) => Err(Refusal::Suspended),
        (_, true) => Err(Refusal::BillingSuspended),
        _ => Ok(()),
    };
    match r {
        R::Start => usable().map(|()| Effect { desired: Some(D::Running), job: Some(JobKind::Action(Action::Start)), ..none }),
        R::Stop => usable().map(|()| Effect { desired: Some(D::Stopped), job: Some(JobKind::Action(Action::Stop)), ..none }),
        R::Restart => {
            usable()?;
            if s.desired != D::Running {
                return Err(Refusal::NotRunning);
            }
            Ok(Effect { job: Some(JobKind::Action(Action::Restart)), ..none })
        }
        // A new system or plan under a rescue session would pull the disk from under it.
        R::Reinstall | R::Resize if s.rescue => usable().and(Err(Refusal::InRescue)),
        R::Reinstall => usable().map(|()| Effect { job: Some(JobKind::Action(Action::Reinstall)), ..none }),
        // Both boot (the rescue system, or its own again): it is to run afterwards.
        R::Rescue => {
            usable().map(|()| Effect { desired: Some(D::Running), rescue: Some(true), job: Some(JobKind::Action(Action::Rescue)), ..none })
        }
        R::LeaveRescue => {
            usable()?;
            if !s.rescue {
                return Err(Refusal::NotInRescue);
            }
            Ok(Effect { desired: Some(D::Running), rescue: Some(false), job: Some(JobKind::Action(Action::LeaveRescue)), ..none })
        }
        R::Resize => {
            usable()?;
            match s.billing {
                None => Err(Refusal::NoSubscription),
                Some(SubscriptionStatus::Active) => Ok(none),
                Some(other) => Err(Refusal::NotActive(other)),
            }
        }
        R::Suspend => {
            if s.desired == D::Suspended && !s.billing_suspended() {
                return Err(Refusal::AlreadySuspended);
            }
            // What to return to: the state before, or what billing would resume to.
            let from = if s.desired == D::Stopped { D::Stopped } else { D::Running };
            Ok(Effect { owner_suspended_from: Some(Some(from)), ..converge(D::Suspended, "api") })
        }
        R::Unsuspend => {
            if s.desired != D::Suspended {
                return Err(Refusal::NotSuspended);
            }
            if s.with_account {
                return Err(Refusal::AccountSuspended);
            }
            if s.billing_suspended() {
                return Err(Refusal::BillingSuspended);
            }
            let back = s.owner_suspended_from.unwrap_or(D::Running);
            Ok(Effect { owner_suspended_from: Some(None), ..converge(back, "api") })
        }
        R::Terminate => Ok(converge(D::Terminated, "api")),
        R::BillingSuspend => Ok(converge(D::Suspended, "overdue")),
        // What its owner (or its account) suspended stays suspended: paying lifts billing's
        // suspension only, back to running.
        R::BillingUnsuspend if s.owner_suspended_from.is_some() => Ok(none),
        R::BillingUnsuspend => Ok(converge(D::Running, "paid")),
        R::BillingTerminate => Ok(converge(D::Terminated, "overdue")),
        // A suspension its owner already made is kept as it is; one billing made is held too,
        // so paying does not resume it while the account is suspended.
        R::AccountSuspend if s.with_account || s.owner_suspended_from.is_some() => Ok(none),
        R::AccountSuspend => {
            let from = match s.desired {
                D::Stopped => D::Stopped,
                D::Running => D::Running,
                // Billing's suspension: billing would resume it to running.
                D::Suspended if s.billing_suspended() => D::Running,
                _ => return Ok(none),
            };
            Ok(Effect { owner_suspended_from: Some(Some(from)), with_account: Some(true), ..converge(D::Suspended, "customer suspended") })
        }
        R::AccountResume if !s.with_account => Ok(none),
        // Back to the state it had, unless billing holds it (then billing's payment resumes it).
        R::AccountResume if s.billing_suspended() => Ok(Effect { owner_suspended_from: Some(None), with_account: Some(false), ..none }),
        R::AccountResume => {
            let back = s.owner_suspended_from.unwrap_or(D::Running);
            Ok(Effect { owner_suspended_from: Some(None), with_account: Some(false), ..converge(back, "customer reactivated") })
        }
    }
}

/// Which VPS to lock. Every variant goes through [`lock`], so through one lock order.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// One VPS by id, seen as `scope` may see it.
    Id(InstanceId, Scope),
    /// The live VPS of a subscription (billing).
    Subscription(SubscriptionId),
    /// Every live VPS of a customer account (its suspension).
    Account(AccountId),
}

/// Who may see a VPS: its own customer, a reseller's customers, or everyone (admin, billing).
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope {
    pub owner: Option<AccountId>,
    pub reseller: Option<AccountId>,
}

impl Scope {
    pub const ALL: Scope = Scope { owner: None, reseller: None };
    pub fn customer(id: AccountId) -> Scope {
        Scope { owner: Some(id), reseller: None }
    }
    pub fn reseller(id: Option<AccountId>) -> Scope {
        Scope { owner: None, reseller: id }
    }
}

/// A VPS as locked: its state and what callers need beside it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Locked {
    pub id: InstanceId,
    pub customer_id: AccountId,
    pub plan_id: i64,
    pub subscription_id: Option<SubscriptionId>,
    /// The account its subscription bills.
    pub payer_id: Option<AccountId>,
    pub desired: DesiredState,
    pub owner_suspended_from: Option<DesiredState>,
    pub with_account: bool,
    pub billing: Option<SubscriptionStatus>,
    pub rescue: bool,
}

impl Locked {
    pub fn state(&self) -> VpsState {
        VpsState {
            desired: self.desired,
            owner_suspended_from: self.owner_suspended_from,
            with_account: self.with_account,
            billing: self.billing,
            rescue: self.rescue,
        }
    }
}

/// Locks the target's subscriptions, then their instances (by id), and returns them.
/// Every path that changes a VPS's desired state or suspensions takes its locks here.
pub async fn lock(tx: &mut Tx<'_>, target: Target) -> Result<Vec<Locked>, sqlx::Error> {
    let filter = match target {
        Target::Id(id, scope) => sql::VpsFilter { id: Some(id), owner: scope.owner, reseller: scope.reseller, ..Default::default() },
        Target::Subscription(sub) => sql::VpsFilter { subscription: Some(sub), live_only: true, ..Default::default() },
        Target::Account(account) => sql::VpsFilter { owner: Some(account), live_only: true, ..Default::default() },
    };
    sql::lock_vps(tx, &filter).await
}

/// The subscription of a VPS `scope` may see, read without a lock: for a caller that must lock
/// something that comes before it in the lock order (a payer's balance row, for a plan change).
pub async fn subscription_of(tx: &mut Tx<'_>, id: InstanceId, scope: Scope) -> Result<Option<SubscriptionId>, sqlx::Error> {
    sql::subscription_of_vps(tx, &sql::VpsFilter { id: Some(id), owner: scope.owner, reseller: scope.reseller, ..Default::default() }).await
}

/// Writes an effect on a locked VPS and queues its job, in the caller's transaction.
pub async fn apply(tx: &mut Tx<'_>, v: &Locked, e: &Effect, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if let Some(d) = e.desired {
        sql::set_desired(tx, v.id, d, now).await?;
    }
    if let Some(from) = e.owner_suspended_from {
        sql::set_owner_suspended_from(tx, v.id, from).await?;
    }
    if let Some(on) = e.with_account {
        sql::set_suspended_with_account(tx, v.id, on).await?;
    }
    if let Some(on) = e.rescue {
        sql::set_rescue(tx, v.id, on).await?;
    }
    let job = match e.job {
        None => return Ok(()),
        Some(JobKind::Action(action)) => Job::Action { instance_id: v.id, action },
        Some(JobKind::Converge { reason }) => {
            Job::Converge { instance_id: v.id, desired: Some(e.desired.unwrap_or(v.desired)), reason: Some(reason.to_string()) }
        }
    };
    crate::jobs::enqueue(tx, job).await?;
    Ok(())
}

/// Why a request on one VPS did not happen.
#[derive(Debug, thiserror::Error)]
pub enum VpsError {
    /// Also what another tenant's VPS looks like.
    #[error("no such VPS")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Locks one VPS, decides and applies `r`; returns the VPS as it was locked (callers that do
/// more, such as a plan change, go on from it).
pub async fn request(tx: &mut Tx<'_>, id: InstanceId, scope: Scope, r: Request, now: DateTime<Utc>) -> Result<Locked, VpsError> {
    let v = lock(tx, Target::Id(id, scope)).await?.into_iter().next().ok_or(VpsError::NotFound)?;
    let e = transition(&v.state(), r)?;
    apply(tx, &v, &e, now).await?;
    Ok(v)
}

/// Applies `r` to every VPS of `target` it changes (billing, an account); refusals cannot
/// happen for these requests and are logged, not fatal. Returns how many changed.
pub async fn request_all(tx: &mut Tx<'_>, target: Target, r: Request, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
    let mut n = 0;
    for v in lock(tx, target).await? {
        match transition(&v.state(), r) {
            Ok(e) if e.is_none() => {}
            Ok(e) => {
                apply(tx, &v, &e, now).await?;
                n += 1;
            }
            Err(why) => tracing::warn!(instance = %v.id, ?r, %why, "refused"),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DesiredState as D;
    use Request as R;
    use SubscriptionStatus as S;

    /// Every state a VPS can be locked in.
    fn states() -> Vec<VpsState> {
        let mut v = Vec::new();
        for desired in D::ALL {
            for owner_suspended_from in [None, Some(D::Running), Some(D::Stopped)] {
                for with_account in [false, true] {
                    for billing in [None, Some(S::Pending), Some(S::Active), Some(S::Suspended), Some(S::Terminated), Some(S::Cancelled)] {
                        for rescue in [false, true] {
                            v.push(VpsState { desired, owner_suspended_from, with_account, billing, rescue });
                        }
                    }
                }
            }
        }
        v
    }

    /// The rules written a second way (as the two copies in `instances.rs` and
    /// `resellers/servers.rs` and the billing and account paths said them before this module),
    /// compared over every (state, request) pair.
    fn expected(s: &VpsState, r: Request) -> Result<Effect, Refusal> {
        let none = Effect::default();
        let billing_suspended = s.billing == Some(S::Suspended);
        let conv = |d, reason| Effect { desired: Some(d), job: Some(JobKind::Converge { reason }), ..none };
        let act = |d: Option<D>, a| Effect { desired: d, job: Some(JobKind::Action(a)), ..none };
        let terminated = s.desired == D::Terminated;
        let gate = if terminated {
            Err(Refusal::Terminated)
        } else if s.desired == D::Suspended {
            Err(Refusal::Suspended)
        } else if billing_suspended {
            Err(Refusal::BillingSuspended)
        } else {
            Ok(())
        };
        match r {
            R::Start => gate.map(|_| act(Some(D::Running), Action::Start)),
            R::Stop => gate.map(|_| act(Some(D::Stopped), Action::Stop)),
            R::Restart => {
                gate.and_then(|_| if s.desired == D::Running { Ok(act(None, Action::Restart)) } else { Err(Refusal::NotRunning) })
            }
            R::Reinstall | R::Resize if s.rescue => gate.and(Err(Refusal::InRescue)),
            R::Reinstall => gate.map(|_| act(None, Action::Reinstall)),
            R::Rescue => gate.map(|_| Effect { rescue: Some(true), ..act(Some(D::Running), Action::Rescue) }),
            R::LeaveRescue => gate.and_then(|_| match s.rescue {
                true => Ok(Effect { rescue: Some(false), ..act(Some(D::Running), Action::LeaveRescue) }),
                false => Err(Refusal::NotInRescue),
            }),
            R::Resize => gate.and(match s.billing {
                None => Err(Refusal::NoSubscription),
                Some(S::Active) => Ok(none),
                Some(x) => Err(Refusal::NotActive(x)),
            }),
            _ if terminated && matches!(r, R::Suspend | R::Unsuspend | R::Terminate) => Err(Refusal::Terminated),
            _ if terminated => Ok(none),
            R::Suspend if s.desired == D::Suspended && !billing_suspended => Err(Refusal::AlreadySuspended),
            R::Suspend => Ok(Effect {
                owner_suspended_from: Some(Some(if s.desired == D::Stopped { D::Stopped } else { D::Running })),
                ..conv(D::Suspended, "api")
            }),
            R::Unsuspend if s.desired != D::Suspended => Err(Refusal::NotSuspended),
            R::Unsuspend if s.with_account => Err(Refusal::AccountSuspended),
            R::Unsuspend if billing_suspended => Err(Refusal::BillingSuspended),
            R::Unsuspend => Ok(Effect { owner_suspended_from: Some(None), ..conv(s.owner_suspended_from.unwrap_or(D::Running), "api") }),
            R::Terminate => Ok(conv(D::Terminated, "api")),
            R::BillingSuspend => Ok(conv(D::Suspended, "overdue")),
            R::BillingUnsuspend => Ok(if s.owner_suspended_from.is_some() { none } else { conv(D::Running, "paid") }),
            R::BillingTerminate => Ok(conv(D::Terminated, "overdue")),
            R::AccountSuspend => Ok(if s.with_account || s.owner_suspended_from.is_some() {
                none
            } else {
                match (s.desired, billing_suspended) {
                    (D::Stopped, _) => Effect {
                        owner_suspended_from: Some(Some(D::Stopped)),
                        with_account: Some(true),
                        ..conv(D::Suspended, "customer suspended")
                    },
                    (D::Running, _) | (D::Suspended, true) => Effect {
                        owner_suspended_from: Some(Some(D::Running)),
                        with_account: Some(true),
                        ..conv(D::Suspended, "customer suspended")
                    },
                    _ => none,
                }
            }),
            R::AccountResume => Ok(match (s.with_account, billing_suspended) {
                (false, _) => none,
                (true, true) => Effect { owner_suspended_from: Some(None), with_account: Some(false), ..none },
                (true, false) => Effect {
                    owner_suspended_from: Some(None),
                    with_account: Some(false),
                    ..conv(s.owner_suspended_from.unwrap_or(D::Running), "customer reactivated")
                },
            }),
        }
    }

    #[test]
    fn every_state_and_request_pair_follows_the_rules() {
        let states = states();
        assert_eq!(states.len(), 4 * 3 * 2 * 6 * 2);
        let mut pairs = 0;
        for s in &states {
            for r in Request::ALL {
                assert_eq!(transition(s, r), expected(s, r), "{s:?} {r:?}");
                pairs += 1;
            }
        }
        assert_eq!(pairs, 288 * 15);
    }

    /// The cases people ask about, spelled out.
    #[test]
    fn the_suspensions_stack_and_lift_in_the_right_order() {
        let running =
            VpsState { desired: D::Running, owner_suspended_from: None, with_account: false, billing: Some(S::Active), rescue: false };
        // Billing suspends; the owner suspends too; paying leaves the owner's suspension.
        let billed = VpsState { desired: D::Suspended, billing: Some(S::Suspended), ..running };
        let both = VpsState { owner_suspended_from: Some(D::Running), ..billed };
        assert_eq!(transition(&both, R::BillingUnsuspend), Ok(Effect::default()));
        assert_eq!(transition(&billed, R::BillingUnsuspend).unwrap().desired, Some(D::Running));
        // The owner cannot lift billing's suspension, nor the account's.
        assert_eq!(transition(&both, R::Unsuspend), Err(Refusal::BillingSuspended));
        let by_account = VpsState { owner_suspended_from: Some(D::Stopped), with_account: true, desired: D::Suspended, ..running };
        assert_eq!(transition(&by_account, R::Unsuspend), Err(Refusal::AccountSuspended));
        assert_eq!(transition(&by_account, R::AccountResume).unwrap().desired, Some(D::Stopped), "back to what it was");
        // A customer cannot start a suspended VPS, and a stopped one does not restart.
        assert_eq!(transition(&billed, R::Start), Err(Refusal::Suspended));
        assert_eq!(transition(&VpsState { desired: D::Stopped, ..running }, R::Restart), Err(Refusal::NotRunning));
    }

    /// Rescue, spelled out: a crashed (or stopped) VPS goes into rescue and runs; in rescue it
    /// cannot be reinstalled or resized; leaving boots its own system; a suspended one does
    /// neither.
    #[test]
    fn rescue_boots_and_leaving_boots_the_own_system() {
        let stopped =
            VpsState { desired: D::Stopped, owner_suspended_from: None, with_account: false, billing: Some(S::Active), rescue: false };
        let e = transition(&stopped, R::Rescue).unwrap();
        assert_eq!((e.desired, e.rescue, e.job), (Some(D::Running), Some(true), Some(JobKind::Action(Action::Rescue))));
        let in_rescue = VpsState { desired: D::Running, rescue: true, ..stopped };
        assert_eq!(transition(&in_rescue, R::Reinstall), Err(Refusal::InRescue));
        assert_eq!(transition(&in_rescue, R::Resize), Err(Refusal::InRescue));
        assert!(transition(&in_rescue, R::Restart).is_ok(), "a restart in rescue boots the rescue system again");
        let e = transition(&in_rescue, R::LeaveRescue).unwrap();
        assert_eq!((e.desired, e.rescue, e.job), (Some(D::Running), Some(false), Some(JobKind::Action(Action::LeaveRescue))));
        assert_eq!(transition(&stopped, R::LeaveRescue), Err(Refusal::NotInRescue));
        let billed = VpsState { desired: D::Suspended, billing: Some(S::Suspended), ..in_rescue };
        assert_eq!(transition(&billed, R::LeaveRescue), Err(Refusal::Suspended));
        assert_eq!(transition(&VpsState { desired: D::Terminated, ..stopped }, R::Rescue), Err(Refusal::Terminated));
    }

    /// What a host does with each step in each state (by the host's own rules): enough of a
    /// host to check that converging from anywhere stable arrives.
    fn host_after(a: &HostAction, s: InstanceState) -> InstanceState {
        use InstanceState as S;
        match (a, s) {
            (HostAction::Start, _) => S::Running,
            (HostAction::Stop, _) => S::Stopped,
            (HostAction::Suspend, _) => S::Suspended,
            (HostAction::Resume, _) => S::Running,
            (other, s) => panic!("converge never asks {other:?} (in {s:?})"),
        }
    }

    #[test]
    fn the_converge_step_for_every_desired_and_reported_state() {
        use HostAction as A;
        use InstanceState as S;
        let all = [S::Creating, S::Stopped, S::Running, S::Suspended, S::Crashed, S::Destroying];
        let table: [(D, [Option<A>; 6]); 4] = [
            //            Creating          Stopped           Running          Suspended         Crashed           Destroying
            (D::Running, [Some(A::Start), Some(A::Start), None, Some(A::Resume), Some(A::Start), Some(A::Start)]),
            (D::Stopped, [Some(A::Stop), None, Some(A::Stop), Some(A::Resume), Some(A::Stop), Some(A::Stop)]),
            (D::Suspended, [Some(A::Suspend), Some(A::Start), Some(A::Suspend), None, Some(A::Start), Some(A::Suspend)]),
            (D::Terminated, [None, None, None, None, None, None]),
        ];
        assert_eq!(table.len(), D::ALL.len());
        for (d, row) in &table {
            for (o, want) in all.iter().zip(row) {
                assert_eq!(d.next_host_action(*o).as_ref(), want.as_ref(), "{d:?} reported {o:?}");
            }
        }
        // From every state a host settles in, each step is one the host takes in that state,
        // and the converge job's four steps are enough.
        for d in [D::Running, D::Stopped, D::Suspended] {
            for start in [S::Stopped, S::Running, S::Suspended, S::Crashed] {
                let mut s = start;
                let mut steps = 0;
                while let Some(a) = d.next_host_action(s) {
                    assert!(a.allowed_in(s), "{d:?}: {a:?} in {s:?}");
                    s = host_after(&a, s);
                    steps += 1;
                    assert!(steps <= 4, "{d:?} from {start:?} does not converge");
                }
                assert!(d.converged(s), "{d:?} from {start:?} ended in {s:?}");
            }
        }
    }

    #[test]
    fn converged_and_settled_agree() {
        for d in D::ALL {
            for o in [
                InstanceState::Creating,
                InstanceState::Stopped,
                InstanceState::Running,
                InstanceState::Suspended,
                InstanceState::Crashed,
                InstanceState::Destroying,
            ] {
                assert_eq!(d.converged(o), settled(d, o.into()) && d != D::Terminated, "{d:?} {o:?}");
            }
            assert_eq!(settled(d, ObservedState::Destroyed), d == D::Terminated);
            assert!(!settled(d, ObservedState::Unknown));
        }
    }
}

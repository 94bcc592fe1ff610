//! What each provisioning job does, and the reconciler that keeps hosts converging on what
//! the panel wants. The panel keeps the desired state of every instance; hosts report what
//! is; jobs and the reconciler close the gap. Nothing here re-creates an instance on another
//! host behind anyone's back: an unreachable host's instances become `unknown` and wait.

use crate::clock::Clock;
use crate::config::OrchestrationSettings;
use crate::db::{hosts as host_sql, instances as sql, jobs as job_sql, plans as plan_sql};
use crate::hosts::{client_for, HostClient, HostError};
use crate::ids::InstanceId;
use crate::jobs::{Job, Outcome};
use crate::orders::OrderStatus;
use crate::scheduler::{self, Placement};
use crate::vps::{DesiredState, ObservedState};
use sqlx::PgPool;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use vessel_core::lifecycle::{Ipv4Assignment, Ipv6Assignment};
use vessel_core::wire::{HostAction, InstanceStatus, ProblemType};
use vessel_core::{Action, Hostname, InstanceSpec, InstanceState, NetworkSpec};

/// What every handler needs.
#[derive(Clone)]
pub struct Ctx {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub settings: OrchestrationSettings,
    /// Shared by every host client: one connection pool per certificate policy (the CA read
    /// once; a client per pinned certificate).
    pub http: crate::hosts::HostHttp,
}

impl Ctx {
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>, settings: OrchestrationSettings) -> Self {
        let http = settings.host_http();
        Ctx { pool, clock, settings, http }
    }
}

fn host_failed(e: HostError) -> Outcome {
    match e {
        // Not the job's fault: the host is restarting or cut off. Wait without using up
        // attempts or growing the backoff, so it converges seconds after the host is back.
        HostError::Unreachable(why) => Outcome::Wait { secs: 3, reason: format!("host unreachable: {why}") },
        HostError::Refused(p) if p.kind == ProblemType::Unavailable => {
            Outcome::Wait { secs: 3, reason: format!("host busy: {}", p.detail) }
        }
        HostError::Refused(p) if p.kind == ProblemType::AdmissionRefused => {
            Outcome::Retry(format!("the host refused by its own admission rule: {}", p.detail))
        }
        e => Outcome::Retry(e.to_string()),
    }
}

/// Runs one job.
pub async fn handle(ctx: &Ctx, row: crate::jobs::JobRow) -> Outcome {
    let job = match Job::from_row(&row.kind, &row.payload) {
        Ok(job) => job,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let result = match job {
        Job::Create { instance_id } => converge(ctx, instance_id).await,
        Job::Converge { instance_id, desired, reason } => {
            // Converges on the desired state as it is now, not as it was when queued.
            tracing::debug!(%instance_id, ?desired, ?reason, "converge");
            converge(ctx, instance_id).await
        }
        Job::Action { instance_id, action } => match action {
            Action::Restart => act(ctx, instance_id, HostAction::Restart).await,
            Action::Reinstall => reinstall(ctx, instance_id).await,
            // Start, stop, rescue and back changed the desired state (and rescue); converging
            // does them.
            Action::Start
            | Action::Stop
            | Action::Suspend
            | Action::Resume
            | Action::Resize
            | Action::ResetPassword
            | Action::Rescue
            | Action::LeaveRescue
            | Action::Destroy => converge(ctx, instance_id).await,
        },
        // The plan as it is now (a later change supersedes the one queued).
        Job::Resize { instance_id, plan_id: _ } => resize(ctx, instance_id).await,
        Job::ResetPassword { instance_id } => reset_password(ctx, instance_id).await,
        Job::Firewall { instance_id } => firewall(ctx, instance_id).await,
    };
    result.unwrap_or_else(|o| o)
}

type Step<T> = Result<T, Outcome>;

fn db(e: sqlx::Error) -> Outcome {
    Outcome::Retry(format!("database: {e}"))
}

/// The instance's host and a client for it, placing it first if it has none.
async fn placed(ctx: &Ctx, id: InstanceId) -> Step<(sql::Placeable, host_sql::HostRow, HostClient)> {
    let mut inst = sql::placeable(&ctx.pool, id).await.map_err(db)?.ok_or(Outcome::Done)?;
    if inst.host_id.is_none() {
        if inst.desired_state == DesiredState::Terminated {
            // Never placed, so no host holds it: finish the bookkeeping here (else it would
            // stay `pending` with no job left to move it).
            let mut tx = ctx.pool.begin().await.map_err(db)?;
            host_sql::release_addresses(&mut tx, id).await.map_err(db)?;
            sql::set_observed(&mut *tx, id, ObservedState::Destroyed, None, ctx.clock.now()).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Err(Outcome::Done);
        }
        match scheduler::place(&ctx.pool, ctx.clock.as_ref(), id).await {
            Ok(Placement::WaitingForCapacity { reasons }) => {
                // Waited too long: the order is refunded (the VPS terminated, so this job ends).
                let limit = chrono::Duration::seconds(ctx.settings.capacity_refund_after_secs);
                match crate::capacity::refund_if_overdue(&ctx.pool, ctx.clock.now(), id, limit).await {
                    Ok(Some(_)) => return Err(Outcome::Done),
                    Ok(None) => {}
                    Err(e) => return Err(Outcome::Retry(format!("refunding an undelivered order: {e}"))),
                }
                return Err(Outcome::Wait { secs: 60, reason: format!("waiting for capacity: {}", reasons.join("; ")) });
            }
            Ok(_) => {}
            Err(e) => return Err(Outcome::Retry(e.to_string())),
        }
        inst = sql::placeable(&ctx.pool, id).await.map_err(db)?.ok_or(Outcome::Done)?;
    }
    let host_id = inst.host_id.ok_or(Outcome::Retry("placement did not stick".into()))?;
    let host = host_sql::get(&ctx.pool, host_id).await.map_err(db)?.ok_or(Outcome::Retry("host vanished".into()))?;
    let client = client_for(&host, &ctx.http).ok_or(Outcome::Retry(format!("host {} has not joined", host.name)))?;
    Ok((inst, host, client))
}

/// The spec the host builds the instance from.
async fn spec(ctx: &Ctx, inst: &sql::Placeable) -> Step<InstanceSpec> {
    let resources = plan_sql::resources(&ctx.pool, inst.plan_id).await.map_err(db)?.ok_or(Outcome::Retry("bad plan".into()))?;
    let addresses = host_sql::addresses_of(&ctx.pool, inst.id).await.map_err(db)?;
    let mut network = NetworkSpec::default();
    for host_sql::AssignedAddress { address: addr, prefix_len: prefix, gateway: gw, nat, dns } in addresses {
        for d in dns {
            match d.parse::<IpAddr>() {
                Ok(ip) if !network.dns.contains(&ip) => network.dns.push(ip),
                Ok(_) => {}
                Err(_) => return Err(Outcome::Retry(format!("unreadable resolver {d}"))),
            }
        }
        match (addr.parse::<IpAddr>(), gw.parse::<IpAddr>()) {
            (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(g))) => {
                network.ipv4 = Some(Ipv4Assignment { address: a, prefix_len: prefix as u8, gateway: g, nat })
            }
            (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(g))) => {
                network.ipv6 = Some(Ipv6Assignment { address: a, prefix_len: prefix as u8, gateway: g })
            }
            _ => return Err(Outcome::Retry(format!("unreadable address {addr} / {gw}"))),
        }
    }
    Ok(InstanceSpec {
        id: inst.id,
        hostname: Hostname::parse(&inst.hostname).map_err(|e| Outcome::Retry(format!("hostname: {e}")))?,
        template: inst.os_template.clone(),
        resources,
        // Keys and the root password hash (never a clear password) for the first boot.
        access: crate::db::access::instance_access(&ctx.pool, inst.id).await.map_err(db)?.unwrap_or_default(),
        network,
        firewall: crate::db::firewalls::get(&ctx.pool, inst.id).await.map_err(db)?.unwrap_or_default(),
    })
}

async fn record(ctx: &Ctx, id: InstanceId, status: &InstanceStatus) -> Step<()> {
    record_observed(&ctx.pool, id, status.state, ctx.clock.now()).await.map_err(db)
}

/// What a host reported and, once the server runs, its order active: in one transaction, so
/// nobody (a page, a test, the reconciler) sees a running server whose order still says
/// provisioning. Both the jobs and the reconciler record through here.
async fn record_observed(
    pool: &PgPool,
    id: InstanceId,
    state: InstanceState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sql::set_observed(&mut *tx, id, state.into(), None, now).await?;
    if state == InstanceState::Running {
        sql::set_order_status_of(&mut tx, id, OrderStatus::Active).await?;
    }
    tx.commit().await
}

/// Makes the host match the desired state: creates, starts, stops, suspends, resumes or
/// destroys, each step idempotent, so a job run twice (a lease ran out) does no harm.
async fn converge(ctx: &Ctx, id: InstanceId) -> Step<Outcome> {
    let (inst, _host, client) = placed(ctx, id).await?;
    let iid = id;
    if inst.desired_state == DesiredState::Terminated {
        client.destroy(iid).await.map_err(host_failed)?;
        let mut tx = ctx.pool.begin().await.map_err(db)?;
        host_sql::release_addresses(&mut tx, id).await.map_err(db)?;
        sql::set_observed(&mut *tx, id, ObservedState::Destroyed, None, ctx.clock.now()).await.map_err(db)?;
        // Room was freed: orders waiting for capacity try again now.
        job_sql::wake_waiting(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        return Ok(Outcome::Done);
    }
    let mut status = match client.get(iid).await.map_err(host_failed)? {
        Some(s) => s,
        None => client.create(&spec(ctx, &inst).await?).await.map_err(host_failed)?,
    };
    // Into rescue or back first (a reboot into the other system; the host keeps it across
    // stops and starts), then the state as usual.
    if status.rescue != inst.rescue && status_may_rescue(inst.desired_state) {
        let req = match inst.rescue {
            // The way in as the panel has it now, written into the rescue system.
            true => HostAction::Rescue { access: crate::db::access::instance_access(&ctx.pool, id).await.map_err(db)?.unwrap_or_default() },
            false => HostAction::LeaveRescue,
        };
        status = client.action(iid, &req).await.map_err(host_failed)?;
    }
    for _ in 0..4 {
        if inst.desired_state.converged(status.state) {
            break;
        }
        let Some(next) = inst.desired_state.next_host_action(status.state) else { break };
        status = client.action(iid, &next).await.map_err(host_failed)?;
    }
    record(ctx, id, &status).await?;
    if inst.desired_state.converged(status.state) && (status.rescue == inst.rescue || !status_may_rescue(inst.desired_state)) {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::Retry(format!("{} is {:?}, wanted {}", inst.hostname, status.state, inst.desired_state)))
    }
}

/// Is rescue (or leaving it) something converge does in this desired state?
fn status_may_rescue(d: DesiredState) -> bool {
    matches!(d, DesiredState::Running | DesiredState::Stopped)
}

async fn act(ctx: &Ctx, id: InstanceId, req: HostAction) -> Step<Outcome> {
    let (_inst, _host, client) = placed(ctx, id).await?;
    let status = client.action(id, &req).await.map_err(host_failed)?;
    record(ctx, id, &status).await?;
    Ok(Outcome::Done)
}

/// Reinstalls from the instance's template as the panel has it now (the API may have changed it).
async fn reinstall(ctx: &Ctx, id: InstanceId) -> Step<Outcome> {
    let (inst, _host, client) = placed(ctx, id).await?;
    // The way in as the panel has it now, written into the new system (as at create, see `spec`).
    let access = crate::db::access::instance_access(&ctx.pool, id).await.map_err(db)?.unwrap_or_default();
    let req = HostAction::Reinstall { template: Some(inst.os_template.clone()), access };
    let status = client.action(id, &req).await.map_err(host_failed)?;
    record(ctx, id, &status).await?;
    Ok(Outcome::Done)
}

/// Sends the newest root password hash the panel holds for the instance.
async fn reset_password(ctx: &Ctx, id: InstanceId) -> Step<Outcome> {
    let (_inst, _host, client) = placed(ctx, id).await?;
    let access = crate::db::access::instance_access(&ctx.pool, id).await.map_err(db)?.unwrap_or_default();
    let Some(root_password_hash) = access.root_password_hash else { return Ok(Outcome::Done) };
    let status = client.action(id, &HostAction::ResetPassword { root_password_hash }).await.map_err(host_failed)?;
    record(ctx, id, &status).await?;
    Ok(Outcome::Done)
}

/// Sends the firewall the panel holds now. Not placed or not on its host yet: nothing to do,
/// the create's spec carries the firewall as it is then (and the reconciler catches a create
/// that raced this change).
async fn firewall(ctx: &Ctx, id: InstanceId) -> Step<Outcome> {
    let inst = sql::placeable(&ctx.pool, id).await.map_err(db)?.ok_or(Outcome::Done)?;
    if inst.host_id.is_none() || inst.desired_state == DesiredState::Terminated {
        return Ok(Outcome::Done);
    }
    let (_inst, _host, client) = placed(ctx, id).await?;
    let fw = crate::db::firewalls::get(&ctx.pool, id).await.map_err(db)?.unwrap_or_default();
    match client.set_firewall(id, &fw).await {
        Ok(_) => Ok(Outcome::Done),
        Err(HostError::Refused(p)) if p.kind == ProblemType::NotFound => Ok(Outcome::Done),
        Err(e) => Err(host_failed(e)),
    }
}

async fn resize(ctx: &Ctx, id: InstanceId) -> Step<Outcome> {
    let (inst, _host, client) = placed(ctx, id).await?;
    let resources = plan_sql::resources(&ctx.pool, inst.plan_id).await.map_err(db)?.ok_or(Outcome::Retry("bad plan".into()))?;
    let req = HostAction::Resize { resources };
    let status = client.action(id, &req).await.map_err(host_failed)?;
    record(ctx, id, &status).await?;
    Ok(Outcome::Done)
}

/// One pass over every joined host: record what it reports (states, usage), mark it
/// reachable or, after a silence, unreachable with its instances unknown; queue a converge
/// for every instance that differs from its desired state; destroy what the host runs that
/// the panel does not know (orphans of a crash mid-create on the panel's side).
///
/// Hosts are visited [`RECONCILE_CONCURRENCY`] at a time: a pass over thousands of hosts is
/// bound by their answers and the database's round trips, not by one host after another.
pub async fn reconcile_once(ctx: &Ctx) -> Result<(), sqlx::Error> {
    let now = ctx.clock.now();
    let mut running = tokio::task::JoinSet::new();
    let mut first_error = None;
    for host in host_sql::joined(&ctx.pool).await? {
        if running.len() >= RECONCILE_CONCURRENCY {
            if let Some(Err(e)) = running.join_next().await.map(joined) {
                first_error.get_or_insert(e);
            }
        }
        let ctx = ctx.clone();
        running.spawn(async move { reconcile_host(&ctx, host, now).await });
    }
    while let Some(r) = running.join_next().await {
        if let Err(e) = joined(r) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A host's pass as it ended (a panic in it is the pass's own).
fn joined(r: Result<Result<(), sqlx::Error>, tokio::task::JoinError>) -> Result<(), sqlx::Error> {
    r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// How many hosts one reconciler pass talks to at once.
pub const RECONCILE_CONCURRENCY: usize = 4;

/// [`reconcile_once`] for one host.
async fn reconcile_host(ctx: &Ctx, host: host_sql::HostRow, now: chrono::DateTime<chrono::Utc>) -> Result<(), sqlx::Error> {
    let Some(client) = client_for(&host, &ctx.http) else { return Ok(()) };
    let reported = match client.list().await {
        Ok(r) => r,
        Err(e) => {
            let silent_for = host.last_seen_at.map(|t| (now - t).num_seconds()).unwrap_or(i64::MAX);
            if silent_for >= ctx.settings.unreachable_after_secs && host.reachability != crate::hosts::Reachability::Unreachable {
                tracing::warn!(host = %host.name, error = %e, "host unreachable: its instances are unknown until it answers");
                let mut tx = ctx.pool.begin().await?;
                host_sql::set_reachability(&mut tx, host.id, false, now).await?;
                sql::mark_unknown_on(&mut *tx, host.id, now).await?;
                tx.commit().await?;
            }
            return Ok(());
        }
    };
    let mut tx = ctx.pool.begin().await?;
    host_sql::set_reachability(&mut tx, host.id, true, now).await?;
    tx.commit().await?;
    let ours = sql::on_host(&ctx.pool, host.id).await?;
    let ours_ids: HashSet<InstanceId> = ours.iter().map(|i| i.id).collect();
    let mut known_reports = Vec::with_capacity(reported.len());
    for status in &reported {
        let id = status.id;
        if !ours_ids.contains(&id) {
            let mut tx = ctx.pool.begin().await?;
            let known = sql::known(&mut tx, id).await?;
            tx.commit().await?;
            // Placed elsewhere, terminated, or never known: the host should not run it.
            if known.is_none() || known == Some(DesiredState::Terminated) {
                tracing::warn!(host = %host.name, %id, "destroying an instance the panel does not know");
                if let Err(e) = client.destroy(status.id).await {
                    tracing::warn!(%id, error = %e, "orphan destroy failed; next pass retries");
                }
            }
            continue;
        }
        known_reports.push((id, ObservedState::from(status.state), &status.usage));
    }
    // The whole host's report in one transaction (as `record_observed` does for one).
    let mut tx = ctx.pool.begin().await?;
    sql::record_reports(&mut tx, &known_reports, now).await?;
    tx.commit().await?;
    let by_id: std::collections::HashMap<InstanceId, &InstanceStatus> = reported.iter().map(|s| (s.id, s)).collect();
    let firewalls = crate::db::firewalls::on_host(&ctx.pool, host.id).await?;
    for inst in ours {
        let status = by_id.get(&inst.id).copied();
        // The host holds another firewall than the panel's (a change that failed, a
        // create that raced one): send the panel's again.
        if let Some(s) = status {
            let want = firewalls.get(&inst.id).cloned().unwrap_or_default();
            if s.firewall != want
                && inst.desired_state != DesiredState::Terminated
                && s.pending.is_none()
                && !job_sql::pending_for(&ctx.pool, inst.id).await?
            {
                tracing::info!(host = %host.name, id = %inst.id, "firewall drift: sending the panel's");
                let mut tx = ctx.pool.begin().await?;
                crate::jobs::enqueue(&mut tx, Job::Firewall { instance_id: inst.id }).await?;
                tx.commit().await?;
                continue;
            }
        }
        let needs_work = match status.map(|s| (s.state, s.rescue)) {
            Some((s, rescue)) => {
                inst.desired_state == DesiredState::Terminated
                    || !inst.desired_state.converged(s)
                    || (rescue != inst.rescue && status_may_rescue(inst.desired_state))
            }
            None if inst.desired_state == DesiredState::Terminated => {
                // Gone from the host and not wanted: finish the bookkeeping.
                let mut tx = ctx.pool.begin().await?;
                host_sql::release_addresses(&mut tx, inst.id).await?;
                sql::set_observed(&mut *tx, inst.id, ObservedState::Destroyed, None, now).await?;
                tx.commit().await?;
                false
            }
            None => true,
        };
        if needs_work && !job_sql::pending_for(&ctx.pool, inst.id).await? {
            let mut tx = ctx.pool.begin().await?;
            crate::jobs::enqueue(
                &mut tx,
                Job::Converge { instance_id: inst.id, desired: Some(inst.desired_state), reason: Some("reconciler: drift".into()) },
            )
            .await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// The job runners and the reconciler, until `stop` turns true.
pub async fn run(ctx: Ctx, stop: tokio::sync::watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    let wake = if ctx.settings.job_notify { crate::jobs::Wakeup::listen(&ctx.pool, stop.clone()) } else { Default::default() };
    let poll = std::time::Duration::from_millis(ctx.settings.job_poll_ms.max(10));
    for n in 0..ctx.settings.workers.max(1) {
        let (c, stop, wake) = (ctx.clone(), stop.clone(), wake.clone());
        let runner = format!("{}-{}-{n}", hostname_or_pid(), std::process::id());
        tasks.push(tokio::spawn(async move {
            let c2 = c.clone();
            crate::jobs::run(c.pool.clone(), runner, c.settings.job_lease_secs, wake, poll, stop, move |job| {
                let c = c2.clone();
                async move { handle(&c, job).await }
            })
            .await
        }));
    }
    let mut stop_r = stop.clone();
    tasks.push(tokio::spawn(async move {
        let every = std::time::Duration::from_secs(ctx.settings.reconcile_interval_secs.max(1));
        while !*stop_r.borrow() {
            if let Err(e) = reconcile_once(&ctx).await {
                tracing::warn!(error = %e, "reconcile pass failed");
            }
            if let Err(e) = crate::usage::prune(&ctx.pool, ctx.clock.now()).await {
                tracing::warn!(error = %e, "pruning usage samples failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop_r.changed() => {}
            }
        }
    }));
    for t in tasks {
        let _ = t.await;
    }
}

fn hostname_or_pid() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "panel".into())
}

//! Placement: which host takes an instance. Decided inside one transaction that locks the
//! chosen host's row, with the admission rule of `vessel_core::admission` over the instances
//! the panel has placed there, so concurrent orders can never overfill a host.
//!
//! Policy, in order: hosts of the instance's kind that are enabled and not unreachable;
//! fewer of this customer's VPS first (spread a customer across hosts); then the most free
//! guaranteed memory (fill evenly); then by name. The first host that admits it, and has an
//! address to give when its pools have any, takes it.

use crate::clock::Clock;
use crate::db::{hosts as sql, instances as inst_sql, plans as plan_sql};
use crate::ids::{HostId, InstanceId};
use crate::orders::OrderStatus;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use vessel_core::admission::{admit, Allocation, HostCapacity, HostLoad};
use vessel_core::PlanResources;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Placed {
        host: HostId,
    },
    AlreadyPlaced {
        host: HostId,
    },
    /// No host can take it now; each refusal says why (resource, needed, free).
    WaitingForCapacity {
        reasons: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("no such instance")]
    UnknownInstance,
    #[error("the instance's plan is unreadable")]
    BadPlan,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub fn capacity_of(h: &sql::HostRow) -> HostCapacity {
    capacity(h.cpus, h.reserved_cpus, h.memory_mib, h.reserved_memory_mib, h.disk_gib, h.reserved_disk_gib)
}

/// What a host can give to instances: its capacity less what the admin reserves.
pub fn capacity(
    cpus: i32,
    reserved_cpus: i32,
    memory_mib: i64,
    reserved_memory_mib: i64,
    disk_gib: i64,
    reserved_disk_gib: i64,
) -> HostCapacity {
    HostCapacity {
        cpus: (cpus - reserved_cpus).max(0) as u32,
        memory_mib: (memory_mib - reserved_memory_mib).max(0) as u64,
        disk_gib: (disk_gib - reserved_disk_gib).max(0) as u64,
    }
}

pub async fn place(pool: &PgPool, clock: &dyn Clock, instance: InstanceId) -> Result<Placement, SchedulerError> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let inst = inst_sql::lock_placeable(&mut tx, instance).await?.ok_or(SchedulerError::UnknownInstance)?;
    if let Some(host) = inst.host_id {
        return Ok(Placement::AlreadyPlaced { host });
    }
    let wanted = plan_sql::resources(&mut *tx, inst.plan_id).await?.ok_or(SchedulerError::BadPlan)?;
    let mut reasons = Vec::new();
    for host_id in sql::candidates(&mut tx, inst.kind.as_str(), inst.account_id).await? {
        // A savepoint per candidate: a host that cannot take it is unlocked again at once.
        crate::db::savepoint(&mut tx, "candidate").await?;
        let Some(sql::LockedHost { host, pool_families }) = sql::lock(&mut tx, host_id).await? else { continue };
        let load = load_on(&mut tx, host_id).await?;
        if let Err(refusal) = admit(&capacity_of(&host), &load, &Allocation::from(&wanted)) {
            reasons.push(format!("{}: {refusal}", host.name));
            crate::db::rollback_to(&mut tx, "candidate").await?;
            continue;
        }
        match take_addresses(&mut tx, host_id, &pool_families, instance, now).await? {
            Ok(()) => {
                // The instance's host, and its order provisioning.
                inst_sql::set_host(&mut tx, instance, host_id).await?;
                tx.commit().await?;
                return Ok(Placement::Placed { host: host_id });
            }
            Err(why) => {
                reasons.push(format!("{}: {why}", host.name));
                crate::db::rollback_to(&mut tx, "candidate").await?;
            }
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("no enabled, reachable host runs {}", inst.kind));
    }
    inst_sql::set_waiting(&mut tx, instance, &reasons.join("; "), now).await?;
    inst_sql::set_order_status_of(&mut tx, instance, OrderStatus::WaitingForCapacity).await?;
    crate::db::outbox::insert_for_admins(
        &mut tx,
        "capacity_needed",
        serde_json::json!({ "instance_id": instance, "reasons": reasons }),
        &format!("capacity:{instance}"),
    )
    .await?;
    tx.commit().await?;
    Ok(Placement::WaitingForCapacity { reasons })
}

/// What a host carries: core's sums over the instances the panel placed there (not
/// terminated), from its per-plan counts. The one computation that placement admits against
/// and the admin's cockpit shows. Read after the host's row is locked, so the counts are
/// the committed ones and stay so until the decision commits.
async fn load_on(tx: &mut crate::db::Tx<'_>, host: HostId) -> Result<HostLoad, SchedulerError> {
    let rows = plan_sql::load_on(&mut **tx, &[host]).await?;
    Ok(load_of(rows.iter())?.0)
}

/// A host's commitment as placement sees it: usable capacity, the load, and the plans it
/// carries (code, version, resources, how many), for the admin's cockpit.
#[derive(Clone, Debug)]
pub struct Commitment {
    pub capacity: HostCapacity,
    pub load: HostLoad,
    pub plans: Vec<PlanOnHost>,
}

#[derive(Clone, Debug)]
pub struct PlanOnHost {
    pub code: String,
    pub version: i32,
    pub resources: PlanResources,
    pub instances: usize,
}

/// Core's sums from per-plan counts, and the plans named.
fn load_of<'a>(rows: impl Iterator<Item = &'a plan_sql::PlanLoad>) -> Result<(HostLoad, Vec<PlanOnHost>), SchedulerError> {
    let mut load = HostLoad::empty();
    let mut plans = Vec::new();
    for r in rows {
        let resources = r.resources.clone().ok_or(SchedulerError::BadPlan)?;
        load.add_many(&Allocation::from(&resources), r.instances as u64);
        plans.push(PlanOnHost { code: r.code.clone(), version: r.version, resources, instances: r.instances as usize });
    }
    plans.sort_by(|a, b| (&a.code, a.version).cmp(&(&b.code, b.version)));
    Ok((load, plans))
}

/// [`Commitment`] of a host.
pub async fn commitment(pool: &PgPool, host: HostId, capacity: HostCapacity) -> Result<Commitment, SchedulerError> {
    let rows = plan_sql::load_on(pool, &[host]).await?;
    let (load, plans) = load_of(rows.iter())?;
    Ok(Commitment { capacity, load, plans })
}

/// [`Commitment`]s of many hosts in one query (the cockpit's page: one round trip for all).
pub async fn commitments(pool: &PgPool, hosts: &[(HostId, HostCapacity)]) -> Result<HashMap<HostId, Commitment>, SchedulerError> {
    let ids: Vec<HostId> = hosts.iter().map(|(h, _)| *h).collect();
    let rows = plan_sql::load_on(pool, &ids).await?;
    let mut by_host: HashMap<HostId, Vec<&plan_sql::PlanLoad>> = HashMap::new();
    for r in &rows {
        by_host.entry(r.host_id).or_default().push(r);
    }
    hosts
        .iter()
        .map(|(h, cap)| {
            let (load, plans) = load_of(by_host.get(h).into_iter().flatten().copied())?;
            Ok((*h, Commitment { capacity: *cap, load, plans }))
        })
        .collect()
}

/// An IPv4 and an IPv6 address where the host's pools have that family at all; a pool
/// family with nothing free makes the host unsuitable.
async fn take_addresses(
    tx: &mut crate::db::Tx<'_>,
    host: HostId,
    pool_families: &[i32],
    instance: InstanceId,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, sqlx::Error> {
    for &family in pool_families {
        if sql::assign_address(tx, host, instance, family, now).await?.is_none() {
            return Ok(Err(format!("no free IPv{family} address")));
        }
    }
    Ok(Ok(()))
}

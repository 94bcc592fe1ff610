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
use sqlx::{Acquire, PgPool};
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
    let mut plans: HashMap<i64, PlanResources> = HashMap::new();
    let wanted = resources(&mut tx, &mut plans, inst.plan_id).await?;
    let mut reasons = Vec::new();
    for host_id in sql::candidates(&mut tx, inst.kind.as_str(), inst.account_id).await? {
        // A savepoint per candidate: a host that cannot take it is unlocked again at once.
        let mut sp = tx.begin().await?;
        let Some(host) = sql::lock(&mut sp, host_id).await? else { continue };
        let load = load_on(&mut sp, &mut plans, host_id).await?;
        if let Err(refusal) = admit(&capacity_of(&host), &load, &Allocation::from(&wanted)) {
            reasons.push(format!("{}: {refusal}", host.name));
            sp.rollback().await?;
            continue;
        }
        match take_addresses(&mut sp, host_id, instance, now).await? {
            Ok(()) => {
                inst_sql::set_host(&mut sp, instance, host_id).await?;
                sp.commit().await?;
                inst_sql::set_order_status_of(&mut tx, instance, OrderStatus::Provisioning).await?;
                tx.commit().await?;
                return Ok(Placement::Placed { host: host_id });
            }
            Err(why) => {
                reasons.push(format!("{}: {why}", host.name));
                sp.rollback().await?;
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
/// terminated). The one computation that placement admits against and the admin's cockpit
/// shows.
async fn load_on(tx: &mut crate::db::Tx<'_>, cache: &mut HashMap<i64, PlanResources>, host: HostId) -> Result<HostLoad, SchedulerError> {
    let plans = sql::resources_on(tx, host).await?;
    load_of(tx, cache, &plans).await
}

/// Core's sums over instances of these plans (one entry per instance).
async fn load_of(tx: &mut crate::db::Tx<'_>, cache: &mut HashMap<i64, PlanResources>, plans: &[i64]) -> Result<HostLoad, SchedulerError> {
    let mut load = HostLoad::empty();
    for plan in plans {
        load.add(&Allocation::from(&resources(tx, cache, *plan).await?));
    }
    Ok(load)
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

/// [`Commitment`] of a host, read in one transaction (a consistent snapshot of its instances).
pub async fn commitment(pool: &PgPool, host: HostId, capacity: HostCapacity) -> Result<Commitment, SchedulerError> {
    let mut tx = pool.begin().await?;
    let mut cache = HashMap::new();
    let on = sql::resources_on(&mut tx, host).await?;
    let load = load_of(&mut tx, &mut cache, &on).await?;
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for plan in on {
        *counts.entry(plan).or_default() += 1;
    }
    let mut plans = Vec::new();
    for (id, n) in counts {
        let (code, version, resources) = plan_sql::named_resources(&mut *tx, id).await?.ok_or(SchedulerError::BadPlan)?;
        plans.push(PlanOnHost { code, version, resources, instances: n });
    }
    plans.sort_by(|a, b| (&a.code, a.version).cmp(&(&b.code, b.version)));
    tx.commit().await?;
    Ok(Commitment { capacity, load, plans })
}

async fn resources(
    tx: &mut crate::db::Tx<'_>,
    cache: &mut HashMap<i64, PlanResources>,
    plan: i64,
) -> Result<PlanResources, SchedulerError> {
    if let Some(r) = cache.get(&plan) {
        return Ok(r.clone());
    }
    let r = plan_sql::resources(&mut **tx, plan).await?.ok_or(SchedulerError::BadPlan)?;
    cache.insert(plan, r.clone());
    Ok(r)
}

/// An IPv4 and an IPv6 address where the host's pools have that family at all; a pool
/// family with nothing free makes the host unsuitable.
async fn take_addresses(
    tx: &mut crate::db::Tx<'_>,
    host: HostId,
    instance: InstanceId,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, sqlx::Error> {
    for family in [4, 6] {
        if sql::has_pool(tx, host, family).await? && sql::assign_address(tx, host, instance, family, now).await?.is_none() {
            return Ok(Err(format!("no free IPv{family} address")));
        }
    }
    Ok(Ok(()))
}

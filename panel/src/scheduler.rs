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
use crate::orders::OrderStatus;
use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgPool};
use std::collections::HashMap;
use uuid::Uuid;
use vessel_core::admission::{admit, Allocation, HostCapacity, HostLoad};
use vessel_core::PlanResources;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Placed {
        host: Uuid,
    },
    AlreadyPlaced {
        host: Uuid,
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

pub async fn place(pool: &PgPool, clock: &dyn Clock, instance: Uuid) -> Result<Placement, SchedulerError> {
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
        let mut load = HostLoad::empty();
        for plan in sql::resources_on(&mut sp, host_id).await? {
            load.add(&Allocation::from(&resources(&mut sp, &mut plans, plan).await?));
        }
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
    host: Uuid,
    instance: Uuid,
    now: DateTime<Utc>,
) -> Result<Result<(), String>, sqlx::Error> {
    for family in [4, 6] {
        if sql::has_pool(tx, host, family).await? && sql::assign_address(tx, host, instance, family, now).await?.is_none() {
            return Ok(Err(format!("no free IPv{family} address")));
        }
    }
    Ok(Ok(()))
}

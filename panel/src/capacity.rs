//! Selling only what can be delivered (issue 14).
//!
//! * A plan is **unavailable** when no active host (joined, enabled, not unreachable) of its
//!   kind could take it even empty: decided by core's admission rule
//!   ([`vessel_core::admission::could_ever_admit`], [`admit`](vessel_core::admission::admit)
//!   over no load), the rule the scheduler places with. The catalogue (pages and API) marks it,
//!   and orders, API creations and resizes to it are refused. With no active host of a kind at
//!   all (a panel whose first host has not joined yet) its plans are sold: they wait, and the
//!   next rule refunds them if no host comes.
//! * An order **still waiting for capacity** `[orchestration] capacity_refund_after_secs` after
//!   it first found no room is refunded: the VPS is terminated, the order and subscription
//!   cancelled, the period given back by the one rule for service that ends before it is used
//!   ([`crate::billing::proration::refund_unused`]: never delivered, so all of it), the payer
//!   and the admins mailed; all in one transaction that re-checks under the locks, so a retry
//!   or a second runner does nothing twice. The create job runs it when it finds the time is
//!   up; `panel billing run` sweeps too.

use crate::billing::{ledger, proration, BillingError};
use crate::db::{hosts as host_sql, instances as inst_sql, plans as plan_sql, subscriptions as sub_sql, Tx};
use crate::vps::{self, DesiredState, Request, Scope, Target};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;
use vessel_core::admission::{could_ever_admit, decimal, Allocation, Refusal};
use vessel_core::{InstanceKind, PlanResources};

/// Whether any of `hosts` could ever run `plan`; `Some(why)` (for customers: no host names)
/// when none can.
fn judge(hosts: &[host_sql::ActiveHost], plan: &PlanResources) -> Option<String> {
    let kind = plan.kind();
    let mine: Vec<_> = hosts
        .iter()
        .filter(|h| match kind {
            InstanceKind::Container => h.supports_containers,
            InstanceKind::Kvm => h.supports_kvm,
        })
        .collect();
    if mine.is_empty() {
        return None;
    }
    let alloc = Allocation::from(plan);
    let mut refusal: Option<Refusal> = None;
    for h in mine {
        let cap = crate::scheduler::capacity(h.cpus, h.reserved_cpus, h.memory_mib, h.reserved_memory_mib, h.disk_gib, h.reserved_disk_gib);
        match could_ever_admit(&cap, &alloc) {
            Ok(()) => return None,
            Err(r) => {
                refusal.get_or_insert(r);
            }
        }
    }
    let r = refusal?;
    Some(format!(
        "this plan is unavailable: it needs {} {} of {}, more than any of our hosts has",
        decimal(&r.needed),
        r.resource.unit(),
        r.resource.name()
    ))
}

/// Every orderable plan no active host could ever run, with the reason.
pub async fn unavailable_plans(conn: &mut sqlx::PgConnection) -> Result<HashMap<i64, String>, sqlx::Error> {
    let hosts = host_sql::active(&mut *conn).await?;
    let plans = plan_sql::orderable_resources(&mut *conn).await?;
    Ok(plans.into_iter().filter_map(|(id, r)| judge(&hosts, &r).map(|why| (id, why))).collect())
}

/// `Some(why)` if no active host could ever run plan `plan_id`.
pub async fn unavailable(conn: &mut sqlx::PgConnection, plan_id: i64) -> Result<Option<String>, sqlx::Error> {
    let Some(r) = plan_sql::resources(&mut *conn, plan_id).await? else { return Ok(None) };
    let hosts = host_sql::active(&mut *conn).await?;
    Ok(judge(&hosts, &r))
}

/// What a refund of an undelivered order did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refunded {
    pub instance_id: Uuid,
    pub payer: Uuid,
    /// The credit note, if anything had been paid or was owed.
    pub credit_note: Option<(Uuid, i64)>,
}

/// Refunds the order behind `instance` if it has waited for capacity `limit` or longer and is
/// still unplaced and live; otherwise does nothing (`None`). Idempotent.
pub async fn refund_if_overdue(
    pool: &PgPool,
    now: DateTime<Utc>,
    instance: Uuid,
    limit: Duration,
) -> Result<Option<Refunded>, BillingError> {
    let mut tx = pool.begin().await?;
    let out = refund_in(&mut tx, now, instance, limit).await?;
    tx.commit().await?;
    Ok(out)
}

async fn refund_in(tx: &mut Tx<'_>, now: DateTime<Utc>, instance: Uuid, limit: Duration) -> Result<Option<Refunded>, BillingError> {
    let Some((_, _, Some(sub))) = inst_sql::delivery(tx, instance).await? else { return Ok(None) };
    let Some((payer, currency)) = sub_sql::payer_of(tx, sub, None).await? else { return Ok(None) };
    // The one lock order: the payer's balance row, the subscription, the instance.
    ledger::lock_credit(tx, payer, &currency).await?;
    let Some(v) = vps::lock(tx, Target::Id(instance, Scope::ALL)).await?.into_iter().next() else { return Ok(None) };
    let Some((host, since, _)) = inst_sql::delivery(tx, instance).await? else { return Ok(None) };
    let waited_enough = since.is_some_and(|s| now - s >= limit);
    if host.is_some() || v.desired == DesiredState::Terminated || !waited_enough {
        return Ok(None);
    }
    let effect = vps::transition(&v.state(), Request::Terminate).map_err(|e| BillingError::Invalid(e.to_string()))?;
    vps::apply(tx, &v, &effect, now).await?;
    let given = proration::refund_unused(tx, sub, now).await?;
    let row = sub_sql::lock(tx, sub, None).await?.ok_or(BillingError::SubscriptionNotFound)?;
    sub_sql::set_status(tx, sub, crate::subscriptions::SubscriptionStatus::Cancelled, now).await?;
    sub_sql::set_order_status(tx, row.order_id, crate::orders::OrderStatus::Cancelled).await?;
    let amount = given.map(|g| g.total_minor()).unwrap_or(0);
    // What was owed and is cancelled, and what was paid and is credited, apart: the mails say
    // truthfully which (a reseller's unpaid first invoice is cancelled; nothing is credited).
    let (cancelled, credited) = given.map(|g| (g.cancelled_minor, g.credited_minor)).unwrap_or((0, 0));
    let data = json!({
        "subscription_id": sub,
        "instance_id": instance,
        "currency": currency,
        "amount_minor": amount,
        "cancelled_minor": cancelled,
        "credited_minor": credited,
        "waited_hours": (now - since.unwrap_or(now)).num_hours(),
    });
    if let Some(email) = crate::db::payments::account_email(tx, payer).await? {
        if let Ok(email) = crate::accounts::Email::parse(&email) {
            crate::outbox::enqueue(tx, &email, "order_refunded", data.clone(), Some(format!("order_refunded:{instance}"))).await?;
        }
    }
    crate::db::outbox::insert_for_admins(tx, "capacity_refunded", data, &format!("capacity_refunded:{instance}")).await?;
    tracing::info!(%instance, %payer, amount, "an order that waited too long for capacity was refunded");
    Ok(Some(Refunded { instance_id: instance, payer, credit_note: given.map(|g| (g.credit_note, g.total_minor())) }))
}

/// Refunds every order that has waited `limit` or longer (`panel billing run`, tests); each in
/// its own transaction. Returns what was refunded.
pub async fn refund_overdue(pool: &PgPool, now: DateTime<Utc>, limit: Duration) -> Result<Vec<Refunded>, BillingError> {
    let mut out = Vec::new();
    for id in inst_sql::waiting_since_before(pool, now - limit).await? {
        if let Some(r) = refund_if_overdue(pool, now, id, limit).await? {
            out.push(r);
        }
    }
    Ok(out)
}

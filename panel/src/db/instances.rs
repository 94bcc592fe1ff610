//! SQL for `instances` (the VPS) and their addresses.

use super::Tx;
use crate::ids::{AccountId, HostId, InstanceId, SubscriptionId};
use crate::orders::OrderStatus;
use crate::vps::{DesiredState, ObservedState};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub account_id: AccountId,
    pub subscription_id: Option<SubscriptionId>,
    pub plan_id: i64,
    pub plan_name: String,
    pub kind: vessel_core::InstanceKind,
    pub os_template: String,
    pub hostname: String,
    pub host_name: Option<String>,
    pub desired_state: DesiredState,
    pub observed_state: ObservedState,
    pub observed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub addresses: Vec<String>,
    /// Asked to boot its rescue system.
    pub rescue: bool,
}

impl InstanceRow {
    /// Has the host caught up with what was asked? (The server page reloads itself until so.)
    pub fn settled(&self) -> bool {
        crate::vps::settled(self.desired_state, self.observed_state)
    }
    /// The state in the customer's words (see [`crate::vps::customer_state`]).
    pub fn state_label(&self) -> &'static str {
        crate::vps::customer_state(self.desired_state, self.observed_state).0
    }
    pub fn state_badge(&self) -> &'static str {
        crate::vps::customer_state(self.desired_state, self.observed_state).1
    }
    /// What the customer is told about a state that needs explaining (never `last_error`).
    pub fn state_note(&self) -> Option<&'static str> {
        crate::vps::customer_note(self.observed_state)
    }
}

const SELECT: &str = "SELECT i.id, i.account_id, i.subscription_id, i.plan_id, p.name AS plan_name, i.kind,
        t.name AS os_template, i.hostname, h.name AS host_name, i.desired_state,
        i.observed_state, i.observed_at, i.last_error, i.created_at, i.rescue,
        ARRAY(SELECT host(a.address) FROM ip_addresses a WHERE a.instance_id = i.id ORDER BY family(a.address), a.address) AS addresses
   FROM instances i JOIN plans p ON p.id = i.plan_id JOIN os_templates t ON t.id = i.os_template_id
   LEFT JOIN hosts h ON h.id = i.host_id";

pub async fn list_for<'e, E: sqlx::PgExecutor<'e>>(e: E, owner: AccountId) -> Result<Vec<InstanceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE i.account_id = $1 ORDER BY i.created_at DESC")).bind(owner).fetch_all(e).await
}

pub async fn get<'e, E: sqlx::PgExecutor<'e>>(e: E, id: InstanceId, owner: Option<AccountId>) -> Result<Option<InstanceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE i.id = $1 AND ($2::uuid IS NULL OR i.account_id = $2)"))
        .bind(id)
        .bind(owner)
        .fetch_optional(e)
        .await
}

/// Which instances [`lock_vps`] locks: every condition given must hold.
#[derive(Clone, Copy, Debug, Default)]
pub struct VpsFilter {
    pub id: Option<InstanceId>,
    /// The instance's own account (its customer).
    pub owner: Option<AccountId>,
    /// The reseller of the instance's customer.
    pub reseller: Option<AccountId>,
    pub subscription: Option<SubscriptionId>,
    /// Leave terminated instances out.
    pub live_only: bool,
}

const VPS_WHERE: &str = "($1::uuid IS NULL OR i.id = $1) AND ($2::uuid IS NULL OR i.account_id = $2)
    AND ($3::uuid IS NULL OR a.reseller_id = $3) AND ($4::uuid IS NULL OR i.subscription_id = $4)
    AND (NOT $5 OR i.desired_state <> 'terminated')";

/// Locks the matching instances' subscriptions (by id), then the instances (by id), and
/// returns them: the one lock order of the panel (see [`crate::vps::lock`], its only caller).
pub async fn lock_vps(tx: &mut Tx<'_>, f: &VpsFilter) -> Result<Vec<crate::vps::Locked>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT 1 FROM subscriptions s JOIN instances i ON i.subscription_id = s.id JOIN accounts a ON a.id = i.account_id
          WHERE {VPS_WHERE} ORDER BY s.id FOR UPDATE OF s"
    ))
    .bind(f.id)
    .bind(f.owner)
    .bind(f.reseller)
    .bind(f.subscription)
    .bind(f.live_only)
    .execute(&mut **tx)
    .await?;
    sqlx::query_as(&format!(
        "SELECT i.id, i.account_id AS customer_id, i.plan_id, i.subscription_id, s.account_id AS payer_id,
                i.desired_state AS desired, i.owner_suspended_from, i.suspended_with_account AS with_account, s.status AS billing,
                i.rescue
           FROM instances i JOIN accounts a ON a.id = i.account_id LEFT JOIN subscriptions s ON s.id = i.subscription_id
          WHERE {VPS_WHERE} ORDER BY i.id FOR UPDATE OF i"
    ))
    .bind(f.id)
    .bind(f.owner)
    .bind(f.reseller)
    .bind(f.subscription)
    .bind(f.live_only)
    .fetch_all(&mut **tx)
    .await
}

/// The subscription of the one instance `f` names, unlocked.
pub async fn subscription_of_vps(tx: &mut Tx<'_>, f: &VpsFilter) -> Result<Option<SubscriptionId>, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, Option<SubscriptionId>>(&format!(
        "SELECT i.subscription_id FROM instances i JOIN accounts a ON a.id = i.account_id WHERE {VPS_WHERE}"
    ))
    .bind(f.id)
    .bind(f.owner)
    .bind(f.reseller)
    .bind(f.subscription)
    .bind(f.live_only)
    .fetch_optional(&mut **tx)
    .await?
    .flatten())
}

pub async fn set_desired(tx: &mut Tx<'_>, id: InstanceId, desired: DesiredState, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET desired_state = $2,
                terminated_at = CASE WHEN $2 = 'terminated'::desired_state THEN $3 ELSE terminated_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(desired)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Enters (`true`) or leaves rescue (see [`crate::vps::Request::Rescue`]).
pub async fn set_rescue(tx: &mut Tx<'_>, id: InstanceId, on: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET rescue = $2 WHERE id = $1").bind(id).bind(on).execute(&mut **tx).await?;
    Ok(())
}

/// The live instance of a subscription, if it has one.
pub async fn of_subscription(tx: &mut Tx<'_>, subscription: SubscriptionId) -> Result<Option<InstanceId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1 AND desired_state <> 'terminated' FOR UPDATE")
        .bind(subscription)
        .fetch_optional(&mut **tx)
        .await
}

/// Creates the instance an activated subscription pays for, from its order.
pub async fn insert_for_subscription(tx: &mut Tx<'_>, id: InstanceId, subscription: SubscriptionId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (id, account_id, subscription_id, plan_id, kind, os_template_id, hostname, desired_state)
         SELECT $1, s.account_id, s.id, s.plan_id, p.kind, o.os_template_id, o.hostname, 'running'
           FROM subscriptions s JOIN orders o ON o.id = s.order_id JOIN plans p ON p.id = s.plan_id
          WHERE s.id = $2",
    )
    .bind(id)
    .bind(subscription)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_plan(tx: &mut Tx<'_>, id: InstanceId, plan_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET plan_id = $2 WHERE id = $1").bind(id).bind(plan_id).execute(&mut **tx).await?;
    Ok(())
}

/// What the orchestration needs to build an instance's spec.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Placeable {
    pub id: InstanceId,
    pub account_id: AccountId,
    pub subscription_id: Option<SubscriptionId>,
    pub plan_id: i64,
    pub kind: vessel_core::InstanceKind,
    pub hostname: String,
    pub os_template: String,
    pub host_id: Option<HostId>,
    pub desired_state: DesiredState,
    pub observed_state: ObservedState,
    /// Is it to boot its rescue system?
    pub rescue: bool,
}

const PLACEABLE: &str = "SELECT i.id, i.account_id, i.subscription_id, i.plan_id, i.kind, i.hostname,
        t.name AS os_template, i.host_id, i.desired_state, i.observed_state, i.rescue
   FROM instances i JOIN os_templates t ON t.id = i.os_template_id";

pub async fn placeable<'e, E: sqlx::PgExecutor<'e>>(e: E, id: InstanceId) -> Result<Option<Placeable>, sqlx::Error> {
    sqlx::query_as(&format!("{PLACEABLE} WHERE i.id = $1")).bind(id).fetch_optional(e).await
}

pub async fn lock_placeable(tx: &mut Tx<'_>, id: InstanceId) -> Result<Option<Placeable>, sqlx::Error> {
    sqlx::query_as(&format!("{PLACEABLE} WHERE i.id = $1 FOR UPDATE OF i")).bind(id).fetch_optional(&mut **tx).await
}

/// Live instances on a host (the reconciler compares them with the host's answer).
pub async fn on_host<'e, E: sqlx::PgExecutor<'e>>(e: E, host: HostId) -> Result<Vec<Placeable>, sqlx::Error> {
    sqlx::query_as(&format!("{PLACEABLE} WHERE i.host_id = $1 AND i.observed_state <> 'destroyed'")).bind(host).fetch_all(e).await
}

/// Records a placement: the instance is on `host` and being created, and its order (if it
/// has one) is provisioning, in one statement.
pub async fn set_host(tx: &mut Tx<'_>, id: InstanceId, host: HostId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH placed AS (
            UPDATE instances SET host_id = $2, observed_state = 'creating', last_error = NULL, waiting_since = NULL
             WHERE id = $1 RETURNING subscription_id)
         UPDATE orders o SET status = $3, updated_at = now()
           FROM placed JOIN subscriptions s ON s.id = placed.subscription_id
          WHERE o.id = s.order_id AND o.status <> $3",
    )
    .bind(id)
    .bind(host)
    .bind(OrderStatus::Provisioning)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_observed<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    id: InstanceId,
    state: ObservedState,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET observed_state = $2, observed_at = $4,
                last_error = COALESCE($3, CASE WHEN $2 IN ('running', 'stopped', 'suspended') THEN NULL ELSE last_error END)
          WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(error)
    .bind(at)
    .execute(e)
    .await?;
    Ok(())
}

/// Marks every live instance of a host `unknown` (the host stopped answering).
pub async fn mark_unknown_on<'e, E: sqlx::PgExecutor<'e>>(e: E, host: HostId, at: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE instances SET observed_state = 'unknown', observed_at = $2
          WHERE host_id = $1 AND observed_state NOT IN ('destroyed', 'unknown')",
    )
    .bind(host)
    .bind(at)
    .execute(e)
    .await?
    .rows_affected())
}

pub async fn known(tx: &mut Tx<'_>, id: InstanceId) -> Result<Option<DesiredState>, sqlx::Error> {
    sqlx::query_scalar("SELECT desired_state FROM instances WHERE id = $1").bind(id).fetch_optional(&mut **tx).await
}

pub async fn insert_usage<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    id: InstanceId,
    at: DateTime<Utc>,
    u: &vessel_core::usage::Usage,
) -> Result<(), sqlx::Error> {
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO usage_samples (instance_id, at, cpu_time_ns, memory_bytes, memory_peak_bytes, memory_burst_bytes,
                                    disk_used_bytes, net_rx_bytes, net_tx_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(at)
    .bind(i(u.cpu_time_ns))
    .bind(i(u.memory_bytes))
    .bind(i(u.memory_peak_bytes))
    .bind(i(u.memory_burst_bytes))
    .bind(i(u.disk_used_bytes))
    .bind(i(u.net_rx_bytes))
    .bind(i(u.net_tx_bytes))
    .execute(e)
    .await?;
    Ok(())
}

/// What one host reported, recorded for all its instances in three statements (observed
/// states, the orders of those now running made active, usage samples), the same rules as
/// [`set_observed`], [`set_order_status_of`] and [`insert_usage`] one by one: the reconciler's
/// cost per host is a few round trips, not a few per instance.
pub async fn record_reports(
    tx: &mut Tx<'_>,
    reports: &[(InstanceId, ObservedState, &vessel_core::usage::Usage)],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if reports.is_empty() {
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = reports.iter().map(|r| r.0 .0).collect();
    let states: Vec<&str> = reports.iter().map(|r| r.1.as_str()).collect();
    sqlx::query(
        "UPDATE instances i SET observed_state = r.state::observed_state, observed_at = $3,
                last_error = CASE WHEN r.state IN ('running', 'stopped', 'suspended') THEN NULL ELSE i.last_error END
           FROM unnest($1::uuid[], $2::text[]) AS r(id, state)
          WHERE i.id = r.id",
    )
    .bind(&ids)
    .bind(&states)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    let running: Vec<uuid::Uuid> = reports.iter().filter(|r| r.1 == ObservedState::Running).map(|r| r.0 .0).collect();
    if !running.is_empty() {
        sqlx::query(
            "UPDATE orders o SET status = $2, updated_at = now()
               FROM subscriptions s JOIN instances i ON i.subscription_id = s.id
              WHERE i.id = ANY($1) AND o.id = s.order_id AND o.status <> $2",
        )
        .bind(&running)
        .bind(OrderStatus::Active)
        .execute(&mut **tx)
        .await?;
    }
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let col = |f: fn(&vessel_core::usage::Usage) -> u64| reports.iter().map(|r| i(f(r.2))).collect::<Vec<i64>>();
    sqlx::query(
        "INSERT INTO usage_samples (instance_id, at, cpu_time_ns, memory_bytes, memory_peak_bytes, memory_burst_bytes,
                                    disk_used_bytes, net_rx_bytes, net_tx_bytes)
         SELECT u.id, $2, u.cpu, u.mem, u.peak, u.burst, u.disk, u.rx, u.tx
           FROM unnest($1::uuid[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[])
                AS u(id, cpu, mem, peak, burst, disk, rx, tx)
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(at)
    .bind(col(|u| u.cpu_time_ns))
    .bind(col(|u| u.memory_bytes))
    .bind(col(|u| u.memory_peak_bytes))
    .bind(col(|u| u.memory_burst_bytes))
    .bind(col(|u| u.disk_used_bytes))
    .bind(col(|u| u.net_rx_bytes))
    .bind(col(|u| u.net_tx_bytes))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An order's status, by its instance (waiting for capacity, active).
pub async fn set_order_status_of(tx: &mut Tx<'_>, instance: InstanceId, status: OrderStatus) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders o SET status = $2, updated_at = now()
           FROM subscriptions s JOIN instances i ON i.subscription_id = s.id
          WHERE i.id = $1 AND o.id = s.order_id AND o.status <> $2",
    )
    .bind(instance)
    .bind(status)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records (or, with `None`, clears) the owner's suspension and the state to return to.
pub async fn set_owner_suspended_from(tx: &mut Tx<'_>, id: InstanceId, from: Option<DesiredState>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET owner_suspended_from = $2 WHERE id = $1").bind(id).bind(from).execute(&mut **tx).await?;
    Ok(())
}

pub async fn set_suspended_with_account(tx: &mut Tx<'_>, id: InstanceId, on: bool) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET suspended_with_account = $2 WHERE id = $1").bind(id).bind(on).execute(&mut **tx).await?;
    Ok(())
}

/// Marks an instance waiting for capacity, remembering when it first did.
pub async fn set_waiting(tx: &mut Tx<'_>, id: InstanceId, reasons: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET observed_state = 'waiting_for_capacity', observed_at = $3, last_error = $2,
                waiting_since = COALESCE(waiting_since, $3)
          WHERE id = $1",
    )
    .bind(id)
    .bind(reasons)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Live, never placed instances that have waited for capacity since before `before`.
pub async fn waiting_since_before<'e, E: sqlx::PgExecutor<'e>>(e: E, before: DateTime<Utc>) -> Result<Vec<InstanceId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM instances WHERE host_id IS NULL AND desired_state <> 'terminated' AND waiting_since <= $1 ORDER BY waiting_since, id",
    )
    .bind(before)
    .fetch_all(e)
    .await
}

/// (host, waiting since, subscription) of an instance: what the refund of an undelivered order
/// checks (under the instance's lock, taken by `vps::lock`, when it decides).
pub async fn delivery(
    tx: &mut Tx<'_>,
    id: InstanceId,
) -> Result<Option<(Option<HostId>, Option<DateTime<Utc>>, Option<SubscriptionId>)>, sqlx::Error> {
    sqlx::query_as("SELECT host_id, waiting_since, subscription_id FROM instances WHERE id = $1").bind(id).fetch_optional(&mut **tx).await
}

/// Was the live instance of a subscription ever placed on a host? `None`: it has none.
pub async fn placed_of_subscription(tx: &mut Tx<'_>, subscription: SubscriptionId) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT host_id IS NOT NULL FROM instances WHERE subscription_id = $1 ORDER BY created_at DESC LIMIT 1")
        .bind(subscription)
        .fetch_optional(&mut **tx)
        .await
}

/// A paid server no host could take yet, for the admin's dashboard.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Waiting {
    pub id: InstanceId,
    pub hostname: String,
    pub customer_email: String,
    pub plan: String,
    pub waiting_since: Option<DateTime<Utc>>,
    /// Placement's reasons (they name hosts: for staff only).
    pub last_error: Option<String>,
}

/// Servers waiting for capacity, longest-waiting first.
pub async fn waiting_for_capacity<'e, E: sqlx::PgExecutor<'e>>(e: E, limit: i64) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.hostname, a.email AS customer_email, p.code AS plan, i.waiting_since, i.last_error
           FROM instances i JOIN accounts a ON a.id = i.account_id JOIN plans p ON p.id = i.plan_id
          WHERE i.host_id IS NULL AND i.desired_state <> 'terminated' AND i.observed_state = 'waiting_for_capacity'
          ORDER BY i.waiting_since NULLS LAST, i.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(e)
    .await
}

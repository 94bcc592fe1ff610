//! SQL for `instances` (the VPS) and their addresses.

use super::Tx;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct InstanceRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub plan_id: i64,
    pub plan_name: String,
    pub kind: String,
    pub os_template: String,
    pub hostname: String,
    pub host_name: Option<String>,
    pub desired_state: String,
    pub observed_state: String,
    pub observed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub addresses: Vec<String>,
}

const SELECT: &str = "SELECT i.id, i.account_id, i.subscription_id, i.plan_id, p.name AS plan_name, i.kind::text AS kind,
        t.name AS os_template, i.hostname, h.name AS host_name, i.desired_state::text AS desired_state,
        i.observed_state::text AS observed_state, i.observed_at, i.last_error, i.created_at,
        ARRAY(SELECT host(a.address) FROM ip_addresses a WHERE a.instance_id = i.id ORDER BY family(a.address), a.address) AS addresses
   FROM instances i JOIN plans p ON p.id = i.plan_id JOIN os_templates t ON t.id = i.os_template_id
   LEFT JOIN hosts h ON h.id = i.host_id";

pub async fn list_for<'e, E: sqlx::PgExecutor<'e>>(e: E, owner: Uuid) -> Result<Vec<InstanceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE i.account_id = $1 ORDER BY i.created_at DESC")).bind(owner).fetch_all(e).await
}

pub async fn get<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid, owner: Option<Uuid>) -> Result<Option<InstanceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE i.id = $1 AND ($2::uuid IS NULL OR i.account_id = $2)"))
        .bind(id)
        .bind(owner)
        .fetch_optional(e)
        .await
}

/// Locks an instance (scoped to its owner when given); returns (desired state, subscription).
pub async fn lock(tx: &mut Tx<'_>, id: Uuid, owner: Option<Uuid>) -> Result<Option<(String, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT desired_state::text, subscription_id FROM instances
          WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn set_desired(tx: &mut Tx<'_>, id: Uuid, desired: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instances SET desired_state = $2::desired_state,
                terminated_at = CASE WHEN $2 = 'terminated' THEN $3 ELSE terminated_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(desired)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The live instance of a subscription, if it has one.
pub async fn of_subscription(tx: &mut Tx<'_>, subscription: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM instances WHERE subscription_id = $1 AND desired_state <> 'terminated' FOR UPDATE")
        .bind(subscription)
        .fetch_optional(&mut **tx)
        .await
}

/// Creates the instance an activated subscription pays for, from its order.
pub async fn insert_for_subscription(tx: &mut Tx<'_>, id: Uuid, subscription: Uuid) -> Result<(), sqlx::Error> {
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

pub async fn set_plan(tx: &mut Tx<'_>, id: Uuid, plan_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET plan_id = $2 WHERE id = $1").bind(id).bind(plan_id).execute(&mut **tx).await?;
    Ok(())
}

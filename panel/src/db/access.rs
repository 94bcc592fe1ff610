//! SQL for the customer's way in: the account's named SSH keys, and the `access` an order
//! carries to its instance (`vessel_core::Access` as JSON: public keys and a crypt(3) hash only).

use super::Tx;
use crate::ids::InstanceId;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;
use vessel_core::Access;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SshKeyRow {
    pub id: Uuid,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// Inserts a key; `false` if the account already has one with this fingerprint.
pub async fn insert_key<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    account: Uuid,
    name: &str,
    line: &str,
    fingerprint: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO ssh_keys (account_id, name, public_key, fingerprint) VALUES ($1, $2, $3, $4)
         ON CONFLICT ON CONSTRAINT ssh_keys_once_per_account DO NOTHING RETURNING id",
    )
    .bind(account)
    .bind(name)
    .bind(line)
    .bind(fingerprint)
    .fetch_optional(e)
    .await
}

pub async fn keys_of<'e, E: sqlx::PgExecutor<'e>>(e: E, account: Uuid) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, public_key, fingerprint, created_at FROM ssh_keys WHERE account_id = $1 ORDER BY name, created_at")
        .bind(account)
        .fetch_all(e)
        .await
}

/// The account's keys among `ids` (another account's ids are simply not found).
pub async fn keys_by_id<'e, E: sqlx::PgExecutor<'e>>(e: E, account: Uuid, ids: &[Uuid]) -> Result<Vec<SshKeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, public_key, fingerprint, created_at FROM ssh_keys WHERE account_id = $1 AND id = ANY($2) ORDER BY name",
    )
    .bind(account)
    .bind(ids)
    .fetch_all(e)
    .await
}

/// Deletes one of the account's keys; `false` if it has no such key.
pub async fn delete_key<'e, E: sqlx::PgExecutor<'e>>(e: E, account: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM ssh_keys WHERE account_id = $1 AND id = $2").bind(account).bind(id).execute(e).await?;
    Ok(r.rows_affected() == 1)
}

/// Sets what an order's server will be reachable with; the instance made from it copies it
/// (the `instances_access_from_order` trigger).
pub async fn set_order_access(tx: &mut Tx<'_>, order: Uuid, access: &Access) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET access = $2 WHERE id = $1").bind(order).bind(Json(access)).execute(&mut **tx).await?;
    Ok(())
}

pub async fn instance_access<'e, E: sqlx::PgExecutor<'e>>(e: E, instance: InstanceId) -> Result<Option<Access>, sqlx::Error> {
    let row: Option<Json<Access>> =
        sqlx::query_scalar("SELECT access FROM instances WHERE id = $1").bind(instance).fetch_optional(e).await?;
    Ok(row.map(|j| j.0))
}

pub async fn set_instance_access(tx: &mut Tx<'_>, instance: InstanceId, access: &Access) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE instances SET access = $2 WHERE id = $1").bind(instance).bind(Json(access)).execute(&mut **tx).await?;
    Ok(())
}

/// Marks the "server ready" mail as sent; `true` only the first time (so it goes once).
pub async fn claim_ready_mail(tx: &mut Tx<'_>, instance: InstanceId, at: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE instances SET ready_mailed_at = $2 WHERE id = $1 AND ready_mailed_at IS NULL")
        .bind(instance)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Locks one of the customer's own live instances; its desired state, or `None` (not theirs,
/// or terminated).
pub async fn lock_customer_instance(
    tx: &mut Tx<'_>,
    customer: Uuid,
    instance: InstanceId,
) -> Result<Option<crate::vps::DesiredState>, sqlx::Error> {
    sqlx::query_scalar("SELECT desired_state FROM instances WHERE id = $1 AND account_id = $2 AND desired_state <> 'terminated' FOR UPDATE")
        .bind(instance)
        .bind(customer)
        .fetch_optional(&mut **tx)
        .await
}

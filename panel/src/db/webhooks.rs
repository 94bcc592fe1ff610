//! SQL for `webhook_endpoints` and `webhook_deliveries` (the events themselves are written by
//! triggers: see the reseller API migration). Every statement a reseller's page leads to is
//! scoped by the owning account, so another reseller's id matches no row.

use super::Tx;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    pub secret: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

const ENDPOINT: &str = "id, account_id, url, secret, enabled, created_at";

pub async fn insert_endpoint(tx: &mut Tx<'_>, account: Uuid, url: &str, secret: &str) -> Result<EndpointRow, sqlx::Error> {
    sqlx::query_as(&format!("INSERT INTO webhook_endpoints (account_id, url, secret) VALUES ($1, $2, $3) RETURNING {ENDPOINT}"))
        .bind(account)
        .bind(url)
        .bind(secret)
        .fetch_one(&mut **tx)
        .await
}

pub async fn endpoints_of(pool: &PgPool, account: Uuid) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ENDPOINT} FROM webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id"))
        .bind(account)
        .fetch_all(pool)
        .await
}

pub async fn endpoint_of(pool: &PgPool, account: Uuid, id: Uuid) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {ENDPOINT} FROM webhook_endpoints WHERE account_id = $1 AND id = $2"))
        .bind(account)
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Returns whether the endpoint is the account's.
pub async fn set_enabled(tx: &mut Tx<'_>, account: Uuid, id: Uuid, enabled: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE webhook_endpoints SET enabled = $3 WHERE account_id = $1 AND id = $2")
        .bind(account)
        .bind(id)
        .bind(enabled)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_secret(tx: &mut Tx<'_>, account: Uuid, id: Uuid, secret: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE webhook_endpoints SET secret = $3 WHERE account_id = $1 AND id = $2")
        .bind(account)
        .bind(id)
        .bind(secret)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes the endpoint and (by the foreign key's cascade) its deliveries.
pub async fn delete_endpoint(tx: &mut Tx<'_>, account: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("DELETE FROM webhook_endpoints WHERE account_id = $1 AND id = $2").bind(account).bind(id).execute(&mut **tx).await?;
    Ok(r.rows_affected() == 1)
}

// ------------------------------------------------------------------ delivery

/// A delivery claimed by a worker, with everything the request needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_created_at: DateTime<Utc>,
    pub data: Value,
}

/// Takes up to `batch` due deliveries to enabled endpoints and leases them for `lease_secs`
/// (their `next_attempt_at` moves past the request's timeout), so no other worker takes them
/// while this one sends, and a worker that dies leaves them to be taken again after the lease.
/// `SKIP LOCKED` lets concurrent workers claim disjoint rows without waiting for each other.
pub async fn claim_due(pool: &PgPool, batch: i64, lease_secs: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS ( \
             SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled \
             ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED), \
         leased AS ( \
             UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2) \
             FROM due WHERE d.id = due.id RETURNING d.id, d.attempts, d.endpoint_id, d.event_id) \
         SELECT l.id, l.attempts, e.url, e.secret, v.id AS event_id, v.type AS event_type, \
                v.created_at AS event_created_at, v.data \
         FROM leased l JOIN webhook_endpoints e ON e.id = l.endpoint_id JOIN api_events v ON v.id = l.event_id \
         ORDER BY l.id",
    )
    .bind(batch)
    .bind(lease_secs as f64)
    .fetch_all(pool)
    .await
}

pub async fn mark_delivered(pool: &PgPool, id: i64, http_status: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_attempt_at = now(), \
         last_status = $2, last_error = NULL, delivered_at = now() WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(http_status)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: `retry_in_secs = None` gives up (`failed`), else waits that long.
pub async fn mark_attempt_failed(
    pool: &PgPool,
    id: i64,
    http_status: Option<i32>,
    error: &str,
    retry_in_secs: Option<f64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(), last_status = $2, last_error = $3, \
         status = CASE WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END, \
         next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $4::float8) END \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(http_status)
    .bind(error)
    .bind(retry_in_secs)
    .execute(pool)
    .await?;
    Ok(())
}

/// One line of an endpoint's delivery log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The newest `limit` deliveries of one of the account's endpoints.
pub async fn deliveries_of(pool: &PgPool, account: Uuid, endpoint: Uuid, limit: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.event_id, v.type AS event_type, d.status, d.attempts, d.last_status, d.last_error, \
                d.next_attempt_at, d.delivered_at, d.created_at \
         FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id JOIN api_events v ON v.id = d.event_id \
         WHERE e.account_id = $1 AND d.endpoint_id = $2 ORDER BY d.id DESC LIMIT $3",
    )
    .bind(account)
    .bind(endpoint)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Puts one of the account's failed deliveries back in the queue, due now, with a fresh
/// count of attempts. Returns its endpoint, or `None` if it is not the account's or not failed.
pub async fn requeue_failed(tx: &mut Tx<'_>, account: Uuid, endpoint: Uuid, id: i64) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now() \
         FROM webhook_endpoints e WHERE e.id = d.endpoint_id AND e.account_id = $1 AND d.endpoint_id = $2 AND d.id = $3 \
         AND d.status = 'failed' RETURNING d.endpoint_id",
    )
    .bind(account)
    .bind(endpoint)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Whether the delivery exists and belongs to the account's endpoint (to tell "not yours"
/// from "not failed").
pub async fn delivery_exists(pool: &PgPool, account: Uuid, endpoint: Uuid, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         WHERE e.account_id = $1 AND d.endpoint_id = $2 AND d.id = $3)",
    )
    .bind(account)
    .bind(endpoint)
    .bind(id)
    .fetch_one(pool)
    .await
}

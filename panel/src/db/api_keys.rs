//! SQL for `api_keys`.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key found by its prefix, with what authentication needs to decide.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyLookup {
    pub id: Uuid,
    pub account_id: Uuid,
    pub secret_sha256: Vec<u8>,
    pub scopes: Vec<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub role: crate::accounts::Role,
    pub account_status: crate::accounts::AccountStatus,
}

pub async fn insert<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    account: Uuid,
    name: &str,
    prefix: &str,
    secret_sha256: &[u8],
    scopes: &[String],
) -> Result<KeyRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO api_keys (account_id, name, prefix, secret_sha256, scopes) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, account_id, name, prefix, scopes, created_at, last_used_at, revoked_at",
    )
    .bind(account)
    .bind(name)
    .bind(prefix)
    .bind(secret_sha256)
    .bind(scopes)
    .fetch_one(e)
    .await
}

pub async fn find_by_prefix(pool: &PgPool, prefix: &str) -> Result<Option<KeyLookup>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.id, k.account_id, k.secret_sha256, k.scopes, k.revoked_at, a.role, a.status AS account_status
           FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.prefix = $1",
    )
    .bind(prefix)
    .fetch_optional(pool)
    .await
}

/// Records use at most once a minute per key, so a busy key does not write on every request.
pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now()
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn list_for(pool: &PgPool, account: Uuid) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, account_id, name, prefix, scopes, created_at, last_used_at, revoked_at FROM api_keys
          WHERE account_id = $1 ORDER BY revoked_at IS NOT NULL, created_at DESC",
    )
    .bind(account)
    .fetch_all(pool)
    .await
}

/// Revokes one of the account's keys; false when it has no such live key.
pub async fn revoke<'e, E: sqlx::PgExecutor<'e>>(e: E, account: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL")
        .bind(id)
        .bind(account)
        .execute(e)
        .await?;
    Ok(done.rows_affected() == 1)
}

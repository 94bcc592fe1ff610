//! SQL for `idempotency_keys`: one row per (account, key), written in the request's transaction.

use super::Tx;
use serde_json::Value;
use uuid::Uuid;

/// Takes the key for this transaction. Waits while another transaction holds the same key, and
/// returns false once that one committed (its response is then stored).
pub async fn claim(tx: &mut Tx<'_>, account: Uuid, key: &str, fingerprint: &[u8]) -> Result<bool, sqlx::Error> {
    // A key older than a day is forgotten: the same key may start a new request.
    sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND created_at < now() - interval '24 hours'")
        .bind(account)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    let claimed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (account_id, key, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING true",
    )
    .bind(account)
    .bind(key)
    .bind(fingerprint)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(claimed.unwrap_or(false))
}

/// (fingerprint, status, body) stored for a key.
pub async fn stored(tx: &mut Tx<'_>, account: Uuid, key: &str) -> Result<Option<(Vec<u8>, Option<i16>, Option<Value>)>, sqlx::Error> {
    sqlx::query_as("SELECT fingerprint, response_status, response_body FROM idempotency_keys WHERE account_id = $1 AND key = $2")
        .bind(account)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await
}

pub async fn complete(tx: &mut Tx<'_>, account: Uuid, key: &str, status: i16, body: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET response_status = $3, response_body = $4 WHERE account_id = $1 AND key = $2")
        .bind(account)
        .bind(key)
        .bind(status)
        .bind(body)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Forgets keys older than a day.
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(e: E) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'").execute(e).await?.rows_affected())
}

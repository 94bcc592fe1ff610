//! SQL for `console_tokens` (browser consoles, see `crate::console`).

use crate::ids::{HostId, InstanceId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A redeemed token: what it was minted for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenRow {
    pub instance_id: InstanceId,
    pub account_id: Uuid,
    pub via: String,
    pub api_key_id: Option<Uuid>,
}

/// Stores a new token's hash (and forgets tokens that ended more than a day ago).
pub async fn insert(
    e: &mut sqlx::PgConnection,
    token_sha256: &str,
    instance: InstanceId,
    account: Uuid,
    via: &str,
    api_key: Option<Uuid>,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_tokens WHERE expires_at < now() - interval '1 day'").execute(&mut *e).await?;
    sqlx::query(
        "INSERT INTO console_tokens (token_sha256, instance_id, account_id, via, api_key_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_sha256)
    .bind(instance)
    .bind(account)
    .bind(via)
    .bind(api_key)
    .bind(expires_at)
    .execute(e)
    .await?;
    Ok(())
}

/// Marks the token used, once: `None` for an unknown, used or expired token. One statement,
/// so two connections racing with one token cannot both get it.
pub async fn redeem<'e, E: sqlx::PgExecutor<'e>>(e: E, token_sha256: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE console_tokens SET used_at = now()
          WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING instance_id, account_id, via, api_key_id",
    )
    .bind(token_sha256)
    .fetch_optional(e)
    .await
}

/// The host an instance is placed on, if any.
pub async fn host_of<'e, E: sqlx::PgExecutor<'e>>(e: E, instance: InstanceId) -> Result<Option<HostId>, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, Option<HostId>>("SELECT host_id FROM instances WHERE id = $1")
        .bind(instance)
        .fetch_optional(e)
        .await?
        .flatten())
}

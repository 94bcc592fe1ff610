//! SQL for `usage_samples`.

use crate::ids::{AccountId, InstanceId};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SampleRow {
    pub at: DateTime<Utc>,
    pub cpu_time_ns: i64,
    pub memory_bytes: i64,
    pub memory_burst_bytes: i64,
    pub disk_used_bytes: i64,
    pub net_rx_bytes: i64,
    pub net_tx_bytes: i64,
}

/// One of `owner`'s instance's samples since `since`, oldest first (another customer's: none).
pub async fn samples<'e, E: sqlx::PgExecutor<'e>>(
    e: E,
    instance: InstanceId,
    owner: Option<AccountId>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<SampleRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.at, u.cpu_time_ns, u.memory_bytes, u.memory_burst_bytes, u.disk_used_bytes, u.net_rx_bytes, u.net_tx_bytes
           FROM usage_samples u JOIN instances i ON i.id = u.instance_id
          WHERE u.instance_id = $1 AND ($2::uuid IS NULL OR i.account_id = $2) AND u.at >= $3 AND u.at < $4
          ORDER BY u.at",
    )
    .bind(instance)
    .bind(owner)
    .bind(since)
    .bind(until)
    .fetch_all(e)
    .await
}

/// Forgets samples older than `before` (graphs show a day, metering a period).
pub async fn prune<'e, E: sqlx::PgExecutor<'e>>(e: E, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM usage_samples WHERE at < $1").bind(before).execute(e).await?.rows_affected())
}

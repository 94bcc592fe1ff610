//! SQL for `audit_log`.

use serde_json::Value;
use std::net::IpAddr;
use uuid::Uuid;

pub async fn insert<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    actor_id: Option<Uuid>,
    actor_kind: &str,
    action: &str,
    target: Option<(&str, String)>,
    remote_addr: Option<IpAddr>,
    details: Value,
) -> Result<(), sqlx::Error> {
    let (target_type, target_id) = match target {
        Some((t, id)) => (Some(t), Some(id)),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor_kind, action, target_type, target_id, remote_addr, details)
         VALUES ($1, $2, $3, $4, $5, $6::inet, $7)",
    )
    .bind(actor_id)
    .bind(actor_kind)
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(remote_addr.map(|a| a.to_string()))
    .bind(details)
    .execute(executor)
    .await?;
    Ok(())
}

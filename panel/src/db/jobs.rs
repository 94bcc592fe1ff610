//! SQL for `jobs`: the durable queue of provisioning work (claimed by the job runner).

use super::Tx;
use serde_json::Value;
use uuid::Uuid;

/// Queues a job; with a `dedupe_key`, queueing it again is a no-op. Returns whether it was added.
pub async fn enqueue(tx: &mut Tx<'_>, kind: &str, payload: Value, instance_id: Option<Uuid>, dedupe_key: Option<&str>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO jobs (kind, payload, instance_id, dedupe_key) VALUES ($1, $2, $3, $4) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(kind)
    .bind(payload)
    .bind(instance_id)
    .bind(dedupe_key)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

//! SQL for `email_outbox`.

use super::Tx;
use serde_json::Value;

/// Returns whether a row was added (false: the dedupe key was already there).
pub async fn insert(tx: &mut Tx<'_>, to: &str, template: &str, data: Value, dedupe_key: Option<&str>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO email_outbox (to_address, template, data, dedupe_key) VALUES ($1, $2, $3, $4)
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(to)
    .bind(template)
    .bind(data)
    .bind(dedupe_key)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

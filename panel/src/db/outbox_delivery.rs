//! SQL for delivering `email_outbox` rows (the table and `enqueue` are in `db::outbox`).

use super::Tx;
use serde_json::Value;

#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub to_address: String,
    pub template: String,
    pub data: Value,
    pub attempts: i32,
}

/// Locks due, unsent rows that other workers have not locked.
pub async fn claim_due(tx: &mut Tx<'_>, batch: i64, max_attempts: i32) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, to_address, template, data, attempts FROM email_outbox \
         WHERE sent_at IS NULL AND run_after <= now() AND attempts < $2 \
         ORDER BY run_after, id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .bind(max_attempts)
    .fetch_all(&mut **tx)
    .await
}

pub async fn mark_sent(tx: &mut Tx<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE email_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut Tx<'_>, id: i64, attempts: i32, error: &str, retry_in_secs: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE email_outbox SET attempts = $2, last_error = $3, run_after = now() + make_interval(secs => $4) WHERE id = $1")
        .bind(id)
        .bind(attempts)
        .bind(error)
        .bind(retry_in_secs as f64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// (hostname, customer's name) behind a subscription, for service mails.
pub async fn subscription_facts(pool: &sqlx::PgPool, sub: uuid::Uuid) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.hostname, a.display_name FROM subscriptions s JOIN orders o ON o.id = s.order_id \
         JOIN accounts a ON a.id = s.account_id WHERE s.id = $1",
    )
    .bind(sub)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct OutboxView {
    pub id: i64,
    pub to_address: String,
    pub template: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub run_after: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Unsent mail first (what needs attention), then the most recent.
pub async fn recent(pool: &sqlx::PgPool, limit: i64) -> Result<Vec<OutboxView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, to_address, template, created_at, run_after, sent_at, attempts, last_error FROM email_outbox \
         ORDER BY sent_at IS NOT NULL, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One mail and its template data.
pub async fn one(pool: &sqlx::PgPool, id: i64) -> Result<Option<(OutboxView, Value)>, sqlx::Error> {
    let row: Option<(Value,)> = sqlx::query_as("SELECT data FROM email_outbox WHERE id = $1").bind(id).fetch_optional(pool).await?;
    let Some((data,)) = row else { return Ok(None) };
    let view: Option<OutboxView> = sqlx::query_as(
        "SELECT id, to_address, template, created_at, run_after, sent_at, attempts, last_error FROM email_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(view.map(|v| (v, data)))
}

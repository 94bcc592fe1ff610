//! SQL for `payments` and `webhook_events`.

use super::Tx;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub struct NewPayment<'a> {
    pub account_id: Uuid,
    pub invoice_id: Option<Uuid>,
    pub method: crate::billing::payments::PaymentMethod,
    pub currency: &'a str,
    pub amount_minor: i64,
    pub external_ref: Option<&'a str>,
    pub recorded_by: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// Inserts a payment; `None` if one with the same (method, external_ref) exists already: a
/// gateway retry or a double click records nothing twice.
pub async fn insert(tx: &mut Tx<'_>, p: &NewPayment<'_>) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO payments (account_id, invoice_id, method, currency, amount_minor, external_ref, recorded_by, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (method, external_ref) DO NOTHING RETURNING id",
    )
    .bind(p.account_id)
    .bind(p.invoice_id)
    .bind(p.method)
    .bind(p.currency)
    .bind(p.amount_minor)
    .bind(p.external_ref)
    .bind(p.recorded_by)
    .bind(p.at)
    .fetch_optional(&mut **tx)
    .await
}

/// The manual payment recorded under `reference`: (account, amount, currency).
pub async fn manual_payment_with_reference(tx: &mut Tx<'_>, reference: &str) -> Result<Option<(Uuid, i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT account_id, amount_minor, currency FROM payments WHERE method = 'manual' AND external_ref = $1")
        .bind(reference)
        .fetch_optional(&mut **tx)
        .await
}

/// Records a gateway event; false if it was seen before.
pub async fn record_webhook_event(tx: &mut Tx<'_>, provider: &str, event_id: &str, event_type: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("INSERT INTO webhook_events (provider, event_id, event_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(provider)
        .bind(event_id)
        .bind(event_type)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn account_email(tx: &mut Tx<'_>, account: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1").bind(account).fetch_optional(&mut **tx).await
}

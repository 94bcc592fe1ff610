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

/// What a mail about an invoice carries, over an invoice `i` (any relation with the invoice's
/// columns) and its owner's account `a`: the one shape, for [`insert_for_invoices`] and the
/// set-based issue ([`super::invoices::issue_for_subscriptions`]).
pub(crate) const INVOICE_MAIL_DATA: &str = "jsonb_build_object('invoice_id', i.id, 'kind', i.kind, 'number_year', i.number_year, \
    'number_seq', i.number_seq, 'total_minor', i.total_minor, 'currency', i.currency, 'due_at', i.due_at, \
    'period_start', i.period_start, 'period_end', i.period_end, 'name', a.display_name)";

/// Queues `template` for the owner of each invoice, keyed by template and invoice.
pub async fn insert_for_invoices(tx: &mut Tx<'_>, template: &str, invoice_ids: &[uuid::Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO email_outbox (to_address, template, data, dedupe_key)
         SELECT a.email, $1, {INVOICE_MAIL_DATA}, $1 || ':' || i.id
           FROM invoices i JOIN accounts a ON a.id = i.account_id
          WHERE i.id = ANY($2)
         ON CONFLICT (dedupe_key) DO NOTHING",
    ))
    .bind(template)
    .bind(invoice_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues `template` for every active admin, once per `dedupe` key and admin.
pub async fn insert_for_admins(tx: &mut Tx<'_>, template: &str, data: Value, dedupe: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_outbox (to_address, template, data, dedupe_key)
         SELECT email, $1, $2, $3 || ':' || id FROM accounts WHERE role = 'admin' AND status = 'active'
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(template)
    .bind(data)
    .bind(dedupe)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

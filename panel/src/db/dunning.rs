//! SQL for `dunning_events` over unpaid invoices.

use super::Tx;
use crate::ids::{AccountId, InvoiceId, SubscriptionId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow)]
pub struct Step {
    pub invoice_id: InvoiceId,
    pub subscription_id: SubscriptionId,
    pub account_id: AccountId,
}

/// Records a reminder step for every unpaid invoice whose due date is before `threshold`
/// (`before_due`: and still ahead of now); returns those newly recorded. Every debt is chased,
/// whoever pays it (customer or reseller) and whatever became of the server: a terminated
/// server's invoice and a one-off charge too. Only the first invoice of an order never
/// delivered (its subscription pending or cancelled) is not a debt.
pub async fn mark_step(
    tx: &mut Tx<'_>,
    step: &str,
    now: DateTime<Utc>,
    threshold: DateTime<Utc>,
    before_due: bool,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH due AS (
            SELECT i.id FROM invoices i
             WHERE i.kind = 'invoice' AND i.status = 'issued' AND i.total_minor > 0
               AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = i.subscription_id AND s.status IN ('pending', 'cancelled'))
               AND CASE WHEN $4 THEN i.due_at > $2 AND i.due_at <= $3 ELSE i.due_at <= $3 END)
         , ins AS (
            INSERT INTO dunning_events (invoice_id, step, at) SELECT id, $1, $2 FROM due
            ON CONFLICT DO NOTHING RETURNING invoice_id)
         SELECT invoice_id FROM ins",
    )
    .bind(step)
    .bind(now)
    .bind(threshold)
    .bind(before_due)
    .fetch_all(&mut **tx)
    .await
}

/// Records `step` for unpaid invoices due before `threshold` whose subscription is in
/// `status`, locking those subscriptions; returns the newly recorded.
pub async fn due_for(
    tx: &mut Tx<'_>,
    step: &str,
    status: crate::subscriptions::SubscriptionStatus,
    now: DateTime<Utc>,
    threshold: DateTime<Utc>,
) -> Result<Vec<Step>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (
            SELECT i.id, i.subscription_id, i.account_id FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
             WHERE i.kind = 'invoice' AND i.status = 'issued' AND i.total_minor > 0 AND s.status = $2 AND i.due_at <= $3
             FOR UPDATE OF s)
         , ins AS (
            INSERT INTO dunning_events (invoice_id, step, at) SELECT id, $1, $4 FROM due
            ON CONFLICT DO NOTHING RETURNING invoice_id)
         SELECT DISTINCT ON (due.subscription_id) due.id AS invoice_id, due.subscription_id, due.account_id
           FROM ins JOIN due ON due.id = ins.invoice_id ORDER BY due.subscription_id, due.id",
    )
    .bind(step)
    .bind(status)
    .bind(threshold)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
}

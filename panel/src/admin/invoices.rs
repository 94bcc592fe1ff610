//! One-off invoices an admin issues to a customer.

use super::{invalid, AdminError, By};
use crate::audit;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Issues a one-off invoice (one line, the customer's tax rate) outside any subscription.
pub async fn issue_invoice(
    pool: &PgPool,
    clock: &dyn crate::clock::Clock,
    by: By,
    customer: Uuid,
    description: &str,
    amount: crate::money::Money,
) -> Result<Uuid, AdminError> {
    let description = description.trim();
    if description.is_empty() || description.len() > 200 {
        return Err(invalid("description", "describe the charge in up to 200 characters"));
    }
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let rate = crate::db::invoices::tax_rate(&mut tx, customer, now.date_naive()).await?;
    let doc = crate::db::invoices::NewDocument {
        account_id: customer,
        credit_note_for: None,
        subscription_id: None,
        currency: amount.currency.as_str(),
        description,
        amount_minor: amount.minor,
        rate_bp: rate,
        tax_minor: None,
    };
    let id = crate::billing::invoices::issue_charge(&mut tx, &doc, now).await.map_err(|e| match e {
        crate::billing::BillingError::Db(e) => AdminError::Db(e),
        other => invalid("amount", other.to_string()),
    })?;
    audit::record(
        &mut *tx,
        by.actor(),
        "invoice.issue",
        Some(("invoice", id.to_string())),
        by.addr,
        json!({ "account": customer, "description": description, "amount_minor": amount.minor, "currency": amount.currency.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

//! What a subscription's billing does to its VPS: a paid first invoice activates it (and
//! records the provisioning request), overdue invoices suspend and terminate it, a payment
//! unsuspends it. Each change records the desired state of the instance and a durable job
//! in the same transaction; the orchestration acts on the jobs.

use crate::db::{instances as inst_sql, invoices::InvoiceRow, subscriptions as sql, Tx};
use crate::ids::{AccountId, InstanceId, InvoiceId, SubscriptionId};
use crate::jobs::{self, Job};
use crate::vps::{self, Request, Target};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

pg_enum! {
    /// A subscription's billing state (`subscription_status` in the schema).
    pub enum SubscriptionStatus in "subscription_status" {
        /// Ordered, first invoice not paid yet.
        Pending = "pending",
        Active = "active",
        /// An invoice is overdue past the grace: its VPS is suspended.
        Suspended = "suspended",
        Terminated = "terminated",
        Cancelled = "cancelled",
    }
}

/// Reacts to a paid invoice.
pub async fn on_invoice_paid(tx: &mut Tx<'_>, invoice: &InvoiceRow, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let Some(sub_id) = invoice.subscription_id else { return Ok(()) };
    let Some(sub) = sql::lock(tx, sub_id, None).await? else { return Ok(()) };
    match sub.status {
        SubscriptionStatus::Pending => activate(tx, sub.id, sub.order_id, now).await,
        SubscriptionStatus::Suspended if !sql::has_overdue(tx, sub.id, now, invoice.id).await? => {
            unsuspend(tx, SubscriptionId(sub.id), AccountId(sub.account_id), now).await
        }
        _ => Ok(()),
    }
}

/// First payment: the subscription starts, the order is paid, and the VPS is requested.
async fn activate(tx: &mut Tx<'_>, sub: Uuid, order: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub, SubscriptionStatus::Active, now).await?;
    sql::set_order_status(tx, order, crate::orders::OrderStatus::Paid).await?;
    // The instance id is chosen here, once: every retry of the create uses it.
    let instance = InstanceId::new_random();
    inst_sql::insert_for_subscription(tx, instance, sub.into()).await?;
    jobs::enqueue(tx, Job::Create { instance_id: instance }).await?;
    Ok(())
}

async fn mail(tx: &mut Tx<'_>, account: AccountId, template: &str, sub: SubscriptionId, key: String) -> Result<(), sqlx::Error> {
    if let Some(email) = crate::db::payments::account_email(tx, account.0).await? {
        if let Ok(email) = crate::accounts::Email::parse(&email) {
            crate::outbox::enqueue(tx, &email, template, json!({ "subscription_id": sub }), Some(key)).await?;
        }
    }
    Ok(())
}

pub async fn suspend(
    tx: &mut Tx<'_>,
    sub: SubscriptionId,
    account: AccountId,
    invoice: InvoiceId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub.0, SubscriptionStatus::Suspended, now).await?;
    vps::request_all(tx, Target::Subscription(sub), Request::BillingSuspend, now).await?;
    mail(tx, account, "service_suspended", sub, format!("service_suspended:{invoice}")).await
}

pub async fn unsuspend(tx: &mut Tx<'_>, sub: SubscriptionId, account: AccountId, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub.0, SubscriptionStatus::Active, now).await?;
    // What its owner suspended stays suspended: the payment lifts billing's suspension only.
    vps::request_all(tx, Target::Subscription(sub), Request::BillingUnsuspend, now).await?;
    mail(tx, account, "service_unsuspended", sub, format!("service_unsuspended:{sub}:{}", now.timestamp())).await
}

/// Its owner (a customer, a reseller, an admin through the API) ended a VPS, whose lock the
/// caller holds after the payer's balance row: the subscription ends with it, and if it was
/// live the unused part of its period comes back by the one rule
/// ([`crate::billing::proration::refund_unused`]). Returns the credit note and its amount.
pub async fn end_by_owner(
    tx: &mut Tx<'_>,
    server: &vps::Locked,
    now: DateTime<Utc>,
) -> Result<Option<(Uuid, i64)>, crate::billing::BillingError> {
    let Some(sub) = server.subscription_id else { return Ok(None) };
    let refund = if matches!(server.billing, Some(SubscriptionStatus::Active | SubscriptionStatus::Suspended)) {
        crate::billing::proration::refund_unused(tx, sub.0, now).await?.map(|g| (g.credit_note, g.total_minor()))
    } else {
        None
    };
    sql::set_status(tx, sub.0, SubscriptionStatus::Terminated, now).await?;
    Ok(refund)
}

pub async fn terminate(
    tx: &mut Tx<'_>,
    sub: SubscriptionId,
    account: AccountId,
    invoice: InvoiceId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub.0, SubscriptionStatus::Terminated, now).await?;
    vps::request_all(tx, Target::Subscription(sub), Request::BillingTerminate, now).await?;
    mail(tx, account, "service_terminated", sub, format!("service_terminated:{invoice}")).await
}

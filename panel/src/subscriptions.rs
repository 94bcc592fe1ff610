//! What a subscription's billing does to its VPS: a paid first invoice activates it (and
//! records the provisioning request), overdue invoices suspend and terminate it, a payment
//! unsuspends it. Each change records the desired state of the instance and a durable job
//! in the same transaction; the orchestration acts on the jobs.

use crate::db::{instances as inst_sql, invoices::InvoiceRow, jobs, subscriptions as sql, Tx};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

/// Reacts to a paid invoice.
pub async fn on_invoice_paid(tx: &mut Tx<'_>, invoice: &InvoiceRow, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let Some(sub_id) = invoice.subscription_id else { return Ok(()) };
    let Some(sub) = sql::lock(tx, sub_id, None).await? else { return Ok(()) };
    match sub.status.as_str() {
        "pending" => activate(tx, sub.id, sub.order_id, now).await,
        "suspended" if !sql::has_overdue(tx, sub.id, now, invoice.id).await? => unsuspend(tx, sub.id, sub.account_id, now).await,
        _ => Ok(()),
    }
}

/// First payment: the subscription starts, the order is paid, and the VPS is requested.
async fn activate(tx: &mut Tx<'_>, sub: Uuid, order: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub, "active", now).await?;
    sql::set_order_status(tx, order, "paid").await?;
    // The instance id is chosen here, once: every retry of the create uses it.
    let instance = Uuid::new_v4();
    inst_sql::insert_for_subscription(tx, instance, sub).await?;
    jobs::enqueue(tx, "instance.create", json!({ "instance_id": instance }), Some(instance), Some(&format!("create:{instance}"))).await?;
    Ok(())
}

async fn set_instance(tx: &mut Tx<'_>, sub: Uuid, desired: &str, now: DateTime<Utc>, why: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let Some(instance) = inst_sql::of_subscription(tx, sub).await? else { return Ok(None) };
    inst_sql::set_desired(tx, instance, desired, now).await?;
    jobs::enqueue(tx, "instance.converge", json!({ "instance_id": instance, "desired": desired, "reason": why }), Some(instance), None).await?;
    Ok(Some(instance))
}

async fn mail(tx: &mut Tx<'_>, account: Uuid, template: &str, sub: Uuid, key: String) -> Result<(), sqlx::Error> {
    if let Some(email) = crate::db::payments::account_email(tx, account).await? {
        if let Ok(email) = crate::accounts::Email::parse(&email) {
            crate::outbox::enqueue(tx, &email, template, json!({ "subscription_id": sub }), Some(key)).await?;
        }
    }
    Ok(())
}

pub async fn suspend(tx: &mut Tx<'_>, sub: Uuid, account: Uuid, invoice: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub, "suspended", now).await?;
    set_instance(tx, sub, "suspended", now, "overdue").await?;
    mail(tx, account, "service_suspended", sub, format!("service_suspended:{invoice}")).await
}

pub async fn unsuspend(tx: &mut Tx<'_>, sub: Uuid, account: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub, "active", now).await?;
    // What its owner suspended stays suspended: the payment lifts billing's suspension only.
    let owner_suspended = match inst_sql::of_subscription(tx, sub).await? {
        Some(instance) => inst_sql::owner_suspended_from(tx, instance).await?.is_some(),
        None => false,
    };
    if !owner_suspended {
        set_instance(tx, sub, "running", now, "paid").await?;
    }
    mail(tx, account, "service_unsuspended", sub, format!("service_unsuspended:{sub}:{}", now.timestamp())).await
}

pub async fn terminate(tx: &mut Tx<'_>, sub: Uuid, account: Uuid, invoice: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sql::set_status(tx, sub, "terminated", now).await?;
    set_instance(tx, sub, "terminated", now, "overdue").await?;
    mail(tx, account, "service_terminated", sub, format!("service_terminated:{invoice}")).await
}

//! Dunning: what happens to an unpaid invoice as days pass. A reminder before the due date,
//! one after it, suspension of the VPS after `suspend_after_days`, termination after
//! `terminate_after_days`. Each step happens once per invoice (a key in `dunning_events`),
//! sends an email through the outbox, and commits with the change it causes. Payment
//! unsuspends (see `subscriptions::on_invoice_paid`).

use super::BillingError;
use crate::clock::Clock;
use crate::db::{dunning as sql, outbox};
use crate::subscriptions::{self, SubscriptionStatus};
use chrono::Duration;
use sqlx::PgPool;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DunningPolicy {
    pub remind_before_days: i64,
    pub remind_after_days: i64,
    pub suspend_after_days: i64,
    pub terminate_after_days: i64,
}

impl Default for DunningPolicy {
    fn default() -> Self {
        Self { remind_before_days: 3, remind_after_days: 1, suspend_after_days: 7, terminate_after_days: 30 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DunningReport {
    pub reminded_before: usize,
    pub reminded_after: usize,
    pub suspended: usize,
    pub terminated: usize,
}

pub async fn run(pool: &PgPool, clock: &dyn Clock, policy: DunningPolicy) -> Result<DunningReport, BillingError> {
    let now = clock.now();
    let mut report = DunningReport::default();
    let mut tx = pool.begin().await?;

    let before = sql::mark_step(&mut tx, "reminder_before", now, now + Duration::days(policy.remind_before_days), true).await?;
    outbox::insert_for_invoices(&mut tx, "payment_reminder_before", &before).await?;
    report.reminded_before = before.len();

    let after = sql::mark_step(&mut tx, "reminder_after", now, now - Duration::days(policy.remind_after_days), false).await?;
    outbox::insert_for_invoices(&mut tx, "payment_reminder_after", &after).await?;
    report.reminded_after = after.len();

    for r in sql::due_for(&mut tx, "suspended", SubscriptionStatus::Active, now, now - Duration::days(policy.suspend_after_days)).await? {
        subscriptions::suspend(&mut tx, r.subscription_id, r.account_id, r.invoice_id, now).await?;
        report.suspended += 1;
    }
    for r in
        sql::due_for(&mut tx, "terminated", SubscriptionStatus::Suspended, now, now - Duration::days(policy.terminate_after_days)).await?
    {
        subscriptions::terminate(&mut tx, r.subscription_id, r.account_id, r.invoice_id, now).await?;
        report.terminated += 1;
    }
    tx.commit().await?;
    tracing::info!(?report, "dunning run finished");
    Ok(report)
}

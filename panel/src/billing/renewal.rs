//! The renewal run: invoices each subscription's next period a configurable number of days
//! before it starts, and moves subscriptions into their next period when it begins.
//!
//! Idempotent by construction: a batch of subscriptions is locked (`FOR UPDATE SKIP LOCKED`,
//! so several runners share the work), invoiced and committed together; the database's unique
//! key on (subscription, period start) makes a second invoice for a period impossible. Kill it
//! at any point and run it again: committed batches are skipped, the interrupted one is redone.

use super::invoices::{issue_for_subscriptions, PeriodChoice};
use super::BillingError;
use crate::clock::Clock;
use crate::db::subscriptions as sql;
use chrono::Duration;
use sqlx::PgPool;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalPolicy {
    /// Invoice the next period this many days before it starts.
    pub lead_days: i64,
    /// Subscriptions per transaction.
    pub batch_size: i64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self { lead_days: 7, batch_size: 500 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenewalReport {
    pub invoices_issued: usize,
    pub periods_advanced: u64,
    pub batches: usize,
    /// Subscriptions cancelled at the end of their period that ended (their VPS terminated).
    pub cancelled: usize,
}

pub async fn run(pool: &PgPool, clock: &dyn Clock, policy: RenewalPolicy) -> Result<RenewalReport, BillingError> {
    let now = clock.now();
    let today = now.date_naive();
    let until = today + Duration::days(policy.lead_days.max(0));
    let mut report = RenewalReport { cancelled: end_cancelled(pool, now, policy.batch_size.max(1)).await?, ..Default::default() };
    // A runner that was down for a while catches up period by period.
    for _round in 0..10_000 {
        let mut issued_this_round = 0;
        let mut after = None;
        loop {
            let mut tx = pool.begin().await?;
            let ids = sql::lock_due_for_renewal(&mut tx, until, after, policy.batch_size.max(1)).await?;
            let Some(last) = ids.last().copied() else { break };
            after = Some(last);
            let issued = issue_for_subscriptions(&mut tx, &ids, PeriodChoice::Next, now).await?;
            if issued.is_empty() {
                return Err(BillingError::Invalid(format!("{} subscriptions due for renewal produced no invoice", ids.len())));
            }
            tx.commit().await?;
            issued_this_round += issued.len();
            report.batches += 1;
        }
        let mut tx = pool.begin().await?;
        let advanced = sql::advance_periods(&mut tx, today).await?;
        tx.commit().await?;
        report.invoices_issued += issued_this_round;
        report.periods_advanced += advanced;
        if issued_this_round == 0 && advanced == 0 {
            break;
        }
    }
    tracing::info!(?report, "renewal run finished");
    Ok(report)
}

/// Ends the subscriptions their owners cancelled at the end of a period that is over: they
/// were not renewed (`lock_due_for_renewal` skips them), and now their VPS are terminated and
/// the subscription is `cancelled`. Nothing is given back: the period was used.
async fn end_cancelled(pool: &PgPool, now: chrono::DateTime<chrono::Utc>, batch: i64) -> Result<usize, BillingError> {
    use crate::vps::{self, Request, Target};
    let mut n = 0;
    loop {
        let mut tx = pool.begin().await?;
        let due = sql::lock_cancellations_due(&mut tx, now.date_naive(), batch).await?;
        if due.is_empty() {
            break;
        }
        for (sub, _account) in &due {
            vps::request_all(&mut tx, Target::Subscription((*sub).into()), Request::Terminate, now).await?;
            sql::set_status(&mut tx, *sub, crate::subscriptions::SubscriptionStatus::Cancelled, now).await?;
        }
        tx.commit().await?;
        n += due.len();
    }
    Ok(n)
}

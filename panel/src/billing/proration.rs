//! Upgrades and downgrades in the middle of a period: the unused part of the period is
//! prorated by days. An upgrade invoices the difference at once. A downgrade gives the
//! difference back by [`give_back`]: first it reduces what the same subscription still owes,
//! and only then returns what was paid, as account credit, never more than was paid and not
//! yet credited. If the next period was already invoiced (inside the renewal lead time), its
//! difference is settled too. Prices are list prices (coupons do not carry over to the
//! difference).

use super::invoices::{issue_charge, issue_credit_note, CreditTo, InvoiceStatus};
use super::BillingError;
use crate::clock::Clock;
use crate::db::{instances as inst_sql, invoices as inv_sql, subscriptions as sql, Tx};
use crate::jobs::{self, Job};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanChange {
    /// The customer owes the difference: an invoice, due now.
    Charged { invoice_id: Uuid, amount_minor: i64 },
    /// The customer gets the difference back as account credit.
    Credited { credit_note_id: Uuid, amount_minor: i64 },
    /// The prices make the difference zero.
    Even,
}

/// The prorated difference for `unused` of `total` days: `new·unused/total − old·unused/total`,
/// each rounded down, so the customer is never charged a cent more than the days are worth.
pub fn prorated_difference(old_price: i64, new_price: i64, unused_days: i64, total_days: i64) -> i64 {
    if total_days <= 0 {
        return 0;
    }
    let unused = unused_days.clamp(0, total_days);
    new_price * unused / total_days - old_price * unused / total_days
}

pub async fn change_plan(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: Uuid,
    subscription: Uuid,
    new_plan_code: &str,
) -> Result<PlanChange, BillingError> {
    let mut tx = pool.begin().await?;
    let outcome = change_plan_in(&mut tx, clock.now(), customer, subscription, new_plan_code, 0).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// As [`change_plan`], inside the caller's transaction, for the subscription's paying account,
/// at the retail price less `discount_bp` basis points (a reseller's wholesale price; 0 for a
/// customer).
pub async fn change_plan_in(
    tx: &mut Tx<'_>,
    now: DateTime<Utc>,
    customer: Uuid,
    subscription: Uuid,
    new_plan_code: &str,
    discount_bp: i32,
) -> Result<PlanChange, BillingError> {
    let today = now.date_naive();
    // The payer's balance row before the subscription: the lock order of every money path.
    let (_, currency) =
        sql::payer_of(&mut *tx, subscription.into(), Some(customer.into())).await?.ok_or(BillingError::SubscriptionNotFound)?;
    super::ledger::lock_credit(&mut *tx, customer, &currency).await?;
    let sub = sql::lock(&mut *tx, subscription, Some(customer)).await?.ok_or(BillingError::SubscriptionNotFound)?;
    if sub.status != crate::subscriptions::SubscriptionStatus::Active {
        return Err(BillingError::Invalid(format!("a {} subscription cannot change plans", sub.status)));
    }
    let (new_plan, new_kind, new_price) = sql::orderable_plan(&mut *tx, new_plan_code, sub.cycle, &sub.currency)
        .await?
        .ok_or_else(|| BillingError::Invalid("that plan is not available".into()))?;
    let new_price = new_price.ok_or_else(|| BillingError::Invalid(format!("that plan has no {} price", sub.cycle.as_str())))?;
    let new_price = crate::resellers::wholesale_price(new_price, discount_bp);
    let old_kind = crate::db::plans::kind_of(&mut *tx, sub.plan_id).await?;
    if new_kind != old_kind {
        return Err(BillingError::Invalid("a container cannot become a KVM machine or back: order a new VPS instead".into()));
    }
    if new_plan == sub.plan_id {
        return Err(BillingError::Invalid("that is already the plan".into()));
    }
    if let Some(why) = crate::capacity::unavailable(tx, new_plan).await? {
        return Err(BillingError::Invalid(why));
    }
    let total = (sub.current_period_end - sub.current_period_start).num_days();
    let unused = (sub.current_period_end - today).num_days();
    let mut diff = prorated_difference(sub.price_minor, new_price, unused, total);
    if inv_sql::period_invoice(&mut *tx, sub.id, sub.current_period_end).await?.is_some() {
        diff += new_price - sub.price_minor;
    }
    let description = |what: &str| format!("{what}: plan change on {today}, {} of {total} days left in the period", unused.clamp(0, total));
    let outcome = if diff > 0 {
        // Growing is buying more: not while the payer owes past due.
        super::ensure_no_overdue(&mut *tx, customer, now).await?;
        let rate = inv_sql::tax_rate(&mut *tx, customer, today).await?;
        let id = issue_charge(
            &mut *tx,
            &inv_sql::NewDocument {
                account_id: customer,
                credit_note_for: None,
                subscription_id: Some(sub.id),
                currency: &sub.currency,
                description: &description("Upgrade"),
                amount_minor: diff,
                rate_bp: rate,
                tax_minor: None,
            },
            now,
        )
        .await?;
        PlanChange::Charged { invoice_id: id, amount_minor: diff }
    } else if diff < 0 {
        match give_back(&mut *tx, sub.id, -diff, &description("Downgrade"), now).await? {
            Some(g) => PlanChange::Credited { credit_note_id: g.credit_note, amount_minor: g.total_minor() },
            None => PlanChange::Even,
        }
    } else {
        PlanChange::Even
    };
    sql::change_plan(&mut *tx, sub.id, new_plan, new_price).await?;
    if let Some(instance) = inst_sql::of_subscription(&mut *tx, sub.id.into()).await? {
        inst_sql::set_plan(&mut *tx, instance, new_plan).await?;
        jobs::enqueue(&mut *tx, Job::Resize { instance_id: instance, plan_id: new_plan }).await?;
    }
    Ok(outcome)
}

/// The one rule for a server that ends before its period is used (terminated by its owner, or
/// never provisioned): the unused days of the current period, prorated by days as a plan
/// change is (rounded down), and the whole of a next period already invoiced, are given back
/// by [`give_back`]: first off what the subscription still owes, then as credit up to what was
/// paid. A server never placed on a host used none of its period: all of it is unused. The
/// caller holds the payer's balance row and the subscription, which is live.
pub async fn refund_unused(tx: &mut Tx<'_>, subscription: Uuid, now: DateTime<Utc>) -> Result<Option<GivenBack>, BillingError> {
    let today = now.date_naive();
    let sub = sql::lock(&mut *tx, subscription, None).await?.ok_or(BillingError::SubscriptionNotFound)?;
    let total = (sub.current_period_end - sub.current_period_start).num_days();
    let delivered = inst_sql::placed_of_subscription(&mut *tx, sub.id.into()).await?.unwrap_or(false);
    let unused = if delivered { (sub.current_period_end - today).num_days().clamp(0, total.max(0)) } else { total.max(0) };
    let mut amount = -prorated_difference(sub.price_minor, 0, unused, total);
    if inv_sql::period_invoice(&mut *tx, sub.id, sub.current_period_end).await?.is_some() {
        amount += sub.price_minor;
    }
    if amount <= 0 {
        return Ok(None);
    }
    let text = if delivered {
        format!("Unused service: ended on {today}, {unused} of {total} days left in the period")
    } else {
        format!("Service never delivered: ended on {today}, all {total} days of the period unused")
    };
    give_back(&mut *tx, sub.id, amount, &text, now).await
}

/// What [`give_back`] did, before tax: how much of what the subscription still owed was
/// cancelled, and how much of what it had paid came back as account credit. They are told
/// apart because only the second is money the payer gets (mails say which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GivenBack {
    /// The first credit note issued.
    pub credit_note: Uuid,
    /// Unpaid invoices reduced by this much: owed no more, nothing credited for it.
    pub cancelled_minor: i64,
    /// Paid invoices given back by this much, as account credit (their tax comes back too).
    pub credited_minor: i64,
}

impl GivenBack {
    /// All that was given back, cancelled or credited.
    pub fn total_minor(&self) -> i64 {
        self.cancelled_minor + self.credited_minor
    }
}

/// Gives `amount` (before tax) back on a subscription, in this order:
///
/// 1. What it still owes (its unpaid invoices, newest first) is reduced: each is voided by a
///    credit note to the receivable, and what is left owed of it is invoiced again, due when the
///    voided one was (an invoice is always owed in full or not at all).
/// 2. Then what it paid (its paid invoices, newest first) comes back as account credit, each at
///    most what it paid and earlier credit notes did not already give back. Whatever is left
///    after that was never paid, and is not credited.
///
/// Returns what was cancelled and what credited, or `None` if there was nothing to give back.
/// The caller holds the payer's balance row and the subscription.
pub async fn give_back(
    tx: &mut Tx<'_>,
    sub: Uuid,
    amount: i64,
    description: &str,
    now: DateTime<Utc>,
) -> Result<Option<GivenBack>, BillingError> {
    let mut left = amount;
    let mut first = None;
    let mut cancelled = 0;
    for inv in inv_sql::lock_of_subscription(&mut *tx, sub, InvoiceStatus::Issued).await? {
        if left <= 0 {
            break;
        }
        let (credited, credited_tax) = inv_sql::credited(&mut *tx, inv.id).await?;
        let remaining = inv.subtotal_minor - credited;
        if remaining <= 0 {
            continue;
        }
        let take = left.min(remaining);
        let cn =
            issue_credit_note(&mut *tx, &inv, description, remaining, (inv.tax_minor - credited_tax).max(0), CreditTo::Receivable, now)
                .await?;
        inv_sql::set_status(&mut *tx, inv.id, InvoiceStatus::Void, now).await?;
        if take < remaining {
            // A new invoice, taxed by the facts of today (as its treatment, recorded on insert, is).
            let rate = inv_sql::tax_rate(&mut *tx, inv.account_id, now.date_naive()).await?;
            let text = format!("Balance of invoice {} after a plan change", super::invoices::display_number(&inv));
            super::invoices::issue_charge_due(
                &mut *tx,
                &inv_sql::NewDocument {
                    account_id: inv.account_id,
                    credit_note_for: None,
                    subscription_id: Some(sub),
                    currency: &inv.currency,
                    description: &text,
                    amount_minor: remaining - take,
                    rate_bp: rate,
                    tax_minor: None,
                },
                now,
                inv.due_at.unwrap_or(now),
            )
            .await?;
        }
        left -= take;
        cancelled += take;
        first.get_or_insert(cn);
    }
    for inv in inv_sql::lock_of_subscription(&mut *tx, sub, InvoiceStatus::Paid).await? {
        if left <= 0 {
            break;
        }
        let (credited, credited_tax) = inv_sql::credited(&mut *tx, inv.id).await?;
        let remaining = inv.subtotal_minor - credited;
        if remaining <= 0 {
            continue;
        }
        let take = left.min(remaining);
        let tax_left = (inv.tax_minor - credited_tax).max(0);
        let tax = if take == remaining {
            tax_left
        } else {
            let rate = inv_sql::first_line_rate(&mut *tx, inv.id).await?;
            inv_sql::tax_for(&mut *tx, take, rate).await?.min(tax_left)
        };
        let cn = issue_credit_note(&mut *tx, &inv, description, take, tax, CreditTo::AccountCredit, now).await?;
        left -= take;
        first.get_or_insert(cn);
    }
    Ok(first.map(|credit_note| GivenBack { credit_note, cancelled_minor: cancelled, credited_minor: amount - left - cancelled }))
}

#[cfg(test)]
mod tests {
    use super::prorated_difference;

    #[test]
    fn prorates_by_days_rounding_down_each_side() {
        // 10.00 → 20.00 with 15 of 30 days left: 10.00 more.
        assert_eq!(prorated_difference(1000, 2000, 15, 30), 500);
        // Downgrade is negative.
        assert_eq!(prorated_difference(2000, 1000, 15, 30), -500);
        // Nothing left, nothing owed; out-of-range days are clamped.
        assert_eq!(prorated_difference(1000, 2000, 0, 30), 0);
        assert_eq!(prorated_difference(1000, 2000, 45, 30), 1000);
        assert_eq!(prorated_difference(1000, 1001, 1, 31), 0);
    }
}

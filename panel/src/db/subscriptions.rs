//! SQL for `subscriptions` and `orders`.

use super::Tx;
use crate::ids::{AccountId, SubscriptionId};
use crate::orders::OrderStatus;
use crate::plans::BillingCycle;
use crate::subscriptions::SubscriptionStatus;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub order_id: Uuid,
    pub plan_id: i64,
    pub cycle: BillingCycle,
    pub currency: String,
    pub price_minor: i64,
    pub anchor_date: NaiveDate,
    pub current_period_index: i32,
    pub current_period_start: NaiveDate,
    pub current_period_end: NaiveDate,
    pub status: SubscriptionStatus,
}

pub async fn lock(tx: &mut Tx<'_>, id: Uuid, owner: Option<Uuid>) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, account_id, order_id, plan_id, cycle, currency, price_minor, anchor_date, current_period_index,
                current_period_start, current_period_end, status
           FROM subscriptions WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR UPDATE",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut **tx)
    .await
}

/// Who pays a subscription and in what currency, without locking it: what must be known to
/// lock the payer's balance row first. `owner` scopes it as [`lock`] does.
pub async fn payer_of(tx: &mut Tx<'_>, id: SubscriptionId, owner: Option<AccountId>) -> Result<Option<(AccountId, String)>, sqlx::Error> {
    sqlx::query_as("SELECT account_id, currency FROM subscriptions WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2)")
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await
}

pub async fn set_status(tx: &mut Tx<'_>, id: Uuid, status: SubscriptionStatus, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = $2,
                suspended_at = CASE WHEN $2 = 'suspended' THEN $3 WHEN $2 = 'active' THEN NULL ELSE suspended_at END,
                terminated_at = CASE WHEN $2 = 'terminated' THEN $3 ELSE terminated_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_order_status(tx: &mut Tx<'_>, order: Uuid, status: OrderStatus) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET status = $2, updated_at = now() WHERE id = $1").bind(order).bind(status).execute(&mut **tx).await?;
    Ok(())
}

pub async fn change_plan(tx: &mut Tx<'_>, id: Uuid, plan_id: i64, price_minor: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscriptions SET plan_id = $2, price_minor = $3 WHERE id = $1")
        .bind(id)
        .bind(plan_id)
        .bind(price_minor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Does the subscription have issued invoices whose due date has passed, other than `except`?
pub async fn has_overdue(tx: &mut Tx<'_>, id: Uuid, now: DateTime<Utc>, except: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE subscription_id = $1 AND kind = 'invoice'
                          AND status = 'issued' AND due_at < $2 AND id <> $3)",
    )
    .bind(id)
    .bind(now)
    .bind(except)
    .fetch_one(&mut **tx)
    .await
}

/// Subscriptions after `after` (in id order) whose next period is due to be invoiced by
/// `until` and is not yet: locked, skipping those another runner holds. Walking by id keeps
/// each batch an index range instead of a rescan of every subscription.
pub async fn lock_due_for_renewal(tx: &mut Tx<'_>, until: NaiveDate, after: Option<Uuid>, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM subscriptions s
          WHERE ($3::uuid IS NULL OR s.id > $3)
            AND s.status IN ('active', 'suspended') AND NOT s.cancel_at_period_end AND s.current_period_end <= $1
            AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'invoice'
                               AND i.period_start = s.current_period_end)
          ORDER BY s.id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(until)
    .bind(limit)
    .bind(after)
    .fetch_all(&mut **tx)
    .await
}

/// Moves subscriptions whose current period has ended (and whose next one is invoiced) into
/// the next period. Returns how many moved; call until 0 to catch up several periods.
pub async fn advance_periods(tx: &mut Tx<'_>, today: NaiveDate) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE subscriptions s
            SET current_period_index = s.current_period_index + 1,
                current_period_start = s.current_period_end,
                current_period_end = period_start(s.anchor_date, s.cycle, s.current_period_index + 2)
          WHERE s.status IN ('active', 'suspended') AND s.current_period_end <= $1
            AND EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'invoice'
                           AND i.period_start = s.current_period_end)",
    )
    .bind(today)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected())
}

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct OrderRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub plan_name: String,
    pub cycle: BillingCycle,
    pub hostname: String,
    pub os_template: String,
    pub status: OrderStatus,
    pub created_at: DateTime<Utc>,
    pub invoice_id: Option<Uuid>,
    pub instance_id: Option<Uuid>,
}

const ORDER_SELECT: &str = "SELECT o.id, o.account_id, p.name AS plan_name, o.cycle, o.hostname,
        t.name AS os_template, o.status, o.created_at,
        (SELECT i.id FROM invoices i WHERE i.subscription_id = s.id AND i.kind = 'invoice' ORDER BY i.period_start LIMIT 1) AS invoice_id,
        (SELECT n.id FROM instances n WHERE n.subscription_id = s.id ORDER BY n.created_at DESC LIMIT 1) AS instance_id
   FROM orders o JOIN plans p ON p.id = o.plan_id JOIN os_templates t ON t.id = o.os_template_id
   LEFT JOIN subscriptions s ON s.order_id = o.id";

pub async fn orders_for<'e, E: sqlx::PgExecutor<'e>>(e: E, owner: Uuid) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!("{ORDER_SELECT} WHERE o.account_id = $1 ORDER BY o.created_at DESC")).bind(owner).fetch_all(e).await
}

pub async fn order<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid, owner: Option<Uuid>) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!("{ORDER_SELECT} WHERE o.id = $1 AND ($2::uuid IS NULL OR o.account_id = $2)"))
        .bind(id)
        .bind(owner)
        .fetch_optional(e)
        .await
}

/// What an order needs to know about the customer placing it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Orderer {
    pub role: crate::accounts::Role,
    pub status: crate::accounts::AccountStatus,
    pub currency: String,
    pub email_verified: bool,
}

pub async fn orderer(tx: &mut Tx<'_>, account: Uuid) -> Result<Option<Orderer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT role, status, currency, email_verified_at IS NOT NULL AS email_verified
           FROM accounts WHERE id = $1 FOR SHARE",
    )
    .bind(account)
    .fetch_optional(&mut **tx)
    .await
}

/// The orderable plan with this code: (id, kind, price in the currency and cycle).
pub async fn orderable_plan(
    tx: &mut Tx<'_>,
    code: &str,
    cycle: BillingCycle,
    currency: &str,
) -> Result<Option<(i64, vessel_core::InstanceKind, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.kind,
                (SELECT amount_minor FROM plan_prices pp WHERE pp.plan_id = p.id AND pp.cycle = $2 AND pp.currency = $3)
           FROM plans p WHERE p.code = $1 AND p.orderable",
    )
    .bind(code)
    .bind(cycle)
    .bind(currency)
    .fetch_optional(&mut **tx)
    .await
}

/// An enabled OS template by name: (id, for_containers, for_kvm).
pub async fn template(tx: &mut Tx<'_>, name: &str) -> Result<Option<(Uuid, bool, bool)>, sqlx::Error> {
    sqlx::query_as("SELECT id, for_containers, for_kvm FROM os_templates WHERE name = $1 AND enabled")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CouponRow {
    pub id: Uuid,
    pub percent_off: Option<i32>,
    pub amount_off_minor: Option<i64>,
    pub currency: Option<String>,
    pub valid_until: Option<DateTime<Utc>>,
    pub max_redemptions: Option<i32>,
    pub redemptions: i64,
}

pub async fn coupon(tx: &mut Tx<'_>, code: &str) -> Result<Option<CouponRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.percent_off, c.amount_off_minor, c.currency, c.valid_until, c.max_redemptions,
                c.redemptions::bigint AS redemptions
           FROM coupons c WHERE c.code = $1",
    )
    .bind(code)
    .fetch_optional(&mut **tx)
    .await
}

/// Counts one redemption of a coupon if it has one left; false if it is used up. A single
/// UPDATE: under READ COMMITTED it waits for a concurrent redemption and re-checks the limit
/// on the row that one left (the `coupons_redemptions_within_max` CHECK backs it up).
pub async fn redeem_coupon(tx: &mut Tx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE coupons SET redemptions = redemptions + 1
          WHERE id = $1 AND (max_redemptions IS NULL OR redemptions < max_redemptions)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub struct NewOrder<'a> {
    pub account_id: Uuid,
    pub plan_id: i64,
    pub cycle: BillingCycle,
    pub os_template_id: Uuid,
    pub hostname: &'a str,
    pub coupon_id: Option<Uuid>,
    pub currency: &'a str,
    pub price_minor: i64,
    pub anchor: NaiveDate,
    pub period_end: NaiveDate,
}

/// Inserts an order and its (pending) subscription; returns (order id, subscription id).
pub async fn insert_order(tx: &mut Tx<'_>, o: &NewOrder<'_>) -> Result<(Uuid, Uuid), sqlx::Error> {
    let order: Uuid = sqlx::query_scalar(
        "INSERT INTO orders (account_id, plan_id, cycle, os_template_id, hostname, coupon_id)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(o.account_id)
    .bind(o.plan_id)
    .bind(o.cycle)
    .bind(o.os_template_id)
    .bind(o.hostname)
    .bind(o.coupon_id)
    .fetch_one(&mut **tx)
    .await?;
    let sub: Uuid = sqlx::query_scalar(
        "INSERT INTO subscriptions (account_id, order_id, plan_id, cycle, currency, price_minor, coupon_id, anchor_date,
                                    current_period_start, current_period_end)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id",
    )
    .bind(o.account_id)
    .bind(order)
    .bind(o.plan_id)
    .bind(o.cycle)
    .bind(o.currency)
    .bind(o.price_minor)
    .bind(o.coupon_id)
    .bind(o.anchor)
    .bind(o.period_end)
    .fetch_one(&mut **tx)
    .await?;
    Ok((order, sub))
}

/// Marks a live subscription of `owner` to end at the end of its period (or not). False if
/// it is not live.
pub async fn set_cancel_at_period_end(tx: &mut Tx<'_>, id: Uuid, owner: Uuid, on: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE subscriptions SET cancel_at_period_end = $3 WHERE id = $1 AND account_id = $2 AND status IN ('active', 'suspended')",
    )
    .bind(id)
    .bind(owner)
    .bind(on)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What the server page says about billing: when the period ends and what the next costs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RenewalView {
    pub current_period_end: NaiveDate,
    pub price_minor: i64,
    pub currency: String,
    pub cycle: BillingCycle,
    pub status: SubscriptionStatus,
    pub cancel_at_period_end: bool,
    pub plan_kind: vessel_core::InstanceKind,
}

pub async fn renewal_view<'e, E: sqlx::PgExecutor<'e>>(e: E, id: Uuid, owner: Uuid) -> Result<Option<RenewalView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.current_period_end, s.price_minor, s.currency, s.cycle, s.status, s.cancel_at_period_end,
                p.kind AS plan_kind
           FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.id = $1 AND s.account_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(e)
    .await
}

/// The plans a subscription could move to: orderable, same kind, priced in its cycle and
/// currency: (code, name, price).
pub async fn plan_choices<'e, E: sqlx::PgExecutor<'e>>(e: E, sub: Uuid) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.code, p.name, pp.amount_minor
           FROM subscriptions s JOIN plans cur ON cur.id = s.plan_id
           JOIN plans p ON p.kind = cur.kind AND p.orderable AND p.id <> s.plan_id
           JOIN plan_prices pp ON pp.plan_id = p.id AND pp.cycle = s.cycle AND pp.currency = s.currency
          WHERE s.id = $1 ORDER BY pp.amount_minor, p.code",
    )
    .bind(sub)
    .fetch_all(e)
    .await
}

/// Live subscriptions cancelled at the end of a period that has ended, locked.
pub async fn lock_cancellations_due(tx: &mut Tx<'_>, today: NaiveDate, limit: i64) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, account_id FROM subscriptions WHERE cancel_at_period_end AND status IN ('active', 'suspended') AND current_period_end <= $1
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(today)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

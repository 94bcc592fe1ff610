//! Placing an order: the order, its subscription and its first invoice in one transaction,
//! so there is never an order without an invoice or an invoice without an order.

use crate::billing::invoices::{issue_for_subscriptions, PeriodChoice};
use crate::billing::payments::apply_credit;
use crate::billing::{period, BillingError};
use crate::clock::Clock;
use crate::db::subscriptions as sql;
use crate::plans::BillingCycle;
use sqlx::PgPool;
use uuid::Uuid;
use vessel_core::{Hostname, InstanceKind};

pub use sql::OrderRow;

pg_enum! {
    /// Where an order is (`order_status` in the schema): paid, then placed on a host, then
    /// its VPS is up.
    pub enum OrderStatus in "order_status" {
        PendingPayment = "pending_payment",
        Paid = "paid",
        WaitingForCapacity = "waiting_for_capacity",
        Provisioning = "provisioning",
        Active = "active",
        Cancelled = "cancelled",
        Failed = "failed",
    }
}

impl OrderStatus {
    /// The status in the customer's words (never the internal name), and its badge class.
    pub fn customer_label(self) -> (&'static str, &'static str) {
        match self {
            OrderStatus::PendingPayment => ("Awaiting payment", "warn"),
            OrderStatus::Paid | OrderStatus::Provisioning => ("Being set up", "warn"),
            OrderStatus::WaitingForCapacity => ("Waiting for a free slot", "warn"),
            OrderStatus::Active => ("Active", "ok"),
            OrderStatus::Cancelled => ("Cancelled", ""),
            OrderStatus::Failed => ("Could not be set up", "bad"),
        }
    }
}

/// What a customer fills in on the order form.
#[derive(Clone, Debug)]
pub struct OrderRequest {
    pub plan_code: String,
    pub cycle: BillingCycle,
    pub os_template: String,
    pub hostname: String,
    pub coupon: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order_id: Uuid,
    pub subscription_id: Uuid,
    pub invoice_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("that plan is not available")]
    UnknownPlan,
    /// No active host could ever run it ([`crate::capacity`]).
    #[error("{0}")]
    Unavailable(String),
    #[error("that plan has no {0} price in your currency")]
    NoPrice(&'static str),
    #[error("that operating system is not available for this plan")]
    UnknownTemplate,
    #[error("hostname: {0}")]
    BadHostname(#[from] vessel_core::hostname::HostnameError),
    #[error("coupon: {0}")]
    BadCoupon(String),
    #[error("{0}")]
    Account(&'static str),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl OrderError {
    /// The form field at fault, for the page (and the API's problem+json).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            OrderError::UnknownPlan | OrderError::Unavailable(_) => Some("plan"),
            OrderError::NoPrice(_) => Some("cycle"),
            OrderError::UnknownTemplate => Some("os_template"),
            OrderError::BadHostname(_) => Some("hostname"),
            OrderError::BadCoupon(_) => Some("coupon"),
            _ => None,
        }
    }
    /// A mistake the customer can fix (as opposed to our failure).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, OrderError::Db(_) | OrderError::Billing(BillingError::Db(_)))
    }
}

pub async fn place_order(pool: &PgPool, clock: &dyn Clock, customer: Uuid, req: OrderRequest) -> Result<PlacedOrder, OrderError> {
    place_order_with_access(pool, clock, customer, req, &vessel_core::Access::default()).await
}

/// [`place_order`], with the way into the server (keys, root password hash) the order carries
/// to its instance, written in the same transaction (a 100 % coupon creates the instance
/// before this returns).
pub async fn place_order_with_access(
    pool: &PgPool,
    clock: &dyn Clock,
    customer: Uuid,
    req: OrderRequest,
    access: &vessel_core::Access,
) -> Result<PlacedOrder, OrderError> {
    let now = clock.now();
    let hostname = Hostname::parse(&req.hostname)?;
    let mut tx = pool.begin().await?;
    let who = sql::orderer(&mut tx, customer).await?.ok_or(OrderError::Account("no such account"))?;
    if who.role != crate::accounts::Role::Customer {
        return Err(OrderError::Account("only customer accounts can order"));
    }
    if who.status != crate::accounts::AccountStatus::Active {
        return Err(OrderError::Account("your account is not active"));
    }
    if !who.email_verified {
        return Err(OrderError::Account("please verify your email address before ordering"));
    }
    let (plan_id, kind, price) =
        sql::orderable_plan(&mut tx, req.plan_code.trim(), req.cycle, &who.currency).await?.ok_or(OrderError::UnknownPlan)?;
    let price = price.ok_or(OrderError::NoPrice(req.cycle.as_str()))?;
    if let Some(why) = crate::capacity::unavailable(&mut tx, plan_id).await? {
        return Err(OrderError::Unavailable(why));
    }
    let kind: InstanceKind = kind;
    let (template, for_ct, for_kvm) = sql::template(&mut tx, req.os_template.trim()).await?.ok_or(OrderError::UnknownTemplate)?;
    if (kind == InstanceKind::Container && !for_ct) || (kind == InstanceKind::Kvm && !for_kvm) {
        return Err(OrderError::UnknownTemplate);
    }
    // The customer's balance row first (a 100 % order is settled from credit below): the
    // lock order of every money path.
    crate::billing::ledger::lock_credit(&mut tx, customer, &who.currency).await?;
    crate::billing::ensure_no_overdue(&mut tx, customer, now).await?;
    let coupon = match req.coupon.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(code) => {
            let c = sql::coupon(&mut tx, &code.to_uppercase()).await?.ok_or_else(|| OrderError::BadCoupon("no such coupon".into()))?;
            if c.valid_until.is_some_and(|t| t <= now) {
                return Err(OrderError::BadCoupon("this coupon has expired".into()));
            }
            if c.amount_off_minor.is_some() && c.currency.as_deref() != Some(who.currency.as_str()) {
                return Err(OrderError::BadCoupon(format!("this coupon is not valid for payments in {}", who.currency)));
            }
            // Counted on the coupon row by an UPDATE that re-reads its newest version, so a
            // parallel order waits for this one and then sees the coupon used up.
            if !sql::redeem_coupon(&mut tx, c.id).await? {
                return Err(OrderError::BadCoupon("this coupon has been used up".into()));
            }
            Some(c.id)
        }
    };
    let anchor = now.date_naive();
    let (order_id, subscription_id) = sql::insert_order(
        &mut tx,
        &sql::NewOrder {
            account_id: customer,
            plan_id,
            cycle: req.cycle,
            os_template_id: template,
            hostname: hostname.as_str(),
            coupon_id: coupon,
            currency: &who.currency,
            price_minor: price,
            anchor,
            period_end: period::period(anchor, req.cycle, 0).end,
        },
    )
    .await?;
    crate::db::access::set_order_access(&mut tx, order_id, access).await?;
    let issued = issue_for_subscriptions(&mut tx, &[subscription_id], PeriodChoice::Current, now).await?;
    let first = issued.first().ok_or(BillingError::Invalid("the first invoice was not issued".into()))?;
    if first.total_minor == 0 {
        // Nothing to pay (a 100% coupon): settled at once, the VPS is requested now.
        apply_credit(&mut tx, customer, first.invoice_id, now).await?;
    }
    let placed = PlacedOrder { order_id, subscription_id, invoice_id: first.invoice_id };
    tx.commit().await?;
    Ok(placed)
}

pub async fn list_for(pool: &PgPool, customer: Uuid) -> Result<Vec<OrderRow>, sqlx::Error> {
    sql::orders_for(pool, customer).await
}

/// One of a customer's orders; another customer's is `None` (a 404).
pub async fn get_for(pool: &PgPool, customer: Uuid, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
    sql::order(pool, id, Some(customer)).await
}

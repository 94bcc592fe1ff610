//! The billing engine: the part that must never be wrong.
//!
//! * [`period`]: anchored periods with month-end clamping.
//! * [`ledger`]: the double-entry ledger every money movement goes through.
//! * [`invoices`]: issuing (gapless numbers per year), reading, voiding with credit notes.
//! * [`payments`]: account credit, paying invoices with it, manual and gateway payments.
//! * [`renewal`]: the renewal run (idempotent: a unique key, not a check in code).
//! * [`dunning`]: reminders, suspension, termination, unsuspension on payment.
//! * [`proration`]: plan changes in the middle of a period.
//! * [`stripe`]: card payments (Stripe Payment Intents) and Stripe's signed webhooks.
//!
//! Invariants a test checks after every scenario: every ledger transaction balances, and each
//! customer's balance (credit − receivable) equals Σ external payments − Σ invoices + Σ credit
//! notes.

pub mod dunning;
pub mod invoices;
pub mod ledger;
pub mod payments;
pub mod pdf;
pub mod period;
pub mod proration;
pub mod renewal;
pub mod stripe;

use crate::money::Money;
use uuid::Uuid;

/// What can go wrong in billing, in words a customer or admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("no such invoice")]
    InvoiceNotFound,
    #[error("no such subscription")]
    SubscriptionNotFound,
    #[error("invoice {0} is already paid")]
    AlreadyPaid(String),
    #[error("invoice {0} is void")]
    InvoiceVoid(String),
    #[error("not enough account credit: the invoice is {needed}, the credit is {available}")]
    InsufficientCredit { needed: Money, available: Money },
    #[error("a credit note cannot be voided or paid")]
    NotAnInvoice,
    #[error("{0}")]
    Invalid(String),
    /// The payer has invoices past their due date: nothing new or bigger until they are paid.
    #[error("{0}")]
    Overdue(Overdue),
    #[error("the payment gateway's signature is invalid: {0}")]
    BadSignature(&'static str),
    #[error("the payment gateway failed: {0}")]
    Gateway(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What a payer owes past due: the invoices (numbers, oldest first) and their sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    pub invoices: Vec<String>,
    pub total: Money,
}

impl std::fmt::Display for Overdue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "there are overdue invoices to pay first ({}: {} in all); new servers and upgrades are possible again once they are paid",
            self.invoices.join(", "),
            self.total
        )
    }
}

/// Refuses to create or grow anything for a payer with overdue invoices. The caller holds the
/// payer's balance row, so a payment racing the check is either seen or waits.
pub async fn ensure_no_overdue(tx: &mut crate::db::Tx<'_>, payer: Uuid, now: chrono::DateTime<chrono::Utc>) -> Result<(), BillingError> {
    let owed = crate::db::invoices::overdue(&mut **tx, payer, now).await?;
    let Some(first) = owed.first() else { return Ok(()) };
    let currency = crate::money::Currency::parse(&first.currency).map_err(|e| BillingError::Invalid(e.to_string()))?;
    let total = owed.iter().filter(|i| i.currency == first.currency).map(|i| i.total_minor).sum();
    Err(BillingError::Overdue(Overdue {
        invoices: owed.iter().map(invoices::display_number).collect(),
        total: Money::new(total, currency),
    }))
}

/// Identifies an issued invoice for the people reading it.
pub fn invoice_number(kind_is_credit_note: bool, year: i32, seq: i32) -> String {
    format!("{}-{year}-{seq:06}", if kind_is_credit_note { "CN" } else { "INV" })
}

/// What the renewal and order paths report about invoices they issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedInvoice {
    pub invoice_id: Uuid,
    pub account_id: Uuid,
    pub subscription_id: Uuid,
    pub total_minor: i64,
}

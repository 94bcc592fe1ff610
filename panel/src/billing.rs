//! The billing engine: the part that must never be wrong.
//!
//! * [`period`]: anchored periods with month-end clamping.
//! * [`ledger`]: the double-entry ledger every money movement goes through.
//! * [`invoices`]: issuing (gapless numbers per year), reading, voiding with credit notes.
//! * [`payments`]: account credit, paying invoices with it, manual and gateway payments.
//! * [`renewal`]: the renewal run (idempotent: a unique key, not a check in code).
//! * [`dunning`]: reminders, suspension, termination, unsuspension on payment.
//! * [`proration`]: plan changes in the middle of a period.
//! * [`stripe`]: Stripe Checkout and its signed webhooks.
//!
//! Invariants a test checks after every scenario: every ledger transaction balances, and each
//! customer's balance (credit − receivable) equals Σ external payments − Σ invoices + Σ credit
//! notes.

pub mod dunning;
pub mod invoices;
pub mod ledger;
pub mod payments;
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
    #[error("the payment gateway's signature is invalid: {0}")]
    BadSignature(&'static str),
    #[error("the payment gateway failed: {0}")]
    Gateway(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
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

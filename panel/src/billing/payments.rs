//! Money coming in, and invoices paid with it.
//!
//! Every external payment (manual, Stripe) first becomes account credit (Dr cash, Cr credit);
//! paying an invoice then moves credit to the receivable (Dr credit, Cr receivable). One path
//! for every way of paying, so the ledger and the invoice states cannot disagree.

use super::ledger::{self, LedgerAccount, Refs};
use super::{
    invoices::{display_number, InvoiceKind, InvoiceStatus},
    BillingError,
};
use crate::audit::{self, Actor};
use crate::clock::Clock;
use crate::db::{invoices as inv_sql, payments as sql, Tx};
use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::net::IpAddr;
use uuid::Uuid;

pg_enum! {
    /// How a payment was made (`payment_method` in the schema).
    pub enum PaymentMethod in "payment_method" {
        /// An invoice paid from the customer's balance.
        AccountCredit = "account_credit",
        Manual = "manual",
        Stripe = "stripe",
    }
}

/// How money reached us from outside (a top-up): never account credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Manual,
    Stripe,
}

impl From<Method> for PaymentMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Manual => PaymentMethod::Manual,
            Method::Stripe => PaymentMethod::Stripe,
        }
    }
}

/// Adds account credit from an external payment. `external_ref` (the gateway's id, or the
/// admin's reference) makes it idempotent: `Ok(None)` means it was recorded before.
pub async fn top_up(
    tx: &mut Tx<'_>,
    customer: Uuid,
    method: Method,
    amount: Money,
    external_ref: &str,
    recorded_by: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, BillingError> {
    if amount.minor <= 0 {
        return Err(BillingError::Invalid("a payment must be more than zero".into()));
    }
    let currency = amount.currency.as_str();
    ledger::lock_credit(tx, customer, currency).await?;
    let payment = sql::insert(
        tx,
        &sql::NewPayment {
            account_id: customer,
            invoice_id: None,
            method: method.into(),
            currency,
            amount_minor: amount.minor,
            external_ref: Some(external_ref),
            recorded_by,
            at: now,
        },
    )
    .await?;
    let Some(payment) = payment else { return Ok(None) };
    ledger::post(
        tx,
        currency,
        "payment received",
        Refs { invoice: None, payment: Some(payment) },
        &[ledger::debit(LedgerAccount::Cash(method), amount.minor), ledger::credit(LedgerAccount::Credit(customer), amount.minor)],
        now,
    )
    .await?;
    Ok(Some(payment))
}

/// After money came in: pays `first` (the invoice the payment was for, if any), then the
/// customer's other open invoices in that currency, oldest due first, as long as the credit
/// covers the next one; then mails the customer what the payment did (which invoices it paid,
/// the credit left). In the payment's transaction, so the mail never says more than happened.
pub async fn settle(
    tx: &mut Tx<'_>,
    customer: Uuid,
    amount: Money,
    payment: Uuid,
    first: Option<(Uuid, bool)>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, BillingError> {
    let currency = amount.currency.as_str();
    let mut paid = Vec::new();
    if let Some((invoice, must)) = first {
        // A gateway payment for an invoice paid or voided meanwhile stays credit (`must` false:
        // nothing is lost); an admin naming an invoice that cannot be paid is told so.
        let mut sp = sqlx::Acquire::begin(&mut **tx).await?;
        match apply_credit(&mut sp, customer, invoice, now).await {
            Ok(()) => {
                sp.commit().await?;
                paid.push(invoice);
            }
            Err(e) if must => return Err(e),
            Err(e) => {
                tracing::warn!(%invoice, error = %e, "payment kept as credit");
                sp.rollback().await?;
            }
        }
    }
    for inv in inv_sql::open_for(tx, customer, currency).await? {
        let available = ledger::lock_credit(tx, customer, currency).await?;
        if inv.total_minor > available {
            break;
        }
        apply_credit(tx, customer, inv.id, now).await?;
        paid.push(inv.id);
    }
    let numbers: Vec<String> = inv_sql::numbers(tx, &paid)
        .await?
        .into_iter()
        .filter_map(|(kind, year, seq)| Some(super::invoice_number(kind == InvoiceKind::CreditNote, year?, seq?)))
        .collect();
    let left = Money::new(ledger::lock_credit(tx, customer, currency).await?, amount.currency);
    if let Some(email) = sql::account_email(tx, customer).await? {
        let email = crate::accounts::Email::parse(&email).map_err(|e| BillingError::Invalid(e.to_string()))?;
        crate::outbox::enqueue(
            tx,
            &email,
            "payment_received",
            serde_json::json!({ "amount_minor": amount.minor, "currency": currency, "payment_id": payment,
                                "paid_invoices": numbers.join(", "), "credit_left": left.to_string() }),
            Some(format!("payment_received:{payment}")),
        )
        .await?;
    }
    Ok(numbers)
}

/// Pays one of `customer`'s issued invoices from their account credit, then lets the
/// subscription react (activation of a new order, unsuspension).
///
/// The one place credit is spent. It locks the customer's balance row before it reads the
/// balance, so parallel payments spending the same credit run one after the other and the
/// second sees what the first left; the database's `ledger_accounts_credit_never_negative`
/// refuses anything that would still take it below zero. Then the invoice's subscription,
/// then the invoice: the one lock order (balance row, subscription, invoice, instance).
pub async fn apply_credit(tx: &mut Tx<'_>, customer: Uuid, invoice_id: Uuid, now: DateTime<Utc>) -> Result<(), BillingError> {
    // The currency of an issued invoice never changes: it is safe to read before the locks.
    let (currency, subscription) = inv_sql::currency_of(tx, invoice_id, customer).await?.ok_or(BillingError::InvoiceNotFound)?;
    let available = ledger::lock_credit(tx, customer, &currency).await?;
    if let Some(sub) = subscription {
        crate::db::subscriptions::lock(tx, sub, None).await?;
    }
    let inv = inv_sql::lock(tx, invoice_id, Some(customer)).await?.ok_or(BillingError::InvoiceNotFound)?;
    if inv.kind != InvoiceKind::Invoice {
        return Err(BillingError::NotAnInvoice);
    }
    match inv.status {
        InvoiceStatus::Issued => {}
        InvoiceStatus::Paid => return Err(BillingError::AlreadyPaid(display_number(&inv))),
        InvoiceStatus::Void => return Err(BillingError::InvoiceVoid(display_number(&inv))),
        InvoiceStatus::Draft => return Err(BillingError::InvoiceNotFound),
    }
    let currency = Currency::parse(&inv.currency).map_err(|e| BillingError::Invalid(e.to_string()))?;
    if available < inv.total_minor {
        return Err(BillingError::InsufficientCredit {
            needed: Money::new(inv.total_minor, currency),
            available: Money::new(available, currency),
        });
    }
    if inv.total_minor > 0 {
        // The invoice id as reference: an invoice can be paid from credit only once.
        let payment = sql::insert(
            tx,
            &sql::NewPayment {
                account_id: customer,
                invoice_id: Some(invoice_id),
                method: PaymentMethod::AccountCredit,
                currency: &inv.currency,
                amount_minor: inv.total_minor,
                external_ref: Some(&invoice_id.to_string()),
                recorded_by: None,
                at: now,
            },
        )
        .await?
        .ok_or_else(|| BillingError::AlreadyPaid(display_number(&inv)))?;
        ledger::post(
            tx,
            &inv.currency,
            "invoice paid from account credit",
            Refs { invoice: Some(invoice_id), payment: Some(payment) },
            &[
                ledger::debit(LedgerAccount::Credit(customer), inv.total_minor),
                ledger::credit(LedgerAccount::Receivable(customer), inv.total_minor),
            ],
            now,
        )
        .await?;
    }
    inv_sql::set_status(tx, invoice_id, InvoiceStatus::Paid, now).await?;
    crate::subscriptions::on_invoice_paid(tx, &inv, now).await?;
    Ok(())
}

/// The customer pays an invoice with their credit (the "pay with credit" button).
pub async fn pay_invoice_with_credit(pool: &PgPool, clock: &dyn Clock, customer: Uuid, invoice_id: Uuid) -> Result<(), BillingError> {
    let mut tx = pool.begin().await?;
    if let Err(e) = apply_credit(&mut tx, customer, invoice_id, clock.now()).await {
        // Roll back now: a dropped transaction's locks (the balance row, the subscription)
        // would otherwise linger on the pooled connection until its next use, and the renewal
        // run's SKIP LOCKED would pass the subscription by.
        tx.rollback().await?;
        return Err(e);
    }
    tx.commit().await?;
    Ok(())
}

/// An admin records money received outside the gateway (a bank transfer): it becomes credit,
/// pays `invoice` when one is named, then the customer's other open invoices oldest first
/// ([`settle`]). The reference makes a double submit harmless; a reference another payment
/// already has is refused and changes nothing.
// Each argument is a fact the payment records (who, for whom, how much, which transfer, which
// invoice, from where); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn record_manual_payment(
    pool: &PgPool,
    clock: &dyn Clock,
    admin: Uuid,
    customer: Uuid,
    amount: Money,
    reference: &str,
    invoice: Option<Uuid>,
    remote_addr: Option<IpAddr>,
) -> Result<Option<Uuid>, BillingError> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(BillingError::Invalid("a manual payment needs a reference (e.g. the bank transfer's id)".into()));
    }
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let payment = top_up(&mut tx, customer, Method::Manual, amount, reference, Some(admin), now).await?;
    if payment.is_none() {
        // The same submission again (same customer, same amount) changes nothing, harmlessly;
        // the reference on another payment is a mistake to fix, not a "saved".
        let same = sql::manual_payment_with_reference(&mut tx, reference)
            .await?
            .is_some_and(|(acc, minor, cur)| acc == customer && minor == amount.minor && cur == amount.currency.as_str());
        if !same {
            tx.rollback().await?;
            return Err(BillingError::Invalid(format!(
                "the reference {reference:?} is already recorded for another payment: check it, or use the bank transfer's own id"
            )));
        }
    }
    if let Some(payment) = payment {
        settle(&mut tx, customer, amount, payment, invoice.map(|i| (i, true)), now).await?;
        audit::record(
            &mut *tx,
            Actor::admin(admin),
            "payment.record",
            Some(("account", customer.to_string())),
            remote_addr,
            serde_json::json!({ "amount_minor": amount.minor, "currency": amount.currency.as_str(), "reference": reference, "invoice": invoice }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(payment)
}

/// A customer's account credit in a currency.
pub async fn credit_balance(pool: &PgPool, customer: Uuid, currency: Currency) -> Result<Money, BillingError> {
    Ok(Money::new(ledger::credit_balance(pool, customer, currency.as_str()).await?, currency))
}

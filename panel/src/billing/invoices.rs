//! Issuing invoices (numbered without gaps per year and kind), reading them, and correcting
//! them with credit notes. Issued invoices are immutable (the database enforces it).

use super::{ledger, BillingError, IssuedInvoice};
use crate::audit::{self, Actor};
use crate::clock::Clock;
use crate::db::{invoices as sql, outbox, Tx};
use chrono::{DateTime, Datelike, Utc};
use sqlx::PgPool;
use std::net::IpAddr;
use uuid::Uuid;

pub use sql::{InvoiceRow, LineRow};

pg_enum! {
    /// An invoice, or a credit note correcting one (`invoice_kind`); each kind has its own
    /// gapless number sequence.
    pub enum InvoiceKind in "invoice_kind" {
        Invoice = "invoice",
        CreditNote = "credit_note",
    }
}

pg_enum! {
    /// Where an invoice is in its life (`invoice_status`). Drafts are internal; an issued one
    /// is immutable except for being paid or voided.
    pub enum InvoiceStatus in "invoice_status" {
        Draft = "draft",
        Issued = "issued",
        Paid = "paid",
        Void = "void",
    }
}

/// Which period of a subscription to invoice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodChoice {
    /// The current period: the first invoice of an order.
    Current,
    /// The next period: the renewal.
    Next,
}

/// Issues one invoice per subscription for the chosen period, skipping periods already
/// invoiced: numbers, invoices, lines, ledger and mails in one statement for the whole batch
/// ([`sql::issue_for_subscriptions`]), so a renewal batch of a thousand costs a few round trips
/// and an order's first invoice two. The caller holds the subscriptions' row locks; a
/// concurrent duplicate still hits the database's unique key and rolls the whole batch back,
/// never doubling.
pub async fn issue_for_subscriptions(
    tx: &mut Tx<'_>,
    subscriptions: &[Uuid],
    which: PeriodChoice,
    now: DateTime<Utc>,
) -> Result<Vec<IssuedInvoice>, BillingError> {
    if subscriptions.is_empty() {
        return Ok(Vec::new());
    }
    // The payers' tax facts are held before the statement that reads them (the rate it
    // computes and the facts its insert trigger records must agree).
    sql::hold_tax_facts_of_subscriptions(tx, subscriptions).await?;
    let offset = if which == PeriodChoice::Next { 1 } else { 0 };
    // The first invoice is due after the payment terms; a renewal on the first day of its
    // period (it is issued ahead of it).
    let issued = sql::issue_for_subscriptions(tx, subscriptions, offset, now.year(), now, which == PeriodChoice::Current).await?;
    // A renewal that costs nothing (a recurring 100 % coupon) is settled at issue: nothing is
    // owed, so nothing is dunned. (A first invoice of 0.00 is settled by its order, which
    // also activates the subscription.)
    if which == PeriodChoice::Next {
        let free: Vec<Uuid> = issued.iter().filter(|r| r.total_minor == 0).map(|r| r.id.0).collect();
        if !free.is_empty() {
            sql::set_paid(tx, &free, now).await?;
        }
    }
    Ok(issued
        .into_iter()
        .map(|r| IssuedInvoice {
            invoice_id: r.id.0,
            account_id: r.account_id.0,
            subscription_id: r.subscription_id.0,
            total_minor: r.total_minor,
        })
        .collect())
}

/// Issues a one-line invoice outside the subscription periods (e.g. an upgrade's prorated
/// charge), due after the payment terms, posted to the ledger and mailed.
pub async fn issue_charge(tx: &mut Tx<'_>, doc: &sql::NewDocument<'_>, now: DateTime<Utc>) -> Result<Uuid, BillingError> {
    let due = now + chrono::Duration::days(sql::payment_terms_days(tx).await?);
    issue_charge_due(tx, doc, now, due).await
}

/// As [`issue_charge`], due at `due` (a balance carried over from a voided invoice keeps the
/// voided one's due date, so dunning is not reset by a plan change).
pub async fn issue_charge_due(
    tx: &mut Tx<'_>,
    doc: &sql::NewDocument<'_>,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
) -> Result<Uuid, BillingError> {
    debug_assert!(doc.credit_note_for.is_none());
    let id = sql::insert_document(tx, doc).await?;
    let seq = sql::reserve_numbers(tx, InvoiceKind::Invoice, now.year(), 1).await?;
    sql::mark_issued(tx, &[id], now.year(), seq, now, &[due]).await?;
    crate::db::ledger::post_issued_invoices(tx, &[id], now).await?;
    outbox::insert_for_invoices(tx, "invoice_issued", &[id]).await?;
    Ok(id)
}

/// Where a credit note's money goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditTo {
    /// Reduces what is owed (the corrected invoice was not paid).
    Receivable,
    /// Becomes account credit (the corrected invoice was paid).
    AccountCredit,
}

/// Issues a credit note correcting `invoice` by `amount` (+ `tax`), and posts it.
pub async fn issue_credit_note(
    tx: &mut Tx<'_>,
    invoice: &InvoiceRow,
    description: &str,
    amount_minor: i64,
    tax_minor: i64,
    to: CreditTo,
    now: DateTime<Utc>,
) -> Result<Uuid, BillingError> {
    let rate = sql::first_line_rate(tx, invoice.id).await?;
    let id = sql::insert_document(
        tx,
        &sql::NewDocument {
            account_id: invoice.account_id,
            credit_note_for: Some(invoice.id),
            subscription_id: invoice.subscription_id,
            currency: &invoice.currency,
            description,
            amount_minor,
            rate_bp: rate,
            tax_minor: Some(tax_minor),
        },
    )
    .await?;
    let seq = sql::reserve_numbers(tx, InvoiceKind::CreditNote, now.year(), 1).await?;
    sql::mark_issued(tx, &[id], now.year(), seq, now, &[now]).await?;
    let customer = invoice.account_id;
    let target = match to {
        CreditTo::Receivable => ledger::LedgerAccount::Receivable(customer),
        CreditTo::AccountCredit => ledger::LedgerAccount::Credit(customer),
    };
    ledger::post(
        tx,
        &invoice.currency,
        "credit note",
        ledger::Refs { invoice: Some(id), payment: None },
        &[
            ledger::debit(ledger::LedgerAccount::Revenue, amount_minor),
            ledger::debit(ledger::LedgerAccount::TaxPayable, tax_minor),
            ledger::credit(target, amount_minor + tax_minor),
        ],
        now,
    )
    .await?;
    outbox::insert_for_invoices(tx, "credit_note_issued", &[id]).await?;
    Ok(id)
}

/// An admin voids an invoice: a credit note for its whole amount. An unpaid invoice becomes
/// void and is no longer owed; a paid one stays paid and its amount becomes account credit.
pub async fn void_with_credit_note(
    pool: &PgPool,
    clock: &dyn Clock,
    admin: Uuid,
    invoice_id: Uuid,
    remote_addr: Option<IpAddr>,
) -> Result<Uuid, BillingError> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    // The owner's balance row before the invoice: the lock order of every money path.
    let (owner, currency) = sql::owner_of(&mut tx, invoice_id).await?.ok_or(BillingError::InvoiceNotFound)?;
    ledger::lock_credit(&mut tx, owner, &currency).await?;
    let inv = sql::lock(&mut tx, invoice_id, None).await?.ok_or(BillingError::InvoiceNotFound)?;
    if inv.kind != InvoiceKind::Invoice {
        return Err(BillingError::NotAnInvoice);
    }
    let number = display_number(&inv);
    let to = match inv.status {
        InvoiceStatus::Issued => CreditTo::Receivable,
        InvoiceStatus::Paid => CreditTo::AccountCredit,
        InvoiceStatus::Void => return Err(BillingError::InvoiceVoid(number)),
        InvoiceStatus::Draft => return Err(BillingError::InvoiceNotFound),
    };
    // Earlier credit notes (a downgrade's proration) already gave part of it back.
    let (credited, credited_tax) = sql::credited(&mut tx, invoice_id).await?;
    let (amount, tax) = (inv.subtotal_minor - credited, inv.tax_minor - credited_tax);
    if amount <= 0 && tax <= 0 {
        return Err(BillingError::Invalid(format!("invoice {number} is already fully credited")));
    }
    let cn = issue_credit_note(&mut tx, &inv, &format!("Credit note for invoice {number}"), amount.max(0), tax.max(0), to, now).await?;
    if to == CreditTo::Receivable {
        sql::set_status(&mut tx, invoice_id, InvoiceStatus::Void, now).await?;
    }
    audit::record(
        &mut *tx,
        Actor::admin(admin),
        "invoice.void",
        Some(("invoice", invoice_id.to_string())),
        remote_addr,
        serde_json::json!({ "credit_note": cn, "number": number }),
    )
    .await?;
    tx.commit().await?;
    Ok(cn)
}

/// `INV-2026-000042`, or `draft` before issue.
pub fn display_number(inv: &InvoiceRow) -> String {
    match (inv.number_year, inv.number_seq) {
        (Some(y), Some(s)) => super::invoice_number(inv.kind == InvoiceKind::CreditNote, y, s),
        _ => "draft".into(),
    }
}

/// A customer's invoices and credit notes, newest first.
pub async fn list_for(pool: &PgPool, customer: Uuid) -> Result<Vec<InvoiceRow>, BillingError> {
    Ok(sql::list_for(pool, customer).await?)
}

/// One of a customer's invoices with its lines; another customer's is `None` (a 404).
pub async fn get_for(pool: &PgPool, customer: Uuid, id: Uuid) -> Result<Option<(InvoiceRow, Vec<LineRow>)>, BillingError> {
    Ok(sql::get(pool, id, Some(customer)).await?)
}

/// Any invoice (admins).
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<(InvoiceRow, Vec<LineRow>)>, BillingError> {
    Ok(sql::get(pool, id, None).await?)
}

pub async fn list_all(pool: &PgPool, limit: i64) -> Result<Vec<InvoiceRow>, BillingError> {
    Ok(sql::list_all(pool, limit).await?)
}

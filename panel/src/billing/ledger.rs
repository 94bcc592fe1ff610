//! The double-entry ledger. Every money movement is one transaction whose entries balance;
//! the database refuses an unbalanced one at commit (a deferred constraint trigger), and this
//! module refuses it before it is even sent.
//!
//! Accounts (per currency): a customer's `receivable` (asset: what they owe) and `credit`
//! (liability: what we hold for them), `revenue`, `tax_payable`, and `cash:<method>` for money
//! that came in through a payment method.

use super::payments::{Method, PaymentMethod};
use crate::db::{ledger as sql, Tx};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pg_enum! {
    /// The accounting type of a ledger account (`ledger_account_type` in the schema).
    pub enum LedgerAccountType in "ledger_account_type" {
        Asset = "asset",
        Liability = "liability",
        Revenue = "revenue",
        Expense = "expense",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerAccount {
    Receivable(Uuid),
    Credit(Uuid),
    Revenue,
    TaxPayable,
    Cash(Method),
}

impl LedgerAccount {
    fn parts(self) -> (String, LedgerAccountType, Option<Uuid>) {
        match self {
            LedgerAccount::Receivable(c) => ("receivable".into(), LedgerAccountType::Asset, Some(c)),
            LedgerAccount::Credit(c) => ("credit".into(), LedgerAccountType::Liability, Some(c)),
            LedgerAccount::Revenue => ("revenue".into(), LedgerAccountType::Revenue, None),
            LedgerAccount::TaxPayable => ("tax_payable".into(), LedgerAccountType::Liability, None),
            LedgerAccount::Cash(method) => (format!("cash:{}", PaymentMethod::from(method)), LedgerAccountType::Asset, None),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub account: LedgerAccount,
    pub debit: i64,
    pub credit: i64,
}

pub fn debit(account: LedgerAccount, amount: i64) -> Entry {
    Entry { account, debit: amount, credit: 0 }
}
pub fn credit(account: LedgerAccount, amount: i64) -> Entry {
    Entry { account, debit: 0, credit: amount }
}

/// References a ledger transaction carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refs {
    pub invoice: Option<Uuid>,
    pub payment: Option<Uuid>,
}

/// Posts one balanced transaction in `currency`. Zero entries are dropped; a transaction
/// with nothing left (a zero-total invoice) posts nothing.
pub async fn post(
    tx: &mut Tx<'_>,
    currency: &str,
    description: &str,
    refs: Refs,
    entries: &[Entry],
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let entries: Vec<&Entry> = entries.iter().filter(|e| e.debit != 0 || e.credit != 0).collect();
    let (d, c) = entries.iter().fold((0i64, 0i64), |(d, c), e| (d + e.debit, c + e.credit));
    assert_eq!(d, c, "unbalanced ledger transaction {description:?}: a bug, refused before it reached the database");
    if entries.is_empty() {
        return Ok(None);
    }
    let id = sql::insert_transaction(tx, description, refs.invoice, refs.payment, at).await?;
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let (code, typ, owner) = e.account.parts();
        rows.push((sql::account(tx, &code, typ, owner, currency).await?, e.debit, e.credit));
    }
    sql::insert_entries(tx, id, &rows).await?;
    Ok(Some(id))
}

/// Locks `customer`'s balance row (their credit account in `currency`) and returns the credit
/// it holds. Lock order, everywhere money moves: this row first, then invoices, then the
/// subscription, then the instance.
pub async fn lock_credit(tx: &mut Tx<'_>, customer: Uuid, currency: &str) -> Result<i64, sqlx::Error> {
    sql::lock_credit(tx, customer, currency).await
}

/// What a customer has as account credit (credits minus debits on their credit account).
pub async fn credit_balance<'e, E: sqlx::PgExecutor<'e>>(e: E, customer: Uuid, currency: &str) -> Result<i64, sqlx::Error> {
    Ok(-sql::balance(e, "credit", Some(customer), currency).await?)
}

/// What a customer owes on issued invoices.
pub async fn receivable_balance<'e, E: sqlx::PgExecutor<'e>>(e: E, customer: Uuid, currency: &str) -> Result<i64, sqlx::Error> {
    sql::balance(e, "receivable", Some(customer), currency).await
}

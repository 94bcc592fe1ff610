//! SQL for the double-entry ledger (`ledger_accounts`, `ledger_transactions`, `ledger_entries`).

use super::Tx;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The id of a ledger account, created on first use.
pub async fn account(
    tx: &mut Tx<'_>,
    code: &str,
    typ: crate::billing::ledger::LedgerAccountType,
    owner: Option<Uuid>,
    currency: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_accounts (code, type, account_id, currency) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(code)
    .bind(typ)
    .bind(owner)
    .bind(currency)
    .execute(&mut **tx)
    .await?;
    sqlx::query_scalar(OWNED_OR_SHARED[owner.is_some() as usize]).bind(code).bind(currency).bind(owner).fetch_one(&mut **tx).await
}

/// Finds a ledger account by (code, currency, owner) through the partial index that fits:
/// `IS NOT DISTINCT FROM` would defeat both.
const OWNED_OR_SHARED: [&str; 2] = [
    "SELECT id FROM ledger_accounts WHERE code = $1 AND currency = $2 AND account_id IS NULL AND $3::uuid IS NULL",
    "SELECT id FROM ledger_accounts WHERE code = $1 AND currency = $2 AND account_id = $3",
];

pub async fn insert_transaction(
    tx: &mut Tx<'_>,
    description: &str,
    invoice_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO ledger_transactions (description, invoice_id, payment_id, occurred_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(description)
    .bind(invoice_id)
    .bind(payment_id)
    .bind(at)
    .fetch_one(&mut **tx)
    .await
}

/// Entries as (ledger account id, debit, credit).
pub async fn insert_entries(tx: &mut Tx<'_>, transaction: Uuid, entries: &[(i64, i64, i64)]) -> Result<(), sqlx::Error> {
    let accounts: Vec<i64> = entries.iter().map(|e| e.0).collect();
    let debits: Vec<i64> = entries.iter().map(|e| e.1).collect();
    let credits: Vec<i64> = entries.iter().map(|e| e.2).collect();
    sqlx::query(
        "INSERT INTO ledger_entries (transaction_id, ledger_account_id, debit_minor, credit_minor)
         SELECT $1, a, d, c FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[]) AS x(a, d, c)",
    )
    .bind(transaction)
    .bind(accounts)
    .bind(debits)
    .bind(credits)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Σ debits − Σ credits of one ledger account (0 if it does not exist yet).
pub async fn balance<'e, E: sqlx::PgExecutor<'e>>(e: E, code: &str, owner: Option<Uuid>, currency: &str) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "SELECT COALESCE(sum(e.debit_minor - e.credit_minor), 0)::bigint FROM ledger_entries e
          WHERE e.ledger_account_id = ({})",
        OWNED_OR_SHARED[owner.is_some() as usize]
    );
    sqlx::query_scalar(&sql).bind(code).bind(currency).bind(owner).fetch_one(e).await
}

/// Posts "invoice issued" for many invoices at once: Dr receivable (total), Cr revenue
/// (subtotal), Cr tax payable (tax); zero sides are left out. One transaction per invoice.
pub async fn post_issued_invoices(tx: &mut Tx<'_>, invoice_ids: &[Uuid], at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_accounts (code, type, account_id, currency)
         SELECT DISTINCT 'receivable', 'asset'::ledger_account_type, account_id, currency FROM invoices WHERE id = ANY($1)
         UNION ALL SELECT DISTINCT 'revenue', 'revenue'::ledger_account_type, NULL::uuid, currency FROM invoices WHERE id = ANY($1)
         UNION ALL SELECT DISTINCT 'tax_payable', 'liability'::ledger_account_type, NULL::uuid, currency FROM invoices WHERE id = ANY($1)
         ON CONFLICT DO NOTHING",
    )
    .bind(invoice_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "WITH t AS (
            INSERT INTO ledger_transactions (description, invoice_id, occurred_at)
            SELECT 'invoice issued', id, $2 FROM invoices WHERE id = ANY($1)
            RETURNING id AS tx_id, invoice_id)
         INSERT INTO ledger_entries (transaction_id, ledger_account_id, debit_minor, credit_minor)
         SELECT t.tx_id, la.id, i.total_minor, 0 FROM t JOIN invoices i ON i.id = t.invoice_id
           JOIN ledger_accounts la ON la.code = 'receivable' AND la.account_id = i.account_id AND la.currency = i.currency
          WHERE i.total_minor > 0
         UNION ALL
         SELECT t.tx_id, la.id, 0, i.subtotal_minor FROM t JOIN invoices i ON i.id = t.invoice_id
           JOIN ledger_accounts la ON la.code = 'revenue' AND la.account_id IS NULL AND la.currency = i.currency
          WHERE i.subtotal_minor > 0
         UNION ALL
         SELECT t.tx_id, la.id, 0, i.tax_minor FROM t JOIN invoices i ON i.id = t.invoice_id
           JOIN ledger_accounts la ON la.code = 'tax_payable' AND la.account_id IS NULL AND la.currency = i.currency
          WHERE i.tax_minor > 0",
    )
    .bind(invoice_ids)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks a customer's credit ledger account in `currency` (made on first use) and returns the
/// credit it holds. The row is the customer's balance row: whatever spends or adds credit takes
/// it first, before the invoice, subscription or instance rows it then touches.
pub async fn lock_credit(tx: &mut Tx<'_>, owner: Uuid, currency: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_accounts (code, type, account_id, currency) VALUES ('credit', 'liability', $1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(owner)
    .bind(currency)
    .execute(&mut **tx)
    .await?;
    let balance: i64 = sqlx::query_scalar(
        "SELECT balance_minor FROM ledger_accounts WHERE code = 'credit' AND currency = $2 AND account_id = $1 FOR UPDATE",
    )
    .bind(owner)
    .bind(currency)
    .fetch_one(&mut **tx)
    .await?;
    Ok(-balance)
}

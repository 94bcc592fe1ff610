//! SQL for `invoices`, `invoice_lines` and `invoice_number_sequences`.

use super::Tx;
use crate::billing::invoices::{InvoiceKind, InvoiceStatus};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// What one subscription's invoice for a period will hold, computed by the database from the
/// subscription, its plan, its coupon and the customer's tax rate.
#[derive(Debug, sqlx::FromRow)]
pub struct SubscriptionCharge {
    pub subscription_id: Uuid,
    pub account_id: Uuid,
    pub currency: String,
    pub plan_name: String,
    pub cycle: crate::plans::BillingCycle,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub price_minor: i64,
    pub discount_minor: i64,
    pub rate_bp: i32,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
}

/// The charges for period `current_period_index + offset` of each subscription (offset 0:
/// the first invoice of an order; 1: the renewal). Coupons: any on period 0, only recurring
/// ones after. Rows whose period is already invoiced are left out.
pub async fn subscription_charges(tx: &mut Tx<'_>, ids: &[Uuid], offset: i32) -> Result<Vec<SubscriptionCharge>, sqlx::Error> {
    let payers: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT account_id FROM subscriptions WHERE id = ANY($1) ORDER BY account_id")
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
    hold_tax_facts(tx, &payers).await?;
    sqlx::query_as(
        "WITH b AS (
            SELECT s.id AS subscription_id, s.account_id, s.currency, p.name AS plan_name, s.cycle,
                   s.current_period_index + $2 AS k, s.anchor_date, s.cycle AS c, s.price_minor, a.country,
                   cp.percent_off, cp.amount_off_minor, cp.recurring
              FROM subscriptions s
              JOIN accounts a ON a.id = s.account_id
              JOIN plans p ON p.id = s.plan_id
              LEFT JOIN coupons cp ON cp.id = s.coupon_id
             WHERE s.id = ANY($1)
         ), d AS (
            SELECT b.*, period_start(anchor_date, c, k) AS period_start, period_start(anchor_date, c, k + 1) AS period_end,
                   CASE WHEN percent_off IS NULL AND amount_off_minor IS NULL THEN 0
                        WHEN k > 0 AND NOT recurring THEN 0
                        WHEN percent_off IS NOT NULL THEN (price_minor * percent_off + 50) / 100
                        ELSE LEAST(price_minor, amount_off_minor) END AS discount_minor
              FROM b
         ), r AS (
            SELECT d.*, tax_rate_for(d.account_id, d.period_start) AS rate_bp
              FROM d
             WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = d.subscription_id
                                  AND i.kind = 'invoice' AND i.period_start = d.period_start)
         )
         SELECT subscription_id, account_id, currency, plan_name, cycle, period_start, period_end, price_minor,
                discount_minor, rate_bp, price_minor - discount_minor AS subtotal_minor,
                tax_minor(price_minor - discount_minor, rate_bp) AS tax_minor
           FROM r ORDER BY subscription_id",
    )
    .bind(ids)
    .bind(offset)
    .fetch_all(&mut **tx)
    .await
}

/// Inserts the charges as draft invoices with one line each, under the given ids.
pub async fn insert_subscription_drafts(tx: &mut Tx<'_>, ids: &[Uuid], rows: &[SubscriptionCharge]) -> Result<(), sqlx::Error> {
    let col = |f: fn(&SubscriptionCharge) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let subs: Vec<Uuid> = rows.iter().map(|r| r.subscription_id).collect();
    let accounts: Vec<Uuid> = rows.iter().map(|r| r.account_id).collect();
    let currencies: Vec<String> = rows.iter().map(|r| r.currency.clone()).collect();
    let starts: Vec<NaiveDate> = rows.iter().map(|r| r.period_start).collect();
    let ends: Vec<NaiveDate> = rows.iter().map(|r| r.period_end).collect();
    let rates: Vec<i32> = rows.iter().map(|r| r.rate_bp).collect();
    let descriptions: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({}), {} to {}", r.plan_name, r.cycle, r.period_start, crate::billing::period::last_day(r.period_end)))
        .collect();
    sqlx::query(
        "INSERT INTO invoices (id, account_id, subscription_id, period_start, period_end, currency, subtotal_minor, tax_minor, total_minor)
         SELECT id, acc, sub, ps, pe, cur, st, tx, st + tx
           FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8)
             AS x(id, acc, sub, ps, pe, cur, st, tx)",
    )
    .bind(ids)
    .bind(&accounts)
    .bind(&subs)
    .bind(&starts)
    .bind(&ends)
    .bind(&currencies)
    .bind(col(|r| r.subtotal_minor))
    .bind(col(|r| r.tax_minor))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price_minor, discount_minor, amount_minor, tax_rate_bp, tax_minor)
         SELECT id, 1, d, 1, p, disc, p - disc, rate, tx
           FROM UNNEST($1, $2, $3, $4, $5, $6) AS x(id, d, p, disc, rate, tx)",
    )
    .bind(ids)
    .bind(&descriptions)
    .bind(col(|r| r.price_minor))
    .bind(col(|r| r.discount_minor))
    .bind(&rates)
    .bind(col(|r| r.tax_minor))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Reserves `n` consecutive numbers for `kind` in `year`; returns the first. The sequence row
/// stays locked until commit, and a rollback returns the numbers: no gaps.
pub async fn reserve_numbers(tx: &mut Tx<'_>, kind: InvoiceKind, year: i32, n: i32) -> Result<i32, sqlx::Error> {
    sqlx::query("INSERT INTO invoice_number_sequences (kind, year) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(kind)
        .bind(year)
        .execute(&mut **tx)
        .await?;
    sqlx::query_scalar(
        "UPDATE invoice_number_sequences SET next_seq = next_seq + $3
          WHERE kind = $1 AND year = $2 RETURNING next_seq - $3",
    )
    .bind(kind)
    .bind(year)
    .bind(n)
    .fetch_one(&mut **tx)
    .await
}

/// Issues drafts: numbers `first_seq..` in the order given, issue time, due times.
pub async fn mark_issued(
    tx: &mut Tx<'_>,
    ids: &[Uuid],
    year: i32,
    first_seq: i32,
    issued_at: DateTime<Utc>,
    due_at: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    let seqs: Vec<i32> = (0..ids.len() as i32).map(|i| first_seq + i).collect();
    sqlx::query(
        "UPDATE invoices i SET status = 'issued', number_year = $2, number_seq = x.seq, issued_at = $3, due_at = x.due
           FROM UNNEST($1::uuid[], $4::int[], $5::timestamptz[]) AS x(id, seq, due)
          WHERE i.id = x.id AND i.status = 'draft'",
    )
    .bind(ids)
    .bind(year)
    .bind(issued_at)
    .bind(&seqs)
    .bind(due_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A draft invoice or credit note with a single line, outside the subscription periods
/// (proration charges, credit notes).
pub struct NewDocument<'a> {
    pub account_id: Uuid,
    pub credit_note_for: Option<Uuid>,
    pub subscription_id: Option<Uuid>,
    pub currency: &'a str,
    pub description: &'a str,
    pub amount_minor: i64,
    pub rate_bp: i32,
    /// The tax to charge; `None` computes it from the amount and rate. A credit note that
    /// reverses an invoice passes the invoice's tax, so it reverses it to the cent.
    pub tax_minor: Option<i64>,
}

pub async fn insert_document(tx: &mut Tx<'_>, d: &NewDocument<'_>) -> Result<Uuid, sqlx::Error> {
    let tax = match d.tax_minor {
        Some(t) => t,
        None => tax_for(tx, d.amount_minor, d.rate_bp).await?,
    };
    let kind = if d.credit_note_for.is_some() { InvoiceKind::CreditNote } else { InvoiceKind::Invoice };
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO invoices (account_id, kind, corrects_invoice_id, subscription_id, currency, subtotal_minor, tax_minor, total_minor)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $6 + $7) RETURNING id",
    )
    .bind(d.account_id)
    .bind(kind)
    .bind(d.credit_note_for)
    .bind(d.subscription_id)
    .bind(d.currency)
    .bind(d.amount_minor)
    .bind(tax)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price_minor, amount_minor, tax_rate_bp, tax_minor)
         VALUES ($1, 1, $2, 1, $3, $3, $4, $5)",
    )
    .bind(id)
    .bind(d.description)
    .bind(d.amount_minor)
    .bind(d.rate_bp)
    .bind(tax)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// One invoice as stored.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub kind: InvoiceKind,
    pub status: InvoiceStatus,
    pub number_year: Option<i32>,
    pub number_seq: Option<i32>,
    pub subscription_id: Option<Uuid>,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub corrects_invoice_id: Option<Uuid>,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub issued_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
}

pub(crate) const INVOICE_COLUMNS: &str = "id, account_id, kind, status, number_year, number_seq, \
    subscription_id, period_start, period_end, corrects_invoice_id, currency, subtotal_minor, tax_minor, total_minor, \
    issued_at, due_at, paid_at, voided_at";

#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct LineRow {
    pub position: i32,
    pub description: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub discount_minor: i64,
    pub amount_minor: i64,
    pub tax_rate_bp: i32,
    pub tax_minor: i64,
}

/// Locks an invoice, scoped to its owner when `owner` is given (another tenant's invoice is
/// simply not found). `NO KEY UPDATE`: rows that only reference it (dunning events, payments)
/// can still be written by a transaction that holds its subscription.
pub async fn lock(tx: &mut Tx<'_>, id: Uuid, owner: Option<Uuid>) -> Result<Option<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) FOR NO KEY UPDATE"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut **tx)
    .await
}

/// An invoice's currency and subscription (and that it belongs to `owner`), without locking
/// it: what must be known to lock the owner's balance row and the subscription first.
pub async fn currency_of(tx: &mut Tx<'_>, id: Uuid, owner: Uuid) -> Result<Option<(String, Option<Uuid>)>, sqlx::Error> {
    sqlx::query_as("SELECT currency, subscription_id FROM invoices WHERE id = $1 AND account_id = $2")
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await
}

/// An invoice's owner and currency, without locking it (see [`currency_of`]).
pub async fn owner_of(tx: &mut Tx<'_>, id: Uuid) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT account_id, currency FROM invoices WHERE id = $1").bind(id).fetch_optional(&mut **tx).await
}

pub async fn set_status(tx: &mut Tx<'_>, id: Uuid, status: InvoiceStatus, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invoices SET status = $2,
                paid_at = CASE WHEN $2 = 'paid' THEN $3 ELSE paid_at END,
                voided_at = CASE WHEN $2 = 'void' THEN $3 ELSE voided_at END
          WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A customer's invoices and credit notes (issued ones; drafts are internal), newest first.
pub async fn list_for<'e, E: sqlx::PgExecutor<'e>>(e: E, owner: Uuid) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = $1 AND status <> 'draft'
          ORDER BY issued_at DESC, number_seq DESC"
    ))
    .bind(owner)
    .fetch_all(e)
    .await
}

/// Every issued invoice (admins), newest first, at most `limit`.
pub async fn list_all<'e, E: sqlx::PgExecutor<'e>>(e: E, limit: i64) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE status <> 'draft' ORDER BY issued_at DESC, number_seq DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(e)
    .await
}

pub async fn get(pool: &sqlx::PgPool, id: Uuid, owner: Option<Uuid>) -> Result<Option<(InvoiceRow, Vec<LineRow>)>, sqlx::Error> {
    let inv: Option<InvoiceRow> = sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) AND status <> 'draft'"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await?;
    let Some(inv) = inv else { return Ok(None) };
    let lines = sqlx::query_as(
        "SELECT position, description, quantity, unit_price_minor, discount_minor, amount_minor, tax_rate_bp, tax_minor
           FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(Some((inv, lines)))
}

/// The tax rate of an invoice's first line (used to prorate at the rate that was charged).
pub async fn first_line_rate(tx: &mut Tx<'_>, id: Uuid) -> Result<i32, sqlx::Error> {
    Ok(sqlx::query_scalar("SELECT tax_rate_bp FROM invoice_lines WHERE invoice_id = $1 ORDER BY position LIMIT 1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or(0))
}

/// Holds the accounts' tax facts (country, VAT ID) unchanged until the transaction ends, so an
/// invoice's rate (computed first) and its treatment and buyer facts (recorded by the insert
/// trigger) agree: a shared transaction lock per account, which a profile change waits for
/// (found by the money fuzz test: a profile change between the two made a reverse-charged
/// invoice with 19 % VAT).
pub async fn hold_tax_facts(tx: &mut Tx<'_>, accounts: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended('vessel-tax:' || a, 0)) FROM unnest($1::uuid[]) a")
        .bind(accounts)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The current tax rate for a customer on a date (`tax_rate_for`: the one decision, see
/// [`crate::tax`]), with the customer's tax facts held until the transaction ends.
pub async fn tax_rate(tx: &mut Tx<'_>, account: Uuid, on: NaiveDate) -> Result<i32, sqlx::Error> {
    hold_tax_facts(tx, &[account]).await?;
    Ok(sqlx::query_scalar("SELECT tax_rate_for($1, $2)").bind(account).bind(on).fetch_optional(&mut **tx).await?.unwrap_or(0))
}

/// What credit notes have already given back on an invoice: (Σ subtotal, Σ tax).
pub async fn credited(tx: &mut Tx<'_>, invoice_id: Uuid) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COALESCE(sum(subtotal_minor), 0)::bigint, COALESCE(sum(tax_minor), 0)::bigint
           FROM invoices WHERE corrects_invoice_id = $1 AND status <> 'draft'",
    )
    .bind(invoice_id)
    .fetch_one(&mut **tx)
    .await
}

/// The (not void) invoice of a subscription's period starting on `start`, locked.
pub async fn period_invoice(tx: &mut Tx<'_>, sub: Uuid, start: NaiveDate) -> Result<Option<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices
          WHERE subscription_id = $1 AND kind = 'invoice' AND period_start = $2 AND status <> 'void' FOR NO KEY UPDATE"
    ))
    .bind(sub)
    .bind(start)
    .fetch_optional(&mut **tx)
    .await
}

/// Tax on an amount, by the database's one rounding rule (`tax_minor()`).
pub async fn tax_for(tx: &mut Tx<'_>, amount_minor: i64, rate_bp: i32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT tax_minor($1, $2)").bind(amount_minor).bind(rate_bp).fetch_one(&mut **tx).await
}

/// A subscription's invoices (not credit notes) in `status`, newest first, locked.
pub async fn lock_of_subscription(tx: &mut Tx<'_>, sub: Uuid, status: InvoiceStatus) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices
          WHERE subscription_id = $1 AND kind = 'invoice' AND status = $2
          ORDER BY issued_at DESC, number_seq DESC FOR NO KEY UPDATE"
    ))
    .bind(sub)
    .bind(status)
    .fetch_all(&mut **tx)
    .await
}

/// The payment terms: invoices are due this many days after they are issued.
pub async fn payment_terms_days(tx: &mut Tx<'_>) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, i32>("SELECT payment_terms_days FROM billing_settings").fetch_optional(&mut **tx).await?.unwrap_or(0) as i64)
}

/// Records the configured payment terms (at start of `panel serve` and `panel billing`).
pub async fn set_payment_terms_days(pool: &sqlx::PgPool, days: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_settings (singleton, payment_terms_days) VALUES (true, $1)
         ON CONFLICT (singleton) DO UPDATE SET payment_terms_days = EXCLUDED.payment_terms_days",
    )
    .bind(days)
    .execute(pool)
    .await?;
    Ok(())
}

/// The archived PDF of an invoice, if it has one.
pub async fn pdf<'e, E: sqlx::PgExecutor<'e>>(e: E, invoice: Uuid) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT pdf FROM invoice_pdfs WHERE invoice_id = $1").bind(invoice).fetch_optional(e).await
}

/// Archives a PDF unless one already is (the first one stays): returns whether this one was kept.
pub async fn store_pdf<'e, E: sqlx::PgExecutor<'e>>(e: E, invoice: Uuid, pdf: &[u8]) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO invoice_pdfs (invoice_id, pdf, sha256) SELECT $1, $2, encode(sha256($2), 'hex')
           FROM invoices WHERE id = $1 AND status <> 'draft' AND tax_treatment IS NOT NULL ON CONFLICT (invoice_id) DO NOTHING",
    )
    .bind(invoice)
    .bind(pdf)
    .execute(e)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Issued invoices and credit notes without an archived PDF, oldest first, but for those in
/// `skip` (whose render failed). Only those written with their seller and buyer facts (tax
/// migration on): one from before has none to print, and an archived PDF is forever.
pub async fn without_pdf<'e, E: sqlx::PgExecutor<'e>>(e: E, limit: i64, skip: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.id FROM invoices i WHERE i.status <> 'draft' AND i.tax_treatment IS NOT NULL AND i.id <> ALL($2)
            AND NOT EXISTS (SELECT 1 FROM invoice_pdfs p WHERE p.invoice_id = i.id)
          ORDER BY i.issued_at, i.id LIMIT $1",
    )
    .bind(limit)
    .bind(skip)
    .fetch_all(e)
    .await
}

/// Was the invoice written with its seller and buyer facts (its tax treatment recorded)?
/// `false` for one from before the tax migration: it gets no PDF.
pub async fn has_tax_facts<'e, E: sqlx::PgExecutor<'e>>(e: E, invoice: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, bool>("SELECT tax_treatment IS NOT NULL FROM invoices WHERE id = $1")
        .bind(invoice)
        .fetch_optional(e)
        .await?
        .unwrap_or(false))
}

/// Records the seller of the configuration (beside the payment terms), for every invoice.
pub async fn set_seller(pool: &sqlx::PgPool, seller: &crate::config::SellerSettings) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_settings SET seller_legal_name = $1, seller_address = $2, seller_country = NULLIF(upper(btrim($3)), ''),
                seller_vat_id = $4",
    )
    .bind(seller.legal_name.trim())
    .bind(seller.address.trim())
    .bind(&seller.country)
    .bind(seller.vat_id.trim())
    .execute(pool)
    .await?;
    Ok(())
}

/// What an invoice says about who sold to whom, and its tax treatment (kept as it was when the
/// invoice was written).
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct Parties {
    pub seller_legal_name: Option<String>,
    pub seller_address: Option<String>,
    pub seller_vat_id: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_address: Option<String>,
    pub buyer_country: Option<String>,
    pub buyer_vat_id: Option<String>,
    pub buyer_vat_id_check: Option<String>,
    pub tax_treatment: Option<String>,
    pub tax_note: Option<String>,
}

pub async fn parties<'e, E: sqlx::PgExecutor<'e>>(e: E, invoice: Uuid) -> Result<Parties, sqlx::Error> {
    Ok(sqlx::query_as(
        "SELECT seller_legal_name, seller_address, seller_vat_id, buyer_name, buyer_email, buyer_address, buyer_country,
                buyer_vat_id, buyer_vat_id_check, tax_treatment, tax_note FROM invoices WHERE id = $1",
    )
    .bind(invoice)
    .fetch_optional(e)
    .await?
    .unwrap_or_default())
}

/// A payer's debts: issued invoices past their due date, oldest first. An unpaid first
/// invoice of an order that was never delivered (its subscription still pending, or
/// cancelled) is not a debt; a terminated server's is.
pub async fn overdue<'e, E: sqlx::PgExecutor<'e>>(e: E, payer: Uuid, now: DateTime<Utc>) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices i
          WHERE i.account_id = $1 AND i.kind = 'invoice' AND i.status = 'issued' AND i.total_minor > 0 AND i.due_at < $2
            AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.id = i.subscription_id AND s.status IN ('pending', 'cancelled'))
          ORDER BY i.due_at, i.number_seq"
    ))
    .bind(payer)
    .bind(now)
    .fetch_all(e)
    .await
}

/// A customer's open (issued, unpaid) invoices in a currency, oldest due first.
pub async fn open_for(tx: &mut Tx<'_>, owner: Uuid, currency: &str) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices
          WHERE account_id = $1 AND currency = $2 AND kind = 'invoice' AND status = 'issued'
          ORDER BY due_at, number_year, number_seq"
    ))
    .bind(owner)
    .bind(currency)
    .fetch_all(&mut **tx)
    .await
}

/// The (kind, year, sequence) of invoices' numbers, in the order given.
pub async fn numbers(tx: &mut Tx<'_>, ids: &[Uuid]) -> Result<Vec<(InvoiceKind, Option<i32>, Option<i32>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.kind, i.number_year, i.number_seq
           FROM UNNEST($1::uuid[]) WITH ORDINALITY AS x(id, n) JOIN invoices i ON i.id = x.id ORDER BY x.n",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
}

pub async fn is_paid(tx: &mut Tx<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, bool>("SELECT status = 'paid' FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or(false))
}

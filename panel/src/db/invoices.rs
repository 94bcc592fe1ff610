//! SQL for `invoices`, `invoice_lines` and `invoice_number_sequences`.

use super::Tx;
use crate::billing::invoices::{InvoiceKind, InvoiceStatus};
use crate::ids::{AccountId, InvoiceId, SubscriptionId};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// An invoice [`issue_for_subscriptions`] issued.
#[derive(Debug, sqlx::FromRow)]
pub struct IssuedRow {
    pub id: InvoiceId,
    pub account_id: AccountId,
    pub subscription_id: SubscriptionId,
    pub total_minor: i64,
}

/// Holds the tax facts of the subscriptions' payers (see [`hold_tax_facts`]) in one round trip,
/// in account order. Must come in a statement before the one that reads them.
pub async fn hold_tax_facts_of_subscriptions(tx: &mut Tx<'_>, subscriptions: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('vessel-tax:' || a, 0))
           FROM (SELECT DISTINCT account_id AS a FROM subscriptions WHERE id = ANY($1) ORDER BY 1) x",
    )
    .bind(subscriptions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Issues, in one statement, the invoice for period `current_period_index + offset` of each
/// subscription (offset 0: an order's first invoice; 1: the renewal) whose period is not yet
/// invoiced: consecutive numbers `kind = invoice, year` for the batch (the counter row is
/// taken once, and held to commit: a rollback returns the numbers, so there are no gaps),
/// the invoices (issued, with the buyer's tax facts by the insert trigger), one line each,
/// the ledger ("invoice issued": Dr receivable, Cr revenue, Cr tax payable, zero sides left
/// out; a ledger transaction per invoice), and the `invoice_issued` mail. The charge: the
/// subscription's price less its coupon (any on period 0, only recurring ones after), taxed
/// by `tax_facts_of` (the one tax decision) on the period's first day.
///
/// Due: `now` + the payment terms (`due_after_terms`), else the period's first day (never
/// before `now`). Numbers follow the subscriptions' id order. The caller holds the
/// subscriptions' rows and their payers' tax facts ([`hold_tax_facts_of_subscriptions`]); a
/// concurrent duplicate would still hit `invoices_one_per_subscription_period` and roll it all
/// back, never doubling and never leaving a gap.
pub async fn issue_for_subscriptions(
    tx: &mut Tx<'_>,
    subscriptions: &[Uuid],
    offset: i32,
    year: i32,
    now: DateTime<Utc>,
    due_after_terms: bool,
) -> Result<Vec<IssuedRow>, sqlx::Error> {
    let mail = super::outbox::INVOICE_MAIL_DATA;
    sqlx::query_as(&format!(
        "WITH b AS (
            SELECT s.id AS subscription_id, s.account_id, s.currency, p.name AS plan_name, s.cycle,
                   s.current_period_index + $2 AS k, s.anchor_date, s.price_minor,
                   cp.percent_off, cp.amount_off_minor, cp.recurring
              FROM subscriptions s
              JOIN plans p ON p.id = s.plan_id
              LEFT JOIN coupons cp ON cp.id = s.coupon_id
             WHERE s.id = ANY($1)
         ), d AS (
            SELECT b.*, period_start(anchor_date, cycle, k) AS period_start, period_start(anchor_date, cycle, k + 1) AS period_end,
                   CASE WHEN percent_off IS NULL AND amount_off_minor IS NULL THEN 0
                        WHEN k > 0 AND NOT recurring THEN 0
                        WHEN percent_off IS NOT NULL THEN (price_minor * percent_off + 50) / 100
                        ELSE LEAST(price_minor, amount_off_minor) END AS discount_minor
              FROM b
         ), c AS MATERIALIZED (
            SELECT d.*, f.rate_bp, d.price_minor - d.discount_minor AS subtotal_minor,
                   tax_minor(d.price_minor - d.discount_minor, f.rate_bp) AS tax_minor,
                   gen_random_uuid() AS invoice_id, gen_random_uuid() AS ledger_tx_id,
                   row_number() OVER (ORDER BY d.subscription_id)::int AS n,
                   CASE WHEN $5 THEN $4 + make_interval(hours => 24 * COALESCE((SELECT payment_terms_days FROM billing_settings), 0))
                        ELSE GREATEST(d.period_start::timestamp AT TIME ZONE 'UTC', $4) END AS due_at
              FROM d CROSS JOIN LATERAL tax_facts_of(d.account_id, d.period_start) f
             WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.subscription_id = d.subscription_id
                                  AND i.kind = 'invoice' AND i.period_start = d.period_start)
         ), seq AS (
            INSERT INTO invoice_number_sequences AS q (kind, year, next_seq)
            SELECT 'invoice', $3, count(*)::int + 1 FROM c HAVING count(*) > 0
            ON CONFLICT (kind, year) DO UPDATE SET next_seq = q.next_seq + EXCLUDED.next_seq - 1
            RETURNING q.next_seq - (SELECT count(*)::int FROM c) AS first
         ), i AS MATERIALIZED (
            SELECT c.invoice_id AS id, 'invoice'::invoice_kind AS kind, $3::int AS number_year, seq.first + c.n - 1 AS number_seq,
                   c.subtotal_minor + c.tax_minor AS total_minor, c.*,
                   (SELECT la.id FROM ledger_accounts la WHERE la.code = 'receivable' AND la.account_id = c.account_id
                                                          AND la.currency = c.currency) AS receivable_id,
                   (SELECT la.id FROM ledger_accounts la WHERE la.code = 'revenue' AND la.account_id IS NULL
                                                          AND la.currency = c.currency) AS revenue_id,
                   (SELECT la.id FROM ledger_accounts la WHERE la.code = 'tax_payable' AND la.account_id IS NULL
                                                          AND la.currency = c.currency) AS tax_payable_id
              FROM c CROSS JOIN seq
         ), inv AS (
            INSERT INTO invoices (id, account_id, subscription_id, period_start, period_end, currency, subtotal_minor, tax_minor,
                                  total_minor, status, number_year, number_seq, issued_at, due_at)
            SELECT id, account_id, subscription_id, period_start, period_end, currency, subtotal_minor, tax_minor,
                   total_minor, 'issued', number_year, number_seq, $4, due_at
              FROM i ORDER BY n
            RETURNING id, account_id, subscription_id, total_minor
         ), lines AS (
            INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price_minor, discount_minor, amount_minor,
                                       tax_rate_bp, tax_minor)
            SELECT id, 1, plan_name || ' (' || cycle::text || '), ' || to_char(period_start, 'YYYY-MM-DD') || ' to '
                          || to_char(period_end - 1, 'YYYY-MM-DD'),
                   1, price_minor, discount_minor, subtotal_minor, rate_bp, tax_minor
              FROM i
         ), made AS (
            -- The ledger accounts' first use (or made by a transaction this snapshot cannot
            -- see: the no-op update returns its id).
            INSERT INTO ledger_accounts AS la (code, type, account_id, currency)
            SELECT 'receivable', 'asset'::ledger_account_type, account_id, currency FROM i WHERE receivable_id IS NULL
            UNION SELECT 'revenue', 'revenue', NULL, currency FROM i WHERE revenue_id IS NULL
            UNION SELECT 'tax_payable', 'liability', NULL, currency FROM i WHERE tax_payable_id IS NULL
            ON CONFLICT (code, currency, COALESCE(account_id, '00000000-0000-0000-0000-000000000000')) DO UPDATE SET code = EXCLUDED.code
            RETURNING la.id, la.code, la.account_id, la.currency
         ), ltx AS (
            INSERT INTO ledger_transactions (id, description, invoice_id, occurred_at)
            SELECT ledger_tx_id, 'invoice issued', id, $4 FROM i
         ), entries AS (
            INSERT INTO ledger_entries (transaction_id, ledger_account_id, debit_minor, credit_minor)
            SELECT e.ledger_tx_id, COALESCE(e.known, m.id), e.debit, e.credit
              FROM (SELECT ledger_tx_id, receivable_id AS known, 'receivable' AS code, account_id AS owner, currency,
                           total_minor AS debit, 0::bigint AS credit FROM i
                    UNION ALL SELECT ledger_tx_id, revenue_id, 'revenue', NULL, currency, 0, subtotal_minor FROM i
                    UNION ALL SELECT ledger_tx_id, tax_payable_id, 'tax_payable', NULL, currency, 0, tax_minor FROM i) e
              LEFT JOIN made m ON e.known IS NULL AND m.code = e.code AND m.currency = e.currency
                              AND m.account_id IS NOT DISTINCT FROM e.owner
             WHERE e.debit + e.credit > 0
         ), mail AS (
            INSERT INTO email_outbox (to_address, template, data, dedupe_key)
            SELECT a.email, 'invoice_issued', {mail}, 'invoice_issued:' || i.id
              FROM i JOIN accounts a ON a.id = i.account_id
            ON CONFLICT (dedupe_key) DO NOTHING
         )
         SELECT id, account_id, subscription_id, total_minor FROM inv ORDER BY subscription_id"
    ))
    .bind(subscriptions)
    .bind(offset)
    .bind(year)
    .bind(now)
    .bind(due_after_terms)
    // Planned for each batch's own ids: a cached generic plan (after five runs) guesses the
    // array's size and took seconds per batch of 100 in the crash test.
    .persistent(false)
    .fetch_all(&mut **tx)
    .await
}

/// Marks invoices paid (a renewal that costs nothing is settled at issue).
pub async fn set_paid(tx: &mut Tx<'_>, ids: &[Uuid], at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invoices SET status = 'paid', paid_at = $2 WHERE id = ANY($1)").bind(ids).bind(at).execute(&mut **tx).await?;
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

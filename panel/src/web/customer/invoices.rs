//! The customer's invoices: the list, one invoice, printable and PDF, paying from credit or by card.

use super::{credit_lines, currency_of, day, money, Done};
use crate::billing;
use crate::billing::invoices::{display_number, InvoiceKind, InvoiceStatus};
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::invoices::{InvoiceRow, LineRow};
use crate::money::{Currency, Money};
use crate::web::error::WebError;
use crate::web::pages::{ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentCustomer, InvoiceHolder};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(invoices_list)
        .service(invoice_show)
        .service(invoice_print)
        .service(invoice_pdf_download)
        .service(invoice_pay)
        .service(invoice_card);
}

/// An invoice as the pages show it.
pub struct InvoiceView {
    pub row: InvoiceRow,
    pub number: String,
    pub lines: Vec<LineView>,
    pub subtotal: String,
    pub tax: String,
    pub total: String,
    pub issued: String,
    pub due: String,
    pub paid: String,
    pub period: String,
    /// Seller, buyer and tax treatment as the invoice keeps them (filled for one invoice's page).
    pub parties: crate::db::invoices::Parties,
}

pub struct LineView {
    pub description: String,
    pub quantity: i32,
    pub unit: String,
    pub discount: String,
    pub amount: String,
    pub tax_rate: String,
    pub tax: String,
}

impl InvoiceView {
    pub fn new(row: InvoiceRow, lines: Vec<LineRow>) -> Self {
        let cur = row.currency.clone();
        InvoiceView {
            number: display_number(&row),
            lines: lines
                .into_iter()
                .map(|l| LineView {
                    description: l.description,
                    quantity: l.quantity,
                    unit: money(l.unit_price_minor, &cur),
                    discount: if l.discount_minor > 0 { money(l.discount_minor, &cur) } else { String::new() },
                    amount: money(l.amount_minor, &cur),
                    tax_rate: format!("{}.{:02} %", l.tax_rate_bp / 100, l.tax_rate_bp % 100),
                    tax: money(l.tax_minor, &cur),
                })
                .collect(),
            subtotal: money(row.subtotal_minor, &cur),
            tax: money(row.tax_minor, &cur),
            total: money(row.total_minor, &cur),
            issued: day(row.issued_at),
            due: day(row.due_at),
            paid: day(row.paid_at),
            period: match (row.period_start, row.period_end) {
                // Stored half-open [start, end); people read the last day included.
                (Some(s), Some(e)) => format!("{s} to {}", crate::billing::period::last_day(e)),
                _ => String::new(),
            },
            parties: Default::default(),
            row,
        }
    }
    /// With its seller, buyer and tax facts read.
    pub async fn with_parties(mut self, pool: &PgPool) -> Result<Self, sqlx::Error> {
        self.parties = crate::db::invoices::parties(pool, self.row.id).await?;
        Ok(self)
    }
    pub fn from_row(row: InvoiceRow) -> Self {
        Self::new(row, Vec::new())
    }
    pub fn payable(&self) -> bool {
        self.row.kind == InvoiceKind::Invoice && self.row.status == InvoiceStatus::Issued
    }
    pub fn badge(&self) -> &'static str {
        match self.row.status {
            InvoiceStatus::Paid => "ok",
            InvoiceStatus::Issued => "warn",
            InvoiceStatus::Void => "bad",
            InvoiceStatus::Draft => "",
        }
    }
}

#[derive(Template)]
#[template(path = "invoices.html")]
struct InvoicesPage {
    ctx: Ctx,
    invoices: Vec<InvoiceView>,
    credit: Vec<String>,
}

#[get("/invoices")]
async fn invoices_list(InvoiceHolder(c): InvoiceHolder, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let rows = billing::invoices::list_for(&pool, c.account.id).await?;
    let invoices = rows.into_iter().filter(|r| r.status != InvoiceStatus::Draft).map(|r| InvoiceView::new(r, Vec::new())).collect();
    let credit = credit_lines(&pool, &c.account).await?;
    ok(&InvoicesPage { ctx: Ctx::of(&c.session), invoices, credit })
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoicePage {
    ctx: Ctx,
    inv: InvoiceView,
    credit: String,
    card: Option<CardForm>,
    /// Bank transfer details and this invoice's reference, when the provider takes transfers.
    bank: Option<(crate::config::BankTransferSettings, String)>,
    error: Option<String>,
}

async fn invoice_page(c: &CurrentCustomer, pool: &PgPool, settings: &Settings, id: Uuid) -> Result<InvoicePage, WebError> {
    let (row, lines) = billing::invoices::get_for(pool, c.account.id, id).await?.ok_or(WebError::NotFound)?;
    if row.status == InvoiceStatus::Draft {
        return Err(WebError::NotFound);
    }
    let credit = billing::payments::credit_balance(pool, c.account.id, currency_of(&c.account)).await?;
    let inv = InvoiceView::new(row, lines).with_parties(pool).await?;
    let bank = settings.billing.bank_transfer.clone().map(|b| (b, crate::config::BankTransferSettings::invoice_reference(&inv.number)));
    Ok(InvoicePage { ctx: Ctx::of(&c.session), inv, credit: credit.to_string(), card: CardForm::of(settings), bank, error: None })
}

#[get("/invoices/{id}")]
async fn invoice_show(
    InvoiceHolder(c): InvoiceHolder,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let mut page = invoice_page(&c, &pool, &settings, *id).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[derive(Template)]
#[template(path = "invoice_print.html")]
struct InvoicePrint {
    inv: InvoiceView,
}

/// A standalone page for printing or "save as PDF" from the browser.
#[get("/invoices/{id}/print")]
async fn invoice_print(InvoiceHolder(c): InvoiceHolder, id: web::Path<Uuid>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let (row, lines) = billing::invoices::get_for(&pool, c.account.id, *id).await?.ok_or(WebError::NotFound)?;
    if row.status == InvoiceStatus::Draft {
        return Err(WebError::NotFound);
    }
    let mut inv = InvoiceView::new(row, lines).with_parties(&pool).await?;
    if inv.parties.buyer_email.is_none() {
        // Written before invoices kept their buyer: the account, as the page always showed.
        inv.parties.buyer_name = Some(c.account.display_name.clone());
        inv.parties.buyer_email = Some(c.account.email.clone());
    }
    ok(&InvoicePrint { inv })
}

#[derive(Template)]
#[template(path = "invoice_pdf.html")]
struct InvoicePdf<'a> {
    inv: InvoiceView,
    css: &'a str,
}

/// The archived PDF of an issued invoice (rendered and archived first if it has none): what
/// the page's download link and the API serve, byte for byte the same every time.
pub async fn invoice_pdf(pool: &PgPool, chromium: &str, row: InvoiceRow, lines: Vec<LineRow>) -> Result<Vec<u8>, WebError> {
    if row.status == InvoiceStatus::Draft {
        return Err(WebError::NotFound);
    }
    if let Some(pdf) = crate::db::invoices::pdf(pool, row.id).await? {
        return Ok(pdf);
    }
    if !crate::db::invoices::has_tax_facts(pool, row.id).await? {
        return Err(WebError::Conflict(format!(
            "Invoice {} was issued before invoices recorded the seller's and buyer's details, so it has no PDF: \
             its page (/invoices/{}) is its record. Ask us if you need a corrected copy.",
            display_number(&row),
            row.id
        )));
    }
    let id = row.id;
    let page =
        InvoicePdf { inv: InvoiceView::new(row, lines).with_parties(pool).await?, css: include_str!("../../../../static/vessel.css") };
    Ok(billing::pdf::archived(pool, chromium, id, &page.render()?).await?)
}

/// Archives the PDF of up to `limit` issued invoices that have none and are not in `failed`
/// (the archiver of `panel serve`, which keeps `failed` between runs); returns how many it
/// archived. One invoice that fails to render is logged and added to `failed`, and the rest
/// go on: a bad one never holds up the others. A missing renderer stops the batch (an error):
/// that is no invoice's fault.
pub async fn archive_pending_pdfs(pool: &PgPool, chromium: &str, limit: i64, failed: &mut Vec<Uuid>) -> Result<usize, WebError> {
    let mut n = 0;
    for id in crate::db::invoices::without_pdf(pool, limit, failed).await? {
        let Some((row, lines)) = billing::invoices::get(pool, id).await? else { continue };
        match invoice_pdf(pool, chromium, row, lines).await {
            Ok(_) => n += 1,
            Err(e @ WebError::Unavailable(_)) => return Err(e),
            Err(e) => {
                tracing::error!(invoice = %id, error = %e, "archiving an invoice PDF failed: skipped until the panel restarts");
                failed.push(id);
            }
        }
    }
    Ok(n)
}

/// `INV-2026-000001.pdf`, as an attachment.
pub fn pdf_response(number: &str, pdf: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{number}.pdf\"")))
        .insert_header(("Cache-Control", "private, no-store"))
        .body(pdf)
}

#[get("/invoices/{id}/pdf")]
async fn invoice_pdf_download(
    InvoiceHolder(c): InvoiceHolder,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let (row, lines) = billing::invoices::get_for(&pool, c.account.id, *id).await?.ok_or(WebError::NotFound)?;
    let number = display_number(&row);
    let pdf = invoice_pdf(&pool, &settings.billing.pdf_chromium, row, lines).await?;
    Ok(pdf_response(&number, pdf))
}

#[post("/invoices/{id}/pay")]
async fn invoice_pay(
    InvoiceHolder(c): InvoiceHolder,
    id: web::Path<Uuid>,
    _f: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    match billing::payments::pay_invoice_with_credit(&pool, clock.as_ref().as_ref(), c.account.id, *id).await {
        Ok(()) => Ok(see_other(&format!("/invoices/{id}?done=paid"))),
        Err(e) => {
            let message = WebError::mistake(e)?;
            let mut page = invoice_page(&c, &pool, &settings, *id).await?;
            page.error = Some(message);
            crate::web::pages::html(actix_web::http::StatusCode::CONFLICT, &page)
        }
    }
}

/// The card form, when Stripe is configured: Stripe.js with the provider's publishable key,
/// and this form's attempt id (Stripe's idempotency key: a resubmitted form is one charge).
pub struct CardForm {
    pub publishable_key: String,
    pub js_url: String,
    pub attempt: Uuid,
}

impl CardForm {
    pub(super) fn of(settings: &Settings) -> Option<CardForm> {
        settings.stripe.as_ref().map(|s| CardForm {
            publishable_key: s.publishable_key.clone(),
            js_url: s.js_url.clone(),
            attempt: Uuid::new_v4(),
        })
    }
}

/// What the card form posts: the payment method Stripe.js made of the card, and the attempt.
#[derive(Deserialize)]
pub(super) struct CardPayment {
    #[serde(default)]
    pub(super) payment_method: String,
    #[serde(default)]
    pub(super) attempt: String,
    /// For adding funds: how much.
    #[serde(default)]
    pub(super) amount: String,
}

impl CardPayment {
    /// Stripe's idempotency key: the account and the form's attempt (a fresh one when the
    /// field is missing or garbled, which only costs the double-submit protection).
    pub(super) fn idempotency_key(&self, account: Uuid) -> String {
        let attempt = self.attempt.parse::<Uuid>().unwrap_or_else(|_| Uuid::new_v4());
        format!("vessel-{account}-{attempt}")
    }
}

/// Why a card payment did not go through, in the customer's words, with the page's status
/// (422 for the card or the form, 502 when the provider failed); `Ok` when it went through.
pub(super) fn card_refusal(outcome: Result<billing::stripe::CardCharge, billing::BillingError>) -> Result<(), (StatusCode, String)> {
    use billing::stripe::CardCharge;
    let mistake = |m: String| Err((StatusCode::UNPROCESSABLE_ENTITY, m));
    match outcome {
        Ok(CardCharge::Accepted { .. }) => Ok(()),
        Ok(CardCharge::Declined(m)) => mistake(format!("The card was not charged: {m}")),
        Ok(CardCharge::NeedsAuthentication { .. }) => mistake(
            "Your bank asks to confirm this payment (3-D Secure), which this page cannot do yet: nothing was charged. \
             Use another card, a bank transfer or your credit."
                .into(),
        ),
        Err(billing::BillingError::Invalid(m)) => mistake(m),
        Err(e) => {
            tracing::warn!(error = %e, "card payment failed at the gateway");
            Err((
                StatusCode::BAD_GATEWAY,
                "The card payment could not be made right now (the payment provider did not answer): nothing was charged. \
                 Try again later, or use another way to pay."
                    .into(),
            ))
        }
    }
}

/// Pay an invoice by card: its total, charged through a PaymentIntent; the signed webhook
/// credits the account and pays the invoice (see `billing::stripe`).
#[post("/invoices/{id}/card")]
async fn invoice_card(
    InvoiceHolder(c): InvoiceHolder,
    id: web::Path<Uuid>,
    f: CsrfForm<CardPayment>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let (row, _) = billing::invoices::get_for(&pool, c.account.id, *id).await?.ok_or(WebError::NotFound)?;
    let Some(stripe) = &settings.stripe else { return Err(WebError::Conflict("Card payments are not enabled.".into())) };
    if !(row.kind == InvoiceKind::Invoice && row.status == InvoiceStatus::Issued) {
        return Err(WebError::Conflict("This invoice is not open for payment.".into()));
    }
    let cur = Currency::parse(&row.currency).map_err(WebError::internal)?;
    let outcome = match billing::stripe::PaymentMethodId::parse(&f.0.payment_method) {
        Ok(method) => {
            billing::stripe::charge_card(
                stripe,
                &reqwest::Client::new(),
                c.account.id,
                Money::new(row.total_minor, cur),
                Some(row.id),
                &method,
                &f.0.idempotency_key(c.account.id),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match card_refusal(outcome) {
        Ok(()) => Ok(see_other(&format!("/invoices/{id}?done=paid_card"))),
        Err((status, message)) => {
            let mut page = invoice_page(&c, &pool, &settings, *id).await?;
            page.error = Some(message);
            crate::web::pages::html(status, &page)
        }
    }
}

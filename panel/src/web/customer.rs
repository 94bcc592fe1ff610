//! The customer's pages: ordering, orders, invoices (list, detail, printable, pay with credit
//! or by card), servers and their actions. Everything is looked up *for* the logged-in account
//! through the billing and instance services, so another customer's id is simply not found:
//! 404, never 403, for pages and actions alike.

use super::error::WebError;
use super::pages::{invalid, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentCustomer, InvoiceHolder};
use crate::billing;
use crate::billing::invoices::{display_number, InvoiceKind, InvoiceStatus};
use crate::catalogue::{self, PlanCard};
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::auth::AccountAuth;
use crate::db::catalogue::OsTemplate;
use crate::db::invoices::{InvoiceRow, LineRow};
use crate::ids::InstanceId;
use crate::instances::{self, InstanceRow};
use crate::money::{Currency, Money};
use crate::orders::{self, OrderError, OrderRequest, OrderRow};
use crate::plans::BillingCycle;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;
use vessel_core::Action;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(order_form)
        .service(order_place)
        .service(orders_list)
        .service(order_show)
        .service(invoices_list)
        .service(invoice_show)
        .service(invoice_print)
        .service(invoice_pdf_download)
        .service(invoice_pay)
        .service(invoice_card)
        .service(funds_form)
        .service(funds_card)
        .service(servers_list)
        .service(server_show)
        .service(server_action)
        .service(plan_form)
        .service(plan_change)
        .service(cancel_form)
        .service(cancel);
}

fn currency_of(a: &AccountAuth) -> Currency {
    Currency::parse(&a.currency).unwrap_or_else(|_| Currency::parse("EUR").expect("EUR is a currency"))
}

fn money(minor: i64, currency: &str) -> String {
    Currency::parse(currency).map(|c| Money::new(minor, c).to_string()).unwrap_or_else(|_| format!("{minor} {currency}"))
}

/// Times are stored in UTC; pages show dates (the customer's zone only changes the display).
fn day(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "—".into())
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// The account's credit balance, one line per currency it has.
pub async fn credit_lines(pool: &PgPool, a: &AccountAuth) -> Result<Vec<String>, WebError> {
    let m = billing::payments::credit_balance(pool, a.id, currency_of(a)).await?;
    Ok(vec![m.to_string()])
}

// ------------------------------------------------------------------ ordering

#[derive(Template)]
#[template(path = "order_form.html")]
struct OrderPage {
    ctx: Ctx,
    plan: PlanCard,
    templates: Vec<OsTemplate>,
    cycle: String,
    os_template: String,
    hostname: String,
    coupon: String,
    error: Option<String>,
    field: String,
    /// The account's saved SSH keys, and which are ticked.
    keys: Vec<(crate::access::SshKeyRow, bool)>,
}

async fn order_page(c: &CurrentCustomer, pool: &PgPool, code: &str) -> Result<OrderPage, WebError> {
    let plan = catalogue::plan_card(pool, code, currency_of(&c.account)).await?.ok_or(WebError::NotFound)?;
    let kvm = plan.plan.kind == vessel_core::InstanceKind::Kvm;
    let templates: Vec<OsTemplate> = crate::db::catalogue::os_templates(pool, true)
        .await?
        .into_iter()
        .filter(|t| if kvm { t.for_kvm } else { t.for_containers })
        .collect();
    Ok(OrderPage {
        ctx: Ctx::of(&c.session),
        cycle: "monthly".into(),
        os_template: templates.first().map(|t| t.name.clone()).unwrap_or_default(),
        plan,
        templates,
        hostname: String::new(),
        coupon: String::new(),
        error: None,
        field: String::new(),
        // Every saved key is ticked by default: what a customer with one key expects.
        keys: crate::access::keys_of(pool, c.account.id).await?.into_iter().map(|k| (k, true)).collect(),
    })
}

#[get("/order/{code}")]
async fn order_form(c: CurrentCustomer, code: web::Path<String>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    ok(&order_page(&c, &pool, &code).await?)
}

#[derive(Deserialize)]
struct OrderForm {
    cycle: String,
    os_template: String,
    hostname: String,
    #[serde(default)]
    coupon: String,
    /// Empty: generated and shown once if no key is ticked either.
    #[serde(default)]
    root_password: String,
    /// `key_<uuid>=on` for each ticked saved key (plain forms cannot post a list).
    #[serde(flatten)]
    rest: std::collections::HashMap<String, String>,
}

impl OrderForm {
    fn key_ids(&self) -> Vec<Uuid> {
        self.rest.keys().filter_map(|k| k.strip_prefix("key_")).filter_map(|id| Uuid::parse_str(id).ok()).collect()
    }
}

/// The order form again, as the customer filled it in (the password excepted), with the
/// mistake next to its field.
async fn order_again(
    c: &CurrentCustomer,
    pool: &PgPool,
    code: &str,
    f: OrderForm,
    field: &str,
    error: &str,
) -> Result<HttpResponse, WebError> {
    let ticked = f.key_ids();
    let mut page = order_page(c, pool, code).await?;
    page.cycle = f.cycle;
    page.os_template = f.os_template;
    page.hostname = f.hostname;
    page.coupon = f.coupon;
    page.keys.iter_mut().for_each(|(k, on)| *on = ticked.contains(&k.id));
    page.field = field.to_string();
    page.error = Some(error.to_string());
    invalid(&page)
}

#[post("/order/{code}")]
async fn order_place(
    c: CurrentCustomer,
    code: web::Path<String>,
    f: CsrfForm<OrderForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    let f = f.0;
    let cycle = BillingCycle::ALL.into_iter().find(|x| x.as_str() == f.cycle);
    let access_req = crate::access::AccessRequest {
        saved_keys: f.key_ids(),
        key_lines: vec![],
        root_password: Some(f.root_password.clone()).filter(|p| !p.is_empty()),
    };
    let chosen = match crate::access::choose(pool.get_ref(), c.account.id, access_req).await {
        Ok(chosen) => chosen,
        Err(e) if e.is_user_error() => return order_again(&c, &pool, &code, f, e.field(), &e.to_string()).await,
        Err(e) => return Err(e.into()),
    };
    let result = match cycle {
        None => return Err(WebError::BadForm("the billing cycle must be monthly, quarterly or annual".into())),
        Some(cycle) => {
            let req = OrderRequest {
                plan_code: code.to_string(),
                cycle,
                os_template: f.os_template.clone(),
                hostname: f.hostname.clone(),
                coupon: Some(f.coupon.clone()).filter(|c| !c.trim().is_empty()),
            };
            orders::place_order_with_access(&pool, clock.as_ref().as_ref(), c.account.id, req, &chosen.access).await
        }
    };
    match result {
        Ok(placed) if chosen.generated_password.is_some() => super::access::show_password(&super::access::PasswordShown {
            ctx: super::pages::Ctx::of(&c.session),
            heading: "Order placed".into(),
            message:
                "Your server is created as soon as its first invoice is paid. Log in as root with this password (or the keys you picked)."
                    .into(),
            password: chosen.generated_password,
            next: format!("/orders/{}?done=ordered", placed.order_id),
        }),
        Ok(placed) => Ok(see_other(&format!("/orders/{}?done=ordered", placed.order_id))),
        Err(e) if e.is_user_error() && !matches!(e, OrderError::UnknownPlan) => {
            order_again(&c, &pool, &code, f, e.field().unwrap_or(""), &e.to_string()).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    ctx: Ctx,
    orders: Vec<OrderRow>,
}

#[get("/orders")]
async fn orders_list(c: CurrentCustomer, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let orders = orders::list_for(&pool, c.account.id).await?;
    ok(&OrdersPage { ctx: Ctx::of(&c.session), orders })
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderStatePage {
    ctx: Ctx,
    o: OrderRow,
    invoice: Option<InvoiceView>,
}

#[get("/orders/{id}")]
async fn order_show(
    c: CurrentCustomer,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let o = orders::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
    let invoice = match o.invoice_id {
        Some(i) => billing::invoices::get_for(&pool, c.account.id, i).await?.map(|(r, l)| InvoiceView::new(r, l)),
        None => None,
    };
    ok(&OrderStatePage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), o, invoice })
}

// ------------------------------------------------------------------ invoices

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
    let (row, lines) = billing::invoices::get_for(pool, c.account.id.into(), id).await?.ok_or(WebError::NotFound)?;
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
    let (row, lines) = billing::invoices::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
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
    let page = InvoicePdf { inv: InvoiceView::new(row, lines).with_parties(pool).await?, css: include_str!("../../../static/vessel.css") };
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
    let (row, lines) = billing::invoices::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
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
    match billing::payments::pay_invoice_with_credit(&pool, clock.as_ref().as_ref(), c.account.id.into(), *id).await {
        Ok(()) => Ok(see_other(&format!("/invoices/{id}?done=paid"))),
        Err(e) => {
            let message = WebError::mistake(e)?;
            let mut page = invoice_page(&c, &pool, &settings, *id).await?;
            page.error = Some(message);
            super::pages::html(actix_web::http::StatusCode::CONFLICT, &page)
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
    fn of(settings: &Settings) -> Option<CardForm> {
        settings.stripe.as_ref().map(|s| CardForm {
            publishable_key: s.publishable_key.clone(),
            js_url: s.js_url.clone(),
            attempt: Uuid::new_v4(),
        })
    }
}

/// What the card form posts: the payment method Stripe.js made of the card, and the attempt.
#[derive(Deserialize)]
struct CardPayment {
    #[serde(default)]
    payment_method: String,
    #[serde(default)]
    attempt: String,
    /// For adding funds: how much.
    #[serde(default)]
    amount: String,
}

impl CardPayment {
    /// Stripe's idempotency key: the account and the form's attempt (a fresh one when the
    /// field is missing or garbled, which only costs the double-submit protection).
    fn idempotency_key(&self, account: Uuid) -> String {
        let attempt = self.attempt.parse::<Uuid>().unwrap_or_else(|_| Uuid::new_v4());
        format!("vessel-{account}-{attempt}")
    }
}

/// Why a card payment did not go through, in the customer's words, with the page's status
/// (422 for the card or the form, 502 when the provider failed); `Ok` when it went through.
fn card_refusal(outcome: Result<billing::stripe::CardCharge, billing::BillingError>) -> Result<(), (StatusCode, String)> {
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
    let (row, _) = billing::invoices::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
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
            super::pages::html(status, &page)
        }
    }
}

// ------------------------------------------------------------------ adding funds

#[derive(Template)]
#[template(path = "funds.html")]
struct FundsPage {
    ctx: Ctx,
    credit: String,
    currency: String,
    card: Option<CardForm>,
    bank: Option<(crate::config::BankTransferSettings, String)>,
    amount: String,
    error: Option<String>,
}

fn funds_page(c: &CurrentCustomer, settings: &Settings, credit: String, amount: String, error: Option<String>) -> FundsPage {
    FundsPage {
        ctx: Ctx::of(&c.session),
        credit,
        currency: currency_of(&c.account).as_str().to_string(),
        card: CardForm::of(settings),
        bank: settings.billing.bank_transfer.clone().map(|b| (b, crate::config::BankTransferSettings::account_reference(c.account.id))),
        amount,
        error,
    }
}

/// "Add funds": which ways to pay the provider has configured (card through Stripe, bank
/// transfer with the account's reference), so paying never needs an admin.
#[get("/account/funds")]
async fn funds_form(
    InvoiceHolder(c): InvoiceHolder,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let credit = billing::payments::credit_balance(&pool, c.account.id, currency_of(&c.account)).await?;
    let mut page = funds_page(&c, &settings, credit.to_string(), String::new(), None);
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

/// Card top-up: a PaymentIntent for the amount, credited by the webhook.
#[post("/account/funds/card")]
async fn funds_card(
    InvoiceHolder(c): InvoiceHolder,
    f: CsrfForm<CardPayment>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let cur = currency_of(&c.account);
    let credit = billing::payments::credit_balance(&pool, c.account.id, cur).await?.to_string();
    let refuse = |message: String| invalid(&funds_page(&c, &settings, credit.clone(), f.0.amount.clone(), Some(message)));
    let Some(stripe) = &settings.stripe else {
        return refuse("Card payments are not enabled here; use a bank transfer.".into());
    };
    let amount = match crate::money::parse_amount(&f.0.amount, cur) {
        Ok(m) if m.minor >= 100 && m.minor <= 1_000_000 => m,
        Ok(_) => return refuse(format!("Add between 1.00 and 10000.00 {cur}.")),
        Err(e) => return refuse(format!("Amount: {e}")),
    };
    let outcome = match billing::stripe::PaymentMethodId::parse(&f.0.payment_method) {
        Ok(method) => {
            billing::stripe::charge_card(
                stripe,
                &reqwest::Client::new(),
                c.account.id,
                amount,
                None,
                &method,
                &f.0.idempotency_key(c.account.id),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match card_refusal(outcome) {
        Ok(()) => Ok(see_other("/account/funds?done=paid_card")),
        Err((status, message)) => super::pages::html(status, &funds_page(&c, &settings, credit.clone(), f.0.amount.clone(), Some(message))),
    }
}

// ------------------------------------------------------------------ servers

#[derive(Template)]
#[template(path = "servers.html")]
struct ServersPage {
    ctx: Ctx,
    servers: Vec<InstanceRow>,
}

#[get("/servers")]
async fn servers_list(c: CurrentCustomer, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let servers = instances::list_for(&pool, c.account.id.into()).await?;
    ok(&ServersPage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), servers })
}

/// The billing line of a server page: when the period ends, and what happens then.
pub struct RenewalLine {
    pub text: String,
    pub cancelling: bool,
    /// A live subscription: the plan can change and the server can be cancelled.
    pub live: bool,
}

async fn renewal_line(pool: &PgPool, customer: Uuid, s: &InstanceRow) -> Result<Option<RenewalLine>, WebError> {
    let Some(sub) = s.subscription_id else { return Ok(None) };
    let Some(r) = crate::db::subscriptions::renewal_view(pool, sub.0, customer).await? else { return Ok(None) };
    let live = matches!(r.status, crate::subscriptions::SubscriptionStatus::Active | crate::subscriptions::SubscriptionStatus::Suspended);
    let last_day = crate::billing::period::last_day(r.current_period_end);
    let text = match (live, r.cancel_at_period_end) {
        (true, false) => {
            format!("Paid until {last_day}; renews on {} for {} ({}).", r.current_period_end, money(r.price_minor, &r.currency), r.cycle)
        }
        (true, true) => format!("Paid until {last_day}; cancelled: it ends then and is not renewed."),
        (false, _) if r.status == crate::subscriptions::SubscriptionStatus::Pending => "Starts when its first invoice is paid.".to_string(),
        (false, _) => format!("Ended ({}).", r.status),
    };
    Ok(Some(RenewalLine { text, cancelling: r.cancel_at_period_end, live }))
}

#[derive(Template)]
#[template(path = "server.html")]
struct ServerPage {
    ctx: Ctx,
    s: InstanceRow,
    renewal: Option<RenewalLine>,
    error: Option<String>,
    /// (title, inline SVG drawn by the panel from numbers only) for the last day.
    charts: Vec<(&'static str, String)>,
    /// How to log in: the SSH keys' fingerprints and whether a root password is set.
    way_in: vessel_core::Access,
    /// Its addresses with gateway, netmask and resolvers.
    network: Vec<instances::NetworkLine>,
}

impl ServerPage {
    fn fingerprints(&self) -> Vec<String> {
        self.way_in.ssh_keys.iter().map(|k| k.fingerprint()).collect()
    }
}

/// The usage charts of the last day: CPU, memory against the plan's guarantee and burst,
/// disk, network. Server-rendered SVG, so they need no JavaScript.
async fn charts(pool: &PgPool, clock: &dyn Clock, customer: Uuid, s: &InstanceRow) -> Result<Vec<(&'static str, String)>, WebError> {
    use crate::usage::{svg, Chart};
    let points = crate::usage::last_day(pool, customer.into(), s.id, clock.now()).await?;
    let Some(p) = crate::db::catalogue::plan_by_id(pool, s.plan_id).await? else { return Ok(Vec::new()) };
    Ok(vec![
        ("CPU (cores)", svg(Chart::Cpu { vcpus: p.vcpus as u32 }, &points)),
        (
            "Memory (MiB): guarantee and burst ceiling",
            svg(Chart::Memory { guarantee_mib: p.memory_guaranteed_mib as u64, burst_mib: p.memory_burst_mib as u64 }, &points),
        ),
        ("Disk (GiB)", svg(Chart::Disk { size_gib: p.disk_gib as u64 }, &points)),
        ("Network (Mbit/s)", svg(Chart::Network, &points)),
    ])
}

#[get("/servers/{id}")]
async fn server_show(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
    let charts = charts(&pool, clock.as_ref().as_ref(), c.account.id, &s).await?;
    let way_in = crate::db::access::instance_access(pool.get_ref(), s.id).await?.unwrap_or_default();
    let renewal = renewal_line(&pool, c.account.id, &s).await?;
    let network = instances::network_of(&pool, s.id).await?;
    ok(&ServerPage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), s, renewal, error: None, charts, way_in, network })
}

#[derive(Deserialize)]
struct ActionForm {
    action: String,
    /// Reinstall erases the disk: it needs a second, explicit step.
    #[serde(default)]
    confirm: String,
    /// Reinstall: the operating system to install (empty: the current one).
    #[serde(default)]
    os_template: String,
}

#[derive(Template)]
#[template(path = "confirm_reinstall.html")]
struct ConfirmReinstall {
    ctx: Ctx,
    s: InstanceRow,
    /// The operating systems offered for this kind of server.
    templates: Vec<OsTemplate>,
}

#[post("/servers/{id}/action")]
async fn server_action(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<ActionForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    let action = match f.0.action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "reboot" | "restart" => Action::Restart,
        "reinstall" => Action::Reinstall,
        "rescue" => Action::Rescue,
        "leave-rescue" => Action::LeaveRescue,
        other => {
            return Err(WebError::BadForm(format!(
                "{other:?} is not an action; use start, stop, reboot, reinstall, rescue or leave-rescue"
            )))
        }
    };
    if action == Action::Reinstall && f.0.confirm != "yes" {
        // Only the owner gets as far as the question.
        let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
        let kvm = s.kind == vessel_core::InstanceKind::Kvm;
        let templates = crate::db::catalogue::os_templates(&pool, true)
            .await?
            .into_iter()
            .filter(|t| if kvm { t.for_kvm } else { t.for_containers })
            .collect();
        return ok(&ConfirmReinstall { ctx: Ctx::of(&c.session), s, templates });
    }
    let r = if action == Action::Reinstall {
        instances::reinstall(&pool, clock.as_ref().as_ref(), c.account.id.into(), *id, Some(f.0.os_template.as_str())).await
    } else {
        instances::request_action(&pool, clock.as_ref().as_ref(), c.account.id.into(), *id, action).await
    };
    match r {
        Ok(()) => Ok(see_other(&format!("/servers/{id}?done=requested"))),
        Err(e) => {
            let message = WebError::mistake(e)?;
            let s = instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
            let charts = charts(&pool, clock.as_ref().as_ref(), c.account.id, &s).await?;
            let renewal = renewal_line(&pool, c.account.id, &s).await?;
            super::pages::html(
                actix_web::http::StatusCode::CONFLICT,
                &ServerPage {
                    ctx: Ctx::of(&c.session),
                    s,
                    renewal,
                    error: Some(message),
                    charts,
                    way_in: Default::default(),
                    network: Vec::new(),
                },
            )
        }
    }
}

// ------------------------------------------------------------------ plan changes and cancelling

/// One plan the server could move to, with what moving costs or gives back today.
pub struct PlanChoice {
    pub code: String,
    pub name: String,
    pub price: String,
    pub quote: Option<instances::Quote>,
    /// Why it cannot be chosen now (a debt, a refusal), if so.
    pub refused: Option<String>,
}

impl PlanChoice {
    /// The signed total the confirmation carries back (a credit is negative).
    pub fn signed_total(&self) -> i64 {
        match &self.quote {
            Some(q) if q.kind == instances::QuoteKind::Credit => -q.total_minor,
            Some(q) => q.total_minor,
            None => 0,
        }
    }
    pub fn says(&self) -> String {
        match &self.quote {
            None => String::new(),
            Some(q) => match q.kind {
                instances::QuoteKind::Charge => {
                    format!("You pay {} now (an invoice for the rest of this period, tax included).", q.total())
                }
                instances::QuoteKind::Credit => {
                    format!("You get {} back (a credit note for the rest of this period, tax included).", q.total())
                }
                instances::QuoteKind::Even => "Nothing to pay or get back.".to_string(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "change_plan.html")]
struct PlanPage {
    ctx: Ctx,
    s: InstanceRow,
    choices: Vec<PlanChoice>,
    error: Option<String>,
}

async fn plan_page(
    c: &CurrentCustomer,
    pool: &PgPool,
    clock: &dyn Clock,
    id: InstanceId,
    error: Option<String>,
) -> Result<PlanPage, WebError> {
    let s = instances::get_for(pool, c.account.id.into(), id).await?.ok_or(WebError::NotFound)?;
    let sub = s.subscription_id.ok_or(WebError::NotFound)?;
    let mut choices = Vec::new();
    for (code, name, price) in crate::db::subscriptions::plan_choices(pool, sub.0).await? {
        let cur = crate::db::subscriptions::renewal_view(pool, sub.0, c.account.id).await?.map(|r| r.currency).unwrap_or_default();
        let (quote, refused) = match instances::quote_plan_change(pool, clock, c.account.id.into(), id, &code).await {
            Ok(q) => (Some(q), None),
            Err(e) => (None, Some(WebError::mistake(e)?)),
        };
        choices.push(PlanChoice { code, name, price: money(price, &cur), quote, refused });
    }
    Ok(PlanPage { ctx: Ctx::of(&c.session), s, choices, error })
}

/// Every plan of the server's kind, with the prorated amount of moving to it today: the same
/// invoice or credit note the change makes (computed by making it and rolling back).
#[get("/servers/{id}/plan")]
async fn plan_form(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    ok(&plan_page(&c, &pool, clock.as_ref().as_ref(), *id, None).await?)
}

#[derive(Deserialize)]
struct PlanForm {
    plan: String,
    /// The signed total shown (minor units): the change goes ahead only at that amount.
    shown_total: i64,
}

#[post("/servers/{id}/plan")]
async fn plan_change(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<PlanForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    let clock = clock.as_ref().as_ref();
    match instances::change_plan(&pool, clock, c.account.id.into(), *id, &f.0.plan, f.0.shown_total).await {
        Ok(q) => match (q.kind, q.document_id) {
            (instances::QuoteKind::Charge, Some(inv)) => Ok(see_other(&format!("/invoices/{inv}?done=plan_changed"))),
            _ => Ok(see_other(&format!("/servers/{id}?done=plan_changed"))),
        },
        Err(e) => invalid(&plan_page(&c, &pool, clock, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[derive(Template)]
#[template(path = "cancel.html")]
struct CancelPage {
    ctx: Ctx,
    s: InstanceRow,
    renewal: Option<RenewalLine>,
    /// What ending it now gives back.
    now: Option<instances::Quote>,
    error: Option<String>,
}

async fn cancel_page(
    c: &CurrentCustomer,
    pool: &PgPool,
    clock: &dyn Clock,
    id: InstanceId,
    error: Option<String>,
) -> Result<CancelPage, WebError> {
    let s = instances::get_for(pool, c.account.id.into(), id).await?.ok_or(WebError::NotFound)?;
    let renewal = renewal_line(pool, c.account.id, &s).await?;
    let now = match instances::quote_terminate(pool, clock, c.account.id.into(), id).await {
        Ok(q) => Some(q),
        Err(e) => {
            WebError::mistake(e)?;
            None
        }
    };
    Ok(CancelPage { ctx: Ctx::of(&c.session), s, renewal, now, error })
}

/// Cancelling: at the end of the paid period (nothing more is charged), or now with the unused
/// part of the period back as a credit note (the one rule of `billing::proration::refund_unused`).
#[get("/servers/{id}/cancel")]
async fn cancel_form(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    ok(&cancel_page(&c, &pool, clock.as_ref().as_ref(), *id, None).await?)
}

#[derive(Deserialize)]
struct CancelForm {
    /// `period_end`, `now`, or `keep` (take back a cancellation at the period's end).
    when: String,
}

#[post("/servers/{id}/cancel")]
async fn cancel(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    f: CsrfForm<CancelForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<Arc<dyn Clock>>,
) -> Result<HttpResponse, WebError> {
    let clock = clock.as_ref().as_ref();
    let r = match f.0.when.as_str() {
        "period_end" => instances::cancel_at_period_end(&pool, c.account.id.into(), *id, true).await.map(|_| "cancel_at_period_end"),
        "keep" => instances::cancel_at_period_end(&pool, c.account.id.into(), *id, false).await.map(|_| "kept"),
        "now" => instances::terminate_now(&pool, clock, c.account.id.into(), *id).await.map(|_| "terminated"),
        other => return Err(WebError::BadForm(format!("{other:?}: choose period_end, now or keep"))),
    };
    match r {
        Ok(done) => Ok(see_other(&format!("/servers/{id}?done={done}"))),
        Err(e) => invalid(&cancel_page(&c, &pool, clock, *id, Some(WebError::mistake(e)?)).await?),
    }
}

// ------------------------------------------------------------------ for the admin's customer page

/// What the admin's customer page shows beyond the account itself.
pub struct AdminCustomerExtra {
    pub credit: Vec<String>,
    pub invoices: Vec<InvoiceView>,
    pub servers: Vec<InstanceRow>,
    pub currency: String,
}

pub async fn admin_customer_extra(pool: &PgPool, c: &crate::db::admin::AccountRow) -> Result<AdminCustomerExtra, WebError> {
    let cur = Currency::parse(&c.currency).map_err(WebError::internal)?;
    let credit = billing::payments::credit_balance(pool, c.id, cur).await?;
    let invoices = billing::invoices::list_for(pool, c.id)
        .await?
        .into_iter()
        .filter(|r| r.status != InvoiceStatus::Draft)
        .map(|r| InvoiceView::new(r, Vec::new()))
        .collect();
    let servers = instances::list_for(pool, c.id.into()).await?;
    Ok(AdminCustomerExtra { credit: vec![credit.to_string()], invoices, servers, currency: c.currency.clone() })
}

//! Adding funds to the account's credit by card.

use super::invoices::{card_refusal, CardForm, CardPayment};
use super::{currency_of, Done};
use crate::billing;
use crate::config::Settings;
use crate::web::error::WebError;
use crate::web::pages::{invalid, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentCustomer, InvoiceHolder};
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use sqlx::PgPool;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(funds_form).service(funds_card);
}

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
        Err((status, message)) => {
            crate::web::pages::html(status, &funds_page(&c, &settings, credit.clone(), f.0.amount.clone(), Some(message)))
        }
    }
}

//! The customer's pages: ordering, orders, invoices (list, detail, printable, pay with credit
//! or by card), servers and their actions. Everything is looked up *for* the logged-in account
//! through the billing and instance services, so another customer's id is simply not found:
//! 404, never 403, for pages and actions alike.

mod funds;
mod invoices;
mod orders;
mod plans;
mod servers;

use super::error::WebError;
use crate::billing;
use crate::billing::invoices::InvoiceStatus;
use crate::db::auth::AccountAuth;
use crate::instances::{self, InstanceRow};
use crate::money::{Currency, Money};
use actix_web::web;
use serde::Deserialize;
use sqlx::PgPool;

pub use invoices::{archive_pending_pdfs, invoice_pdf, pdf_response, InvoiceView, LineView};

pub fn configure(cfg: &mut web::ServiceConfig) {
    orders::configure(cfg);
    invoices::configure(cfg);
    funds::configure(cfg);
    servers::configure(cfg);
    plans::configure(cfg);
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

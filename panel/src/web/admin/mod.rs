//! The admin area: thin handlers over [`crate::admin`] (catalogue and accounts) and the lead's
//! billing services. Every page needs a logged-in admin (anyone else: 404); every change is
//! audited by the service with the admin's id and remote address.

mod audit;
mod cockpit;
mod customers;
mod forms;
mod hosts;
mod invoices;
mod mails;
mod plans;
mod pools;
mod resellers;
mod security;
mod templates;

use super::error::WebError;
use super::pages::{ok, Ctx};
use super::session::{CsrfForm, CurrentAdmin};
use crate::admin::{AdminError, By};
use actix_web::{get, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cockpit::configure(cfg);
    cfg.service(dashboard);
    plans::configure(cfg);
    hosts::configure(cfg);
    pools::configure(cfg);
    templates::configure(cfg);
    customers::configure(cfg);
    invoices::configure(cfg);
    resellers::configure(cfg);
    audit::configure(cfg);
    mails::configure(cfg);
    security::configure(cfg);
}

fn by(a: &CurrentAdmin, req: &HttpRequest) -> By {
    By { admin: a.account.id, addr: super::remote_addr(req) }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// Any form with nothing but its CSRF token.
type Empty = CsrfForm<serde_json::Map<String, serde_json::Value>>;

/// A service outcome for a form: a user mistake re-renders (422) with its field marked, anything
/// else fails as [`WebError`]'s `From<AdminError>` says.
fn admin_err_ref(e: &AdminError) -> Result<(), WebError> {
    match e {
        AdminError::NotFound => Err(WebError::NotFound),
        AdminError::Db(e) => Err(WebError::internal(format!("database: {e}"))),
        AdminError::Invalid { .. } => Ok(()),
    }
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    ctx: Ctx,
    stats: Vec<(&'static str, i64, &'static str)>,
    waiting: Vec<cockpit::WaitingLine>,
    failed: Vec<cockpit::FailedJob>,
}

#[get("/admin")]
async fn dashboard(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let counts = crate::db::admin_stats(&pool).await?;
    let ctx = Ctx::of(&a.session).with_notice(q.done.as_deref());
    let (waiting, failed) = cockpit::dashboard_lists(&ctx, &pool).await?;
    ok(&DashboardPage { ctx, stats: counts, waiting, failed })
}

/// A form that moves something to a state (`to`), shared by several pages.
#[derive(Deserialize)]
struct ToForm {
    to: String,
    /// A customer's suspension: why (mailed to them).
    #[serde(default)]
    reason: String,
}

/// The amount an admin typed into a money form (a payment, a credit, a one-off invoice), read
/// in `currency` (the account's or the invoice's): `Ok(Ok(money))`, or `Ok(Err(page))`, the
/// form's page shown again (422) saying what to fix; `page` renders it with that message.
async fn typed_amount<P: Template, F: std::future::Future<Output = Result<P, WebError>>>(
    typed: &str,
    currency: &str,
    page: impl FnOnce(String) -> F,
) -> Result<Result<crate::money::Money, HttpResponse>, WebError> {
    let currency = crate::money::Currency::parse(currency).map_err(WebError::internal)?;
    match crate::money::parse_amount(typed, currency) {
        Ok(m) => Ok(Ok(m)),
        Err(e) => Ok(Err(super::pages::invalid(&page(format!("Amount: {e}")).await?)?)),
    }
}

/// A payment received outside the gateway.
#[derive(Deserialize)]
struct PaymentForm {
    amount: String,
    reference: String,
}

//! Admin pages for customers: the list, one customer, payments received outside the gateway,
//! one-off invoices, suspension, and help for a stuck sign-up.

use super::forms::{cell, link, list_page, ListView};
use super::{admin_err_ref, by, typed_amount, Done, Empty, PaymentForm, ToForm};
use crate::accounts::Role;
use crate::admin;
use crate::config::Settings;
use crate::db::admin as sql_admin;
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(customers)
        .service(customer_show)
        .service(customer_suspend)
        .service(customer_mark_verified)
        .service(customer_resend_verification)
        .service(customer_credit)
        .service(customer_invoice);
}

#[get("/admin/customers")]
async fn customers(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let rows = sql_admin::accounts_by_role(&pool, Role::Customer)
        .await?
        .iter()
        .map(|c| {
            vec![
                link(&c.email, format!("/admin/customers/{}", c.id)),
                cell(&c.display_name),
                cell(c.status),
                cell(c.country.as_deref().unwrap_or("—")),
                cell(c.reseller_email.as_deref().unwrap_or("—")),
                cell(c.created_at.format("%Y-%m-%d %H:%M UTC")),
            ]
        })
        .collect();
    let list = ListView {
        title: "Customers".into(),
        headers: vec!["Email", "Name", "Status", "Country", "Reseller", "Since"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[derive(Template)]
#[template(path = "admin/customer.html")]
struct CustomerPage {
    ctx: Ctx,
    c: sql_admin::AccountRow,
    extra: crate::web::customer::AdminCustomerExtra,
    error: Option<String>,
}

async fn customer_page(a: &CurrentAdmin, pool: &PgPool, id: Uuid, error: Option<String>) -> Result<CustomerPage, WebError> {
    let c = sql_admin::account(pool, id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let extra = crate::web::customer::admin_customer_extra(pool, &c).await?;
    Ok(CustomerPage { ctx: Ctx::of(&a.session), c, extra, error })
}

#[get("/admin/customers/{id}")]
async fn customer_show(
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let mut page = customer_page(&a, &pool, *id, None).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

/// Money received outside the gateway (a bank transfer) becomes the customer's credit.
#[post("/admin/customers/{id}/credit")]
async fn customer_credit(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<PaymentForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let c = sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let amount = match typed_amount(&f.0.amount, &c.currency, |e| customer_page(&a, &pool, *id, Some(e))).await? {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let r = crate::billing::payments::record_manual_payment(
        &pool,
        clock.as_ref().as_ref(),
        a.account.id,
        c.id,
        amount,
        &f.0.reference,
        None,
        crate::web::remote_addr(&req),
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[derive(Deserialize)]
struct ChargeForm {
    description: String,
    amount: String,
}

#[post("/admin/customers/{id}/invoice")]
async fn customer_invoice(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ChargeForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let c = sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    let amount = match typed_amount(&f.0.amount, &c.currency, |e| customer_page(&a, &pool, *id, Some(e))).await? {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    match admin::issue_invoice(&pool, clock.as_ref().as_ref(), by(&a, &req), c.id, &f.0.description, amount).await {
        Ok(inv) => Ok(see_other(&format!("/admin/invoices/{inv}?done=saved"))),
        Err(e) => {
            admin_err_ref(&e)?;
            invalid_page(&customer_page(&a, &pool, *id, Some(e.to_string())).await?)
        }
    }
}

#[post("/admin/customers/{id}/status")]
async fn customer_suspend(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<ToForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let suspend = match f.0.to.as_str() {
        "suspend" => true,
        "unsuspend" => false,
        _ => return Err(WebError::BadForm("to must be suspend or unsuspend".into())),
    };
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::set_customer_suspended(&pool, by(&a, &req), *id, suspend, &f.0.reason, clock.now()).await {
        Ok(_) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

/// A stuck sign-up (the mail never arrived): the admin vouches for the address.
#[post("/admin/customers/{id}/mark-verified")]
async fn customer_mark_verified(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::mark_customer_verified(&pool, by(&a, &req), *id).await {
        Ok(()) => Ok(see_other(&format!("/admin/customers/{id}?done=saved"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

/// A stuck sign-up: a fresh verification link by mail.
#[post("/admin/customers/{id}/resend-verification")]
async fn customer_resend_verification(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    sql_admin::account(&pool, *id, Role::Customer).await?.ok_or(WebError::NotFound)?;
    match admin::resend_customer_verification(&pool, by(&a, &req), &settings.http.base_url, *id).await {
        Ok(()) => Ok(see_other(&format!("/admin/customers/{id}?done=resent"))),
        Err(e) => invalid_page(&customer_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

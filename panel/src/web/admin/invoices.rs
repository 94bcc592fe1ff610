//! Admin pages for invoices: the list, one invoice, voiding it, a payment received for it.

use super::forms::{cell, link, list_page, num, ListView};
use super::{typed_amount, Done, PaymentForm};
use crate::web::error::WebError;
use crate::web::pages::{invalid as invalid_page, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentAdmin};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use sqlx::PgPool;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(invoices).service(invoice_show).service(invoice_void).service(invoice_payment);
}

#[get("/admin/invoices")]
async fn invoices(a: CurrentAdmin, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let all = crate::billing::invoices::list_all(&pool, 500).await?;
    let rows = all
        .into_iter()
        .filter(|r| r.status != crate::billing::invoices::InvoiceStatus::Draft)
        .map(crate::web::customer::InvoiceView::from_row)
        .map(|i| {
            vec![
                link(&i.number, format!("/admin/invoices/{}", i.row.id)),
                link("customer", format!("/admin/customers/{}", i.row.account_id)),
                cell(&i.issued),
                cell(&i.due),
                num(&i.total),
                cell(i.row.status),
            ]
        })
        .collect();
    let list = ListView {
        title: "Invoices".into(),
        intro: "Issued invoices and credit notes, newest first. Issue a one-off invoice from a customer's page.".into(),
        headers: vec!["Number", "Customer", "Issued", "Due", "Total", "State"],
        rows,
        ..Default::default()
    };
    ok(&list_page(&a, list, q.done.as_deref()))
}

#[derive(Template)]
#[template(path = "admin/invoice.html")]
struct AdminInvoicePage {
    ctx: Ctx,
    inv: crate::web::customer::InvoiceView,
    amount: String,
    error: Option<String>,
}

async fn admin_invoice_page(a: &CurrentAdmin, pool: &PgPool, id: Uuid, error: Option<String>) -> Result<AdminInvoicePage, WebError> {
    let (row, lines) = crate::billing::invoices::get(pool, id).await?.ok_or(WebError::NotFound)?;
    let cur = crate::money::Currency::parse(&row.currency).map_err(WebError::internal)?;
    let exp = cur.exponent();
    let amount = if exp == 0 {
        row.total_minor.to_string()
    } else {
        let s = 10i64.pow(exp);
        format!("{}.{:0w$}", row.total_minor / s, row.total_minor % s, w = exp as usize)
    };
    Ok(AdminInvoicePage { ctx: Ctx::of(&a.session), inv: crate::web::customer::InvoiceView::new(row, lines), amount, error })
}

#[get("/admin/invoices/{id}")]
async fn invoice_show(
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let mut page = admin_invoice_page(&a, &pool, *id, None).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[post("/admin/invoices/{id}/void")]
async fn invoice_void(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    _f: CsrfForm<serde_json::Map<String, serde_json::Value>>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let r =
        crate::billing::invoices::void_with_credit_note(&pool, clock.as_ref().as_ref(), a.account.id, *id, crate::web::remote_addr(&req))
            .await;
    match r {
        Ok(cn) => Ok(see_other(&format!("/admin/invoices/{cn}?done=saved"))),
        Err(e) => invalid_page(&admin_invoice_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

#[post("/admin/invoices/{id}/payment")]
async fn invoice_payment(
    req: HttpRequest,
    a: CurrentAdmin,
    id: web::Path<Uuid>,
    f: CsrfForm<PaymentForm>,
    pool: web::Data<PgPool>,
    clock: web::Data<std::sync::Arc<dyn crate::clock::Clock>>,
) -> Result<HttpResponse, WebError> {
    let (row, _) = crate::billing::invoices::get(&pool, *id).await?.ok_or(WebError::NotFound)?;
    let amount = match typed_amount(&f.0.amount, &row.currency, |e| admin_invoice_page(&a, &pool, *id, Some(e))).await? {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let r = crate::billing::payments::record_manual_payment(
        &pool,
        clock.as_ref().as_ref(),
        a.account.id,
        row.account_id,
        amount,
        &f.0.reference,
        Some(row.id),
        crate::web::remote_addr(&req),
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/admin/invoices/{id}?done=saved"))),
        Err(e) => invalid_page(&admin_invoice_page(&a, &pool, *id, Some(WebError::mistake(e)?)).await?),
    }
}

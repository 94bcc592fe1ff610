//! Changing a server's plan, and cancelling it (at the period's end or now).

use super::money;
use super::servers::{renewal_line, RenewalLine};
use crate::clock::Clock;
use crate::ids::InstanceId;
use crate::instances::{self, InstanceRow};
use crate::web::error::WebError;
use crate::web::pages::{invalid, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentCustomer};
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(plan_form).service(plan_change).service(cancel_form).service(cancel);
}

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

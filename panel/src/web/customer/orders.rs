//! Ordering a plan and the customer's orders.

use super::invoices::InvoiceView;
use super::{currency_of, Done};
use crate::billing;
use crate::catalogue::{self, PlanCard};
use crate::clock::Clock;
use crate::db::catalogue::OsTemplate;
use crate::orders::{self, OrderError, OrderRequest, OrderRow};
use crate::plans::BillingCycle;
use crate::web::error::WebError;
use crate::web::pages::{invalid, ok, see_other, Ctx};
use crate::web::session::{CsrfForm, CurrentCustomer};
use actix_web::{get, post, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(order_form).service(order_place).service(orders_list).service(order_show);
}

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
        Ok(placed) if chosen.generated_password.is_some() => crate::web::access::show_password(&crate::web::access::PasswordShown {
            ctx: crate::web::pages::Ctx::of(&c.session),
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
    let o = orders::get_for(&pool, c.account.id, *id).await?.ok_or(WebError::NotFound)?;
    let invoice = match o.invoice_id {
        Some(i) => billing::invoices::get_for(&pool, c.account.id, i).await?.map(|(r, l)| InvoiceView::new(r, l)),
        None => None,
    };
    ok(&OrderStatePage { ctx: Ctx::of(&c.session).with_notice(q.done.as_deref()), o, invoice })
}

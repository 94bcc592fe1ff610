//! The reseller's own pages: a home with what it holds and its terms, its API keys (the token
//! shown once), and its webhook endpoints with their delivery logs. Thin handlers over
//! [`crate::api_keys`] and [`crate::webhooks`]; every lookup is *for* the logged-in reseller,
//! so another reseller's key, endpoint or delivery is a 404. Its (wholesale) invoices are the
//! customer invoice pages, which serve resellers too (`session::InvoiceHolder`).

use super::error::WebError;
use super::pages::{invalid, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentReseller};
use crate::api_keys::{self, ApiKeyError, KeyRow, Scope};
use crate::db::resellers as sql_resellers;
use crate::webhooks::{self, DeliveryRow, EndpointRow, WebhookError};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(home)
        .service(keys_list)
        .service(key_create)
        .service(key_revoke)
        .service(endpoints_list)
        .service(endpoint_create)
        .service(endpoint_show)
        .service(endpoint_state)
        .service(endpoint_rotate)
        .service(endpoint_delete)
        .service(delivery_resend);
}

type Empty = CsrfForm<serde_json::Map<String, serde_json::Value>>;

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

fn when(ctx: &Ctx, t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| ctx.when(&t)).unwrap_or_else(|| "—".into())
}

fn webhook_err(e: WebhookError) -> WebError {
    match e {
        WebhookError::NotFound | WebhookError::NotAllowed => WebError::NotFound,
        WebhookError::NotFailed => WebError::Conflict(e.to_string()),
        WebhookError::BadUrl(_) => WebError::BadForm(e.to_string()),
        WebhookError::Db(e) => e.into(),
    }
}

// ------------------------------------------------------------------ home

/// Terms as the pages show them.
pub struct TermsView {
    pub discount: String,
    pub max_servers: i32,
    pub max_vcpus: i32,
    pub max_memory_mib: i64,
    pub max_disk_gib: i64,
    pub saved: bool,
}

impl TermsView {
    pub fn of(t: &sql_resellers::SavedTerms, saved: bool) -> Self {
        TermsView {
            discount: percent(t.discount_bp),
            max_servers: t.max_servers,
            max_vcpus: t.max_vcpus,
            max_memory_mib: t.max_memory_mib,
            max_disk_gib: t.max_disk_gib,
            saved,
        }
    }
}

/// Basis points as a percentage with two decimals: 1250 → "12.50".
pub fn percent(bp: i32) -> String {
    format!("{}.{:02}", bp / 100, bp % 100)
}

#[derive(Template)]
#[template(path = "reseller/home.html")]
struct HomePage {
    ctx: Ctx,
    name: String,
    customers: i64,
    servers: i64,
    endpoints: i64,
    keys: i64,
    terms: TermsView,
}

#[get("/reseller")]
async fn home(r: CurrentReseller, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let (customers, servers, endpoints, keys) = sql_resellers::summary(&pool, r.account.id).await?;
    let terms = match sql_resellers::saved_terms(&pool, r.account.id).await? {
        Some(t) => TermsView::of(&t, true),
        None => TermsView::of(&sql_resellers::default_terms(&pool, r.account.id).await?, false),
    };
    ok(&HomePage { ctx: Ctx::of(&r.session), name: r.account.display_name.clone(), customers, servers, endpoints, keys, terms })
}

// ------------------------------------------------------------------ API keys

pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

impl KeyView {
    fn of(ctx: &Ctx, k: &KeyRow) -> Self {
        KeyView {
            id: k.id,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.join(", "),
            created: ctx.when(&k.created_at),
            last_used: k.last_used_at.map(|t| ctx.when(&t)).unwrap_or_else(|| "never".into()),
            revoked: k.revoked_at.map(|t| ctx.when(&t)),
        }
    }
}

#[derive(Template)]
#[template(path = "reseller/keys.html")]
struct KeysPage {
    ctx: Ctx,
    keys: Vec<KeyView>,
    name: String,
    read: bool,
    write: bool,
    error: Option<String>,
    field: String,
}

async fn keys_page(r: &CurrentReseller, pool: &PgPool) -> Result<KeysPage, WebError> {
    let ctx = Ctx::of(&r.session);
    let keys = api_keys::list_for(pool, r.account.id).await?.iter().map(|k| KeyView::of(&ctx, k)).collect();
    Ok(KeysPage { ctx, keys, name: String::new(), read: true, write: false, error: None, field: String::new() })
}

#[get("/reseller/keys")]
async fn keys_list(r: CurrentReseller, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let mut page = keys_page(&r, &pool).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    name: String,
    scope_read: Option<String>,
    scope_write: Option<String>,
}

#[derive(Template)]
#[template(path = "reseller/key_created.html")]
struct KeyCreatedPage {
    ctx: Ctx,
    key: KeyView,
    token: String,
}

/// The token is in this one response and nowhere else: not stored, not in a redirect, and
/// marked not to be cached.
#[post("/reseller/keys")]
async fn key_create(req: HttpRequest, r: CurrentReseller, f: CsrfForm<KeyForm>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let f = f.0;
    let mut scopes = Vec::new();
    if f.scope_read.is_some() {
        scopes.push(Scope::Read);
    }
    if f.scope_write.is_some() {
        scopes.push(Scope::Write);
    }
    match api_keys::create(&pool, r.account.id, &f.name, &scopes, super::remote_addr(&req)).await {
        Ok(new) => {
            let ctx = Ctx::of(&r.session);
            let page = KeyCreatedPage { key: KeyView::of(&ctx, &new.row), ctx, token: new.token };
            let mut resp = ok(&page)?;
            resp.headers_mut()
                .insert(actix_web::http::header::CACHE_CONTROL, actix_web::http::header::HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        Err(e @ (ApiKeyError::BadName | ApiKeyError::NoScopes)) => {
            let mut page = keys_page(&r, &pool).await?;
            page.field = if matches!(e, ApiKeyError::BadName) { "name" } else { "scopes" }.into();
            page.error = Some(e.to_string());
            page.name = f.name;
            page.read = f.scope_read.is_some();
            page.write = f.scope_write.is_some();
            invalid(&page)
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/reseller/keys/{id}/revoke")]
async fn key_revoke(
    req: HttpRequest,
    r: CurrentReseller,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match api_keys::revoke(&pool, r.account.id, *id, super::remote_addr(&req)).await {
        Ok(()) => Ok(see_other("/reseller/keys?done=revoked")),
        Err(ApiKeyError::NotFound) => Err(WebError::NotFound),
        Err(e) => Err(WebError::internal(e)),
    }
}

// ------------------------------------------------------------------ webhooks

#[derive(Template)]
#[template(path = "reseller/webhooks.html")]
struct EndpointsPage {
    ctx: Ctx,
    endpoints: Vec<EndpointRow>,
    url: String,
    error: Option<String>,
}

async fn endpoints_page(r: &CurrentReseller, pool: &PgPool) -> Result<EndpointsPage, WebError> {
    let endpoints = webhooks::endpoints(pool, r.account.id).await.map_err(webhook_err)?;
    Ok(EndpointsPage { ctx: Ctx::of(&r.session), endpoints, url: String::new(), error: None })
}

#[get("/reseller/webhooks")]
async fn endpoints_list(r: CurrentReseller, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let mut page = endpoints_page(&r, &pool).await?;
    page.ctx = page.ctx.with_notice(q.done.as_deref());
    ok(&page)
}

#[derive(Deserialize)]
struct EndpointForm {
    #[serde(default)]
    url: String,
}

#[post("/reseller/webhooks")]
async fn endpoint_create(
    req: HttpRequest,
    r: CurrentReseller,
    f: CsrfForm<EndpointForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    match webhooks::create_endpoint(&pool, r.account.id, &f.0.url, super::remote_addr(&req)).await {
        Ok(ep) => Ok(see_other(&format!("/reseller/webhooks/{}?done=endpoint_added", ep.id))),
        Err(WebhookError::BadUrl(why)) => {
            let mut page = endpoints_page(&r, &pool).await?;
            page.url = f.0.url;
            page.error = Some(why);
            invalid(&page)
        }
        Err(e) => Err(webhook_err(e)),
    }
}

pub struct DeliveryView {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: String,
    pub last_error: String,
    pub next_attempt: String,
    pub delivered: String,
    pub created: String,
}

impl DeliveryView {
    fn of(ctx: &Ctx, d: &DeliveryRow) -> Self {
        DeliveryView {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            status: d.status.clone(),
            attempts: d.attempts,
            last_status: d.last_status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
            last_error: d.last_error.clone().unwrap_or_default(),
            next_attempt: if d.status == "pending" { ctx.when(&d.next_attempt_at) } else { "—".into() },
            delivered: when(ctx, d.delivered_at),
            created: ctx.when(&d.created_at),
        }
    }
    pub fn badge(&self) -> &'static str {
        match self.status.as_str() {
            "delivered" => "ok",
            "failed" => "bad",
            _ => "warn",
        }
    }
}

#[derive(Template)]
#[template(path = "reseller/endpoint.html")]
struct EndpointPage {
    ctx: Ctx,
    ep: EndpointRow,
    deliveries: Vec<DeliveryView>,
    limit: i64,
}

#[get("/reseller/webhooks/{id}")]
async fn endpoint_show(
    r: CurrentReseller,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<Done>,
) -> Result<HttpResponse, WebError> {
    let ep = webhooks::endpoint(&pool, r.account.id, *id).await.map_err(webhook_err)?;
    let ctx = Ctx::of(&r.session).with_notice(q.done.as_deref());
    let deliveries =
        webhooks::deliveries(&pool, r.account.id, ep.id).await.map_err(webhook_err)?.iter().map(|d| DeliveryView::of(&ctx, d)).collect();
    ok(&EndpointPage { ctx, ep, deliveries, limit: webhooks::LOG_LIMIT })
}

#[derive(Deserialize)]
struct StateForm {
    to: String,
}

#[post("/reseller/webhooks/{id}/state")]
async fn endpoint_state(
    req: HttpRequest,
    r: CurrentReseller,
    id: web::Path<Uuid>,
    f: CsrfForm<StateForm>,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let enabled = match f.0.to.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(WebError::BadForm("to must be enable or disable".into())),
    };
    webhooks::set_enabled(&pool, r.account.id, *id, enabled, super::remote_addr(&req)).await.map_err(webhook_err)?;
    Ok(see_other(&format!("/reseller/webhooks/{id}?done={}", if enabled { "enabled" } else { "disabled" })))
}

#[post("/reseller/webhooks/{id}/rotate")]
async fn endpoint_rotate(
    req: HttpRequest,
    r: CurrentReseller,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    webhooks::rotate_secret(&pool, r.account.id, *id, super::remote_addr(&req)).await.map_err(webhook_err)?;
    Ok(see_other(&format!("/reseller/webhooks/{id}?done=rotated")))
}

#[post("/reseller/webhooks/{id}/delete")]
async fn endpoint_delete(
    req: HttpRequest,
    r: CurrentReseller,
    id: web::Path<Uuid>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    webhooks::delete_endpoint(&pool, r.account.id, *id, super::remote_addr(&req), None).await.map_err(webhook_err)?;
    Ok(see_other("/reseller/webhooks?done=deleted"))
}

#[post("/reseller/webhooks/{id}/deliveries/{delivery}/resend")]
async fn delivery_resend(
    req: HttpRequest,
    r: CurrentReseller,
    path: web::Path<(Uuid, i64)>,
    _f: Empty,
    pool: web::Data<PgPool>,
) -> Result<HttpResponse, WebError> {
    let (id, delivery) = path.into_inner();
    webhooks::send_again(&pool, r.account.id, id, delivery, super::remote_addr(&req)).await.map_err(webhook_err)?;
    Ok(see_other(&format!("/reseller/webhooks/{id}?done=requeued")))
}

//! The reseller's own pages: a home with what it holds and its terms, its API keys (the token
//! shown once), and its webhook endpoints with their delivery logs. Thin handlers over
//! [`crate::api_keys`] and [`crate::webhooks`]; every lookup is *for* the logged-in reseller,
//! so another reseller's key, endpoint or delivery is a 404. Its customers and their servers are
//! listed through the same scoped services the API uses ([`crate::resellers`]), each server with
//! its state and the reseller's own invoices for it; another reseller's customer or server is a
//! 404. Its (wholesale) invoices are the customer invoice pages, which serve resellers too
//! (`session::InvoiceHolder`).

use super::error::WebError;
use super::pages::{invalid, ok, see_other, Ctx};
use super::session::{CsrfForm, CurrentReseller};
use crate::api_keys::Tenant;
use crate::api_keys::{self, ApiKeyError, KeyRow, Scope};
use crate::db::resellers as sql_resellers;
use crate::db::resellers::CustomerRow;
use crate::resellers::customers;
use crate::resellers::servers::{self, ServerFilter, ServerRow};
use crate::webhooks::{self, DeliveryRow, EndpointRow, WebhookError};
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(home)
        .service(customers_list)
        .service(customer_show)
        .service(servers_list)
        .service(server_show)
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

// ------------------------------------------------------------------ customers and servers

/// Rows per page of the customer and server lists.
const PAGE: i64 = 50;

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
}

/// The `(created_at, id)` to continue after; a cursor that is not one of ours is a bad request.
fn cursor_of(q: &PageQuery) -> Result<Option<(chrono::DateTime<chrono::Utc>, Uuid)>, WebError> {
    q.cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(crate::api::pagination::decode)
        .transpose()
        .map_err(|_| WebError::BadForm("that page link is not valid; start from the first page".into()))
}

pub struct CustomerView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub status: String,
    pub badge: &'static str,
    pub created: String,
}

impl CustomerView {
    fn of(ctx: &Ctx, c: &CustomerRow) -> Self {
        use crate::accounts::AccountStatus as S;
        let (status, badge) = match c.status {
            S::Active => ("active", "ok"),
            S::Suspended if c.suspended_by_reseller => ("suspended by you", "bad"),
            S::Suspended => ("suspended by the provider", "bad"),
            S::PendingVerification => ("waiting for verification", "warn"),
            S::Closed => ("closed", ""),
        };
        CustomerView {
            id: c.id,
            email: c.email.clone(),
            name: c.display_name.clone(),
            status: status.into(),
            badge,
            created: ctx.when(&c.created_at),
        }
    }
}

/// A reseller's invoice for a server, as the lists show it.
pub struct ServerInvoiceView {
    pub id: Uuid,
    pub number: String,
    pub total: String,
    pub status: String,
    pub badge: &'static str,
    pub period: String,
}

pub struct ServerView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub customer: String,
    pub hostname: String,
    pub plan: String,
    pub kind: String,
    pub state: &'static str,
    pub badge: &'static str,
    pub desired: String,
    pub observed: String,
    pub billing: String,
    pub addresses: String,
    pub created: String,
    /// Newest first.
    pub invoices: Vec<ServerInvoiceView>,
}

impl ServerView {
    /// The newest invoice, what the list shows.
    pub fn latest(&self) -> Option<&ServerInvoiceView> {
        self.invoices.first()
    }
}

/// Servers with their states and the reseller's invoices for each.
async fn server_views(ctx: &Ctx, pool: &PgPool, reseller: Uuid, rows: &[ServerRow]) -> Result<Vec<ServerView>, WebError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut invoices = servers::invoices(pool, reseller, &ids).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (state, badge) = crate::vps::customer_state(r.desired_state, r.observed_state);
            ServerView {
                id: r.id,
                customer_id: r.customer_id,
                customer: r.customer_email.clone(),
                hostname: r.hostname.clone(),
                plan: r.plan.clone(),
                kind: r.kind.as_str().to_string(),
                state,
                badge,
                desired: r.desired_state.to_string(),
                observed: r.observed_state.to_string(),
                billing: r.billing_status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
                addresses: r.addresses.join(", "),
                created: ctx.when(&r.created_at),
                invoices: invoices
                    .remove(&r.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| {
                        let v = super::customer::InvoiceView::from_row(i);
                        ServerInvoiceView {
                            id: v.row.id,
                            badge: v.badge(),
                            status: v.row.status.to_string(),
                            number: v.number.clone(),
                            total: v.total.clone(),
                            period: v.period.clone(),
                        }
                    })
                    .collect(),
            }
        })
        .collect())
}

#[derive(Template)]
#[template(path = "reseller/customers.html")]
struct CustomersPage {
    ctx: Ctx,
    customers: Vec<CustomerView>,
    next: Option<String>,
}

#[get("/reseller/customers")]
async fn customers_list(r: CurrentReseller, pool: web::Data<PgPool>, q: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    let after = cursor_of(&q)?;
    let tenant = Tenant::Reseller(r.account.id);
    let rows = customers::list(&pool, tenant, None, after, PAGE + 1).await?;
    let (rows, next) = crate::api::pagination::page(rows, PAGE, |c| (c.created_at, c.id));
    let ctx = Ctx::of(&r.session);
    let customers = rows.iter().map(|c| CustomerView::of(&ctx, c)).collect();
    ok(&CustomersPage { ctx, customers, next })
}

#[derive(Template)]
#[template(path = "reseller/customer.html")]
struct CustomerPage {
    ctx: Ctx,
    customer: CustomerView,
    country: String,
    servers: Vec<ServerView>,
    next: Option<String>,
}

#[get("/reseller/customers/{id}")]
async fn customer_show(
    r: CurrentReseller,
    id: web::Path<Uuid>,
    pool: web::Data<PgPool>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, WebError> {
    let tenant = Tenant::Reseller(r.account.id);
    let c = customers::get(&pool, tenant, *id).await?;
    let after = cursor_of(&q)?;
    let filter = ServerFilter { customer: Some(c.id), ..Default::default() };
    let rows = servers::list(&pool, tenant, &filter, after, PAGE + 1).await?;
    let (rows, next) = crate::api::pagination::page(rows, PAGE, |s| (s.created_at, s.id));
    let ctx = Ctx::of(&r.session);
    let servers = server_views(&ctx, &pool, r.account.id, &rows).await?;
    ok(&CustomerPage {
        customer: CustomerView::of(&ctx, &c), country: c.country.clone().unwrap_or_else(|| "—".into()), ctx, servers, next
    })
}

#[derive(Deserialize)]
struct ServersQuery {
    cursor: Option<String>,
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "reseller/servers.html")]
struct ServersPage {
    ctx: Ctx,
    servers: Vec<ServerView>,
    next: Option<String>,
    state: String,
    states: Vec<&'static str>,
}

/// Every server of the reseller's customers, newest first, optionally one desired state.
#[get("/reseller/servers")]
async fn servers_list(r: CurrentReseller, pool: web::Data<PgPool>, q: web::Query<ServersQuery>) -> Result<HttpResponse, WebError> {
    let q = q.into_inner();
    let after = cursor_of(&PageQuery { cursor: q.cursor })?;
    let state = q.state.filter(|s| !s.is_empty());
    let desired_state = state
        .as_deref()
        .map(str::parse::<crate::vps::DesiredState>)
        .transpose()
        .map_err(|_| WebError::BadForm("state must be one of the listed states".into()))?;
    let tenant = Tenant::Reseller(r.account.id);
    let filter = ServerFilter { desired_state, ..Default::default() };
    let rows = servers::list(&pool, tenant, &filter, after, PAGE + 1).await?;
    let (rows, next) = crate::api::pagination::page(rows, PAGE, |s| (s.created_at, s.id));
    let ctx = Ctx::of(&r.session);
    let servers = server_views(&ctx, &pool, r.account.id, &rows).await?;
    let states = crate::vps::DesiredState::ALL.iter().map(|s| s.as_str()).collect();
    ok(&ServersPage { ctx, servers, next, state: state.unwrap_or_default(), states })
}

#[derive(Template)]
#[template(path = "reseller/server.html")]
struct ServerPage {
    ctx: Ctx,
    server: ServerView,
}

#[get("/reseller/servers/{id}")]
async fn server_show(r: CurrentReseller, id: web::Path<Uuid>, pool: web::Data<PgPool>) -> Result<HttpResponse, WebError> {
    let tenant = Tenant::Reseller(r.account.id);
    let row = servers::get(pool.get_ref(), tenant, *id).await?;
    let ctx = Ctx::of(&r.session);
    let server = server_views(&ctx, &pool, r.account.id, &[row]).await?.pop().ok_or(WebError::NotFound)?;
    ok(&ServerPage { ctx, server })
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
        Err(e) => Err(e.into()),
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

//! The browser console's pages and WebSocket (see [`crate::console`]). The page is plain HTML
//! with the terminal emulator (xterm.js, pinned in `panel/console/package-lock.json` and built
//! into this binary by `build.rs`) and our small glue script; both are served from here.

use super::error::WebError;
use super::pages::Ctx;
use super::session::CurrentCustomer;
use crate::config::Settings;
use crate::console::{self, Via};
use crate::hosts::HostHttp;
use crate::ids::InstanceId;
use actix_web::{get, web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;
use std::time::Duration;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(server_console).service(token_console).service(socket).service(asset);
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    ctx: Ctx,
    title: String,
    /// The server page to go back to (the customer's own page), if any.
    back: Option<String>,
    running: bool,
    websocket_path: String,
}

/// A page with a fresh token in it: never cached, never shown to anyone else.
fn no_store(page: &ConsolePage) -> Result<HttpResponse, WebError> {
    let html = page.render()?;
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header(("Cache-Control", "no-store")).body(html))
}

/// The customer's console for one of their servers: mints a token bound to this login.
#[get("/servers/{id}/console")]
async fn server_console(
    c: CurrentCustomer,
    id: web::Path<InstanceId>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
) -> Result<HttpResponse, WebError> {
    let s = crate::instances::get_for(&pool, c.account.id.into(), *id).await?.ok_or(WebError::NotFound)?;
    let mut conn = pool.acquire().await?;
    let issued = console::issue(&mut conn, s.id, c.account.id, Via::Web, Duration::from_secs(settings.console.token_ttl_secs)).await?;
    no_store(&ConsolePage {
        ctx: Ctx::of(&c.session),
        title: s.hostname.clone(),
        back: Some(format!("/servers/{}", s.id)),
        running: s.observed_state == crate::vps::ObservedState::Running,
        websocket_path: issued.websocket_path(),
    })
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

/// The console page for a token the API minted (a reseller's customer has no login here).
/// Shows the page only; the WebSocket decides.
#[get("/console")]
async fn token_console(q: web::Query<TokenQuery>) -> Result<HttpResponse, WebError> {
    if !console::plausible_token(&q.token) {
        return Err(WebError::NotFound);
    }
    no_store(&ConsolePage {
        ctx: Ctx::anonymous(),
        title: "Console".into(),
        back: None,
        running: true,
        websocket_path: format!("/console/ws?token={}", q.token),
    })
}

fn refused(status: actix_web::http::StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(why.to_string())
}

/// The console's WebSocket. Refused (before upgrading) without a valid, unused, unexpired
/// token; a token minted by the server page also needs the same customer's login.
#[get("/console/ws")]
async fn socket(
    req: HttpRequest,
    body: web::Payload,
    q: web::Query<TokenQuery>,
    customer: Option<CurrentCustomer>,
    pool: web::Data<PgPool>,
    settings: web::Data<Settings>,
    http: web::Data<HostHttp>,
) -> Result<HttpResponse, actix_web::Error> {
    use actix_web::http::StatusCode;
    // The handshake first: a request that is not a WebSocket does not use up a token.
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let token = match console::redeem(&pool, &q.token).await {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(refused(StatusCode::FORBIDDEN, "this console link is used up or expired: open the console again")),
        Err(e) => return Err(WebError::internal(e).into()),
    };
    if token.via == "web" && customer.as_ref().map(|c| c.account.id) != Some(token.account_id) {
        tracing::warn!(instance = %token.instance_id, "console: a page token without its customer's login");
        return Ok(refused(StatusCode::UNAUTHORIZED, "log in to open this console"));
    }
    let remote = super::remote_addr(&req);
    let idle = Duration::from_secs(settings.console.idle_timeout_secs.max(1));
    let stream = stream.max_frame_size(64 * 1024);
    actix_web::rt::spawn(console::run(pool.get_ref().clone(), http.get_ref().clone(), token, remote, idle, session, stream));
    Ok(response)
}

const XTERM_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/node_modules/@xterm/xterm/lib/xterm.js"));
const XTERM_CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/node_modules/@xterm/xterm/css/xterm.css"));
const FIT_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/console/node_modules/@xterm/addon-fit/lib/addon-fit.js"));
const GLUE_JS: &[u8] = include_bytes!("../../console/console.js");

#[get("/static/console/{file}")]
async fn asset(file: web::Path<String>) -> Result<HttpResponse, WebError> {
    let (body, ty) = match file.as_str() {
        "xterm.js" => (XTERM_JS, "text/javascript; charset=utf-8"),
        "xterm.css" => (XTERM_CSS, "text/css; charset=utf-8"),
        "addon-fit.js" => (FIT_JS, "text/javascript; charset=utf-8"),
        "console.js" => (GLUE_JS, "text/javascript; charset=utf-8"),
        _ => return Err(WebError::NotFound),
    };
    Ok(HttpResponse::Ok().content_type(ty).insert_header(("Cache-Control", "public, max-age=3600")).body(body))
}

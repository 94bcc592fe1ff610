//! The pages people use: server-rendered HTML (askama), every form a plain POST that works
//! without JavaScript (except paying by card: Stripe.js reads the card), one small stylesheet
//! and the card form's script served from here.
//!
//! * [`session`]: signed cookies, server-side sessions, CSRF-checked forms, and the
//!   "current customer" / "current admin" / "current reseller" extractors;
//! * [`error`]: what goes wrong, as pages;
//! * [`pages`]: catalogue and sign-in; [`customer`]: orders, invoices, servers;
//!   [`admin`]: the admin area; [`reseller`]: the reseller's keys, webhooks and home.

pub mod access;
pub mod admin;
pub mod console;
pub mod customer;
pub mod error;
pub mod firewall;
pub mod pages;
pub mod reseller;
pub mod session;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{get, web, HttpMessage, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(stylesheet).service(card_script);
    pages::configure(cfg);
    access::configure(cfg);
    firewall::configure(cfg);
    console::configure(cfg);
    customer::configure(cfg);
    admin::configure(cfg);
    reseller::configure(cfg);
}

const CSS: &str = include_str!("../../../static/vessel.css");

#[get("/static/vessel.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").insert_header(("Cache-Control", "public, max-age=3600")).body(CSS)
}

const CARD_JS: &str = include_str!("../../../static/card.js");

/// The card form's script (Stripe.js to a payment method id, then the plain POST).
#[get("/static/card.js")]
async fn card_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(CARD_JS)
}

/// Where a request comes from, for rate limits and the audit log: the TCP peer, or behind a
/// trusted reverse proxy the address it appended last to `X-Forwarded-For`.
pub fn remote_addr(req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
    let trust = req.app_data::<web::Data<crate::config::Settings>>().is_some_and(|s| s.http.trust_forwarded_for);
    if trust {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|a| a.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// Any path no route knows: the same 404 page as a missing record.
pub async fn not_found() -> Result<HttpResponse, error::WebError> {
    Err(error::WebError::NotFound)
}

/// Sets the session cookie when a request minted a token (a new visitor, a log-in, a
/// log-out), and the headers every page should carry.
pub async fn session_cookies(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let keys = req.app_data::<web::Data<session::SessionKeys>>().cloned();
    let mut res = next.call(req).await?;
    let token = res.request().extensions().get::<session::SetToken>().map(|t| t.0.clone());
    if let (Some(token), Some(keys)) = (token, keys) {
        res.response_mut().add_cookie(&keys.cookie(&token))?;
    }
    let h = res.headers_mut();
    h.insert(actix_web::http::header::X_FRAME_OPTIONS, actix_web::http::header::HeaderValue::from_static("DENY"));
    h.insert(actix_web::http::header::X_CONTENT_TYPE_OPTIONS, actix_web::http::header::HeaderValue::from_static("nosniff"));
    h.insert(actix_web::http::header::REFERRER_POLICY, actix_web::http::header::HeaderValue::from_static("same-origin"));
    Ok(res)
}

//! Public and sign-in pages: the catalogue, sign up, verify, log in (with TOTP), log out,
//! password reset, and the customer's account page (two-factor settings).

mod account;
mod login;
mod signup;

use super::error::WebError;
use super::session::Session;
use crate::accounts::Role;
use crate::catalogue::{self, PlanCard};
use crate::money::Currency;
use actix_web::http::header;
use actix_web::{get, web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(catalogue_page);
    signup::configure(cfg);
    login::configure(cfg);
    account::configure(cfg);
}

/// What the layout needs on every page.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub email: Option<String>,
    pub is_admin: bool,
    pub is_customer: bool,
    pub is_reseller: bool,
    pub csrf: String,
    pub notice: Option<String>,
    /// The visitor's time zone: times are stored in UTC and shown in it.
    pub tz: chrono_tz::Tz,
}

impl Ctx {
    pub fn anonymous() -> Self {
        Ctx { email: None, is_admin: false, is_customer: false, is_reseller: false, csrf: String::new(), notice: None, tz: chrono_tz::UTC }
    }
    pub fn of(s: &Session) -> Self {
        Ctx {
            email: s.account.as_ref().map(|a| a.email.clone()),
            is_admin: s.is_admin(),
            is_customer: s.is_customer(),
            is_reseller: s.is_reseller(),
            csrf: s.csrf.clone(),
            notice: None,
            tz: s.account.as_ref().and_then(|a| a.time_zone.parse().ok()).unwrap_or(chrono_tz::UTC),
        }
    }
    /// A moment in the visitor's time zone, e.g. "2026-11-25 15:04 CET".
    pub fn when(&self, t: &chrono::DateTime<chrono::Utc>) -> String {
        t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M %Z").to_string()
    }
    /// With a fixed message chosen by code (never text from the URL).
    pub fn with_notice(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(notice_text).map(str::to_string);
        self
    }
}

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "verified" => "Your email address is confirmed. You can log in now.",
        "reset" => "Your password was changed and every other session signed out. Log in with the new password.",
        "invited" => "Your password is set. Log in to reach your reseller pages.",
        "server_start" => "Start requested: the host follows shortly.",
        "server_stop" => "Stop requested: the host follows shortly.",
        "server_suspend" => "Suspended: the host follows shortly. The reason is in the audit log.",
        "server_unsuspend" => "Suspension lifted: the server returns to the state it had.",
        "server_terminate" => "Termination requested: the server is destroyed and its billing ends with the period paid for.",
        "server_reinstall" => "Reinstall requested: the server is wiped and installed again.",
        "job_retried" => "The job is queued again.",
        "logged_out" => "You are logged out.",
        "totp_on" => "Two-factor authentication is on. You will be asked for a code when you log in.",
        "totp_off" => "Two-factor authentication is off.",
        "need_2fa" => "Your provider requires two-factor authentication for this account: set it up to continue.",
        "saved" => "Saved.",
        "resent" => "A fresh verification link is on its way (see Mail).",
        "password_changed" => "Your password is changed; every other session is signed out.",
        "email_sent" => "We mailed a link to the new address. Your address changes when it is followed (within 48 hours).",
        "email_changed" => "Your email address is changed.",
        "paid_card" => "Thank you: the credit is added as soon as the card payment is confirmed.",
        "plan_changed" => "The plan is changed; the server is resized shortly.",
        "cancel_at_period_end" => "Cancelled: the server runs until the end of its paid period and is not renewed.",
        "kept" => "The cancellation is taken back: the server renews as before.",
        "terminated" => "The server is cancelled and being removed; the unused part of its period is back as credit.",
        "paid" => "Paid. Thank you!",
        "ordered" => "Order placed.",
        "requested" => "Request queued; the server will act on it shortly.",
        "revoked" => "The key is revoked: requests with it are refused from now on.",
        "endpoint_added" => "Endpoint added. Events are signed with its secret, shown below.",
        "enabled" => "Enabled: new events are sent to it.",
        "disabled" => "Disabled: nothing is sent to it until it is enabled again.",
        "rotated" => "A new secret is in use from the next delivery on; update your receiver.",
        "deleted" => "Deleted.",
        "requeued" => "Queued again: it is sent within seconds.",
        _ => return None,
    })
}

pub fn html(status: actix_web::http::StatusCode, t: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(t.render()?))
}

pub fn ok(t: &impl Template) -> Result<HttpResponse, WebError> {
    html(actix_web::http::StatusCode::OK, t)
}

/// A form that needs correcting: shown again with the message, 422.
pub fn invalid(t: &impl Template) -> Result<HttpResponse, WebError> {
    html(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, t)
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_string())).finish()
}

/// Where an account lands after logging in.
fn home_of(role: Role) -> &'static str {
    match role {
        Role::Admin => "/admin",
        Role::Reseller => "/reseller",
        Role::Customer => "/servers",
    }
}

/// Only paths of this site may be redirected to after log-in. The value is *parsed* the way a
/// browser will (WHATWG URL: tabs and newlines dropped, `\\` read as `/`) against a placeholder
/// origin, and kept only if it stays on that origin; what is returned is the parsed path and
/// query, re-serialised (percent-encoded), never the raw input. So `/\t/evil.example` (a
/// browser's `//evil.example`) and a `%0a` cannot leave the site or break the header.
pub(crate) fn safe_next(next: Option<&str>) -> Option<String> {
    const BASE: &str = "https://panel.invalid/";
    let next = next?.trim();
    if !next.starts_with('/') {
        return None;
    }
    let base = reqwest::Url::parse(BASE).ok()?;
    let url = base.join(next).ok()?;
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let mut out = url.path().to_string();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    // A path that still begins with two slashes would be protocol-relative once sent.
    if out.starts_with("//") || out.contains(['\r', '\n', '\t']) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod next_tests {
    use super::safe_next;

    #[test]
    fn only_same_origin_paths_survive_and_come_back_normalised() {
        assert_eq!(safe_next(Some("/servers/1?x=2")).as_deref(), Some("/servers/1?x=2"));
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https://evil.example/",
            "evil",
            "/\\\\evil",
            "/ /evil.example",
        ] {
            let got = safe_next(Some(evil));
            assert!(got.as_deref().is_none_or(|g| g.starts_with('/') && !g.starts_with("//")), "{evil:?} -> {got:?}");
        }
        assert_eq!(safe_next(Some("/\t/evil.example")), None);
        // A newline is dropped or encoded, never passed into a Location header.
        assert!(safe_next(Some("/a\nb")).is_none_or(|g| !g.contains('\n')));
        assert_eq!(safe_next(Some("/a%0ab")).as_deref(), Some("/a%0ab"));
    }
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    ctx: Ctx,
    containers: Vec<PlanCard>,
    kvm: Vec<PlanCard>,
    currency: String,
}

#[get("/")]
async fn catalogue_page(session: Session, pool: web::Data<PgPool>, q: web::Query<Done>) -> Result<HttpResponse, WebError> {
    let currency = session
        .account
        .as_ref()
        .and_then(|a| Currency::parse(&a.currency).ok())
        .unwrap_or_else(|| Currency::parse("EUR").expect("EUR is a currency"));
    let (containers, kvm) = catalogue::orderable(&pool, currency).await?;
    ok(&HomePage { ctx: Ctx::of(&session).with_notice(q.done.as_deref()), containers, kvm, currency: currency.to_string() })
}

/// A plain message (mail sent, link used up, …).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub ctx: Ctx,
    pub heading: String,
    pub message: String,
}

/// A page that acts on a mailed token with a button (and a new password where one is chosen): a
/// mail scanner following the link uses nothing up.
#[derive(Template)]
#[template(path = "confirm_token.html")]
struct ConfirmTokenPage {
    ctx: Ctx,
    heading: String,
    action: String,
    button: String,
    with_password: bool,
    error: Option<String>,
}
